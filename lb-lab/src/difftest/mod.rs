//! Differential testing of the XDP program against [`crate::model`]:
//! every frame from [`frames::Gen`] goes through `BPF_PROG_TEST_RUN` and
//! through the model, and the verdict, the exit reason counted and the
//! frame that leaves must agree. Every [`Options::check_every`] frames
//! (and at the end) the tables are compared too (the NAT table's keys and
//! translations, the templates, every connection-table set the model
//! holds, ignoring only the directory's last-seen times) and the
//! counters (per protocol class and verdict, per VIP, per backend,
//! evictions); then both sides' tables are emptied so they never fill
//! (see the model's documentation for why they must not).
//!
//! Run by `cargo xtask fuzz --minutes N` (`lb-lab fuzz`) and, bounded,
//! by the kernel test `tests/differential.rs`. Needs root (BPF).

pub mod frames;

use std::{
    collections::{HashMap, HashSet},
    fmt::Write as _,
    net::IpAddr,
    time::{Duration, Instant},
};

use aya::{
    Ebpf,
    maps::{HashMap as BpfHashMap, MapData, PerCpuArray},
    programs::Xdp,
};
use lb_common::{
    flow::{FlowKey, FlowSet},
    nat::{NAT_MAP, NatEntry},
    persist::{PERSIST_MAP, PersistKey, Persisted},
    stats::{ProtoClass, STATS_PROTO_MAP, VerdictCounters, exit},
};
use lb_user::dataplane::{
    balancer::{
        BackendSpec, Balancer, EbpfMaps, Mode, NoBackend, Persistence, Protocol, ServiceKey,
        ServiceSpec,
    },
    loader::PROGRAM,
    stats,
};

use crate::model::{Model, Outcome, mirror::Mirror};

use self::frames::{Gen, Target};

/// What to run.
#[derive(Clone, Debug)]
pub struct Options {
    /// Seed of the frame generator.
    pub seed: u64,
    /// Stop after this many frames...
    pub frames: u64,
    /// ...or after this long, whichever comes first.
    pub duration: Duration,
    /// Compare tables and counters (and empty the tables) this often.
    pub check_every: u64,
    /// Print progress this often (0: never).
    pub progress_every: Duration,
}

/// What a run found.
#[derive(Debug, Default)]
pub struct Report {
    /// Frames run through both.
    pub frames: u64,
    /// Frames whose verdict, reason or output differed.
    pub mismatches: u64,
    /// Table or counter comparisons that differed.
    pub state_mismatches: u64,
    /// Frames the model could not predict (a set or table filled).
    pub unpredictable: u64,
    /// Frames per exit reason (the model's).
    pub reasons: [u64; exit::COUNT],
    /// The first few differences, described.
    pub examples: Vec<String>,
    /// Wall time.
    pub elapsed: Duration,
}

impl Report {
    /// The run found nothing.
    #[must_use]
    pub const fn clean(&self) -> bool {
        self.mismatches == 0 && self.state_mismatches == 0
    }

    /// A summary table: counts by exit reason, then the differences.
    #[must_use]
    pub fn summary(&self) -> String {
        let mut s = String::new();
        let rate = self.frames as f64 / self.elapsed.as_secs_f64().max(1e-9);
        let _ = writeln!(
            s,
            "frames {}  mismatches {}  state mismatches {}  unpredictable {}  ({:.1} s, {rate:.0} frames/s)",
            self.frames,
            self.mismatches,
            self.state_mismatches,
            self.unpredictable,
            self.elapsed.as_secs_f64()
        );
        for (name, n) in stats::EXIT_NAMES.iter().zip(self.reasons) {
            let _ = writeln!(s, "  {name:<20} {n:>12}");
        }
        for e in &self.examples {
            let _ = writeln!(s, "{e}");
        }
        s
    }
}

