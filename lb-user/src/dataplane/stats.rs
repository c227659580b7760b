//! Read the per-CPU counters back, from a running [`Dataplane`](crate::dataplane::loader::Dataplane)
//! or from the pins of another process.

use std::{borrow::Borrow, path::Path};

use aya::maps::{Map, MapData, MapError, PerCpuArray};
use lb_common::stats::{
    ExitCounters, FlowCounters, ProtoClass, STATS_BACKEND_MAP, STATS_EXIT_MAP, STATS_FLOWS_MAP,
    STATS_PROTO_MAP, STATS_VIP_MAP, TrafficCounters, VerdictCounters, exit,
};

/// Counters per protocol class, summed over CPUs, in [`ProtoClass::ALL`] order.
pub type ProtoStats = [VerdictCounters; ProtoClass::COUNT as usize];

/// Errors reading counters.
#[derive(Debug, thiserror::Error)]
pub enum StatsError {
    /// The map is missing from the object.
    #[error("map {0} not found")]
    NoMap(&'static str),
    /// A map operation failed.
    #[error("reading map {map} failed")]
    Map {
        /// The map.
        map: &'static str,
        /// Why.
        #[source]
        source: MapError,
    },
    /// Mapping the connection table's memory failed.
    #[error("mapping the connection table failed")]
    Mmap(#[source] std::io::Error),
}

/// Sum `stats_proto` over CPUs.
///
/// # Errors
/// [`StatsError::Map`] if the map has the wrong type or a lookup fails.
pub fn proto_stats<T: Borrow<MapData>>(
    map: &PerCpuArray<T, VerdictCounters>,
) -> Result<ProtoStats, StatsError> {
    let mut out = ProtoStats::default();
    for class in ProtoClass::ALL {
        let per_cpu = map
            .get(&(class as u32), 0)
            .map_err(|source| StatsError::Map {
                map: STATS_PROTO_MAP,
                source,
            })?;
        out[class as usize] = per_cpu
            .iter()
            .fold(VerdictCounters::default(), |acc, v| acc.add(*v));
    }
    Ok(out)
}

/// Sum `stats_proto` of a loaded object.
///
/// # Errors
/// [`StatsError`].
pub fn proto_stats_of(ebpf: &aya::Ebpf) -> Result<ProtoStats, StatsError> {
    let map = ebpf
        .map(STATS_PROTO_MAP)
        .ok_or(StatsError::NoMap(STATS_PROTO_MAP))?;
    let map = PerCpuArray::try_from(map).map_err(|source| StatsError::Map {
        map: STATS_PROTO_MAP,
        source,
    })?;
    proto_stats(&map)
}

/// Sum `stats_proto` pinned under `pin_dir` by a running `lbd`.
///
/// # Errors
/// [`StatsError`].
pub fn proto_stats_pinned(pin_dir: &Path) -> Result<ProtoStats, StatsError> {
    let map_err = |source| StatsError::Map {
        map: STATS_PROTO_MAP,
        source,
    };
    let data = MapData::from_pin(pin_dir.join(STATS_PROTO_MAP)).map_err(map_err)?;
    let map = PerCpuArray::try_from(Map::PerCpuArray(data)).map_err(map_err)?;
    proto_stats(&map)
}

/// A fixed-width table of the non-zero rows, for logs and the CLI.
#[must_use]
pub fn format_proto_stats(stats: &ProtoStats) -> String {
    let mut out = format!(
        "{:<11} {:>10} {:>10} {:>10} {:>10} {:>10}\n",
        "class", "pass", "drop", "tx", "redirect", "aborted"
    );
    for class in ProtoClass::ALL {
        let c = stats[class as usize];
        if c.total() == 0 {
            continue;
        }
        out.push_str(&format!(
            "{:<11} {:>10} {:>10} {:>10} {:>10} {:>10}\n",
            class.name(),
            c.pass,
            c.drop,
            c.tx,
            c.redirect,
            c.aborted
        ));
    }
    out
}

/// Names of the [`ExitCounters`] fields, in field order (what `bpftool`
/// shows and what `lbctl stats` prints).
pub const EXIT_NAMES: [&str; exit::COUNT] = [
    "pass_not_ip",
    "pass_malformed",
    "pass_not_vip",
    "pass_no_backend",
    "drop_malformed",
    "drop_fragment",
    "drop_no_backend",
    "drop_too_big",
    "tx_dsr",
    "tx_ipip",
    "tx_icmp_too_big",
    "tx_nat",
    "tx_nat_reply",
    "tx_nat_icmp",
    "drop_nat_ports",
    "drop_nat_full",
    "pass_nat_no_entry",
    "aborted",
];

/// The fields of `c` in order, matching [`EXIT_NAMES`].
#[must_use]
pub const fn exit_fields(c: &ExitCounters) -> [u64; exit::COUNT] {
    [
        c.pass_not_ip,
        c.pass_malformed,
        c.pass_not_vip,
        c.pass_no_backend,
        c.drop_malformed,
        c.drop_fragment,
        c.drop_no_backend,
        c.drop_too_big,
        c.tx_dsr,
        c.tx_ipip,
        c.tx_icmp_too_big,
        c.tx_nat,
        c.tx_nat_reply,
        c.tx_nat_icmp,
        c.drop_nat_ports,
        c.drop_nat_full,
        c.pass_nat_no_entry,
        c.aborted,
    ]
}

fn per_cpu_sum<V: aya::Pod + Copy + Default>(
    ebpf: &aya::Ebpf,
    name: &'static str,
    index: u32,
    add: impl Fn(V, V) -> V,
) -> Result<V, StatsError> {
    let map = ebpf.map(name).ok_or(StatsError::NoMap(name))?;
    let map_err = |source| StatsError::Map { map: name, source };
    let map = PerCpuArray::<_, V>::try_from(map).map_err(map_err)?;
    let values = map.get(&index, 0).map_err(map_err)?;
    Ok(values.iter().fold(V::default(), |acc, v| add(acc, *v)))
}

/// How full the connection table is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FlowTableUsage {
    /// Flows it can hold (sets × ways).
    pub capacity: u64,
    /// Ways holding a flow (finished connections stay until evicted).
    pub in_use: u64,
    /// Flows seen within the last [`FlowTableUsage::RECENT`].
    pub recent: u64,
    /// Evictions so far, by how recently the evicted flow was seen.
    pub evicted_recent: u64,
    /// Evictions of flows idle longer.
    pub evicted_idle: u64,
    /// New-flow events for connection sync lost to a full ring buffer.
    #[serde(default)]
    pub events_lost: u64,
}

impl FlowTableUsage {
    /// The window of [`FlowTableUsage::recent`].
    pub const RECENT: std::time::Duration = std::time::Duration::from_secs(10);
}

/// Scan the connection table's directory lines (memory-mapped, read-only;
/// 64 bytes per 8 flows) and read the eviction counters.
///
/// # Errors
/// The map is missing, or mapping or reading it failed.
pub fn flow_table_usage(ebpf: &aya::Ebpf) -> Result<FlowTableUsage, StatsError> {
    use lb_common::flow::{FLOW_SEEN_UNIT_NS, FLOW_WAYS, FlowSet, flow_age, flow_seen};
    let (mem, sets) = map_flow_sets(ebpf, false)?;
    let now = flow_seen(coarse_now_ns());
    let window = (FlowTableUsage::RECENT.as_nanos() as u64 / FLOW_SEEN_UNIT_NS) as u32;
    let mut usage = FlowTableUsage {
        capacity: (sets * FLOW_WAYS) as u64,
        ..FlowTableUsage::default()
    };
    for set in mem.slice::<FlowSet>(sets) {
        for (tag, seen) in set.tags.iter().zip(&set.seen) {
            if *tag != 0 {
                usage.in_use += 1;
                usage.recent += u64::from(flow_age(now, *seen) <= window);
            }
        }
    }
    let evicted = flow_stats_of(ebpf)?;
    usage.evicted_recent = evicted.evicted_recent;
    usage.evicted_idle = evicted.evicted_idle;
    usage.events_lost = evicted.events_lost;
    Ok(usage)
}

/// The connection table's live flows (of `service`), most recently seen
/// first, at most `limit` (0: all), read through a read-only mapping.
///
/// # Errors
/// The map is missing, or mapping it failed.
pub fn flow_list(
    ebpf: &aya::Ebpf,
    translation: &crate::dataplane::flows::Translation,
    nat: Option<(&std::path::Path, &lb_common::nat::Timeouts)>,
    service: Option<&crate::dataplane::balancer::ServiceKey>,
    limit: usize,
) -> Result<crate::dataplane::flows::FlowsReply, StatsError> {
    let (mem, sets) = map_flow_sets(ebpf, false)?;
    let now = coarse_now_ns();
    let nat_flows = match nat {
        Some((pin_dir, timeouts)) => {
            let map = crate::dataplane::nat::open(pin_dir).map_err(|source| StatsError::Map {
                map: lb_common::nat::NAT_MAP,
                source,
            })?;
            let entries = crate::dataplane::nat::snapshot(&map);
            crate::dataplane::nat::statuses(&entries, lb_common::flow::flow_seen(now), timeouts)
        }
        None => Vec::new(),
    };
    Ok(crate::dataplane::flows::list(
        mem.slice::<lb_common::flow::FlowSet>(sets),
        nat_flows,
        translation,
        now,
        service,
        limit,
    ))
}

/// The connection table's sets mapped into our memory (read-write when
/// `writable`), and how many there are.
///
/// # Errors
/// The map is missing, or reading its size or mapping it failed.
pub fn map_flow_sets(
    ebpf: &aya::Ebpf,
    writable: bool,
) -> Result<(crate::dataplane::bpfmem::ArrayMemory, usize), StatsError> {
    use lb_common::flow::{FLOWS_MAP, FlowSet};
    let Some(aya::maps::Map::Array(map)) = ebpf.map(FLOWS_MAP) else {
        return Err(StatsError::NoMap(FLOWS_MAP));
    };
    let sets = map
        .info()
        .map_err(|source| StatsError::Map {
            map: FLOWS_MAP,
            source,
        })?
        .max_entries() as usize;
    let mem =
        crate::dataplane::bpfmem::ArrayMemory::map(map, sets * size_of::<FlowSet>(), writable)
            .map_err(StatsError::Mmap)?;
    Ok((mem, sets))
}

/// The XDP program's clock (`bpf_ktime_get_coarse_ns`):
/// `CLOCK_MONOTONIC_COARSE`, in nanoseconds.
#[must_use]
pub fn coarse_now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec we pass.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &raw mut ts) };
    u64::try_from(ts.tv_sec).unwrap_or(0) * 1_000_000_000 + u64::try_from(ts.tv_nsec).unwrap_or(0)
}

