//! What a BPF map costs in memory: the kernel's own charge for it (the
//! `memlock` line of its descriptor's `/proc/self/fdinfo` entry, what
//! `bpftool map show` prints) and the kernel memory really allocated when
//! it was created (the pages of its vmalloc area in `/proc/vmallocinfo`:
//! large maps live in vmalloc space, their pages allocated at creation).
//! Used by the
//! connection-table kernel test (`tests/full_table.rs`) and the data-plane
//! bench (`src/bin/lb-bench.rs`).

use std::{
    collections::HashMap,
    os::fd::{AsFd as _, AsRawFd as _},
    time::{Duration, Instant},
};

use aya::{Ebpf, maps::Map};

/// Why a map's memory could not be read.
#[derive(Debug, thiserror::Error)]
pub enum MemError {
    /// The object has no such map.
    #[error("no map {0}")]
    NoMap(String),
    /// A `/proc` file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file lacked the line, or it did not parse.
    #[error("{path} has no usable {field} line")]
    Field {
        /// The file.
        path: String,
        /// The line's name.
        field: &'static str,
    },
    /// Loading the object failed.
    #[error("loading the BPF object: {0}")]
    Load(#[from] aya::EbpfError),
}

/// The value of line `field:` of `/proc` file `path` (its first number).
fn proc_field(path: &str, field: &'static str) -> Result<u64, MemError> {
    let text = std::fs::read_to_string(path).map_err(|source| MemError::Read {
        path: path.to_owned(),
        source,
    })?;
    text.lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(name, _)| name.trim() == field)
        .and_then(|(_, v)| v.split_whitespace().next()?.parse().ok())
        .ok_or(MemError::Field {
            path: path.to_owned(),
            field,
        })
}

/// The bytes the kernel charges for map `name` of `ebpf`: `memlock` in
/// `/proc/self/fdinfo/<its descriptor>`.
///
/// # Errors
/// The map is missing or its fdinfo unreadable.
pub fn memlock(ebpf: &Ebpf, name: &str) -> Result<u64, MemError> {
    let map = ebpf
        .map(name)
        .ok_or_else(|| MemError::NoMap(name.to_owned()))?;
    let (Map::Array(data)
    | Map::HashMap(data)
    | Map::LruHashMap(data)
    | Map::PerCpuArray(data)
    | Map::PerCpuHashMap(data)
    | Map::PerCpuLruHashMap(data)
    | Map::RingBuf(data)) = map
    else {
        return Err(MemError::NoMap(format!("{name} (an unexpected map type)")));
    };
    let fd = data.fd().as_fd().as_raw_fd();
    proc_field(&format!("/proc/self/fdinfo/{fd}"), "memlock")
}

/// The vmalloc areas BPF maps hold now (`/proc/vmallocinfo`, root only):
/// each area's address range (hashed, but stable) and the pages it has.
///
/// # Errors
/// `/proc/vmallocinfo` unreadable.
fn map_areas() -> Result<HashMap<String, u64>, MemError> {
    let path = "/proc/vmallocinfo";
    let text = std::fs::read_to_string(path).map_err(|source| MemError::Read {
        path: path.to_owned(),
        source,
    })?;
    Ok(text
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let range = f.next()?;
            let caller = f.nth(1)?;
            let pages = f.find_map(|w| w.strip_prefix("pages="))?.parse().ok()?;
            // The map types' allocators (`array_map_alloc`, ...), or
            // the helper they call when the compiler did not inline it.
            let function = caller.split('+').next()?;
            (function.ends_with("_map_alloc") || function.starts_with("bpf_map_area"))
                .then(|| (range.to_owned(), pages))
        })
        .collect())
}

/// [`map_areas`] once they have stopped changing: read every 50 ms until
/// two readings 300 ms apart agree, for at most 5 s. The kernel frees a
/// closed map a moment later, from a work queue, and a new map may then
/// take its addresses: a baseline taken before that would hide the new
/// one.
///
/// # Errors
/// As [`map_areas`].
fn settled_map_areas() -> Result<HashMap<String, u64>, MemError> {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut last = map_areas()?;
    let mut since = Instant::now();
    while Instant::now() < deadline && since.elapsed() < Duration::from_millis(300) {
        std::thread::sleep(Duration::from_millis(50));
        let now = map_areas()?;
        if now != last {
            last = now;
            since = Instant::now();
        }
    }
    Ok(last)
}

/// Pages of the areas in `after` and not in `before`, fewest first.
fn new_areas(before: &HashMap<String, u64>, after: &HashMap<String, u64>) -> Vec<u64> {
    let mut pages: Vec<u64> = after
        .iter()
        .filter(|(range, _)| !before.contains_key(*range))
        .map(|(_, p)| *p)
        .collect();
    pages.sort_unstable();
    pages
}

/// The connection table's memory at one size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowTableMemory {
    /// Flows asked for (`[dataplane] conntrack_entries`).
    pub flow_entries: u32,
    /// Flows it holds: sets times ways.
    pub capacity: u64,
    /// The kernel's charge for map `flows`, bytes.
    pub memlock: u64,
    /// Kernel memory allocated for it, bytes: the pages of the largest
    /// vmalloc area for maps (`/proc/vmallocinfo`) that loading the object
    /// with this table added and loading it with a table of one set did
    /// not (the object's other maps are the same in both). A measurement,
    /// not an account.
    pub allocated: u64,
}

/// Load the balancer's object (maps only) with a connection table of
/// `flow_entries` flows, as `lbd` does (`loader::load_object`), and
/// measure the table's memory.
///
/// # Errors
/// The object does not load (not root, or not enough memory), or `/proc`
/// is unreadable.
pub fn flow_table_memory(flow_entries: u32) -> Result<FlowTableMemory, MemError> {
    use lb_common::flow::{FLOW_WAYS, FLOWS_MAP, MIN_FLOW_ENTRIES, flow_sets};
    use lb_user::dataplane::loader::load_object;
    let pairs = lb_common::backend::MAX_BACKENDS;
    let a0 = settled_map_areas()?;
    let small = load_object(MIN_FLOW_ENTRIES, pairs)?;
    let a1 = map_areas()?;
    let big = load_object(flow_entries, pairs)?;
    let a2 = map_areas()?;
    // The big object's areas, less one of the same size for each of the
    // small object's: its table's, and any whose addresses were in the
    // baseline (another process's map freed meanwhile and its space taken
    // again: a 37-page array, seen here). The largest is the table.
    let mut added = new_areas(&a1, &a2);
    for pages in new_areas(&a0, &a1) {
        if let Some(i) = added.iter().position(|&p| p == pages) {
            added.remove(i);
        }
    }
    // SAFETY: sysconf has no memory-safety preconditions.
    let page = u64::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
    let memory = FlowTableMemory {
        flow_entries,
        capacity: u64::from(flow_sets(flow_entries)) * FLOW_WAYS as u64,
        memlock: memlock(&big, FLOWS_MAP)?,
        allocated: added.last().copied().unwrap_or(0) * page,
    };
    drop(big);
    drop(small);
    Ok(memory)
}
