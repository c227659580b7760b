//! Prometheus metrics on `global.metrics_listen` (off unless configured).
//!
//! `GET /metrics` answers the text exposition format, built at scrape time
//! from the data plane's counters and the controller's and VRRP instances'
//! state, encoded with `prometheus-client`:
//!
//! | metric | labels |
//! |---|---|
//! | `lb_vip_packets_total`, `lb_vip_bytes_total`, `lb_vip_new_flows_total` | service |
//! | `lb_backend_packets_total`, `lb_backend_bytes_total`, `lb_backend_new_flows_total` (the service's traffic to the backend only) | service, backend |
//! | `lb_vip_replies_total`; `lb_backend_replies_total`, `lb_backend_reply_bytes_total`, `lb_backend_refused_total` (`nat` / `fullnat`) | service; service, backend |
//! | `lb_backend_healthy`, `lb_backend_in_pool`, `lb_backend_drained` (0/1) | service, backend |
//! | `lb_service_active` (0/1) | service |
//! | `lb_service_flows_recent`, `lb_service_flows_off_table` (flows pinned to another backend than the table would choose now) | service |
//! | `lb_table_rewrites_total`, `lb_table_slots_changed_total`, `lb_table_slots_necessary_total` (Maglev table rewrites and the slots they moved: changed beyond necessary is disruption a failover without sync would show) | service |
//! | `lb_vrrp_state` (1 for the current state) | instance, state |
//! | `lb_vrrp_priority`, `lb_vrrp_transitions_total`, `lb_vrrp_adverts_accepted_total` | instance |
//! | `lb_vrrp_adverts_rejected_total` | instance, cause |
//! | `lb_flows_evicted_total` (connection table) | age: `recent` (seen within ~1 s: grow `conntrack_entries`) or `idle` |
//! | `lb_flows_capacity`, `lb_flows_in_use`, `lb_flows_recent` (seen in the last 10 s) | |
//! | `lb_xdp_program_runs_total`, `lb_xdp_program_run_nanoseconds_total` (while `kernel.bpf_stats_enabled` = 1) | |
//! | `lb_cpu_busy_nanoseconds_total`, `lb_cpu_softirq_nanoseconds_total` | cpu |
//! | `lb_bgp_speaker_up` (0/1: bird answered the last poll), `lb_bgp_vips_announced` (with `[bgp]`) | |
//! | `lb_bgp_session_up` (0/1) | session |
//! | `lb_bgp_vip_announced` (1 while its route is in lbd's table) | vip |

use std::net::SocketAddr;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::{mpsc, oneshot};
use tracing::warn;

use crate::services::controller::{ServiceStatus, ServiceTraffic};
use crate::vrrp::driver::InstanceStatus;

type Labels = Vec<(String, String)>;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// What one scrape shows.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Services and backends (controller view).
    pub services: Vec<ServiceStatus>,
    /// Data plane counters.
    pub traffic: Vec<ServiceTraffic>,
    /// VRRP instances.
    pub vrrp: Vec<InstanceStatus>,
    /// Connection-table fill and evictions (none without a data plane).
    pub flows: Option<crate::dataplane::stats::FlowTableUsage>,
    /// Connection sync (none without `[sync]`).
    pub sync: Option<crate::sync::node::SyncStatus>,
    /// The NAT table's flows by state (none without a data plane).
    pub nat: Option<crate::dataplane::nat::Census>,
    /// The balancer program's runs and time (none without a data plane).
    pub program: Option<crate::dataplane::stats::ProgramRuns>,
    /// The machine's CPU time, per CPU.
    pub cpus: Vec<crate::dataplane::stats::CpuTime>,
    /// BGP announcement (none without `[bgp]`).
    pub bgp: Option<crate::bgp::BgpStatus>,
}

fn counter_family(registry: &mut Registry, name: &str, help: &str) -> Family<Labels, Counter> {
    let f = Family::<Labels, Counter>::default();
    registry.register(name, help, f.clone());
    f
}

