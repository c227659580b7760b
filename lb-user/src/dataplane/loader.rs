//! Load the XDP program, attach it, pin it and its maps; adopt what an
//! earlier `lbd` left pinned; undo it all on a clean stop.
//!
//! [`Dataplane::start`] runs the [`preflight`](crate::dataplane::preflight)
//! checks and takes an exclusive lock on the pin directory (so two `lbd`s
//! cannot share one). Then, for the balancer:
//!
//! - **Nothing pinned** (first start, or the last `lbd` stopped cleanly):
//!   load the object, pin every map, attach the program through a bpf_link
//!   and pin the link too (`<pin dir>/link`), and write the layout stamp
//!   (`lb_common::layout`). A pinned link keeps the program attached when
//!   the process dies: a crash, SIGKILL or OOM kill leaves forwarding
//!   running on the last state.
//! - **A data plane pinned by an earlier `lbd`** (it crashed, or handed
//!   over for a restart): check its stamp and every pinned map's shape
//!   against this build, load the object over the pinned maps (connection
//!   table, counters, services: all kept), and swap our program into the
//!   pinned link in one step (`BPF_LINK_UPDATE`): no packet sees no program.
//!   A stamp or shape that does not match is refused with the fix
//!   ([`LoadError::Adopt`]).
//!
//! Dropping the [`Dataplane`] detaches the program and removes its pins
//! (a clean stop); [`Dataplane::leave`] instead leaves it all running for
//! the next `lbd`. [`detach_pinned`] removes a data plane nobody runs.
//! The decapsulator (`lbd decap`) is not pinned: it goes with its process.

use std::{
    fs::File,
    io,
    os::fd::AsRawFd as _,
    path::{Path, PathBuf},
};

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, MapData, MapInfo},
    programs::{
        Xdp, XdpMode,
        links::{FdLink, LinkInfo, PinnedLink},
        xdp::{XdpLink, XdpLinkId},
    },
};
use lb_common::layout::{LAYOUT_MAGIC, LAYOUT_MAP, LAYOUT_VERSION, Layout};
use tracing::{info, warn};

use crate::dataplane::preflight::{self, PreflightError};

/// Name of the balancer's XDP program in the object.
pub const PROGRAM: &str = "lb_xdp";
/// Name of the backends' decapsulator program in the object.
pub const DECAP_PROGRAM: &str = "lb_decap";
/// Default pin directory.
pub const DEFAULT_PIN_PATH: &str = "/sys/fs/bpf/lb";
/// Name of the pinned XDP link in the pin directory.
pub const LINK_PIN: &str = "link";
/// Pin of the balancer's link on the backend interface, beside [`LINK_PIN`].
pub const LINK_BACKEND_PIN: &str = "link-backend";
/// Default pin directory of the decapsulator.
pub const DEFAULT_DECAP_PIN_PATH: &str = "/sys/fs/bpf/lb-decap";

/// Which of the object's programs to attach.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Role {
    /// The load balancer (`lb_xdp`).
    #[default]
    Balancer,
    /// The decapsulator for `ipip` backends (`lb_decap`).
    Decap,
}

impl Role {
    /// Program name in the object.
    #[must_use]
    pub const fn program(self) -> &'static str {
        match self {
            Self::Balancer => PROGRAM,
            Self::Decap => DECAP_PROGRAM,
        }
    }
}

/// How to attach, as given on the command line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum AttachMode {
    /// Native (driver) mode where the driver supports it, else generic.
    #[default]
    Auto,
    /// Native (driver) mode only; fail if the driver lacks XDP support.
    Native,
    /// Generic (skb) mode: works on every interface, slower.
    Generic,
}

/// What `lbd` was asked to do.
#[derive(Clone, Debug)]
pub struct Options {
    /// Interface to attach to.
    pub iface: String,
    /// Attach mode.
    pub mode: AttachMode,
    /// Directory under bpffs for the map pins.
    pub pin_path: PathBuf,
    /// Take over an interface that already has an XDP program.
    pub replace: bool,
    /// Which program to attach.
    pub role: Role,
    /// Connection-table size in flows (`lb_common::flow::flow_sets` rounds
    /// it up; a full set evicts its least recently seen flow).
    pub flow_entries: u32,
    /// Backend slots, (service, backend) pairs (`[dataplane]
    /// backend_pairs`; default `lb_common::backend::MAX_BACKENDS`).
    pub backend_pairs: u32,
    /// Emit a new-flow event for connection sync (`lb_common::flow::FlowEvent`).
    pub flow_events: bool,
    /// NAT flows (`[dataplane] nat_flows`).
    pub nat_flows: u32,
    /// A second interface, where backends sit (`[dataplane]
    /// backend_interface`): the balancer is attached there too, and
    /// forwards between the two with `XDP_REDIRECT`.
    pub backend_iface: Option<String>,
}

impl Options {
    /// What these options ask the object to be loaded with, the backend
    /// interface being `arm1_ifindex` (0: none).
    #[must_use]
    pub const fn sizes(&self, arm1_ifindex: u32) -> Sizes {
        Sizes {
            flow_entries: self.flow_entries,
            backend_pairs: self.backend_pairs,
            nat_flows: self.nat_flows,
            arm1_ifindex,
        }
    }
}

