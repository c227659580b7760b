//! Load the XDP program, attach it, pin its maps; undo it all on drop.
//!
//! [`Dataplane::start`] runs the [`preflight`](crate::dataplane::preflight) checks, takes
//! an exclusive lock on the pin directory (so two `lbd`s cannot share one),
//! clears pins a crashed `lbd` left behind, loads the object, attaches the
//! program and pins every map. Dropping the [`Dataplane`] detaches the
//! program and removes exactly the pins (and directory) it created.

use std::{
    fs::File,
    io,
    os::fd::AsRawFd as _,
    path::{Path, PathBuf},
};

use aya::{
    Ebpf, EbpfLoader,
    programs::{Xdp, XdpMode, xdp::XdpLinkId},
};
use tracing::{info, warn};

use crate::dataplane::preflight::{self, PreflightError};

/// Name of the balancer's XDP program in the object.
pub const PROGRAM: &str = "lb_xdp";
/// Name of the backends' decapsulator program in the object.
pub const DECAP_PROGRAM: &str = "lb_decap";
/// Default pin directory.
pub const DEFAULT_PIN_PATH: &str = "/sys/fs/bpf/lb";
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
    /// Pinning a map failed.
    #[error("pinning map {map} at {path} failed")]
    Pin {
        /// The map.
        map: String,
        /// Where.
        path: PathBuf,
        /// Why.
        #[source]
        source: aya::pin::PinError,
    },
    /// The program is missing from the object (a build problem).
    #[error("the BPF object has no program {0}")]
    NoProgram(&'static str),
}

/// A running data plane: program attached, maps pinned.
pub struct Dataplane {
    ebpf: Ebpf,
    program: &'static str,
    link: Option<XdpLinkId>,
    iface: String,
    ifindex: u32,
    mode: XdpMode,
    pin_dir: PathBuf,
    pins: Vec<PathBuf>,
    created_dir: bool,
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

/// The BPF object with a connection table for `flow_entries` flows: the
/// `flows` map's size (in sets) and the program's `FLOW_SET_MASK` are set
/// together, so they always agree. Loads the maps; programs are loaded by
/// name afterwards.
///
/// # Errors
/// As [`EbpfLoader::load`].
pub fn load_object(flow_entries: u32, backend_pairs: u32) -> Result<Ebpf, aya::EbpfError> {
    use lb_common::backend::{BACKENDS_MAP, STATS_BACKEND_MAP};
    let sets = lb_common::flow::flow_sets(flow_entries);
    let mask = sets - 1;
    EbpfLoader::new()
        .map_max_entries(lb_common::flow::FLOWS_MAP, sets)
        .map_max_entries(BACKENDS_MAP, backend_pairs)
        .map_max_entries(STATS_BACKEND_MAP, backend_pairs)
        .override_global(lb_common::flow::FLOW_SET_MASK_SYMBOL, &mask, true)
        .load(crate::EBPF_OBJ)
}

impl Dataplane {
    /// Check, load, attach, pin. Logs each step.
    ///
    /// # Errors
    /// Any [`LoadError`]; nothing stays attached or pinned when this fails.
    pub async fn start(opts: &Options) -> Result<Self, LoadError> {
        preflight::check_privileges()?;
        let ifindex = preflight::ifindex(&opts.iface)?;
        if preflight::ensure_bpffs(&opts.pin_path)? {
            info!("mounted bpffs at {}", preflight::BPFFS_ROOT);
        }
        let (lock, created_dir) = lock_pin_dir(&opts.pin_path)?;
        let started = Self::start_locked(opts, ifindex, lock, created_dir).await;
        if started.is_err()
            && created_dir
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
        if let Some(existing) = preflight::attached_xdp(&opts.iface, ifindex).await? {
            let prog_name = preflight::program_name(existing.prog_id);
            if !opts.replace {
                return Err(PreflightError::XdpBusy {
                    iface: opts.iface.clone(),
                    prog_id: existing.prog_id,
                    prog_name,
                    mode: existing.mode,
                }
                .into());
            }
            preflight::detach_xdp(&opts.iface, ifindex, existing.mode_flags).await?;
            info!(
                "--replace: detached XDP program {} ({prog_name}) from {}",
                existing.prog_id, opts.iface
            );
        }

        let name = opts.role.program();
        let mut ebpf = match opts.role {
            Role::Balancer => load_object(opts.flow_entries, opts.backend_pairs),
            Role::Decap => Ebpf::load(crate::DECAP_OBJ),
        }
        .map_err(LoadError::Load)?;
        let load_err = |source| LoadError::Program {
            program: name,
            what: "loading".into(),
            source,
        };
        let program: &mut Xdp = ebpf
            .program_mut(name)
            .ok_or(LoadError::NoProgram(name))?
            .try_into()
            .map_err(load_err)?;
        program.load().map_err(load_err)?;
        let (link, mode) = attach(program, opts)?;
        let prog_id = program.info().map(|i| i.id()).unwrap_or_default();
        info!(
            "attached XDP program {name} (id {prog_id}) to {} (ifindex {ifindex}) in {} mode",
            opts.iface,
            mode_name(mode)
        );

        let mut dataplane = Self {
            ebpf,
            program: name,
            link: Some(link),
            iface: opts.iface.clone(),
            ifindex,
            mode,
            pin_dir: opts.pin_path.clone(),
            pins: Vec::new(),
            created_dir,
            _lock: lock,
        };
        dataplane.pin_maps()?;
        Ok(dataplane)
    }

    fn pin_maps(&mut self) -> Result<(), LoadError> {
        let names: Vec<String> = self.ebpf.maps().map(|(n, _)| n.to_owned()).collect();
        for name in names {
            // Maps the loader creates for .bss/.data/.rodata are internal.
            if name.starts_with('.') {
                continue;
            }
            let path = self.pin_dir.join(&name);
            if path.exists() {
                std::fs::remove_file(&path).map_err(|source| LoadError::PinDir {
                    path: path.clone(),
                    source,
                })?;
                warn!(
                    "removed stale pin {} left by an lbd that did not shut down cleanly",
                    path.display()
                );
            }
            let map = self.ebpf.map(&name).expect("name listed by maps()");
            map.pin(&path).map_err(|source| LoadError::Pin {
                map: name.clone(),
                path: path.clone(),
                source,
            })?;
            info!("pinned map {name} at {}", path.display());
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
}

impl Drop for Dataplane {
    fn drop(&mut self) {
        if let Some(link) = self.link.take() {
            let name = self.program;
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
        for pin in self.pins.drain(..) {
            match std::fs::remove_file(&pin) {
                Ok(()) => info!("unpinned {}", pin.display()),
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

/// Attach in the requested mode; `auto` tries native first.
fn attach(program: &mut Xdp, opts: &Options) -> Result<(XdpLinkId, XdpMode), LoadError> {
    let try_mode = |program: &mut Xdp, mode: XdpMode| {
        program
            .attach(&opts.iface, mode)
            .map(|link| (link, mode))
            .map_err(|source| LoadError::Program {
                program: opts.role.program(),
                what: format!("attaching to {} in {} mode", opts.iface, mode_name(mode)),
                source,
            })
    };
    match opts.mode {
        AttachMode::Native => try_mode(program, XdpMode::Driver),
        AttachMode::Generic => try_mode(program, XdpMode::Skb),
        AttachMode::Auto => try_mode(program, XdpMode::Driver).or_else(|native_err| {
            let attached = try_mode(program, XdpMode::Skb)?;
            info!(
                "native XDP unavailable on {} ({}); using generic mode",
                opts.iface,
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
