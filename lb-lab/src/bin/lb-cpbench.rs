//! `lb-cpbench`: control-plane benchmarks, measured side by side in one run.
//! Run by `cargo xtask bench controlplane` (release build, root).
//!
//! 1. Maglev: build time of one table (M = 65537, 100 backends of weight 1),
//!    median of `--builds` builds after one warm-up build.
//! 2. Balancer: `upsert_service` + `set_backends` for `--services` services
//!    of 100 backends each, through the real data-plane maps (object and
//!    program loaded, nothing attached). Memory: this process's VmRSS
//!    before and after (the Maglev tables are mmapped, so the pages written
//!    count in RSS, as RssFile), and the kernel memory of the maps
//!    (`memlock` in `/proc/self/fdinfo`, the figure `bpftool map show`
//!    prints), next to the arithmetic estimate.
//! 3. lbd: a real daemon with the same services from a generated TOML
//!    configuration, XDP in generic mode on a veth in a fresh network
//!    namespace, health checks off (`kind = "none"`), the backends' MACs as
//!    permanent neighbour entries. Time from spawn until `lbctl` reports
//!    every service active with every backend in its pool, then lbd's VmRSS
//!    and VmHWM; then SIGTERM.
//!
//! Besides the table, every figure is printed once more as
//! `FIGURE name=value unit=...` for report writers.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    os::unix::process::ExitStatusExt as _,
    path::{Path, PathBuf},
    process::{ExitCode, Stdio},
    time::{Duration, Instant},
};

use aya::programs::Xdp;
use clap::Parser;
use lb_common::{config::Config, vip::MAX_VIPS};
use lb_lab::{
    daemon::{Daemon, DaemonError},
    netns::Netns,
};
use lb_user::{
    config as file,
    dataplane::balancer::{
        BackendSpec, Balancer, EbpfMaps, Mode, NoBackend, Protocol, ServiceKey, ServiceSpec,
    },
    dataplane::loader::PROGRAM,
    dataplane::maglev,
};

/// Maglev table size of every service.
const RING: u32 = 65_537;
/// Backends per service.
const BACKENDS: u8 = 100;

/// Control-plane benchmarks: Maglev build, applying services to the maps,
/// lbd's start-up time and memory. Needs root.
#[derive(Debug, Parser)]
struct Cli {
    /// The `lbd` binary.
    #[arg(long)]
    lbd: PathBuf,
    /// The `lbctl` binary.
    #[arg(long)]
    lbctl: PathBuf,
    /// Timed Maglev builds (the median is reported).
    #[arg(long, default_value_t = 7)]
    builds: usize,
    /// Services (each with 100 backends).
    #[arg(long, default_value_t = 1000)]
    services: u32,
    /// Give up on lbd after this many seconds.
    #[arg(long, default_value_t = 600)]
    timeout: u64,
    /// Keep lbd's log here (its timestamps show where the start went).
    #[arg(long)]
    log: Option<PathBuf>,
}

type Error = Box<dyn std::error::Error>;

