//! The configuration's model: the serde types of the TOML file (the same
//! types keepalived's reader builds), with their defaults, the keyword
//! enums read once, and the value syntaxes (durations, `ADDR/PREFIX`).

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::ValueError;

/// The whole file.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
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
    /// `[[vrrp_track_process]]`: processes instances track.
    #[serde(default)]
    pub vrrp_track_process: Vec<VrrpTrackProcess>,
    /// `[[vrrp_track_file]]`: files holding a number instances track.
    #[serde(default)]
    pub vrrp_track_file: Vec<VrrpTrackFile>,
    /// `[[vrrp_sync_group]]`: instances that change state together.
    #[serde(default)]
    pub vrrp_sync_group: Vec<VrrpSyncGroup>,
    /// `[[service]]`: virtual services the data plane balances.
    #[serde(default)]
    pub service: Vec<Service>,
    /// `[sync]`: connection-state sync with peer lbd nodes; absent = off.
    pub sync: Option<Sync>,
    /// `[bgp]`: the BGP speaker that announces the VIPs of services with
    /// `announce = "bgp"`; absent = no BGP.
    pub bgp: Option<Bgp>,
    /// `[nat]`: the NAT table of `nat` / `fullnat` services.
    #[serde(default)]
    pub nat: Nat,
}

/// `[nat]`: size, SNAT ports and timeouts of the NAT table, which holds
/// the flows of `nat` and `fullnat` services (`lb_common::nat`).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Nat {
    /// Flows the table holds (two entries each, about 300 bytes per flow
    /// in all); a full table refuses new flows. Default 262144.
    pub flows: u32,
    /// Source ports of `fullnat` flows, `"FIRST-LAST"`. Default
    /// `"1024-32767"`, below the kernel's ephemeral ports, so this node's
    /// own connections from the same address never collide.
    pub snat_ports: String,
    /// Default `snat_address` of `fullnat` services.
    pub snat_address: Option<IpAddr>,
    /// Idle timeout of a half-open TCP flow. Default 60 s.
    pub tcp_syn: Dur,
    /// Idle timeout of an established TCP flow. Default 15 min.
    pub tcp_established: Dur,
    /// Idle timeout after a FIN. Default 60 s.
    pub tcp_fin: Dur,
    /// Idle timeout after a RST. Default 10 s.
    pub tcp_close: Dur,
    /// Idle timeout of a UDP flow. Default 60 s.
    pub udp: Dur,
}

impl Default for Nat {
    fn default() -> Self {
        let t = lb_common::nat::Timeouts::default();
        let secs = |s: u32| Dur(Duration::from_secs(u64::from(s)));
        let (first, last) = lb_common::nat::DEFAULT_SNAT_PORTS;
        Self {
            flows: lb_common::nat::DEFAULT_NAT_FLOWS,
            snat_ports: format!("{first}-{last}"),
            snat_address: None,
            tcp_syn: secs(t.tcp_syn),
            tcp_established: secs(t.tcp_established),
            tcp_fin: secs(t.tcp_fin),
            tcp_close: secs(t.tcp_close),
            udp: secs(t.udp),
        }
    }
}

impl Nat {
    /// The timeouts in whole seconds (at least 1).
    #[must_use]
    pub fn timeouts(&self) -> lb_common::nat::Timeouts {
        let secs = |d: Dur| u32::try_from(d.0.as_secs().max(1)).unwrap_or(u32::MAX);
        lb_common::nat::Timeouts {
            tcp_syn: secs(self.tcp_syn),
            tcp_established: secs(self.tcp_established),
            tcp_fin: secs(self.tcp_fin),
            tcp_close: secs(self.tcp_close),
            udp: secs(self.udp),
        }
    }
}

/// `"FIRST-LAST"`: a range of ports, neither 0, first <= last.
///
/// # Errors
/// A message saying what is wrong.
pub fn parse_port_range(s: &str) -> Result<(u16, u16), String> {
    let bad = || format!("{s:?} is not a port range: write \"FIRST-LAST\", e.g. \"1024-32767\"");
    let (a, b) = s.split_once('-').ok_or_else(bad)?;
    let a: u16 = a.trim().parse().map_err(|_| bad())?;
    let b: u16 = b.trim().parse().map_err(|_| bad())?;
    if a == 0 || a > b {
        return Err(bad());
    }
    Ok((a, b))
}

/// `[sync]`: this node's new flows go to its peers, theirs into its
/// connection table (`crate::sync`).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Sync {
    /// Shared secret authenticating the datagrams (HMAC-SHA256), the same
    /// on every node; at least 16 characters. Or `secret_file`.
    pub secret: Option<String>,
    /// A file whose first line is the secret (keep it mode 0600).
    pub secret_file: Option<PathBuf>,
    /// The peers' addresses. Default: the VRRP instances' `unicast_peer`s.
    #[serde(default)]
    pub peers: Vec<IpAddr>,
    /// UDP port, the same on every node. Default 8849.
    #[serde(default = "default_sync_port")]
    pub port: u16,
    /// Address to receive on and send from. Default: any.
    pub listen: Option<IpAddr>,
    /// How long a starting node waits for its peers' tables (bulk sync)
    /// before its VRRP instances may preempt anyway. Default 5 s.
    #[serde(default = "default_bulk_timeout")]
    pub bulk_timeout: Dur,
}

