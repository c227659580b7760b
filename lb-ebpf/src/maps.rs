//! Every map the program declares. BTF-defined (`btf_map`) so that
//! `bpftool map dump` prints typed, named fields. Sizes marked "set at load"
//! are overridden by user space (`EbpfLoader::map_max_entries`).

use aya_ebpf::{
    Global,
    btf_maps::{Array, ArrayOfMaps, DevMap, HashMap, LruHashMap, PerCpuArray, RingBuf},
    macros::btf_map,
};
use lb_common::{
    backend::{Backend, MAX_BACKENDS},
    config::Config,
    flow::{DEFAULT_FLOW_ENTRIES, FLOW_EVENTS_BYTES, FlowKey, FlowSet, flow_sets},
    layout::Layout,
    nat::{DEFAULT_NAT_FLOWS, NatEntry},
    persist::{PERSIST_ENTRIES, PersistKey, Persisted},
    stats::{ExitCounters, FlowCounters, ProtoClass, TrafficCounters, VerdictCounters},
    vip::{
        BPF_F_MMAPABLE, DEFAULT_RING_SIZE, FILTER_BUCKETS, MAX_VIPS, TABLE_FLAGS, TABLE_SLOTS,
        VIP_INDEX_SLOTS, VipIndexEntry, VipKey, VipMeta, table,
    },
};

/// Packets by protocol class (key) and verdict (value fields).
#[btf_map(name = "stats_proto")]
pub static STATS_PROTO: PerCpuArray<VerdictCounters, { ProtoClass::COUNT as usize }> =
    PerCpuArray::new();

/// Packets by exit reason (one entry, one field per reason).
#[btf_map(name = "stats_exit")]
pub static STATS_EXIT: PerCpuArray<ExitCounters, 1> = PerCpuArray::new();

/// Connection-table evictions (one entry).
#[btf_map(name = "stats_flows")]
pub static STATS_FLOWS: PerCpuArray<FlowCounters, 1> = PerCpuArray::new();

/// Traffic per VIP id.
#[btf_map(name = "stats_vip")]
pub static STATS_VIP: PerCpuArray<TrafficCounters, { MAX_VIPS as usize }> = PerCpuArray::new();

/// Traffic per backend slot: one slot per (service, backend) pair
/// (`lb_common::backend`), so this counts per service and backend.
#[btf_map(name = "stats_backend")]
pub static STATS_BACKEND: PerCpuArray<TrafficCounters, { MAX_BACKENDS as usize }> =
    PerCpuArray::new();

/// Virtual services, for inspection (`bpftool map dump`): the program
/// finds VIPs through `vip_index` and `vip_ids` and never reads this.
#[btf_map(name = "vips")]
pub static VIPS: HashMap<VipKey, VipMeta, { MAX_VIPS as usize }> = HashMap::new();

/// The VIPs as the program finds them: two halves of an open-addressed
/// `VipKey -> id` table (`lb_common::vip::VipIndexEntry`), the live one
/// named by `Config::vip_index`; mmap-able so user space writes a half with
/// one copy.
#[btf_map(name = "vip_index")]
pub static VIP_INDEX: Array<
    VipIndexEntry,
    { 2 * VIP_INDEX_SLOTS as usize },
    { BPF_F_MMAPABLE as usize },
> = Array::new();

/// VIP records by id, for connection-table hits (generation 0: no VIP).
#[btf_map(name = "vip_ids")]
pub static VIP_IDS: Array<VipMeta, { MAX_VIPS as usize }> = Array::new();

/// Address prefilter: `filter_bucket(addr)` -> `filter_bits`.
#[btf_map(name = "vip_filter")]
pub static VIP_FILTER: Array<u8, { FILTER_BUCKETS as usize }> = Array::new();

/// Backends by slot, one slot per (service, backend) pair.
#[btf_map(name = "backends")]
pub static BACKENDS: Array<Backend, { MAX_BACKENDS as usize }> = Array::new();

/// Maglev tables, each packed as `lb_common::vip::table` says; a VIP's
/// record names its live one (`VipMeta::table`). An inner table's size
/// follows its ring size and pool, so it differs per VIP
/// (`BPF_F_INNER_MAP`); mmap-able so user space writes a table with one
/// copy.
#[btf_map(name = "maglev_tables")]
pub static MAGLEV_TABLES: ArrayOfMaps<
    Array<u64, { table::slot_cells(DEFAULT_RING_SIZE) as usize }, { TABLE_FLAGS as usize }>,
    { TABLE_SLOTS as usize },
> = ArrayOfMaps::new();