fn gauge_family(registry: &mut Registry, name: &str, help: &str) -> Family<Labels, Gauge> {
    let f = Family::<Labels, Gauge>::default();
    registry.register(name, help, f.clone());
    f
}

/// The text exposition of `s`.
#[must_use]
pub fn render(s: &Snapshot) -> String {
    let mut r = Registry::default();
    traffic_metrics(&mut r, &s.traffic);
    service_metrics(&mut r, &s.services);
    vrrp_metrics(&mut r, &s.vrrp);
    if let Some(nat) = &s.nat {
        nat_metrics(&mut r, nat);
    }
    if let Some(sync) = &s.sync {
        sync_metrics(&mut r, sync);
    }
    machine_metrics(&mut r, s.program.as_ref(), &s.cpus);
    if let Some(f) = &s.flows {
        flow_metrics(&mut r, f);
    }
    if let Some(b) = &s.bgp {
        bgp_metrics(&mut r, b);
    }
    let mut out = String::new();
    if let Err(e) = encode(&mut out, &r) {
        warn!("encoding metrics failed: {e}");
    }
    out
}

/// The per-service and per-backend data plane counters.
fn traffic_metrics(r: &mut Registry, traffic: &[ServiceTraffic]) {
    let vip_packets = counter_family(r, "lb_vip_packets", "Packets forwarded for the service");
    let vip_bytes = counter_family(r, "lb_vip_bytes", "Bytes forwarded for the service");
    let vip_flows = counter_family(r, "lb_vip_new_flows", "Flows begun on the service");
    let be_packets = counter_family(
        r,
        "lb_backend_packets",
        "Packets the service forwarded to the backend",
    );
    let be_bytes = counter_family(
        r,
        "lb_backend_bytes",
        "Bytes the service forwarded to the backend",
    );
    let be_flows = counter_family(
        r,
        "lb_backend_new_flows",
        "Flows the service began on the backend",
    );
    let vip_replies = counter_family(
        r,
        "lb_vip_replies",
        "nat / fullnat: backend replies translated back to the service's clients",
    );
    let be_replies = counter_family(
        r,
        "lb_backend_replies",
        "nat / fullnat: the backend's replies translated back",
    );
    let be_reply_bytes = counter_family(
        r,
        "lb_backend_reply_bytes",
        "nat / fullnat: bytes of the backend's replies",
    );
    let be_refused = counter_family(
        r,
        "lb_backend_refused",
        "nat / fullnat: new flows for the backend refused (no free SNAT port, NAT table full)",
    );
    let recent = gauge_family(
        r,
        "lb_service_flows_recent",
        "Connection-table flows of the service seen in the last 10 s (not NAT, not persistent)",
    );
    let off_table = gauge_family(
        r,
        "lb_service_flows_off_table",
        "Of those, flows pinned to another backend than the table would choose now (a failover without sync would move them)",
    );
    for t in traffic {
        let l = labels(&[("service", &t.service)]);
        recent
            .get_or_create(&l)
            .set(i64::try_from(t.flows_recent).unwrap_or(i64::MAX));
        off_table
            .get_or_create(&l)
            .set(i64::try_from(t.flows_off_table).unwrap_or(i64::MAX));
        vip_packets.get_or_create(&l).inc_by(t.total.packets);
        vip_bytes.get_or_create(&l).inc_by(t.total.bytes);
        vip_flows.get_or_create(&l).inc_by(t.total.new_flows);
        vip_replies.get_or_create(&l).inc_by(t.total.replies);
        for (addr, b) in &t.backends {
            let l = labels(&[("service", &t.service), ("backend", addr)]);
            be_packets.get_or_create(&l).inc_by(b.packets);
            be_bytes.get_or_create(&l).inc_by(b.bytes);
            be_flows.get_or_create(&l).inc_by(b.new_flows);
            be_replies.get_or_create(&l).inc_by(b.replies);
            be_reply_bytes.get_or_create(&l).inc_by(b.reply_bytes);
            be_refused.get_or_create(&l).inc_by(b.refused);
        }
    }
}