fn default_sync_port() -> u16 {
    8849
}

fn default_bulk_timeout() -> Dur {
    Dur(std::time::Duration::from_secs(5))
}

impl Sync {
    /// Sync with `peers` under `secret`, every other field as when the
    /// file leaves it out.
    #[must_use]
    pub fn new(secret: impl Into<String>, peers: Vec<IpAddr>) -> Self {
        Self {
            secret: Some(secret.into()),
            secret_file: None,
            peers,
            port: default_sync_port(),
            listen: None,
            bulk_timeout: default_bulk_timeout(),
        }
    }
}

/// `[[service]]`.
#[allow(
    clippy::struct_excessive_bools,
    reason = "each is a key of the file, independent of the others"
)]
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Service {
    /// Virtual IP. Required.
    pub vip: IpAddr,
    /// Port; 0 = every port. Required.
    pub port: u16,
    /// `tcp` (default) or `udp`.
    #[serde(default)]
    pub protocol: Protocol,
    /// `dsr` (default), `ipip`, `nat` or `fullnat`.
    #[serde(default)]
    pub mode: Mode,
    /// `fullnat`: the source address of translated flows. Default:
    /// `[nat] snat_address`, else the address the kernel would send from
    /// towards each backend (`ip route get BACKEND`'s `src`).
    pub snat_address: Option<IpAddr>,
    /// `maglev` (default): Maglev over the whole 5-tuple; `source_hash`:
    /// Maglev over the client's address only (keepalived's `lb_algo sh`),
    /// so every flow of a client goes to one backend, without state.
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
    /// `vrrp` (default): the VRRP master takes the VIP; `bgp`: every node
    /// forwards and announces the VIP over BGP while a backend is up
    /// (`[bgp]`).
    #[serde(default, skip_serializing_if = "is_default")]
    pub announce: Announce,
    /// Health check; default `{ kind = "tcp" }`.
    #[serde(default)]
    pub health: Health,
    /// Backends start down, and join the pool once their checks pass
    /// (keepalived's `alpha`); default false: they start up, and leave
    /// when their checks fail.
    #[serde(default, skip_serializing_if = "is_false")]
    pub start_down: bool,
    /// A backend whose checks fail stays in the pool with weight 0
    /// (keepalived's `inhibit_on_failure`): its established flows go on,
    /// new ones go elsewhere. Default false: it leaves the pool. A
    /// backend's own `inhibit_on_failure` wins.
    #[serde(default, skip_serializing_if = "is_false")]
    pub inhibit_on_failure: bool,
    /// Where new flows go while no backend is up (keepalived's
    /// `sorry_server`). Default: none (`on_no_backend` applies).
    pub sorry_server: Option<SorryServer>,
    /// Client affinity (keepalived's `persistence_timeout`): a client's
    /// new flows go to the backend its last ones went to, while it was
    /// seen less than this long ago. Default: none (each flow balanced on
    /// its own).
    pub persistence_timeout: Option<Dur>,
    /// With `persistence_timeout`: how many leading bits of the client's
    /// address count (keepalived's `persistence_granularity`): clients in
    /// one such prefix share a backend. Default: the whole address (32,
    /// or 128 for IPv6).
    pub persistence_prefix: Option<u8>,
    /// When the service counts as up, and the commands run when it
    /// changes (keepalived's `quorum`, `hysteresis`, `quorum_up`,
    /// `quorum_down`). Default: up while the up backends' weights add up
    /// to at least 1, no commands.
    pub quorum: Option<Quorum>,
    /// When lbd stops (not on a restart that leaves the data plane
    /// forwarding), run the `notify_down` of every backend that is up and
    /// the quorum's `notify_down` (keepalived's `omega`). Default false.
    #[serde(default, skip_serializing_if = "is_false")]
    pub notify_on_stop: bool,
    /// More backends from an etcd prefix (`backends_from = { etcd =
    /// ["http://198.18.0.50:2379"], prefix = "/lb/web/" }`): each key
    /// under the prefix is a backend while it exists (registered under a
    /// lease, by `lbctl register`), health-checked as the static ones.
    /// Default: none (only `backend`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backends_from: Option<BackendsFrom>,
    /// Backends. Required (may be empty).
    pub backend: Vec<BackendConfig>,
}

/// `backends_from` of a service: where more backends come from. Each key
/// under `prefix` holds one backend, as JSON (`{"address": "198.18.0.5",
/// "port": 80, "weight": 3}`, port and weight optional) or a bare
/// address (`198.18.0.5`, `198.18.0.5:80`, `[2001:db8::5]:80`);
/// `crate::services::etcd::parse_member` reads it.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq, Hash, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BackendsFrom {
    /// etcd's client URLs (`http://HOST:PORT`). Required, at least one.
    pub etcd: Vec<String>,
    /// The key prefix; every key under it is a backend. Required.
    pub prefix: String,
    /// The port of backends whose value names none; default: the
    /// service's.
    pub port: Option<u16>,
}

