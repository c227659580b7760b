//! The service controller: configuration, health and VRRP state in, the
//! data plane's services and pools out.
//!
//! For each `[[service]]`:
//! - a backend is in the pool while its health check says up; an operator
//!   drain (`lbctl drain`) keeps it in with weight 0 (no new flows,
//!   established ones continue) until `lbctl enable`;
//! - the MAC to send to comes from the kernel's neighbour table (the
//!   backend's own for `dsr`, the next hop's for `ipip`), looked up by a
//!   [`NextHops`] in the background: the answer comes back as an
//!   [`Event::NextHop`], so a slow ARP never holds up the daemon's loop;
//! - a service whose VIP belongs to a VRRP instance is in the data plane
//!   only while that instance is master here (unless `active_active`),
//!   switched when the instance's transition happens;
//! - a change rewrites only that service's table.
//!
//! Reload ([`Controller::reload`]) applies only the difference: services
//! added, removed or changed; a changed backend list keeps the health state
//! of the backends that stay, and established flows keep their backends.
//!
//! The controller is generic over the map writer ([`Maps`]) and the
//! next-hop lookup ([`NextHops`]), so its rules are unit-tested with fakes
//! of both; it never awaits: everything slow runs in tasks that report
//! back as [`Event`]s, which the daemon's loop hands to
//! [`Controller::handle`].

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::config::{self, Config, HealthKind};
use crate::dataplane::balancer::{
    BackendSpec, Balancer, EbpfMaps, Maps, Mode, Persistence, ServiceKey, ServiceSpec,
};
use crate::services::health::{self, Change, CheckSpec, Checker, Due};
use crate::sys::neigh::{NeighError, NextHop};
use crate::sys::process::run_hook;
use crate::vrrp::machine::State;

/// What [`Controller::set_drained`] refuses: the service or backend named
/// is not configured. The messages are the control socket's answers to
/// `lbctl drain` / `lbctl enable`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControllerError {
    /// No service `VIP:PORT/PROTO` is configured.
    #[error("no service {service}")]
    NoService {
        /// The service asked for.
        service: ServiceKey,
    },
    /// The service exists but has no backend of that address.
    #[error("service {service} has no backend {backend}")]
    NoBackend {
        /// The service.
        service: ServiceKey,
        /// The backend asked for.
        backend: IpAddr,
    },
}

/// Why [`dataplane_config`] could not build the data plane's global
/// settings. Each message is its cause's own (lbd prints it after
/// `[dataplane] settings: `).
#[derive(Debug, thiserror::Error)]
pub enum DataplaneConfigError {
    /// The rtnetlink socket could not be opened.
    #[error(transparent)]
    Socket {
        /// The socket error.
        source: std::io::Error,
    },
    /// Listing the interface's addresses (the default `ipip` sources)
    /// failed.
    #[error(transparent)]
    Netlink {
        /// The netlink error.
        source: rtnetlink::Error,
    },
    /// `ipip_source_v4` / `ipip_source_v6` is not `ADDRESS[/PREFIX]`.
    #[error("{reason}")]
    IpipSource {
        /// The configured value.
        value: String,
        /// What is wrong with it (the configuration parser's message).
        reason: String,
    },
    /// The MAC of an interface of a two-armed data plane cannot be read.
    #[error("reading the MAC address of {iface}")]
    Mac {
        /// The interface.
        iface: String,
        /// Why.
        source: std::io::Error,
    },
}

/// What the controller's background tasks report; the daemon's loop hands
/// each to [`Controller::handle`].
#[derive(Debug)]
pub enum Event {
    /// A health check changed a backend's state.
    Health(HealthEvent),
    /// A next-hop lookup finished.
    NextHop(NextHopEvent),
}

/// The answer to one [`NextHops::lookup`].
#[derive(Debug)]
pub struct NextHopEvent {
    /// The service that asked.
    pub service: ServiceKey,
    /// The backend looked up.
    pub backend: IpAddr,
    /// The next hop, or why there is none yet.
    pub result: Result<NextHop, NeighError>,
}

/// Finds next hops for the controller without blocking it.
pub trait NextHops {
    /// Start finding the next hop to `backend` out of one of `oifs`
    /// (for `service`); send the answer to `done` as [`Event::NextHop`].
    fn lookup(
        &mut self,
        service: ServiceKey,
        backend: IpAddr,
        oifs: [u32; 2],
        done: mpsc::UnboundedSender<Event>,
    );
}

/// [`NextHops`] from the kernel's route and neighbour tables
/// ([`crate::sys::neigh::resolve`], probing for up to 1 s), one task per
/// lookup, at most [`NeighLookup::CONCURRENT`] at a time: each holds a
/// netlink socket, and a thousand services starting at once must not run
/// lbd out of file descriptors.
#[derive(Debug, Clone)]
pub struct NeighLookup {
    permits: std::sync::Arc<tokio::sync::Semaphore>,
}

impl NeighLookup {
    /// Lookups under way at once.
    pub const CONCURRENT: usize = 16;
}

impl Default for NeighLookup {
    fn default() -> Self {
        Self {
            permits: std::sync::Arc::new(tokio::sync::Semaphore::new(Self::CONCURRENT)),
        }
    }
}

impl NextHops for NeighLookup {
    fn lookup(
        &mut self,
        service: ServiceKey,
        backend: IpAddr,
        oifs: [u32; 2],
        done: mpsc::UnboundedSender<Event>,
    ) {
        let permits = self.permits.clone();
        tokio::spawn(async move {
            // Never closed: the semaphore lives as long as any lookup.
            let _permit = permits.acquire_owned().await;
            let result =
                crate::sys::neigh::resolve(backend, Some(&oifs), Duration::from_secs(1)).await;
            let _ = done.send(Event::NextHop(NextHopEvent {
                service,
                backend,
                result,
            }));
        });
    }
}

/// A health result for one backend of one service.
#[derive(Debug, Clone)]
pub struct HealthEvent {
    /// The service.
    pub service: ServiceKey,
    /// The backend.
    pub backend: IpAddr,
    /// Which of the backend's checks (its index in
    /// `BackendConfig::checks`).
    pub check: usize,
    /// New state.
    pub up: bool,
    /// Why (the last check's result).
    pub reason: String,
    /// The weight a `dynamic_weight` check set (exit code − 2), reported
    /// when it changes, with or without a change of state.
    pub weight: Option<u32>,
}

/// One backend as the controller sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[allow(
    clippy::struct_excessive_bools,
    reason = "a status record: each flag answers its own question, in JSON as in the table"
)]
pub struct BackendStatus {
    /// Address.
    pub address: IpAddr,
    /// Port checked and forwarded to.
    pub port: u16,
    /// Configured weight.
    pub weight: u32,
    /// Health check verdict.
    pub healthy: bool,
    /// Why, from the last state change (`"starting"` before any).
    pub reason: String,
    /// Drained by the operator.
    pub drained: bool,
    /// In the data plane's pool (healthy, MAC known).
    pub in_pool: bool,
    /// MAC the data plane sends to.
    pub mac: Option<String>,
    /// The service's sorry server: in the pool while no backend is up.
    #[serde(default)]
    pub sorry_server: bool,
    /// The etcd key it is registered under, when it comes from the
    /// service's `backends_from` (filled in by the daemon, which keeps the
    /// memberships).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etcd_key: Option<String>,
}

/// One service as the controller sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceStatus {
    /// `VIP:PORT/PROTO`.
    pub service: String,
    /// `dsr`, `ipip`, `nat` or `fullnat`.
    pub mode: String,
    /// How new flows are spread: `maglev` or `source_hash`, and the
    /// client affinity if any (`maglev, persistent 10m0s /24`).
    #[serde(default)]
    pub scheduler: String,
    /// Gating instance, if any.
    pub vrrp_instance: Option<String>,
    /// Forwarding here now.
    pub active: bool,
    /// Backends.
    pub backends: Vec<BackendStatus>,
    /// How its Maglev table rewrites moved slots between backends.
    #[serde(default)]
    pub table: crate::dataplane::balancer::TableChurn,
}

struct Backend {
    cfg: config::BackendConfig,
    port: u16,
    /// Each of its checks' verdict and why; the backend is healthy when
    /// every one is up.
    checks: Vec<(bool, String)>,
    healthy: bool,
    reason: String,
    drained: bool,
    /// The weight its `dynamic_weight` check set, in place of the
    /// configured one.
    dynamic_weight: Option<u32>,
    mac: Option<[u8; 6]>,
    /// The address the kernel sends from towards the backend (the default
    /// SNAT address of `fullnat`).
    src: Option<IpAddr>,
    /// The arm its next hop is on (`BackendSpec::arm`).
    arm: u8,
    /// The service's sorry server (no checks; in the pool while no
    /// backend is up).
    sorry: bool,
    /// One task per check (none for a `kind = "none"` check that is up:
    /// it always passes); empty until the checks start.
    checkers: Vec<Option<tokio::task::JoinHandle<()>>>,
}

impl Drop for Backend {
    fn drop(&mut self) {
        for c in self.checkers.drain(..).flatten() {
            c.abort();
        }
    }
}