/// The controller's view: backend health, pool membership, drains, and
/// whether each service forwards here.
fn service_metrics(r: &mut Registry, services: &[ServiceStatus]) {
    let healthy = gauge_family(r, "lb_backend_healthy", "Health check verdict (1 up)");
    let in_pool = gauge_family(r, "lb_backend_in_pool", "In the data plane's pool (1 yes)");
    let drained = gauge_family(r, "lb_backend_drained", "Drained by the operator (1 yes)");
    let active = gauge_family(r, "lb_service_active", "Forwarding on this node (1 yes)");
    let rewrites = counter_family(
        r,
        "lb_table_rewrites",
        "Maglev table rewrites measured (both tables known)",
    );
    let changed = counter_family(
        r,
        "lb_table_slots_changed",
        "Table slots whose backend a rewrite changed",
    );
    let necessary = counter_family(
        r,
        "lb_table_slots_necessary",
        "Table slots a rewrite had to change (their backend left, or the new one is new)",
    );
    for svc in services {
        let l = labels(&[("service", &svc.service)]);
        active.get_or_create(&l).set(i64::from(svc.active));
        rewrites.get_or_create(&l).inc_by(svc.table.rewrites);
        changed.get_or_create(&l).inc_by(svc.table.slots_changed);
        necessary
            .get_or_create(&l)
            .inc_by(svc.table.slots_necessary);
        for b in &svc.backends {
            let addr = b.address.to_string();
            let l = labels(&[("service", &svc.service), ("backend", &addr)]);
            healthy.get_or_create(&l).set(i64::from(b.healthy));
            in_pool.get_or_create(&l).set(i64::from(b.in_pool));
            drained.get_or_create(&l).set(i64::from(b.drained));
        }
    }
}

/// The VRRP instances: state, priority and advert counters.
fn vrrp_metrics(r: &mut Registry, vrrp: &[InstanceStatus]) {
    let state = gauge_family(r, "lb_vrrp_state", "1 for the instance's current state");
    let priority = gauge_family(r, "lb_vrrp_priority", "Effective priority");
    let transitions = counter_family(r, "lb_vrrp_transitions", "State transitions");
    let accepted = counter_family(r, "lb_vrrp_adverts_accepted", "Adverts accepted");
    let rejected = counter_family(
        r,
        "lb_vrrp_adverts_rejected",
        "Adverts rejected or dropped, by cause",
    );
    for i in vrrp {
        for st in ["INIT", "BACKUP", "MASTER", "FAULT"] {
            state
                .get_or_create(&labels(&[("vrrp_instance", &i.name), ("state", st)]))
                .set(i64::from(i.state == st));
        }
        let l = labels(&[("vrrp_instance", &i.name)]);
        priority.get_or_create(&l).set(i64::from(i.priority));
        transitions.get_or_create(&l).inc_by(i.transitions);
        accepted.get_or_create(&l).inc_by(i.adverts_accepted);
        for (cause, n) in &i.rejected {
            rejected
                .get_or_create(&labels(&[("vrrp_instance", &i.name), ("cause", cause)]))
                .inc_by(*n);
        }
    }
}