#[allow(clippy::too_many_lines, reason = "one table of services, a row each")]
/// The services frames are aimed at: each mode, both families, TCP and
/// UDP, a port-0 service, source hashing, persistence, a drained
/// backend, and services without backends (dropped and passed).
fn services() -> Vec<(ServiceKey, ServiceSpec, Vec<BackendSpec>)> {
    let ip = |s: &str| s.parse::<IpAddr>().expect("an address");
    let backends = |base: &str, n: u8, port: u16, snat: Option<&str>| {
        (1..=n)
            .map(|i| {
                let addr = match ip(base) {
                    IpAddr::V4(a) => {
                        let mut o = a.octets();
                        o[3] = i;
                        IpAddr::from(o)
                    }
                    IpAddr::V6(a) => {
                        let mut o = a.octets();
                        o[15] = i;
                        IpAddr::from(o)
                    }
                };
                BackendSpec {
                    addr,
                    weight: u32::from(!(i == 3 && n == 4)),
                    mac: [0x02, 0xbe, 0, 0, o3(base), i],
                    port,
                    snat: snat.map(ip),
                    arm: 0,
                }
            })
            .collect::<Vec<_>>()
    };
    let key = |vip: &str, port: u16, proto: Protocol| ServiceKey {
        vip: ip(vip),
        port,
        proto,
    };
    let spec = |mode: Mode| ServiceSpec {
        mode,
        ring_size: 251,
        ..ServiceSpec::default()
    };
    let persist = Some(Persistence {
        timeout_s: 86_400,
        prefix: 120,
    });
    let (tcp, udp) = (Protocol::Tcp, Protocol::Udp);
    vec![
        (
            key("198.18.0.10", 80, tcp),
            spec(Mode::Dsr),
            backends("198.18.1.0", 4, 0, None),
        ),
        (
            key("198.18.0.10", 53, udp),
            ServiceSpec {
                source_hash: true,
                ..spec(Mode::Dsr)
            },
            backends("198.18.1.0", 3, 0, None),
        ),
        (
            key("198.18.0.11", 0, tcp),
            spec(Mode::Ipip),
            backends("198.18.4.0", 3, 0, None),
        ),
        (
            key("198.18.0.12", 443, tcp),
            ServiceSpec {
                persistence: persist,
                ..spec(Mode::Ipip)
            },
            backends("198.18.4.0", 3, 0, None),
        ),
        (
            key("198.18.0.13", 80, tcp),
            spec(Mode::Nat),
            backends("198.18.2.0", 3, 8080, None),
        ),
        (
            key("198.18.0.13", 53, udp),
            spec(Mode::Nat),
            backends("198.18.2.0", 3, 0, None),
        ),
        (
            key("198.18.0.14", 80, tcp),
            ServiceSpec {
                persistence: persist,
                ..spec(Mode::Fullnat)
            },
            backends("198.18.3.0", 4, 8080, Some("198.18.3.254")),
        ),
        (
            key("198.18.0.14", 53, udp),
            spec(Mode::Fullnat),
            backends("198.18.3.0", 2, 5353, Some("198.18.3.254")),
        ),
        (key("198.18.0.15", 80, tcp), spec(Mode::Dsr), Vec::new()),
        (
            key("198.18.0.16", 80, tcp),
            ServiceSpec {
                on_no_backend: NoBackend::Pass,
                ..spec(Mode::Fullnat)
            },
            Vec::new(),
        ),
        (
            key("2001:db8::10", 80, tcp),
            spec(Mode::Dsr),
            backends("2001:db8:1::", 3, 0, None),
        ),
        (
            key("2001:db8::11", 53, udp),
            spec(Mode::Ipip),
            backends("2001:db8:4::", 3, 0, None),
        ),
        (
            key("2001:db8::13", 80, tcp),
            spec(Mode::Nat),
            backends("2001:db8:2::", 3, 0, None),
        ),
        (
            key("2001:db8::14", 53, udp),
            spec(Mode::Fullnat),
            backends("2001:db8:3::", 3, 0, Some("2001:db8:3::fe")),
        ),
        (
            key("2001:db8::14", 80, tcp),
            ServiceSpec {
                persistence: persist,
                ..spec(Mode::Fullnat)
            },
            backends("2001:db8:3::", 4, 8080, Some("2001:db8:3::fe")),
        ),
    ]
}