#[allow(
    clippy::struct_excessive_bools,
    reason = "independent facts about one service, each set in its own place"
)]
struct Service {
    cfg: config::Service,
    key: ServiceKey,
    spec: ServiceSpec,
    /// `fullnat`'s configured SNAT address (the service's, else `[nat]`'s);
    /// `None`: each backend's route source.
    snat: Option<IpAddr>,
    gate: Option<String>,
    /// This node is master for it (or it is not gated).
    active: bool,
    /// Its state has been logged once.
    written: bool,
    /// Its sorry server takes the new flows (no quorum, or no backend can
    /// take them).
    sorry_in_use: bool,
    /// It has its quorum (`config::Quorum`); `None` until first judged.
    quorum: Option<bool>,
    /// Its pool, as last written, can take new flows on a real backend
    /// (not the sorry server) and it has its quorum: what a BGP
    /// announcement of its VIP stands for.
    up: bool,
    /// The backends, then the sorry server if it has one.
    backends: Vec<Backend>,
}

/// See the module doc.
pub struct Controller<M: Maps = EbpfMaps, R: NextHops = NeighLookup> {
    balancer: Balancer<M>,
    next_hops: R,
    /// The data plane's interfaces by arm (`[1]`: the backend interface,
    /// 0 for none): next hops must be reachable through one of them.
    oifs: [u32; 2],
    services: BTreeMap<ServiceKey, Service>,
    vrrp: HashMap<String, State>,
    events: mpsc::UnboundedSender<Event>,
    /// Backend addresses with a next-hop lookup under way (one per
    /// address, whatever the number of services using it).
    looking_up: std::collections::HashSet<IpAddr>,
    /// When the controller started, until its first lookups have all
    /// answered (then logged, once).
    started: Option<std::time::Instant>,
}

/// `VIP:PORT/PROTO` of a configured service.
#[must_use]
pub fn key_of(s: &config::Service) -> ServiceKey {
    ServiceKey {
        vip: s.vip,
        port: s.port,
        proto: s.protocol.into(),
    }
}

/// `maglev` or `source_hash`, with the client affinity if any.
fn scheduling(s: &config::Service) -> String {
    match s.persistence_timeout {
        None => s.scheduler.to_string(),
        Some(t) => {
            let bits = if s.vip.is_ipv4() { 32 } else { 128 };
            format!(
                "{}, persistent {t} /{}",
                s.scheduler,
                s.persistence_prefix.unwrap_or(bits)
            )
        }
    }
}

fn spec_of(s: &config::Service) -> ServiceSpec {
    ServiceSpec {
        mode: s.mode.into(),
        ring_size: s.ring_size,
        on_no_backend: s.on_no_backend.into(),
        source_hash: s.scheduler == config::Scheduler::SourceHash,
        // Validated: at least a second, at most u32::MAX seconds; the
        // prefix within the family's address.
        persistence: s.persistence_timeout.map(|t| {
            let family_bits = if s.vip.is_ipv4() { 32 } else { 128 };
            let prefix = s.persistence_prefix.unwrap_or(family_bits);
            Persistence {
                timeout_s: u32::try_from(t.0.as_secs()).unwrap_or(u32::MAX),
                prefix: 128 - (family_bits - prefix),
            }
        }),
    }
}

fn check_of(h: &config::Health) -> CheckSpec {
    use health::{dns, http, smtp};
    // Validated: digests parse, DNS types are known.
    let digest = |d: Option<&String>| d.and_then(|d| http::parse_digest(d).ok());
    let web = |tls| {
        let url =
            |path: &str, status: Option<&config::Statuses>, d: Option<&String>| http::UrlCheck {
                path: path.to_owned(),
                status: status.unwrap_or(&h.expect_status).0.clone(),
                digest: digest(d.or(h.digest.as_ref())),
            };
        let urls = if h.urls.is_empty() {
            vec![url(&h.path, None, None)]
        } else {
            h.urls
                .iter()
                .map(|u| url(&u.path, u.expect_status.as_ref(), u.digest.as_ref()))
                .collect()
        };
        health::Kind::Http(http::HttpCheck {
            tls,
            urls,
            virtualhost: h.virtualhost.clone(),
        })
    };
    CheckSpec {
        kind: match h.kind {
            HealthKind::Tcp => health::Kind::Tcp,
            HealthKind::Http => web(None),
            HealthKind::Https => web(Some(http::Tls {
                ca_file: h.tls_ca.clone(),
            })),
            HealthKind::Dns => health::Kind::Dns(dns::DnsCheck {
                name: h.dns_name.clone().unwrap_or_else(|| ".".into()),
                qtype: h.dns_type.as_deref().and_then(dns::type_code).unwrap_or(6),
            }),
            HealthKind::Smtp => health::Kind::Smtp(smtp::SmtpCheck {
                helo: h
                    .smtp_helo
                    .clone()
                    .unwrap_or_else(|| smtp::DEFAULT_HELO.into()),
            }),
            // Validation refuses `exec` without a command.
            HealthKind::Exec => health::Kind::Exec {
                command: h.command.clone().unwrap_or_default(),
                user: h.user.clone(),
                dynamic_weight: h.dynamic_weight,
            },
            HealthKind::None => health::Kind::None,
        },
        bind: h.bind,
        interval: h.interval.0,
        timeout: h.timeout.0,
        rise: h.rise,
        fall: h.fall,
        starts_down: false,
        retry_interval: h.retry_interval.map(|d| d.0),
        warmup: h.warmup.map_or(Duration::ZERO, |d| d.0),
    }
}

/// The instance gating `svc`: the one named, else the one holding its VIP.
fn gate_of(config: &Config, svc: &config::Service) -> Option<String> {
    if svc.active_active || svc.announce == config::Announce::Bgp {
        return None;
    }
    if let Some(name) = &svc.vrrp_instance {
        return Some(name.clone());
    }
    config
        .vrrp_instance
        .iter()
        .find(|i| i.vips().is_ok_and(|v| v.iter().any(|v| v.addr == svc.vip)))
        .map(|i| i.name.clone())
}

impl<M: Maps, R: NextHops> Controller<M, R> {
    /// A controller over `balancer`, finding next hops with `next_hops`;
    /// `oifs` are the data plane's interfaces by arm, the second 0 without
    /// a backend interface (next hops must be reachable through one of
    /// them). Health results and next-hop answers arrive on the
    /// receiver returned; feed them to [`Controller::handle`].
    #[must_use]
    pub fn new(
        balancer: Balancer<M>,
        next_hops: R,
        oifs: [u32; 2],
    ) -> (Self, mpsc::UnboundedReceiver<Event>) {
        let (events, rx) = mpsc::unbounded_channel();
        (
            Self {
                balancer,
                next_hops,
                oifs,
                services: BTreeMap::new(),
                looking_up: std::collections::HashSet::new(),
                started: Some(std::time::Instant::now()),
                vrrp: HashMap::new(),
                events,
            },
            rx,
        )
    }

    /// Handle what a background task reported.
    pub fn handle(&mut self, event: Event) {
        match event {
            Event::Health(e) => self.health(&e),
            Event::NextHop(e) => self.next_hop(e),
        }
    }

    /// Apply `config`'s services: add new ones, remove those gone, update
    /// changed ones. Health state of backends that stay is kept.
    pub fn reload(&mut self, config: &Config) {
        let wanted: BTreeMap<ServiceKey, &config::Service> =
            config.service.iter().map(|s| (key_of(s), s)).collect();
        let gone: Vec<ServiceKey> = self
            .services
            .keys()
            .filter(|k| !wanted.contains_key(k))
            .copied()
            .collect();
        for key in gone {
            if self.services.remove(&key).is_some()
                && let Err(e) = self.balancer.remove_service(&key)
            {
                warn!(service = %key, "removing service: {e}");
            }
            info!(service = %key, "service removed");
        }
        let mut to_sync = Vec::with_capacity(wanted.len());
        for (key, cfg) in wanted {
            let gate = gate_of(config, cfg);
            let snat = cfg.snat_address.or(config.nat.snat_address);
            match self.services.get_mut(&key) {
                Some(svc) if svc.cfg == *cfg && svc.gate == gate && svc.snat == snat => continue,
                Some(svc) => {
                    let old = std::mem::take(&mut svc.backends);
                    let backends = changed_backends(&svc.cfg, old, cfg);
                    svc.cfg = cfg.clone();
                    svc.spec = spec_of(cfg);
                    svc.gate = gate;
                    svc.snat = snat;
                    svc.backends = backends;
                    info!(service = %key, "service changed");
                }
                None => {
                    // In the maps already: an adopted data plane. It stays
                    // active, and its backends keep the MACs (and arms) the
                    // maps hold,
                    // so the first sync writes the same pool (fresh lookups
                    // would leave it empty until they answer).
                    let adopted = self.balancer.backends(&key);
                    let svc = Service {
                        cfg: cfg.clone(),
                        key,
                        spec: spec_of(cfg),
                        snat,
                        gate,
                        active: adopted.is_some(),
                        written: false,
                        sorry_in_use: false,
                        quorum: None,
                        up: false,
                        backends: cfg
                            .backend
                            .iter()
                            .map(|b| new_backend(b, cfg))
                            .chain(sorry_backend(cfg))
                            .map(|mut backend| {
                                let held = adopted.and_then(|pool| {
                                    pool.iter()
                                        .find(|(spec, _)| spec.addr == backend.cfg.address)
                                });
                                backend.mac = held.map(|(spec, _)| spec.mac);
                                backend.src = held.and_then(|(spec, _)| spec.snat);
                                backend.arm = held.map_or(0, |(spec, _)| spec.arm);
                                // In the pool the last lbd left: up, even
                                // with start_down (a restart takes nothing
                                // out), until its checks say otherwise.
                                if held.is_some() && !backend.healthy {
                                    backend.healthy = true;
                                    backend.reason = "in the adopted pool".into();
                                    for c in &mut backend.checks {
                                        *c = (true, backend.reason.clone());
                                    }
                                }
                                backend
                            })
                            .collect(),
                    };
                    let how = if svc.active {
                        "service adopted from the pinned data plane"
                    } else {
                        "service added"
                    };
                    info!(service = %key, mode = %cfg.mode, backends = svc.backends.len(), gate = ?svc.gate, "{how}");
                    self.services.insert(key, svc);
                }
            }
            self.start_checks(&key);
            self.resolve_macs(&key);
            to_sync.push(key);
        }
        self.sync_many(to_sync);
        // Services an adopted data plane has and the configuration has not.
        let leftover: Vec<ServiceKey> = self
            .balancer
            .services()
            .map(|(k, _, _)| *k)
            .filter(|k| !self.services.contains_key(k))
            .collect();
        for key in leftover {
            match self.balancer.remove_service(&key) {
                Ok(()) => {
                    info!(service = %key, "removed service the pinned data plane had and the configuration has not");
                }
                Err(e) => warn!(service = %key, "removing a service of the pinned data plane: {e}"),
            }
        }
    }

