//! The service controller: configuration, health and VRRP state in, the
//! data plane's services and pools out.
//!
//! For each `[[service]]`:
//! - a backend is in the pool while its health check says up; an operator
//!   drain (`lbctl drain`) keeps it in with weight 0 (no new flows,
//!   established ones continue) until `lbctl enable`;
//! - the MAC to send to comes from the kernel's neighbour table (the
//!   backend's own for `dsr`, the next hop's for `ipip`);
//! - a service whose VIP belongs to a VRRP instance is in the data plane
//!   only while that instance is master here (unless `active_active`),
//!   switched when the instance's transition happens;
//! - a change rewrites only that service's table.
//!
//! Reload ([`Controller::reload`]) applies only the difference: services
//! added, removed or changed; a changed backend list keeps the health state
//! of the backends that stay, and established flows keep their backends.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::config::{self, Config, HealthKind};
use crate::dataplane::balancer::{BackendSpec, Balancer, EbpfMaps, Mode, ServiceKey, ServiceSpec};
use crate::services::health::{self, Change, CheckSpec, Checker, Due};
use crate::vrrp::machine::State;

/// A health result for one backend of one service.
#[derive(Debug, Clone)]
pub struct HealthEvent {
    /// The service.
    pub service: ServiceKey,
    /// The backend.
    pub backend: IpAddr,
    /// New state.
    pub up: bool,
    /// Why (the last check's result).
    pub reason: String,
}

/// One backend as the controller sees it.
#[derive(Debug, Clone, Serialize)]
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
}

/// One service as the controller sees it.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceStatus {
    /// `VIP:PORT/PROTO`.
    pub service: String,
    /// `dsr` or `ipip`.
    pub mode: String,
    /// Gating instance, if any.
    pub vrrp_instance: Option<String>,
    /// Forwarding here now.
    pub active: bool,
    /// Backends.
    pub backends: Vec<BackendStatus>,
}