/// Why starting the data plane failed.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A preflight refusal.
    #[error(transparent)]
    Preflight(#[from] PreflightError),
    /// Another process holds the pin directory.
    #[error(
        "pin path {path} is in use by another lbd; stop it, or give this one its own --pin-path"
    )]
    PinPathBusy {
        /// The directory.
        path: PathBuf,
    },
    /// Filesystem work on the pin directory failed.
    #[error("cannot prepare pin path {path}")]
    PinDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The object did not load (verifier, map creation, ...).
    #[error("loading the BPF object failed")]
    Load(#[source] aya::EbpfError),
    /// The program did not load or attach.
    #[error("{what} program {program} failed")]
    Program {
        /// Its name.
        program: &'static str,
        /// "loading" or "attaching to IF in MODE mode".
        what: String,
        /// Why.
        #[source]
        source: aya::programs::ProgramError,
    },
    /// Pinning a map or the link failed.
    #[error("pinning {what} at {path} failed")]
    Pin {
        /// The map or "the XDP link".
        what: String,
        /// Where.
        path: PathBuf,
        /// Why.
        #[source]
        source: aya::pin::PinError,
    },
    /// The program is missing from the object (a build problem).
    #[error("the BPF object has no program {0}")]
    NoProgram(&'static str),
    /// Writing map `arms` (the interfaces by arm) failed.
    #[error("writing the interfaces into map arms: {0}")]
    Arms(String),
    /// A data plane pinned by an earlier lbd cannot be adopted by this one.
    #[error(
        "the data plane pinned at {path} cannot be adopted: {reason}. \
         It is still forwarding. To replace it (its connection table is lost), \
         run `lbd detach --pin-path {path}` and start lbd again{hint}"
    )]
    Adopt {
        /// The pin directory.
        path: PathBuf,
        /// What did not match.
        reason: String,
        /// More advice, or "".
        hint: String,
    },
    /// The kernel attached XDP without a bpf_link (netlink), which cannot
    /// be pinned: the data plane would not outlive lbd.
    #[error(
        "{iface}: the kernel attached XDP without a bpf_link (Linux 5.9 and later have XDP links), \
         so the data plane could not outlive lbd; refusing to run without that"
    )]
    NoLinks {
        /// The interface.
        iface: String,
    },
    /// Reading or updating the pinned link failed.
    #[error("the pinned XDP link at {path}")]
    Link {
        /// The pin.
        path: PathBuf,
        /// Why.
        #[source]
        source: aya::programs::links::LinkError,
    },
}

/// How the program is attached.
enum Attachment {
    /// Through a bpf_link pinned at `path`: attached until the pin is
    /// removed and our descriptor closed (the balancer).
    Pinned {
        /// Our descriptor of the link.
        link: FdLink,
        /// Its pin.
        path: PathBuf,
    },
    /// A link the program owns: detached when lbd exits (the decapsulator).
    Owned(XdpLinkId),
}

/// How a starting lbd found the pin directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// Nothing pinned: maps created, program attached.
    Fresh,
    /// A pinned data plane adopted: its maps kept, our program swapped in.
    Adopted {
        /// The program it was running (kernel id).
        previous_prog_id: u32,
    },
}

/// The second interface the balancer runs on (`backend_interface`).
struct BackendArm {
    iface: String,
    ifindex: u32,
    mode: XdpMode,
    /// Pinned at [`LINK_BACKEND_PIN`].
    link: Option<Attachment>,
}

/// A running data plane: program attached, maps pinned.
pub struct Dataplane {
    ebpf: Ebpf,
    program: &'static str,
    link: Option<Attachment>,
    iface: String,
    ifindex: u32,
    mode: XdpMode,
    backend: Option<BackendArm>,
    pin_dir: PathBuf,
    pins: Vec<PathBuf>,
    created_dir: bool,
    origin: Origin,
    /// Holds the `flock` on the pin directory for our lifetime.
    _lock: File,
}

fn mode_name(mode: XdpMode) -> &'static str {
    match mode {
        XdpMode::Driver => "native",
        XdpMode::Skb => "generic",
        XdpMode::Hardware => "offload",
        XdpMode::Default => "default",
    }
}

const fn mode_flags(mode: XdpMode) -> u32 {
    match mode {
        XdpMode::Driver => preflight::XDP_FLAGS_DRV_MODE,
        XdpMode::Skb => preflight::XDP_FLAGS_SKB_MODE,
        XdpMode::Hardware => preflight::XDP_FLAGS_HW_MODE,
        XdpMode::Default => 0,
    }
}

const fn mode_of_flags(flags: u32) -> XdpMode {
    match flags {
        preflight::XDP_FLAGS_DRV_MODE => XdpMode::Driver,
        preflight::XDP_FLAGS_SKB_MODE => XdpMode::Skb,
        preflight::XDP_FLAGS_HW_MODE => XdpMode::Hardware,
        _ => XdpMode::Default,
    }
}

/// The BPF object with a connection table for `flow_entries` flows: the
/// `flows` map's size (in sets) and the program's `FLOW_SET_MASK` are set
/// together, so they always agree. Loads the maps; programs are loaded by
/// name afterwards.
///
/// # Errors
/// As [`EbpfLoader::load`].
pub fn load_object(flow_entries: u32, backend_pairs: u32) -> Result<Ebpf, aya::EbpfError> {
    let sizes = Sizes {
        flow_entries,
        backend_pairs,
        ..Sizes::default()
    };
    load_object_with(&sizes, false, None)
}

/// The table sizes chosen at load, and the backend interface the
/// program is built for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sizes {
    /// Connection-table flows (`[dataplane] conntrack_entries`).
    pub flow_entries: u32,
    /// Backend slots (`[dataplane] backend_pairs`).
    pub backend_pairs: u32,
    /// NAT flows (`[dataplane] nat_flows`; the NAT table holds two
    /// entries per flow).
    pub nat_flows: u32,
    /// `backend_interface`'s index (`lb_common::config::ARM1_IFINDEX_SYMBOL`),
    /// 0 for none.
    pub arm1_ifindex: u32,
}

impl Default for Sizes {
    fn default() -> Self {
        Self {
            flow_entries: lb_common::flow::DEFAULT_FLOW_ENTRIES,
            backend_pairs: lb_common::backend::MAX_BACKENDS,
            nat_flows: lb_common::nat::DEFAULT_NAT_FLOWS,
            arm1_ifindex: 0,
        }
    }
}

