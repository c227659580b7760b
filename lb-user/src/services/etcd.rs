//! Backends from etcd: a service's `backends_from = { etcd = [...], prefix
//! = "/lb/web/" }` adds a backend for each key under the prefix while the
//! key exists. Backends register their key under a lease they keep alive
//! (`lbctl register`), so a backend whose agent dies leaves when its
//! lease expires, and one that stops cleanly deletes its key at once.
//!
//! One watcher task per distinct (endpoints, prefix) ([`Source`]): it
//! reads the prefix with its revision, then watches from the next
//! revision, and after every change sends the prefix's whole membership
//! ([`Update`]) to the daemon's loop. The loop keeps the last membership
//! of each source in [`Watchers`] and applies [`Watchers::effective`]
//! (the file's services, each with its etcd members added to its static
//! backends) through `Controller::reload`, which applies only the
//! difference: members that stay keep their health state and MAC; new
//! ones are health-checked like any backend.
//!
//! etcd unreachable (not started yet, restarted, partitioned): the last
//! membership stays, the outage is logged once, the task retries with a
//! backoff (0.5 s doubling to 5 s) and, once through, reads the prefix
//! again (a full resync) before it watches. A watch whose revision was
//! compacted resyncs the same way.
//!
//! A key's value is the backend: JSON (`{"address": "198.18.0.5", "port":
//! 80, "weight": 3}`, port and weight optional) or a bare address
//! (`198.18.0.5`, `198.18.0.5:80`, `[2001:db8::5]:80`); see
//! [`parse_member`]. `lbctl register` writes the JSON form
//! ([`member_value`]).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use etcd_client::{Client, ConnectOptions, EventType, GetOptions, WatchOptions};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::config::{self, BackendConfig, BackendsFrom, Config, Mode};

/// The first retry after a failure; doubled after each failure up to
/// [`MAX_BACKOFF`].
pub const MIN_BACKOFF: Duration = Duration::from_millis(500);
/// The longest wait between two attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How long one request to etcd (connect, get, watch set-up) may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);
/// HTTP/2 pings on an idle connection, and how long an answer may take:
/// a silent etcd (a partition; a stopped one closes the connection) is
/// noticed within twice this. Not below etcd's
/// `--grpc-keepalive-min-time` (5 s): etcd closes connections that ping
/// more often.
pub const KEEPALIVE: Duration = Duration::from_secs(10);

/// Where members come from: etcd's endpoints and the key prefix.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Source {
    /// etcd's client URLs.
    pub endpoints: Vec<String>,
    /// The key prefix.
    pub prefix: String,
}

impl Source {
    /// The source of a service's `backends_from`.
    #[must_use]
    pub fn of(from: &BackendsFrom) -> Self {
        Self {
            endpoints: from.etcd.clone(),
            prefix: from.prefix.clone(),
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "etcd {}", self.prefix)
    }
}

/// One backend registered under a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Member {
    /// Its address.
    pub address: IpAddr,
    /// Its port; default: `backends_from`'s `port`, else the service's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Its weight; default 1.
    #[serde(default = "one")]
    pub weight: u32,
}

fn one() -> u32 {
    1
}

impl fmt::Display for Member {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.port {
            Some(p) => write!(f, "{}", SocketAddr::new(self.address, p))?,
            None => write!(f, "{}", self.address)?,
        }
        if self.weight != 1 {
            write!(f, " weight {}", self.weight)?;
        }
        Ok(())
    }
}

/// The members of one source, by key.
pub type Members = BTreeMap<String, Member>;

/// Read a key's value: JSON `{"address": "198.18.0.5", "port": 80,
/// "weight": 3}` (port and weight optional), or a bare `198.18.0.5`,
/// `198.18.0.5:80` or `[2001:db8::5]:80`. Surrounding whitespace is
/// ignored.
///
/// # Errors
/// What is wrong, and the forms allowed.
pub fn parse_member(value: &str) -> Result<Member, String> {
    let v = value.trim();
    if v.starts_with('{') {
        let m: Member = serde_json::from_str(v).map_err(|e| {
            format!(
                "{v:?} is not a backend: {e} (write {{\"address\": \"198.18.0.5\", \"port\": 80, \"weight\": 3}}, port and weight optional)"
            )
        })?;
        if m.port == Some(0) {
            return Err(format!("{v:?}: port 0 is not a port"));
        }
        return Ok(m);
    }
    if let Ok(address) = v.parse::<IpAddr>() {
        return Ok(Member {
            address,
            port: None,
            weight: 1,
        });
    }
    match v.parse::<SocketAddr>() {
        Ok(sa) if sa.port() != 0 => Ok(Member {
            address: sa.ip(),
            port: Some(sa.port()),
            weight: 1,
        }),
        _ => Err(format!(
            "{v:?} is not a backend: write an address (198.18.0.5, 198.18.0.5:80, [2001:db8::5]:80) or JSON {{\"address\": \"198.18.0.5\", \"weight\": 3}}"
        )),
    }
}

