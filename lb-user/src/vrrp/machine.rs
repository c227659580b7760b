//! The VRRP state machine of one virtual router instance: RFC 5798 §6.4
//! with keepalived's practical semantics (preempt / nopreempt /
//! `preempt_delay`, tracked scripts and interfaces with weights, the fault
//! state, VRRPv2 interval and authentication checks).
//!
//! Pure: no sockets, no sleeps, no clock. The driver feeds an [`Event`]
//! together with the current time (`now`, from any monotonic source; tests
//! inject it) into [`Machine::handle`] and carries out the returned
//! [`Action`]s in order. [`Machine::next_deadline`] says when the machine
//! next needs [`Event::Timer`] (or [`Machine::tick`]); waking late is safe,
//! the timer then fires at the late `now`.
//!
//! Timers (RFC 5798 §6.1, in keepalived's integer arithmetic):
//! - v3: `Skew_Time = ((256 - priority) * Master_Adver_Interval) / 256`
//!   centiseconds, truncated to whole centiseconds;
//! - v2 (RFC 3768): `Skew_Time = (256 - priority) / 256` seconds, in microseconds;
//! - `Master_Down_Interval = 3 * Master_Adver_Interval + Skew_Time`, where
//!   `priority` is the effective priority and, in v3, a backup adopts the
//!   master's advertised interval as `Master_Adver_Interval`.
//!
//! Received adverts are validated here after the socket layer has checked
//! TTL and checksum ([`super::wire::parse`]): another VRID is silently not
//! ours; a version, authentication, v2 interval or address-set mismatch is a
//! [`RejectCause`], counted in [`Stats`] and reported as
//! [`Action::Rejected`] (with `first_time` so the driver can log once per
//! cause).

use std::fmt;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::wire::{Auth, Family, Kind, Repr, Version};

/// The owner priority: the router owns the virtual addresses.
pub const PRIORITY_OWNER: u8 = 255;

/// Largest tracking weight magnitude (keepalived: -253..=253).
pub const MAX_WEIGHT: i32 = 253;

/// A tracked object (keepalived `track_script`, `track_interface`,
/// `track_process`, `track_file`).
///
/// Up/down objects ([`Event::Track`]): weight 0: the object failing puts
/// the instance in [`State::Fault`]; weight > 0: added to the priority
/// while the object is up; weight < 0: added (so subtracted) while the
/// object is down.
///
/// Valued objects (`track_file`, [`Event::TrackValue`]): weight 0: a
/// non-zero value is a fault; otherwise `value * weight` is added to the
/// priority, and a product below -253 is a fault (keepalived's
/// `track_file`). Until its first value, a valued object counts as up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Track {
    /// Name for logs and transition reasons (script or interface name).
    pub name: String,
    /// Weight, -253..=253.
    pub weight: i32,
}

/// Configuration of one VRRP instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Virtual router id, 1..=255.
    pub vrid: u8,
    /// Base priority, 1..=255; 255 marks the address owner, which starts as
    /// master and whose priority tracking never changes.
    pub priority: u8,
    /// Our advertisement interval. v3: a multiple of 10 ms up to 40.95 s
    /// (sub-second allowed); v2: whole seconds, 1..=255.
    pub advert_interval: Duration,
    /// VRRP version, [`Version::V2`] or [`Version::V3`].
    pub version: Version,
    /// Whether a higher-priority backup takes over from a lower-priority
    /// master that is still advertising (keepalived default: yes).
    pub preempt: bool,
    /// How long after startup, becoming backup, or first seeing a
    /// lower-priority master a backup waits before it may preempt it.
    pub preempt_delay: Duration,
    /// Our primary address on the interface: the advert source, and the
    /// tie-break between equal priorities (higher wins). IPv6: link-local.
    pub primary_address: IpAddr,
    /// The virtual addresses advertised, all of the primary address's
    /// family. Peers must advertise exactly this set (keepalived drops
    /// adverts that differ).
    pub vips: Vec<IpAddr>,
    /// v2 `auth_type PASS` password (first 8 bytes used); `None` for no
    /// authentication. Ignored in v3, which has none (as keepalived).
    pub auth_pass: Option<String>,
    /// Tracked objects, addressed by index in [`Event::Track`]; all start up.
    pub tracks: Vec<Track>,
}

impl Config {
    /// A v3 configuration with keepalived's defaults: 1 s interval,
    /// preempt, no preempt delay, no authentication, nothing tracked.
    #[must_use]
    pub fn new(vrid: u8, priority: u8, primary_address: IpAddr, vips: Vec<IpAddr>) -> Config {
        Config {
            vrid,
            priority,
            advert_interval: Duration::from_secs(1),
            version: Version::V3,
            preempt: true,
            preempt_delay: Duration::ZERO,
            primary_address,
            vips,
            auth_pass: None,
            tracks: Vec::new(),
        }
    }

    /// Checks the configuration.
    ///
    /// # Errors
    /// The first [`ConfigError`] found.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_vrid(self.vrid)?;
        check_priority(self.priority)?;
        check_advert_interval(self.version, self.advert_interval)?;
        check_version_family(self.version, self.primary_address.is_ipv6())?;
        let family = Family::of(&self.primary_address);
        if let Some(vip) = self.vips.iter().find(|v| Family::of(v) != family) {
            return Err(ConfigError::MixedFamilies { vip: *vip });
        }
        if self.vips.len() > 255 {
            return Err(ConfigError::TooManyVips {
                count: self.vips.len(),
            });
        }
        for (i, vip) in self.vips.iter().enumerate() {
            if self.vips[..i].contains(vip) {
                return Err(ConfigError::DuplicateVip { vip: *vip });
            }
        }
        for t in &self.tracks {
            check_weight(&t.name, t.weight)?;
        }
        Ok(())
    }
}

// The ranges of the fields, one function each: [`Config::validate`] uses
// them, and so does the configuration file's validation
// (`crate::config`), which words the errors for its fields.

/// The virtual router id: 1..=255.
///
/// # Errors
/// [`ConfigError::Vrid`] for 0.
pub const fn check_vrid(vrid: u8) -> Result<(), ConfigError> {
    if vrid == 0 {
        return Err(ConfigError::Vrid);
    }
    Ok(())
}

/// The base priority: 1..=255 (0 is what a master sends when it stops).
///
/// # Errors
/// [`ConfigError::Priority`] for 0.
pub const fn check_priority(priority: u8) -> Result<(), ConfigError> {
    if priority == 0 {
        return Err(ConfigError::Priority);
    }
    Ok(())
}

/// The version: 2 or 3.
///
/// # Errors
/// [`ConfigError::Version`] for any other.
pub const fn check_version(version: Version) -> Result<(), ConfigError> {
    match version {
        Version::V2 | Version::V3 => Ok(()),
        Version::Unknown(version) => Err(ConfigError::Version { version }),
    }
}

/// The advertisement interval for `version`: v3 a multiple of 10 ms from
/// 10 ms to 40.95 s; v2 whole seconds from 1 s to 255 s.
///
/// # Errors
/// [`ConfigError::Interval`], or [`ConfigError::Version`] for a version
/// other than 2 and 3.
pub fn check_advert_interval(version: Version, interval: Duration) -> Result<(), ConfigError> {
    let (ok, v) = match version {
        Version::V3 => (
            interval >= Duration::from_millis(10)
                && interval <= Duration::from_millis(40_950)
                && interval.subsec_nanos().is_multiple_of(10_000_000),
            3,
        ),
        Version::V2 => (
            interval >= Duration::from_secs(1)
                && interval <= Duration::from_secs(255)
                && interval.subsec_nanos() == 0,
            2,
        ),
        Version::Unknown(version) => return Err(ConfigError::Version { version }),
    };
    if ok {
        Ok(())
    } else {
        Err(ConfigError::Interval {
            interval,
            version: v,
        })
    }
}

/// VRRPv2 is IPv4 only.
///
/// # Errors
/// [`ConfigError::V2Ipv6`] for version 2 with IPv6 addresses.
pub const fn check_version_family(version: Version, ipv6: bool) -> Result<(), ConfigError> {
    if matches!(version, Version::V2) && ipv6 {
        return Err(ConfigError::V2Ipv6);
    }
    Ok(())
}

/// A tracking weight: -253..=253 ([`MAX_WEIGHT`]).
///
/// # Errors
/// [`ConfigError::Weight`] naming `name`.
pub fn check_weight(name: &str, weight: i32) -> Result<(), ConfigError> {
    if (-MAX_WEIGHT..=MAX_WEIGHT).contains(&weight) {
        return Ok(());
    }
    Err(ConfigError::Weight {
        name: name.to_owned(),
        weight,
    })
}

/// A configuration the machine refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// VRID 0 is reserved.
    #[error("virtual_router_id must be 1..=255")]
    Vrid,
    /// Priority 0 is reserved for "master releases".
    #[error("priority must be 1..=255")]
    Priority,
    /// The interval does not fit the version's field.
    #[error(
        "advert_interval {interval:?} is not valid for VRRPv{version} (v3: 10ms..=40.95s in 10ms steps; v2: 1..=255 whole seconds)"
    )]
    Interval {
        /// The configured interval.
        interval: Duration,
        /// The configured version.
        version: u8,
    },
    /// Only versions 2 and 3 exist.
    #[error("VRRP version {version} is not supported (2 or 3)")]
    Version {
        /// The configured version.
        version: u8,
    },
    /// VRRPv2 is IPv4 only.
    #[error("VRRPv2 is IPv4 only")]
    V2Ipv6,
    /// A virtual address of another family than the primary address.
    #[error("virtual address {vip} is not of the instance's address family")]
    MixedFamilies {
        /// The offending address.
        vip: IpAddr,
    },
    /// The count field is one byte.
    #[error("{count} virtual addresses; an advert carries at most 255")]
    TooManyVips {
        /// Addresses configured.
        count: usize,
    },
    /// A virtual address listed twice.
    #[error("virtual address {vip} is listed twice")]
    DuplicateVip {
        /// The duplicated address.
        vip: IpAddr,
    },
    /// A tracking weight out of range.
    #[error("track {name}: weight {weight} is outside -253..=253")]
    Weight {
        /// The track's name.
        name: String,
        /// The configured weight.
        weight: i32,
    },
}

/// The state of the instance (RFC 5798 §6.4, plus keepalived's fault state).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// Not running: before [`Event::Startup`] and after [`Event::Shutdown`].
    Initialize,
    /// Watching the master; takes over when it goes silent.
    Backup,
    /// Holding the virtual addresses and advertising.
    Master,
    /// A weight-0 tracked object is down: no addresses, no adverts.
    Fault,
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            State::Initialize => "INIT",
            State::Backup => "BACKUP",
            State::Master => "MASTER",
            State::Fault => "FAULT",
        })
    }
}