/// Connection sync's counters, lag and bulk state.
/// The speaker, its sessions and the VIPs announced.
fn bgp_metrics(r: &mut Registry, b: &crate::bgp::BgpStatus) {
    let speaker = Gauge::<i64>::default();
    r.register(
        "lb_bgp_speaker_up",
        "The BGP speaker answered lbd's last poll",
        speaker.clone(),
    );
    speaker.set(i64::from(b.reachable));
    let count = Gauge::<i64>::default();
    r.register(
        "lb_bgp_vips_announced",
        "VIPs whose routes lbd has in its table for the speaker",
        count.clone(),
    );
    count.set(i64::try_from(b.announced.len()).unwrap_or(i64::MAX));
    let sessions = gauge_family(r, "lb_bgp_session_up", "The BGP session is established");
    for s in &b.sessions {
        sessions
            .get_or_create(&labels(&[("session", &s.name)]))
            .set(i64::from(s.established()));
    }
    let vips = gauge_family(
        r,
        "lb_bgp_vip_announced",
        "The VIP is announced by this node",
    );
    for vip in &b.announced {
        vips.get_or_create(&labels(&[("vip", &vip.to_string())]))
            .set(1);
    }
}

fn sync_metrics(r: &mut Registry, s: &crate::sync::node::SyncStatus) {
    for (name, help, n) in [
        (
            "lb_sync_flows_sent",
            "New flows sent to the peers",
            s.flows_sent,
        ),
        (
            "lb_sync_bulk_flows_sent",
            "Flows sent answering bulk requests",
            s.bulk_flows_sent,
        ),
        (
            "lb_sync_flows_received",
            "Flows received from the peers",
            s.flows_received,
        ),
        (
            "lb_sync_flows_applied",
            "Received flows written into the connection table",
            s.flows_applied,
        ),
        (
            "lb_sync_templates_written",
            "Client templates of persistent services written from received flows",
            s.templates_written,
        ),
        (
            "lb_sync_flows_dropped_no_service",
            "Received flows for a service not running here",
            s.dropped_no_service,
        ),
        (
            "lb_sync_flows_dropped_no_backend",
            "Received flows dropped: their backend did not join the pool here within a minute",
            s.dropped_no_backend,
        ),
        (
            "lb_sync_events_stale",
            "New-flow events of a service or slot changed meanwhile",
            s.events_stale,
        ),
        (
            "lb_sync_datagrams_sent",
            "Sync datagrams sent",
            s.datagrams_sent,
        ),
        (
            "lb_sync_datagrams_lost",
            "Peer datagrams missing from their sequence",
            s.datagrams_lost,
        ),
        (
            "lb_sync_auth_failures",
            "Sync datagrams that failed authentication",
            s.auth_failures,
        ),
        (
            "lb_sync_malformed",
            "Datagrams on the sync port that were not sync datagrams",
            s.malformed,
        ),
        (
            "lb_sync_send_errors",
            "Sync sends that failed",
            s.send_errors,
        ),
    ] {
        let c = Counter::<u64>::default();
        c.inc_by(n);
        r.register(name, help, c);
    }
    for (name, help, n) in [
        (
            "lb_sync_lag_microseconds",
            "Send-to-receive delay of the last sync datagram",
            s.lag_last_us,
        ),
        (
            "lb_sync_bulk_done",
            "1 once the peers' tables have been received (bulk sync) or waiting timed out",
            u64::from(s.bulk != "waiting"),
        ),
    ] {
        let gauge = Gauge::<i64>::default();
        gauge.set(i64::try_from(n).unwrap_or(i64::MAX));
        r.register(name, help, gauge);
    }
}

/// The NAT table's flows by state, orphans and expiries.
fn nat_metrics(r: &mut Registry, c: &crate::dataplane::nat::Census) {
    let flows = gauge_family(
        r,
        "lb_nat_flows",
        "Flows in the NAT table (nat and fullnat services), by state",
    );
    for (state, n) in &c.by_state {
        flows
            .get_or_create(&labels(&[("state", state)]))
            .set(i64::try_from(*n).unwrap_or(i64::MAX));
    }
    let orphans = Gauge::<i64>::default();
    orphans.set(i64::try_from(c.orphans).unwrap_or(i64::MAX));
    r.register(
        "lb_nat_orphan_entries",
        "NAT entries whose other direction is missing (expire on their own)",
        orphans,
    );
    let expired = Counter::<u64>::default();
    expired.inc_by(c.expired_total);
    r.register(
        "lb_nat_flows_expired",
        "NAT flows deleted after their state's idle timeout (their SNAT ports freed)",
        expired,
    );
}