/// The value `lbctl register` writes for `member` (JSON; weight left out
/// when 1).
#[must_use]
pub fn member_value(member: &Member) -> String {
    #[derive(Serialize)]
    struct Value {
        address: IpAddr,
        #[serde(skip_serializing_if = "Option::is_none")]
        port: Option<u16>,
        #[serde(skip_serializing_if = "Option::is_none")]
        weight: Option<u32>,
    }
    serde_json::to_string(&Value {
        address: member.address,
        port: member.port,
        weight: (member.weight != 1).then_some(member.weight),
    })
    .unwrap_or_default()
}

/// A source's whole membership after a change, from its watcher task.
#[derive(Debug, Clone)]
pub struct Update {
    /// The source.
    pub source: Source,
    /// Its members now.
    pub members: Members,
}

struct Watcher {
    task: tokio::task::JoinHandle<()>,
    /// The last membership reported (kept through outages).
    members: Members,
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The daemon's watchers, one per distinct source of the configuration,
/// and the last membership each reported.
pub struct Watchers {
    watchers: HashMap<Source, Watcher>,
    tx: mpsc::UnboundedSender<Update>,
}

impl Watchers {
    /// No watchers yet, and the receiver their updates arrive on.
    #[must_use]
    pub fn new() -> (Self, mpsc::UnboundedReceiver<Update>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (
            Self {
                watchers: HashMap::new(),
                tx,
            },
            rx,
        )
    }

    /// Watch every source `config`'s services name: start the new ones,
    /// stop those no service names any more (their members go with them).
    pub fn apply(&mut self, config: &Config) {
        let wanted: Vec<Source> = config
            .service
            .iter()
            .filter_map(|s| s.backends_from.as_ref().map(Source::of))
            .collect();
        self.watchers.retain(|source, _| {
            let keep = wanted.contains(source);
            if !keep {
                info!("{source}: no service takes backends from it any more; watch stopped");
            }
            keep
        });
        for source in wanted {
            if self.watchers.contains_key(&source) {
                continue;
            }
            info!(
                "{source}: watching for backends at {}",
                source.endpoints.join(",")
            );
            let task = tokio::spawn(watch(source.clone(), self.tx.clone()));
            self.watchers.insert(
                source,
                Watcher {
                    task,
                    members: Members::new(),
                },
            );
        }
    }

    /// Keep `update`'s membership; whether it changed (an update from a
    /// source no longer watched is dropped).
    pub fn update(&mut self, update: Update) -> bool {
        match self.watchers.get_mut(&update.source) {
            Some(w) if w.members != update.members => {
                w.members = update.members;
                true
            }
            _ => false,
        }
    }

    /// The last membership of `source`, if it is watched.
    #[must_use]
    pub fn members(&self, source: &Source) -> Option<&Members> {
        self.watchers.get(source).map(|w| &w.members)
    }

    /// `config` with each `backends_from` service's etcd members added to
    /// its static backends, and a line for each member left out (another
    /// address family; a port dsr or ipip cannot forward to; an address
    /// already a backend of the service: the static one, or the first key,
    /// wins).
    #[must_use]
    pub fn effective(&self, config: &Config) -> (Config, Vec<String>) {
        let mut effective = config.clone();
        let mut skipped = Vec::new();
        for svc in &mut effective.service {
            let Some(from) = svc.backends_from.clone() else {
                continue;
            };
            let source = Source::of(&from);
            let Some(members) = self.members(&source) else {
                continue;
            };
            for (key, m) in members {
                match member_backend(svc, &from, m) {
                    Ok(b) => svc.backend.push(b),
                    Err(why) => skipped.push(format!(
                        "{source}: key {key} ({m}) left out of {}:{}: {why}",
                        svc.vip, svc.port
                    )),
                }
            }
        }
        (effective, skipped)
    }