/// Connection-table evictions summed over CPUs.
///
/// # Errors
/// As [`exit_stats_of`].
pub fn flow_stats_of(ebpf: &aya::Ebpf) -> Result<FlowCounters, StatsError> {
    per_cpu_sum(ebpf, STATS_FLOWS_MAP, 0, FlowCounters::add)
}

/// Exit-reason counters summed over CPUs.
///
/// # Errors
/// [`StatsError`].
pub fn exit_stats_of(ebpf: &aya::Ebpf) -> Result<ExitCounters, StatsError> {
    per_cpu_sum(ebpf, STATS_EXIT_MAP, 0, ExitCounters::add)
}

/// Traffic of VIP `id` (one service), summed over CPUs.
///
/// # Errors
/// [`StatsError`].
pub fn vip_stats_of(ebpf: &aya::Ebpf, id: u32) -> Result<TrafficCounters, StatsError> {
    per_cpu_sum(ebpf, STATS_VIP_MAP, id, TrafficCounters::add)
}

/// Traffic through backend slot `index`, summed over CPUs: one service's
/// traffic to one backend (a slot serves one (service, backend) pair; see
/// [`Balancer::backends`](crate::dataplane::balancer::Balancer::backends)).
///
/// # Errors
/// [`StatsError`].
pub fn backend_stats_of(ebpf: &aya::Ebpf, index: u32) -> Result<TrafficCounters, StatsError> {
    per_cpu_sum(ebpf, STATS_BACKEND_MAP, index, TrafficCounters::add)
}