/// The program's runs and time, and the CPUs' time: what a load test reads
/// to report packets per second and CPU per core (`cargo xtask bench
/// nic`).
fn machine_metrics(
    r: &mut Registry,
    program: Option<&crate::dataplane::stats::ProgramRuns>,
    cpus: &[crate::dataplane::stats::CpuTime],
) {
    if let Some(p) = program {
        for (name, help, n) in [
            (
                "lb_xdp_program_runs",
                "Runs of the balancer program (counted while kernel.bpf_stats_enabled = 1)",
                p.runs,
            ),
            (
                "lb_xdp_program_run_nanoseconds",
                "Time in the balancer program, ns (counted while kernel.bpf_stats_enabled = 1)",
                p.run_ns,
            ),
        ] {
            let c = Counter::<u64>::default();
            c.inc_by(n);
            r.register(name, help, c);
        }
    }
    let busy = counter_family(
        r,
        "lb_cpu_busy_nanoseconds",
        "CPU time not idle, ns, by CPU",
    );
    let softirq = counter_family(
        r,
        "lb_cpu_softirq_nanoseconds",
        "CPU time in softirq (where XDP runs on a NIC's receive path), ns, by CPU",
    );
    for c in cpus {
        let l = labels(&[("cpu", &c.cpu.to_string())]);
        busy.get_or_create(&l).inc_by(c.busy_ns);
        softirq.get_or_create(&l).inc_by(c.softirq_ns);
    }
}

/// The connection table's evictions and fill.
fn flow_metrics(r: &mut Registry, f: &crate::dataplane::stats::FlowTableUsage) {
    let evicted = counter_family(
        r,
        "lb_flows_evicted",
        "Flows the connection table evicted for new ones, by how recently they were seen",
    );
    for (age, n) in [("recent", f.evicted_recent), ("idle", f.evicted_idle)] {
        evicted.get_or_create(&labels(&[("age", age)])).inc_by(n);
    }
    for (name, help, n) in [
        (
            "lb_flows_capacity",
            "Flows the connection table can hold",
            f.capacity,
        ),
        (
            "lb_flows_in_use",
            "Connection-table ways holding a flow (finished ones stay until evicted)",
            f.in_use,
        ),
        ("lb_flows_recent", "Flows seen in the last 10 s", f.recent),
    ] {
        let gauge = Gauge::<i64>::default();
        gauge.set(i64::try_from(n).unwrap_or(i64::MAX));
        r.register(name, help, gauge);
    }
}

/// A scrape waiting for lbd's main loop to take a [`Snapshot`].
pub type Scrape = oneshot::Sender<String>;