/// [`load_object`], with new-flow events on or off, and with every map
/// opened from (or created and pinned at) `pin_dir/<map name>` when
/// `pin_dir` is given.
///
/// # Errors
/// As [`EbpfLoader::load`].
pub fn load_object_with(
    sizes: &Sizes,
    flow_events: bool,
    pin_dir: Option<&Path>,
) -> Result<Ebpf, aya::EbpfError> {
    use lb_common::backend::{BACKENDS_MAP, STATS_BACKEND_MAP};
    let (backend_pairs, nat_flows) = (sizes.backend_pairs, sizes.nat_flows);
    let sets = lb_common::flow::flow_sets(sizes.flow_entries);
    let mask = sets - 1;
    let events_on = u32::from(flow_events);
    let names = object_maps(crate::EBPF_OBJ);
    let mut loader = EbpfLoader::new();
    loader
        .map_max_entries(lb_common::flow::FLOWS_MAP, sets)
        .map_max_entries(BACKENDS_MAP, backend_pairs)
        .map_max_entries(STATS_BACKEND_MAP, backend_pairs)
        .map_max_entries(lb_common::nat::NAT_MAP, 2 * nat_flows)
        .override_global(lb_common::flow::FLOW_SET_MASK_SYMBOL, &mask, true)
        .override_global(lb_common::flow::FLOW_EVENTS_SYMBOL, &events_on, true)
        .override_global(
            lb_common::config::ARM1_IFINDEX_SYMBOL,
            &sizes.arm1_ifindex,
            true,
        );
    if let Some(dir) = pin_dir {
        for (name, _) in &names {
            loader.map_pin_path(name.as_str(), dir.join(name));
        }
    }
    loader.load(crate::EBPF_OBJ)
}

/// A map as this build declares it: (key size, value size, max entries
/// before load-time overrides).
type Shape = (u32, u32, u32);

/// The maps `obj` declares (the loader's `.bss`/`.data`/`.rodata` left
/// out), with their shapes.
fn object_maps(obj: &[u8]) -> Vec<(String, Shape)> {
    // The object is ours, built with this binary: it parses.
    let obj = aya_obj::Object::parse(obj).expect("lb's own BPF object parses");
    let mut maps: Vec<(String, Shape)> = obj
        .maps
        .iter()
        .filter(|(name, _)| !name.starts_with('.'))
        .map(|(name, m)| {
            (
                name.clone(),
                (m.key_size(), m.value_size(), m.max_entries()),
            )
        })
        .collect();
    maps.sort();
    maps
}

impl Dataplane {
    /// Check, then adopt what an earlier lbd pinned or load, attach and
    /// pin afresh. Logs each step.
    ///
    /// # Errors
    /// Any [`LoadError`]; on error nothing new stays attached or pinned,
    /// and an adopted data plane is left as it was.
    pub async fn start(opts: &Options) -> Result<Self, LoadError> {
        preflight::check_privileges()?;
        let ifindex = preflight::ifindex(&opts.iface)?;
        if preflight::ensure_bpffs(&opts.pin_path)? {
            warn!(
                "mounted bpffs at {} in lbd's mount namespace: if that namespace is private \
                 (ip netns exec, a container), the pins and with them the data plane end \
                 with lbd, and a restart cannot adopt them; mount bpffs on the host \
                 (systemd does at boot) to keep forwarding across restarts and crashes",
                preflight::BPFFS_ROOT
            );
        }
        let (lock, created_dir) = lock_pin_dir(&opts.pin_path)?;
        let started = Self::start_locked(opts, ifindex, lock, created_dir).await;
        if started.is_err()
            && created_dir
            && opts.pin_path.exists()
            && let Err(e) = std::fs::remove_dir(&opts.pin_path)
        {
            warn!(
                "pin directory {} left in place: {e}",
                opts.pin_path.display()
            );
        }
        started
    }

    async fn start_locked(
        opts: &Options,
        ifindex: u32,
        lock: File,
        created_dir: bool,
    ) -> Result<Self, LoadError> {
        let link_path = opts.pin_path.join(LINK_PIN);
        let arm1 = backend_interface(opts, ifindex)?;
        if opts.role == Role::Balancer && link_path.exists() {
            return Self::adopt(opts, ifindex, arm1, lock, link_path).await;
        }
        free_interface(&opts.iface, ifindex, opts.replace).await?;
        if let Some((iface, index)) = &arm1 {
            free_interface(iface, *index, opts.replace).await?;
        }
        let arm1_ifindex = arm1.as_ref().map_or(0, |a| a.1);

        let name = opts.role.program();
        let mut ebpf = match opts.role {
            Role::Balancer => {
                remove_stale_pins(&opts.pin_path)?;
                load_object_with(
                    &opts.sizes(arm1_ifindex),
                    opts.flow_events,
                    Some(&opts.pin_path),
                )
            }
            Role::Decap => Ebpf::load(crate::DECAP_OBJ),
        }
        .map_err(LoadError::Load)?;
        if opts.role == Role::Balancer {
            write_arms(&mut ebpf, ifindex, arm1_ifindex)?;
        }
        // From here on, dropping `dataplane` undoes what was done.
        let mut dataplane = Self {
            ebpf,
            program: name,
            link: None,
            iface: opts.iface.clone(),
            ifindex,
            mode: XdpMode::Default,
            backend: None,
            pin_dir: opts.pin_path.clone(),
            pins: Vec::new(),
            created_dir,
            origin: Origin::Fresh,
            _lock: lock,
        };
        if opts.role == Role::Balancer {
            // Pinned at load; the link, pinned last, shows it is attached.
            dataplane.pins = object_maps(crate::EBPF_OBJ)
                .into_iter()
                .map(|(n, _)| opts.pin_path.join(n))
                .collect();
        }
        let program = dataplane.xdp()?;
        load_program(program, name)?;
        let (link, mode) = attach(program, &opts.iface, opts)?;
        let prog_id = program.info().map(|i| i.id()).unwrap_or_default();
        // The backend interface: attached the same way, its link pinned
        // beside the first.
        let backend = match &arm1 {
            Some((iface, index)) => Some(attach_backend(program, iface, *index, opts)?),
            None => None,
        };
        // Ok: the balancer's link as an fd link (None: attached by netlink);
        // Err: the decapsulator's, owned by the program.
        let fd_link = if opts.role == Role::Balancer {
            Ok(program
                .take_link(link)
                .ok()
                .and_then(|l| FdLink::try_from(l).ok()))
        } else {
            Err(link)
        };
        dataplane.mode = mode;
        match fd_link {
            Ok(Some(fd_link)) => {
                // The stamp before the links' pins: a pinned link always
                // has its stamp beside it. The backend interface's link
                // first: a pinned `link` means the whole data plane is.
                let arm1_stamp = backend
                    .as_ref()
                    .map_or((0, 0), |(b, _)| (b.ifindex, mode_flags(b.mode)));
                dataplane.write_layout(opts, ifindex, mode, arm1_stamp)?;
                if let Some((mut arm, fd_link)) = backend {
                    let path = opts.pin_path.join(LINK_BACKEND_PIN);
                    arm.link = Some(pin_link(fd_link, path)?);
                    dataplane.backend = Some(arm);
                }
                dataplane.link = Some(pin_link(fd_link, link_path)?);
            }
            Ok(None) => {
                // aya fell back to netlink: this kernel has no XDP links.
                return Err(LoadError::NoLinks {
                    iface: opts.iface.clone(),
                });
            }
            Err(link) => {
                dataplane.link = Some(Attachment::Owned(link));
                dataplane.pin_maps()?;
            }
        }
        log_attached(name, prog_id, &opts.iface, ifindex, mode);
        for pin in &dataplane.pins {
            info!("pinned {}", pin.display());
        }
        Ok(dataplane)
    }

