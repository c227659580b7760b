//! CPU placement for the benchmarks: pin tasks, read their run time,
//! and move a veth's receive processing to a NAPI thread of its own (so it
//! can be pinned apart from the measured CPU).

use std::io;
use std::path::PathBuf;
use std::process::Command;

use crate::netns::{Netns, NetnsError};

fn cpu_set(cpus: &[usize]) -> libc::cpu_set_t {
    // SAFETY: cpu_set_t is a plain bit set; all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &c in cpus {
        // SAFETY: c is below CPU_SETSIZE (we only use 0 and 1).
        unsafe { libc::CPU_SET(c, &mut set) };
    }
    set
}

/// Pin task `tid` (0: the calling thread) to `cpus`.
///
/// # Errors
/// `sched_setaffinity` fails (no such task, no such CPU).
pub fn set_affinity(tid: u32, cpus: &[usize]) -> io::Result<()> {
    let set = cpu_set(cpus);
    // SAFETY: a valid cpu_set_t of the size given.
    let rc = unsafe {
        libc::sched_setaffinity(
            tid as i32,
            std::mem::size_of::<libc::cpu_set_t>(),
            &raw const set,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Pin every thread of process `pid` (threads that end meanwhile are
/// skipped).
pub fn set_affinity_all(pid: u32, cpus: &[usize]) {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return;
    };
    for t in tasks.flatten() {
        if let Ok(tid) = t.file_name().to_string_lossy().parse::<u32>() {
            let _gone_meanwhile = set_affinity(tid, cpus);
        }
    }
}

/// Run time of process (or kernel thread) `pid` so far, all its threads,
/// ns, as the scheduler accounts it.
#[must_use]
pub fn runtime_ns(pid: u32) -> u64 {
    let one = |path: PathBuf| -> u64 {
        std::fs::read_to_string(path)
            .ok()
            .and_then(|t| t.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    match std::fs::read_dir(format!("/proc/{pid}/task")) {
        Ok(tasks) => tasks
            .flatten()
            .map(|t| one(t.path().join("schedstat")))
            .sum(),
        Err(_) => one(PathBuf::from(format!("/proc/{pid}/schedstat"))),
    }
}

/// Kernel threads named `napi/...`: pid and name.
#[must_use]
pub fn napi_threads() -> Vec<(u32, String)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let pid: u32 = e.file_name().to_string_lossy().parse().ok()?;
            let comm = std::fs::read_to_string(e.path().join("comm")).ok()?;
            comm.starts_with("napi/")
                .then(|| (pid, comm.trim().to_owned()))
        })
        .collect()
}

/// Write `value` to /sys/class/net/DEV/threaded for each of `devs` in `ns`
/// (`ip netns exec` mounts the namespace's own sysfs).
///
/// # Errors
/// The write fails (no such device, ...).
pub fn set_threaded(ns: &Netns, devs: &[&str], value: u8) -> Result<(), NetnsError> {
    let script = devs
        .iter()
        .map(|d| format!("echo {value} > /sys/class/net/{d}/threaded"))
        .collect::<Vec<_>>()
        .join(" && ");
    crate::netns::run(Command::new("ip").args(["netns", "exec", ns.name(), "sh", "-c", &script]))?;
    Ok(())
}

/// Set `dev`'s NAPI interrupt deferral in `ns`: after a poll, its NAPI
/// stays armed on a `timeout_ns` timer (on the polling CPU) instead of
/// re-enabling its "interrupt", up to `defer` times in a row without work
/// (`napi_defer_hard_irqs` and `gro_flush_timeout`, see the kernel's
/// `Documentation/networking/napi.rst`). On veth the "interrupt" is the
/// peer's transmit scheduling this NAPI (an IPI to a sleeping thread on
/// another CPU); while deferred the peer transmits without it. `0, 0`
/// restores the default (every poll that empties the ring re-arms it).
///
/// # Errors
/// A write fails (no such device, ...).
pub fn set_napi_deferral(
    ns: &Netns,
    dev: &str,
    defer: u32,
    timeout_ns: u64,
) -> Result<(), NetnsError> {
    let script = format!(
        "echo {defer} > /sys/class/net/{dev}/napi_defer_hard_irqs && \
         echo {timeout_ns} > /sys/class/net/{dev}/gro_flush_timeout"
    );
    crate::netns::run(Command::new("ip").args(["netns", "exec", ns.name(), "sh", "-c", &script]))?;
    Ok(())
}

/// Switch `dev` in `ns` to threaded NAPI; the thread created for it.
///
/// # Errors
/// The switch fails, or not exactly one new thread appeared.
pub fn threaded_napi(ns: &Netns, dev: &str) -> Result<u32, String> {
    let before = napi_threads();
    set_threaded(ns, &[dev], 1).map_err(|e| e.to_string())?;
    let prefix = format!("napi/{dev}-");
    let new: Vec<u32> = napi_threads()
        .into_iter()
        .filter(|(pid, comm)| comm.starts_with(&prefix) && !before.iter().any(|(p, _)| p == pid))
        .map(|(pid, _)| pid)
        .collect();
    match new[..] {
        [pid] => Ok(pid),
        _ => Err(format!(
            "expected one new NAPI thread for {dev} in {}, found {}",
            ns.name(),
            new.len()
        )),
    }
}

/// Run task `tid` under `SCHED_FIFO` at `priority` (1-99): a receiving
/// NAPI thread that other tasks on its CPU cannot delay, so the ring in
/// front of it does not overflow while it waits for the CPU.
///
/// # Errors
/// `sched_setscheduler` fails (no such task, not permitted).
pub fn set_fifo(tid: u32, priority: i32) -> io::Result<()> {
    let param = libc::sched_param {
        sched_priority: priority,
    };
    // SAFETY: a valid sched_param for the call's duration.
    let rc = unsafe { libc::sched_setscheduler(tid as i32, libc::SCHED_FIFO, &raw const param) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