/// Serve `GET /metrics` on `addr`; each scrape asks the main loop (through
/// `tx`) for the rendered text.
///
/// # Errors
/// The address cannot be bound.
pub async fn serve(
    addr: SocketAddr,
    tx: mpsc::Sender<Scrape>,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    Ok(tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                continue;
            };
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                let Ok(Ok(n)) =
                    tokio::time::timeout(std::time::Duration::from_secs(5), stream.read(&mut buf))
                        .await
                else {
                    return;
                };
                let request = String::from_utf8_lossy(&buf[..n]);
                let path_ok = request
                    .lines()
                    .next()
                    .is_some_and(|l| l.starts_with("GET /metrics ") || l.starts_with("GET / "));
                let (status, body) = if path_ok {
                    let (reply, text) = oneshot::channel();
                    if tx.send(reply).await.is_err() {
                        (
                            "503 Service Unavailable",
                            "lbd is shutting down\n".to_owned(),
                        )
                    } else {
                        match text.await {
                            Ok(t) => ("200 OK", t),
                            Err(_) => ("503 Service Unavailable", String::new()),
                        }
                    }
                } else {
                    ("404 Not Found", "try /metrics\n".to_owned())
                };
                let head = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(head.as_bytes()).await;
                let _ = stream.write_all(body.as_bytes()).await;
            });
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::services::controller::{BackendStatus, Traffic};

    mod dashboard;

    #[test]
    fn renders_services_backends_and_vrrp() {
        let snap = Snapshot {
            services: vec![ServiceStatus {
                service: "198.18.0.100:80/tcp".into(),
                mode: "dsr".into(),
                scheduler: "maglev".into(),
                vrrp_instance: Some("VI_1".into()),
                active: true,
                backends: vec![BackendStatus {
                    address: "198.18.0.11".parse().unwrap(),
                    port: 80,
                    weight: 1,
                    healthy: false,
                    reason: "connect refused".into(),
                    drained: false,
                    in_pool: false,
                    mac: None,
                    sorry_server: false,
                    etcd_key: None,
                }],
                table: crate::dataplane::balancer::TableChurn::default(),
            }],
            traffic: vec![ServiceTraffic {
                service: "198.18.0.100:80/tcp".into(),
                total: Traffic {
                    packets: 10,
                    bytes: 1000,
                    new_flows: 2,
                    ..Traffic::default()
                },
                backends: [(
                    "198.18.0.11".to_owned(),
                    Traffic {
                        packets: 10,
                        bytes: 1000,
                        new_flows: 2,
                        replies: 9,
                        reply_bytes: 900,
                        refused: 1,
                    },
                )]
                .into(),
                flows_recent: 0,
                flows_off_table: 0,
            }],
            vrrp: vec![InstanceStatus {
                name: "VI_1".into(),
                interface: "eth0".into(),
                vrid: 50,
                state: "MASTER".into(),
                base_priority: 150,
                priority: 150,
                master: None,
                vips: vec!["198.18.0.100/24".into()],
                transitions: 2,
                adverts_accepted: 7,
                rejected: [("bad_ttl".to_owned(), 3)].into(),
            }],
            flows: Some(crate::dataplane::stats::FlowTableUsage {
                capacity: 1 << 20,
                in_use: 5000,
                recent: 700,
                evicted_recent: 4,
                evicted_idle: 90,
                events_lost: 0,
            }),
            sync: None,
            nat: Some(crate::dataplane::nat::Census {
                flows: 12,
                by_state: vec![("ESTABLISHED".into(), 10), ("UDP".into(), 2)],
                orphans: 1,
                expired_total: 30,
            }),
            ..Snapshot::default()
        };
        let text = render(&snap);
        for line in [
            "lb_vip_packets_total{service=\"198.18.0.100:80/tcp\"} 10",
            "lb_backend_bytes_total{service=\"198.18.0.100:80/tcp\",backend=\"198.18.0.11\"} 1000",
            "lb_backend_healthy{service=\"198.18.0.100:80/tcp\",backend=\"198.18.0.11\"} 0",
            "lb_service_active{service=\"198.18.0.100:80/tcp\"} 1",
            "lb_vrrp_state{vrrp_instance=\"VI_1\",state=\"MASTER\"} 1",
            "lb_vrrp_state{vrrp_instance=\"VI_1\",state=\"BACKUP\"} 0",
            "lb_vrrp_priority{vrrp_instance=\"VI_1\"} 150",
            "lb_vrrp_adverts_rejected_total{vrrp_instance=\"VI_1\",cause=\"bad_ttl\"} 3",
            "lb_flows_evicted_total{age=\"recent\"} 4",
            "lb_flows_evicted_total{age=\"idle\"} 90",
            "lb_flows_capacity 1048576",
            "lb_flows_in_use 5000",
            "lb_flows_recent 700",
            "lb_nat_flows{state=\"ESTABLISHED\"} 10",
            "lb_nat_flows{state=\"UDP\"} 2",
            "lb_nat_orphan_entries 1",
            "lb_backend_replies_total{service=\"198.18.0.100:80/tcp\",backend=\"198.18.0.11\"} 9",
            "lb_backend_refused_total{service=\"198.18.0.100:80/tcp\",backend=\"198.18.0.11\"} 1",
            "lb_nat_flows_expired_total 30",
            "# EOF",
        ] {
            assert!(text.contains(line), "missing {line:?} in:\n{text}");
        }
    }

    #[test]
    fn renders_the_program_s_runs_cpu_time_and_table_rewrites() {
        let text = render(&Snapshot {
            services: vec![ServiceStatus {
                service: "198.18.0.100:80/tcp".into(),
                mode: "dsr".into(),
                scheduler: "maglev".into(),
                vrrp_instance: None,
                active: true,
                backends: Vec::new(),
                table: crate::dataplane::balancer::TableChurn {
                    rewrites: 2,
                    slots_changed: 30,
                    slots_necessary: 25,
                    last: Some((100, 20, 20)),
                },
            }],
            program: Some(crate::dataplane::stats::ProgramRuns {
                runs: 1000,
                run_ns: 150_000,
            }),
            cpus: vec![crate::dataplane::stats::CpuTime {
                cpu: 1,
                busy_ns: 5_000_000,
                softirq_ns: 2_000_000,
            }],
            traffic: vec![ServiceTraffic {
                service: "198.18.0.100:80/tcp".into(),
                total: Traffic::default(),
                backends: std::collections::BTreeMap::new(),
                flows_recent: 40,
                flows_off_table: 3,
            }],
            ..Snapshot::default()
        });
        for line in [
            "lb_service_flows_recent{service=\"198.18.0.100:80/tcp\"} 40",
            "lb_service_flows_off_table{service=\"198.18.0.100:80/tcp\"} 3",
            "lb_xdp_program_runs_total 1000",
            "lb_xdp_program_run_nanoseconds_total 150000",
            "lb_cpu_busy_nanoseconds_total{cpu=\"1\"} 5000000",
            "lb_cpu_softirq_nanoseconds_total{cpu=\"1\"} 2000000",
            "lb_table_rewrites_total{service=\"198.18.0.100:80/tcp\"} 2",
            "lb_table_slots_changed_total{service=\"198.18.0.100:80/tcp\"} 30",
            "lb_table_slots_necessary_total{service=\"198.18.0.100:80/tcp\"} 25",
        ] {
            assert!(text.contains(line), "missing {line:?} in:\n{text}");
        }
    }

    #[test]
    fn renders_the_bgp_speaker_sessions_and_vips() {
        let text = render(&Snapshot {
            bgp: Some(crate::bgp::BgpStatus {
                speaker: "BIRD 2.0.12".into(),
                socket: "/run/bird/bird.ctl".into(),
                reachable: true,
                sessions: vec![
                    crate::bgp::bird::Session {
                        name: "uplink".into(),
                        state: "up".into(),
                        info: "Established".into(),
                    },
                    crate::bgp::bird::Session {
                        name: "backup".into(),
                        state: "start".into(),
                        info: "Active".into(),
                    },
                ],
                table: 100,
                announced: vec!["198.18.100.1".parse().unwrap()],
                error: None,
            }),
            ..Snapshot::default()
        });
        for line in [
            "lb_bgp_speaker_up 1",
            "lb_bgp_vips_announced 1",
            "lb_bgp_session_up{session=\"uplink\"} 1",
            "lb_bgp_session_up{session=\"backup\"} 0",
            "lb_bgp_vip_announced{vip=\"198.18.100.1\"} 1",
        ] {
            assert!(text.contains(line), "missing {line:?} in:\n{text}");
        }
    }
}
