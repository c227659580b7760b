//! `lbd --config FILE`: the TOML configuration, and [`keepalived`]'s
//! keepalived.conf reader that produces the same [`Config`].
//!
//! Field names follow keepalived's keywords where one exists;
//! `examples/lb.toml` documents every field with its default and
//! unit. Unknown fields are errors. Every error names the file, the line
//! and the field, and says what is allowed.
//!
//! Durations are strings with a unit: `"1s"`, `"100ms"`, `"1.5s"`, `"2m"`.
//!
//! Fields that take one of a few words are enums, read once here
//! ([`Protocol`], [`Mode`], [`Scheduler`], [`NoBackend`], [`HealthKind`],
//! [`XdpMode`]); the data plane's own types come from them by total
//! `From` conversions. A word not allowed is refused while the file is
//! read, naming the file, line and field like every validation error.

pub mod keepalived;

use std::collections::HashSet;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::vrrp::machine;
use crate::vrrp::wire::Version;

/// The whole file.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `[global]`.
    #[serde(default)]
    pub global: Global,
    /// `[dataplane]`: where the XDP program runs; absent = VRRP only.
    pub dataplane: Option<Dataplane>,
    /// `[[vrrp_instance]]`.
    #[serde(default)]
    pub vrrp_instance: Vec<VrrpInstance>,
    /// `[[vrrp_script]]`.
    #[serde(default)]
    pub vrrp_script: Vec<VrrpScript>,
    /// `[[service]]`: virtual services the data plane balances.
    #[serde(default)]
    pub service: Vec<Service>,
}

/// `[[service]]`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Service {
    /// Virtual IP. Required.
    pub vip: IpAddr,
    /// Port; 0 = every port. Required.
    pub port: u16,
    /// `tcp` (default) or `udp`.
    #[serde(default)]
    pub protocol: Protocol,
    /// `dsr` (default) or `ipip` (`nat` is not implemented).
    #[serde(default)]
    pub mode: Mode,
    /// Only `maglev` (default); other names are refused.
    #[serde(default)]
    pub scheduler: Scheduler,
    /// Maglev table size, a prime; default 65537.
    #[serde(default = "default_ring")]
    pub ring_size: u32,
    /// New flows when no backend is up: `drop` (default) or `pass` (to the
    /// local stack).
    #[serde(default)]
    pub on_no_backend: NoBackend,
    /// The VRRP instance whose mastership gates this service; default: the
    /// instance holding the VIP, if any.
    pub vrrp_instance: Option<String>,
    /// Forward whatever the VRRP state (both nodes active). Default false.
    #[serde(default)]
    pub active_active: bool,
    /// Health check; default `{ kind = "tcp" }`.
    #[serde(default)]
    pub health: Health,
    /// Backends. Required (may be empty).
    pub backend: Vec<BackendConfig>,
}

fn default_ring() -> u32 {
    lb_common::vip::DEFAULT_RING_SIZE
}

/// `Display` (the file's spelling), `FromStr` and `Deserialize` of a
/// keyword enum from its spellings; `$refuse` words the error for any
/// other value (the wording validation used when these were strings).
/// `Serialize` is derived (`rename_all = "lowercase"`); a unit test checks
/// that it writes the same spellings.
macro_rules! keyword {
    ($t:ident { $($v:ident => $s:literal),+ $(,)? }, $refuse:expr) => {
        impl $t {
            /// Every value, in the order the error messages list them.
            pub const ALL: &'static [$t] = &[$($t::$v),+];

            /// The spelling in the file.
            #[must_use]
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($t::$v => $s),+
                }
            }
        }

        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $t {
            type Err = String;

            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($s => Ok($t::$v),)+
                    other => Err(($refuse)(other)),
                }
            }
        }

        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                String::deserialize(d)?
                    .parse()
                    .map_err(serde::de::Error::custom)
            }
        }
    };
}

/// `protocol` of a `[[service]]`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// `tcp` (default).
    #[default]
    Tcp,
    /// `udp`.
    Udp,
}

keyword!(Protocol { Tcp => "tcp", Udp => "udp" }, |s: &str| format!(
    "{s:?} is not a protocol: tcp or udp"
));

impl From<Protocol> for crate::dataplane::balancer::Protocol {
    fn from(p: Protocol) -> Self {
        match p {
            Protocol::Tcp => Self::Tcp,
            Protocol::Udp => Self::Udp,
        }
    }
}

/// `mode` of a `[[service]]`: how packets reach the backends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// `dsr` (default): L2 direct routing.
    #[default]
    Dsr,
    /// `ipip`: IP-in-IP to the backend.
    Ipip,
}

keyword!(Mode { Dsr => "dsr", Ipip => "ipip" }, |s: &str| if s == "nat" {
    "nat is not implemented yet: use dsr or ipip".to_owned()
} else {
    format!("{s:?} is not a mode: dsr or ipip")
});

impl From<Mode> for crate::dataplane::balancer::Mode {
    fn from(m: Mode) -> Self {
        match m {
            Mode::Dsr => Self::Dsr,
            Mode::Ipip => Self::Ipip,
        }
    }
}

/// `scheduler` of a `[[service]]`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scheduler {
    /// `maglev` (default, and the only one): Maglev consistent hashing.
    #[default]
    Maglev,
}

keyword!(Scheduler { Maglev => "maglev" }, |s: &str| format!(
    "{s:?} is not a scheduler: maglev"
));

/// `on_no_backend` of a `[[service]]`: new flows when no backend is up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NoBackend {
    /// `drop` (default).
    #[default]
    Drop,
    /// `pass`: to the local stack.
    Pass,
}

keyword!(NoBackend { Drop => "drop", Pass => "pass" }, |s: &str| format!(
    "{s:?}: drop or pass"
));

impl From<NoBackend> for crate::dataplane::balancer::NoBackend {
    fn from(n: NoBackend) -> Self {
        match n {
            NoBackend::Drop => Self::Drop,
            NoBackend::Pass => Self::Pass,
        }
    }
}

/// `kind` of a service's `health`; the kind-specific fields (`path`,
/// `expect_status`, `command`, `user`) stay in [`Health`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthKind {
    /// `tcp` (default): connect.
    #[default]
    Tcp,
    /// `http`: GET `path`, expect `expect_status`.
    Http,
    /// `exec`: run `command`, exit 0 = up.
    Exec,
    /// `none`: always up.
    None,
}

keyword!(
    HealthKind { Tcp => "tcp", Http => "http", Exec => "exec", None => "none" },
    |s: &str| format!("kind {s:?}: tcp, http, exec or none")
);

/// `xdp_mode` of `[dataplane]`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum XdpMode {
    /// `auto` (default): native where the driver can, else generic; `lbd
    /// --xdp-mode` may choose instead.
    #[default]
    Auto,
    /// `native`: driver mode only.
    Native,
    /// `generic`: skb mode.
    Generic,
}

