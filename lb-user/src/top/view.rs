//! What `lbctl top` shows, as plain data: lbd's answers and the rates
//! joined into rows of text ([`Screen`]), and the state kept from one
//! refresh to the next ([`Top`]). No terminal here: `render` draws a
//! [`Screen`], and the tests read one.

use std::time::{Duration, Instant};

use crate::api::control::{InstanceStatus, ServiceStatus, ServiceTraffic, StatusReply};

use super::rates::{Rates, Sample, ServiceRates, human, rates};

/// lbd's answers of one refresh.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// `status`: pid, router id, sync.
    pub status: StatusReply,
    /// `backends`: services with their backends' health, drain, pool.
    pub services: Vec<ServiceStatus>,
    /// `vrrp`: instances with state and priority.
    pub vrrp: Vec<InstanceStatus>,
    /// `stats`: the counters, and when they were read; `None` when lbd
    /// runs no data plane (it has no counters then).
    pub traffic: Option<(Instant, Vec<ServiceTraffic>)>,
}

/// One backend's line.
#[derive(Debug, Clone, PartialEq)]
#[allow(
    clippy::struct_excessive_bools,
    reason = "independent flags of lbd's BackendStatus, each a column of its own"
)]
pub struct BackendRow {
    /// `ADDRESS:PORT`.
    pub address: String,
    /// Its weight.
    pub weight: u32,
    /// Health check verdict.
    pub healthy: bool,
    /// Drained by the operator (`lbctl drain`).
    pub drained: bool,
    /// In the data plane's pool (a drained backend stays in it, for its
    /// established flows).
    pub in_pool: bool,
    /// The service's sorry server.
    pub sorry: bool,
    /// This service's traffic to it.
    pub rates: Rates,
}

/// One service's line, and its backends'.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceRow {
    /// `VIP:PORT/PROTO`.
    pub service: String,
    /// `dsr`, `ipip`, `nat`, `fullnat`.
    pub mode: String,
    /// Forwarding here now.
    pub active: bool,
    /// The VIP's traffic.
    pub rates: Rates,
    /// Its backends, in lbd's order.
    pub backends: Vec<BackendRow>,
}

/// One VRRP instance's line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VrrpRow {
    /// Instance name.
    pub name: String,
    /// `INIT`, `BACKUP`, `MASTER`, `FAULT`.
    pub state: String,
    /// Priority now (after tracking) / configured.
    pub priority: String,
    /// The master heard (in BACKUP), or `-`.
    pub master: String,
    /// Its virtual addresses.
    pub vips: String,
}

/// Everything on screen.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Screen {
    /// `lbd ROUTER_ID (pid N)`, or the socket while nothing was heard.
    pub title: String,
    /// Why this refresh has no answer (`lbd unreachable: ...`); the rows
    /// are then the last ones seen, without rates.
    pub error: Option<String>,
    /// A note on the counters (no data plane).
    pub note: Option<String>,
    /// Services and their backends.
    pub services: Vec<ServiceRow>,
    /// VRRP instances.
    pub vrrp: Vec<VrrpRow>,
    /// Connection sync's lag and peers, with `[sync]`.
    pub sync: Option<String>,
}

/// The services table's header.
pub const SERVICE_HEADER: [&str; 9] = [
    "SERVICE / BACKEND",
    "MODE",
    "HEALTH",
    "DRAINED",
    "IN POOL",
    "WEIGHT",
    "PKTS/S",
    "BYTES/S",
    "FLOWS/S",
];

/// The VRRP table's header.
pub const VRRP_HEADER: [&str; 5] = ["VRRP INSTANCE", "STATE", "PRIO", "MASTER HEARD", "VIPS"];