/// `quorum = { weight = 3, hysteresis = 1, notify_up = "...", notify_down
/// = "..." }` of a service (keepalived's quorum): the service has its
/// quorum while the weights of its up backends add up to at least
/// `weight`. With `hysteresis`, it gains the quorum at `weight +
/// hysteresis` and loses it below `weight - hysteresis` (or at 0).
/// Without the quorum, the sorry server (if any) takes the new flows and
/// the up backends keep only the flows they have.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Quorum {
    /// The weight that makes the quorum; default 1.
    #[serde(default = "one")]
    pub weight: u32,
    /// Default 0.
    #[serde(default)]
    pub hysteresis: u32,
    /// `/bin/sh -c` command run when the service gains its quorum.
    pub notify_up: Option<String>,
    /// `/bin/sh -c` command run when the service loses it.
    pub notify_down: Option<String>,
}

fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

#[allow(
    clippy::trivially_copy_pass_by_ref,
    reason = "serde's skip_serializing_if passes a reference"
)]
fn is_false(b: &bool) -> bool {
    !*b
}

/// `sorry_server = { address = "...", port = 80 }` of a service.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SorryServer {
    /// Address. Required.
    pub address: IpAddr,
    /// Port; default: the service's (only nat and fullnat can change it).
    pub port: Option<u16>,
    /// Keep it in the pool with weight 0 while backends are up, so the
    /// flows it took go on when they return (keepalived's
    /// `sorry_server_inhibit`); default false: it leaves the pool.
    #[serde(default, skip_serializing_if = "is_false")]
    pub inhibit: bool,
}

fn default_ring() -> u32 {
    lb_common::vip::DEFAULT_RING_SIZE
}

impl Service {
    /// `vip`:`port` balanced over `backend`, every other field as when
    /// the file leaves it out.
    #[must_use]
    pub fn new(vip: IpAddr, port: u16, backend: Vec<BackendConfig>) -> Self {
        Self {
            vip,
            port,
            protocol: Protocol::default(),
            mode: Mode::default(),
            snat_address: None,
            scheduler: Scheduler::default(),
            ring_size: default_ring(),
            on_no_backend: NoBackend::default(),
            vrrp_instance: None,
            active_active: false,
            announce: Announce::default(),
            health: Health::default(),
            start_down: false,
            inhibit_on_failure: false,
            sorry_server: None,
            persistence_timeout: None,
            persistence_prefix: None,
            quorum: None,
            notify_on_stop: false,
            backends_from: None,
            backend,
        }
    }
}

/// `Display` (the file's spelling), `FromStr` and `Deserialize` of a
/// keyword enum from its spellings; `$refuse` makes the error for any
/// other value from it and the spellings allowed (the wording validation
/// used when these were strings).
/// `Serialize` is derived (`rename_all = "lowercase"`); a unit test checks
/// that it writes the same spellings.
macro_rules! keyword {
    ($t:ident { $($v:ident => $s:literal),+ $(,)? }, $refuse:expr) => {
        impl $t {
            /// Every value, in the order the error messages list them.
            pub const ALL: &'static [$t] = &[$($t::$v),+];

            /// The spellings of [`Self::ALL`].
            const SPELLINGS: &'static [&'static str] = &[$($s),+];

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
            type Err = ValueError;

            fn from_str(s: &str) -> Result<Self, ValueError> {
                match s {
                    $($s => Ok($t::$v),)+
                    other => Err(($refuse)(other.to_owned(), Self::SPELLINGS)),
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
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// `tcp` (default).
    #[default]
    Tcp,
    /// `udp`.
    Udp,
}

keyword!(Protocol { Tcp => "tcp", Udp => "udp" }, |value, allowed| {
    ValueError::NotA {
        value,
        what: "protocol",
        allowed,
    }
});

impl From<Protocol> for crate::dataplane::balancer::Protocol {
    fn from(p: Protocol) -> Self {
        match p {
            Protocol::Tcp => Self::Tcp,
            Protocol::Udp => Self::Udp,
        }
    }
}

/// `mode` of a `[[service]]`: how packets reach the backends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// `dsr` (default): L2 direct routing.
    #[default]
    Dsr,
    /// `ipip`: IP-in-IP to the backend.
    Ipip,
    /// `nat`: LVS-NAT, the destination translated; the backends route
    /// their replies through this node.
    Nat,
    /// `fullnat`: destination and source translated; the backends need no
    /// change at all.
    Fullnat,
}

keyword!(Mode { Dsr => "dsr", Ipip => "ipip", Nat => "nat", Fullnat => "fullnat" }, |value: String, allowed| {
    ValueError::NotA {
        value,
        what: "mode",
        allowed,
    }
});

impl From<Mode> for crate::dataplane::balancer::Mode {
    fn from(m: Mode) -> Self {
        match m {
            Mode::Dsr => Self::Dsr,
            Mode::Ipip => Self::Ipip,
            Mode::Nat => Self::Nat,
            Mode::Fullnat => Self::Fullnat,
        }
    }
}

/// `scheduler` of a `[[service]]`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Scheduler {
    /// `maglev` (default): Maglev consistent hashing of the 5-tuple.
    #[default]
    Maglev,
    /// `source_hash`: Maglev consistent hashing of the client's address.
    SourceHash,
}

keyword!(Scheduler { Maglev => "maglev", SourceHash => "source_hash" }, |value, allowed| {
    ValueError::NotA {
        value,
        what: "scheduler",
        allowed,
    }
});

/// `[bgp]`: lbd announces a VIP by putting a route to it into a kernel
/// routing table of its own (`table`), which the BGP speaker (bird2)
/// learns and exports to its BGP neighbours; it withdraws the VIP by
/// deleting the route (`crate::bgp`). `examples/bird/` has a complete
/// speaker configuration.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Bgp {
    /// The speaker: `bird` (bird2), the only one for now.
    #[serde(default)]
    pub speaker: Speaker,
    /// The speaker's control socket, which lbd checks at start (and
    /// polls for its BGP sessions' states). Default `/run/bird/bird.ctl`.
    #[serde(default = "default_bird_socket")]
    pub socket: PathBuf,
    /// The kernel routing table lbd writes the announced VIPs into (the
    /// speaker's `kernel table` with `learn`). Default 100; not the
    /// main, local or default table.
    #[serde(default = "default_bgp_table")]
    pub table: u32,
    /// On SIGTERM, how long lbd keeps forwarding after withdrawing its
    /// VIPs, while the routers move the flows to the other nodes.
    /// Default 1s.
    #[serde(default = "default_withdraw_grace")]
    pub withdraw_grace: Dur,
}