keyword!(
    XdpMode { Auto => "auto", Native => "native", Generic => "generic" },
    |s: &str| format!("{s:?} is not a mode: auto, native or generic")
);

impl XdpMode {
    /// The attach mode when the command line (`lbd --xdp-mode`) says
    /// `cli`: the file's `native` or `generic` wins; its `auto` leaves the
    /// choice to the command line.
    #[must_use]
    pub fn or_command_line(
        self,
        cli: crate::dataplane::loader::AttachMode,
    ) -> crate::dataplane::loader::AttachMode {
        match self {
            XdpMode::Native | XdpMode::Generic => self.into(),
            XdpMode::Auto => cli,
        }
    }
}

impl From<XdpMode> for crate::dataplane::loader::AttachMode {
    fn from(m: XdpMode) -> Self {
        match m {
            XdpMode::Auto => Self::Auto,
            XdpMode::Native => Self::Native,
            XdpMode::Generic => Self::Generic,
        }
    }
}

/// `health = { ... }` of a service.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Health {
    /// `tcp` (connect), `http` (GET, status), `exec` (exit 0), `none`.
    pub kind: HealthKind,
    /// Time between checks.
    pub interval: Dur,
    /// A check not done after this long fails.
    pub timeout: Dur,
    /// Consecutive successes to come up.
    pub rise: u32,
    /// Consecutive failures to go down.
    pub fall: u32,
    /// `http`: the path requested.
    pub path: String,
    /// `http`: the status expected.
    pub expect_status: u16,
    /// `exec`: command line (`/bin/sh -c`), with `$BACKEND` and `$PORT` set.
    pub command: Option<String>,
    /// `exec`: run as this user.
    pub user: Option<String>,
    /// Port to check; default: the backend's.
    pub port: Option<u16>,
}

impl Default for Health {
    fn default() -> Self {
        Self {
            kind: HealthKind::Tcp,
            interval: Dur(Duration::from_secs(2)),
            timeout: Dur(Duration::from_secs(1)),
            rise: 2,
            fall: 3,
            path: "/".into(),
            expect_status: 200,
            command: None,
            user: None,
            port: None,
        }
    }
}

/// One backend of a service.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct BackendConfig {
    /// Address. Required.
    pub address: IpAddr,
    /// Port; default: the service's (dsr and ipip cannot change ports).
    pub port: Option<u16>,
    /// Relative share of new flows; 0 = drained. Default 1.
    #[serde(default = "one")]
    pub weight: u32,
}

/// `[global]`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Global {
    /// This node's name, for logs (keepalived `router_id`). Default: the
    /// host name.
    pub router_id: Option<String>,
    /// Where the BPF maps are pinned.
    pub bpf_pin_path: PathBuf,
    /// The control API's Unix socket (mode 0600).
    pub control_socket: PathBuf,
    /// Prometheus `/metrics` on this address; default: none.
    pub metrics_listen: Option<std::net::SocketAddr>,
}

impl Default for Global {
    fn default() -> Self {
        Self {
            router_id: None,
            bpf_pin_path: PathBuf::from(crate::dataplane::loader::DEFAULT_PIN_PATH),
            control_socket: PathBuf::from(crate::api::control::DEFAULT_SOCKET),
            metrics_listen: None,
        }
    }
}

/// `[dataplane]`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Dataplane {
    /// Interface the XDP program attaches to.
    pub interface: String,
    /// `auto` (default), `native` or `generic`.
    #[serde(default)]
    pub xdp_mode: XdpMode,
    /// Connection-table size in flows (rounded up to a power-of-two number
    /// of 8-flow sets; 72 bytes per flow).
    #[serde(default = "default_conntrack")]
    pub conntrack_entries: u32,
    /// `ipip` outer IPv4 source: `"198.18.255.0/24"` takes the host bits
    /// from the flow hash (so backends' RSS spreads flows). Default: the
    /// interface's first IPv4 address, /32.
    pub ipip_source_v4: Option<String>,
    /// `ipip` outer IPv6 source; the low 32 bits (at most) vary by flow.
    /// Default: the interface's first global IPv6 address, /128.
    pub ipip_source_v6: Option<String>,
    /// Largest IP packet after `ipip` encapsulation; bigger ones get ICMP
    /// "fragmentation needed" / "packet too big". Default 1500.
    #[serde(default = "default_mtu")]
    pub mtu: u16,
}

fn default_mtu() -> u16 {
    1500
}

/// Parse `"ADDR/PREFIX"` (prefix optional: a host).
///
/// # Errors
/// A message saying what is expected.
pub fn parse_cidr(s: &str) -> Result<(IpAddr, u8), String> {
    let (a, p) = s.split_once('/').map_or((s, None), |(a, p)| (a, Some(p)));
    let addr: IpAddr = a
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not ADDRESS/PREFIX"))?;
    let max = if addr.is_ipv6() { 128 } else { 32 };
    let prefix = match p {
        None => max,
        Some(p) => p
            .trim()
            .parse::<u8>()
            .ok()
            .filter(|&p| p <= max)
            .ok_or_else(|| format!("{s:?}: prefix length must be 0..={max}"))?,
    };
    Ok((addr, prefix))
}

/// A connection-table size `lbd` accepts (the table holds at least that
/// many flows, rounded up to a power-of-two number of 8-flow sets).
///
/// # Errors
/// The reason, for an error message.
pub fn check_flow_entries(n: u32) -> Result<(), String> {
    use lb_common::flow::{MAX_FLOW_ENTRIES, MIN_FLOW_ENTRIES};
    if n < MIN_FLOW_ENTRIES {
        return Err(format!("{n} is too small: at least {MIN_FLOW_ENTRIES}"));
    }
    if n > MAX_FLOW_ENTRIES {
        return Err(format!(
            "{n} is too large: at most {MAX_FLOW_ENTRIES} (72 bytes per flow)"
        ));
    }
    Ok(())
}

fn default_conntrack() -> u32 {
    lb_common::flow::DEFAULT_FLOW_ENTRIES
}

/// A duration written with a unit (`"1s"`, `"100ms"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Dur(pub Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_duration(&s)
            .map(Dur)
            .map_err(serde::de::Error::custom)
    }
}

impl Serialize for Dur {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_duration(self.0))
    }
}

/// A duration the way the file writes it: `"1s"`, `"100ms"`, `"1.5s"`.
#[must_use]
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if d.is_zero() {
        "0s".into()
    } else if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else if ms >= 1000 {
        format!("{}s", d.as_secs_f64())
    } else {
        format!("{ms}ms")
    }
}

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