fn main() -> ExitCode {
    match run(&Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lb-cpbench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// One reported figure.
struct Figure {
    name: &'static str,
    label: String,
    value: f64,
    unit: &'static str,
}

#[derive(Default)]
struct Report(Vec<Figure>);

impl Report {
    fn add(
        &mut self,
        name: &'static str,
        label: impl Into<String>,
        value: f64,
        unit: &'static str,
    ) {
        self.0.push(Figure {
            name,
            label: label.into(),
            value,
            unit,
        });
    }

    fn print(&self) {
        let width = self.0.iter().map(|f| f.label.len()).max().unwrap_or(0);
        println!();
        println!("{:<width$} {:>12}  unit", "figure", "value");
        for f in &self.0 {
            println!("{:<width$} {:>12.3}  {}", f.label, f.value, f.unit);
        }
        println!();
        for f in &self.0 {
            println!("FIGURE {}={:.3} unit={}", f.name, f.value, f.unit);
        }
    }
}

fn run(cli: &Cli) -> Result<(), Error> {
    if cli.builds == 0 {
        return Err("--builds must be at least 1".into());
    }
    if cli.services == 0 || cli.services > MAX_VIPS {
        return Err(format!("--services must be 1..={MAX_VIPS} (MAX_VIPS)").into());
    }
    let mut report = Report::default();
    let n = cli.services;
    maglev_build(cli, &mut report)?;
    apply(cli, &mut report)?;
    daemon(cli, &mut report)?;
    println!(
        "\ncontrol plane, {n} services x {BACKENDS} backends (weight 1), M = {RING}, {} CPUs",
        std::thread::available_parallelism().map_or(0, std::num::NonZero::get)
    );
    report.print();
    Ok(())
}

fn backend_addr(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(198, 19, 0, n)
}

fn vip(i: u32) -> Ipv4Addr {
    // 198.18.0.1 .. : 250 per third octet, never .0 or .255.
    Ipv4Addr::new(198, 18, (i / 250) as u8, (i % 250 + 1) as u8)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        f64::midpoint(v[n / 2 - 1], v[n / 2])
    }
}

fn maglev_build(cli: &Cli, report: &mut Report) -> Result<(), Error> {
    let backends: Vec<maglev::Backend> = (1..=BACKENDS)
        .map(|n| maglev::Backend::new(maglev::addr_key(SocketAddr::from((backend_addr(n), 0))), 1))
        .collect();
    let warm = maglev::Table::build(&backends, RING)?;
    std::hint::black_box(&warm);
    let mut times = Vec::with_capacity(cli.builds);
    for _ in 0..cli.builds {
        let t = Instant::now();
        let table = maglev::Table::build(std::hint::black_box(&backends), RING)?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
        std::hint::black_box(table);
    }
    let (min, max) = times
        .iter()
        .fold((f64::MAX, 0.0f64), |(lo, hi), &t| (lo.min(t), hi.max(t)));
    eprintln!(
        "maglev: {} builds, min {min:.3} ms, max {max:.3} ms",
        cli.builds
    );
    report.add(
        "maglev_build_ms",
        format!(
            "Maglev build, M = {RING}, {BACKENDS} backends (median of {})",
            cli.builds
        ),
        median(times),
        "ms",
    );
    Ok(())
}

/// `Vm*`/`Rss*` fields of a `/proc/PID/status`, in KiB.
fn status_kib(pid: &str, field: &str) -> Result<u64, Error> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| format!("no {field} in /proc/{pid}/status").into())
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Kernel memory of the BPF maps this process holds open: `memlock` of
/// every map fd in `/proc/self/fdinfo`, each map once. Returns (all maps in
/// bytes, number of maps, Maglev tables in bytes, number of tables).
fn map_memlock() -> Result<(u64, usize, u64, usize), Error> {
    let mut seen = std::collections::HashSet::new();
    let (mut all, mut maps, mut tables, mut count) = (0, 0, 0, 0);
    for entry in std::fs::read_dir("/proc/self/fd")? {
        let entry = entry?;
        let Ok(target) = std::fs::read_link(entry.path()) else {
            continue;
        };
        if target.as_os_str() != "anon_inode:bpf-map" {
            continue;
        }
        let Ok(info) =
            std::fs::read_to_string(Path::new("/proc/self/fdinfo").join(entry.file_name()))
        else {
            continue;
        };
        let field = |name: &str| -> Option<u64> {
            info.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                .and_then(|v| v.trim().parse().ok())
        };
        let (Some(id), Some(memlock)) = (field("map_id"), field("memlock")) else {
            continue;
        };
        if !seen.insert(id) {
            continue;
        }
        all += memlock;
        maps += 1;
        // BPF_MAP_TYPE_ARRAY (2) of a packed table's cells: an inner
        // Maglev table.
        if field("map_type") == Some(2) && field("max_entries") == Some(u64::from(table_cells())) {
            tables += memlock;
            count += 1;
        }
    }
    Ok((all, maps, tables, count))
}

/// Members a table has room for: lbd makes every table with room for at
/// least 256 (`EbpfMaps`), so tables are interchangeable.
const ROOM: u32 = 256;

/// Cells of one packed table (`lb_common::vip::table`): M slots, 2 bytes
/// each, then room for [`ROOM`] members.
fn table_cells() -> u32 {
    lb_common::vip::table::cells(RING, ROOM)
}

fn service_key(i: u32) -> ServiceKey {
    ServiceKey {
        vip: IpAddr::V4(vip(i)),
        port: 80,
        proto: Protocol::Tcp,
    }
}