    /// Take over the data plane pinned at `opts.pin_path` (its link at
    /// `link_path`).
    async fn adopt(
        opts: &Options,
        ifindex: u32,
        arm1: Option<(String, u32)>,
        lock: File,
        link_path: PathBuf,
    ) -> Result<Self, LoadError> {
        let arm1_ifindex = arm1.as_ref().map_or(0, |a| a.1);
        let (stamp, fd_link, previous_prog_id) =
            check_pinned(opts, ifindex, arm1_ifindex, &link_path).await?;
        let backend_path = opts.pin_path.join(LINK_BACKEND_PIN);
        let backend_link = match &arm1 {
            Some((iface, index)) => {
                Some(check_link(opts, iface, *index, &backend_path, previous_prog_id).await?)
            }
            None => None,
        };
        let name = Role::Balancer.program();
        let mut ebpf = load_object_with(
            &opts.sizes(arm1_ifindex),
            opts.flow_events,
            Some(&opts.pin_path),
        )
        .map_err(LoadError::Load)?;
        write_arms(&mut ebpf, ifindex, arm1_ifindex)?;
        // Until the swap below succeeds, nothing of the running data plane
        // is touched: an error leaves it forwarding as it was.
        let program: &mut Xdp = ebpf
            .program_mut(name)
            .ok_or(LoadError::NoProgram(name))?
            .try_into()
            .map_err(program_err("loading"))?;
        load_program(program, name)?;
        // One syscall per link swaps the program under it: every packet
        // runs either the old program or ours. The backend interface's
        // first: its replies then already go the new program's way.
        let backend = match (arm1, backend_link) {
            (Some((iface, index)), Some(fd_link)) => {
                let link = swap_into(program, fd_link, &backend_path)?;
                Some(BackendArm {
                    iface,
                    ifindex: index,
                    mode: mode_of_flags(stamp.backend_xdp_flags),
                    link: Some(Attachment::Pinned {
                        link,
                        path: backend_path,
                    }),
                })
            }
            _ => None,
        };
        let link = swap_into(program, fd_link, &link_path)?;
        let prog_id = program.info().map(|i| i.id()).unwrap_or_default();
        let mode = mode_of_flags(stamp.xdp_flags);
        info!(
            "adopted the data plane pinned at {} (maps and connection table kept); \
             program {previous_prog_id} replaced by {name} (id {prog_id}) on {} (ifindex {ifindex}) in {} mode",
            opts.pin_path.display(),
            opts.iface,
            mode_name(mode)
        );
        if let Some(b) = &backend {
            info!(
                "and on the backend interface {} (ifindex {}) in {} mode",
                b.iface,
                b.ifindex,
                mode_name(b.mode)
            );
        }
        let mut pins: Vec<PathBuf> = object_maps(crate::EBPF_OBJ)
            .into_iter()
            .map(|(n, _)| opts.pin_path.join(n))
            .collect();
        pins.push(link_path.clone());
        Ok(Self {
            ebpf,
            program: name,
            link: Some(Attachment::Pinned {
                link,
                path: link_path,
            }),
            iface: opts.iface.clone(),
            ifindex,
            mode,
            backend,
            pin_dir: opts.pin_path.clone(),
            pins,
            // A clean stop removes the directory, whoever created it.
            created_dir: true,
            origin: Origin::Adopted { previous_prog_id },
            _lock: lock,
        })
    }

    fn xdp(&mut self) -> Result<&mut Xdp, LoadError> {
        let name = self.program;
        self.ebpf
            .program_mut(name)
            .ok_or(LoadError::NoProgram(name))?
            .try_into()
            .map_err(|source| LoadError::Program {
                program: name,
                what: "loading".into(),
                source,
            })
    }