/// Parse `"1s"`, `"100ms"`, `"1.5s"`, `"2m"`, `"0"`.
///
/// # Errors
/// A message saying what is allowed.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if t == "0" {
        return Ok(Duration::ZERO);
    }
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let scale = match unit {
        "ms" => 1e-3,
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        _ => {
            return Err(format!(
                "invalid duration {s:?}: write a number with a unit: ms, s, m or h (\"1s\", \"100ms\")"
            ));
        }
    };
    let value: f64 = num
        .parse()
        .map_err(|_| format!("invalid duration {s:?}: {num:?} is not a number"))?;
    Duration::try_from_secs_f64(value * scale).map_err(|_| format!("invalid duration {s:?}"))
}

/// `track_script` entry: a script by name, optionally overriding its weight.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TrackScript {
    /// The `[[vrrp_script]]` name.
    pub name: String,
    /// Overrides the script's weight for this instance.
    pub weight: Option<i32>,
}

/// `track_interface` entry: a name, or `{ name, weight }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackInterface {
    /// Interface name.
    pub name: String,
    /// 0 (default): interface down = FAULT; otherwise a priority weight.
    pub weight: i32,
}

impl Serialize for TrackInterface {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct as _;
        if self.weight == 0 {
            return s.serialize_str(&self.name);
        }
        let mut st = s.serialize_struct("TrackInterface", 2)?;
        st.serialize_field("name", &self.name)?;
        st.serialize_field("weight", &self.weight)?;
        st.end()
    }
}

impl<'de> Deserialize<'de> for TrackInterface {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Name(String),
            Full {
                name: String,
                #[serde(default)]
                weight: i32,
            },
        }
        Ok(match Raw::deserialize(d)? {
            Raw::Name(name) => TrackInterface { name, weight: 0 },
            Raw::Full { name, weight } => TrackInterface { name, weight },
        })
    }
}

/// `[[vrrp_instance]]`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct VrrpInstance {
    /// Instance name (notify scripts get it).
    pub name: String,
    /// Interface the adverts go out on and the VIPs are added to.
    pub interface: String,
    /// 1..=255.
    pub virtual_router_id: u8,
    /// 1..=255 (255 = address owner). Default 100.
    #[serde(default = "default_priority")]
    pub priority: u8,
    /// Default 1s; v3 allows multiples of 10ms, v2 whole seconds.
    #[serde(default = "default_advert")]
    pub advert_interval: Dur,
    /// 3 (default) or 2.
    #[serde(default = "default_version")]
    pub version: u8,
    /// Default true; `false` = keepalived's `nopreempt`.
    #[serde(default = "yes")]
    pub preempt: bool,
    /// Default 0s.
    #[serde(default)]
    pub preempt_delay: Option<Dur>,
    /// v2 `auth_type PASS` password (first 8 characters are used).
    pub auth_pass: Option<String>,
    /// `"198.18.0.100/24"`; without a prefix, /32 or /128.
    pub virtual_ipaddress: Vec<String>,
    /// Source address of the adverts; default: the interface's first
    /// address of the VIPs' family (IPv6: link-local).
    pub unicast_src_ip: Option<IpAddr>,
    /// Unicast peers; empty = multicast.
    #[serde(default)]
    pub unicast_peer: Vec<IpAddr>,
    /// Scripts tracked.
    #[serde(default)]
    pub track_script: Vec<TrackScript>,
    /// Interfaces tracked.
    #[serde(default)]
    pub track_interface: Vec<TrackInterface>,
    /// Run on becoming master (`/bin/sh -c`).
    pub notify_master: Option<String>,
    /// Run on becoming backup.
    pub notify_backup: Option<String>,
    /// Run on entering fault.
    pub notify_fault: Option<String>,
    /// Run when the instance stops.
    pub notify_stop: Option<String>,
    /// Run on every transition with `INSTANCE NAME STATE PRIORITY`.
    pub notify: Option<String>,
    /// Second gratuitous ARP burst after becoming master; default 5s, 0 = none.
    #[serde(default)]
    pub garp_master_delay: Option<Dur>,
    /// Announcements per burst; default 5.
    #[serde(default)]
    pub garp_master_repeat: Option<u32>,
    /// Re-announce while master this often; default 0 = never.
    #[serde(default)]
    pub garp_master_refresh: Option<Dur>,
    /// Announcements per refresh; default 1.
    #[serde(default)]
    pub garp_master_refresh_repeat: Option<u32>,
    /// Gap between the announcements of a burst; default 0.
    #[serde(default)]
    pub garp_interval: Option<Dur>,
}

fn default_priority() -> u8 {
    100
}
fn default_advert() -> Dur {
    Dur(Duration::from_secs(1))
}
fn default_version() -> u8 {
    3
}
fn yes() -> bool {
    true
}

/// `[[vrrp_script]]`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct VrrpScript {
    /// Name used by `track_script`.
    pub name: String,
    /// Command line, run with `/bin/sh -c`.
    pub script: String,
    /// Default 1s.
    #[serde(default)]
    pub interval: Option<Dur>,
    /// Default: the interval.
    #[serde(default)]
    pub timeout: Option<Dur>,
    /// -253..=253; 0 (default): failing puts tracking instances in FAULT.
    #[serde(default)]
    pub weight: i32,
    /// Successes to count as up; default 1.
    #[serde(default = "one")]
    pub rise: u32,
    /// Failures to count as down; default 1.
    #[serde(default = "one")]
    pub fall: u32,
    /// Run the script as this user; default: as lbd.
    pub user: Option<String>,
    /// Start in the failed state (keepalived `init_fail`).
    #[serde(default)]
    pub init_fail: bool,
}

fn one() -> u32 {
    1
}