/// Flows seen in the last 10 s, and how many of them are pinned to a
/// backend other than their service's table would choose for them now: the
/// flows a failover to a node without connection sync would move (and
/// reset). By VIP id; services with client affinity are left out (their
/// templates, not the table, choose).
///
/// # Errors
/// The connection table cannot be mapped.
pub fn flows_off_table<S: std::hash::BuildHasher>(
    ebpf: &aya::Ebpf,
    tables: &std::collections::HashMap<u32, crate::dataplane::balancer::LiveTable, S>,
    entry: impl Fn(&crate::dataplane::balancer::LiveTable, u32) -> Option<u32>,
) -> Result<std::collections::HashMap<u32, (u64, u64)>, StatsError> {
    use lb_common::flow::{FLOW_SEEN_UNIT_NS, FlowSet, flow_age, flow_seen};
    use lb_common::hash::{flow_hash, maglev_slot, source_hash};
    let (mem, sets) = map_flow_sets(ebpf, false)?;
    let now = flow_seen(coarse_now_ns());
    let window = (FlowTableUsage::RECENT.as_nanos() as u64 / FLOW_SEEN_UNIT_NS) as u32;
    let mut out = std::collections::HashMap::new();
    for set in mem.slice::<FlowSet>(sets) {
        for (i, way) in set.ways.iter().enumerate() {
            if set.tags[i] == 0 || flow_age(now, set.seen[i]) > window {
                continue;
            }
            let hash = flow_hash(&way.key);
            let Some(state) = way.valid_state(hash) else {
                continue;
            };
            let Some(t) = tables.get(&state.vip_id) else {
                continue;
            };
            if t.generation != state.vip_generation || t.persistent || t.size == 0 {
                continue;
            }
            let h = if t.source_hash {
                source_hash(&way.key.src)
            } else {
                hash
            };
            let choice = entry(t, maglev_slot(h, t.size));
            let counts: &mut (u64, u64) = out.entry(state.vip_id).or_default();
            counts.0 += 1;
            counts.1 += u64::from(choice != Some(state.backend));
        }
    }
    Ok(out)
}