    /// A VRRP instance changed state: services it gates follow.
    pub fn vrrp_state(&mut self, instance: &str, state: State) {
        self.vrrp.insert(instance.to_owned(), state);
        let keys: Vec<ServiceKey> = self
            .services
            .iter()
            .filter(|(_, s)| s.gate.as_deref() == Some(instance))
            .map(|(k, _)| *k)
            .collect();
        for key in keys {
            self.sync(&key);
        }
    }

    /// A health check changed a backend's state.
    fn health(&mut self, event: &HealthEvent) {
        let Some(svc) = self.services.get_mut(&event.service) else {
            return;
        };
        let Some(b) = svc
            .backends
            .iter_mut()
            .find(|b| b.cfg.address == event.backend)
        else {
            return;
        };
        let n = b.checks.len();
        let Some(check) = b.checks.get_mut(event.check) else {
            return; // from checks replaced meanwhile
        };
        let check_changed = check.0 != event.up;
        *check = (event.up, event.reason.clone());
        let service = &event.service;
        let backend = &event.backend;
        let reweighed = event
            .weight
            .filter(|&w| b.dynamic_weight.replace(w) != Some(w));
        if let Some(w) = reweighed {
            info!(%service, %backend, "weight {w} (configured {}), set by its check's exit code", b.cfg.weight);
        }
        if !check_changed {
            if reweighed.is_some() {
                self.sync(service);
            }
            return;
        }
        let named = |i: usize, reason: &str| {
            if n > 1 {
                let kind = b.cfg.checks(&svc.cfg.health)[i].kind;
                format!("check {} of {n} ({kind}): {reason}", i + 1)
            } else {
                reason.to_owned()
            }
        };
        let was = b.healthy;
        b.healthy = b.checks.iter().all(|(up, _)| *up);
        // A down backend shows its first failing check; an up one, the
        // check that brought it up.
        b.reason = match b.checks.iter().position(|(up, _)| !up) {
            Some(i) => named(i, &b.checks[i].1),
            None => named(event.check, &event.reason),
        };
        if n > 1 && b.healthy == was {
            let verdict = if event.up { "up" } else { "down" };
            let state = if b.healthy { "up" } else { "down" };
            let what = named(event.check, &format!("{verdict}: {}", event.reason));
            info!(%service, %backend, "{what}; the backend stays {state}");
            if reweighed.is_some() {
                self.sync(service);
            }
            return;
        }
        if b.healthy {
            info!(%service, %backend, "backend up: {}", b.reason);
        } else {
            warn!(%service, %backend, "backend down: {}", b.reason);
        }
        let hook = if b.healthy {
            &b.cfg.notify_up
        } else {
            &b.cfg.notify_down
        };
        if let Some(cmd) = hook {
            run_hook(&format!("{service} backend {backend}"), cmd, &[]);
        }
        if b.healthy {
            self.resolve_macs(&event.service);
        }
        self.sync(&event.service);
    }

    /// A next-hop lookup finished: every service's healthy backend at that
    /// address still without a MAC takes it (one lookup serves all the
    /// services that share a backend) and joins its pool. A service is
    /// rewritten once its last lookup has answered, not once per answer:
    /// 1,000 services over 100 backends are 1,000 table writes, not
    /// 100,000.
    fn next_hop(&mut self, event: NextHopEvent) {
        let addr = event.backend;
        self.looking_up.remove(&addr);
        let hop = match event.result {
            Ok(hop) => Some(hop),
            Err(e) => {
                warn!(service = %event.service, backend = %addr, "no next hop yet: {e}");
                None
            }
        };
        let arm1 = self.oifs[1];
        let mut waiting = Vec::new();
        for (key, svc) in &mut self.services {
            let mode = svc.spec.mode;
            let mut was_waiting = false;
            for b in svc
                .backends
                .iter_mut()
                .filter(|b| b.cfg.address == addr && b.healthy && b.mac.is_none())
            {
                was_waiting = true;
                match hop {
                    Some(hop) if mode == Mode::Dsr && hop.gateway.is_some() => {
                        warn!(service = %key, backend = %addr, "dsr needs backends on the data plane's link; this one is behind a router");
                    }
                    Some(hop) => {
                        b.mac = Some(hop.mac);
                        b.src = hop.src;
                        b.arm = u8::from(arm1 != 0 && hop.ifindex == arm1);
                    }
                    None => {}
                }
            }
            if was_waiting {
                waiting.push(*key);
            }
        }
        waiting.retain(|key| {
            !self.services.get(key).is_some_and(|svc| {
                svc.backends.iter().any(|b| {
                    b.healthy && b.mac.is_none() && self.looking_up.contains(&b.cfg.address)
                })
            })
        });
        self.sync_many(waiting);
        if self.looking_up.is_empty()
            && let Some(t) = self.started.take()
        {
            let (services, backends) =
                self.balancer
                    .services()
                    .fold((0, 0), |(s, b), (key, _, _)| {
                        (s + 1, b + self.balancer.backends(key).map_or(0, <[_]>::len))
                    });
            info!(
                "every backend's next hop answered, {} ms after the data plane was up: {services} service(s) written, {backends} backend(s) in their pools",
                t.elapsed().as_millis()
            );
        }
    }

    /// Drain (`drain = true`: weight 0, established flows continue) or
    /// re-enable a backend.
    ///
    /// # Errors
    /// [`ControllerError::NoService`] / [`ControllerError::NoBackend`]: no
    /// such service, or no such backend in it.
    pub fn set_drained(
        &mut self,
        key: &ServiceKey,
        backend: IpAddr,
        drain: bool,
    ) -> Result<(), ControllerError> {
        let svc = self
            .services
            .get_mut(key)
            .ok_or(ControllerError::NoService { service: *key })?;
        let b = svc
            .backends
            .iter_mut()
            .find(|b| b.cfg.address == backend)
            .ok_or(ControllerError::NoBackend {
                service: *key,
                backend,
            })?;
        b.drained = drain;
        info!(service = %key, %backend, "backend {}", if drain { "drained by operator" } else { "enabled by operator" });
        self.sync(key);
        Ok(())
    }

    /// lbd is stopping (not restarting): for each service with
    /// `notify_on_stop` (keepalived's `omega`), run the `notify_down` of
    /// every backend that is up, then the quorum's `notify_down` (as
    /// keepalived does on shutdown, whatever the quorum was).
    pub fn run_stop_hooks(&self) {
        for svc in self.services.values().filter(|s| s.cfg.notify_on_stop) {
            let key = svc.key.to_string();
            for b in svc.backends.iter().filter(|b| !b.sorry && b.healthy) {
                if let Some(cmd) = &b.cfg.notify_down {
                    info!(service = %key, backend = %b.cfg.address, "stopping: the backend's notify_down (notify_on_stop)");
                    run_hook(&format!("{key} backend {}", b.cfg.address), cmd, &[]);
                }
            }
            if let Some(cmd) = svc.cfg.quorum.as_ref().and_then(|q| q.notify_down.as_ref()) {
                info!(service = %key, "stopping: the quorum's notify_down (notify_on_stop)");
                run_hook(&key, cmd, &[]);
            }
        }
    }

    /// Free data-plane memory that went out of use (retired Maglev
    /// tables); the daemon calls it every second.
    pub fn tidy(&mut self) {
        self.balancer.tidy();
    }

    /// Status of every service.
    #[must_use]
    pub fn status(&self) -> Vec<ServiceStatus> {
        self.services
            .values()
            .map(|s| ServiceStatus {
                service: s.key.to_string(),
                mode: s.cfg.mode.to_string(),
                scheduler: scheduling(&s.cfg),
                vrrp_instance: s.gate.clone(),
                active: s.active,
                table: self.balancer.churn(&s.key).unwrap_or_default(),
                backends: s
                    .backends
                    .iter()
                    .map(|b| BackendStatus {
                        address: b.cfg.address,
                        port: b.port,
                        weight: b.dynamic_weight.unwrap_or(b.cfg.weight),
                        healthy: b.healthy,
                        reason: b.reason.clone(),
                        drained: b.drained,
                        in_pool: b.mac.is_some()
                            && if b.sorry { s.sorry_in_use } else { b.healthy },
                        mac: b.mac.map(|m| {
                            m.iter()
                                .map(|x| format!("{x:02x}"))
                                .collect::<Vec<_>>()
                                .join(":")
                        }),
                        sorry_server: b.sorry,
                        etcd_key: None,
                    })
                    .collect(),
            })
            .collect()
    }