/// A configuration error: where and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file.
    pub file: PathBuf,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// Dotted path of the field (`vrrp_instance[0].priority`).
    pub field: String,
    /// What is wrong and what is allowed.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if self.field.is_empty() {
            write!(f, ": {}", self.message)
        } else {
            write!(f, ": {}: {}", self.field, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Read and validate `path`.
    ///
    /// # Errors
    /// The file cannot be read, is not valid TOML for this schema, or fails
    /// validation.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.to_owned(),
            line: None,
            field: String::new(),
            message: format!("cannot read: {e}"),
        })?;
        Self::parse(&text, path)
    }

    /// Read and validate `path`, either lb's TOML or a keepalived.conf
    /// (told apart by [`crate::config::keepalived::looks_like_keepalived`]); the
    /// second value is the keepalived conversion's warnings (`FILE:LINE:
    /// message`), none for TOML.
    ///
    /// # Errors
    /// As [`Config::load`] and [`crate::config::keepalived::parse`].
    pub fn load_any(path: &Path) -> Result<(Config, Vec<String>), ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.to_owned(),
            line: None,
            field: String::new(),
            message: format!("cannot read: {e}"),
        })?;
        if crate::config::keepalived::looks_like_keepalived(&text) {
            let (config, warnings) = crate::config::keepalived::parse(&text, path)?;
            Ok((config, warnings.iter().map(ToString::to_string).collect()))
        } else {
            Ok((Self::parse(&text, path)?, Vec::new()))
        }
    }

    /// Parse and validate `text` (from `path`, for messages).
    ///
    /// # Errors
    /// Not valid TOML for this schema, or fails validation.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| line_of(text, s.start));
            ConfigError {
                file: path.to_owned(),
                line,
                field: e
                    .span()
                    .and_then(|s| keyword_field_at(text, s.start))
                    .unwrap_or_default(),
                message: e.message().trim().to_owned(),
            }
        })?;
        config.validate(text, path)?;
        Ok(config)
    }

    /// Validate a configuration built in code rather than read from a
    /// file (keepalived's reader): the checks of [`Config::parse`], with
    /// errors naming `path` and the field but no line (the builder maps
    /// the field to its own lines).
    pub(crate) fn validate_built(&self, path: &Path) -> Result<(), ConfigError> {
        self.validate("", path)
    }

    /// The checks serde cannot do; `text` (the file) is only for the lines
    /// of the errors: empty, they have none.
    fn validate(&self, text: &str, path: &Path) -> Result<(), ConfigError> {
        let err = |table: &str, index: usize, field: &str, message: String| ConfigError {
            file: path.to_owned(),
            line: locate(text, table, index, field),
            field: format!("{table}[{index}].{field}"),
            message,
        };
        let scripts: HashSet<&str> = self.vrrp_script.iter().map(|s| s.name.as_str()).collect();
        let mut names = HashSet::new();
        for (i, s) in self.vrrp_script.iter().enumerate() {
            if !names.insert(s.name.as_str()) {
                return Err(err(
                    "vrrp_script",
                    i,
                    "name",
                    format!("duplicate script name {:?}", s.name),
                ));
            }
            if let Err(e) = machine::check_weight(&s.name, s.weight) {
                let (field, message) = vrrp_message(&e);
                return Err(err("vrrp_script", i, field, message));
            }
            if s.rise == 0 || s.fall == 0 {
                let f = if s.rise == 0 { "rise" } else { "fall" };
                return Err(err("vrrp_script", i, f, "must be at least 1".into()));
            }
            if s.interval.is_some_and(|d| d.0.is_zero()) {
                return Err(err(
                    "vrrp_script",
                    i,
                    "interval",
                    "must be more than 0".into(),
                ));
            }
        }
        let vrrp = |index: usize, e: &machine::ConfigError| {
            let (field, message) = vrrp_message(e);
            err("vrrp_instance", index, field, message)
        };
        let mut names = HashSet::new();
        let mut vrids = HashSet::new();
        for (i, v) in self.vrrp_instance.iter().enumerate() {
            if !names.insert(v.name.as_str()) {
                return Err(err(
                    "vrrp_instance",
                    i,
                    "name",
                    format!("duplicate instance name {:?}", v.name),
                ));
            }
            let version = Version::from(v.version);
            machine::check_vrid(v.virtual_router_id)
                .and(machine::check_priority(v.priority))
                .and(machine::check_version(version))
                .map_err(|e| vrrp(i, &e))?;
            if v.virtual_ipaddress.is_empty() {
                return Err(err(
                    "vrrp_instance",
                    i,
                    "virtual_ipaddress",
                    "at least one address is required".into(),
                ));
            }
            let vips = match v.vips() {
                Ok(vips) => vips,
                Err(m) => return Err(err("vrrp_instance", i, "virtual_ipaddress", m)),
            };
            let v6 = vips[0].addr.is_ipv6();
            if !vrids.insert((v.interface.as_str(), v.virtual_router_id, v6)) {
                return Err(err(
                    "vrrp_instance",
                    i,
                    "virtual_router_id",
                    format!(
                        "{} is already used on {} by another instance",
                        v.virtual_router_id, v.interface
                    ),
                ));
            }
            machine::check_version_family(version, v6).map_err(|e| vrrp(i, &e))?;
            if v.auth_pass.is_some() && v.version == 3 {
                return Err(err(
                    "vrrp_instance",
                    i,
                    "auth_pass",
                    "VRRPv3 has no authentication: remove it, or use version = 2".into(),
                ));
            }
            machine::check_advert_interval(version, v.advert_interval.0)
                .map_err(|e| vrrp(i, &e))?;
            for t in &v.track_script {
                if !scripts.contains(t.name.as_str()) {
                    return Err(err(
                        "vrrp_instance",
                        i,
                        "track_script",
                        format!("no [[vrrp_script]] named {:?}", t.name),
                    ));
                }
            }
            if let Some(src) = v.unicast_src_ip
                && src.is_ipv6() != v6
            {
                return Err(err(
                    "vrrp_instance",
                    i,
                    "unicast_src_ip",
                    "must be of the VIPs' address family".into(),
                ));
            }
            if v.unicast_peer.iter().any(|p| p.is_ipv6() != v6) {
                return Err(err(
                    "vrrp_instance",
                    i,
                    "unicast_peer",
                    "peers must be of the VIPs' address family".into(),
                ));
            }
        }
        self.validate_services(text, path)?;
        if let Some(dp) = &self.dataplane {
            for (field, value, v6) in [
                ("ipip_source_v4", &dp.ipip_source_v4, false),
                ("ipip_source_v6", &dp.ipip_source_v6, true),
            ] {
                if let Some(v) = value {
                    let bad = match parse_cidr(v) {
                        Ok((a, p)) if a.is_ipv6() == v6 && (!v6 || p >= 96) => None,
                        Ok(_) if v6 => Some(format!("{v:?}: an IPv6 prefix of /96 or longer")),
                        Ok(_) => Some(format!("{v:?}: an IPv4 address")),
                        Err(e) => Some(e),
                    };
                    if let Some(message) = bad {
                        return Err(ConfigError {
                            file: path.to_owned(),
                            line: locate(text, "dataplane", 0, field),
                            field: format!("dataplane.{field}"),
                            message,
                        });
                    }
                }
            }
            if dp.mtu < 1280 {
                return Err(ConfigError {
                    file: path.to_owned(),
                    line: locate(text, "dataplane", 0, "mtu"),
                    field: "dataplane.mtu".into(),
                    message: format!("{} is too small: at least 1280", dp.mtu),
                });
            }
            if let Err(message) = check_flow_entries(dp.conntrack_entries) {
                return Err(ConfigError {
                    file: path.to_owned(),
                    line: locate(text, "dataplane", 0, "conntrack_entries"),
                    field: "dataplane.conntrack_entries".into(),
                    message,
                });
            }
        }
        Ok(())
    }
}