struct Backend {
    cfg: config::BackendConfig,
    port: u16,
    healthy: bool,
    reason: String,
    drained: bool,
    mac: Option<[u8; 6]>,
    checker: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Backend {
    fn drop(&mut self) {
        if let Some(c) = self.checker.take() {
            c.abort();
        }
    }
}

struct Service {
    cfg: config::Service,
    key: ServiceKey,
    spec: ServiceSpec,
    gate: Option<String>,
    active: bool,
    backends: Vec<Backend>,
}

/// See the module doc.
pub struct Controller {
    balancer: Balancer<EbpfMaps>,
    oif: u32,
    services: BTreeMap<ServiceKey, Service>,
    vrrp: HashMap<String, State>,
    health_tx: mpsc::UnboundedSender<HealthEvent>,
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

fn spec_of(s: &config::Service) -> ServiceSpec {
    // `scheduler` has one value, Maglev: the only one the data plane has.
    let config::Scheduler::Maglev = s.scheduler;
    ServiceSpec {
        mode: s.mode.into(),
        ring_size: s.ring_size,
        on_no_backend: s.on_no_backend.into(),
    }
}

fn check_of(h: &config::Health) -> CheckSpec {
    CheckSpec {
        kind: match h.kind {
            HealthKind::Tcp => health::Kind::Tcp,
            HealthKind::Http => health::Kind::Http {
                path: h.path.clone(),
                expect_status: h.expect_status,
            },
            // Validation refuses `exec` without a command.
            HealthKind::Exec => health::Kind::Exec {
                command: h.command.clone().unwrap_or_default(),
                user: h.user.clone(),
            },
            HealthKind::None => health::Kind::None,
        },
        interval: h.interval.0,
        timeout: h.timeout.0,
        rise: h.rise,
        fall: h.fall,
    }
}

/// The instance gating `svc`: the one named, else the one holding its VIP.
fn gate_of(config: &Config, svc: &config::Service) -> Option<String> {
    if svc.active_active {
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

impl Controller {
    /// A controller over `balancer`; `oif` is the data plane's interface
    /// (next hops must be reachable through it). Health results arrive on
    /// the receiver returned; feed them to [`Controller::health`].
    #[must_use]
    pub fn new(
        balancer: Balancer<EbpfMaps>,
        oif: u32,
    ) -> (Self, mpsc::UnboundedReceiver<HealthEvent>) {
        let (health_tx, rx) = mpsc::unbounded_channel();
        (
            Self {
                balancer,
                oif,
                services: BTreeMap::new(),
                vrrp: HashMap::new(),
                health_tx,
            },
            rx,
        )
    }

    /// Apply `config`'s services: add new ones, remove those gone, update
    /// changed ones. Health state of backends that stay is kept.
    pub async fn reload(&mut self, config: &Config) {
        let wanted: BTreeMap<ServiceKey, &config::Service> =
            config.service.iter().map(|s| (key_of(s), s)).collect();
        let gone: Vec<ServiceKey> = self
            .services
            .keys()
            .filter(|k| !wanted.contains_key(k))
            .copied()
            .collect();
        for key in gone {
            if let Some(svc) = self.services.remove(&key)
                && svc.active
                && let Err(e) = self.balancer.remove_service(&key)
            {
                warn!(service = %key, "removing service: {e}");
            }
            info!(service = %key, "service removed");
        }
        for (key, cfg) in wanted {
            let gate = gate_of(config, cfg);
            match self.services.get_mut(&key) {
                Some(svc) if svc.cfg == *cfg && svc.gate == gate => continue,
                Some(svc) => {
                    let health_changed = svc.cfg.health != cfg.health;
                    let mut old: Vec<Backend> = std::mem::take(&mut svc.backends);
                    let mut backends = Vec::new();
                    for b in &cfg.backend {
                        let port = b.port.unwrap_or(cfg.port);
                        match old.iter().position(|o| o.cfg.address == b.address) {
                            Some(i) if !health_changed && old[i].port == port => {
                                let mut kept = old.remove(i);
                                kept.cfg = b.clone();
                                backends.push(kept);
                            }
                            _ => backends.push(new_backend(b, port)),
                        }
                    }
                    svc.cfg = cfg.clone();
                    svc.spec = spec_of(cfg);
                    svc.gate = gate;
                    svc.backends = backends;
                    info!(service = %key, "service changed");
                }
                None => {
                    let svc = Service {
                        cfg: cfg.clone(),
                        key,
                        spec: spec_of(cfg),
                        gate,
                        active: false,
                        backends: cfg
                            .backend
                            .iter()
                            .map(|b| new_backend(b, b.port.unwrap_or(cfg.port)))
                            .collect(),
                    };
                    info!(service = %key, mode = %cfg.mode, backends = svc.backends.len(), gate = ?svc.gate, "service added");
                    self.services.insert(key, svc);
                }
            }
            self.start_checks(&key);
            self.resolve_macs(&key).await;
            self.sync(&key);
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
    pub async fn health(&mut self, event: HealthEvent) {
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
        b.healthy = event.up;
        b.reason = event.reason.clone();
        if event.up {
            info!(service = %event.service, backend = %event.backend, "backend up: {}", event.reason);
        } else {
            warn!(service = %event.service, backend = %event.backend, "backend down: {}", event.reason);
        }
        if event.up {
            self.resolve_macs(&event.service).await;
        }
        self.sync(&event.service);
    }

    /// Drain (`drain = true`: weight 0, established flows continue) or
    /// re-enable a backend.
    ///
    /// # Errors
    /// No such service or backend.
    pub fn set_drained(
        &mut self,
        key: &ServiceKey,
        backend: IpAddr,
        drain: bool,
    ) -> Result<(), String> {
        let svc = self
            .services
            .get_mut(key)
            .ok_or_else(|| format!("no service {key}"))?;
        let b = svc
            .backends
            .iter_mut()
            .find(|b| b.cfg.address == backend)
            .ok_or_else(|| format!("service {key} has no backend {backend}"))?;
        b.drained = drain;
        info!(service = %key, %backend, "backend {}", if drain { "drained by operator" } else { "enabled by operator" });
        self.sync(key);
        Ok(())
    }

    /// Status of every service.
    #[must_use]
    pub fn status(&self) -> Vec<ServiceStatus> {
        self.services
            .values()
            .map(|s| ServiceStatus {
                service: s.key.to_string(),
                mode: s.cfg.mode.to_string(),
                vrrp_instance: s.gate.clone(),
                active: s.active,
                backends: s
                    .backends
                    .iter()
                    .map(|b| BackendStatus {
                        address: b.cfg.address,
                        port: b.port,
                        weight: b.cfg.weight,
                        healthy: b.healthy,
                        reason: b.reason.clone(),
                        drained: b.drained,
                        in_pool: s.active && b.healthy && b.mac.is_some(),
                        mac: b.mac.map(|m| {
                            m.iter()
                                .map(|x| format!("{x:02x}"))
                                .collect::<Vec<_>>()
                                .join(":")
                        }),
                    })
                    .collect(),
            })
            .collect()
    }

    /// The balancer, for stats.
    #[must_use]
    pub fn balancer(&self) -> &Balancer<EbpfMaps> {
        &self.balancer
    }

    fn start_checks(&mut self, key: &ServiceKey) {
        let Some(svc) = self.services.get_mut(key) else {
            return;
        };
        let spec = check_of(&svc.cfg.health);
        let port_override = svc.cfg.health.port;
        for b in &mut svc.backends {
            if b.checker.is_some() {
                continue;
            }
            let tx = self.health_tx.clone();
            let addr = b.cfg.address;
            let port = port_override.unwrap_or(b.port);
            b.checker = Some(tokio::spawn(run_checks(*key, addr, port, spec.clone(), tx)));
        }
    }

    async fn resolve_macs(&mut self, key: &ServiceKey) {
        let oif = self.oif;
        let Some(svc) = self.services.get_mut(key) else {
            return;
        };
        let mode = svc.spec.mode;
        for b in &mut svc.backends {
            if b.mac.is_some() || !b.healthy {
                continue;
            }
            match crate::sys::neigh::resolve(b.cfg.address, Some(oif), Duration::from_secs(1)).await
            {
                Ok(hop) if mode == Mode::Dsr && hop.gateway.is_some() => {
                    warn!(service = %key, backend = %b.cfg.address, "dsr needs backends on the data plane's link; this one is behind a router");
                }
                Ok(hop) => b.mac = Some(hop.mac),
                Err(e) => warn!(service = %key, backend = %b.cfg.address, "no next hop yet: {e}"),
            }
        }
    }

    /// Make the data plane match the desired state of one service.
    fn sync(&mut self, key: &ServiceKey) {
        let Some(svc) = self.services.get_mut(key) else {
            return;
        };
        let want_active = match &svc.gate {
            None => true,
            Some(name) => self.vrrp.get(name) == Some(&State::Master),
        };
        if !want_active {
            if svc.active {
                match self.balancer.remove_service(key) {
                    Ok(()) => {
                        info!(service = %key, gate = ?svc.gate, "service inactive: this node is not master")
                    }
                    Err(e) => warn!(service = %key, "deactivating: {e}"),
                }
                svc.active = false;
            }
            return;
        }
        if let Err(e) = self.balancer.upsert_service(*key, svc.spec) {
            warn!(service = %key, "activating: {e}");
            return;
        }
        if !svc.active {
            info!(service = %key, "service active");
        }
        svc.active = true;
        let pool: Vec<BackendSpec> = svc
            .backends
            .iter()
            .filter(|b| b.healthy)
            .filter_map(|b| {
                Some(BackendSpec {
                    addr: b.cfg.address,
                    weight: if b.drained { 0 } else { b.cfg.weight },
                    mac: b.mac?,
                })
            })
            .collect();
        if let Err(e) = self.balancer.set_backends(key, &pool) {
            warn!(service = %key, "writing pool: {e}");
        }
    }
}

fn new_backend(b: &config::BackendConfig, port: u16) -> Backend {
    Backend {
        cfg: b.clone(),
        port,
        healthy: true,
        reason: "starting".into(),
        drained: false,
        mac: None,
        checker: None,
    }
}

/// One backend's check loop: [`Checker`] scheduling, [`health::probe`]
/// under the timeout, a [`HealthEvent`] on each state change.
async fn run_checks(
    service: ServiceKey,
    backend: IpAddr,
    port: u16,
    spec: CheckSpec,
    tx: mpsc::UnboundedSender<HealthEvent>,
) {
    let mut checker = Checker::new(&spec, Instant::now());
    loop {
        tokio::time::sleep_until(checker.next_deadline().into()).await;
        let now = Instant::now();
        if checker.poll(now) != Some(Due::Start) {
            continue;
        }
        checker.started(now);
        let result =
            tokio::time::timeout(spec.timeout, health::probe(&spec.kind, backend, port)).await;
        let (ok, reason) = match result {
            Ok(Ok(())) => (true, "check passed".to_owned()),
            Ok(Err(e)) => (false, e),
            Err(_) => (false, format!("check timed out after {:?}", spec.timeout)),
        };
        if let Some(change) = checker.finished(ok) {
            let up = change == Change::Up;
            let reason = if up {
                format!("{reason} ({} in a row)", spec.rise)
            } else {
                format!("{reason} ({} in a row)", spec.fall)
            };
            if tx
                .send(HealthEvent {
                    service,
                    backend,
                    up,
                    reason,
                })
                .is_err()
            {
                return;
            }
        }
    }
}

/// The data plane's global settings from `[dataplane]`: `ipip` outer
/// sources (default: the interface's own addresses) and the MTU.
///
/// # Errors
/// Netlink failure listing the interface's addresses.
pub async fn dataplane_config(
    dp: &config::Dataplane,
    ifindex: u32,
) -> anyhow::Result<lb_common::config::Config> {
    let (conn, handle, _) = rtnetlink::new_connection()?;
    let conn = tokio::spawn(conn);
    let present = crate::vrrp::addr::list(&handle, ifindex).await;
    conn.abort();
    let present = present?;
    let first = |v6: bool| {
        present.iter().map(|p| p.vip.addr).find(|a| match a {
            IpAddr::V4(_) => !v6,
            IpAddr::V6(a) => v6 && !a.is_unicast_link_local(),
        })
    };
    let mut out = lb_common::config::Config {
        mtu: dp.mtu,
        ..lb_common::config::Config::default()
    };
    let v4 = match &dp.ipip_source_v4 {
        Some(s) => Some(config::parse_cidr(s).map_err(|e| anyhow::anyhow!(e))?),
        None => first(false).map(|a| (a, 32)),
    };
    if let Some((IpAddr::V4(a), prefix)) = v4 {
        let host = if prefix >= 32 { 0 } else { u32::MAX >> prefix };
        out.ipip_src_v4_be = u32::from_ne_bytes(a.octets());
        out.ipip_src_v4_mask_be = host.to_be();
    }
    let v6 = match &dp.ipip_source_v6 {
        Some(s) => Some(config::parse_cidr(s).map_err(|e| anyhow::anyhow!(e))?),
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

/// Traffic of one VIP or backend, summed over CPUs.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Traffic {
    /// Packets forwarded.
    pub packets: u64,
    /// Bytes forwarded.
    pub bytes: u64,
    /// Flows begun.
    pub new_flows: u64,
}

/// Counters of one service and its backends.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceTraffic {
    /// `VIP:PORT/PROTO`.
    pub service: String,
    /// The VIP's counters.
    pub total: Traffic,
    /// Per backend address.
    pub backends: BTreeMap<String, Traffic>,
}

/// The data plane's counters per active service and backend. (A backend
/// shared by several services has one set of counters: it is shown under
/// each.)
#[must_use]
pub fn traffic_stats(c: &Controller, ebpf: &aya::Ebpf) -> Vec<ServiceTraffic> {
    let t = |r: Result<lb_common::stats::TrafficCounters, crate::dataplane::stats::StatsError>| {
        r.map(|c| Traffic {
            packets: c.packets,
            bytes: c.bytes,
            new_flows: c.new_flows,
        })
        .unwrap_or_default()
    };
    c.balancer
        .services()
        .map(|(key, _, id)| ServiceTraffic {
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