fn default_bird_socket() -> PathBuf {
    "/run/bird/bird.ctl".into()
}

fn default_bgp_table() -> u32 {
    100
}

fn default_withdraw_grace() -> Dur {
    Dur(Duration::from_secs(1))
}

impl Bgp {
    /// A `[bgp]` speaking through bird's socket at `socket`, every other
    /// field as when the file leaves it out.
    #[must_use]
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        Self {
            speaker: Speaker::default(),
            socket: socket.into(),
            table: default_bgp_table(),
            withdraw_grace: default_withdraw_grace(),
        }
    }
}

/// `speaker` of `[bgp]`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Speaker {
    /// `bird` (default): bird2.
    #[default]
    Bird,
}

keyword!(Speaker { Bird => "bird" }, |value, allowed| {
    ValueError::NotA {
        value,
        what: "BGP speaker",
        allowed,
    }
});

/// `announce` of a `[[service]]`: how the routers learn that this node
/// takes the VIP.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Announce {
    /// `vrrp` (default): the VRRP master holds the VIP and answers ARP
    /// for it; the other nodes stand by.
    #[default]
    Vrrp,
    /// `bgp`: every node forwards, and announces the VIP over BGP
    /// (`[bgp]`) while the service has a backend up; the routers spread
    /// the flows over the nodes (ECMP).
    Bgp,
}

keyword!(Announce { Vrrp => "vrrp", Bgp => "bgp" }, |value, allowed| {
    ValueError::NotA {
        value,
        what: "way of announcing",
        allowed,
    }
});

/// `on_no_backend` of a `[[service]]`: new flows when no backend is up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum NoBackend {
    /// `drop` (default).
    #[default]
    Drop,
    /// `pass`: to the local stack.
    Pass,
}

keyword!(NoBackend { Drop => "drop", Pass => "pass" }, |value, allowed| {
    ValueError::NotOneOf { value, allowed }
});

impl From<NoBackend> for crate::dataplane::balancer::NoBackend {
    fn from(n: NoBackend) -> Self {
        match n {
            NoBackend::Drop => Self::Drop,
            NoBackend::Pass => Self::Pass,
        }
    }
}

/// `kind` of a service's `health`; the kind-specific fields (`path`,
/// `expect_status`, `urls`, `dns_name`, `command`, ...) stay in
/// [`Health`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum HealthKind {
    /// `tcp` (default): connect.
    #[default]
    Tcp,
    /// `http`: GET `path` (or each of `urls`), expect `expect_status`.
    Http,
    /// `https`: as `http`, over TLS (keepalived's `SSL_GET`).
    Https,
    /// `dns`: a query (`dns_name`, `dns_type`) over UDP, answered
    /// without error.
    Dns,
    /// `smtp`: a greeting (220) and `HELO smtp_helo` (250), as
    /// keepalived's `SMTP_CHECK`.
    Smtp,
    /// `exec`: run `command`, exit 0 = up.
    Exec,
    /// `none`: always up.
    None,
}

keyword!(
    HealthKind { Tcp => "tcp", Http => "http", Https => "https", Dns => "dns", Smtp => "smtp", Exec => "exec", None => "none" },
    |value, allowed| ValueError::NotAHealthKind { value, allowed }
);

/// `xdp_mode` of `[dataplane]`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, schemars::JsonSchema)]
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
    |value, allowed| ValueError::NotA {
        value,
        what: "mode",
        allowed
    }
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