    fn write_layout(
        &mut self,
        opts: &Options,
        ifindex: u32,
        mode: XdpMode,
        (backend_ifindex, backend_xdp_flags): (u32, u32),
    ) -> Result<(), LoadError> {
        let path = self.pin_dir.join(LAYOUT_MAP);
        let stamp = Layout {
            magic: LAYOUT_MAGIC,
            version: LAYOUT_VERSION,
            flow_sets: lb_common::flow::flow_sets(opts.flow_entries),
            backend_pairs: opts.backend_pairs,
            ifindex,
            xdp_flags: mode_flags(mode),
            nat_flows: opts.nat_flows,
            backend_ifindex,
            backend_xdp_flags,
        };
        let stamp_err = |e: aya::maps::MapError| LoadError::PinDir {
            path: path.clone(),
            source: io::Error::other(format!("writing the layout stamp: {e}")),
        };
        let map = self.ebpf.map_mut(LAYOUT_MAP).ok_or_else(|| {
            stamp_err(aya::maps::MapError::InvalidName {
                name: LAYOUT_MAP.into(),
            })
        })?;
        let mut array: Array<&mut MapData, Layout> = Array::try_from(map).map_err(stamp_err)?;
        array.set(0, stamp, 0).map_err(stamp_err)
    }

    fn pin_maps(&mut self) -> Result<(), LoadError> {
        let names: Vec<String> = self.ebpf.maps().map(|(n, _)| n.to_owned()).collect();
        for name in names {
            // Maps the loader creates for .bss/.data/.rodata are internal.
            if name.starts_with('.') {
                continue;
            }
            let path = self.pin_dir.join(&name);
            remove_stale_pin(&path, "left by an lbd that did not shut down cleanly")?;
            let map = self.ebpf.map(&name).expect("name listed by maps()");
            map.pin(&path).map_err(|source| LoadError::Pin {
                what: format!("map {name}"),
                path: path.clone(),
                source,
            })?;
            self.pins.push(path);
        }
        Ok(())
    }

    /// The loaded object, for map access.
    #[must_use]
    pub const fn ebpf(&self) -> &Ebpf {
        &self.ebpf
    }

    /// The loaded object, to take maps out of (after they are pinned).
    pub const fn ebpf_mut(&mut self) -> &mut Ebpf {
        &mut self.ebpf
    }

    /// Interface name and index we are attached to.
    #[must_use]
    pub fn interface(&self) -> (&str, u32) {
        (&self.iface, self.ifindex)
    }

    /// The backend interface we are attached to as well, if any: name,
    /// index and attach mode.
    #[must_use]
    pub fn backend_interface(&self) -> Option<(&str, u32, &'static str)> {
        self.backend
            .as_ref()
            .map(|b| (b.iface.as_str(), b.ifindex, mode_name(b.mode)))
    }

    /// Attach mode in effect ("native" or "generic").
    #[must_use]
    pub fn mode(&self) -> &'static str {
        mode_name(self.mode)
    }

    /// Directory holding the pins.
    #[must_use]
    pub fn pin_dir(&self) -> &Path {
        &self.pin_dir
    }

    /// Whether this data plane was adopted from an earlier lbd.
    #[must_use]
    pub const fn origin(&self) -> &Origin {
        &self.origin
    }

    /// Exit without detaching: the program stays attached through its
    /// pinned link and the maps stay pinned, forwarding on the last state
    /// until the next lbd adopts them (a restart or upgrade without a
    /// gap). The decapsulator, which is not pinned, is detached as usual.
    pub fn leave(mut self) {
        if !matches!(self.link, Some(Attachment::Pinned { .. })) {
            return; // the decapsulator: detached on drop, as in a stop
        }
        if let Some(Attachment::Pinned { link, path }) = self.link.take() {
            drop(link);
            drop(self.backend.take());
            self.pins.clear();
            self.created_dir = false;
            info!(
                "left the data plane running: {} stays attached through {}; the next lbd adopts it",
                self.program,
                path.display()
            );
        }
    }
}

/// Load `program` (named `name`) into the kernel, logging how long the
/// verifier took: most of a start's time.
fn load_program(program: &mut Xdp, name: &'static str) -> Result<(), LoadError> {
    let verifying = std::time::Instant::now();
    program.load().map_err(|source| LoadError::Program {
        program: name,
        what: "loading".into(),
        source,
    })?;
    info!(
        "program {name} loaded: the kernel verified it in {} ms",
        verifying.elapsed().as_millis()
    );
    Ok(())
}

fn log_attached(name: &str, prog_id: u32, iface: &str, ifindex: u32, mode: XdpMode) {
    info!(
        "attached XDP program {name} (id {prog_id}) to {iface} (ifindex {ifindex}) in {} mode",
        mode_name(mode)
    );
}