#[allow(
    clippy::too_many_lines,
    reason = "a benchmark step: setup, measurement and its report lines, read top to bottom"
)]
fn apply(cli: &Cli, report: &mut Report) -> Result<(), Error> {
    let n = cli.services;
    let mut ebpf = lb_user::dataplane::loader::load_object(
        lb_common::flow::DEFAULT_FLOW_ENTRIES,
        backend_pairs(n),
    )?;
    let program: &mut Xdp = ebpf.program_mut(PROGRAM).ok_or("no program")?.try_into()?;
    program.load()?;
    let mut balancer = Balancer::new(EbpfMaps::take(&mut ebpf)?);
    balancer.set_config(&Config {
        mtu: 1500,
        ..Config::default()
    })?;
    let spec_of = |addr: Ipv4Addr, i: u8| BackendSpec {
        addr: IpAddr::V4(addr),
        weight: 1,
        mac: [2, 0, 0, 0, 0, i],
        port: 0,
        snat: None,
        arm: 0,
    };
    // lbd keeps the last Maglev table it built: services with the same
    // pool cost one build. The apply gives each service its own pool
    // (addresses from 198.19.0.0/16 at 100 x its index, so consecutive
    // services never share one); the shared pool comes after.
    let own_pool = |service: u32| -> Vec<BackendSpec> {
        (1..=BACKENDS)
            .map(|i| {
                let n = (service * u32::from(BACKENDS) + u32::from(i)) % 65_536;
                spec_of(Ipv4Addr::from(0xc613_0000 | n), i)
            })
            .collect()
    };
    let backends: Vec<BackendSpec> = (1..=BACKENDS)
        .map(|i| spec_of(backend_addr(i), i))
        .collect();
    let spec = ServiceSpec {
        mode: Mode::Dsr,
        ring_size: RING,
        on_no_backend: NoBackend::Drop,
        ..ServiceSpec::default()
    };
    let rss_before = status_kib("self", "VmRSS")?;
    let (kern_before, _, _, _) = map_memlock()?;
    // As lbd applies a configuration: every service in, then every pool
    // (`set_backends_many`: tables built on every core while the built
    // ones are written).
    let pools: Vec<(ServiceKey, Vec<BackendSpec>)> =
        (0..n).map(|i| (service_key(i), own_pool(i))).collect();
    let t = Instant::now();
    for (key, _) in &pools {
        balancer.upsert_service(*key, spec)?;
    }
    for result in balancer.set_backends_many(&pools) {
        result?;
    }
    let took = t.elapsed().as_secs_f64();
    drop(pools);
    let rss_after = status_kib("self", "VmRSS")?;
    let file_after = status_kib("self", "RssFile")?;
    let (kern_after, maps, tables_memlock, tables) = map_memlock()?;
    // One inner table per service: each rewrite writes a fresh copy,
    // flips to it, and frees the old one a second later.
    let page = 4096u64;
    let table_bytes = (u64::from(table_cells()) * 8).div_ceil(page) * page;
    let estimate_now = u64::from(n) * table_bytes;
    eprintln!(
        "apply: {maps} maps open, {tables} Maglev tables; maps memlock {:.1} MiB before, {:.1} MiB after",
        kern_before as f64 / 1_048_576.0,
        kern_after as f64 / 1_048_576.0
    );
    report.add(
        "apply_total_s",
        format!("apply {n} services x {BACKENDS} backends (a pool each) to the maps: total"),
        took,
        "s",
    );
    report.add(
        "apply_per_service_ms",
        "apply: per service (upsert_service + set_backends_many)",
        took * 1e3 / f64::from(n),
        "ms",
    );
    report.add(
        "apply_rss_before_mib",
        "apply: process VmRSS before (object + program loaded)",
        mib(rss_before),
        "MiB",
    );
    report.add(
        "apply_rss_after_mib",
        "apply: process VmRSS after",
        mib(rss_after),
        "MiB",
    );
    report.add(
        "apply_rss_delta_mib",
        "apply: process VmRSS delta (measured)",
        mib(rss_after.saturating_sub(rss_before)),
        "MiB",
    );
    report.add(
        "apply_rss_file_after_mib",
        "apply: of which RssFile after (mmapped BPF tables)",
        mib(file_after),
        "MiB",
    );
    report.add(
        "apply_kernel_tables_mib",
        format!("apply: kernel memlock of the {tables} Maglev tables (fdinfo, measured)"),
        tables_memlock as f64 / 1_048_576.0,
        "MiB",
    );
    report.add(
        "apply_kernel_maps_delta_mib",
        "apply: kernel memlock of all maps, delta (fdinfo, measured)",
        kern_after.saturating_sub(kern_before) as f64 / 1_048_576.0,
        "MiB",
    );
    report.add(
        "apply_kernel_tables_estimate_mib",
        format!(
            "apply: estimate, {n} tables x {} cells x 8 B ({RING} slots x 2 B + {ROOM} members x 4 B)",
            table_cells()
        ),
        estimate_now as f64 / 1_048_576.0,
        "MiB",
    );
    // Every service to the one shared pool: a rewrite of each table, one
    // Maglev build in all.
    let shared: Vec<(ServiceKey, Vec<BackendSpec>)> =
        (0..n).map(|i| (service_key(i), backends.clone())).collect();
    let t = Instant::now();
    for result in balancer.set_backends_many(&shared) {
        result?;
    }
    report.add(
        "apply_shared_pool_s",
        format!("rewrite all {n} services to one shared pool of {BACKENDS} (one Maglev build)"),
        t.elapsed().as_secs_f64(),
        "s",
    );
    flips(cli, &mut balancer, &backends, report)?;
    drop(balancer);
    drop(ebpf);
    Ok(())
}