/// `health = { ... }` of a service (or of a backend).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Health {
    /// `tcp` (connect), `http`/`https` (GET, status), `dns` (query),
    /// `exec` (exit 0), `none`.
    pub kind: HealthKind,
    /// Time between checks.
    pub interval: Dur,
    /// A check not done after this long fails.
    pub timeout: Dur,
    /// Consecutive successes to come up.
    pub rise: u32,
    /// Consecutive failures to go down.
    pub fall: u32,
    /// `http`/`https`: the path requested.
    pub path: String,
    /// `http`/`https`: the status codes that pass: `200`, `"200-299"`,
    /// or a list (`[200, "300-399"]`).
    pub expect_status: Statuses,
    /// `http`/`https`: the MD5 (32 hex digits) the body must have.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// `http`/`https`: several URLs, each with its own `path` (and
    /// `expect_status`, `digest`; default the check's), all of which have
    /// to pass; in place of `path`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<Url>,
    /// `http`/`https`: the `Host` header (and TLS server name); default
    /// the backend's address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub virtualhost: Option<String>,
    /// `https`: verify the server's certificate against the CA
    /// certificates (PEM) of this file; default: not verified (as
    /// keepalived's `SSL_GET`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_ca: Option<PathBuf>,
    /// `dns`: the name queried; default `"."`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns_name: Option<String>,
    /// `dns`: the record type (`A`, `NS`, `CNAME`, `SOA`, `MX`, `TXT`,
    /// `AAAA`); default `SOA`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns_type: Option<String>,
    /// `smtp`: the name sent with `HELO`; default
    /// `smtpchecker.keepalived.org` (keepalived's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub smtp_helo: Option<String>,
    /// `exec`: command line (`/bin/sh -c`), with `$BACKEND` and `$PORT` set.
    pub command: Option<String>,
    /// `exec`: run as this user.
    pub user: Option<String>,
    /// `exec`: exit codes 2–255 pass and set the backend's weight to the
    /// code − 2 (keepalived's `misc_dynamic`); default: they fail.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub dynamic_weight: bool,
    /// The source address of the check's connections (keepalived's
    /// `bindto`); default: the kernel's choice.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bind: Option<IpAddr>,
    /// Port to check; default: the backend's.
    pub port: Option<u16>,
    /// After a failed check while the backend is still up, the next one
    /// starts this long after it (keepalived's `delay_before_retry`);
    /// default: `interval`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_interval: Option<Dur>,
    /// The first check starts after a random delay of up to this long
    /// (keepalived's `warmup`); default: at once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warmup: Option<Dur>,
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
            expect_status: Statuses::one(200),
            digest: None,
            urls: Vec::new(),
            virtualhost: None,
            tls_ca: None,
            dns_name: None,
            dns_type: None,
            smtp_helo: None,
            command: None,
            user: None,
            dynamic_weight: false,
            bind: None,
            port: None,
            retry_interval: None,
            warmup: None,
        }
    }
}

/// One of the `urls` of an `http`/`https` check.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Url {
    /// The path requested. Required.
    pub path: String,
    /// Status codes that pass; default the check's `expect_status`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expect_status: Option<Statuses>,
    /// MD5 of the body; default the check's `digest`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
}

/// The `expect_status` of a check: HTTP status codes and ranges, written
/// `200`, `"200-299"`, `"200-299, 404"` or `[200, "300-399"]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statuses(pub crate::services::health::http::StatusCodes);

impl Statuses {
    /// Exactly `code`.
    #[must_use]
    pub fn one(code: u16) -> Self {
        Self(crate::services::health::http::StatusCodes::one(code))
    }
}

impl fmt::Display for Statuses {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for Statuses {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        s.parse().map(Self)
    }
}

impl Serialize for Statuses {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0.ranges() {
            [(lo, hi)] if lo == hi => s.serialize_u16(*lo),
            _ => s.serialize_str(&self.to_string()),
        }
    }
}

impl schemars::JsonSchema for Statuses {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "StatusCodes".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let one = schemars::json_schema!({
            "anyOf": [
                { "type": "integer", "minimum": 100, "maximum": 999 },
                { "type": "string", "description": "\"200-299\" or \"200-299, 404\"" }
            ]
        });
        schemars::json_schema!({
            "description": "HTTP status codes: 200, \"200-299\", \"200-299, 404\" or a list of them.",
            "anyOf": [one, { "type": "array", "items": one }]
        })
    }
}