impl Screen {
    /// The services table's cells ([`SERVICE_HEADER`]): each service, then
    /// its backends indented by two spaces.
    #[must_use]
    pub fn service_cells(&self) -> Vec<[String; 9]> {
        let mut rows = Vec::new();
        for s in &self.services {
            let in_pool = s.backends.iter().filter(|b| b.in_pool).count();
            rows.push([
                s.service.clone(),
                s.mode.clone(),
                if s.active { "active" } else { "standby" }.into(),
                "-".into(),
                format!("{in_pool}/{}", s.backends.len()),
                "-".into(),
                human(s.rates.packets),
                human(s.rates.bytes),
                human(s.rates.new_flows),
            ]);
            for b in &s.backends {
                let yes_no = |v: bool| if v { "yes" } else { "no" }.to_owned();
                rows.push([
                    format!("  {}", b.address),
                    if b.sorry { "sorry" } else { "" }.into(),
                    if b.healthy { "up" } else { "down" }.into(),
                    yes_no(b.drained),
                    yes_no(b.in_pool),
                    b.weight.to_string(),
                    human(b.rates.packets),
                    human(b.rates.bytes),
                    human(b.rates.new_flows),
                ]);
            }
        }
        rows
    }

    /// The VRRP table's cells ([`VRRP_HEADER`]).
    #[must_use]
    pub fn vrrp_cells(&self) -> Vec<[String; 5]> {
        self.vrrp
            .iter()
            .map(|v| {
                [
                    v.name.clone(),
                    v.state.clone(),
                    v.priority.clone(),
                    v.master.clone(),
                    v.vips.clone(),
                ]
            })
            .collect()
    }
}

/// A duration in microseconds for people: `850 us`, `12.5 ms`, `3.2 s`.
#[must_use]
pub fn micros(us: u64) -> String {
    if us < 1000 {
        format!("{us} us")
    } else if us < 1_000_000 {
        format!("{:.1} ms", us as f64 / 1e3)
    } else {
        format!("{:.1} s", us as f64 / 1e6)
    }
}

/// The sync line: lag of the last flow received and the largest, and
/// when each peer was last heard.
fn sync_line(s: &crate::sync::node::SyncStatus) -> String {
    let lag = if s.flows_received == 0 {
        "no flows received yet".to_owned()
    } else {
        format!(
            "lag {} (max {}), {} flows received",
            micros(s.lag_last_us),
            micros(s.lag_max_us),
            s.flows_received
        )
    };
    let peers: Vec<String> = s
        .peers
        .iter()
        .map(|p| {
            p.heard_ms_ago.map_or_else(
                || format!("{} never heard", p.address),
                |ms| format!("{} heard {ms} ms ago", p.address),
            )
        })
        .collect();
    format!(
        "sync: {lag}; bulk {}; peers: {}",
        s.bulk,
        if peers.is_empty() {
            "none".to_owned()
        } else {
            peers.join(", ")
        }
    )
}

/// The screen for `snapshot`, with `rates` (per service) where known.
#[must_use]
pub fn screen(snapshot: &Snapshot, rates: &[ServiceRates]) -> Screen {
    let services = snapshot
        .services
        .iter()
        .map(|s| {
            let r = rates.iter().find(|r| r.service == s.service);
            ServiceRow {
                service: s.service.clone(),
                mode: s.mode.clone(),
                active: s.active,
                rates: r.map_or(Rates::NONE, |r| r.total),
                backends: s
                    .backends
                    .iter()
                    .map(|b| BackendRow {
                        address: std::net::SocketAddr::new(b.address, b.port).to_string(),
                        weight: b.weight,
                        healthy: b.healthy,
                        drained: b.drained,
                        in_pool: b.in_pool,
                        sorry: b.sorry_server,
                        rates: r
                            .and_then(|r| r.backends.get(&b.address.to_string()))
                            .copied()
                            .unwrap_or(Rates::NONE),
                    })
                    .collect(),
            }
        })
        .collect();
    let vrrp = snapshot
        .vrrp
        .iter()
        .map(|i| VrrpRow {
            name: i.name.clone(),
            state: i.state.clone(),
            priority: format!("{}/{}", i.priority, i.base_priority),
            master: i.master.map_or_else(|| "-".into(), |m| m.to_string()),
            vips: i.vips.join(","),
        })
        .collect();
    Screen {
        title: format!(
            "lbd {} (pid {})",
            snapshot.status.router_id, snapshot.status.pid
        ),
        error: None,
        note: snapshot
            .traffic
            .is_none()
            .then(|| "no data plane runs in this lbd: no traffic counters".to_owned()),
        services,
        vrrp,
        sync: snapshot.status.sync.as_ref().map(sync_line),
    }
}

/// `lbctl top`'s state between refreshes: the last counters (for the
/// rates) and the last screen (shown, without rates, while lbd cannot be
/// reached).
#[derive(Debug, Default)]
pub struct Top {
    before: Option<Sample>,
    last: Option<Screen>,
}