/// Connection table: sets of `FLOW_WAYS` flows (`lb_common::flow`). The
/// number of sets is set at load, with `FLOW_SET_MASK` to match.
/// Mmap-able only for its layout: such an array's values start on a page,
/// so every 576-byte set starts on a cache line.
#[btf_map(name = "flows")]
pub static FLOWS: Array<
    FlowSet,
    { flow_sets(DEFAULT_FLOW_ENTRIES) as usize },
    { BPF_F_MMAPABLE as usize },
> = Array::new();

/// Sets in `flows` minus one (a power of two minus one). A read-only
/// global: user space sets it at load (`EbpfLoader::set_global`) and the
/// verifier then knows it as a constant.
#[unsafe(no_mangle)]
pub static FLOW_SET_MASK: Global<u32> = Global::new(flow_sets(DEFAULT_FLOW_ENTRIES) - 1);

/// New-flow events for connection sync (`lb_common::flow::FlowEvent`),
/// written only when `FLOW_EVENTS_ON` is set. Declared without a value
/// type (a zero-sized one), as libbpf expects of a ring buffer: a 56-byte
/// value type makes `ip link ... obj` and `bpftool prog load` refuse the
/// object ("conflicting value size").
#[btf_map(name = "flow_events")]
pub static FLOW_EVENTS: RingBuf<[u8; 0], { FLOW_EVENTS_BYTES as usize }> = RingBuf::new();

/// Nonzero: emit a [`FlowEvent`] for every new flow. A read-only global
/// set at load; when 0 the verifier drops the event code altogether.
#[unsafe(no_mangle)]
pub static FLOW_EVENTS_ON: Global<u32> = Global::new(0);

/// NAT table (`lb_common::nat`): two entries per `nat` / `fullnat` flow,
/// keyed by the 5-tuple on the wire. Never evicts: `lbd` deletes timed-out
/// flows; a full table refuses new ones. Size set at load (`[dataplane]
/// nat_flows`, times two).
#[btf_map(name = "nat")]
pub static NAT: HashMap<FlowKey, NatEntry, { 2 * DEFAULT_NAT_FLOWS as usize }> = HashMap::new();

/// Client affinity templates (`lb_common::persist`) of services with
/// `persistence_timeout`: least recently used evicted when full.
#[btf_map(name = "persist")]
pub static PERSIST: LruHashMap<PersistKey, Persisted, { PERSIST_ENTRIES as usize }> =
    LruHashMap::new();

/// Where a client's template key and value are built for the map
/// helpers (`select::choose`, `select::keep_template`), off the stack.
#[derive(Clone, Copy)]
#[repr(C)]
pub struct PersistScratch {
    /// The template's key.
    pub key: PersistKey,
    /// A value to write.
    pub value: Persisted,
}

/// Per-CPU scratch space for client templates.
#[btf_map(name = "persist_scratch")]
pub static PERSIST_SCRATCH: PerCpuArray<PersistScratch, 1> = PerCpuArray::new();

/// Per-CPU: the coarse clock's last reading and the `jiffies` it was
/// taken at (`crate::clock`).
#[btf_map(name = "clock")]
pub static CLOCK: PerCpuArray<crate::clock::ClockCache, 1> = PerCpuArray::new();

/// Per-CPU: a value passed through memory so the verifier forgets it
/// (`parse::opaque`).
#[btf_map(name = "parse_scratch")]
pub static PARSE_SCRATCH: PerCpuArray<u64, 1> = PerCpuArray::new();

/// Per-CPU scratch space where a new NAT flow's entries are built.
#[btf_map(name = "nat_scratch")]
pub static NAT_SCRATCH: PerCpuArray<crate::nat::NatScratch, 1> = PerCpuArray::new();

/// The layout stamp (one entry, `lb_common::layout`): written by user
/// space when it creates the maps, read by the `lbd` that adopts them. The
/// program never reads it.
#[btf_map(name = "layout")]
pub static LAYOUT: Array<Layout, 1> = Array::new();

/// The program's interfaces by arm (`lb_common::config::Config::arm_mac`):
/// where a frame leaving by the other interface is redirected. Written
/// by user space at start; empty when the program runs on one interface.
#[btf_map(name = "arms")]
pub static ARMS: DevMap<2> = DevMap::new();

/// Arm 1's interface (`[dataplane] backend_interface`), 0 for none. A
/// read-only global set at load: with 0 the verifier drops the redirect
/// code altogether.
#[unsafe(no_mangle)]
pub static ARM1_IFINDEX: Global<u32> = Global::new(0);

/// Global settings (one entry).
#[btf_map(name = "config")]
pub static CONFIG: Array<Config, 1> = Array::new();