    /// Whether every service is written with what is known of its pool:
    /// no next-hop lookup is pending.
    #[must_use]
    pub fn settled(&self) -> bool {
        self.looking_up.is_empty()
    }

    /// The VIPs to announce over BGP: those of `announce = "bgp"`
    /// services that are up (a real backend can take new flows, the
    /// quorum holds), each once.
    #[must_use]
    pub fn announced(&self) -> std::collections::BTreeSet<IpAddr> {
        self.services
            .values()
            .filter(|s| s.cfg.announce == config::Announce::Bgp && s.up)
            .map(|s| s.key.vip)
            .collect()
    }

    /// The balancer, for stats.
    #[must_use]
    pub const fn balancer(&self) -> &Balancer<M> {
        &self.balancer
    }

    fn start_checks(&mut self, key: &ServiceKey) {
        let Some(svc) = self.services.get_mut(key) else {
            return;
        };
        for b in &mut svc.backends {
            if !b.checkers.is_empty() || b.sorry {
                continue;
            }
            let addr = b.cfg.address;
            for (i, h) in b.cfg.checks(&svc.cfg.health).iter().enumerate() {
                let tx = self.events.clone();
                let port = h.port.unwrap_or(b.port);
                let spec = CheckSpec {
                    starts_down: !b.checks[i].0,
                    ..check_of(h)
                };
                // `kind = "none"` always passes: an up check needs no loop
                // (a task per backend cost 4.6 KB, 460 MB at 100,000).
                if matches!(spec.kind, health::Kind::None) && !spec.starts_down {
                    b.checkers.push(None);
                    continue;
                }
                let task = run_checks(*key, addr, i, port, spec, tx);
                b.checkers.push(Some(tokio::spawn(task)));
            }
        }
    }

    /// Ask for the next hop of every healthy backend of `key` that has
    /// none and no lookup under way.
    fn resolve_macs(&mut self, key: &ServiceKey) {
        let Some(svc) = self.services.get(key) else {
            return;
        };
        for b in &svc.backends {
            if b.mac.is_some() || !b.healthy || !self.looking_up.insert(b.cfg.address) {
                continue;
            }
            self.next_hops
                .lookup(*key, b.cfg.address, self.oifs, self.events.clone());
        }
    }

    /// Make the data plane match the desired state of one service.
    fn sync(&mut self, key: &ServiceKey) {
        if let Some(pool) = self.desired_pool(key)
            && let Err(e) = self.balancer.set_backends(key, &pool)
        {
            warn!(service = %key, "writing pool: {e}");
        }
    }

    /// [`Controller::sync`] for several services: their tables are built
    /// on every core ([`Balancer::set_backends_many`]).
    fn sync_many(&mut self, keys: impl IntoIterator<Item = ServiceKey>) {
        let pools: Vec<(ServiceKey, Vec<BackendSpec>)> = keys
            .into_iter()
            .filter_map(|key| Some((key, self.desired_pool(&key)?)))
            .collect();
        for ((key, _), result) in pools.iter().zip(self.balancer.set_backends_many(&pools)) {
            if let Err(e) = result {
                warn!(service = %key, "writing pool: {e}");
            }
        }
    }

    /// Bring service `key` into the data plane (active or standby) and
    /// judge what its pool should be now; `None`: nothing to write (no
    /// such service, or it could not be activated).
    fn desired_pool(&mut self, key: &ServiceKey) -> Option<Vec<BackendSpec>> {
        let svc = self.services.get_mut(key)?;
        let master = match &svc.gate {
            None => true,
            // No word from the instance yet: as it is.
            Some(name) => self
                .vrrp
                .get(name)
                .map_or(svc.active, |state| *state == State::Master),
        };
        // A service stays in the data plane whether or not this node is
        // master for it (standby): its VIP id, slots and table are in place
        // for connection sync to fill and for a takeover to change nothing;
        // the program forwards what reaches it, which on a backup is only
        // traffic around a failover, when forwarding it is what keeps it.
        if let Err(e) = self.balancer.upsert_service(*key, svc.spec) {
            warn!(service = %key, "activating: {e}");
            return None;
        }
        if master != svc.active || !svc.written {
            if master {
                info!(service = %key, "service active");
            } else {
                info!(service = %key, gate = ?svc.gate, "service standby: this node is not master (kept in the data plane for connection sync and takeover)");
            }
        }
        svc.active = master;
        svc.written = true;
        let (mode, snat) = (svc.spec.mode, svc.snat);
        let cfg = &svc.cfg;
        let weight_of = |b: &Backend| {
            if b.drained {
                0
            } else {
                b.dynamic_weight.unwrap_or(b.cfg.weight)
            }
        };
        let live: u64 = svc
            .backends
            .iter()
            .filter(|b| !b.sorry && b.healthy)
            .map(|b| u64::from(weight_of(b)))
            .sum();
        let quorum = judge_quorum(key, svc.quorum, live, cfg.quorum.as_ref());
        svc.quorum = Some(quorum);
        // The sorry server stands in without the quorum, or while no
        // backend can take a new flow; the up backends then keep only the
        // flows they have (keepalived takes them out of the pool).
        let sorry_exists = svc.backends.iter().any(|b| b.sorry);
        let sorry = sorry_exists
            && (!quorum
                || !svc
                    .backends
                    .iter()
                    .any(|b| !b.sorry && b.healthy && b.mac.is_some() && weight_of(b) > 0));
        if let Some(s) = svc.backends.iter().find(|b| b.sorry)
            && sorry != svc.sorry_in_use
        {
            svc.sorry_in_use = sorry;
            let addr = s.cfg.address;
            if sorry {
                warn!(service = %key, "no backend can take new flows (or no quorum): new flows go to the sorry server {addr}");
            } else {
                info!(service = %key, "a backend is up: the sorry server {addr} takes no new flows");
            }
        }
        let pool: Vec<BackendSpec> = svc
            .backends
            .iter()
            .filter_map(|b| {
                // Weight 0: in the pool for the flows it has, none new.
                let weight = if b.sorry {
                    let inhibit = cfg.sorry_server.as_ref().is_some_and(|s| s.inhibit);
                    match (sorry, inhibit) {
                        (true, _) => 1,
                        (false, true) => 0,
                        (false, false) => return None,
                    }
                } else if b.healthy {
                    if sorry { 0 } else { weight_of(b) }
                } else if b.cfg.inhibit_on_failure.unwrap_or(cfg.inhibit_on_failure) {
                    0
                } else {
                    return None;
                };
                let snat = match mode {
                    Mode::Fullnat => Some(snat.or(b.src)?),
                    _ => None,
                };
                Some(BackendSpec {
                    addr: b.cfg.address,
                    weight,
                    mac: b.mac?,
                    port: if mode.is_nat() { b.port } else { 0 },
                    snat,
                    arm: b.arm,
                })
            })
            .collect();
        let sorry_addr = svc.backends.iter().find(|b| b.sorry).map(|b| b.cfg.address);
        let up = quorum
            && pool
                .iter()
                .any(|p| p.weight > 0 && Some(p.addr) != sorry_addr);
        svc.up = up;
        Some(pool)
    }
}

/// Whether service `key` has its quorum now that its up backends weigh
/// `live`, having had it (`was`; `None`: first judged), by keepalived's
/// rule (check/ipwrapper.c): gained at `weight + hysteresis`, lost below
/// `weight - hysteresis` or at 0. A change is logged and runs the
/// quorum's command; the first judgement runs none.
fn judge_quorum(
    key: &ServiceKey,
    was: Option<bool>,
    live: u64,
    q: Option<&config::Quorum>,
) -> bool {
    let (weight, hysteresis) = q.map_or((1, 0), |q| (u64::from(q.weight), u64::from(q.hysteresis)));
    let now = if was == Some(true) {
        live > 0 && live >= weight.saturating_sub(hysteresis)
    } else {
        live >= weight + hysteresis
    };
    match was {
        Some(was) if was != now => {
            let hook = q.and_then(|q| {
                if now {
                    q.notify_up.as_ref()
                } else {
                    q.notify_down.as_ref()
                }
            });
            if now {
                info!(service = %key, "quorum gained: the up backends weigh {live} (quorum {weight}, hysteresis {hysteresis})");
            } else {
                warn!(service = %key, "quorum lost: the up backends weigh {live} (quorum {weight}, hysteresis {hysteresis})");
            }
            if let Some(cmd) = hook {
                run_hook(&key.to_string(), cmd, &[]);
            }
        }
        None if !now && live > 0 => {
            warn!(service = %key, "starting without quorum: the up backends weigh {live} (quorum {weight}, hysteresis {hysteresis})");
        }
        _ => {}
    }
    now
}