impl<'de> Deserialize<'de> for Statuses {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use crate::services::health::http::StatusCodes;
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Statuses;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a status code (200), a range (\"200-299\"), or a list of them")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Statuses, E> {
                let code =
                    u16::try_from(v).map_err(|_| E::custom(format!("{v} is not a status code")))?;
                StatusCodes::new(vec![(code, code)])
                    .map(Statuses)
                    .map_err(E::custom)
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Statuses, E> {
                self.visit_i64(i64::try_from(v).unwrap_or(i64::MAX))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Statuses, E> {
                v.parse().map_err(E::custom)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Statuses, A::Error> {
                let mut ranges = Vec::new();
                while let Some(one) = seq.next_element::<Statuses>()? {
                    ranges.extend_from_slice(one.0.ranges());
                }
                StatusCodes::new(ranges)
                    .map(Statuses)
                    .map_err(serde::de::Error::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// One backend of a service.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BackendConfig {
    /// Address. Required.
    pub address: IpAddr,
    /// Port; default: the service's (dsr and ipip cannot change ports).
    pub port: Option<u16>,
    /// Relative share of new flows; 0 = drained. Default 1.
    #[serde(default = "one")]
    pub weight: u32,
    /// Its own health checks, in place of the service's `health`: one
    /// table (`health = { kind = "http", path = "/ready" }`) or several
    /// (`[[service.backend.health]]`), every one of which has to pass for
    /// the backend to be up. Default: the service's `health`.
    #[serde(
        default,
        deserialize_with = "one_or_many",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub health: Vec<Health>,
    /// Whether it stays in the pool with weight 0 when its checks fail;
    /// default: the service's `inhibit_on_failure`.
    pub inhibit_on_failure: Option<bool>,
    /// `/bin/sh -c` command run when it comes up (keepalived's real server
    /// `notify_up`).
    pub notify_up: Option<String>,
    /// `/bin/sh -c` command run when it goes down (`notify_down`).
    pub notify_down: Option<String>,
}

impl BackendConfig {
    /// `address` with the service's port and weight 1, as when the file
    /// leaves them out.
    #[must_use]
    pub fn new(address: IpAddr) -> Self {
        Self {
            address,
            port: None,
            weight: one(),
            health: Vec::new(),
            inhibit_on_failure: None,
            notify_up: None,
            notify_down: None,
        }
    }

    /// The checks this backend runs: its own, else the service's
    /// `default` (a `none` check: always up, no task).
    #[must_use]
    pub fn checks<'a>(&'a self, default: &'a Health) -> &'a [Health] {
        if self.health.is_empty() {
            std::slice::from_ref(default)
        } else {
            &self.health
        }
    }
}

/// A backend's `health`: one table or an array of them.
fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Health>, D::Error> {
    struct Checks;
    impl<'de> serde::de::Visitor<'de> for Checks {
        type Value = Vec<Health>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a health table or an array of health tables")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
            Health::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(|h| vec![h])
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some(h) = seq.next_element()? {
                out.push(h);
            }
            Ok(out)
        }
    }
    d.deserialize_any(Checks)
}

/// `[global]`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
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
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
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
    /// Backend slots: (service, backend) pairs across all services, each
    /// with its own counters (a backend in two services takes two). 64 to
    /// 1048576; default 4096. Each costs 48 bytes plus 48 bytes per CPU.
    #[serde(default = "default_backend_pairs")]
    pub backend_pairs: u32,
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
    /// A second interface, where backends sit (two-arm): the program runs
    /// on both and forwards between them with `XDP_REDIRECT`. Backends
    /// are reached through whichever of the two the kernel's route to
    /// them leaves by. Default: none (one arm, `XDP_TX`).
    pub backend_interface: Option<String>,
}

fn default_mtu() -> u16 {
    1500
}

fn default_backend_pairs() -> u32 {
    lb_common::backend::MAX_BACKENDS
}

impl Dataplane {
    /// XDP on `interface`, every other field as when the file leaves it
    /// out.
    #[must_use]
    pub fn new(interface: impl Into<String>) -> Self {
        Self {
            interface: interface.into(),
            xdp_mode: XdpMode::default(),
            conntrack_entries: default_conntrack(),
            backend_pairs: default_backend_pairs(),
            ipip_source_v4: None,
            ipip_source_v6: None,
            mtu: default_mtu(),
            backend_interface: None,
        }
    }
}

/// Parse `"ADDR/PREFIX"` (prefix optional: a host).
///
/// # Errors
/// [`ValueError::NotCidr`], [`ValueError::PrefixLength`].
pub fn parse_cidr(s: &str) -> Result<(IpAddr, u8), ValueError> {
    let (a, p) = split_prefix(s);
    let addr: IpAddr = a.trim().parse().map_err(|source| ValueError::NotCidr {
        input: s.to_owned(),
        source,
    })?;
    Ok((addr, prefix_len(s, p, addr)?))
}

/// `"ADDR/PREFIX"` → `("ADDR", Some("PREFIX"))`; `"ADDR"` → `("ADDR", None)`.
fn split_prefix(s: &str) -> (&str, Option<&str>) {
    s.split_once('/').map_or((s, None), |(a, p)| (a, Some(p)))
}

/// The prefix length `p` of `addr` in the entry `s`: a host without one.
fn prefix_len(s: &str, p: Option<&str>, addr: IpAddr) -> Result<u8, ValueError> {
    let max = if addr.is_ipv6() { 128 } else { 32 };
    match p {
        None => Ok(max),
        Some(p) => p
            .trim()
            .parse::<u8>()
            .ok()
            .filter(|&p| p <= max)
            .ok_or_else(|| ValueError::PrefixLength {
                input: s.to_owned(),
                max,
            }),
    }
}

/// `[dataplane] backend_pairs`: a number of backend slots the data plane
/// can hold.
///
/// # Errors
/// [`ValueError::BackendPairs`].
pub fn check_backend_pairs(n: u32) -> Result<(), ValueError> {
    use lb_common::backend::{MAX_BACKEND_PAIRS, MIN_BACKEND_PAIRS};
    if (MIN_BACKEND_PAIRS..=MAX_BACKEND_PAIRS).contains(&n) {
        Ok(())
    } else {
        Err(ValueError::BackendPairs {
            pairs: n,
            min: MIN_BACKEND_PAIRS,
            max: MAX_BACKEND_PAIRS,
        })
    }
}

/// `conntrack_entries` / `--flow-entries`: a table size the data plane can
/// build.
///
/// # Errors
/// [`ValueError::TooFewFlows`], [`ValueError::TooManyFlows`].
pub fn check_flow_entries(n: u32) -> Result<(), ValueError> {
    use lb_common::flow::{MAX_FLOW_ENTRIES, MIN_FLOW_ENTRIES};
    if n < MIN_FLOW_ENTRIES {
        return Err(ValueError::TooFewFlows {
            entries: n,
            min: MIN_FLOW_ENTRIES,
        });
    }
    if n > MAX_FLOW_ENTRIES {
        return Err(ValueError::TooManyFlows {
            entries: n,
            max: MAX_FLOW_ENTRIES,
        });
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

impl schemars::JsonSchema for Dur {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "A duration with its unit: \"100ms\", \"1s\", \"1.5s\", \"2m\", \"1h\" (or \"0\").",
            "pattern": "^\\s*(0|[0-9.]+(ms|s|m|h))\\s*$"
        })
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
/// [`ValueError::DurationUnit`], [`ValueError::DurationNumber`],
/// [`ValueError::DurationRange`].
pub fn parse_duration(s: &str) -> Result<Duration, ValueError> {
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
            return Err(ValueError::DurationUnit {
                input: s.to_owned(),
            });
        }
    };
    let value: f64 = num.parse().map_err(|source| ValueError::DurationNumber {
        input: s.to_owned(),
        number: num.to_owned(),
        source,
    })?;
    Duration::try_from_secs_f64(value * scale).map_err(|source| ValueError::DurationRange {
        input: s.to_owned(),
        source,
    })
}

/// `track_script`, `track_process` or `track_file` entry: a
/// `[[vrrp_script]]`, `[[vrrp_track_process]]` or `[[vrrp_track_file]]` by
/// name, optionally overriding its weight.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TrackScript {
    /// The `[[vrrp_script]]` (`[[vrrp_track_process]]`,
    /// `[[vrrp_track_file]]`) name.
    pub name: String,
    /// Overrides the tracked object's weight for this instance.
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

impl schemars::JsonSchema for TrackInterface {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "TrackInterface".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "An interface name (down = FAULT), or { name, weight } (down lowers the priority by the weight's magnitude).",
            "anyOf": [
                { "type": "string" },
                {
                    "type": "object",
                    "properties": {
                        "name": { "type": "string" },
                        "weight": { "type": "integer", "default": 0 }
                    },
                    "required": ["name"],
                    "additionalProperties": false
                }
            ]
        })
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
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
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
    /// Processes tracked (`[[vrrp_track_process]]` names).
    #[serde(default)]
    pub track_process: Vec<TrackScript>,
    /// Files tracked (`[[vrrp_track_file]]` names).
    #[serde(default)]
    pub track_file: Vec<TrackScript>,
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
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
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

impl VrrpScript {
    /// Script `name` running `script`, every other field as when the file
    /// leaves it out.
    #[must_use]
    pub fn new(name: impl Into<String>, script: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            script: script.into(),
            interval: None,
            timeout: None,
            weight: 0,
            rise: one(),
            fall: one(),
            user: None,
            init_fail: false,
        }
    }
}