impl Drop for Dataplane {
    fn drop(&mut self) {
        let name = self.program;
        // The backend interface first: detached there, the balancer then
        // leaves the client side.
        if let Some(BackendArm {
            iface,
            link: Some(Attachment::Pinned { link, path }),
            ..
        }) = self.backend.take()
        {
            release_pinned(name, &iface, link, &path);
        }
        match self.link.take() {
            Some(Attachment::Pinned { link, path }) => {
                release_pinned(name, &self.iface, link, &path);
            }
            Some(Attachment::Owned(link)) => {
                let detached = self
                    .ebpf
                    .program_mut(name)
                    .and_then(|p| <&mut Xdp>::try_from(p).ok())
                    .map(|p| p.detach(link));
                match detached {
                    Some(Ok(())) => info!("detached {name} from {}", self.iface),
                    Some(Err(e)) => warn!("detaching {name} from {} failed: {e}", self.iface),
                    None => warn!("program {name} vanished before detach"),
                }
            }
            None => {}
        }
        for pin in self.pins.drain(..) {
            match std::fs::remove_file(&pin) {
                Ok(()) => info!("unpinned {}", pin.display()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => warn!("removing pin {} failed: {e}", pin.display()),
            }
        }
        if self.created_dir {
            match std::fs::remove_dir(&self.pin_dir) {
                Ok(()) => info!("removed pin directory {}", self.pin_dir.display()),
                Err(e) => warn!(
                    "pin directory {} left in place: {e}",
                    self.pin_dir.display()
                ),
            }
        }
    }
}

/// Attach the balancer (loaded) to the backend interface as well.
fn attach_backend(
    program: &mut Xdp,
    iface: &str,
    ifindex: u32,
    opts: &Options,
) -> Result<(BackendArm, FdLink), LoadError> {
    let (link, mode) = attach(program, iface, opts)?;
    let fd_link = program
        .take_link(link)
        .ok()
        .and_then(|l| FdLink::try_from(l).ok())
        .ok_or_else(|| LoadError::NoLinks {
            iface: iface.to_owned(),
        })?;
    let prog_id = program.info().map(|i| i.id()).unwrap_or_default();
    log_attached(opts.role.program(), prog_id, iface, ifindex, mode);
    Ok((
        BackendArm {
            iface: iface.to_owned(),
            ifindex,
            mode,
            link: None,
        },
        fd_link,
    ))
}

/// Detach the program of a pinned link: the pin goes first; closing our
/// descriptor then releases the link, which detaches the program.
fn release_pinned(name: &str, iface: &str, link: FdLink, path: &Path) {
    match std::fs::remove_file(path) {
        Ok(()) => {
            drop(link);
            info!("detached {name} from {iface}");
        }
        Err(e) => warn!(
            "removing the link pin {} failed ({e}): {name} stays attached to {iface}",
            path.display()
        ),
    }
}

/// Pin `link` at `path`.
fn pin_link(link: FdLink, path: PathBuf) -> Result<Attachment, LoadError> {
    let pinned = link.pin(&path).map_err(|source| LoadError::Pin {
        what: "the XDP link".into(),
        path: path.clone(),
        source,
    })?;
    Ok(Attachment::Pinned {
        link: pinned.into(),
        path,
    })
}

/// The error of the balancer program's step `what`.
fn program_err(what: &str) -> impl FnOnce(aya::programs::ProgramError) -> LoadError {
    let what = what.to_owned();
    move |source| LoadError::Program {
        program: Role::Balancer.program(),
        what,
        source,
    }
}

/// Swap `program` (loaded) into the pinned link `fd_link` (pinned at
/// `path`): one `BPF_LINK_UPDATE`.
fn swap_into(program: &mut Xdp, fd_link: FdLink, path: &Path) -> Result<FdLink, LoadError> {
    let link_err = |source| LoadError::Link {
        path: path.to_owned(),
        source,
    };
    let xdp_link = XdpLink::try_from(fd_link).map_err(link_err)?;
    let id = program
        .attach_to_link(xdp_link)
        .map_err(program_err("swapping into the pinned link"))?;
    let link = program
        .take_link(id)
        .map_err(program_err("taking the link"))?;
    FdLink::try_from(link).map_err(link_err)
}

/// `[dataplane] backend_interface`, if set: its name and index. Refused
/// when it is the client-side interface itself.
fn backend_interface(opts: &Options, ifindex: u32) -> Result<Option<(String, u32)>, LoadError> {
    let Some(iface) = opts.backend_iface.as_ref() else {
        return Ok(None);
    };
    let index = preflight::ifindex(iface)?;
    if index == ifindex {
        return Err(PreflightError::SameInterface {
            iface: iface.clone(),
        }
        .into());
    }
    Ok(Some((iface.clone(), index)))
}

/// Fill map `arms` (`lb_common::config::ARMS_MAP`): arm 0 the client-side
/// interface, arm 1 the backend interface (none: left empty).
fn write_arms(ebpf: &mut Ebpf, ifindex: u32, arm1_ifindex: u32) -> Result<(), LoadError> {
    use lb_common::config::ARMS_MAP;
    if arm1_ifindex == 0 {
        return Ok(());
    }
    let map = ebpf
        .map_mut(ARMS_MAP)
        .ok_or_else(|| LoadError::Arms(format!("the object has no map {ARMS_MAP}")))?;
    let mut arms: aya::maps::DevMap<&mut MapData> =
        aya::maps::DevMap::try_from(map).map_err(|e| LoadError::Arms(e.to_string()))?;
    for (arm, index) in [(0, ifindex), (1, arm1_ifindex)] {
        arms.set(arm, index, None, 0)
            .map_err(|e| LoadError::Arms(e.to_string()))?;
    }
    Ok(())
}

/// Refuse an interface that already runs an XDP program, or detach it
/// with `--replace`.
async fn free_interface(iface: &str, ifindex: u32, replace: bool) -> Result<(), LoadError> {
    if let Some(existing) = preflight::attached_xdp(iface, ifindex).await? {
        let prog_name = preflight::program_name(existing.prog_id);
        if !replace {
            return Err(PreflightError::XdpBusy {
                iface: iface.to_owned(),
                prog_id: existing.prog_id,
                prog_name,
                mode: existing.mode,
            }
            .into());
        }
        preflight::detach_xdp(iface, ifindex, existing.mode_flags).await?;
        info!(
            "--replace: detached XDP program {} ({prog_name}) from {iface}",
            existing.prog_id
        );
    }
    Ok(())
}

/// The stamp, link and program of the data plane pinned at
/// `opts.pin_path`, if this lbd may adopt it.
async fn check_pinned(
    opts: &Options,
    ifindex: u32,
    arm1_ifindex: u32,
    link_path: &Path,
) -> Result<(Layout, FdLink, u32), LoadError> {
    let refuse = |reason: String, hint: &str| LoadError::Adopt {
        path: opts.pin_path.clone(),
        reason,
        hint: hint.to_owned(),
    };
    let stamp = read_layout(&opts.pin_path).map_err(|reason| refuse(reason, ""))?;
    check_layout(&stamp, opts, ifindex, arm1_ifindex)
        .map_err(|(reason, hint)| refuse(reason, hint))?;
    check_shapes(&opts.pin_path, opts).map_err(|reason| refuse(reason, ""))?;
    let (fd_link, previous_prog_id) = open_link(opts, &opts.iface, ifindex, link_path).await?;
    Ok((stamp, fd_link, previous_prog_id))
}

/// The pinned link at `link_path` on `iface`, checked to be attached
/// there still, and its program's id.
async fn open_link(
    opts: &Options,
    iface: &str,
    ifindex: u32,
    link_path: &Path,
) -> Result<(FdLink, u32), LoadError> {
    let refuse = |reason: String| LoadError::Adopt {
        path: opts.pin_path.clone(),
        reason,
        hint: String::new(),
    };
    let pinned = PinnedLink::from_pin(link_path).map_err(|source| LoadError::Link {
        path: link_path.to_owned(),
        source,
    })?;
    let fd_link = FdLink::from(pinned);
    let info: LinkInfo = fd_link.info().map_err(|source| LoadError::Link {
        path: link_path.to_owned(),
        source,
    })?;
    let prog_id = info.program_id();
    // The link still attached where it was? (A deleted and re-created
    // interface leaves it defunct.)
    match preflight::attached_xdp(iface, ifindex).await? {
        Some(a) if a.prog_id == prog_id => Ok((fd_link, prog_id)),
        Some(a) => Err(refuse(format!(
            "{iface} runs XDP program {} ({}), not the pinned link's program {prog_id}",
            a.prog_id,
            preflight::program_name(a.prog_id)
        ))),
        None => Err(refuse(format!(
            "its link is no longer attached to {iface} (the interface was re-created?)"
        ))),
    }
}

/// The backend interface's pinned link, checked as the first one is, and
/// to run the same program (`prog_id`).
async fn check_link(
    opts: &Options,
    iface: &str,
    ifindex: u32,
    link_path: &Path,
    prog_id: u32,
) -> Result<FdLink, LoadError> {
    if !link_path.exists() {
        return Err(LoadError::Adopt {
            path: opts.pin_path.clone(),
            reason: format!(
                "it has no link on the backend interface {iface} ({} is missing)",
                link_path.display()
            ),
            hint: String::new(),
        });
    }
    let (fd_link, id) = open_link(opts, iface, ifindex, link_path).await?;
    if id != prog_id {
        return Err(LoadError::Adopt {
            path: opts.pin_path.clone(),
            reason: format!(
                "its link on {iface} runs program {id}, the one on {} program {prog_id}",
                opts.iface
            ),
            hint: String::new(),
        });
    }
    Ok(fd_link)
}

/// The stamp of the data plane pinned in `dir`.
fn read_layout(dir: &Path) -> Result<Layout, String> {
    let path = dir.join(LAYOUT_MAP);
    if !path.exists() {
        return Err(format!(
            "it has no layout stamp ({} is missing: pinned by an older lbd?)",
            path.display()
        ));
    }
    let data = MapData::from_pin(&path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    let array: Array<MapData, Layout> = Array::try_from(aya::maps::Map::Array(data))
        .map_err(|e| format!("{} is not a layout stamp: {e}", path.display()))?;
    array
        .get(&0, 0)
        .map_err(|e| format!("reading {}: {e}", path.display()))
}

/// Whether `stamp` describes a data plane this lbd, asked for `opts` on
/// interface `ifindex`, can take over; if not, why and how to fix it.
fn check_layout(
    stamp: &Layout,
    opts: &Options,
    ifindex: u32,
    arm1_ifindex: u32,
) -> Result<(), (String, &'static str)> {
    if stamp.magic != LAYOUT_MAGIC {
        return Err(("its layout stamp is empty or not lb's".into(), ""));
    }
    if stamp.version != LAYOUT_VERSION {
        return Err((
            format!(
                "its maps have layout version {}, this lbd uses version {LAYOUT_VERSION}",
                stamp.version
            ),
            ", or keep running the lbd version that created it",
        ));
    }
    let sets = lb_common::flow::flow_sets(opts.flow_entries);
    if stamp.flow_sets != sets {
        return Err((
            format!(
                "its connection table holds {} flows, the configuration asks for {} ([dataplane] conntrack_entries)",
                u64::from(stamp.flow_sets) * lb_common::flow::FLOW_WAYS as u64,
                u64::from(sets) * lb_common::flow::FLOW_WAYS as u64
            ),
            ", or set conntrack_entries back",
        ));
    }
    if stamp.nat_flows != opts.nat_flows {
        return Err((
            format!(
                "its NAT table holds {} flows, the configuration asks for {} ([dataplane] nat_flows)",
                stamp.nat_flows, opts.nat_flows
            ),
            ", or set nat_flows back",
        ));
    }
    if stamp.backend_pairs != opts.backend_pairs {
        return Err((
            format!(
                "it has {} backend slots, the configuration asks for {} ([dataplane] backend_pairs)",
                stamp.backend_pairs, opts.backend_pairs
            ),
            ", or set backend_pairs back",
        ));
    }
    if stamp.ifindex != ifindex {
        return Err((
            format!(
                "it is attached to interface index {}, the configuration names {} (index {ifindex})",
                stamp.ifindex, opts.iface
            ),
            ", or give this lbd its own --pin-path",
        ));
    }
    if stamp.backend_ifindex != arm1_ifindex {
        let was = match stamp.backend_ifindex {
            0 => "no backend interface".to_owned(),
            i => format!("backend interface index {i}"),
        };
        let now = match (&opts.backend_iface, arm1_ifindex) {
            (Some(name), i) if i != 0 => format!("{name} (index {i})"),
            _ => "none".to_owned(),
        };
        return Err((
            format!("it runs with {was}, the configuration's backend_interface is {now}"),
            ", or set backend_interface back",
        ));
    }
    let want = match opts.mode {
        AttachMode::Native => Some(XdpMode::Driver),
        AttachMode::Generic => Some(XdpMode::Skb),
        AttachMode::Auto => None,
    };
    let have = mode_of_flags(stamp.xdp_flags);
    if want.is_some_and(|w| w != have) {
        return Err((
            format!(
                "it is attached in {} mode, the configuration asks for {}",
                mode_name(have),
                mode_name(want.unwrap_or(have))
            ),
            ", or set xdp_mode back",
        ));
    }
    Ok(())
}

/// Every pinned map that this build also declares has the key and value
/// sizes (and, where not set at load, the size) this build expects.
fn check_shapes(dir: &Path, opts: &Options) -> Result<(), String> {
    use lb_common::backend::{BACKENDS_MAP, STATS_BACKEND_MAP};
    for (name, (key, value, entries)) in object_maps(crate::EBPF_OBJ) {
        let path = dir.join(&name);
        if !path.exists() {
            // New in this build: created and pinned at load.
            continue;
        }
        let info =
            MapInfo::from_pin(&path).map_err(|e| format!("reading {}: {e}", path.display()))?;
        let entries = match name.as_str() {
            lb_common::flow::FLOWS_MAP => lb_common::flow::flow_sets(opts.flow_entries),
            BACKENDS_MAP | STATS_BACKEND_MAP => opts.backend_pairs,
            lb_common::nat::NAT_MAP => 2 * opts.nat_flows,
            _ => entries,
        };
        let found = (info.key_size(), info.value_size(), info.max_entries());
        if found != (key, value, entries) {
            return Err(format!(
                "map {name} has key/value/entries {}/{}/{}, this lbd expects {key}/{value}/{entries}",
                found.0, found.1, found.2
            ));
        }
    }
    Ok(())
}

/// Remove pins in `dir` that no live data plane owns: maps a crashed lbd
/// of a version without pinned links left (nothing runs them).
fn remove_stale_pins(dir: &Path) -> Result<(), LoadError> {
    for (name, _) in object_maps(crate::EBPF_OBJ) {
        remove_stale_pin(&dir.join(&name), "(no pinned link: nothing was running it)")?;
    }
    Ok(())
}

/// Remove the pin at `path` if there is one, logging `why`.
fn remove_stale_pin(path: &Path, why: &str) -> Result<(), LoadError> {
    if path.exists() {
        std::fs::remove_file(path).map_err(|source| LoadError::PinDir {
            path: path.to_owned(),
            source,
        })?;
        warn!("removed stale pin {} {why}", path.display());
    }
    Ok(())
}

/// Why [`detach_pinned`] failed.
#[derive(Debug, thiserror::Error)]
pub enum DetachError {
    /// A running lbd holds the directory.
    #[error("an lbd is running on {0}; stop it (SIGTERM detaches the data plane)")]
    Busy(PathBuf),
    /// Nothing is pinned there.
    #[error("no data plane is pinned at {0}")]
    Nothing(PathBuf),
    /// Removing a pin failed.
    #[error("removing {path}")]
    Remove {
        /// The pin.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// Stop the data plane an earlier lbd left pinned at `dir` (crashed, or
/// exited for a restart that did not come): the program is detached and
/// every pin removed. Refused while an lbd runs on `dir`.
///
/// # Errors
/// [`DetachError`].
pub fn detach_pinned(dir: &Path) -> Result<Vec<PathBuf>, DetachError> {
    if !dir.join(LINK_PIN).exists() && !dir.join(LAYOUT_MAP).exists() {
        return Err(DetachError::Nothing(dir.to_owned()));
    }
    let (_lock, _) = lock_pin_dir(dir).map_err(|e| match e {
        LoadError::PinPathBusy { path } => DetachError::Busy(path),
        LoadError::PinDir { path, source } => DetachError::Remove { path, source },
        other => DetachError::Remove {
            path: dir.to_owned(),
            source: io::Error::other(other.to_string()),
        },
    })?;
    let mut removed = Vec::new();
    // The link first: removing its pin detaches the program (nothing else
    // holds it), so no packet meets half-removed maps.
    let names = [LINK_BACKEND_PIN, LINK_PIN]
        .into_iter()
        .map(str::to_owned)
        .chain(object_maps(crate::EBPF_OBJ).into_iter().map(|(n, _)| n));
    for name in names {
        let path = dir.join(name);
        match std::fs::remove_file(&path) {
            Ok(()) => removed.push(path),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => return Err(DetachError::Remove { path, source }),
        }
    }
    if let Err(e) = std::fs::remove_dir(dir) {
        warn!("pin directory {} left in place: {e}", dir.display());
    }
    Ok(removed)
}

/// Attach to `iface` in the requested mode; `auto` tries native first.
fn attach(
    program: &mut Xdp,
    iface: &str,
    opts: &Options,
) -> Result<(XdpLinkId, XdpMode), LoadError> {
    let try_mode = |program: &mut Xdp, mode: XdpMode| {
        program
            .attach(iface, mode)
            .map(|link| (link, mode))
            .map_err(|source| LoadError::Program {
                program: opts.role.program(),
                what: format!("attaching to {iface} in {} mode", mode_name(mode)),
                source,
            })
    };
    match opts.mode {
        AttachMode::Native => try_mode(program, XdpMode::Driver),
        AttachMode::Generic => try_mode(program, XdpMode::Skb),
        AttachMode::Auto => try_mode(program, XdpMode::Driver).or_else(|native_err| {
            let attached = try_mode(program, XdpMode::Skb)?;
            info!(
                "native XDP unavailable on {iface} ({}); using generic mode",
                error_chain(&native_err)
            );
            Ok(attached)
        }),
    }
}

/// `err: cause: cause` on one line, for logs.
#[must_use]
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// Create the pin directory if needed and take an exclusive, non-blocking
/// `flock` on it. Returns the locked handle and whether we created it.
fn lock_pin_dir(path: &Path) -> Result<(File, bool), LoadError> {
    let dir_err = |source| LoadError::PinDir {
        path: path.to_owned(),
        source,
    };
    let created = !path.exists();
    std::fs::create_dir_all(path).map_err(dir_err)?;
    let dir = File::open(path).map_err(dir_err)?;
    // SAFETY: flock on an fd we own.
    if unsafe { libc::flock(dir.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let err = io::Error::last_os_error();
        return Err(if err.kind() == io::ErrorKind::WouldBlock {
            LoadError::PinPathBusy {
                path: path.to_owned(),
            }
        } else {
            dir_err(err)
        });
    }
    Ok((dir, created))
}