/// An input to the machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Start the instance (from [`State::Initialize`]; ignored otherwise).
    Startup,
    /// An advertisement received from `source` (the IP source address),
    /// already parsed and checksum-verified by the socket layer.
    Advert {
        /// IP source address of the advert.
        source: IpAddr,
        /// The advert.
        advert: Repr,
    },
    /// Fire the timers that are due ([`Machine::next_deadline`]).
    Timer,
    /// Tracked object `index` (into [`Config::tracks`]) is now up or down.
    /// Unknown indices are ignored.
    Track {
        /// Index into [`Config::tracks`].
        index: usize,
        /// Whether the object is now in its good state.
        up: bool,
    },
    /// Tracked object `index` (into [`Config::tracks`]) now has the value
    /// `value` (keepalived `track_file`). Unknown indices are ignored.
    TrackValue {
        /// Index into [`Config::tracks`].
        index: usize,
        /// The value read.
        value: i64,
    },
    /// An order of the instance's sync group ([`super::sync`]).
    Sync {
        /// The group's name (for the transition's reason).
        group: String,
        /// What the group asks.
        order: SyncOrder,
    },
    /// Stop the instance: a master releases (priority-0 advert) and removes
    /// its addresses.
    Shutdown,
    /// Hold back (true) or allow (false) preempting a lower-priority
    /// master: held while this node's connection table is not yet synced
    /// (`crate::sync`), so a returning master does not take the VIPs with a
    /// cold table. A master that falls silent is still replaced.
    PreemptHold(bool),
    /// A new base priority (a reload that changed only the priority):
    /// applied in place, as a tracked object's weight is, with no
    /// transition of its own. A master advertises it from its next advert
    /// on (a backup now higher preempts, a lower one stays backup); a
    /// backup's skew follows from its next reset. Ignored for 0, and to or
    /// from 255 (an address owner's role changes: restart the instance).
    SetPriority(u8),
}

/// What a sync group asks of one of its members (keepalived
/// `vrrp_sync.c`); [`super::sync::SyncGroup`] decides when.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SyncOrder {
    /// Another member is in FAULT: go to FAULT too (a master releases
    /// with a priority-0 advert and removes its addresses) and stay there
    /// until [`SyncOrder::Recover`].
    Fault,
    /// No member is in FAULT of its own any more: leave a FAULT forced by
    /// [`SyncOrder::Fault`] (to BACKUP, or MASTER for an address owner),
    /// unless the instance's own tracking still puts it in FAULT.
    Recover,
    /// Another member became MASTER: a BACKUP becomes MASTER at once.
    Master,
    /// Another member left MASTER for BACKUP: a MASTER steps down to
    /// BACKUP.
    Backup,
}

impl fmt::Display for SyncOrder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SyncOrder::Fault => "another member is in FAULT",
            SyncOrder::Recover => "no member is in FAULT any more",
            SyncOrder::Master => "another member became MASTER",
            SyncOrder::Backup => "another member became BACKUP",
        })
    }
}

/// Why an advert was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectCause {
    /// The advert's source is our own primary address (a looped-back
    /// advert, or an address conflict).
    OwnAddress,
    /// The advert's VRRP version is not ours.
    VersionMismatch,
    /// v2: the authentication type is not ours.
    AuthTypeMismatch,
    /// v2: the `PASS` password does not match.
    AuthFailure,
    /// v2: the advert interval differs from ours (keepalived drops these).
    IntervalMismatch,
    /// The advertised address set (or family) differs from ours
    /// (keepalived drops these).
    AddressMismatch,
}

impl RejectCause {
    /// Number of causes (the length of [`RejectCause::ALL`]).
    pub const COUNT: usize = 6;

    /// Every cause, in counter order.
    pub const ALL: [RejectCause; RejectCause::COUNT] = [
        RejectCause::OwnAddress,
        RejectCause::VersionMismatch,
        RejectCause::AuthTypeMismatch,
        RejectCause::AuthFailure,
        RejectCause::IntervalMismatch,
        RejectCause::AddressMismatch,
    ];

    /// Position in [`RejectCause::ALL`] and in the stats counters.
    #[must_use]
    pub const fn index(self) -> usize {
        match self {
            RejectCause::OwnAddress => 0,
            RejectCause::VersionMismatch => 1,
            RejectCause::AuthTypeMismatch => 2,
            RejectCause::AuthFailure => 3,
            RejectCause::IntervalMismatch => 4,
            RejectCause::AddressMismatch => 5,
        }
    }

    /// A short, stable label (for counters and metrics).
    #[must_use]
    pub const fn label(self) -> &'static str {
        match self {
            RejectCause::OwnAddress => "own_address",
            RejectCause::VersionMismatch => "version_mismatch",
            RejectCause::AuthTypeMismatch => "auth_type_mismatch",
            RejectCause::AuthFailure => "auth_failure",
            RejectCause::IntervalMismatch => "interval_mismatch",
            RejectCause::AddressMismatch => "address_mismatch",
        }
    }
}

impl fmt::Display for RejectCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RejectCause::OwnAddress => "advert from our own address",
            RejectCause::VersionMismatch => "VRRP version differs from ours",
            RejectCause::AuthTypeMismatch => "authentication type differs from ours",
            RejectCause::AuthFailure => "authentication password mismatch",
            RejectCause::IntervalMismatch => "advertisement interval differs from ours",
            RejectCause::AddressMismatch => "virtual address set differs from ours",
        })
    }
}

/// Why the machine changed state (for logs and notify hooks).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// Initialize → Backup on startup.
    Startup,
    /// Initialize → Master: priority 255, we own the addresses.
    AddressOwner,
    /// Backup → Master: no advert for `Master_Down_Interval`.
    MasterDown,
    /// Backup → Master: the master released (priority 0), then `Skew_Time`.
    MasterReleased {
        /// The releasing master.
        master: IpAddr,
    },
    /// Backup → Master: preempting a lower-priority master.
    Preempt {
        /// The lower-priority master.
        master: IpAddr,
        /// Its priority.
        priority: u8,
    },
    /// Master → Backup: an advert with a higher priority.
    HigherPriority {
        /// The new master.
        master: IpAddr,
        /// Its priority.
        priority: u8,
    },
    /// Master → Backup: an advert with our priority from a higher address.
    TieBreak {
        /// The new master.
        master: IpAddr,
    },
    /// → Fault: a weight-0 tracked object went down.
    TrackDown {
        /// The tracked object's name.
        track: String,
    },
    /// Fault → Backup or Master: every weight-0 tracked object is up again.
    TrackRecovered,
    /// Ordered by the sync group `group` ([`Event::Sync`]).
    Sync {
        /// The group.
        group: String,
        /// The order.
        order: SyncOrder,
    },
    /// → Initialize: [`Event::Shutdown`].
    Shutdown,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Startup => f.write_str("startup"),
            Reason::AddressOwner => f.write_str("priority 255: address owner"),
            Reason::MasterDown => f.write_str("no advert within master down interval"),
            Reason::MasterReleased { master } => write!(f, "master {master} released (priority 0)"),
            Reason::Preempt { master, priority } => write!(
                f,
                "preempting lower-priority master {master} (priority {priority})"
            ),
            Reason::HigherPriority { master, priority } => write!(
                f,
                "advert from higher-priority master {master} (priority {priority})"
            ),
            Reason::TieBreak { master } => {
                write!(f, "advert with equal priority from higher address {master}")
            }
            Reason::TrackDown { track } => write!(f, "tracked {track} is down"),
            Reason::TrackRecovered => f.write_str("tracked objects recovered"),
            Reason::Sync { group, order } => write!(f, "sync group {group}: {order}"),
            Reason::Shutdown => f.write_str("shutdown"),
        }
    }
}

/// An output of the machine, for the driver to carry out in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send an advertisement with this priority (0: release). Build it with
    /// [`Machine::advertisement`].
    SendAdvert {
        /// Priority to advertise.
        priority: u8,
    },
    /// Add the virtual addresses to the interface.
    AddVips,
    /// Remove the virtual addresses from the interface.
    RemoveVips,
    /// Announce the virtual addresses (gratuitous ARP / unsolicited NA);
    /// the driver applies `garp_master_delay`/repeat/refresh.
    SendGratuitous,
    /// The state changed; emitted after the actions that carry the change
    /// out, so a notify hook runs with the new state in effect.
    Transition {
        /// Previous state.
        from: State,
        /// New state.
        to: State,
        /// Why.
        reason: Reason,
    },
    /// The effective priority changed (tracking).
    PriorityChanged {
        /// Previous effective priority.
        from: u8,
        /// New effective priority.
        to: u8,
    },
    /// An advert was rejected and counted.
    Rejected {
        /// Why.
        cause: RejectCause,
        /// The advert's source.
        source: IpAddr,
        /// Whether this is the first rejection for `cause` (log once).
        first_time: bool,
    },
}

/// Counters kept by the machine.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Adverts for our VRID that passed validation (in Backup or Master).
    pub adverts_accepted: u64,
    /// Adverts for another VRID (not ours: ignored silently).
    pub other_vrid: u64,
    /// Accepted adverts with priority 0 (a master releasing).
    pub priority_zero_received: u64,
    /// Priority-0 adverts we asked to send (shutdown or fault as master).
    pub priority_zero_sent: u64,
    /// Transitions to Master.
    pub became_master: u64,
    /// Transitions out of Master.
    pub left_master: u64,
    /// Transitions to Fault.
    pub became_fault: u64,
    rejected: [u64; RejectCause::COUNT],
}

impl Stats {
    /// Adverts rejected for `cause`.
    #[must_use]
    pub const fn rejected(&self, cause: RejectCause) -> u64 {
        self.rejected[cause.index()]
    }

    /// Adverts rejected for any cause.
    #[must_use]
    pub fn rejected_total(&self) -> u64 {
        self.rejected.iter().sum()
    }
}

/// The master the machine last heard from (in Backup).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    /// Its address.
    pub address: IpAddr,
    /// Its advertised priority.
    pub priority: u8,
}

/// What the running `Master_Down_Timer` will mean when it fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DownCause {
    Silence,
    Released(IpAddr),
    LowerMaster(Peer),
}

/// A tracked object's last state as the machine knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TrackStatus {
    /// An up/down object ([`Event::Track`]).
    Up(bool),
    /// A valued object ([`Event::TrackValue`]).
    Value(i64),
}