impl TrackScript {
    /// Track script `name` with its own weight.
    #[must_use]
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            weight: None,
        }
    }
}

impl VrrpInstance {
    /// Instance `name` on `interface` holding `virtual_ipaddress`, every
    /// other field as when the file leaves it out.
    #[must_use]
    pub fn new(
        name: impl Into<String>,
        interface: impl Into<String>,
        virtual_router_id: u8,
        virtual_ipaddress: Vec<String>,
    ) -> Self {
        Self {
            name: name.into(),
            interface: interface.into(),
            virtual_router_id,
            priority: default_priority(),
            advert_interval: default_advert(),
            version: default_version(),
            preempt: yes(),
            preempt_delay: None,
            auth_pass: None,
            virtual_ipaddress,
            unicast_src_ip: None,
            unicast_peer: Vec::new(),
            track_script: Vec::new(),
            track_interface: Vec::new(),
            track_process: Vec::new(),
            track_file: Vec::new(),
            notify_master: None,
            notify_backup: None,
            notify_fault: None,
            notify_stop: None,
            notify: None,
            garp_master_delay: None,
            garp_master_repeat: None,
            garp_master_refresh: None,
            garp_master_refresh_repeat: None,
            garp_interval: None,
        }
    }

    /// The virtual addresses with their prefixes, all of one family.
    ///
    /// # Errors
    /// The first bad entry: [`ValueError::NotAVip`],
    /// [`ValueError::PrefixLength`], [`ValueError::MixedVipFamilies`],
    /// [`ValueError::VipTwice`].
    pub fn vips(&self) -> Result<Vec<crate::sys::addr::Vip>, ValueError> {
        let mut out: Vec<crate::sys::addr::Vip> = Vec::new();
        for s in &self.virtual_ipaddress {
            let input = || s.clone();
            let (a, p) = split_prefix(s);
            let addr: IpAddr = a.trim().parse().map_err(|source| ValueError::NotAVip {
                input: input(),
                source,
            })?;
            let prefix = prefix_len(s, p, addr)?;
            if out
                .first()
                .is_some_and(|f| f.addr.is_ipv6() != addr.is_ipv6())
            {
                return Err(ValueError::MixedVipFamilies { input: input() });
            }
            if out.iter().any(|v| v.addr == addr) {
                return Err(ValueError::VipTwice { input: input() });
            }
            out.push(crate::sys::addr::Vip { addr, prefix });
        }
        Ok(out)
    }
}