/// Health flips: one backend of service 0 leaves its pool and comes
/// back, `2 * cli.builds` rewrites (the whole `set_backends`: Maglev
/// build, the fresh table copy, the flip, the old copy retired), then the
/// tables left once the retired copies are freed.
fn flips(
    cli: &Cli,
    balancer: &mut Balancer<EbpfMaps>,
    backends: &[BackendSpec],
    report: &mut Report,
) -> Result<(), Error> {
    let key = service_key(0);
    let mut without = backends.to_vec();
    without.remove(BACKENDS as usize / 2);
    let mut times = Vec::new();
    for _ in 0..cli.builds.max(5) {
        for pool in [&without[..], backends] {
            let t = Instant::now();
            balancer.set_backends(&key, pool)?;
            times.push(t.elapsed().as_secs_f64() * 1e3);
        }
    }
    let count = times.len();
    report.add(
        "flip_rewrite_ms",
        format!(
            "health flip: one backend out of or back into a pool, whole rewrite (median of {count})"
        ),
        median(times),
        "ms",
    );
    std::thread::sleep(Duration::from_millis(1100));
    balancer.tidy();
    let (_, _, _, tables) = map_memlock()?;
    eprintln!(
        "flips: {tables} Maglev tables held after the flips ({} services: one live each, the rest spares)",
        cli.services
    );
    // lbd keeps up to 64 spares ready and installs up to 64 at once.
    let most = cli.services as usize + 128;
    if !(cli.services as usize..=most).contains(&tables) {
        return Err(format!(
            "{tables} Maglev tables after the flips, want one per service ({}) plus at most 128 spares",
            cli.services
        )
        .into());
    }
    report.add(
        "tables_held",
        "Maglev tables held after the flips (one live per service, and spares)",
        tables as f64,
        "tables",
    );
    Ok(())
}

/// Working files (config, log, control socket), removed on drop.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// How long lbd gets to exit on SIGTERM before SIGKILL.
const LBD_GRACE: Duration = Duration::from_secs(30);

/// SIGTERM, wait (SIGKILL after [`LBD_GRACE`]); how long lbd took to exit,
/// `None` if it had to be killed.
fn stop_lbd(lbd: &mut Daemon) -> Option<Duration> {
    let t = Instant::now();
    let status = lbd.stop().ok()?;
    if status.signal() == Some(libc::SIGKILL) {
        eprintln!(
            "lb-cpbench: lbd did not stop within {} s after SIGTERM; killing it",
            LBD_GRACE.as_secs()
        );
        return None;
    }
    Some(t.elapsed())
}

/// Backend slots for `n` services over [`BACKENDS`] backends each (a
/// backend in two services takes two slots).
fn backend_pairs(n: u32) -> u32 {
    // One pool more: moving a service to another pool takes the new slots
    // before the old ones are released.
    ((n + 1) * u32::from(BACKENDS)).max(lb_common::backend::MAX_BACKENDS)
}

