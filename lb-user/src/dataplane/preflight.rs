//! Checks that run before `lbd` touches the kernel, so an operator gets a
//! refusal that names the problem and the fix instead of a bare errno.
//!
//! - privileges: `CAP_BPF` (or `CAP_SYS_ADMIN`) and `CAP_NET_ADMIN` in the
//!   effective set;
//! - the interface exists in this network namespace;
//! - the pin path lies on a bpffs (mounting one at `/sys/fs/bpf` when that is
//!   where the path points and nothing is mounted there, as systemd would);
//! - no other XDP program is attached to the interface (unless replacing).

use std::{
    ffi::CString,
    io,
    path::{Path, PathBuf},
};

use futures::TryStreamExt as _;
use rtnetlink::packet_route::link::{LinkAttribute, LinkXdp, XdpAttached};

/// `statfs(2)` magic of a bpffs mount (`BPF_FS_MAGIC` in `linux/magic.h`).
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;
/// Where bpffs lives by convention; the only place we mount it ourselves.
pub const BPFFS_ROOT: &str = "/sys/fs/bpf";

const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_BPF: u32 = 39;

/// `XDP_FLAGS_SKB_MODE`: generic (skb) mode.
pub const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;
/// `XDP_FLAGS_DRV_MODE`: native (driver) mode.
pub const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;
/// `XDP_FLAGS_HW_MODE`: offloaded to the NIC.
pub const XDP_FLAGS_HW_MODE: u32 = 1 << 3;