/// A byte of an address's text, to tell backends' MACs apart.
fn o3(base: &str) -> u8 {
    base.bytes()
        .fold(0u8, |a, b| a.wrapping_mul(31).wrapping_add(b))
}

/// The program, its maps, the model and the balancer that configured both.
struct Rig {
    ebpf: Ebpf,
    _balancer: Balancer<Mirror<EbpfMaps>>,
    model: Model,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn rig() -> Result<(Rig, Vec<Target>), BoxError> {
    let mut ebpf = Ebpf::load(lb_user::EBPF_OBJ)?;
    let program: &mut Xdp = ebpf.program_mut(PROGRAM).ok_or("no program")?.try_into()?;
    program.load()?;
    let (maps, view) = Mirror::new(EbpfMaps::take(&mut ebpf)?);
    let mut balancer = Balancer::new(maps);
    balancer.set_config(&lb_common::config::Config {
        ipip_src_v4_be: u32::from_ne_bytes([198, 18, 255, 0]),
        ipip_src_v4_mask_be: u32::from_ne_bytes([0, 0, 0, 255]),
        ipip_src_v6: [
            0x20, 0x01, 0x0d, 0xb8, 0, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ],
        ipip_src_v6_mask_be: u32::from_ne_bytes([0, 0, 0xff, 0xff]),
        mtu: 1500,
        // A small range, so that fullnat runs out of ports now and then.
        snat_port_min: 40_000,
        snat_ports: 48,
        ..lb_common::config::Config::default()
    })?;
    let mut targets = Vec::new();
    for (key, spec, backends) in services() {
        balancer.upsert_service(key, spec)?;
        balancer.set_backends(&key, &backends)?;
        targets.push(Target {
            vip: key.vip,
            port: key.port,
            proto: key.proto.number(),
        });
    }
    let (_, sets) = stats::map_flow_sets(&ebpf, false)?;
    let nat_entries = match ebpf.map(NAT_MAP) {
        Some(aya::maps::Map::HashMap(m)) => m.info()?.max_entries() as usize,
        _ => return Err("no NAT map".into()),
    };
    let model = Model::new(view, u32::try_from(sets)?, nat_entries);
    Ok((
        Rig {
            ebpf,
            _balancer: balancer,
            model,
        },
        targets,
    ))
}

/// Run the differential test.
///
/// # Errors
/// The program does not load or a map cannot be read: not a finding, a
/// broken setup.
pub fn run(opts: &Options) -> Result<Report, BoxError> {
    let (mut rig, targets) = rig()?;
    let mut frames = Gen::new(opts.seed, targets);
    let mut report = Report::default();
    let start = Instant::now();
    let mut last_progress = start;
    let mut baseline = Baseline::read(&rig.ebpf)?;
    let mut exits = stats::exit_fields(&stats::exit_stats_of(&rig.ebpf)?);
    while report.frames < opts.frames && start.elapsed() < opts.duration {
        let frame = frames.frame();
        let (verdict, out) = crate::testrun::run(&rig.ebpf, &frame);
        let after = stats::exit_fields(&stats::exit_stats_of(&rig.ebpf)?);
        let want = rig.model.run(&frame);
        report.frames += 1;
        report.reasons[want.reason.min(exit::COUNT - 1)] += 1;
        if want.reason == exit::TX_NAT
            && let Some(key) = reply_key_of(&rig.model, &frame)
        {
            frames.saw_reply_key(key);
        }
        if want.unpredictable {
            report.unpredictable += 1;
        }
        let bumped: Vec<usize> = (0..exit::COUNT).filter(|&i| after[i] != exits[i]).collect();
        exits = after;
        if !want.unpredictable
            && let Some(why) = differ(&want, verdict, &bumped, &out)
        {
            report.mismatches += 1;
            if report.examples.len() < 10 {
                report.examples.push(format!(
                    "MISMATCH at frame {}: {why}\n  input  {}\n  kernel {}\n  model  {}",
                    report.frames,
                    hex(&frame),
                    hex(&out),
                    hex(&want.frame)
                ));
            }
        }
        if want.unpredictable || report.frames.is_multiple_of(opts.check_every) {
            check_state(&mut rig, &baseline, &mut report, !want.unpredictable)?;
            frames.forget();
            baseline = Baseline::read(&rig.ebpf)?;
            rig.model.counters = crate::model::Counters::default();
        }
        if !opts.progress_every.is_zero() && last_progress.elapsed() >= opts.progress_every {
            last_progress = Instant::now();
            eprintln!(
                "difftest: {} frames, {} mismatches, {} state mismatches, {:.0} s",
                report.frames,
                report.mismatches,
                report.state_mismatches,
                start.elapsed().as_secs_f64()
            );
        }
    }
    check_state(&mut rig, &baseline, &mut report, true)?;
    report.elapsed = start.elapsed();
    Ok(report)
}

/// How the kernel's answer differs from the model's, if it does.
fn differ(want: &Outcome, verdict: u32, bumped: &[usize], out: &[u8]) -> Option<String> {
    if verdict != want.action {
        return Some(format!("verdict {verdict}, model {}", want.action));
    }
    if bumped != [want.reason] {
        let names = |r: &[usize]| {
            r.iter()
                .map(|&i| stats::EXIT_NAMES[i])
                .collect::<Vec<_>>()
                .join(",")
        };
        return Some(format!(
            "exit reason {}, model {}",
            names(bumped),
            names(&[want.reason])
        ));
    }
    if want.action != crate::model::XDP_ABORTED && out != want.frame.as_slice() {
        let at = out
            .iter()
            .zip(&want.frame)
            .position(|(a, b)| a != b)
            .unwrap_or(out.len().min(want.frame.len()));
        return Some(format!(
            "output differs at byte {at} (lengths {} / {}), reason {}",
            out.len(),
            want.frame.len(),
            stats::EXIT_NAMES[want.reason]
        ));
    }
    None
}

/// The reply key of the NAT flow a `TX_NAT` frame belongs to (the model's
/// forward entry for the frame's flow, reversed).
fn reply_key_of(model: &Model, frame: &[u8]) -> Option<FlowKey> {
    let pkt = crate::model::parse::parse(frame);
    model
        .nat_entry(&pkt.flow)
        .map(|e| lb_common::nat::reversed(&e.to))
}

fn hex(b: &[u8]) -> String {
    let shown = b.len().min(160);
    let mut s = String::with_capacity(2 * shown + 16);
    for x in &b[..shown] {
        let _ = write!(s, "{x:02x}");
    }
    if b.len() > shown {
        let _ = write!(s, "... ({} bytes)", b.len());
    }
    s
}

/// Counters read before a stretch of frames, to compare deltas.
struct Baseline {
    proto: Vec<VerdictCounters>,
    vips: HashMap<u32, lb_common::stats::TrafficCounters>,
    backends: HashMap<u32, lb_common::stats::TrafficCounters>,
    flows: lb_common::stats::FlowCounters,
}

/// VIP ids and backend slots the services use (all below these).
const IDS: u32 = 32;
const SLOTS: u32 = 128;

impl Baseline {
    fn read(ebpf: &Ebpf) -> Result<Self, BoxError> {
        let proto_map: PerCpuArray<&MapData, VerdictCounters> =
            PerCpuArray::try_from(ebpf.map(STATS_PROTO_MAP).ok_or("no stats_proto")?)?;
        let proto = (0..ProtoClass::COUNT)
            .map(|i| {
                proto_map
                    .get(&i, 0)
                    .map(|v| v.iter().fold(VerdictCounters::default(), |a, c| a.add(*c)))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let vips = (0..IDS)
            .map(|i| stats::vip_stats_of(ebpf, i).map(|c| (i, c)))
            .collect::<Result<_, _>>()?;
        let backends = (0..SLOTS)
            .map(|i| stats::backend_stats_of(ebpf, i).map(|c| (i, c)))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            proto,
            vips,
            backends,
            flows: stats::flow_stats_of(ebpf)?,
        })
    }
}

fn sub(a: lb_common::stats::TrafficCounters, b: lb_common::stats::TrafficCounters) -> [u64; 6] {
    [
        a.packets - b.packets,
        a.bytes - b.bytes,
        a.new_flows - b.new_flows,
        a.replies - b.replies,
        a.reply_bytes - b.reply_bytes,
        a.refused - b.refused,
    ]
}

fn fields(c: lb_common::stats::TrafficCounters) -> [u64; 6] {
    sub(c, lb_common::stats::TrafficCounters::default())
}

/// Compare tables (when `tables`: after an unpredictable frame they may
/// differ) and counters with the model, note differences, then empty the
/// program's tables and the model's.
fn check_state(
    rig: &mut Rig,
    base: &Baseline,
    report: &mut Report,
    tables: bool,
) -> Result<(), BoxError> {
    let mut problems = Vec::new();
    let now = Baseline::read(&rig.ebpf)?;
    let model = &rig.model.counters;
    for (i, (b, a)) in base.proto.iter().zip(&now.proto).enumerate() {
        let got = [
            a.aborted - b.aborted,
            a.drop - b.drop,
            a.pass - b.pass,
            a.tx - b.tx,
            a.redirect - b.redirect,
        ];
        let m = &model.proto[i];
        let want = [m.aborted, m.drop, m.pass, m.tx, m.redirect];
        if got != want {
            problems.push(format!("stats_proto[{i}] {got:?}, model {want:?}"));
        }
    }
    for id in 0..IDS {
        let got = sub(now.vips[&id], base.vips[&id]);
        let want = fields(model.vips.get(&id).copied().unwrap_or_default());
        if got != want {
            problems.push(format!("stats_vip[{id}] {got:?}, model {want:?}"));
        }
    }
    for slot in 0..SLOTS {
        let got = sub(now.backends[&slot], base.backends[&slot]);
        let want = fields(model.backends.get(&slot).copied().unwrap_or_default());
        if got != want {
            problems.push(format!("stats_backend[{slot}] {got:?}, model {want:?}"));
        }
    }
    let evictions = now.flows.evicted_recent + now.flows.evicted_idle
        - base.flows.evicted_recent
        - base.flows.evicted_idle;
    if tables && evictions != 0 {
        problems.push(format!(
            "{evictions} connection-table evictions, model none"
        ));
    }
    if tables {
        compare_tables(rig, &mut problems)?;
    }
    empty_tables(rig)?;
    if !problems.is_empty() {
        report.state_mismatches += problems.len() as u64;
        if report.examples.len() < 10 {
            report.examples.push(format!(
                "STATE MISMATCH after frame {}:\n  {}",
                report.frames,
                problems.join("\n  ")
            ));
        }
    }
    Ok(())
}

fn nat_map(ebpf: &Ebpf) -> Result<BpfHashMap<&MapData, FlowKey, NatEntry>, BoxError> {
    Ok(BpfHashMap::try_from(
        ebpf.map(NAT_MAP).ok_or("no nat map")?,
    )?)
}

fn persist_map(ebpf: &Ebpf) -> Result<BpfHashMap<&MapData, PersistKey, Persisted>, BoxError> {
    Ok(BpfHashMap::try_from(
        ebpf.map(PERSIST_MAP).ok_or("no persist map")?,
    )?)
}

/// The NAT table (keys and translations, MACs, flags, backend, VIP: not
/// the times and TCP flags), the templates (keys and backends) and the
/// connection table's sets (tags and ways: not the last-seen times).
fn compare_tables(rig: &Rig, problems: &mut Vec<String>) -> Result<(), BoxError> {
    let strip = |e: &NatEntry| (e.to, e.mac, e.flags, e.backend, e.vip_id);
    let kernel: HashMap<FlowKey, _> = nat_map(&rig.ebpf)?
        .iter()
        .map(|r| r.map(|(k, e)| (k, strip(&e))))
        .collect::<Result<_, _>>()?;
    let model: HashMap<FlowKey, _> = rig
        .model
        .nat_entries()
        .map(|(k, e)| (*k, strip(e)))
        .collect();
    if kernel != model {
        let (k, m): (HashSet<_>, HashSet<_>) = (kernel.keys().collect(), model.keys().collect());
        problems.push(format!(
            "nat table: {} entries, model {}; only in the kernel {}, only in the model {}, differing {}",
            kernel.len(),
            model.len(),
            k.difference(&m).count(),
            m.difference(&k).count(),
            k.intersection(&m).filter(|key| kernel[**key] != model[**key]).count()
        ));
    }
    let kernel: HashMap<PersistKey, u32> = persist_map(&rig.ebpf)?
        .iter()
        .map(|r| r.map(|(k, t)| (k, t.backend)))
        .collect::<Result<_, _>>()?;
    let model = rig.model.templates();
    if kernel != model {
        problems.push(format!(
            "templates: {} in the kernel, {} in the model",
            kernel.len(),
            model.len()
        ));
    }
    let (mem, sets) = stats::map_flow_sets(&rig.ebpf, false)?;
    let kernel_sets: &[FlowSet] = mem.slice(sets);
    let mut differing = 0;
    for (index, set) in rig.model.flow_sets() {
        let k = &kernel_sets[index as usize];
        if k.tags != set.tags || k.ways != set.ways {
            differing += 1;
        }
    }
    let kernel_flows: usize = kernel_sets
        .iter()
        .map(|s| s.tags.iter().filter(|&&t| t != 0).count())
        .sum();
    let (model_flows, _) = rig.model.table_sizes();
    if differing != 0 || kernel_flows != model_flows {
        problems.push(format!(
            "connection table: {kernel_flows} flows, model {model_flows}; {differing} sets differ"
        ));
    }
    Ok(())
}

/// Empty the program's NAT table, templates and connection table, and the
/// model's.
fn empty_tables(rig: &mut Rig) -> Result<(), BoxError> {
    {
        let mut nat: BpfHashMap<&mut MapData, FlowKey, NatEntry> =
            BpfHashMap::try_from(rig.ebpf.map_mut(NAT_MAP).ok_or("no nat map")?)?;
        let keys: Vec<FlowKey> = nat.keys().collect::<Result<_, _>>()?;
        for k in keys {
            nat.remove(&k)?;
        }
    }
    {
        let mut persist: BpfHashMap<&mut MapData, PersistKey, Persisted> =
            BpfHashMap::try_from(rig.ebpf.map_mut(PERSIST_MAP).ok_or("no persist map")?)?;
        let keys: Vec<PersistKey> = persist.keys().collect::<Result<_, _>>()?;
        for k in keys {
            persist.remove(&k)?;
        }
    }
    let (mut mem, sets) = stats::map_flow_sets(&rig.ebpf, true)?;
    let kernel_sets: &mut [FlowSet] = mem.slice_mut(sets);
    for (index, _) in rig.model.flow_sets() {
        kernel_sets[index as usize] = FlowSet::default();
    }
    rig.model.clear_tables();
    Ok(())
}