/// lbd's file: `n` services on port 80 over the same [`BACKENDS`]
/// backends, Maglev table [`RING`], no health checks.
fn config_text(n: u32, dir: &Path, pin: &Path) -> Result<String, file::ValueError> {
    let backends: Vec<file::BackendConfig> = (1..=BACKENDS)
        .map(|b| file::BackendConfig::new(backend_addr(b).into()))
        .collect();
    let service = |i| file::Service {
        ring_size: RING,
        health: file::Health {
            kind: file::HealthKind::None,
            ..file::Health::default()
        },
        ..file::Service::new(vip(i).into(), 80, backends.clone())
    };
    file::Config {
        global: file::Global {
            router_id: Some("lb-cpbench".into()),
            bpf_pin_path: pin.to_owned(),
            control_socket: dir.join("run/lbd.sock"),
            ..file::Global::default()
        },
        dataplane: Some(file::Dataplane {
            xdp_mode: file::XdpMode::Generic,
            backend_pairs: backend_pairs(n),
            ..file::Dataplane::new("eth0")
        }),
        service: (0..n).map(service).collect(),
        ..file::Config::default()
    }
    .to_toml()
}

/// Every service active with every backend in its pool, per `lbctl`.
fn all_in_pool(cli: &Cli, ns: &Netns, socket: &Path) -> Option<(usize, usize)> {
    let out = ns
        .command(&cli.lbctl)
        .arg("--socket")
        .arg(socket)
        .arg("--json")
        .arg("services")
        .stderr(Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    // lbctl --json prints the whole answer: {"ok": true, "data": [...]}.
    let answer: lb_user::api::control::Response = serde_json::from_slice(&out.stdout).ok()?;
    let services: Vec<lb_user::services::controller::ServiceStatus> =
        serde_json::from_str(answer.data?.get()).ok()?;
    let active = services.iter().filter(|s| s.active).count();
    let in_pool: usize = services
        .iter()
        .map(|s| s.backends.iter().filter(|b| b.in_pool).count())
        .sum();
    Some((active, in_pool))
}

#[allow(
    clippy::too_many_lines,
    reason = "a benchmark step: setup, measurement and its report lines, read top to bottom"
)]
fn daemon(cli: &Cli, report: &mut Report) -> Result<(), Error> {
    let n = cli.services;
    let pid = std::process::id();
    let ns = Netns::create(&format!("lbcpbench{pid}"))?;
    ns.ip(&[
        "link", "add", "eth0", "type", "veth", "peer", "name", "eth1",
    ])?;
    ns.ip(&["link", "set", "eth0", "up"])?;
    ns.ip(&["link", "set", "eth1", "up"])?;
    ns.ip(&["addr", "add", "198.19.255.254/16", "dev", "eth0"])?;
    // Backends on-link with resolvable MACs, without 100 hosts.
    for b in 1..=BACKENDS {
        ns.ip(&[
            "neigh",
            "replace",
            &backend_addr(b).to_string(),
            "lladdr",
            &format!("02:00:00:00:00:{b:02x}"),
            "dev",
            "eth0",
            "nud",
            "permanent",
        ])?;
    }
    let dir = TempDir(std::env::temp_dir().join(format!("lb-cpbench-{pid}")));
    std::fs::create_dir_all(&dir.0)?;
    let pin = PathBuf::from(format!("/sys/fs/bpf/lb-cpbench-{pid}"));
    let conf = dir.0.join("lb.toml");
    let text = config_text(n, &dir.0, &pin)?;
    std::fs::write(&conf, &text)?;
    let log = dir.0.join("lbd.log");
    let socket = dir.0.join("run/lbd.sock");
    eprintln!(
        "lbd: config {} ({} KiB), {n} services x {BACKENDS} backends",
        conf.display(),
        text.len() / 1024
    );

    let mut cmd = ns.command(&cli.lbd);
    cmd.arg("--config").arg(&conf).env("LB_LOG", "info");
    let t0 = Instant::now();
    // If this process dies without unwinding, lbd goes too.
    let mut lbd = Daemon::builder(cli.lbd.display().to_string(), &log)
        .parent_death_signal(libc::SIGKILL)
        .grace(LBD_GRACE)
        .spawn(&mut cmd)?;
    let lbd_pid = lbd.pid().to_string();
    let tail = |text: &str| {
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    };
    let deadline = t0 + Duration::from_secs(cli.timeout);
    // 1. The last "service active" line.
    let active = lbd.wait_until(
        "all services active",
        deadline.saturating_duration_since(Instant::now()),
        |text| (text.matches("service active").count() >= n as usize).then(|| t0.elapsed()),
    );
    let logged_active = match active {
        Ok(t) => t,
        Err(DaemonError::Exited { status, log, .. }) => {
            return Err(format!(
                "lbd exited ({status}) before all services were active:\n{}",
                tail(&log)
            )
            .into());
        }
        Err(DaemonError::Timeout { log, .. }) => {
            return Err(format!(
                "timeout: {} of {n} services active after {} s:\n{}",
                log.matches("service active").count(),
                cli.timeout,
                tail(&log)
            )
            .into());
        }
        Err(e) => return Err(e.into()),
    };
    // 2. lbd says every pool is written, with every backend.
    let whole = format!(
        "{n} service(s) written, {} backend(s) in their pools",
        n as usize * usize::from(BACKENDS)
    );
    let written = lbd
        .wait_until(
            "every pool written",
            deadline.saturating_duration_since(Instant::now()),
            |text| text.contains(&whole).then(|| t0.elapsed()),
        )
        .map_err(|e| format!("lbd never logged \"{whole}\": {e}"))?;
    // 3. lbctl confirms: every service active, every backend in a pool
    // (the control socket only comes up once the configuration is applied).
    let want = (n as usize, n as usize * usize::from(BACKENDS));
    let mut last = None;
    let (confirmed, poll) = loop {
        let asked = Instant::now();
        let got = all_in_pool(cli, &ns, &socket);
        if got == Some(want) {
            break (t0.elapsed(), asked.elapsed());
        }
        if got.is_some() {
            last = got;
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "timeout: lbctl reports (active, in pool) = {last:?}, want {want:?}:\n{}",
                tail(&lbd.log())
            )
            .into());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let rss = status_kib(&lbd_pid, "VmRSS")?;
    let hwm = status_kib(&lbd_pid, "VmHWM")?;
    let anon = status_kib(&lbd_pid, "RssAnon")?;
    let file = status_kib(&lbd_pid, "RssFile")?;
    let stopped = stop_lbd(&mut lbd);
    let text = lbd.log();
    if let Some(path) = &cli.log {
        std::fs::write(path, &text)?;
    }
    let warnings: Vec<&str> = text.lines().filter(|l| l.contains(" WARN ")).collect();
    if !warnings.is_empty() {
        eprintln!(
            "lbd logged {} warnings, the first: {}",
            warnings.len(),
            warnings[..warnings.len().min(3)].join("\n")
        );
    }
    let _ = std::fs::remove_dir_all(&pin);
    report.add(
        "lbd_all_written_s",
        format!("lbd: start to all {n} pools written, every backend in (lbd's log)"),
        written.as_secs_f64(),
        "s",
    );
    report.add(
        "lbd_all_active_s",
        format!(
            "lbd: start to lbctl showing all {n} services active, all backends in pool (a poll reads {} backends)",
            n as usize * usize::from(BACKENDS)
        ),
        confirmed.as_secs_f64(),
        "s",
    );
    report.add(
        "lbctl_services_poll_s",
        "lbctl --json services: the confirming poll (run, answer, parse)",
        poll.as_secs_f64(),
        "s",
    );
    report.add(
        "lbd_last_service_active_log_s",
        "lbd: start to the last \"service active\" log line",
        logged_active.as_secs_f64(),
        "s",
    );
    report.add(
        "lbd_rss_mib",
        "lbd: VmRSS with all services active",
        mib(rss),
        "MiB",
    );
    report.add(
        "lbd_rss_anon_mib",
        "lbd: of which RssAnon (heap etc.)",
        mib(anon),
        "MiB",
    );
    report.add(
        "lbd_rss_file_mib",
        "lbd: of which RssFile (mmapped BPF tables, binary)",
        mib(file),
        "MiB",
    );
    report.add("lbd_peak_rss_mib", "lbd: VmHWM (peak RSS)", mib(hwm), "MiB");
    if let Some(d) = stopped {
        report.add("lbd_stop_s", "lbd: SIGTERM to exit", d.as_secs_f64(), "s");
    }
    Ok(())
}