/// A refusal, each variant phrased for the operator who has to fix it.
#[derive(Debug, thiserror::Error)]
pub enum PreflightError {
    /// The process lacks the capabilities to load BPF or attach XDP.
    #[error(
        "lbd needs root: the effective capabilities lack {missing}; \
         run it as root (e.g. `sudo lbd ...`)"
    )]
    NotPrivileged {
        /// Names of the missing capabilities.
        missing: String,
    },
    /// The capability set could not be read.
    #[error("cannot read capabilities from /proc/self/status")]
    Capabilities {
        /// Why.
        #[source]
        source: io::Error,
    },
    /// No interface by that name in this network namespace.
    #[error(
        "interface {name:?} does not exist in this network namespace \
         (`ip link show` lists the interfaces)"
    )]
    NoSuchInterface {
        /// The name given.
        name: String,
    },
    /// The pin path is not on a bpffs and we did not mount one.
    #[error(
        "{path} is not on a bpffs (BPF filesystem); mount one with \
         `mount -t bpf bpf {mount_hint}` or choose a pin path under {BPFFS_ROOT}"
    )]
    NotBpffs {
        /// The pin path.
        path: PathBuf,
        /// Where to mount.
        mount_hint: String,
    },
    /// Mounting bpffs at [`BPFFS_ROOT`] failed.
    #[error("bpffs is not mounted at {BPFFS_ROOT} and mounting it failed")]
    MountBpffs {
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Another XDP program holds the interface.
    #[error(
        "interface {iface} already has XDP program {prog_id} ({prog_name}) attached in {mode} mode; \
         pass --replace to take it over, or detach it with `ip link set dev {iface} xdp off`"
    )]
    XdpBusy {
        /// The interface.
        iface: String,
        /// Kernel id of the attached program.
        prog_id: u32,
        /// Its name, or "?" when it cannot be read.
        prog_name: String,
        /// "native", "generic", "offload" or "multiple".
        mode: &'static str,
    },
    /// `backend_interface` names the interface clients arrive on.
    #[error(
        "backend_interface {iface} is the data plane's interface itself; name the second \
         interface the backends sit behind, or leave backend_interface out (one arm)"
    )]
    SameInterface {
        /// The interface.
        iface: String,
    },
    /// Talking to the kernel over rtnetlink failed.
    #[error("rtnetlink request about interface {iface} failed")]
    Netlink {
        /// The interface.
        iface: String,
        /// Why.
        #[source]
        source: rtnetlink::Error,
    },
    /// Opening an rtnetlink socket failed.
    #[error("cannot open an rtnetlink socket")]
    NetlinkSocket {
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// Require `CAP_BPF` (or `CAP_SYS_ADMIN`) and `CAP_NET_ADMIN`.
///
/// # Errors
/// [`PreflightError::NotPrivileged`] naming what is missing.
pub fn check_privileges() -> Result<(), PreflightError> {
    let status = std::fs::read_to_string("/proc/self/status")
        .map_err(|source| PreflightError::Capabilities { source })?;
    let eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .ok_or_else(|| PreflightError::Capabilities {
            source: io::Error::other("no CapEff line"),
        })?;
    let has = |cap: u32| eff & (1 << cap) != 0;
    let mut missing = Vec::new();
    if !has(CAP_BPF) && !has(CAP_SYS_ADMIN) {
        missing.push("CAP_BPF");
    }
    if !has(CAP_NET_ADMIN) {
        missing.push("CAP_NET_ADMIN");
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(PreflightError::NotPrivileged {
            missing: missing.join(" and "),
        })
    }
}

/// Index of interface `name`.
///
/// # Errors
/// [`PreflightError::NoSuchInterface`].
pub fn ifindex(name: &str) -> Result<u32, PreflightError> {
    crate::sys::interface::ifindex(name)
        .map_err(|e| PreflightError::NoSuchInterface { name: e.name })
}

fn is_bpffs(path: &Path) -> bool {
    let Ok(c_path) = CString::new(path.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    // SAFETY: statfs writes into the zeroed struct; c_path is NUL-terminated.
    unsafe {
        let mut st: libc::statfs = std::mem::zeroed();
        libc::statfs(c_path.as_ptr(), &raw mut st) == 0 && st.f_type == BPF_FS_MAGIC
    }
}

/// The nearest existing ancestor of `path` (or `path` itself).
fn existing_ancestor(path: &Path) -> &Path {
    path.ancestors()
        .find(|p| p.exists())
        .unwrap_or_else(|| Path::new("/"))
}

/// Make sure `pin_path` will land on a bpffs. When nothing is mounted at
/// [`BPFFS_ROOT`] and the pin path is below it, mount bpffs there (what
/// systemd does at boot) and say so; returns whether we mounted.
///
/// # Errors
/// [`PreflightError::NotBpffs`] when the path is elsewhere and not on bpffs,
/// [`PreflightError::MountBpffs`] when mounting fails.
pub fn ensure_bpffs(pin_path: &Path) -> Result<bool, PreflightError> {
    if is_bpffs(existing_ancestor(pin_path)) {
        return Ok(false);
    }
    let root = Path::new(BPFFS_ROOT);
    if !pin_path.starts_with(root) || is_bpffs(root) {
        return Err(PreflightError::NotBpffs {
            path: pin_path.to_owned(),
            mount_hint: existing_ancestor(pin_path).display().to_string(),
        });
    }
    std::fs::create_dir_all(root).map_err(|source| PreflightError::MountBpffs { source })?;
    // SAFETY: all arguments are NUL-terminated literals.
    let rc = unsafe {
        libc::mount(
            c"bpf".as_ptr(),
            c"/sys/fs/bpf".as_ptr(),
            c"bpf".as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(PreflightError::MountBpffs {
            source: io::Error::last_os_error(),
        });
    }
    Ok(true)
}

/// An XDP program found on an interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachedXdp {
    /// Kernel program id.
    pub prog_id: u32,
    /// `XDP_FLAGS_*_MODE` bit for the mode it is attached in (0 if several).
    pub mode_flags: u32,
    /// Human name of the mode.
    pub mode: &'static str,
}

/// Which XDP program, if any, is attached to interface `ifindex`.
///
/// # Errors
/// [`PreflightError::Netlink`] / [`PreflightError::NetlinkSocket`].
pub async fn attached_xdp(
    iface: &str,
    ifindex: u32,
) -> Result<Option<AttachedXdp>, PreflightError> {
    with_netlink(iface, |handle| async move {
        let mut links = handle.link().get().match_index(ifindex).execute();
        let mut found = None;
        while let Some(msg) = links.try_next().await? {
            for attr in msg.attributes {
                if let LinkAttribute::Xdp(xdp) = attr {
                    found = parse_xdp(&xdp);
                }
            }
        }
        Ok(found)
    })
    .await
}

/// Run `request` over a fresh rtnetlink connection (in this thread's
/// network namespace), closing the connection afterwards.
async fn with_netlink<T, F>(
    iface: &str,
    request: impl FnOnce(rtnetlink::Handle) -> F,
) -> Result<T, PreflightError>
where
    F: std::future::Future<Output = Result<T, rtnetlink::Error>>,
{
    let (conn, handle, _) =
        rtnetlink::new_connection().map_err(|source| PreflightError::NetlinkSocket { source })?;
    let conn = tokio::spawn(conn);
    let result = request(handle)
        .await
        .map_err(|source| PreflightError::Netlink {
            iface: iface.to_owned(),
            source,
        });
    conn.abort();
    result
}

fn parse_xdp(attrs: &[LinkXdp]) -> Option<AttachedXdp> {
    let mut prog_id = 0;
    let mut mode = None;
    for attr in attrs {
        match attr {
            LinkXdp::ProgId(id) => prog_id = *id,
            LinkXdp::Attached(a) => mode = Some(a),
            _ => {}
        }
    }
    let (mode_flags, mode) = match mode? {
        XdpAttached::None => return None,
        XdpAttached::Driver => (XDP_FLAGS_DRV_MODE, "native"),
        XdpAttached::SocketBuffer => (XDP_FLAGS_SKB_MODE, "generic"),
        XdpAttached::Hardware => (XDP_FLAGS_HW_MODE, "offload"),
        _ => (0, "multiple"),
    };
    Some(AttachedXdp {
        prog_id,
        mode_flags,
        mode,
    })
}

/// Detach whatever netlink-attached XDP program `ifindex` has in `mode_flags`
/// (what `ip link set dev IF xdp off` does). Programs held by a BPF link
/// cannot be detached this way; the kernel answers `EBUSY`.
///
/// # Errors
/// [`PreflightError::Netlink`] / [`PreflightError::NetlinkSocket`].
pub async fn detach_xdp(iface: &str, ifindex: u32, mode_flags: u32) -> Result<(), PreflightError> {
    let message = rtnetlink::LinkUnspec::new_with_index(ifindex)
        .append_extra_attribute(LinkAttribute::Xdp(vec![
            LinkXdp::Fd(-1),
            LinkXdp::Flags(mode_flags),
        ]))
        .build();
    with_netlink(iface, |handle| async move {
        handle.link().set(message).execute().await
    })
    .await
}

/// Name of loaded program `prog_id`, or `"?"`.
#[must_use]
pub fn program_name(prog_id: u32) -> String {
    aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .find(|p| p.id() == prog_id)
        .and_then(|p| p.name_as_str().map(str::to_owned))
        .unwrap_or_else(|| "?".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xdp_attr_parsing() {
        assert_eq!(parse_xdp(&[LinkXdp::Attached(XdpAttached::None)]), None);
        assert_eq!(parse_xdp(&[]), None);
        assert_eq!(
            parse_xdp(&[
                LinkXdp::Attached(XdpAttached::SocketBuffer),
                LinkXdp::ProgId(7)
            ]),
            Some(AttachedXdp {
                prog_id: 7,
                mode_flags: XDP_FLAGS_SKB_MODE,
                mode: "generic"
            })
        );
    }

    #[test]
    fn ancestor_of_missing_path_exists() {
        assert_eq!(
            existing_ancestor(Path::new("/proc/self/no/such/dir")),
            Path::new("/proc/self")
        );
    }

    #[test]
    fn unknown_interface_is_refused() {
        let err = ifindex("lb-no-such-if0").unwrap_err();
        assert!(err.to_string().contains("does not exist"), "{err}");
    }
}