impl TrackStatus {
    /// What the object adds to the priority with `weight`.
    fn contribution(self, weight: i32) -> i32 {
        match self {
            TrackStatus::Up(true) if weight > 0 => weight,
            TrackStatus::Up(false) if weight < 0 => weight,
            TrackStatus::Value(v) if weight != 0 => {
                let product = v.saturating_mul(i64::from(weight));
                // Clamped to one priority's span: the sum stays in range.
                i32::try_from(product.clamp(-254, 254)).unwrap_or(0)
            }
            TrackStatus::Up(_) | TrackStatus::Value(_) => 0,
        }
    }

    /// Whether the object with `weight` puts the instance in FAULT.
    fn is_fault(self, weight: i32) -> bool {
        match self {
            TrackStatus::Up(up) => weight == 0 && !up,
            TrackStatus::Value(v) if weight == 0 => v != 0,
            TrackStatus::Value(v) => v.saturating_mul(i64::from(weight)) < -i64::from(MAX_WEIGHT),
        }
    }
}

/// The VRRP state machine of one instance.
#[derive(Debug, Clone)]
pub struct Machine {
    config: Config,
    auth: Auth,
    state: State,
    tracks_up: Vec<TrackStatus>,
    /// FAULT forced by this sync group ([`SyncOrder::Fault`]).
    sync_fault: Option<String>,
    effective_priority: u8,
    master_adver_interval: Duration,
    adver_deadline: Option<Instant>,
    master_down_deadline: Option<Instant>,
    /// Backup with `preempt_delay`: preempting a lower-priority master is
    /// allowed from this instant; `None`: the delay has not started.
    preempt_after: Option<Instant>,
    /// [`Event::PreemptHold`]: preempting is held back.
    preempt_hold: bool,
    master: Option<Peer>,
    down_cause: DownCause,
    stats: Stats,
}

impl Machine {
    /// A machine in [`State::Initialize`]; send [`Event::Startup`] to run it.
    ///
    /// # Errors
    /// [`ConfigError`] if `config` does not validate.
    pub fn new(config: Config) -> Result<Machine, ConfigError> {
        config.validate()?;
        let auth = match (&config.version, &config.auth_pass) {
            (Version::V2, Some(pass)) => Auth::pass(pass),
            _ => Auth::None,
        };
        let mut machine = Machine {
            auth,
            state: State::Initialize,
            tracks_up: vec![TrackStatus::Up(true); config.tracks.len()],
            sync_fault: None,
            effective_priority: config.priority,
            master_adver_interval: config.advert_interval,
            adver_deadline: None,
            master_down_deadline: None,
            preempt_after: None,
            preempt_hold: false,
            master: None,
            down_cause: DownCause::Silence,
            stats: Stats::default(),
            config,
        };
        machine.effective_priority = machine.compute_priority();
        Ok(machine)
    }

    /// Feeds one event at time `now`; returns the actions to carry out, in order.
    pub fn handle(&mut self, event: Event, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        match event {
            Event::Startup => self.startup(now, &mut out),
            Event::Advert { source, advert } => self.on_advert(source, &advert, now, &mut out),
            Event::Timer => self.on_timer(now, &mut out),
            Event::Track { index, up } => {
                self.on_track(index, TrackStatus::Up(up), now, &mut out);
            }
            Event::TrackValue { index, value } => {
                self.on_track(index, TrackStatus::Value(value), now, &mut out);
            }
            Event::Sync { group, order } => self.on_sync(group, order, now, &mut out),
            Event::Shutdown => self.shutdown(&mut out),
            Event::PreemptHold(hold) => self.preempt_hold = hold,
            Event::SetPriority(priority) => self.set_priority(priority, &mut out),
        }
        out
    }

    /// Fires the timers due at `now`; the same as [`Event::Timer`].
    pub fn tick(&mut self, now: Instant) -> Vec<Action> {
        self.handle(Event::Timer, now)
    }