impl Top {
    /// The screen after a refresh: lbd's answers, or why there are none.
    ///
    /// After a failed refresh the next good one has no rates yet (the
    /// counters are compared across one interval, never across an
    /// outage).
    pub fn update(&mut self, result: Result<Snapshot, String>) -> Screen {
        match result {
            Ok(snapshot) => {
                let rates = if let Some((at, traffic)) = &snapshot.traffic {
                    let now = Sample::new(*at, traffic.clone());
                    let r = rates(self.before.as_ref(), &now);
                    self.before = Some(now);
                    r
                } else {
                    self.before = None;
                    Vec::new()
                };
                let s = screen(&snapshot, &rates);
                self.last = Some(s.clone());
                s
            }
            Err(e) => {
                self.before = None;
                let mut s = self.last.clone().unwrap_or_default();
                for service in &mut s.services {
                    service.rates = Rates::NONE;
                    for b in &mut service.backends {
                        b.rates = Rates::NONE;
                    }
                }
                s.error = Some(format!("lbd unreachable: {e}"));
                s
            }
        }
    }
}

/// `--interval` as people write it in the title: `1s`, `500ms`, `2.5s`.
#[must_use]
pub fn interval_text(interval: Duration) -> String {
    if interval.subsec_millis() == 0 {
        format!("{}s", interval.as_secs())
    } else if interval < Duration::from_secs(1) {
        format!("{}ms", interval.as_millis())
    } else {
        format!("{:.1}s", interval.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::api::control::{BackendStatus, Traffic, VrrpBrief};

    fn status() -> StatusReply {
        StatusReply {
            router_id: "lb-test".into(),
            pid: 42,
            data_plane: None,
            services: 1,
            services_active: 1,
            backends_healthy: 1,
            backends: 2,
            vrrp: vec![VrrpBrief {
                name: "VI_1".into(),
                state: "MASTER".into(),
            }],
            sync: None,
            bgp: None,
        }
    }

    fn backend(addr: &str, healthy: bool, drained: bool) -> BackendStatus {
        BackendStatus {
            address: addr.parse().unwrap(),
            port: 80,
            weight: 1,
            healthy,
            reason: String::new(),
            drained,
            in_pool: healthy,
            mac: None,
            sorry_server: false,
            etcd_key: None,
        }
    }

    fn instance() -> InstanceStatus {
        InstanceStatus {
            name: "VI_1".into(),
            interface: "eth0".into(),
            vrid: 50,
            state: "MASTER".into(),
            base_priority: 150,
            priority: 140,
            master: None,
            vips: vec!["198.18.0.100/24".into()],
            transitions: 2,
            adverts_accepted: 0,
            rejected: BTreeMap::new(),
        }
    }

    fn snapshot(at: Instant, packets: u64, drained: bool) -> Snapshot {
        let t = |p: u64| Traffic {
            packets: p,
            bytes: p * 100,
            new_flows: p / 10,
            ..Traffic::default()
        };
        Snapshot {
            status: status(),
            services: vec![ServiceStatus {
                service: "198.18.0.100:80/tcp".into(),
                mode: "dsr".into(),
                scheduler: "maglev".into(),
                vrrp_instance: Some("VI_1".into()),
                active: true,
                backends: vec![
                    backend("198.18.0.11", true, drained),
                    backend("198.18.0.12", false, false),
                ],
                table: crate::dataplane::balancer::TableChurn::default(),
            }],
            vrrp: vec![instance()],
            traffic: Some((
                at,
                vec![ServiceTraffic {
                    service: "198.18.0.100:80/tcp".into(),
                    total: t(packets),
                    backends: [("198.18.0.11".to_owned(), t(packets))].into(),
                    flows_recent: 0,
                    flows_off_table: 0,
                }],
            )),
        }
    }

    #[test]
    fn rows_show_health_drain_pool_and_rates() {
        let t0 = Instant::now();
        let mut top = Top::default();
        let first = top.update(Ok(snapshot(t0, 1000, false)));
        let cells = first.service_cells();
        assert_eq!(
            cells[0],
            [
                "198.18.0.100:80/tcp",
                "dsr",
                "active",
                "-",
                "1/2",
                "-",
                "-",
                "-",
                "-"
            ],
            "no rates before a second sample"
        );
        let second = top.update(Ok(snapshot(t0 + Duration::from_secs(2), 5000, true)));
        let cells = second.service_cells();
        assert_eq!(
            cells[0],
            [
                "198.18.0.100:80/tcp",
                "dsr",
                "active",
                "-",
                "1/2",
                "-",
                "2.0k",
                "200k",
                "200"
            ]
        );
        assert_eq!(
            cells[1],
            [
                "  198.18.0.11:80",
                "",
                "up",
                "yes",
                "yes",
                "1",
                "2.0k",
                "200k",
                "200"
            ]
        );
        // No counters for .12 (not in the pool): no rate, not zero.
        assert_eq!(
            cells[2],
            [
                "  198.18.0.12:80",
                "",
                "down",
                "no",
                "no",
                "1",
                "-",
                "-",
                "-"
            ]
        );
        assert_eq!(
            second.vrrp_cells(),
            [["VI_1", "MASTER", "140/150", "-", "198.18.0.100/24"]]
        );
        assert_eq!(second.title, "lbd lb-test (pid 42)");
        assert_eq!(second.error, None);
        assert_eq!(second.sync, None);
    }

    /// lbd gone: the last rows stay, without rates, under the error; back
    /// again: no rate for one interval (not the average over the outage).
    #[test]
    fn unreachable_keeps_the_rows_and_restarts_the_rates() {
        let t0 = Instant::now();
        let mut top = Top::default();
        top.update(Ok(snapshot(t0, 1000, false)));
        top.update(Ok(snapshot(t0 + Duration::from_secs(1), 2000, false)));
        let down = top.update(Err("connection refused".into()));
        assert_eq!(
            down.error.as_deref(),
            Some("lbd unreachable: connection refused")
        );
        assert_eq!(down.services.len(), 1);
        assert_eq!(down.service_cells()[0][6], "-");
        let back = top.update(Ok(snapshot(t0 + Duration::from_secs(9), 50, false)));
        assert_eq!(back.error, None);
        assert_eq!(back.service_cells()[0][6], "-");
        let next = top.update(Ok(snapshot(t0 + Duration::from_secs(10), 150, false)));
        assert_eq!(next.service_cells()[0][6], "100");
    }

    #[test]
    fn unreachable_from_the_start_is_an_empty_screen_with_the_error() {
        let s = Top::default().update(Err("no such file".into()));
        assert!(s.services.is_empty());
        assert_eq!(s.error.as_deref(), Some("lbd unreachable: no such file"));
    }

    #[test]
    fn without_a_data_plane_a_note_and_no_rates() {
        let mut snap = snapshot(Instant::now(), 10, false);
        snap.traffic = None;
        let s = Top::default().update(Ok(snap));
        assert!(s.note.is_some());
        assert_eq!(s.service_cells()[0][6], "-");
    }

    #[test]
    fn sync_line_shows_lag_and_peers() {
        let mut snap = snapshot(Instant::now(), 10, false);
        snap.status.sync = Some(crate::sync::node::SyncStatus {
            peers: vec![crate::sync::node::PeerStatus {
                address: "198.18.0.3:8848".into(),
                heard_ms_ago: Some(120),
                bulk_done: true,
                bulk_flows: 0,
                heard_at: None,
            }],
            bulk: "done".into(),
            flows_received: 7,
            lag_last_us: 850,
            lag_max_us: 12_500,
            ..Default::default()
        });
        let s = screen(&snap, &[]);
        assert_eq!(
            s.sync.as_deref(),
            Some(
                "sync: lag 850 us (max 12.5 ms), 7 flows received; bulk done; peers: 198.18.0.3:8848 heard 120 ms ago"
            )
        );
    }

    #[test]
    fn durations_for_people() {
        assert_eq!(micros(0), "0 us");
        assert_eq!(micros(999), "999 us");
        assert_eq!(micros(1500), "1.5 ms");
        assert_eq!(micros(3_200_000), "3.2 s");
        assert_eq!(interval_text(Duration::from_secs(1)), "1s");
        assert_eq!(interval_text(Duration::from_millis(500)), "500ms");
        assert_eq!(interval_text(Duration::from_millis(2500)), "2.5s");
    }
}