    /// The key a backend of service `svc` (of the file) was registered
    /// under, when it is an etcd member and not a static backend.
    #[must_use]
    pub fn key_of(&self, svc: &config::Service, address: IpAddr) -> Option<String> {
        if svc.backend.iter().any(|b| b.address == address) {
            return None;
        }
        let members = self.members(&Source::of(svc.backends_from.as_ref()?))?;
        members
            .iter()
            .find(|(_, m)| m.address == address)
            .map(|(k, _)| k.clone())
    }
}

/// Member `m` as a backend of service `svc`, or why it cannot be one.
fn member_backend(
    svc: &config::Service,
    from: &BackendsFrom,
    m: &Member,
) -> Result<BackendConfig, String> {
    if m.address.is_ipv6() != svc.vip.is_ipv6() {
        return Err("not of the VIP's address family".into());
    }
    if svc.backend.iter().any(|b| b.address == m.address) {
        return Err("already a backend of the service".into());
    }
    let port = m.port.or(from.port);
    if let Some(p) = port
        && p != svc.port
        && svc.port != 0
        && !matches!(svc.mode, Mode::Nat | Mode::Fullnat)
    {
        return Err(format!(
            "port {p} differs from the service's {}: dsr and ipip forward to the same port",
            svc.port
        ));
    }
    Ok(BackendConfig {
        port,
        weight: m.weight,
        ..BackendConfig::new(m.address)
    })
}

/// Why a watch session ended.
enum Lost {
    /// etcd could not be reached, or the connection broke.
    Outage(String),
    /// The watch's revision was compacted away: read the prefix again.
    Compacted(i64),
}

impl<E: fmt::Display> From<E> for Lost {
    fn from(e: E) -> Self {
        Self::Outage(e.to_string())
    }
}

/// What a watcher task carries from one session to the next.
struct Watch {
    source: Source,
    tx: mpsc::UnboundedSender<Update>,
    /// The membership last sent.
    members: Members,
    /// When the current outage began (logged once), if etcd is out.
    outage: Option<Instant>,
    /// A first membership has been read.
    synced: bool,
}

/// A watcher task: sessions (read, then watch) until aborted; between
/// them, after an outage, the backoff.
async fn watch(source: Source, tx: mpsc::UnboundedSender<Update>) {
    let mut w = Watch {
        source,
        tx,
        members: Members::new(),
        outage: None,
        synced: false,
    };
    let mut backoff = MIN_BACKOFF;
    loop {
        match w.session(&mut backoff).await {
            Lost::Compacted(rev) => {
                info!(
                    "{}: watch revision compacted (to {rev}); reading the prefix again",
                    w.source
                );
                continue;
            }
            Lost::Outage(e) => {
                if w.outage.is_none() {
                    w.outage = Some(Instant::now());
                    let keeping = if w.synced {
                        format!("keeping the last membership ({} backends)", w.members.len())
                    } else {
                        "no backends from it until it answers".to_owned()
                    };
                    warn!(
                        "{}: etcd at {} unreachable ({e}); {keeping}; retrying",
                        w.source,
                        w.source.endpoints.join(",")
                    );
                }
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// `f` within [`REQUEST_TIMEOUT`].
async fn timed<T, E: fmt::Display>(
    what: &str,
    f: impl Future<Output = Result<T, E>>,
) -> Result<T, Lost> {
    match tokio::time::timeout(REQUEST_TIMEOUT, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(Lost::Outage(format!("{what}: {e}"))),
        Err(_) => Err(Lost::Outage(format!(
            "{what}: no answer in {} s",
            REQUEST_TIMEOUT.as_secs()
        ))),
    }
}

impl Watch {
    /// Connect, read the prefix (a full resync), then follow its changes
    /// until the watch breaks.
    async fn session(&mut self, backoff: &mut Duration) -> Lost {
        match self.session_inner(backoff).await {
            Ok(never) => match never {},
            Err(lost) => lost,
        }
    }

    async fn session_inner(
        &mut self,
        backoff: &mut Duration,
    ) -> Result<std::convert::Infallible, Lost> {
        let options = ConnectOptions::new()
            .with_connect_timeout(REQUEST_TIMEOUT)
            .with_keep_alive(KEEPALIVE, KEEPALIVE)
            .with_keep_alive_while_idle(true);
        let mut client = timed(
            "connect",
            Client::connect(self.source.endpoints.clone(), Some(options)),
        )
        .await?;
        let prefix = self.source.prefix.clone();
        let got = timed(
            "get",
            client.get(prefix.clone(), Some(GetOptions::new().with_prefix())),
        )
        .await?;
        let revision = got
            .header()
            .map_or(0, etcd_client::ResponseHeader::revision);
        let mut fresh = Members::new();
        for kv in got.kvs() {
            let key = String::from_utf8_lossy(kv.key()).into_owned();
            match parse_member(&String::from_utf8_lossy(kv.value())) {
                Ok(m) => {
                    fresh.insert(key, m);
                }
                Err(e) => warn!("{}: key {key} ignored: {e}", self.source),
            }
        }
        let mut stream = timed(
            "watch",
            client.watch(
                prefix,
                Some(
                    WatchOptions::new()
                        .with_prefix()
                        .with_start_revision(revision + 1),
                ),
            ),
        )
        .await?;
        if let Some(since) = self.outage.take() {
            info!(
                "{}: etcd reachable again after {:.1} s; prefix read at revision {revision} ({} keys), watching",
                self.source,
                since.elapsed().as_secs_f64(),
                fresh.len()
            );
        } else {
            info!(
                "{}: prefix read at revision {revision} ({} keys), watching",
                self.source,
                fresh.len()
            );
        }
        *backoff = MIN_BACKOFF;
        self.resync(fresh);
        loop {
            let Some(msg) = stream.message().await? else {
                return Err(Lost::Outage("the watch stream ended".into()));
            };
            if msg.compact_revision() > 0 {
                return Err(Lost::Compacted(msg.compact_revision()));
            }
            if msg.canceled() {
                return Err(Lost::Outage(format!(
                    "watch canceled: {}",
                    msg.cancel_reason()
                )));
            }
            let mut changed = false;
            for ev in msg.events() {
                let Some(kv) = ev.kv() else { continue };
                let key = String::from_utf8_lossy(kv.key()).into_owned();
                changed |= match ev.event_type() {
                    EventType::Put => match parse_member(&String::from_utf8_lossy(kv.value())) {
                        Ok(m) => self.put(&key, m),
                        Err(e) => {
                            warn!("{}: key {key} ignored: {e}", self.source);
                            self.delete(&key, "its value is not a backend")
                        }
                    },
                    EventType::Delete => self.delete(&key, "key deleted or lease expired"),
                };
            }
            if changed {
                self.send();
            }
        }
    }

    /// Take a fresh read of the prefix: log each difference, send it
    /// when anything changed (and after the first read, even if empty).
    fn resync(&mut self, fresh: Members) {
        let mut changed = !self.synced;
        self.synced = true;
        let gone: Vec<String> = self
            .members
            .keys()
            .filter(|k| !fresh.contains_key(*k))
            .cloned()
            .collect();
        for key in gone {
            changed |= self.delete(&key, "key gone when the prefix was read again");
        }
        for (key, m) in fresh {
            changed |= self.put(&key, m);
        }
        if changed {
            self.send();
        }
    }

    /// Key `key` holds `m`; whether that changed the membership.
    fn put(&mut self, key: &str, m: Member) -> bool {
        match self.members.insert(key.to_owned(), m) {
            Some(old) if old == m => false,
            Some(old) => {
                info!("{}: backend {old} is now {m} (key {key})", self.source);
                true
            }
            None => {
                info!("{}: backend {m} joined (key {key})", self.source);
                true
            }
        }
    }

    /// Key `key` is gone because of `why`; whether it was a member.
    fn delete(&mut self, key: &str, why: &str) -> bool {
        match self.members.remove(key) {
            Some(m) => {
                info!(
                    "{}: backend {} left ({why}; key {key})",
                    self.source, m.address
                );
                true
            }
            None => false,
        }
    }

    fn send(&self) {
        let _ = self.tx.send(Update {
            source: self.source.clone(),
            members: self.members.clone(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(a: &str, port: Option<u16>, weight: u32) -> Member {
        Member {
            address: a.parse().unwrap(),
            port,
            weight,
        }
    }

    #[test]
    fn values_are_json_or_bare_addresses() {
        assert_eq!(
            parse_member("198.18.0.5"),
            Ok(member("198.18.0.5", None, 1))
        );
        assert_eq!(
            parse_member(" 198.18.0.5:8080\n"),
            Ok(member("198.18.0.5", Some(8080), 1))
        );
        assert_eq!(
            parse_member("[2001:db8::5]:80"),
            Ok(member("2001:db8::5", Some(80), 1))
        );
        assert_eq!(
            parse_member("2001:db8::5"),
            Ok(member("2001:db8::5", None, 1))
        );
        assert_eq!(
            parse_member(r#"{"address": "198.18.0.5", "weight": 3}"#),
            Ok(member("198.18.0.5", None, 3))
        );
        assert_eq!(
            parse_member(r#"{"address": "198.18.0.5", "port": 80, "weight": 0}"#),
            Ok(member("198.18.0.5", Some(80), 0))
        );
        for bad in [
            "",
            "web1",
            "198.18.0.5:0",
            "198.18.0.300",
            r#"{"address": "198.18.0.5", "port": 0}"#,
            r#"{"addr": "198.18.0.5"}"#,
            r#"{"address": "198.18.0.5", "weight": -1}"#,
            r#"{"weight": 2}"#,
        ] {
            let e = parse_member(bad).unwrap_err();
            assert!(
                e.contains("198.18.0.5") || e.contains("port 0"),
                "{bad:?}: {e}"
            );
        }
        assert_eq!(
            parse_member("web1").unwrap_err(),
            "\"web1\" is not a backend: write an address (198.18.0.5, 198.18.0.5:80, [2001:db8::5]:80) or JSON {\"address\": \"198.18.0.5\", \"weight\": 3}"
        );
    }

    #[test]
    fn register_writes_what_the_watcher_reads() {
        for m in [
            member("198.18.0.5", None, 1),
            member("198.18.0.5", Some(8080), 3),
            member("2001:db8::5", None, 0),
        ] {
            assert_eq!(parse_member(&member_value(&m)), Ok(m));
        }
        assert_eq!(
            member_value(&member("198.18.0.5", None, 1)),
            r#"{"address":"198.18.0.5"}"#
        );
    }

    /// The effective configuration: static backends first, then members
    /// (by key), those that cannot be backends of the service left out
    /// with the reason; a source not watched adds nothing. (The
    /// single-threaded test runtime never runs the watcher task `apply`
    /// spawns: this test never awaits, so nothing is sent to the
    /// endpoint.)
    #[tokio::test]
    async fn members_join_the_static_backends() {
        let from = BackendsFrom {
            etcd: vec!["http://198.18.0.50:2379".into()],
            prefix: "/lb/web/".into(),
            port: None,
        };
        let vip: IpAddr = "198.18.0.100".parse().unwrap();
        let svc = config::Service {
            backends_from: Some(from.clone()),
            ..config::Service::new(
                vip,
                80,
                vec![BackendConfig::new("198.18.0.11".parse().unwrap())],
            )
        };
        let other = config::Service::new(vip, 81, Vec::new());
        let config = Config {
            service: vec![svc.clone(), other.clone()],
            ..Config::default()
        };
        let (mut w, _rx) = Watchers::new();
        // Not watched: nothing added.
        assert_eq!(w.effective(&config).0, config);
        w.apply(&config);
        let source = Source::of(&from);
        let members: Members = [
            ("/lb/web/a", member("198.18.0.12", None, 2)),
            ("/lb/web/b", member("198.18.0.11", None, 1)),
            ("/lb/web/c", member("2001:db8::13", None, 1)),
            ("/lb/web/d", member("198.18.0.14", Some(8080), 1)),
            ("/lb/web/e", member("198.18.0.15", Some(80), 1)),
        ]
        .into_iter()
        .map(|(k, m)| (k.to_owned(), m))
        .collect();
        assert!(w.update(Update {
            source: source.clone(),
            members: members.clone()
        }));
        assert!(!w.update(Update {
            source: source.clone(),
            members
        }));
        let (effective, skipped) = w.effective(&config);
        let backends: Vec<(String, Option<u16>, u32)> = effective.service[0]
            .backend
            .iter()
            .map(|b| (b.address.to_string(), b.port, b.weight))
            .collect();
        assert_eq!(
            backends,
            [
                ("198.18.0.11".into(), None, 1),
                ("198.18.0.12".into(), None, 2),
                ("198.18.0.15".into(), Some(80), 1),
            ]
        );
        assert_eq!(effective.service[1], other);
        assert_eq!(skipped.len(), 3, "{skipped:?}");
        assert!(skipped[0].contains("/lb/web/b") && skipped[0].contains("already a backend"));
        assert!(skipped[1].contains("address family"));
        assert!(skipped[2].contains("port 8080 differs"));
        assert_eq!(
            w.key_of(&svc, "198.18.0.12".parse().unwrap()).as_deref(),
            Some("/lb/web/a")
        );
        assert_eq!(w.key_of(&svc, "198.18.0.11".parse().unwrap()), None);
        // The service drops backends_from: the watch stops, members go.
        w.apply(&Config {
            service: vec![other],
            ..Config::default()
        });
        assert!(w.members(&source).is_none());
    }
}