    /// When the machine next needs [`Event::Timer`]; `None` if no timer runs.
    #[must_use]
    pub fn next_deadline(&self) -> Option<Instant> {
        match (self.adver_deadline, self.master_down_deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The current state.
    #[must_use]
    pub const fn state(&self) -> State {
        self.state
    }

    /// The configuration.
    #[must_use]
    pub const fn config(&self) -> &Config {
        &self.config
    }

    /// The counters.
    #[must_use]
    pub const fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The priority advertised and used for elections: the base priority
    /// plus the weights of tracked objects, clamped to 1..=254; 255 stays 255.
    #[must_use]
    pub const fn effective_priority(&self) -> u8 {
        self.effective_priority
    }

    /// In Backup, the master last accepted.
    #[must_use]
    pub const fn master(&self) -> Option<Peer> {
        self.master
    }

    /// The index in [`Config::tracks`] of the track called `name`.
    #[must_use]
    pub fn track_index(&self, name: &str) -> Option<usize> {
        self.config.tracks.iter().position(|t| t.name == name)
    }

    /// `Master_Adver_Interval`: ours, or in v3 the master's as adopted.
    #[must_use]
    pub const fn master_adver_interval(&self) -> Duration {
        self.master_adver_interval
    }

    /// `Skew_Time` for the effective priority and `Master_Adver_Interval`.
    #[must_use]
    pub fn skew_time(&self) -> Duration {
        let weight = 256 - u64::from(self.effective_priority);
        if self.config.version == Version::V2 {
            Duration::from_micros(weight * 1_000_000 / 256)
        } else {
            let interval_cs =
                u64::try_from(self.master_adver_interval.as_millis() / 10).unwrap_or(u64::MAX);
            Duration::from_millis(weight * interval_cs / 256 * 10)
        }
    }

    /// `Master_Down_Interval = 3 * Master_Adver_Interval + Skew_Time`.
    #[must_use]
    pub fn master_down_interval(&self) -> Duration {
        self.master_adver_interval * 3 + self.skew_time()
    }

    /// The advertisement to send for [`Action::SendAdvert`] with `priority`,
    /// from [`Config::primary_address`]; emit it with
    /// [`Repr::emit`]/[`Repr::to_bytes`] towards the multicast group or
    /// each unicast peer.
    #[must_use]
    pub fn advertisement(&self, priority: u8) -> Repr {
        let interval = self.config.advert_interval;
        let kind = match self.config.version {
            Version::V2 => Kind::V2 {
                advert_interval_secs: u8::try_from(interval.as_secs()).unwrap_or(u8::MAX),
                auth: self.auth,
            },
            _ => Kind::V3 {
                max_advert_interval_cs: u16::try_from(interval.as_millis() / 10)
                    .unwrap_or(u16::MAX),
            },
        };
        Repr {
            family: Family::of(&self.config.primary_address),
            vrid: self.config.vrid,
            priority,
            kind,
            addresses: self.config.vips.clone(),
        }
    }

    fn compute_priority(&self) -> u8 {
        let base = self.config.priority;
        if base == PRIORITY_OWNER {
            return base;
        }
        let delta: i32 = self
            .config
            .tracks
            .iter()
            .zip(&self.tracks_up)
            .map(|(track, status)| status.contribution(track.weight))
            .sum();
        let priority = (i32::from(base) + delta).clamp(1, 254);
        u8::try_from(priority).unwrap_or(254)
    }

    /// The first weight-0 tracked object that is down.
    fn fault_track(&self) -> Option<&str> {
        self.config
            .tracks
            .iter()
            .zip(&self.tracks_up)
            .find(|(track, status)| status.is_fault(track.weight))
            .map(|(track, _)| track.name.as_str())
    }

    fn startup(&mut self, now: Instant, out: &mut Vec<Action>) {
        if self.state != State::Initialize {
            return;
        }
        self.enter_running(now, Reason::Startup, out);
    }

    /// Whether the instance's own tracking puts it in FAULT (a weight-0
    /// object down, or a valued one out of range): what its sync group
    /// needs to know, as opposed to a FAULT the group forced.
    #[must_use]
    pub fn own_fault(&self) -> bool {
        self.fault_track().is_some()
    }

    /// Why the instance must be in FAULT now, if it must: its own tracking
    /// first, then its sync group.
    fn fault_reason(&self) -> Option<Reason> {
        if let Some(track) = self.fault_track() {
            return Some(Reason::TrackDown {
                track: track.to_owned(),
            });
        }
        self.sync_fault.as_ref().map(|group| Reason::Sync {
            group: group.clone(),
            order: SyncOrder::Fault,
        })
    }

    /// Startup and leaving Fault: Fault if a weight-0 track is down (or the
    /// sync group holds the instance in FAULT), Master if we own the
    /// addresses, else Backup.
    fn enter_running(&mut self, now: Instant, reason: Reason, out: &mut Vec<Action>) {
        if let Some(reason) = self.fault_reason() {
            self.enter_fault(reason, out);
        } else if self.effective_priority == PRIORITY_OWNER {
            let reason = if reason == Reason::Startup {
                Reason::AddressOwner
            } else {
                reason
            };
            self.become_master(now, reason, out);
        } else {
            self.become_backup(now, reason, None, out);
        }
    }

    fn become_master(&mut self, now: Instant, reason: Reason, out: &mut Vec<Action>) {
        let from = self.state;
        self.state = State::Master;
        self.master_down_deadline = None;
        self.preempt_after = None;
        self.master = None;
        self.adver_deadline = Some(now + self.config.advert_interval);
        self.stats.became_master += 1;
        out.push(Action::SendAdvert {
            priority: self.effective_priority,
        });
        out.push(Action::AddVips);
        out.push(Action::SendGratuitous);
        out.push(Action::Transition {
            from,
            to: State::Master,
            reason,
        });
    }

    /// Enters Backup; `master_interval` is the interval a v3 master
    /// advertised, adopted as `Master_Adver_Interval`.
    fn become_backup(
        &mut self,
        now: Instant,
        reason: Reason,
        master_interval: Option<Duration>,
        out: &mut Vec<Action>,
    ) {
        let from = self.state;
        if from == State::Master {
            self.stats.left_master += 1;
            out.push(Action::RemoveVips);
        }
        self.state = State::Backup;
        self.adver_deadline = None;
        self.master_adver_interval = match (self.config.version, master_interval) {
            (Version::V3, Some(interval)) => interval,
            _ => self.config.advert_interval,
        };
        self.master_down_deadline = Some(now + self.master_down_interval());
        self.preempt_after =
            (!self.config.preempt_delay.is_zero()).then(|| now + self.config.preempt_delay);
        self.down_cause = DownCause::Silence;
        out.push(Action::Transition {
            from,
            to: State::Backup,
            reason,
        });
    }

    fn enter_fault(&mut self, reason: Reason, out: &mut Vec<Action>) {
        let from = self.state;
        if from == State::Master {
            // keepalived releases mastership with a priority-0 advert.
            self.stats.left_master += 1;
            self.stats.priority_zero_sent += 1;
            out.push(Action::SendAdvert { priority: 0 });
            out.push(Action::RemoveVips);
        }
        self.state = State::Fault;
        self.stop_timers();
        self.stats.became_fault += 1;
        out.push(Action::Transition {
            from,
            to: State::Fault,
            reason,
        });
    }

    fn shutdown(&mut self, out: &mut Vec<Action>) {
        let from = self.state;
        if from == State::Initialize {
            return;
        }
        if from == State::Master {
            self.stats.left_master += 1;
            self.stats.priority_zero_sent += 1;
            out.push(Action::SendAdvert { priority: 0 });
            out.push(Action::RemoveVips);
        }
        self.state = State::Initialize;
        self.stop_timers();
        out.push(Action::Transition {
            from,
            to: State::Initialize,
            reason: Reason::Shutdown,
        });
    }

    fn stop_timers(&mut self) {
        self.adver_deadline = None;
        self.master_down_deadline = None;
        self.preempt_after = None;
        self.master = None;
        self.down_cause = DownCause::Silence;
        self.master_adver_interval = self.config.advert_interval;
    }

    fn on_timer(&mut self, now: Instant, out: &mut Vec<Action>) {
        match self.state {
            State::Master => {
                if self.adver_deadline.is_some_and(|d| d <= now) {
                    self.adver_deadline = Some(now + self.config.advert_interval);
                    out.push(Action::SendAdvert {
                        priority: self.effective_priority,
                    });
                }
            }
            State::Backup => {
                if self.master_down_deadline.is_some_and(|d| d <= now) {
                    let reason = match self.down_cause {
                        DownCause::Silence => Reason::MasterDown,
                        DownCause::Released(master) => Reason::MasterReleased { master },
                        DownCause::LowerMaster(peer) => Reason::Preempt {
                            master: peer.address,
                            priority: peer.priority,
                        },
                    };
                    self.become_master(now, reason, out);
                }
            }
            State::Initialize | State::Fault => {}
        }
    }

    fn on_track(&mut self, index: usize, status: TrackStatus, now: Instant, out: &mut Vec<Action>) {
        match self.tracks_up.get_mut(index) {
            Some(state) if *state != status => *state = status,
            _ => return,
        }
        let before = self.effective_priority;
        self.effective_priority = self.compute_priority();
        if before != self.effective_priority {
            out.push(Action::PriorityChanged {
                from: before,
                to: self.effective_priority,
            });
        }
        match (self.state, self.fault_track()) {
            (State::Backup | State::Master, Some(track)) => {
                let track = track.to_owned();
                self.enter_fault(Reason::TrackDown { track }, out);
            }
            (State::Fault, None) if self.sync_fault.is_none() => {
                self.enter_running(now, Reason::TrackRecovered, out);
            }
            // A running master advertises the new priority from its next
            // advert on; a backup's new skew applies from the next reset.
            _ => {}
        }
    }

    /// A new base priority, in place ([`Event::SetPriority`]).
    fn set_priority(&mut self, priority: u8, out: &mut Vec<Action>) {
        if priority == 0 || priority == PRIORITY_OWNER || self.config.priority == PRIORITY_OWNER {
            return;
        }
        self.config.priority = priority;
        let before = self.effective_priority;
        self.effective_priority = self.compute_priority();
        if before != self.effective_priority {
            out.push(Action::PriorityChanged {
                from: before,
                to: self.effective_priority,
            });
        }
    }

    /// An order of the sync group `group`.
    fn on_sync(&mut self, group: String, order: SyncOrder, now: Instant, out: &mut Vec<Action>) {
        let reason = Reason::Sync {
            group: group.clone(),
            order,
        };
        match (order, self.state) {
            (SyncOrder::Fault, _) => {
                self.sync_fault = Some(group);
                if matches!(self.state, State::Backup | State::Master) {
                    self.enter_fault(reason, out);
                }
            }
            (SyncOrder::Recover, _) => {
                self.sync_fault = None;
                if self.state == State::Fault && self.fault_track().is_none() {
                    self.enter_running(now, reason, out);
                }
            }
            (SyncOrder::Master, State::Backup) => self.become_master(now, reason, out),
            (SyncOrder::Backup, State::Master) => self.become_backup(now, reason, None, out),
            (SyncOrder::Master | SyncOrder::Backup, _) => {}
        }
    }

    fn reject(&mut self, cause: RejectCause, source: IpAddr, out: &mut Vec<Action>) {
        let counter = &mut self.stats.rejected[cause.index()];
        let first_time = *counter == 0;
        *counter += 1;
        out.push(Action::Rejected {
            cause,
            source,
            first_time,
        });
    }

    /// Validation of a received advert (RFC 5798 §7.1 items the socket
    /// layer does not check). `Ok(false)`: not ours, ignore silently.
    fn validate(&self, source: IpAddr, advert: &Repr) -> Result<bool, RejectCause> {
        if advert.vrid != self.config.vrid {
            return Ok(false);
        }
        if source == self.config.primary_address {
            return Err(RejectCause::OwnAddress);
        }
        if advert.version() != self.config.version {
            return Err(RejectCause::VersionMismatch);
        }
        if let Kind::V2 {
            advert_interval_secs,
            auth,
        } = advert.kind
        {
            if auth.auth_type() != self.auth.auth_type() {
                return Err(RejectCause::AuthTypeMismatch);
            }
            if auth != self.auth {
                return Err(RejectCause::AuthFailure);
            }
            if u64::from(advert_interval_secs) != self.config.advert_interval.as_secs() {
                return Err(RejectCause::IntervalMismatch);
            }
        }
        // Set equality, order-insensitive: our VIPs are unique (validated),
        // so equal lengths plus inclusion both ways also catches an advert
        // that repeats an address.
        let ours = &self.config.vips;
        let same = advert.family == Family::of(&self.config.primary_address)
            && advert.addresses.len() == ours.len()
            && ours.iter().all(|v| advert.addresses.contains(v))
            && advert.addresses.iter().all(|v| ours.contains(v));
        if !same {
            return Err(RejectCause::AddressMismatch);
        }
        Ok(true)
    }

    fn on_advert(&mut self, source: IpAddr, advert: &Repr, now: Instant, out: &mut Vec<Action>) {
        if !matches!(self.state, State::Backup | State::Master) {
            return;
        }
        match self.validate(source, advert) {
            Ok(true) => {}
            Ok(false) => {
                self.stats.other_vrid += 1;
                return;
            }
            Err(cause) => return self.reject(cause, source, out),
        }
        self.stats.adverts_accepted += 1;
        if advert.priority == 0 {
            self.stats.priority_zero_received += 1;
        }
        let peer = Peer {
            address: source,
            priority: advert.priority,
        };
        if self.state == State::Backup {
            self.backup_rx(peer, advert, now);
        } else {
            self.master_rx(peer, advert, now, out);
        }
    }

    /// RFC 5798 §6.4.2 (Backup) with keepalived's `preempt_delay`.
    fn backup_rx(&mut self, peer: Peer, advert: &Repr, now: Instant) {
        let ours = self.effective_priority;
        if peer.priority == 0 {
            self.master = None;
            self.down_cause = DownCause::Released(peer.address);
            self.master_down_deadline = Some(now + self.skew_time());
            return;
        }
        self.master = Some(peer);
        let delay = !self.config.preempt_delay.is_zero();
        // Lower-priority master but the preempt delay has not run out: wait.
        let delaying = delay && peer.priority < ours && self.preempt_after.is_none_or(|t| now < t);
        if !self.config.preempt || self.preempt_hold || peer.priority >= ours || delaying {
            if delay {
                if peer.priority > ours {
                    self.preempt_after = None;
                } else if peer.priority < ours && self.preempt_after.is_none() {
                    self.preempt_after = Some(now + self.config.preempt_delay);
                }
            }
            if self.config.version == Version::V3 {
                self.master_adver_interval = advert.advert_interval();
            }
            self.down_cause = DownCause::Silence;
            self.master_down_deadline = Some(now + self.master_down_interval());
        } else {
            // Preempt: let Master_Down_Timer run out and take over.
            self.down_cause = DownCause::LowerMaster(peer);
        }
    }

    /// RFC 5798 §6.4.3 (Master), plus keepalived's reply to a
    /// lower-priority advert (advert and gratuitous ARP now, so the other
    /// master steps down and ARP caches point here).
    fn master_rx(&mut self, peer: Peer, advert: &Repr, now: Instant, out: &mut Vec<Action>) {
        let ours = self.effective_priority;
        if peer.priority == 0 {
            self.adver_deadline = Some(now + self.config.advert_interval);
            out.push(Action::SendAdvert { priority: ours });
            return;
        }
        let reason = if peer.priority > ours {
            Reason::HigherPriority {
                master: peer.address,
                priority: peer.priority,
            }
        } else if peer.priority == ours && peer.address > self.config.primary_address {
            Reason::TieBreak {
                master: peer.address,
            }
        } else {
            self.adver_deadline = Some(now + self.config.advert_interval);
            out.push(Action::SendAdvert { priority: ours });
            out.push(Action::SendGratuitous);
            return;
        };
        self.become_backup(now, reason, Some(advert.advert_interval()), out);
        self.master = Some(peer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vrrp::wire::{self, MULTICAST_V4};
    use std::net::Ipv4Addr;

    const MS: Duration = Duration::from_millis(1);

    fn v4(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(198, 18, 0, last))
    }

    fn vips() -> Vec<IpAddr> {
        vec![v4(100)]
    }

    fn config(last: u8, priority: u8) -> Config {
        Config::new(51, priority, v4(last), vips())
    }

    fn started(config: Config, t0: Instant) -> (Machine, Vec<Action>) {
        let mut m = Machine::new(config).unwrap();
        let actions = m.handle(Event::Startup, t0);
        (m, actions)
    }

    /// The advert `like` would send with `priority`.
    fn advert_from(like: &Machine, priority: u8) -> Repr {
        like.advertisement(priority)
    }

    fn rx(m: &mut Machine, source: IpAddr, advert: Repr, now: Instant) -> Vec<Action> {
        m.handle(Event::Advert { source, advert }, now)
    }

    fn became_master(actions: &[Action]) -> bool {
        actions.iter().any(|a| {
            matches!(
                a,
                Action::Transition {
                    to: State::Master,
                    ..
                }
            )
        })
    }

    /// Several machines on one simulated LAN: adverts go through the real
    /// codec (emit, then parse with the same addresses).
    struct Lan {
        nodes: Vec<Machine>,
        connected: Vec<bool>,
        now: Instant,
        transitions: Vec<(usize, State, Reason, Instant)>,
    }

    impl Lan {
        fn new(configs: Vec<Config>, now: Instant) -> Lan {
            let nodes: Vec<Machine> = configs
                .into_iter()
                .map(|c| Machine::new(c).unwrap())
                .collect();
            let connected = vec![true; nodes.len()];
            let mut lan = Lan {
                nodes,
                connected,
                now,
                transitions: Vec::new(),
            };
            for i in 0..lan.nodes.len() {
                lan.event(i, Event::Startup);
            }
            lan
        }

        fn event(&mut self, i: usize, event: Event) {
            let actions = self.nodes[i].handle(event, self.now);
            self.apply(i, actions);
        }

        fn apply(&mut self, from: usize, actions: Vec<Action>) {
            for action in actions {
                match action {
                    Action::SendAdvert { priority } if self.connected[from] => {
                        let src = self.nodes[from].config().primary_address;
                        let dst = IpAddr::V4(MULTICAST_V4);
                        let bytes = self.nodes[from]
                            .advertisement(priority)
                            .to_bytes(src, dst)
                            .unwrap();
                        let advert = wire::parse(&bytes, src, dst).unwrap();
                        for to in 0..self.nodes.len() {
                            if to != from && self.connected[to] {
                                self.event(
                                    to,
                                    Event::Advert {
                                        source: src,
                                        advert: advert.clone(),
                                    },
                                );
                            }
                        }
                    }
                    Action::Transition { to, reason, .. } => {
                        self.transitions.push((from, to, reason, self.now));
                    }
                    _ => {}
                }
            }
        }

        /// Runs every timer due up to `until`, in time order.
        fn run_until(&mut self, until: Instant) {
            loop {
                let next = self.nodes.iter().filter_map(Machine::next_deadline).min();
                match next {
                    Some(at) if at <= until => {
                        self.now = at;
                        for i in 0..self.nodes.len() {
                            if self.nodes[i].next_deadline().is_some_and(|d| d <= at) {
                                self.event(i, Event::Timer);
                            }
                        }
                    }
                    _ => break,
                }
            }
            self.now = until;
        }

        fn states(&self) -> Vec<State> {
            self.nodes.iter().map(Machine::state).collect()
        }
    }

    #[test]
    fn timers_follow_rfc_5798_arithmetic() {
        let m = Machine::new(config(1, 100)).unwrap();
        // (256 - 100) * 100 cs / 256 = 60.9 -> 60 cs.
        assert_eq!(m.skew_time(), 600 * MS);
        assert_eq!(m.master_down_interval(), 3600 * MS);
        let m = Machine::new(config(1, 200)).unwrap();
        assert_eq!(m.skew_time(), 210 * MS);
        let mut v2 = config(1, 100);
        v2.version = Version::V2;
        let m = Machine::new(v2).unwrap();
        // RFC 3768: (256 - 100) / 256 s.
        assert_eq!(m.skew_time(), Duration::from_micros(609_375));
    }

    #[test]
    fn owner_starts_as_master() {
        let t0 = Instant::now();
        let (m, actions) = started(config(1, 255), t0);
        assert_eq!(m.state(), State::Master);
        assert_eq!(
            actions,
            vec![
                Action::SendAdvert { priority: 255 },
                Action::AddVips,
                Action::SendGratuitous,
                Action::Transition {
                    from: State::Initialize,
                    to: State::Master,
                    reason: Reason::AddressOwner
                },
            ]
        );
        assert_eq!(m.next_deadline(), Some(t0 + Duration::from_secs(1)));
    }

    #[test]
    fn backup_becomes_master_exactly_at_master_down_interval() {
        let t0 = Instant::now();
        let (mut m, actions) = started(config(1, 100), t0);
        assert_eq!(
            actions,
            vec![Action::Transition {
                from: State::Initialize,
                to: State::Backup,
                reason: Reason::Startup
            }]
        );
        assert_eq!(m.next_deadline(), Some(t0 + 3600 * MS));
        assert!(m.tick(t0 + 3599 * MS).is_empty());
        assert_eq!(m.state(), State::Backup);
        let actions = m.tick(t0 + 3600 * MS);
        assert_eq!(m.state(), State::Master);
        assert_eq!(
            actions.last(),
            Some(&Action::Transition {
                from: State::Backup,
                to: State::Master,
                reason: Reason::MasterDown
            })
        );
        // The master then advertises every interval.
        assert_eq!(m.next_deadline(), Some(t0 + 4600 * MS));
        assert_eq!(
            m.tick(t0 + 4600 * MS),
            vec![Action::SendAdvert { priority: 100 }]
        );
    }

    #[test]
    fn adverts_keep_the_backup_down_and_late_ticks_are_safe() {
        let t0 = Instant::now();
        let (mut m, _) = started(config(1, 100), t0);
        let peer = Machine::new(config(2, 150)).unwrap();
        for s in 1..10u64 {
            rx(
                &mut m,
                v4(2),
                advert_from(&peer, 150),
                t0 + Duration::from_secs(s),
            );
            assert!(m.tick(t0 + Duration::from_secs(s) + 500 * MS).is_empty());
        }
        assert_eq!(
            m.master(),
            Some(Peer {
                address: v4(2),
                priority: 150
            })
        );
        assert_eq!(
            m.next_deadline(),
            Some(t0 + Duration::from_secs(9) + 3600 * MS)
        );
        // A tick long after the deadline fires once.
        assert!(became_master(&m.tick(t0 + Duration::from_mins(1))));
        assert_eq!(m.stats().adverts_accepted, 9);
    }

    #[test]
    fn election_by_priority() {
        let t0 = Instant::now();
        let mut lan = Lan::new(vec![config(1, 100), config(2, 150), config(3, 120)], t0);
        lan.run_until(t0 + Duration::from_secs(10));
        assert_eq!(
            lan.states(),
            vec![State::Backup, State::Master, State::Backup]
        );
        // The highest priority has the shortest skew and wins first.
        let (node, to, ref reason, at) = lan.transitions[3];
        assert_eq!(
            (node, to, reason.clone()),
            (1, State::Master, Reason::MasterDown)
        );
        assert_eq!(at, t0 + lan.nodes[1].master_down_interval());
        assert_eq!(lan.transitions.len(), 4, "{:?}", lan.transitions);
        // The master drops off the LAN: the next highest takes over.
        lan.connected[1] = false;
        lan.run_until(t0 + Duration::from_secs(20));
        assert_eq!(
            lan.states(),
            vec![State::Backup, State::Master, State::Master]
        );
        let (node, to, ref reason, _) = *lan.transitions.last().unwrap();
        assert_eq!(
            (node, to, reason.clone()),
            (2, State::Master, Reason::MasterDown)
        );
    }

    #[test]
    fn priority_zero_advert_means_takeover_after_skew_time() {
        let t0 = Instant::now();
        let (mut m, _) = started(config(1, 100), t0);
        let peer = Machine::new(config(2, 150)).unwrap();
        rx(&mut m, v4(2), advert_from(&peer, 150), t0 + 500 * MS);
        rx(&mut m, v4(2), advert_from(&peer, 0), t0 + 1000 * MS);
        assert_eq!(m.stats().priority_zero_received, 1);
        assert_eq!(m.next_deadline(), Some(t0 + 1600 * MS));
        assert!(m.tick(t0 + 1599 * MS).is_empty());
        let actions = m.tick(t0 + 1600 * MS);
        assert_eq!(
            actions.last(),
            Some(&Action::Transition {
                from: State::Backup,
                to: State::Master,
                reason: Reason::MasterReleased { master: v4(2) }
            })
        );
    }

    #[test]
    fn shutdown_releases_with_priority_zero() {
        let t0 = Instant::now();
        let (mut m, _) = started(config(1, 255), t0);
        let actions = m.handle(Event::Shutdown, t0 + MS);
        assert_eq!(
            actions,
            vec![
                Action::SendAdvert { priority: 0 },
                Action::RemoveVips,
                Action::Transition {
                    from: State::Master,
                    to: State::Initialize,
                    reason: Reason::Shutdown
                },
            ]
        );
        assert_eq!(m.next_deadline(), None);
        assert!(m.handle(Event::Shutdown, t0 + 2 * MS).is_empty());
        // A stopped machine ignores adverts and can start again.
        let peer = Machine::new(config(2, 100)).unwrap();
        assert!(rx(&mut m, v4(2), advert_from(&peer, 100), t0 + 3 * MS).is_empty());
        assert!(became_master(&m.handle(Event::Startup, t0 + 4 * MS)));
    }

    #[test]
    fn shutdown_of_the_master_hands_over_in_skew_time_on_the_lan() {
        let t0 = Instant::now();
        let mut lan = Lan::new(vec![config(1, 100), config(2, 150)], t0);
        lan.run_until(t0 + Duration::from_secs(10));
        assert_eq!(lan.states(), vec![State::Backup, State::Master]);
        let stop = lan.now;
        lan.event(1, Event::Shutdown);
        lan.run_until(stop + Duration::from_secs(5));
        assert_eq!(lan.states(), vec![State::Master, State::Initialize]);
        let (node, _, reason, at) = lan.transitions.last().unwrap().clone();
        assert_eq!(
            (node, reason),
            (0, Reason::MasterReleased { master: v4(2) })
        );
        assert_eq!(at, stop + 600 * MS);
    }

    /// Node 0 (priority 100) master alone for 5 s, then node 1 (priority
    /// 200, not started yet) on the same LAN; and the moment it joins.
    fn lower_master_and_a_joiner() -> (Lan, Instant) {
        let t0 = Instant::now();
        let mut lan = Lan::new(vec![config(1, 100)], t0);
        lan.run_until(t0 + Duration::from_secs(5));
        assert_eq!(lan.states(), vec![State::Master]);
        let joined = lan.now;
        let lan2 = Lan {
            nodes: vec![lan.nodes.remove(0), Machine::new(config(2, 200)).unwrap()],
            connected: vec![true, true],
            now: joined,
            transitions: Vec::new(),
        };
        (lan2, joined)
    }

    /// A returning higher-priority node whose connection table is not yet
    /// synced holds back: it stays backup behind the lower master's adverts
    /// until the hold is lifted, then preempts as usual.
    #[test]
    fn preempt_hold_defers_preemption_until_lifted() {
        let (mut lan2, joined) = lower_master_and_a_joiner();
        lan2.event(1, Event::PreemptHold(true));
        lan2.event(1, Event::Startup);
        lan2.run_until(joined + Duration::from_secs(10));
        assert_eq!(
            lan2.states(),
            vec![State::Master, State::Backup],
            "held: no preemption in 10 s"
        );
        let lifted = lan2.now;
        lan2.event(1, Event::PreemptHold(false));
        lan2.run_until(lifted + Duration::from_secs(10));
        assert_eq!(lan2.states(), vec![State::Backup, State::Master]);
        let takeover = lan2
            .transitions
            .iter()
            .find(|t| t.0 == 1 && t.1 == State::Master)
            .unwrap();
        assert!(matches!(takeover.2, Reason::Preempt { .. }));
        assert!(
            takeover.3 > lifted && takeover.3 <= lifted + 5 * Duration::from_secs(1),
            "preempts within about one Master_Down_Interval of the lift"
        );
    }

    #[test]
    fn preempt_higher_priority_backup_takes_over_from_a_lower_master() {
        // Node 0 (prio 100) is master alone; node 1 (prio 200) joins later.
        let (mut lan2, joined) = lower_master_and_a_joiner();
        lan2.event(1, Event::Startup);
        lan2.run_until(joined + Duration::from_secs(10));
        assert_eq!(lan2.states(), vec![State::Backup, State::Master]);
        let takeover = lan2
            .transitions
            .iter()
            .find(|t| t.0 == 1 && t.1 == State::Master)
            .unwrap();
        assert_eq!(
            takeover.2,
            Reason::Preempt {
                master: v4(1),
                priority: 100
            }
        );
        // The lower master's adverts do not reset the timer: it runs out
        // one Master_Down_Interval (3 s + 210 ms) after startup.
        assert_eq!(takeover.3, joined + 3210 * MS);
        let stepped_down = lan2.transitions.iter().find(|t| t.0 == 0).unwrap();
        assert_eq!(
            stepped_down.2,
            Reason::HigherPriority {
                master: v4(2),
                priority: 200
            }
        );
    }

    #[test]
    fn nopreempt_backup_does_not_take_over_from_an_advertising_master() {
        let t0 = Instant::now();
        let mut high = config(2, 200);
        high.preempt = false;
        let (mut m, _) = started(high, t0);
        let low = Machine::new(config(1, 100)).unwrap();
        for s in 0..30u64 {
            let at = t0 + Duration::from_secs(s) + 100 * MS;
            assert!(m.tick(at).is_empty());
            rx(&mut m, v4(1), advert_from(&low, 100), at);
        }
        assert_eq!(m.state(), State::Backup);
        // When that master goes silent, it does take over.
        assert!(became_master(&m.tick(
            t0 + Duration::from_secs(29) + 100 * MS + m.master_down_interval()
        )));
    }

    #[test]
    fn preempt_delay_is_honoured() {
        let t0 = Instant::now();
        let mut high = config(2, 200);
        high.preempt_delay = Duration::from_secs(5);
        let (mut m, _) = started(high, t0);
        let low = Machine::new(config(1, 100)).unwrap();
        for tenth in 0..=77u32 {
            let at = t0 + 100 * MS * tenth;
            assert!(!became_master(&m.tick(at)), "took over at {tenth}");
            // The lower master advertises every second, at x.5 s.
            if tenth % 10 == 5 {
                rx(&mut m, v4(1), advert_from(&low, 100), at);
            }
        }
        // Adverts until 4.5 s reset the timer (the delay runs to 5 s); later
        // ones are ignored, so the timer set at 4.5 s runs out at 7.71 s.
        assert_eq!(m.state(), State::Backup);
        assert_eq!(m.next_deadline(), Some(t0 + 7710 * MS));
        let actions = m.tick(t0 + 7710 * MS);
        assert_eq!(
            actions.last(),
            Some(&Action::Transition {
                from: State::Backup,
                to: State::Master,
                reason: Reason::Preempt {
                    master: v4(1),
                    priority: 100
                }
            })
        );
    }

    #[test]
    fn preempt_delay_exact_boundary() {
        let t0 = Instant::now();
        let mut high = config(2, 200);
        high.preempt_delay = Duration::from_secs(5);
        let (mut m, _) = started(high, t0);
        let low = Machine::new(config(1, 100)).unwrap();
        rx(&mut m, v4(1), advert_from(&low, 100), t0 + 4999 * MS);
        assert_eq!(m.next_deadline(), Some(t0 + 4999 * MS + 3210 * MS));
        rx(&mut m, v4(1), advert_from(&low, 100), t0 + 5000 * MS);
        // Not reset any more.
        assert_eq!(m.next_deadline(), Some(t0 + 4999 * MS + 3210 * MS));
        // A higher-priority master clears the delay; seeing a lower one
        // again restarts it.
        let higher = Machine::new(config(3, 250)).unwrap();
        rx(&mut m, v4(3), advert_from(&higher, 250), t0 + 6000 * MS);
        for ms in [7000, 8000, 9000, 10_000, 11_000, 11_999] {
            rx(&mut m, v4(1), advert_from(&low, 100), t0 + ms * MS);
        }
        assert_eq!(m.next_deadline(), Some(t0 + 11_999 * MS + 3210 * MS));
        rx(&mut m, v4(1), advert_from(&low, 100), t0 + 12_000 * MS);
        assert_eq!(m.next_deadline(), Some(t0 + 11_999 * MS + 3210 * MS));
    }

    #[test]
    fn equal_priority_tie_break_by_higher_address() {
        let t0 = Instant::now();
        let (mut low_addr, _) = started(config(1, 150), t0);
        let (mut high_addr, _) = started(config(2, 150), t0);
        // Both time out at the same instant and both become master.
        let at = t0 + low_addr.master_down_interval();
        assert!(became_master(&low_addr.tick(at)));
        assert!(became_master(&high_addr.tick(at)));
        // Each hears the other's advert.
        let from_low = rx(&mut high_addr, v4(1), low_addr.advertisement(150), at);
        assert_eq!(
            from_low,
            vec![Action::SendAdvert { priority: 150 }, Action::SendGratuitous]
        );
        assert_eq!(high_addr.state(), State::Master);
        let from_high = rx(&mut low_addr, v4(2), high_addr.advertisement(150), at);
        assert_eq!(
            from_high,
            vec![
                Action::RemoveVips,
                Action::Transition {
                    from: State::Master,
                    to: State::Backup,
                    reason: Reason::TieBreak { master: v4(2) }
                },
            ]
        );
        assert_eq!(
            low_addr.next_deadline(),
            Some(at + low_addr.master_down_interval())
        );
        // Equal priority does not make a backup preempt.
        rx(
            &mut low_addr,
            v4(2),
            high_addr.advertisement(150),
            at + Duration::from_secs(1),
        );
        assert_eq!(
            low_addr.next_deadline(),
            Some(at + Duration::from_secs(1) + low_addr.master_down_interval())
        );
    }

    #[test]
    fn master_answers_priority_zero_with_an_advert() {
        let t0 = Instant::now();
        let (mut m, _) = started(config(1, 255), t0);
        let other = Machine::new(config(2, 100)).unwrap();
        let actions = rx(&mut m, v4(2), advert_from(&other, 0), t0 + 300 * MS);
        assert_eq!(actions, vec![Action::SendAdvert { priority: 255 }]);
        assert_eq!(m.next_deadline(), Some(t0 + 1300 * MS));
    }

    #[test]
    fn v3_backup_adopts_the_masters_interval() {
        let t0 = Instant::now();
        let (mut m, _) = started(config(1, 100), t0);
        let mut slow = config(2, 150);
        slow.advert_interval = Duration::from_secs(2);
        let slow = Machine::new(slow).unwrap();
        rx(&mut m, v4(2), slow.advertisement(150), t0);
        assert_eq!(m.master_adver_interval(), Duration::from_secs(2));
        // Skew = 156 * 200 cs / 256 = 121 cs; MDI = 6 s + 1.21 s.
        assert_eq!(m.skew_time(), 1210 * MS);
        assert_eq!(m.next_deadline(), Some(t0 + 7210 * MS));
        // A master stepping down adopts too.
        let (mut master, _) = started(config(3, 255), t0);
        let mut owner_cfg = config(4, 255);
        owner_cfg.advert_interval = Duration::from_millis(500);
        let higher = Machine::new(owner_cfg).unwrap();
        rx(&mut master, v4(4), higher.advertisement(255), t0);
        assert_eq!(master.state(), State::Backup);
        assert_eq!(master.master_adver_interval(), 500 * MS);
    }

    fn v2_config(last: u8, priority: u8, pass: &str) -> Config {
        Config {
            version: Version::V2,
            auth_pass: Some(pass.to_owned()),
            ..config(last, priority)
        }
    }

    #[test]
    fn v2_interval_mismatch_is_rejected_and_counted() {
        let t0 = Instant::now();
        let (mut m, _) = started(v2_config(1, 100, "1111"), t0);
        let mut other = v2_config(2, 150, "1111");
        other.advert_interval = Duration::from_secs(2);
        let other = Machine::new(other).unwrap();
        let actions = rx(&mut m, v4(2), other.advertisement(150), t0 + MS);
        assert_eq!(
            actions,
            vec![Action::Rejected {
                cause: RejectCause::IntervalMismatch,
                source: v4(2),
                first_time: true
            }]
        );
        let actions = rx(&mut m, v4(2), other.advertisement(150), t0 + 2 * MS);
        assert_eq!(
            actions,
            vec![Action::Rejected {
                cause: RejectCause::IntervalMismatch,
                source: v4(2),
                first_time: false
            }]
        );
        assert_eq!(m.stats().rejected(RejectCause::IntervalMismatch), 2);
        assert_eq!(m.stats().adverts_accepted, 0);
        // The timer was not reset by the rejected adverts.
        assert_eq!(m.next_deadline(), Some(t0 + m.master_down_interval()));
        // In v2 the interval is never adopted.
        let good = Machine::new(v2_config(2, 150, "1111")).unwrap();
        assert!(rx(&mut m, v4(2), good.advertisement(150), t0 + 3 * MS).is_empty());
        assert_eq!(m.master_adver_interval(), Duration::from_secs(1));
    }

    #[test]
    fn v2_wrong_password_or_auth_type_is_rejected() {
        let t0 = Instant::now();
        let (mut m, _) = started(v2_config(1, 100, "1111"), t0);
        let wrong = Machine::new(v2_config(2, 150, "2222")).unwrap();
        assert_eq!(
            rx(&mut m, v4(2), wrong.advertisement(150), t0),
            vec![Action::Rejected {
                cause: RejectCause::AuthFailure,
                source: v4(2),
                first_time: true
            }]
        );
        let none = Machine::new(Config {
            auth_pass: None,
            ..v2_config(2, 150, "")
        })
        .unwrap();
        assert_eq!(
            rx(&mut m, v4(2), none.advertisement(150), t0),
            vec![Action::Rejected {
                cause: RejectCause::AuthTypeMismatch,
                source: v4(2),
                first_time: true
            }]
        );
        // Only the first 8 bytes count, as in keepalived.
        let (mut long, _) = started(v2_config(1, 100, "abcdefgh-one"), t0);
        let long_peer = Machine::new(v2_config(2, 150, "abcdefgh-two")).unwrap();
        assert!(rx(&mut long, v4(2), long_peer.advertisement(150), t0).is_empty());
        assert_eq!(m.stats().rejected_total(), 2);
    }

    #[test]
    fn version_mismatch_is_rejected() {
        let t0 = Instant::now();
        let (mut m, _) = started(config(1, 100), t0);
        let v2 = Machine::new(v2_config(2, 150, "1111")).unwrap();
        assert_eq!(
            rx(&mut m, v4(2), v2.advertisement(150), t0),
            vec![Action::Rejected {
                cause: RejectCause::VersionMismatch,
                source: v4(2),
                first_time: true
            }]
        );
    }

    #[test]
    fn vip_set_mismatch_is_rejected_and_counted() {
        let t0 = Instant::now();
        let mut cfg = config(1, 100);
        cfg.vips = vec![v4(100), v4(101)];
        let (mut m, _) = started(cfg.clone(), t0);
        let mut fewer = config(2, 150);
        fewer.vips = vec![v4(100)];
        let mut other = config(2, 150);
        other.vips = vec![v4(100), v4(102)];
        let mut reordered = config(2, 150);
        reordered.vips = vec![v4(101), v4(100)];
        for peer in [fewer, other] {
            let peer = Machine::new(peer).unwrap();
            let actions = rx(&mut m, v4(2), peer.advertisement(150), t0);
            assert!(matches!(
                actions[..],
                [Action::Rejected {
                    cause: RejectCause::AddressMismatch,
                    ..
                }]
            ));
        }
        // Same set in another order is fine.
        let peer = Machine::new(reordered).unwrap();
        assert!(rx(&mut m, v4(2), peer.advertisement(150), t0).is_empty());
        // A repeated address is not the same set.
        let mut dup = peer.advertisement(150);
        dup.addresses = vec![v4(100), v4(100)];
        assert!(!rx(&mut m, v4(2), dup, t0).is_empty());
        assert_eq!(m.stats().rejected(RejectCause::AddressMismatch), 3);
        assert_eq!(m.stats().adverts_accepted, 1);
    }

    #[test]
    fn other_vrid_is_ignored_silently_and_own_adverts_rejected() {
        let t0 = Instant::now();
        let (mut m, _) = started(config(1, 100), t0);
        let mut advert = m.advertisement(200);
        advert.vrid = 52;
        assert!(rx(&mut m, v4(2), advert, t0).is_empty());
        assert_eq!(m.stats().other_vrid, 1);
        assert_eq!(m.stats().rejected_total(), 0);
        let own = m.advertisement(100);
        assert!(matches!(
            rx(&mut m, v4(1), own, t0)[..],
            [Action::Rejected {
                cause: RejectCause::OwnAddress,
                ..
            }]
        ));
    }

    /// A reload that changes only priorities applies them in place: a
    /// master that stays the higher keeps the VIPs with no transition at
    /// all (restarting it would hand them to the backup and back), a
    /// backup raised above the master preempts, a master lowered below
    /// the backup steps down; 0 and 255 are not applied in place.
    #[test]
    fn set_priority_applies_in_place_and_moves_mastership_only_when_it_must() {
        let t0 = Instant::now();
        let mut lan = Lan::new(vec![config(1, 150), config(2, 100)], t0);
        lan.run_until(t0 + Duration::from_secs(10));
        assert_eq!(lan.states(), vec![State::Master, State::Backup]);
        let before = lan.transitions.len();
        let actions = lan.nodes[0].handle(Event::SetPriority(160), lan.now);
        assert_eq!(
            actions,
            vec![Action::PriorityChanged { from: 150, to: 160 }]
        );
        let actions = lan.nodes[1].handle(Event::SetPriority(110), lan.now);
        assert_eq!(
            actions,
            vec![Action::PriorityChanged { from: 100, to: 110 }]
        );
        lan.run_until(lan.now + Duration::from_secs(10));
        assert_eq!(lan.states(), vec![State::Master, State::Backup]);
        assert_eq!(lan.transitions.len(), before, "no transition at all");
        assert_eq!(lan.nodes[0].effective_priority(), 160);
        // The backup raised above the master preempts.
        lan.event(1, Event::SetPriority(170));
        lan.run_until(lan.now + Duration::from_secs(10));
        assert_eq!(lan.states(), vec![State::Backup, State::Master]);
        // The master lowered below the backup steps down.
        lan.event(1, Event::SetPriority(90));
        lan.run_until(lan.now + Duration::from_secs(10));
        assert_eq!(lan.states(), vec![State::Master, State::Backup]);
        // Not in place: 0, and to or from the owner's 255.
        assert!(
            lan.nodes[0]
                .handle(Event::SetPriority(0), lan.now)
                .is_empty()
        );
        assert!(
            lan.nodes[0]
                .handle(Event::SetPriority(255), lan.now)
                .is_empty()
        );
        assert_eq!(lan.nodes[0].config().priority, 160);
        let (mut owner, _) = started(config(3, 255), t0);
        assert!(owner.handle(Event::SetPriority(100), t0).is_empty());
        assert_eq!(owner.effective_priority(), 255);
    }

    #[test]
    fn track_weight_changes_priority_and_mastership_moves() {
        let t0 = Instant::now();
        let mut a = config(1, 150);
        a.tracks = vec![Track {
            name: "check_web".into(),
            weight: -60,
        }];
        let mut lan = Lan::new(vec![a, config(2, 120)], t0);
        lan.run_until(t0 + Duration::from_secs(10));
        assert_eq!(lan.states(), vec![State::Master, State::Backup]);
        // check_web fails: 150 - 60 = 90 < 120; the backup preempts.
        let index = lan.nodes[0].track_index("check_web").unwrap();
        let failed = lan.now;
        let actions = lan.nodes[0].handle(Event::Track { index, up: false }, failed);
        assert_eq!(actions, vec![Action::PriorityChanged { from: 150, to: 90 }]);
        lan.run_until(failed + Duration::from_secs(10));
        assert_eq!(lan.states(), vec![State::Backup, State::Master]);
        // It recovers: 150 > 120 and A preempts back.
        let actions = lan.nodes[0].handle(Event::Track { index, up: true }, lan.now);
        assert_eq!(actions, vec![Action::PriorityChanged { from: 90, to: 150 }]);
        lan.run_until(lan.now + Duration::from_secs(10));
        assert_eq!(lan.states(), vec![State::Master, State::Backup]);
        // Repeating a state changes nothing.
        assert!(
            lan.nodes[0]
                .handle(Event::Track { index, up: true }, lan.now)
                .is_empty()
        );
        assert!(
            lan.nodes[0]
                .handle(
                    Event::Track {
                        index: 9,
                        up: false
                    },
                    lan.now
                )
                .is_empty()
        );
    }

    /// keepalived `track_file`: `value * weight` adds to the priority; a
    /// product below -253, or any non-zero value with weight 0, is FAULT.
    #[test]
    fn track_values_weigh_or_fault() {
        let mut cfg = config(1, 100);
        cfg.tracks = vec![
            Track {
                name: "weighted".into(),
                weight: 10,
            },
            Track {
                name: "zero".into(),
                weight: 0,
            },
        ];
        let mut m = Machine::new(cfg).unwrap();
        let t0 = Instant::now();
        m.handle(Event::Startup, t0);
        let value = |index, value| Event::TrackValue { index, value };
        assert_eq!(
            m.handle(value(0, 3), t0),
            [Action::PriorityChanged { from: 110, to: 130 }]
        );
        assert_eq!(
            m.handle(value(0, -5), t0),
            [Action::PriorityChanged { from: 130, to: 50 }]
        );
        // Clamped to 1.
        m.handle(value(0, -25), t0);
        assert_eq!(m.effective_priority(), 1);
        assert_eq!(m.state(), State::Backup);
        // -26 * 10 < -253: FAULT.
        let actions = m.handle(value(0, -26), t0);
        assert_eq!(m.state(), State::Fault, "{actions:?}");
        assert!(m.own_fault());
        m.handle(value(0, 0), t0);
        assert_eq!((m.state(), m.effective_priority()), (State::Backup, 100));
        // Weight 0: zero is fine, anything else is FAULT.
        assert!(m.handle(value(1, 0), t0).is_empty());
        m.handle(value(1, 7), t0);
        assert_eq!(m.state(), State::Fault);
        m.handle(value(1, -1), t0);
        assert_eq!(m.state(), State::Fault);
        m.handle(value(1, 0), t0);
        assert_eq!(m.state(), State::Backup);
        assert_eq!(m.effective_priority(), 100);
    }

    #[test]
    fn effective_priority_is_clamped_and_owner_is_never_changed() {
        let mut cfg = config(1, 200);
        cfg.tracks = vec![
            Track {
                name: "a".into(),
                weight: 100,
            },
            Track {
                name: "b".into(),
                weight: -253,
            },
        ];
        let mut m = Machine::new(cfg.clone()).unwrap();
        let t0 = Instant::now();
        assert_eq!(m.effective_priority(), 254);
        m.handle(
            Event::Track {
                index: 1,
                up: false,
            },
            t0,
        );
        assert_eq!(m.effective_priority(), 47);
        m.handle(
            Event::Track {
                index: 0,
                up: false,
            },
            t0,
        );
        assert_eq!(m.effective_priority(), 1);
        cfg.priority = 255;
        let mut owner = Machine::new(cfg).unwrap();
        assert!(
            owner
                .handle(
                    Event::Track {
                        index: 1,
                        up: false
                    },
                    t0
                )
                .is_empty()
        );
        assert_eq!(owner.effective_priority(), 255);
        // The running master advertises its current priority.
        let mut cfg = config(1, 150);
        cfg.tracks = vec![Track {
            name: "a".into(),
            weight: -50,
        }];
        let (mut master, _) = started(cfg, t0);
        master.tick(t0 + master.master_down_interval());
        master.handle(
            Event::Track {
                index: 0,
                up: false,
            },
            t0 + Duration::from_secs(4),
        );
        let next = master.next_deadline().unwrap();
        assert_eq!(
            master.tick(next),
            vec![Action::SendAdvert { priority: 100 }]
        );
    }

    #[test]
    fn weight_zero_track_failure_is_fault_and_recovery_is_backup() {
        let t0 = Instant::now();
        let mut cfg = config(1, 150);
        cfg.tracks = vec![Track {
            name: "eth0".into(),
            weight: 0,
        }];
        let (mut m, _) = started(cfg.clone(), t0);
        m.tick(t0 + m.master_down_interval());
        assert_eq!(m.state(), State::Master);
        let actions = m.handle(
            Event::Track {
                index: 0,
                up: false,
            },
            t0 + Duration::from_secs(5),
        );
        assert_eq!(
            actions,
            vec![
                Action::SendAdvert { priority: 0 },
                Action::RemoveVips,
                Action::Transition {
                    from: State::Master,
                    to: State::Fault,
                    reason: Reason::TrackDown {
                        track: "eth0".into()
                    }
                },
            ]
        );
        assert_eq!(m.next_deadline(), None);
        // No adverts, no timers in Fault.
        let peer = Machine::new(config(2, 100)).unwrap();
        assert!(
            rx(
                &mut m,
                v4(2),
                peer.advertisement(100),
                t0 + Duration::from_secs(6)
            )
            .is_empty()
        );
        assert!(m.tick(t0 + Duration::from_mins(1)).is_empty());
        let back = t0 + Duration::from_secs(61);
        let actions = m.handle(Event::Track { index: 0, up: true }, back);
        assert_eq!(
            actions,
            vec![Action::Transition {
                from: State::Fault,
                to: State::Backup,
                reason: Reason::TrackRecovered
            }]
        );
        assert_eq!(m.next_deadline(), Some(back + m.master_down_interval()));
        assert_eq!(m.stats().became_fault, 1);
        assert_eq!(m.stats().priority_zero_sent, 1);

        // Starting with the track already down starts in Fault; a backup
        // going to Fault sends nothing.
        let mut m = Machine::new(cfg.clone()).unwrap();
        m.handle(
            Event::Track {
                index: 0,
                up: false,
            },
            t0,
        );
        let actions = m.handle(Event::Startup, t0);
        assert_eq!(
            actions,
            vec![Action::Transition {
                from: State::Initialize,
                to: State::Fault,
                reason: Reason::TrackDown {
                    track: "eth0".into()
                }
            }]
        );
        let (mut backup, _) = started(cfg, t0);
        let actions = backup.handle(
            Event::Track {
                index: 0,
                up: false,
            },
            t0,
        );
        assert_eq!(actions.len(), 1);
        assert_eq!(backup.state(), State::Fault);
    }

    #[test]
    fn fault_on_the_lan_hands_over_in_skew_time() {
        let t0 = Instant::now();
        let mut a = config(1, 150);
        a.tracks = vec![Track {
            name: "eth0".into(),
            weight: 0,
        }];
        let mut lan = Lan::new(vec![a, config(2, 100)], t0);
        lan.run_until(t0 + Duration::from_secs(10));
        let failed = lan.now;
        lan.event(
            0,
            Event::Track {
                index: 0,
                up: false,
            },
        );
        lan.run_until(failed + Duration::from_secs(5));
        assert_eq!(lan.states(), vec![State::Fault, State::Master]);
        assert_eq!(lan.transitions.last().unwrap().3, failed + 600 * MS);
        lan.event(0, Event::Track { index: 0, up: true });
        lan.run_until(lan.now + Duration::from_secs(10));
        assert_eq!(lan.states(), vec![State::Master, State::Backup]);
    }

    #[test]
    fn sub_second_intervals() {
        let t0 = Instant::now();
        let mut cfg = config(1, 100);
        cfg.advert_interval = 100 * MS;
        let (mut m, _) = started(cfg.clone(), t0);
        // Skew = 156 * 10 cs / 256 = 6 cs; MDI = 300 + 60 ms.
        assert_eq!(m.skew_time(), 60 * MS);
        assert_eq!(m.master_down_interval(), 360 * MS);
        assert!(m.tick(t0 + 359 * MS).is_empty());
        assert!(became_master(&m.tick(t0 + 360 * MS)));
        assert_eq!(m.next_deadline(), Some(t0 + 460 * MS));
        assert_eq!(
            m.advertisement(100).kind,
            Kind::V3 {
                max_advert_interval_cs: 10
            }
        );

        let mut lan = Lan::new(
            vec![
                cfg,
                Config {
                    advert_interval: 100 * MS,
                    ..config(2, 200)
                },
            ],
            t0,
        );
        lan.run_until(t0 + Duration::from_secs(1));
        assert_eq!(lan.states(), vec![State::Backup, State::Master]);
        let stop = lan.now;
        lan.connected[1] = false;
        lan.run_until(stop + Duration::from_secs(1));
        let (node, to, _, at) = lan.transitions.last().unwrap().clone();
        assert_eq!((node, to), (0, State::Master));
        // Last advert heard at or before `stop`, so takeover within 360 ms of it.
        assert!(
            at <= stop + 360 * MS && at > stop + 250 * MS,
            "{:?}",
            at - stop
        );
    }

    #[test]
    fn config_validation() {
        let ok = config(1, 100);
        assert!(ok.validate().is_ok());
        assert_eq!(
            Config {
                vrid: 0,
                ..ok.clone()
            }
            .validate(),
            Err(ConfigError::Vrid)
        );
        assert_eq!(
            Config {
                priority: 0,
                ..ok.clone()
            }
            .validate(),
            Err(ConfigError::Priority)
        );
        for bad in [Duration::ZERO, 5 * MS, 105 * MS, Duration::from_secs(41)] {
            assert!(matches!(
                Config {
                    advert_interval: bad,
                    ..ok.clone()
                }
                .validate(),
                Err(ConfigError::Interval { .. })
            ));
        }
        let v2 = v2_config(1, 100, "1111");
        assert!(v2.validate().is_ok());
        assert!(matches!(
            Config {
                advert_interval: 500 * MS,
                ..v2.clone()
            }
            .validate(),
            Err(ConfigError::Interval { .. })
        ));
        let v6: IpAddr = "fe80::1".parse().unwrap();
        assert_eq!(
            Config {
                primary_address: v6,
                vips: vec![],
                ..v2
            }
            .validate(),
            Err(ConfigError::V2Ipv6)
        );
        assert!(matches!(
            Config {
                primary_address: v6,
                ..ok.clone()
            }
            .validate(),
            Err(ConfigError::MixedFamilies { .. })
        ));
        assert!(matches!(
            Config {
                vips: vec![v4(1), v4(1)],
                ..ok.clone()
            }
            .validate(),
            Err(ConfigError::DuplicateVip { .. })
        ));
        assert!(matches!(
            Config {
                version: Version::Unknown(4),
                ..ok.clone()
            }
            .validate(),
            Err(ConfigError::Version { version: 4 })
        ));
        let tracks = vec![Track {
            name: "x".into(),
            weight: 254,
        }];
        assert!(matches!(
            Config { tracks, ..ok }.validate(),
            Err(ConfigError::Weight { .. })
        ));
    }

    /// The range checks at their edges (`Config::validate` and the
    /// configuration file both use them).
    #[test]
    fn range_checks_at_their_edges() {
        assert_eq!(check_vrid(0), Err(ConfigError::Vrid));
        assert!(check_vrid(1).is_ok() && check_vrid(255).is_ok());
        assert_eq!(check_priority(0), Err(ConfigError::Priority));
        assert!(check_priority(1).is_ok() && check_priority(255).is_ok());
        assert!(check_version(Version::V2).is_ok() && check_version(Version::V3).is_ok());
        assert_eq!(
            check_version(Version::Unknown(1)),
            Err(ConfigError::Version { version: 1 })
        );
        for ok in [10 * MS, 990 * MS, Duration::from_millis(40_950)] {
            assert!(check_advert_interval(Version::V3, ok).is_ok(), "{ok:?}");
        }
        for bad in [9 * MS, 15 * MS, Duration::from_millis(40_960)] {
            assert_eq!(
                check_advert_interval(Version::V3, bad),
                Err(ConfigError::Interval {
                    interval: bad,
                    version: 3
                })
            );
        }
        for ok in [1, 255].map(Duration::from_secs) {
            assert!(check_advert_interval(Version::V2, ok).is_ok(), "{ok:?}");
        }
        for bad in [Duration::ZERO, 1500 * MS, Duration::from_secs(256)] {
            assert_eq!(
                check_advert_interval(Version::V2, bad),
                Err(ConfigError::Interval {
                    interval: bad,
                    version: 2
                })
            );
        }
        assert_eq!(
            check_advert_interval(Version::Unknown(4), Duration::from_secs(1)),
            Err(ConfigError::Version { version: 4 })
        );
        assert_eq!(
            check_version_family(Version::V2, true),
            Err(ConfigError::V2Ipv6)
        );
        assert!(check_version_family(Version::V2, false).is_ok());
        assert!(check_version_family(Version::V3, true).is_ok());
        assert!(check_weight("x", MAX_WEIGHT).is_ok() && check_weight("x", -MAX_WEIGHT).is_ok());
        assert_eq!(
            check_weight("x", -254),
            Err(ConfigError::Weight {
                name: "x".into(),
                weight: -254
            })
        );
    }

    #[test]
    fn ipv6_instance_on_the_wire() {
        let t0 = Instant::now();
        let vip: IpAddr = "2001:db8::100".parse().unwrap();
        let a = Config::new(51, 150, "fe80::1".parse().unwrap(), vec![vip]);
        let b = Config::new(51, 100, "fe80::2".parse().unwrap(), vec![vip]);
        let (mut master, _) = started(a, t0);
        let (mut backup, _) = started(b, t0);
        master.tick(t0 + master.master_down_interval());
        let src = master.config().primary_address;
        let dst = IpAddr::V6(wire::MULTICAST_V6);
        let bytes = master.advertisement(150).to_bytes(src, dst).unwrap();
        let advert = wire::parse(&bytes, src, dst).unwrap();
        assert!(rx(&mut backup, src, advert, t0 + Duration::from_secs(3)).is_empty());
        assert_eq!(
            backup.master(),
            Some(Peer {
                address: src,
                priority: 150
            })
        );
    }
}