/// `[[vrrp_sync_group]]`: keepalived's `vrrp_sync_group`, instances that
/// change state together (`crate::vrrp::sync`): one in FAULT puts the
/// others in FAULT, one becoming MASTER takes the others to MASTER, one
/// stepping down to BACKUP takes the others to BACKUP.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VrrpSyncGroup {
    /// The group's name (notify scripts get it).
    pub name: String,
    /// The `[[vrrp_instance]]` names; an instance is in one group at most.
    pub instances: Vec<String>,
    /// Run when the group becomes master (`/bin/sh -c`).
    pub notify_master: Option<String>,
    /// Run when the group becomes backup.
    pub notify_backup: Option<String>,
    /// Run when the group enters fault.
    pub notify_fault: Option<String>,
    /// Run on every group transition with `GROUP NAME STATE`.
    pub notify: Option<String>,
    /// Keep the members' tracking weights (keepalived
    /// `sync_group_tracking_weight`). Default false: as keepalived, every
    /// object a member tracks counts with weight 0 (down = FAULT), so the
    /// members' priorities stay alike.
    #[serde(default)]
    pub tracking_weight: bool,
}

impl VrrpSyncGroup {
    /// Group `name` of `instances`, every other field as when the file
    /// leaves it out.
    #[must_use]
    pub fn new(name: impl Into<String>, instances: Vec<String>) -> Self {
        Self {
            name: name.into(),
            instances,
            notify_master: None,
            notify_backup: None,
            notify_fault: None,
            notify: None,
            tracking_weight: false,
        }
    }
}

/// How a `[[vrrp_track_process]]`'s `parameters` match a command line's
/// arguments (keepalived `param_match`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum ParamMatch {
    /// The arguments are exactly the parameters (default).
    #[default]
    Exact,
    /// The first arguments are the parameters; more may follow.
    Partial,
    /// As `partial`, and the last parameter may be the start of its
    /// argument.
    Initial,
}

/// `[[vrrp_track_process]]`: keepalived's `vrrp_track_process`, whether
/// enough processes of a name run (`crate::vrrp::track`).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VrrpTrackProcess {
    /// Name used by `track_process`.
    pub name: String,
    /// The process name (`/proc/PID/comm`, at most 15 characters
    /// compared); with `parameters`, `param_match` or `full_command`, the
    /// first word of the command line (`/proc/PID/cmdline`).
    pub process: String,
    /// Arguments the command line must have (see `param_match`).
    #[serde(default)]
    pub parameters: Vec<String>,
    /// How `parameters` match; set without parameters, the command must
    /// have no arguments (`exact`).
    pub param_match: Option<ParamMatch>,
    /// Match the command line even without parameters (keepalived
    /// `full_command`).
    #[serde(default)]
    pub full_command: bool,
    /// Fewest matching processes for OK; default 1.
    #[serde(default = "one")]
    pub quorum: u32,
    /// Most matching processes for OK; default: no limit.
    pub quorum_max: Option<u32>,
    /// -253..=253; default 1 (keepalived's). 0: too few (or too many)
    /// processes put tracking instances in FAULT; positive: added to the
    /// priority while OK; negative: added while not OK.
    #[serde(default = "one_i32")]
    pub weight: i32,
    /// Sets both `fork_delay` and `terminate_delay`.
    pub delay: Option<Dur>,
    /// How long the quorum must hold before it counts as gained.
    pub fork_delay: Option<Dur>,
    /// How long the quorum must be lost before it counts as lost.
    pub terminate_delay: Option<Dur>,
}

fn one_i32() -> i32 {
    1
}

impl VrrpTrackProcess {
    /// Track `name` watching processes named `process`, every other field
    /// as when the file leaves it out.
    #[must_use]
    pub fn new(name: impl Into<String>, process: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            process: process.into(),
            parameters: Vec::new(),
            param_match: None,
            full_command: false,
            quorum: one(),
            quorum_max: None,
            weight: one_i32(),
            delay: None,
            fork_delay: None,
            terminate_delay: None,
        }
    }
}

/// `[[vrrp_track_file]]`: keepalived's `track_file` (`vrrp_track_file`), a
/// file holding an integer (`crate::vrrp::track`).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VrrpTrackFile {
    /// Name used by `track_file`.
    pub name: String,
    /// The file. A missing or unreadable file reads as 0.
    pub file: PathBuf,
    /// -253..=253; default 1 (keepalived's). 0: a non-zero value puts
    /// tracking instances in FAULT; otherwise `value * weight` is added to
    /// the priority, and a product below -253 is FAULT.
    #[serde(default = "one_i32")]
    pub weight: i32,
    /// Write this value to the file at start if it does not exist
    /// (keepalived `init_file VALUE`).
    pub init_file: Option<i64>,
    /// With `init_file`: write it even over an existing file (keepalived
    /// `init_file VALUE overwrite`).
    #[serde(default)]
    pub init_overwrite: bool,
}

impl VrrpTrackFile {
    /// Track `name` reading `file`, every other field as when the file
    /// leaves it out.
    #[must_use]
    pub fn new(name: impl Into<String>, file: impl Into<PathBuf>) -> Self {
        Self {
            name: name.into(),
            file: file.into(),
            weight: one_i32(),
            init_file: None,
            init_overwrite: false,
        }
    }
}