/// The balancer program's own run statistics: runs and time in it, which
/// the kernel keeps while `kernel.bpf_stats_enabled` is 1 (else they stay
/// 0).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProgramRuns {
    /// Runs so far.
    pub runs: u64,
    /// Time in the program so far, ns.
    pub run_ns: u64,
}

/// [`ProgramRuns`] of the balancer program in `ebpf`; `None` when the
/// kernel does not say.
#[must_use]
pub fn program_runs(ebpf: &aya::Ebpf) -> Option<ProgramRuns> {
    let program = ebpf.program(crate::dataplane::loader::PROGRAM)?;
    let info = program.info().ok()?;
    Some(ProgramRuns {
        runs: info.run_count(),
        run_ns: u64::try_from(info.run_time().as_nanos()).unwrap_or(u64::MAX),
    })
}

/// One CPU's time so far (`/proc/stat`), ns: busy (all but idle, iowait
/// and steal) and in softirq (where XDP runs on a NIC's receive path).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuTime {
    /// The CPU's number.
    pub cpu: u32,
    /// Busy, ns.
    pub busy_ns: u64,
    /// In softirq, ns.
    pub softirq_ns: u64,
}

/// Every CPU's [`CpuTime`], from `/proc/stat` text.
#[must_use]
pub fn parse_cpu_times(text: &str, ticks_per_s: u64) -> Vec<CpuTime> {
    let ns = |ticks: u64| ticks.saturating_mul(1_000_000_000) / ticks_per_s.max(1);
    text.lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            let cpu: u32 = words.next()?.strip_prefix("cpu")?.parse().ok()?;
            // user nice system idle iowait irq softirq steal ...
            let v: Vec<u64> = words.take(8).filter_map(|w| w.parse().ok()).collect();
            // Not busy: idle, iowait, steal.
            let [user, nice, system, _idle, _iowait, irq, softirq, _steal] = v[..] else {
                return None;
            };
            Some(CpuTime {
                cpu,
                busy_ns: ns(user + nice + system + irq + softirq),
                softirq_ns: ns(softirq),
            })
        })
        .collect()
}

/// This machine's [`CpuTime`]s (empty when `/proc/stat` cannot be read).
#[must_use]
pub fn cpu_times() -> Vec<CpuTime> {
    // SAFETY: sysconf has no preconditions.
    let hz = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).unwrap_or(100);
    std::fs::read_to_string("/proc/stat")
        .map(|t| parse_cpu_times(&t, hz))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_times_from_proc_stat() {
        let text = "cpu  100 0 50 1000 5 0 20 3 0 0\ncpu0 60 0 30 500 2 0 15 1 0 0\ncpu1 40 0 20 500 3 1 5 2 0 0\nintr 1\n";
        let t = parse_cpu_times(text, 100);
        assert_eq!(t.len(), 2);
        // cpu1: user 40 + system 20 + irq 1 + softirq 5 = 66 ticks.
        assert_eq!(
            t[1],
            CpuTime {
                cpu: 1,
                busy_ns: 660_000_000,
                softirq_ns: 50_000_000
            }
        );
        assert!(!cpu_times().is_empty());
    }
}