impl Config {
    fn validate_services(&self, text: &str, path: &Path) -> Result<(), ConfigError> {
        let err = |index: usize, field: &str, message: String| ConfigError {
            file: path.to_owned(),
            line: locate(text, "service", index, field),
            field: format!("service[{index}].{field}"),
            message,
        };
        if !self.service.is_empty() && self.dataplane.is_none() {
            return Err(ConfigError {
                file: path.to_owned(),
                line: locate(text, "service", 0, ""),
                field: "service".into(),
                message: "services need a [dataplane] table (interface = ...)".into(),
            });
        }
        let mut keys = HashSet::new();
        for (i, svc) in self.service.iter().enumerate() {
            if !is_prime(svc.ring_size) || svc.ring_size < 3 {
                return Err(err(
                    i,
                    "ring_size",
                    format!(
                        "{} is not a prime: use 65537 (default), 131071, 251, ...",
                        svc.ring_size
                    ),
                ));
            }
            if !keys.insert((svc.vip, svc.port, svc.protocol)) {
                return Err(err(
                    i,
                    "vip",
                    format!(
                        "duplicate service {}:{}/{}",
                        svc.vip, svc.port, svc.protocol
                    ),
                ));
            }
            if let Some(name) = &svc.vrrp_instance
                && !self.vrrp_instance.iter().any(|v| &v.name == name)
            {
                return Err(err(
                    i,
                    "vrrp_instance",
                    format!("no [[vrrp_instance]] named {name:?}"),
                ));
            }
            let h = &svc.health;
            if h.kind == HealthKind::Exec && h.command.is_none() {
                return Err(err(
                    i,
                    "health",
                    "kind = \"exec\" needs command = \"...\"".into(),
                ));
            }
            if h.rise == 0 || h.fall == 0 {
                return Err(err(i, "health", "rise and fall must be at least 1".into()));
            }
            if h.interval.0.is_zero() || h.timeout.0.is_zero() {
                return Err(err(
                    i,
                    "health",
                    "interval and timeout must be more than 0".into(),
                ));
            }
            let mut seen = HashSet::new();
            for b in &svc.backend {
                if b.address.is_ipv6() != svc.vip.is_ipv6() {
                    return Err(err(
                        i,
                        "backend",
                        format!("{} is not of the VIP's address family", b.address),
                    ));
                }
                if !seen.insert(b.address) {
                    return Err(err(i, "backend", format!("{} is listed twice", b.address)));
                }
                if let Some(p) = b.port
                    && p != svc.port
                    && svc.port != 0
                {
                    return Err(err(
                        i,
                        "backend",
                        format!(
                            "{}: port {p} differs from the service's {}: dsr and ipip forward to the same port",
                            b.address, svc.port
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// A range error of [`crate::vrrp::machine`]'s checks as the field of
/// `[[vrrp_instance]]` (or `[[vrrp_script]]`, for a weight) it is about,
/// and the message: the value, and what is allowed.
fn vrrp_message(e: &machine::ConfigError) -> (&'static str, String) {
    use machine::ConfigError as E;
    match e {
        E::Vrid => ("virtual_router_id", "0 is not allowed: 1..=255".into()),
        E::Priority => (
            "priority",
            "0 is reserved (a master sends it when it stops): 1..=255, 255 = address owner".into(),
        ),
        E::Version { version } => (
            "version",
            format!("{version} is not a VRRP version: 2 or 3"),
        ),
        E::V2Ipv6 => (
            "version",
            "VRRPv2 is IPv4 only: use version = 3 for IPv6".into(),
        ),
        E::Interval { interval, version } => {
            let allowed = if *version == 2 {
                "whole seconds from 1s to 255s for version 2"
            } else {
                "a multiple of 10ms from 10ms to 40.95s for version 3"
            };
            (
                "advert_interval",
                format!("{} is not allowed: {allowed}", Dur(*interval)),
            )
        }
        E::Weight { weight, .. } => (
            "weight",
            format!(
                "{weight} is out of range: -{max}..={max}",
                max = machine::MAX_WEIGHT
            ),
        ),
        E::MixedFamilies { .. } | E::TooManyVips { .. } | E::DuplicateVip { .. } => {
            ("virtual_ipaddress", e.to_string())
        }
    }
}

fn is_prime(n: u32) -> bool {
    n >= 2
        && (2..)
            .take_while(|d| d * d <= n)
            .all(|d| !n.is_multiple_of(d))
}

impl VrrpInstance {
    /// The virtual addresses with their prefixes, all of one family.
    ///
    /// # Errors
    /// A message naming the bad entry.
    pub fn vips(&self) -> Result<Vec<crate::sys::addr::Vip>, String> {
        let mut out: Vec<crate::sys::addr::Vip> = Vec::new();
        for s in &self.virtual_ipaddress {
            let (a, p) = s
                .split_once('/')
                .map_or((s.as_str(), None), |(a, p)| (a, Some(p)));
            let addr: IpAddr = a.trim().parse().map_err(|_| {
                format!(
                    "{s:?} is not an address: write \"198.18.0.100/24\" or \"2001:db8::100/64\""
                )
            })?;
            let max = if addr.is_ipv6() { 128 } else { 32 };
            let prefix = match p {
                None => max,
                Some(p) => p
                    .trim()
                    .parse::<u8>()
                    .ok()
                    .filter(|&p| p <= max)
                    .ok_or_else(|| format!("{s:?}: prefix length must be 0..={max}"))?,
            };
            if out
                .first()
                .is_some_and(|f| f.addr.is_ipv6() != addr.is_ipv6())
            {
                return Err(format!(
                    "{s:?}: an instance's addresses must all be IPv4 or all IPv6 (use two instances)"
                ));
            }
            if out.iter().any(|v| v.addr == addr) {
                return Err(format!("{s:?} is listed twice"));
            }
            out.push(crate::sys::addr::Vip { addr, prefix });
        }
        Ok(out)
    }
}

/// 1-based line of byte offset `pos`.
fn line_of(text: &str, pos: usize) -> usize {
    text[..pos.min(text.len())].matches('\n').count() + 1
}

/// The keyword field (a [`Protocol`], [`Mode`], [`Scheduler`],
/// [`NoBackend`], [`HealthKind`] or [`XdpMode`]) whose value starts at byte
/// `pos` of `text`, named as validation names fields: `service[1].mode`,
/// `service[0].health` (for its `kind`), `dataplane.xdp_mode`. `None` for
/// any other position: other deserialization errors keep naming only the
/// line.
fn keyword_field_at(text: &str, pos: usize) -> Option<String> {
    let pos = pos.min(text.len());
    // `KEY = ` right before the value, on its line.
    let before = text[..pos].trim_end_matches([' ', '\t']);
    let before = before.strip_suffix('=')?.trim_end_matches([' ', '\t']);
    let key_start = before
        .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
        .map_or(0, |i| i + 1);
    let key = &before[key_start..];
    // The table the value is in, and how many `[[service]]`s precede it.
    let mut table = "";
    let mut services = 0usize;
    for line in text[..pos].lines() {
        let t = line.trim();
        if !t.starts_with('[') {
            continue;
        }
        let array = t.starts_with("[[");
        let name = t.trim_start_matches('[');
        let name = name.split(']').next().unwrap_or_default().trim();
        if array && name == "service" {
            services += 1;
        }
        table = name;
    }
    let service = services.checked_sub(1);
    match (table, key) {
        ("service", "protocol" | "mode" | "scheduler" | "on_no_backend") => {
            Some(format!("service[{}].{key}", service?))
        }
        ("service" | "service.health", "kind") => Some(format!("service[{}].health", service?)),
        ("dataplane", "xdp_mode") => Some("dataplane.xdp_mode".into()),
        _ => None,
    }
}

/// Best-effort line of `field` in the `index`-th `[[table]]` (or `[table]`)
/// of `text`: the table's header line when the field is not written there
/// (a default that fails validation).
fn locate(text: &str, table: &str, index: usize, field: &str) -> Option<usize> {
    let array = format!("[[{table}]]");
    let single = format!("[{table}]");
    let mut seen = 0;
    let mut in_table = false;
    let mut header = None;
    for (n, line) in text.lines().enumerate() {
        let t = line.trim();
        if t.starts_with('[') {
            if in_table {
                return header;
            }
            if t == array || t == single {
                if seen == index {
                    in_table = true;
                    header = Some(n + 1);
                }
                seen += 1;
            }
            continue;
        }
        if in_table
            && let Some((key, _)) = t.split_once('=')
            && key.trim() == field
        {
            return Some(n + 1);
        }
    }
    header
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, String> {
        Config::parse(text, Path::new("lb.toml")).map_err(|e| e.to_string())
    }

    const GOOD: &str = r#"
[global]
router_id = "lb01"

[[vrrp_script]]
name = "check_web"
script = "true"
interval = "2s"
weight = 20

[[vrrp_instance]]
name = "VI_1"
interface = "eth0"
virtual_router_id = 50
priority = 150
advert_interval = "100ms"
virtual_ipaddress = ["198.18.0.100/24", "198.18.0.101"]
track_script = [{ name = "check_web" }]
track_interface = ["eth0", { name = "eth1", weight = -30 }]
"#;

    #[test]
    fn a_good_file_loads_with_defaults() {
        let c = parse(GOOD).unwrap();
        let v = &c.vrrp_instance[0];
        assert_eq!(v.advert_interval.0, Duration::from_millis(100));
        assert_eq!(v.version, 3);
        assert!(v.preempt);
        assert_eq!(v.vips().unwrap()[1].prefix, 32);
        assert_eq!(v.track_interface[1].weight, -30);
        assert_eq!(c.vrrp_script[0].rise, 1);
        assert_eq!(c.global.bpf_pin_path, Path::new("/sys/fs/bpf/lb"));
    }

    #[test]
    fn errors_name_file_line_and_field() {
        let cases = [
            (
                GOOD.replace("priority = 150", "priority = 0"),
                "lb.toml:15: vrrp_instance[0].priority: 0 is reserved (a master sends it when it stops): 1..=255, 255 = address owner",
            ),
            (
                GOOD.replace("\"100ms\"", "\"105ms\""),
                "lb.toml:16: vrrp_instance[0].advert_interval: 105ms is not allowed: a multiple of 10ms from 10ms to 40.95s for version 3",
            ),
            (
                GOOD.replace("198.18.0.101", "198.18.0.300"),
                "lb.toml:17: vrrp_instance[0].virtual_ipaddress: \"198.18.0.300\" is not an address: write \"198.18.0.100/24\" or \"2001:db8::100/64\"",
            ),
            (
                GOOD.replace("name = \"check_web\" }", "name = \"check_db\" }"),
                "lb.toml:18: vrrp_instance[0].track_script: no [[vrrp_script]] named \"check_db\"",
            ),
            (
                GOOD.replace("priority = 150", "priority = 150\nprio = 1"),
                "lb.toml:16: unknown field `prio`, expected one of",
            ),
            (
                GOOD.replace("interval = \"2s\"", "interval = \"2 seconds\""),
                "lb.toml:8: invalid duration \"2 seconds\": write a number with a unit",
            ),
        ];
        for (text, want) in cases {
            let got = parse(&text).unwrap_err();
            assert!(got.starts_with(want), "\n got: {got}\nwant: {want}");
        }
    }

    const WITH_SERVICE: &str = r#"[dataplane]
interface = "eth0"

[[vrrp_instance]]
name = "VI_1"
interface = "eth0"
virtual_router_id = 50
virtual_ipaddress = ["198.18.0.100/24"]

[[service]]
vip = "198.18.0.100"
port = 80
mode = "dsr"
ring_size = 65537
health = { kind = "http", interval = "1s" }
backend = [
  { address = "198.18.0.11" },
  { address = "198.18.0.12", weight = 2 },
]
"#;

    /// Golden messages for broken files: each names file, line and field
    /// and says what is allowed.
    #[test]
    fn golden_errors_for_broken_files() {
        let s = WITH_SERVICE;
        let cases: Vec<(String, &str)> = vec![
            (
                s.replace("vip = \"198.18.0.100\"", "vip = \"198.18.0.300\""),
                "lb.toml:11: invalid IP address syntax",
            ),
            (
                s.replace("port = 80", "port = 80\nbackends = []"),
                "lb.toml:13: unknown field `backends`, expected one of `vip`, `port`, `protocol`, `mode`, `scheduler`, `ring_size`, `on_no_backend`, `vrrp_instance`, `active_active`, `health`, `backend`",
            ),
            (
                format!("{s}\n[[service]]\nvip = \"198.18.0.100\"\nport = 80\nbackend = []\n"),
                "lb.toml:22: service[1].vip: duplicate service 198.18.0.100:80/tcp",
            ),
            (
                s.replace(
                    "virtual_router_id = 50",
                    "virtual_router_id = 50\npriority = 0",
                ),
                "lb.toml:8: vrrp_instance[0].priority: 0 is reserved (a master sends it when it stops): 1..=255, 255 = address owner",
            ),
            (
                s.replace("mode = \"dsr\"", "mode = \"nat\""),
                "lb.toml:13: service[0].mode: nat is not implemented yet: use dsr or ipip",
            ),
            (
                s.replace("ring_size = 65537", "ring_size = 65536"),
                "lb.toml:14: service[0].ring_size: 65536 is not a prime: use 65537 (default), 131071, 251, ...",
            ),
            (
                s.replace("kind = \"http\"", "kind = \"exec\""),
                "lb.toml:15: service[0].health: kind = \"exec\" needs command = \"...\"",
            ),
            (
                s.replace(
                    "{ address = \"198.18.0.11\" }",
                    "{ address = \"198.18.0.11\", port = 8080 }",
                ),
                "lb.toml:16: service[0].backend: 198.18.0.11: port 8080 differs from the service's 80: dsr and ipip forward to the same port",
            ),
            (
                s.replace("[dataplane]\ninterface = \"eth0\"\n", ""),
                "lb.toml:8: service: services need a [dataplane] table (interface = ...)",
            ),
            (
                s.replace("interval = \"1s\"", "interval = \"1 s\""),
                "lb.toml:15: invalid duration \"1 s\": write a number with a unit: ms, s, m or h (\"1s\", \"100ms\")",
            ),
            (
                s.replace(
                    "{ address = \"198.18.0.12\", weight = 2 }",
                    "{ address = \"2001:db8::12\" }",
                ),
                "lb.toml:16: service[0].backend: 2001:db8::12 is not of the VIP's address family",
            ),
            (
                s.replace(
                    "virtual_router_id = 50",
                    "virtual_router_id = 50\nauth_pass = \"1111\"",
                ),
                "lb.toml:8: vrrp_instance[0].auth_pass: VRRPv3 has no authentication: remove it, or use version = 2",
            ),
            (
                s.replace(
                    "interface = \"eth0\"\n\n[[vrrp",
                    "interface = \"eth0\"\nxdp_mode = \"fast\"\n\n[[vrrp",
                ),
                "lb.toml:3: dataplane.xdp_mode: \"fast\" is not a mode: auto, native or generic",
            ),
            (
                s.replace(
                    "interface = \"eth0\"\n\n[[vrrp",
                    "interface = \"eth0\"\nconntrack_entries = 4\n\n[[vrrp",
                ),
                "lb.toml:3: dataplane.conntrack_entries: 4 is too small: at least 8",
            ),
            (
                s.replace(
                    "interface = \"eth0\"\n\n[[vrrp",
                    "interface = \"eth0\"\nconntrack_entries = 100000000\n\n[[vrrp",
                ),
                "lb.toml:3: dataplane.conntrack_entries: 100000000 is too large: at most 67108864 (72 bytes per flow)",
            ),
            (
                format!(
                    "{s}\n[[vrrp_instance]]\nname = \"VI_2\"\ninterface = \"eth0\"\nvirtual_router_id = 50\nvirtual_ipaddress = [\"198.18.0.101\"]\n"
                ),
                "lb.toml:24: vrrp_instance[1].virtual_router_id: 50 is already used on eth0 by another instance",
            ),
        ];
        let mut wrong = Vec::new();
        for (text, want) in cases {
            let got = parse(&text).unwrap_err();
            if !got.starts_with(want) {
                wrong.push(format!(" got: {got}\nwant: {want}"));
            }
        }
        assert!(wrong.is_empty(), "\n{}", wrong.join("\n"));
        assert!(parse(s).is_ok(), "the base file is valid");
    }

    /// Every keyword value reads back from its `Display`, and serde writes
    /// the same spelling.
    #[test]
    fn keywords_parse_and_display_their_spelling() {
        fn check<T>(all: &[T], spellings: &[&str])
        where
            T: Copy + fmt::Debug + PartialEq + fmt::Display + FromStr + Serialize,
            T::Err: fmt::Debug,
        {
            let shown: Vec<String> = all.iter().map(ToString::to_string).collect();
            assert_eq!(shown, spellings);
            for &v in all {
                assert_eq!(v.to_string().parse::<T>().unwrap(), v);
                assert_eq!(serde_json::to_value(v).unwrap(), v.to_string(), "{v:?}");
            }
        }
        check(Protocol::ALL, &["tcp", "udp"]);
        check(Mode::ALL, &["dsr", "ipip"]);
        check(Scheduler::ALL, &["maglev"]);
        check(NoBackend::ALL, &["drop", "pass"]);
        check(HealthKind::ALL, &["tcp", "http", "exec", "none"]);
        check(XdpMode::ALL, &["auto", "native", "generic"]);
        assert_eq!(Protocol::default(), Protocol::Tcp);
        assert_eq!(Mode::default(), Mode::Dsr);
        assert_eq!(Scheduler::default(), Scheduler::Maglev);
        assert_eq!(NoBackend::default(), NoBackend::Drop);
        assert_eq!(HealthKind::default(), HealthKind::Tcp);
        assert_eq!(XdpMode::default(), XdpMode::Auto);
        // Spellings are exact: keepalived's upper case is its reader's job.
        assert!("TCP".parse::<Protocol>().is_err());
        assert!("Dsr".parse::<Mode>().is_err());
    }

    /// The defaults the file gets when it leaves the keyword fields out.
    #[test]
    fn keyword_defaults_apply() {
        let text = "[dataplane]\ninterface = \"eth0\"\n\n[[service]]\nvip = \"198.18.0.100\"\nport = 80\nbackend = []\n";
        let c = parse(text).unwrap();
        let s = &c.service[0];
        assert_eq!(
            (
                s.protocol,
                s.mode,
                s.scheduler,
                s.on_no_backend,
                s.health.kind
            ),
            (
                Protocol::Tcp,
                Mode::Dsr,
                Scheduler::Maglev,
                NoBackend::Drop,
                HealthKind::Tcp
            )
        );
        assert_eq!(c.dataplane.unwrap().xdp_mode, XdpMode::Auto);
    }

    #[test]
    fn keywords_convert_to_the_data_planes_types() {
        use crate::dataplane::{balancer, loader::AttachMode};
        assert_eq!(
            balancer::Protocol::from(Protocol::Udp),
            balancer::Protocol::Udp
        );
        assert_eq!(
            balancer::Protocol::from(Protocol::Tcp),
            balancer::Protocol::Tcp
        );
        assert_eq!(balancer::Mode::from(Mode::Dsr), balancer::Mode::Dsr);
        assert_eq!(balancer::Mode::from(Mode::Ipip), balancer::Mode::Ipip);
        assert_eq!(
            balancer::NoBackend::from(NoBackend::Drop),
            balancer::NoBackend::Drop
        );
        assert_eq!(
            balancer::NoBackend::from(NoBackend::Pass),
            balancer::NoBackend::Pass
        );
        // The file's native or generic wins over --xdp-mode; auto leaves it
        // to the command line.
        for cli in [AttachMode::Auto, AttachMode::Native, AttachMode::Generic] {
            assert_eq!(XdpMode::Native.or_command_line(cli), AttachMode::Native);
            assert_eq!(XdpMode::Generic.or_command_line(cli), AttachMode::Generic);
            assert_eq!(XdpMode::Auto.or_command_line(cli), cli);
        }
    }

    /// Golden messages for every refused keyword value: file, line, field
    /// and the values allowed.
    #[test]
    fn golden_errors_for_keywords() {
        let s = WITH_SERVICE;
        let dp = |line: &str| {
            s.replace(
                "interface = \"eth0\"\n\n[[vrrp",
                &format!("interface = \"eth0\"\n{line}\n\n[[vrrp"),
            )
        };
        let svc = |line: &str| s.replace("mode = \"dsr\"", &format!("mode = \"dsr\"\n{line}"));
        let cases: Vec<(String, &str)> = vec![
            (
                s.replace("mode = \"dsr\"", "protocol = \"sctp\""),
                "lb.toml:13: service[0].protocol: \"sctp\" is not a protocol: tcp or udp",
            ),
            (
                s.replace("mode = \"dsr\"", "protocol = \"TCP\""),
                "lb.toml:13: service[0].protocol: \"TCP\" is not a protocol: tcp or udp",
            ),
            (
                s.replace("mode = \"dsr\"", "mode = \"nat\""),
                "lb.toml:13: service[0].mode: nat is not implemented yet: use dsr or ipip",
            ),
            (
                s.replace("mode = \"dsr\"", "mode = \"tun\""),
                "lb.toml:13: service[0].mode: \"tun\" is not a mode: dsr or ipip",
            ),
            (
                svc("scheduler = \"rr\""),
                "lb.toml:14: service[0].scheduler: \"rr\" is not a scheduler: maglev",
            ),
            (
                svc("on_no_backend = \"reject\""),
                "lb.toml:14: service[0].on_no_backend: \"reject\": drop or pass",
            ),
            (
                s.replace("kind = \"http\"", "kind = \"icmp\""),
                "lb.toml:15: service[0].health: kind \"icmp\": tcp, http, exec or none",
            ),
            (
                dp("xdp_mode = \"fast\""),
                "lb.toml:3: dataplane.xdp_mode: \"fast\" is not a mode: auto, native or generic",
            ),
            (
                dp("xdp_mode = \"offload\""),
                "lb.toml:3: dataplane.xdp_mode: \"offload\" is not a mode: auto, native or generic",
            ),
            // Not a string at all: serde's wording, with the field.
            (
                s.replace("mode = \"dsr\"", "mode = 1"),
                "lb.toml:13: service[0].mode: invalid type: integer `1`, expected a string",
            ),
            // The second service, and `health` as a table of its own.
            (
                format!(
                    "{s}\n[[service]]\nvip = \"198.18.0.100\"\nport = 81\nbackend = []\nmode = \"gre\"\n"
                ),
                "lb.toml:25: service[1].mode: \"gre\" is not a mode: dsr or ipip",
            ),
            (
                format!(
                    "{s}\n[[service]]\nvip = \"198.18.0.100\"\nport = 81\nbackend = []\n\n[service.health]\nkind = \"ping\"\n"
                ),
                "lb.toml:27: service[1].health: kind \"ping\": tcp, http, exec or none",
            ),
        ];
        let mut wrong = Vec::new();
        for (text, want) in cases {
            let got = parse(&text).unwrap_err();
            if got != want {
                wrong.push(format!(" got: {got}\nwant: {want}"));
            }
        }
        assert!(wrong.is_empty(), "\n{}", wrong.join("\n"));
    }

    /// The VRRP ranges come from the state machine's checks; the messages
    /// name the file's line and field.
    #[test]
    fn golden_errors_for_vrrp_ranges() {
        let cases = [
            (
                GOOD.replace("virtual_router_id = 50", "virtual_router_id = 0"),
                "lb.toml:14: vrrp_instance[0].virtual_router_id: 0 is not allowed: 1..=255",
            ),
            (
                GOOD.replace("priority = 150", "priority = 150\nversion = 4"),
                "lb.toml:16: vrrp_instance[0].version: 4 is not a VRRP version: 2 or 3",
            ),
            (
                GOOD.replace("priority = 150", "priority = 150\nversion = 2")
                    .replace("\"100ms\"", "\"1500ms\""),
                "lb.toml:17: vrrp_instance[0].advert_interval: 1.5s is not allowed: whole seconds from 1s to 255s for version 2",
            ),
            (
                GOOD.replace("\"100ms\"", "\"41s\""),
                "lb.toml:16: vrrp_instance[0].advert_interval: 41s is not allowed: a multiple of 10ms from 10ms to 40.95s for version 3",
            ),
            (
                GOOD.replace("priority = 150", "priority = 150\nversion = 2")
                    .replace("\"100ms\"", "\"1s\"")
                    .replace(
                        "[\"198.18.0.100/24\", \"198.18.0.101\"]",
                        "[\"2001:db8::100/64\"]",
                    ),
                "lb.toml:16: vrrp_instance[0].version: VRRPv2 is IPv4 only: use version = 3 for IPv6",
            ),
            (
                GOOD.replace("weight = 20", "weight = 254"),
                "lb.toml:9: vrrp_script[0].weight: 254 is out of range: -253..=253",
            ),
            (
                GOOD.replace("weight = 20", "weight = -254"),
                "lb.toml:9: vrrp_script[0].weight: -254 is out of range: -253..=253",
            ),
        ];
        let mut wrong = Vec::new();
        for (text, want) in cases {
            let got = parse(&text).unwrap_err();
            if got != want {
                wrong.push(format!(" got: {got}\nwant: {want}"));
            }
        }
        assert!(wrong.is_empty(), "\n{}", wrong.join("\n"));
        for ok in ["weight = 253", "weight = -253"] {
            assert!(parse(&GOOD.replace("weight = 20", ok)).is_ok(), "{ok}");
        }
    }

    #[test]
    fn the_shipped_example_loads() {
        let text = include_str!("../../../examples/lb.toml");
        let c = Config::parse(text, Path::new("examples/lb.toml")).unwrap();
        assert_eq!(c.vrrp_instance.len(), 1);
        assert_eq!(c.vrrp_script[0].weight, -60);
        assert_eq!(c.service.len(), 1);
        assert_eq!(c.service[0].backend.len(), 2);
        assert_eq!(
            c.global.metrics_listen,
            Some("127.0.0.1:9678".parse().unwrap())
        );
        assert_eq!(c.dataplane.unwrap().interface, "eth0");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("1s"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_duration("100ms"), Ok(Duration::from_millis(100)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert!(parse_duration("1").is_err());
        assert!(parse_duration("-1s").is_err());
    }
}