/// The backends of `cfg` (a service that was `was`), keeping those of
/// `old` whose port, role and checks did not change, with their health
/// state and checks running.
fn changed_backends(
    was: &config::Service,
    mut old: Vec<Backend>,
    cfg: &config::Service,
) -> Vec<Backend> {
    let wanted = cfg
        .backend
        .iter()
        .map(|b| new_backend(b, cfg))
        .chain(sorry_backend(cfg));
    let mut backends = Vec::new();
    for b in wanted {
        let same = |o: &Backend| {
            o.port == b.port
                && o.sorry == b.sorry
                && (b.sorry || o.cfg.checks(&was.health) == b.cfg.checks(&cfg.health))
        };
        match old.iter().position(|o| o.cfg.address == b.cfg.address) {
            Some(i) if same(&old[i]) => {
                let mut kept = old.remove(i);
                kept.cfg = b.cfg.clone();
                backends.push(kept);
            }
            _ => backends.push(b),
        }
    }
    backends
}

/// A backend of service `svc`, up unless it starts down.
fn new_backend(b: &config::BackendConfig, svc: &config::Service) -> Backend {
    let up = !svc.start_down;
    let reason = if up {
        "starting"
    } else {
        "starting down (start_down): up once its checks pass"
    };
    let checks = b.checks(&svc.health).len();
    Backend {
        cfg: b.clone(),
        port: b.port.unwrap_or(svc.port),
        checks: vec![(up, reason.to_owned()); checks],
        healthy: up,
        reason: reason.into(),
        drained: false,
        dynamic_weight: None,
        mac: None,
        src: None,
        arm: 0,
        sorry: false,
        checkers: Vec::new(),
    }
}

/// The sorry server of `svc`, if it has one: never checked, always up.
fn sorry_backend(svc: &config::Service) -> Option<Backend> {
    let s = svc.sorry_server.as_ref()?;
    let cfg = config::BackendConfig {
        port: s.port,
        ..config::BackendConfig::new(s.address)
    };
    Some(Backend {
        cfg,
        port: s.port.unwrap_or(svc.port),
        checks: Vec::new(),
        healthy: true,
        reason: "sorry server".into(),
        drained: false,
        dynamic_weight: None,
        mac: None,
        src: None,
        arm: 0,
        sorry: true,
        checkers: Vec::new(),
    })
}

/// One check's loop (check `check` of a backend): [`Checker`]
/// scheduling, [`health::probe`] under the timeout, a [`HealthEvent`] on
/// each state change.
async fn run_checks(
    service: ServiceKey,
    backend: IpAddr,
    check: usize,
    port: u16,
    spec: CheckSpec,
    tx: mpsc::UnboundedSender<Event>,
) {
    let mut checker = Checker::new(&spec, Instant::now() + health::warmup_delay(spec.warmup));
    // The last weight a dynamic_weight check set.
    let mut weight = None;
    loop {
        tokio::time::sleep_until(checker.next_deadline().into()).await;
        let now = Instant::now();
        if checker.poll(now) != Some(Due::Start) {
            continue;
        }
        checker.started(now);
        // Boxed: the probe's state (an HTTP or TLS client at most) lives
        // on the heap only while it runs, not in every idle check task.
        let probe = Box::pin(health::probe(&spec.kind, spec.bind, backend, port));
        let result = tokio::time::timeout(spec.timeout, probe).await;
        let (ok, reason, set) = match result {
            Ok(Ok(passed)) => (true, "check passed".to_owned(), passed.weight),
            Ok(Err(e)) => (false, e.to_string(), None),
            Err(_) => (
                false,
                format!("check timed out after {:?}", spec.timeout),
                None,
            ),
        };
        let reweighed = set.filter(|&w| weight.replace(w) != Some(w));
        let change = checker.finished(ok);
        if change.is_none() && reweighed.is_none() {
            continue;
        }
        let up = checker.is_up();
        let reason = match change {
            Some(Change::Up) => format!("{reason} ({} in a row)", spec.rise),
            Some(Change::Down) => format!("{reason} ({} in a row)", spec.fall),
            None => reason,
        };
        let event = HealthEvent {
            service,
            backend,
            check,
            up,
            reason,
            weight: reweighed,
        };
        if tx.send(Event::Health(event)).is_err() {
            return;
        }
    }
}

/// The data plane's global settings from `[dataplane]` and `[nat]`: `ipip`
/// outer sources (default: the interface's own addresses), the MTU and the
/// SNAT ports.
///
/// # Errors
/// [`DataplaneConfigError::Socket`] / [`DataplaneConfigError::Netlink`]:
/// the interface's addresses cannot be listed;
/// [`DataplaneConfigError::IpipSource`]: a configured `ipip` source is not
/// `ADDRESS[/PREFIX]`.
pub async fn dataplane_config(
    dp: &config::Dataplane,
    nat: &config::Nat,
    ifindex: u32,
) -> Result<lb_common::config::Config, DataplaneConfigError> {
    let (conn, handle, _) =
        rtnetlink::new_connection().map_err(|source| DataplaneConfigError::Socket { source })?;
    let conn = tokio::spawn(conn);
    let present = crate::sys::addr::list(&handle, ifindex).await;
    conn.abort();
    let present = present.map_err(|source| DataplaneConfigError::Netlink { source })?;
    let cidr = |s: &String| {
        config::parse_cidr(s).map_err(|e| DataplaneConfigError::IpipSource {
            value: s.clone(),
            reason: e.to_string(),
        })
    };
    let first = |v6: bool| {
        present.iter().map(|p| p.vip.addr).find(|a| match a {
            IpAddr::V4(_) => !v6,
            IpAddr::V6(a) => v6 && !a.is_unicast_link_local(),
        })
    };
    // Validation refuses a bad range; `[nat]` left out has a good one.
    let (port_min, port_max) =
        config::parse_port_range(&nat.snat_ports).unwrap_or(lb_common::nat::DEFAULT_SNAT_PORTS);
    let mut out = lb_common::config::Config {
        mtu: dp.mtu,
        snat_port_min: port_min,
        snat_ports: port_max - port_min + 1,
        ..lb_common::config::Config::default()
    };
    let v4 = match &dp.ipip_source_v4 {
        Some(s) => Some(cidr(s)?),
        None => first(false).map(|a| (a, 32)),
    };
    if let Some((IpAddr::V4(a), prefix)) = v4 {
        let host = if prefix >= 32 { 0 } else { u32::MAX >> prefix };
        out.ipip_src_v4_be = u32::from_ne_bytes(a.octets());
        out.ipip_src_v4_mask_be = host.to_be();
    }
    let v6 = match &dp.ipip_source_v6 {
        Some(s) => Some(cidr(s)?),
        None => first(true).map(|a| (a, 128)),
    };
    if let Some((IpAddr::V6(a), prefix)) = v6 {
        let host = if prefix >= 128 {
            0
        } else {
            u32::MAX >> (prefix.max(96) - 96)
        };
        out.ipip_src_v6 = a.octets();
        out.ipip_src_v6_mask_be = host.to_be();
    }
    Ok(out)
}

/// Traffic of one VIP, or of one backend of one service, summed over CPUs.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Traffic {
    /// Packets forwarded.
    pub packets: u64,
    /// Bytes forwarded.
    pub bytes: u64,
    /// Flows begun.
    pub new_flows: u64,
    /// `nat` / `fullnat`: replies translated back to the clients.
    #[serde(default)]
    pub replies: u64,
    /// `nat` / `fullnat`: bytes of those replies.
    #[serde(default)]
    pub reply_bytes: u64,
    /// `nat` / `fullnat`: new flows refused (no SNAT port, table full).
    #[serde(default)]
    pub refused: u64,
}

/// Counters of one service and its backends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceTraffic {
    /// `VIP:PORT/PROTO`.
    pub service: String,
    /// The VIP's counters.
    pub total: Traffic,
    /// Per backend address: this service's traffic to it only.
    pub backends: BTreeMap<String, Traffic>,
    /// Connection-table flows seen in the last 10 s (none for NAT
    /// services and services with client affinity: not counted).
    #[serde(default)]
    pub flows_recent: u64,
    /// Of those, flows pinned to another backend than the table would
    /// choose now: what a failover without connection sync would move.
    #[serde(default)]
    pub flows_off_table: u64,
}

/// The data plane's counters per active service and, under each, per
/// backend: a backend shared by several services has a slot, and so a
/// counter cell, per service (`lb_common::backend`), as in
/// `ipvsadm -L --stats`.
#[must_use]
pub fn traffic_stats<M: Maps, R: NextHops>(
    c: &Controller<M, R>,
    ebpf: &aya::Ebpf,
) -> Vec<ServiceTraffic> {
    let t = |r: Result<lb_common::stats::TrafficCounters, crate::dataplane::stats::StatsError>| {
        r.map(|c| Traffic {
            packets: c.packets,
            bytes: c.bytes,
            new_flows: c.new_flows,
            replies: c.replies,
            reply_bytes: c.reply_bytes,
            refused: c.refused,
        })
        .unwrap_or_default()
    };
    let tables = c.balancer.live_tables();
    let off = crate::dataplane::stats::flows_off_table(ebpf, &tables, |t, i| {
        c.balancer.table_entry(t, i)
    })
    .unwrap_or_default();
    c.balancer
        .services()
        .map(|(key, _, id)| ServiceTraffic {
            flows_recent: off.get(&id).map_or(0, |o| o.0),
            flows_off_table: off.get(&id).map_or(0, |o| o.1),
            service: key.to_string(),
            total: t(crate::dataplane::stats::vip_stats_of(ebpf, id)),
            backends: c
                .balancer
                .backends(key)
                .unwrap_or_default()
                .iter()
                .map(|(b, index)| {
                    (
                        b.addr.to_string(),
                        t(crate::dataplane::stats::backend_stats_of(ebpf, *index)),
                    )
                })
                .collect(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    //! The controller's rules with fake maps (a writer that accepts
    //! everything; the balancer's own view is what is asserted) and fake
    //! next hops (lookups recorded, answers injected as events).

    use std::net::Ipv4Addr;

    use lb_common::{
        backend::Backend,
        config::Config as DataplaneConfig,
        vip::{VipIndexEntry, VipKey, VipMeta},
    };

    use super::*;
    use crate::dataplane::balancer::{BalancerError, MapState, Protocol};

    /// Accepts every write; the [`Balancer`] keeps the state asserted.
    struct NullMaps;

    impl Maps for NullMaps {
        fn set_vip(&mut self, _: &VipKey, _: &VipMeta) -> Result<(), BalancerError> {
            Ok(())
        }
        fn remove_vip(&mut self, _: &VipKey, _: u32) -> Result<(), BalancerError> {
            Ok(())
        }
        fn set_filter(&mut self, _: u32, _: u8) -> Result<(), BalancerError> {
            Ok(())
        }
        fn write_table(&mut self, _: &[u16], _: &[u32]) -> Result<u32, BalancerError> {
            Ok(0)
        }
        fn set_backend(&mut self, _: u32, _: &Backend) -> Result<(), BalancerError> {
            Ok(())
        }
        fn set_config(&mut self, _: &DataplaneConfig) -> Result<(), BalancerError> {
            Ok(())
        }
        fn write_vip_index(&mut self, _: u32, _: &[VipIndexEntry]) -> Result<(), BalancerError> {
            Ok(())
        }
        fn reset_backend_stats(&mut self, _: u32) -> Result<(), BalancerError> {
            Ok(())
        }
        fn reset_vip_stats(&mut self, _: u32) -> Result<(), BalancerError> {
            Ok(())
        }
        fn read_back(&self) -> Result<MapState, BalancerError> {
            Ok(MapState::default())
        }
    }

    /// Records lookups; the test answers them.
    #[derive(Default)]
    struct FakeHops {
        asked: Vec<(ServiceKey, IpAddr)>,
    }

    impl NextHops for FakeHops {
        fn lookup(
            &mut self,
            service: ServiceKey,
            backend: IpAddr,
            oifs: [u32; 2],
            _: mpsc::UnboundedSender<Event>,
        ) {
            assert_eq!(oifs, [OIF, ARM1]);
            self.asked.push((service, backend));
        }
    }

    const OIF: u32 = 7;
    /// The backend interface.
    const ARM1: u32 = 8;

    type Ctl = Controller<NullMaps, FakeHops>;

    fn controller() -> Ctl {
        Controller::new(Balancer::new(NullMaps), FakeHops::default(), [OIF, ARM1]).0
    }

    /// A data plane on eth0 balancing `services`, validated as a file is.
    fn config(services: impl IntoIterator<Item = config::Service>) -> Config {
        checked(Config {
            dataplane: Some(config::Dataplane::new("eth0")),
            service: services.into_iter().collect(),
            ..Config::default()
        })
    }

    fn checked(config: Config) -> Config {
        config.validate().expect("test config is valid");
        config
    }

    /// One dsr service on :80 with `backends`, checked by `none` (the
    /// tests flip health by events), gated by `VI_1` when `gated`.
    fn service(port: u16, backends: &[(u8, u32)], gated: bool) -> config::Service {
        let backends = backends
            .iter()
            .map(|&(last, weight)| config::BackendConfig {
                weight,
                ..config::BackendConfig::new(be(last))
            })
            .collect();
        config::Service {
            mode: config::Mode::Dsr,
            active_active: !gated,
            health: config::Health {
                kind: HealthKind::None,
                ..config::Health::default()
            },
            ..config::Service::new(key(port).vip, port, backends)
        }
    }

    /// `VI_1`, holding the services' VIP.
    fn vrrp() -> config::VrrpInstance {
        config::VrrpInstance::new("VI_1", "eth0", 50, vec!["198.18.0.100/24".into()])
    }

    fn key(port: u16) -> ServiceKey {
        ServiceKey {
            vip: IpAddr::from([198, 18, 0, 100]),
            port,
            proto: Protocol::Tcp,
        }
    }

    fn be(last: u8) -> IpAddr {
        IpAddr::from([198, 18, 1, last])
    }

    fn mac(last: u8) -> [u8; 6] {
        [2, 0, 0, 0, 1, last]
    }

    /// Answer every outstanding lookup: on-link, MAC from the address.
    fn answer_all(ctl: &mut Ctl) {
        for (service, backend) in std::mem::take(&mut ctl.next_hops.asked) {
            let IpAddr::V4(a) = backend else {
                panic!("v4 only")
            };
            ctl.handle(Event::NextHop(NextHopEvent {
                service,
                backend,
                result: Ok(NextHop {
                    ifindex: OIF,
                    gateway: None,
                    mac: mac(a.octets()[3]),
                    src: None,
                }),
            }));
        }
    }

    /// The pool the data plane has for `key`: (address, weight, MAC).
    fn pool(ctl: &Ctl, key: &ServiceKey) -> Option<Vec<(IpAddr, u32, [u8; 6])>> {
        ctl.balancer()
            .backends(key)
            .map(|b| b.iter().map(|(s, _)| (s.addr, s.weight, s.mac)).collect())
    }

    fn health(ctl: &mut Ctl, port: u16, last: u8, up: bool) {
        ctl.handle(Event::Health(HealthEvent {
            service: key(port),
            backend: be(last),
            check: 0,
            up,
            reason: "test".into(),
            weight: None,
        }));
    }

    #[tokio::test]
    async fn a_backend_behind_the_backend_interface_is_sent_there() {
        let mut ctl = controller();
        ctl.reload(&config([service(80, &[(11, 1), (12, 1)], false)]));
        for (service, backend) in std::mem::take(&mut ctl.next_hops.asked) {
            let IpAddr::V4(a) = backend else {
                panic!("v4 only")
            };
            let last = a.octets()[3];
            ctl.handle(Event::NextHop(NextHopEvent {
                service,
                backend,
                result: Ok(NextHop {
                    ifindex: if last == 12 { ARM1 } else { OIF },
                    gateway: None,
                    mac: mac(last),
                    src: None,
                }),
            }));
        }
        let arms: Vec<(IpAddr, u8)> = ctl
            .balancer()
            .backends(&key(80))
            .unwrap()
            .iter()
            .map(|(s, _)| (s.addr, s.arm))
            .collect();
        assert_eq!(arms, vec![(be(11), 0), (be(12), 1)]);
    }

    /// be(12) checked two ways (`none` kinds: the test sends the results).
    fn two_checks() -> Config {
        let mut svc = service(80, &[(11, 1), (12, 1)], false);
        let none = |port| config::Health {
            kind: HealthKind::None,
            port: Some(port),
            ..config::Health::default()
        };
        svc.backend[1].health = vec![none(8080), none(8081)];
        config([svc])
    }

    fn check(ctl: &mut Ctl, last: u8, check: usize, up: bool) {
        ctl.handle(Event::Health(HealthEvent {
            service: key(80),
            backend: be(last),
            check,
            up,
            reason: "test".into(),
            weight: None,
        }));
    }

    #[tokio::test]
    async fn a_backend_with_several_checks_is_up_only_while_all_pass() {
        let mut ctl = controller();
        ctl.reload(&two_checks());
        answer_all(&mut ctl);
        let both = Some(vec![(be(11), 1, mac(11)), (be(12), 1, mac(12))]);
        assert_eq!(pool(&ctl, &key(80)), both);
        // One of its two checks fails: out; the other backend stays.
        check(&mut ctl, 12, 1, false);
        assert_eq!(pool(&ctl, &key(80)), Some(vec![(be(11), 1, mac(11))]));
        let status = &ctl.status()[0].backends[1];
        assert!(!status.healthy);
        assert_eq!(status.reason, "check 2 of 2 (none): test");
        // The other fails too, then comes back: still out.
        check(&mut ctl, 12, 0, false);
        check(&mut ctl, 12, 0, true);
        assert_eq!(pool(&ctl, &key(80)), Some(vec![(be(11), 1, mac(11))]));
        // Both pass: back in.
        check(&mut ctl, 12, 1, true);
        assert_eq!(pool(&ctl, &key(80)), both);
        // A result of a check it no longer has is ignored.
        check(&mut ctl, 12, 2, false);
        assert_eq!(pool(&ctl, &key(80)), both);
    }

    #[tokio::test]
    async fn a_reload_restarts_only_the_backends_whose_checks_changed() {
        let mut ctl = controller();
        ctl.reload(&two_checks());
        answer_all(&mut ctl);
        health(&mut ctl, 80, 11, false);
        check(&mut ctl, 12, 0, false);
        assert_eq!(pool(&ctl, &key(80)), Some(vec![]));
        // be(12) gets one check instead of two: it starts afresh (up);
        // be(11)'s checks are the same: it stays down.
        let mut cfg = two_checks();
        cfg.service[0].backend[1].health.pop();
        ctl.reload(&cfg);
        answer_all(&mut ctl);
        let status = ctl.status();
        let healthy: Vec<bool> = status[0].backends.iter().map(|b| b.healthy).collect();
        assert_eq!(healthy, [false, true]);
    }

    /// The pool with weights, the sorry server (be(13)) included.
    fn weights(ctl: &Ctl) -> Vec<(IpAddr, u32)> {
        ctl.balancer()
            .backends(&key(80))
            .unwrap()
            .iter()
            .map(|(s, _)| (s.addr, s.weight))
            .collect()
    }

    fn with_sorry(inhibit: bool) -> Config {
        let mut svc = service(80, &[(11, 1), (12, 1)], false);
        svc.sorry_server = Some(config::SorryServer {
            address: be(13),
            port: None,
            inhibit,
        });
        config([svc])
    }

    #[tokio::test]
    async fn the_sorry_server_takes_new_flows_while_no_backend_is_up() {
        let mut ctl = controller();
        ctl.reload(&with_sorry(false));
        answer_all(&mut ctl);
        assert_eq!(weights(&ctl), [(be(11), 1), (be(12), 1)]);
        health(&mut ctl, 80, 11, false);
        assert_eq!(weights(&ctl), [(be(12), 1)]);
        // The last one goes: the sorry server stands in.
        health(&mut ctl, 80, 12, false);
        assert_eq!(weights(&ctl), [(be(13), 1)]);
        assert!(ctl.status()[0].backends[2].sorry_server);
        // A drained backend takes no new flows either.
        ctl.set_drained(&key(80), be(12), true).unwrap();
        health(&mut ctl, 80, 12, true);
        assert_eq!(weights(&ctl), [(be(12), 0), (be(13), 1)]);
        // One back: the sorry server leaves.
        health(&mut ctl, 80, 11, true);
        assert_eq!(weights(&ctl), [(be(11), 1), (be(12), 0)]);
        // With sorry_server_inhibit it stays, with weight 0.
        ctl.reload(&with_sorry(true));
        assert_eq!(weights(&ctl), [(be(11), 1), (be(12), 0), (be(13), 0)]);
    }

    /// The lines the notify commands appended to `log`, once there are
    /// `n` (they run in the background).
    async fn hook_lines(log: &std::path::Path, n: usize) -> Vec<String> {
        for _ in 0..200 {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            if text.lines().count() >= n {
                return text.lines().map(str::to_owned).collect();
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("fewer than {n} lines in {}", log.display());
    }

    #[tokio::test]
    async fn quorum_with_hysteresis_brings_the_sorry_server_and_runs_the_hooks() {
        let log = std::env::temp_dir().join(format!("lb-quorum-{}.log", std::process::id()));
        let _ = std::fs::remove_file(&log);
        let echo = |word: &str| Some(format!("echo {word} >> {}", log.display()));
        let mut cfg = with_sorry(false);
        let svc = &mut cfg.service[0];
        svc.backend = vec![
            config::BackendConfig {
                weight: 1,
                notify_up: echo("b11-up"),
                notify_down: echo("b11-down"),
                ..config::BackendConfig::new(be(11))
            },
            config::BackendConfig {
                weight: 2,
                ..config::BackendConfig::new(be(12))
            },
            config::BackendConfig {
                weight: 2,
                ..config::BackendConfig::new(be(15))
            },
        ];
        svc.quorum = Some(config::Quorum {
            weight: 3,
            hysteresis: 1,
            notify_up: echo("quorum-up"),
            notify_down: echo("quorum-down"),
        });
        svc.notify_on_stop = true;
        let mut ctl = controller();
        ctl.reload(&checked(cfg));
        answer_all(&mut ctl);
        // 5 up: the quorum (gained at 3 + 1) is there from the start.
        assert_eq!(weights(&ctl), [(be(11), 1), (be(12), 2), (be(15), 2)]);
        // 3 left: not below 3 - 1, kept.
        health(&mut ctl, 80, 15, false);
        assert_eq!(weights(&ctl), [(be(11), 1), (be(12), 2)]);
        // 1 left: lost. The sorry server takes new flows; b11 keeps its own.
        health(&mut ctl, 80, 12, false);
        assert_eq!(weights(&ctl), [(be(11), 0), (be(13), 1)]);
        assert_eq!(hook_lines(&log, 1).await, ["quorum-down"]);
        // 3: not yet 3 + 1.
        health(&mut ctl, 80, 12, true);
        assert_eq!(weights(&ctl), [(be(11), 0), (be(12), 0), (be(13), 1)]);
        // 5: gained; the sorry server leaves.
        health(&mut ctl, 80, 15, true);
        assert_eq!(weights(&ctl), [(be(11), 1), (be(12), 2), (be(15), 2)]);
        assert_eq!(hook_lines(&log, 2).await, ["quorum-down", "quorum-up"]);
        // A backend's own hooks.
        health(&mut ctl, 80, 11, false);
        let _ = hook_lines(&log, 3).await;
        health(&mut ctl, 80, 11, true);
        assert_eq!(
            hook_lines(&log, 4).await,
            ["quorum-down", "quorum-up", "b11-down", "b11-up"]
        );
        // Stopping (notify_on_stop): the up backends' notify_down and the
        // quorum's (started together: in either order).
        ctl.run_stop_hooks();
        let mut lines = hook_lines(&log, 6).await;
        lines[4..].sort();
        assert_eq!(lines[4..], ["b11-down", "quorum-down"]);
        let _ = std::fs::remove_file(&log);
    }

    #[tokio::test]
    async fn inhibit_on_failure_keeps_a_failed_backend_with_weight_0() {
        let mut ctl = controller();
        let mut cfg = config([service(80, &[(11, 1), (12, 3)], false)]);
        cfg.service[0].inhibit_on_failure = true;
        ctl.reload(&cfg);
        answer_all(&mut ctl);
        health(&mut ctl, 80, 12, false);
        assert_eq!(weights(&ctl), [(be(11), 1), (be(12), 0)]);
        health(&mut ctl, 80, 12, true);
        assert_eq!(weights(&ctl), [(be(11), 1), (be(12), 3)]);
        // A backend's own setting wins over the service's.
        cfg.service[0].backend[1].inhibit_on_failure = Some(false);
        ctl.reload(&cfg);
        health(&mut ctl, 80, 12, false);
        assert_eq!(weights(&ctl), [(be(11), 1)]);
    }

    #[tokio::test]
    async fn a_dynamic_check_sets_the_weight_until_it_sets_another() {
        let mut ctl = controller();
        ctl.reload(&config([service(80, &[(11, 1), (12, 3)], false)]));
        answer_all(&mut ctl);
        let weighed = |ctl: &mut Ctl, up: bool, weight: Option<u32>| {
            ctl.handle(Event::Health(HealthEvent {
                service: key(80),
                backend: be(12),
                check: 0,
                up,
                reason: "check passed".into(),
                weight,
            }));
        };
        // Exit 7 while up: weight 5, no change of state.
        weighed(&mut ctl, true, Some(5));
        assert_eq!(weights(&ctl), [(be(11), 1), (be(12), 5)]);
        let status = ctl.status();
        assert_eq!(
            status[0].backends[1].weight, 5,
            "lbctl shows the weight in use"
        );
        // Exit 2: weight 0, in the pool for its flows, none new.
        weighed(&mut ctl, true, Some(0));
        assert_eq!(weights(&ctl), [(be(11), 1), (be(12), 0)]);
        // Down and up again: the last weight set stays.
        health(&mut ctl, 80, 12, false);
        assert_eq!(weights(&ctl), [(be(11), 1)]);
        weighed(&mut ctl, true, Some(9));
        assert_eq!(weights(&ctl), [(be(11), 1), (be(12), 9)]);
    }

    #[tokio::test]
    async fn start_down_keeps_backends_out_until_their_checks_pass() {
        let mut cfg = config([service(80, &[(11, 1), (12, 1)], false)]);
        cfg.service[0].start_down = true;
        let mut ctl = controller();
        ctl.reload(&cfg);
        // Down: nothing to look up, nothing in the pool.
        assert!(ctl.next_hops.asked.is_empty());
        assert_eq!(weights(&ctl), []);
        health(&mut ctl, 80, 12, true);
        answer_all(&mut ctl);
        assert_eq!(weights(&ctl), [(be(12), 1)]);
        // An adopted pool is not emptied by a restart: what the maps hold
        // starts up.
        let mut balancer = Balancer::new(NullMaps);
        balancer
            .upsert_service(key(80), spec_of(&cfg.service[0]))
            .unwrap();
        let held = BackendSpec {
            addr: be(11),
            weight: 1,
            mac: mac(11),
            port: 0,
            snat: None,
            arm: 0,
        };
        balancer.set_backends(&key(80), &[held]).unwrap();
        let mut ctl = Controller::new(balancer, FakeHops::default(), [OIF, ARM1]).0;
        ctl.reload(&cfg);
        assert_eq!(weights(&ctl), [(be(11), 1)]);
    }

    #[tokio::test]
    async fn an_adopted_pool_keeps_its_backends_arms() {
        // The maps as an earlier lbd left them: be(12) behind arm 1.
        let cfg = config([service(80, &[(12, 1)], false)]);
        let mut balancer = Balancer::new(NullMaps);
        balancer
            .upsert_service(key(80), spec_of(&cfg.service[0]))
            .unwrap();
        let held = BackendSpec {
            addr: be(12),
            weight: 1,
            mac: mac(12),
            port: 0,
            snat: None,
            arm: 1,
        };
        balancer.set_backends(&key(80), &[held]).unwrap();
        let mut ctl = Controller::new(balancer, FakeHops::default(), [OIF, ARM1]).0;
        ctl.reload(&cfg);
        assert!(ctl.next_hops.asked.is_empty(), "the MAC was held");
        let pool = ctl.balancer().backends(&key(80)).unwrap();
        assert_eq!(pool.len(), 1);
        assert_eq!((pool[0].0.addr, pool[0].0.arm), (be(12), 1));
    }

    #[tokio::test]
    async fn a_new_service_fills_its_pool_as_next_hops_answer() {
        let mut ctl = controller();
        ctl.reload(&config([service(80, &[(11, 1), (12, 2)], false)]));
        // Active at once, with an empty pool until the MACs are known; the
        // reload itself waited for nothing.
        assert_eq!(pool(&ctl, &key(80)), Some(vec![]));
        assert_eq!(
            ctl.next_hops.asked,
            vec![(key(80), be(11)), (key(80), be(12))]
        );
        answer_all(&mut ctl);
        assert_eq!(
            pool(&ctl, &key(80)),
            Some(vec![(be(11), 1, mac(11)), (be(12), 2, mac(12))])
        );
        let status = ctl.status();
        assert!(status[0].active);
        assert!(status[0].backends.iter().all(|b| b.in_pool));
    }

    #[tokio::test]
    async fn a_removed_service_leaves_the_data_plane_and_late_answers_are_ignored() {
        let mut ctl = controller();
        ctl.reload(&config([service(80, &[(11, 1)], false)]));
        ctl.reload(&config([]));
        assert_eq!(pool(&ctl, &key(80)), None);
        assert_eq!(ctl.balancer().services().count(), 0);
        // The lookup started before the removal answers now: nothing comes
        // back.
        answer_all(&mut ctl);
        assert_eq!(ctl.balancer().services().count(), 0);
        assert!(ctl.status().is_empty());
    }

    #[tokio::test]
    async fn health_flips_take_a_backend_out_and_back_without_a_new_lookup() {
        let mut ctl = controller();
        ctl.reload(&config([service(80, &[(11, 1), (12, 1)], false)]));
        answer_all(&mut ctl);
        health(&mut ctl, 80, 11, false);
        assert_eq!(pool(&ctl, &key(80)), Some(vec![(be(12), 1, mac(12))]));
        assert!(!ctl.status()[0].backends[0].healthy);
        health(&mut ctl, 80, 11, true);
        assert!(ctl.next_hops.asked.is_empty(), "the MAC was known");
        assert_eq!(
            pool(&ctl, &key(80)),
            Some(vec![(be(11), 1, mac(11)), (be(12), 1, mac(12))])
        );
        // A result for a backend or service the controller does not have
        // changes nothing.
        health(&mut ctl, 80, 99, false);
        health(&mut ctl, 81, 11, false);
        assert_eq!(pool(&ctl, &key(80)).map(|p| p.len()), Some(2));
    }

    #[tokio::test]
    async fn a_backend_unhealthy_at_lookup_time_is_looked_up_when_it_comes_up() {
        let mut ctl = controller();
        ctl.reload(&config([service(80, &[(11, 1)], false)]));
        health(&mut ctl, 80, 11, false);
        // The first lookup fails; the backend stays out.
        let (service, backend) = ctl.next_hops.asked.remove(0);
        ctl.handle(Event::NextHop(NextHopEvent {
            service,
            backend,
            result: Err(NeighError::NoRoute { dest: backend }),
        }));
        assert_eq!(pool(&ctl, &key(80)), Some(vec![]));
        health(&mut ctl, 80, 11, true);
        assert_eq!(ctl.next_hops.asked, vec![(key(80), be(11))]);
        answer_all(&mut ctl);
        assert_eq!(pool(&ctl, &key(80)), Some(vec![(be(11), 1, mac(11))]));
    }

    #[tokio::test]
    async fn dsr_refuses_a_backend_behind_a_router() {
        let mut ctl = controller();
        ctl.reload(&config([service(80, &[(11, 1)], false)]));
        let (service, backend) = ctl.next_hops.asked.remove(0);
        ctl.handle(Event::NextHop(NextHopEvent {
            service,
            backend,
            result: Ok(NextHop {
                ifindex: OIF,
                gateway: Some(IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1))),
                mac: mac(1),
                src: None,
            }),
        }));
        assert_eq!(pool(&ctl, &key(80)), Some(vec![]));
        assert_eq!(ctl.status()[0].backends[0].mac, None);
    }

    /// A gated service is active while its instance is master here, and
    /// stays in the data plane (standby) while it is not: the same pool,
    /// VIP id and slots either way, so connection sync has a table to fill
    /// and a takeover rewrites nothing.
    #[tokio::test]
    async fn a_gated_service_is_active_while_master_and_standby_otherwise() {
        let mut ctl = controller();
        ctl.reload(&checked(Config {
            vrrp_instance: vec![vrrp()],
            ..config([service(80, &[(11, 1)], true)])
        }));
        answer_all(&mut ctl);
        assert_eq!(ctl.status()[0].vrrp_instance.as_deref(), Some("VI_1"));
        let standby = pool(&ctl, &key(80));
        assert_eq!(
            standby,
            Some(vec![(be(11), 1, mac(11))]),
            "standby: in the data plane"
        );
        assert!(!ctl.status()[0].active, "not master yet");
        let version = ctl.balancer().version();
        ctl.vrrp_state("VI_1", State::Master);
        assert!(ctl.status()[0].active);
        assert_eq!(pool(&ctl, &key(80)), standby);
        let translation = ctl.balancer().translation();
        ctl.vrrp_state("VI_2", State::Backup);
        assert!(ctl.status()[0].active, "another instance changes nothing");
        ctl.vrrp_state("VI_1", State::Backup);
        assert!(!ctl.status()[0].active);
        assert_eq!(pool(&ctl, &key(80)), standby);
        assert!(ctl.balancer().version() > version);
        assert_eq!(
            ctl.balancer().translation(),
            translation,
            "same VIP id, generation and slots through the transitions"
        );
    }

    #[tokio::test]
    async fn reload_applies_only_the_difference() {
        let mut ctl = controller();
        ctl.reload(&config([service(80, &[(11, 1), (12, 1)], false)]));
        answer_all(&mut ctl);
        health(&mut ctl, 80, 12, false);
        // Same file again: nothing changes, nothing is looked up.
        ctl.reload(&config([service(80, &[(11, 1), (12, 1)], false)]));
        assert!(ctl.next_hops.asked.is_empty());
        assert_eq!(pool(&ctl, &key(80)), Some(vec![(be(11), 1, mac(11))]));
        // A new weight for 11, a new backend 13, 12 stays down: only 13 is
        // looked up; 12 keeps its health state.
        ctl.reload(&config([service(80, &[(11, 3), (12, 1), (13, 1)], false)]));
        assert_eq!(ctl.next_hops.asked, vec![(key(80), be(13))]);
        assert_eq!(pool(&ctl, &key(80)), Some(vec![(be(11), 3, mac(11))]));
        answer_all(&mut ctl);
        assert_eq!(
            pool(&ctl, &key(80)),
            Some(vec![(be(11), 3, mac(11)), (be(13), 1, mac(13))])
        );
        // A second service beside it; the first one is untouched.
        ctl.reload(&config([
            service(80, &[(11, 3), (12, 1), (13, 1)], false),
            service(443, &[(11, 1)], false),
        ]));
        assert_eq!(ctl.next_hops.asked, vec![(key(443), be(11))]);
        assert_eq!(pool(&ctl, &key(80)).map(|p| p.len()), Some(2));
        assert_eq!(ctl.balancer().services().count(), 2);
    }

    #[tokio::test]
    async fn services_sharing_backends_share_one_lookup_per_address() {
        let mut ctl = controller();
        ctl.reload(&config([
            service(80, &[(11, 1), (12, 1)], false),
            service(443, &[(11, 1), (12, 1)], false),
        ]));
        // One lookup per address, not per (service, backend): a thousand
        // services over the same backends must not open a thousand
        // netlink sockets per backend.
        assert_eq!(
            ctl.next_hops.asked,
            vec![(key(80), be(11)), (key(80), be(12))]
        );
        answer_all(&mut ctl);
        for port in [80, 443] {
            assert_eq!(
                pool(&ctl, &key(port)),
                Some(vec![(be(11), 1, mac(11)), (be(12), 1, mac(12))]),
                "port {port}"
            );
        }
    }

    #[tokio::test]
    async fn drain_keeps_a_backend_with_weight_zero_until_enabled() {
        let mut ctl = controller();
        ctl.reload(&config([service(80, &[(11, 2), (12, 1)], false)]));
        answer_all(&mut ctl);
        ctl.set_drained(&key(80), be(11), true)
            .expect("known backend");
        assert_eq!(
            pool(&ctl, &key(80)),
            Some(vec![(be(11), 0, mac(11)), (be(12), 1, mac(12))])
        );
        assert!(ctl.status()[0].backends[0].drained);
        ctl.set_drained(&key(80), be(11), false)
            .expect("known backend");
        assert_eq!(pool(&ctl, &key(80)).map(|p| p[0].1), Some(2));
        assert!(ctl.set_drained(&key(80), be(99), true).is_err());
        assert!(ctl.set_drained(&key(81), be(11), true).is_err());
        // The control socket's answers, word for word.
        assert_eq!(
            ctl.set_drained(&key(80), be(99), true)
                .unwrap_err()
                .to_string(),
            "service 198.18.0.100:80/tcp has no backend 198.18.1.99"
        );
        assert_eq!(
            ctl.set_drained(&key(81), be(11), true)
                .unwrap_err()
                .to_string(),
            "no service 198.18.0.100:81/tcp"
        );
    }
}
