//! Services and backends, as the controller sees them, written into the
//! data-plane maps.
//!
//! [`Balancer`] owns the policy: VIP ids, backend slots, Maglev tables with
//! weights, and the double-buffer flip. Map writes go through the [`Maps`]
//! trait: [`EbpfMaps`] is the real one, unit tests use a fake (aya's
//! `sys/fake.rs` idea).
//!
//! A backend slot serves one (service, backend address) pair, as a real
//! server belongs to one virtual service in IPVS: services sharing backend
//! addresses get a slot each. The slot index is also the pair's cell in the
//! per-CPU traffic counters (`stats_backend`), so `lbctl stats` shows each
//! service only its own traffic, as `ipvsadm -L --stats` does. Counter cells
//! are zeroed whenever a slot (or a VIP id, for `stats_vip`) is handed to a
//! new pair (or service), before the kernel can reach it, so nothing
//! inherits old counts.
//!
//! Ordering rules that keep the kernel consistent at every instant:
//! - a backend slot's counters are zeroed, then the slot is written (and
//!   marked active), before any table points at it; it is deactivated only
//!   after no live table does;
//! - a table is written completely into a spare table, then the VIP
//!   record points `table` at it in one map update; the table it replaced
//!   becomes a spare only a second later (`EbpfMaps`);
//! - a drained backend (weight 0) keeps its slot, so its established flows
//!   continue, but gets no table entries, so no new flows.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, HashSet},
    fmt,
    net::IpAddr,
};

use tracing::info;

use aya::maps::{
    Array, HashMap as BpfHashMap, IterableMap as _, Map, MapData, MapError, PerCpuArray,
    PerCpuValues,
};
use lb_common::{
    backend::{Backend, MAX_BACKENDS, backend_flags},
    config::Config,
    stats::TrafficCounters,
    v4_mapped,
    vip::{
        MAX_VIPS, TABLE_FLAGS, VIP_INDEX_SLOTS, VipIndexEntry, VipKey, VipMeta, filter_bits,
        filter_bucket, mode, table, vip_flags, vip_index_build,
    },
};

use super::{bpfmem::ArrayMemory, maglev};

/// Transport protocol of a service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl Protocol {
    /// IP protocol number.
    #[must_use]
    pub const fn number(self) -> u8 {
        match self {
            Self::Tcp => 6,
            Self::Udp => 17,
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Tcp => "tcp",
            Self::Udp => "udp",
        })
    }
}

/// How packets reach the backends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// L2 direct routing: backends on the segment, holding the VIP on `lo`.
    Dsr,
    /// IP-in-IP to the backend (which decapsulates).
    Ipip,
    /// LVS-NAT: destination rewritten to the backend, whose replies are
    /// routed back through us and rewritten back.
    Nat,
    /// Destination and source rewritten: the backend answers our SNAT
    /// address and needs no change at all.
    Fullnat,
}

impl Mode {
    /// The mode translates addresses (`nat`, `fullnat`): its flows live in
    /// the NAT table, and a backend may listen on another port.
    #[must_use]
    pub const fn is_nat(self) -> bool {
        matches!(self, Self::Nat | Self::Fullnat)
    }
}

/// What a VIP does with a new flow when no backend can take it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum NoBackend {
    /// Drop it (the client retries or times out).
    #[default]
    Drop,
    /// Hand it to the local stack (e.g. a local fallback server).
    Pass,
}

/// A virtual service: VIP, port (0 = all ports), protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceKey {
    /// Virtual IP.
    pub vip: IpAddr,
    /// Port; 0 matches every port.
    pub port: u16,
    /// Protocol.
    pub proto: Protocol,
}

impl fmt::Display for ServiceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.vip {
            IpAddr::V4(a) => write!(f, "{a}:{}/{}", self.port, self.proto),
            IpAddr::V6(a) => write!(f, "[{a}]:{}/{}", self.port, self.proto),
        }
    }
}

/// A 16-byte map address as an `IpAddr` (`family` 4: v4-mapped).
fn addr_of(addr: &[u8; 16], family: u8) -> IpAddr {
    let v6 = std::net::Ipv6Addr::from(*addr);
    match (family, v6.to_ipv4_mapped()) {
        (4, Some(v4)) => IpAddr::V4(v4),
        _ => IpAddr::V6(v6),
    }
}

impl ServiceKey {
    /// The service a VIP record's key names, if its protocol is one we
    /// know. IPv4 VIPs are stored v4-mapped.
    fn from_map_key(key: &VipKey) -> Option<Self> {
        let proto = match key.proto {
            6 => Protocol::Tcp,
            17 => Protocol::Udp,
            _ => return None,
        };
        let v6 = std::net::Ipv6Addr::from(key.addr);
        Some(Self {
            vip: v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            port: u16::from_be(key.port_be),
            proto,
        })
    }

    fn map_key(&self) -> VipKey {
        VipKey {
            addr: addr16(self.vip),
            port_be: self.port.to_be(),
            proto: self.proto.number(),
            pad: 0,
        }
    }
}

/// How a service forwards.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServiceSpec {
    /// Forwarding mode.
    pub mode: Mode,
    /// Maglev table size (prime).
    pub ring_size: u32,
    /// New flows when no backend can take them.
    pub on_no_backend: NoBackend,
    /// Maglev hashes the client's address only, not the whole 5-tuple
    /// (the `source_hash` scheduler).
    pub source_hash: bool,
    /// Client affinity: a client's new flows go where its last ones went.
    pub persistence: Option<Persistence>,
}

impl Default for ServiceSpec {
    /// `dsr`, the default ring, drop new flows without backends, 5-tuple
    /// hashing, no persistence.
    fn default() -> Self {
        Self {
            mode: Mode::Dsr,
            ring_size: lb_common::vip::DEFAULT_RING_SIZE,
            on_no_backend: NoBackend::Drop,
            source_hash: false,
            persistence: None,
        }
    }
}

/// Client affinity of a service (`lb_common::persist`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Persistence {
    /// How long a client keeps its backend after it was last seen, in
    /// seconds (at least 1).
    pub timeout_s: u32,
    /// The client address bits that count, of the 16-byte form (an IPv4
    /// `/24` is 120; 128: the whole address).
    pub prefix: u8,
}

/// A backend of a service, with the MAC to send to already resolved (the
/// backend's for `dsr`, the next hop's for `ipip`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackendSpec {
    /// Address.
    pub addr: IpAddr,
    /// Relative share of new flows; 0 = drain.
    pub weight: u32,
    /// Destination MAC.
    pub mac: [u8; 6],
    /// `nat` / `fullnat`: the backend's port; 0: the service's.
    pub port: u16,
    /// `fullnat`: the source address of translated flows towards this
    /// backend.
    pub snat: Option<IpAddr>,
    /// The interface its next hop is on: 0 the data plane's, 1 the
    /// backend interface (`lb_common::config::Config::arm_mac`).
    pub arm: u8,
}

/// Why a change was refused. Nothing was written when this is returned,
/// except where a variant says so.
#[derive(Debug, thiserror::Error)]
pub enum BalancerError {
    /// A map operation failed.
    #[error("{op} failed")]
    Map {
        /// What we were doing.
        op: String,
        /// Why.
        #[source]
        source: MapError,
    },
    /// Mapping the table memory failed.
    #[error("mapping BPF array memory (Maglev table or VIP index) failed")]
    Mmap(#[source] std::io::Error),
    /// The Maglev table could not be built.
    #[error("Maglev table for {service}")]
    Maglev {
        /// The service.
        service: ServiceKey,
        /// Why.
        #[source]
        source: maglev::Error,
    },
    /// No such service.
    #[error("no service {0}")]
    NoService(ServiceKey),
    /// All VIP ids are taken.
    #[error("too many services (the maps hold {MAX_VIPS})")]
    TooManyServices,
    /// The VIP index has no free slot near the service's hash (very
    /// unlikely: the index has four slots per possible VIP).
    #[error("{0}: no room in the VIP index (too many VIPs hash alike)")]
    VipIndexFull(ServiceKey),
    /// All backend slots are taken (one per service and backend).
    #[error(
        "too many backends across services (the maps hold {max} service-backend pairs; \
         raise [dataplane] backend_pairs)"
    )]
    TooManyBackends {
        /// Slots the maps hold.
        max: u32,
    },
    /// A backend's address family does not suit the mode.
    #[error(
        "{service}: backend {backend} must be {want} like the VIP: ipip encapsulates and nat / fullnat translate within one IP version"
    )]
    FamilyMismatch {
        /// The service.
        service: ServiceKey,
        /// The backend.
        backend: IpAddr,
        /// "IPv4" or "IPv6".
        want: &'static str,
    },
    /// The same backend address twice in one list.
    #[error("{service}: backend {backend} listed twice")]
    DuplicateBackend {
        /// The service.
        service: ServiceKey,
        /// The backend.
        backend: IpAddr,
    },
}

/// The map writes the balancer needs. Implemented by [`EbpfMaps`]; fakes
/// in tests record them.
pub trait Maps {
    /// Insert or replace a VIP record.
    ///
    /// # Errors
    /// On map failure.
    fn set_vip(&mut self, key: &VipKey, meta: &VipMeta) -> Result<(), BalancerError>;
    /// Remove a VIP record (and mark its id free: generation 0).
    ///
    /// # Errors
    /// On map failure.
    fn remove_vip(&mut self, key: &VipKey, id: u32) -> Result<(), BalancerError>;
    /// Set the prefilter bits (`filter_bits`) of `vip_filter` bucket
    /// `bucket`.
    ///
    /// # Errors
    /// On map failure.
    fn set_filter(&mut self, bucket: u32, bits: u8) -> Result<(), BalancerError>;
    /// Write a whole Maglev table into a spare table of `maglev_tables`,
    /// packed as `lb_common::vip::table` says: `ring[i]` is slot `i`'s
    /// member (an index into `members`), `members[m]` that member's
    /// backend slot. Returns its index there, for `VipMeta::table`.
    ///
    /// # Errors
    /// On map failure, or no room for another table.
    fn write_table(&mut self, ring: &[u16], members: &[u32]) -> Result<u32, BalancerError>;
    /// Table `slot` went out of use (its VIP points elsewhere, or went):
    /// it may be reused once no packet can still be reading it.
    fn drop_table(&mut self, _slot: u32) {}
    /// Tables of these shapes (ring size, members) are about to be
    /// written: have spares ready in as few installations as possible
    /// (each waits an RCU grace period, about 10 ms).
    fn reserve_tables(&mut self, _shapes: &[(u32, usize)]) {}
    /// Tables an earlier `lbd` wrote that VIP records still name
    /// ([`Balancer::adopt`]): not to be overwritten until dropped.
    fn adopt_tables(&mut self, _slots: &[u32]) {}
    /// Free what [`Maps::drop_table`] retired long enough ago; called
    /// now and then.
    fn tidy(&mut self) {}
    /// The table in outer slot `slot` as this process wrote it, as the
    /// backend slot of each table slot; `None` when it wrote none there
    /// (or, in an adopted data plane, not yet).
    fn read_table(&self, _slot: u32) -> Option<Vec<u32>> {
        None
    }
    /// The backend slot of entry `index` of the table in outer slot
    /// `slot`, as this process wrote it (without copying the table).
    fn table_entry(&self, slot: u32, index: u32) -> Option<u32> {
        self.read_table(slot)?.get(index as usize).copied()
    }
    /// The table in outer slot `slot` as this process wrote it, as a
    /// member number per table slot and each member's backend slot.
    fn read_table_members(&self, slot: u32) -> Option<(Vec<u16>, Vec<u32>)> {
        let entries = self.read_table(slot)?;
        let mut members: Vec<u32> = Vec::new();
        let slots = entries
            .iter()
            .map(|e| {
                let m = members.iter().position(|m| m == e).unwrap_or_else(|| {
                    members.push(*e);
                    members.len() - 1
                });
                u16::try_from(m).ok()
            })
            .collect::<Option<Vec<u16>>>()?;
        Some((slots, members))
    }
    /// Write backend slot `index`.
    ///
    /// # Errors
    /// On map failure.
    fn set_backend(&mut self, index: u32, backend: &Backend) -> Result<(), BalancerError>;
    /// Write several backend slots (one system call for the real maps).
    ///
    /// # Errors
    /// On map failure; some may have been written.
    fn set_backends_batch(&mut self, writes: &[(u32, Backend)]) -> Result<(), BalancerError> {
        writes
            .iter()
            .try_for_each(|(index, backend)| self.set_backend(*index, backend))
    }
    /// Zero the traffic counters (`stats_backend`) of backend slot `index`
    /// on every CPU. Called while the slot is inactive, before it serves a
    /// new (service, backend) pair.
    ///
    /// # Errors
    /// On map failure.
    fn reset_backend_stats(&mut self, index: u32) -> Result<(), BalancerError>;
    /// [`Maps::reset_backend_stats`] for several slots (one system call
    /// for the real maps).
    ///
    /// # Errors
    /// On map failure; some may have been zeroed.
    fn reset_backend_stats_batch(&mut self, indices: &[u32]) -> Result<(), BalancerError> {
        indices
            .iter()
            .try_for_each(|&index| self.reset_backend_stats(index))
    }
    /// Zero the traffic counters (`stats_vip`) of VIP id `id` on every CPU.
    /// Called before the id is given to a new service.
    ///
    /// # Errors
    /// On map failure.
    fn reset_vip_stats(&mut self, id: u32) -> Result<(), BalancerError>;
    /// Backend slots the maps hold (`[dataplane] backend_pairs`, set at
    /// load); fakes keep the object's default.
    fn backend_capacity(&self) -> u32 {
        MAX_BACKENDS
    }
    /// Write the global settings.
    ///
    /// # Errors
    /// On map failure.
    fn set_config(&mut self, config: &Config) -> Result<(), BalancerError>;
    /// Write half `half` (0 or 1) of the VIP index whole
    /// ([`VIP_INDEX_SLOTS`] entries); the kernel reads it once
    /// `Config::vip_index` names it.
    ///
    /// # Errors
    /// On map failure.
    fn write_vip_index(
        &mut self,
        half: u32,
        entries: &[VipIndexEntry],
    ) -> Result<(), BalancerError>;
    /// What the maps hold now: for [`Balancer::adopt`], when the maps were
    /// written by an earlier `lbd`.
    ///
    /// # Errors
    /// On map failure.
    fn read_back(&self) -> Result<MapState, BalancerError>;
}

/// The services and backends a set of maps holds ([`Maps::read_back`]).
#[derive(Clone, Debug, Default)]
pub struct MapState {
    /// The global settings (with the live half of the VIP index).
    pub config: Config,
    /// Every VIP record.
    pub vips: Vec<(VipKey, VipMeta)>,
    /// Every active backend slot, by index.
    pub backends: Vec<(u32, Backend)>,
}

struct Service {
    id: u32,
    /// Generation of `id` for this service (see `VipMeta::generation`).
    generation: u32,
    spec: ServiceSpec,
    /// The `maglev_tables` index of its live table; `None` while it has
    /// none (no backend).
    table: Option<u32>,
    flags: u8,
    /// Backends with their slot index, in the order given.
    backends: Vec<(BackendSpec, u32)>,
    /// How its table rewrites moved slots.
    churn: TableChurn,
}

/// The backend slots of `pool` that own table slots (weight above 0).
/// A Maglev table built (shared: services with the same pool write the
/// same one), or why there is none.
type TableBuild = Result<std::sync::Arc<maglev::Table>, maglev::Error>;

/// A pool as the Maglev builder sees it (keys and weights, in pool order).
fn maglev_backends(pool: &[BackendSpec]) -> Vec<maglev::Backend> {
    pool.iter()
        .map(|b| maglev::Backend::new(maglev::addr_key((b.addr, 0).into()), b.weight))
        .collect()
}

fn table_owners(pool: &[(BackendSpec, u32)]) -> SlotSet {
    pool.iter()
        .filter(|(b, _)| b.weight > 0)
        .map(|&(_, i)| i)
        .collect()
}

/// A set of backend slots, one bit each: a churn count asks it once per
/// changed table slot (65,537 times when a whole pool is replaced), where
/// a hashed set cost more than the Maglev build.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SlotSet(Vec<u64>);

impl SlotSet {
    /// Whether `slot` is in the set.
    #[must_use]
    pub fn contains(&self, slot: u32) -> bool {
        self.0
            .get(slot as usize / 64)
            .is_some_and(|w| w & (1 << (slot % 64)) != 0)
    }
}

impl FromIterator<u32> for SlotSet {
    fn from_iter<I: IntoIterator<Item = u32>>(slots: I) -> Self {
        let mut words = Vec::new();
        for slot in slots {
            let word = slot as usize / 64;
            if words.len() <= word {
                words.resize(word + 1, 0u64);
            }
            words[word] |= 1 << (slot % 64);
        }
        Self(words)
    }
}

/// A service's live Maglev table ([`Balancer::live_tables`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveTable {
    /// The VIP id's generation (flows of an earlier owner do not count).
    pub generation: u32,
    /// Hashed on the client's address alone (`source_hash`).
    pub source_hash: bool,
    /// With client affinity: a template, not the table, may choose.
    pub persistent: bool,
    /// Table size (the ring size).
    pub size: u32,
    /// Its outer slot in the table of tables.
    pub slot: u32,
}

/// How a service's Maglev table rewrites moved its slots between backends:
/// the disruption a change causes (a slot whose owner changes sends its
/// new flows elsewhere, and an established flow hashed there, pinned to
/// its old backend, is one a failover without sync would break).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TableChurn {
    /// Rewrites measured (both tables known).
    pub rewrites: u64,
    /// Slots whose owner changed, over those rewrites.
    pub slots_changed: u64,
    /// Slots that had to change, over those rewrites: the old owner left,
    /// or the new owner is new (Maglev moves a few more).
    pub slots_necessary: u64,
    /// The last measured rewrite: table size, changed, necessary.
    pub last: Option<(u32, u32, u32)>,
}

impl TableChurn {
    /// Count the rewrite from `old` to `new` (each a table as member
    /// numbers per slot and the members' backend slots), the old pool's
    /// backend slots `was` and the new one's `is`; `None` (not counted)
    /// when the sizes differ (a new ring size moves everything, which says
    /// nothing).
    pub fn record(
        &mut self,
        old: (&[u16], &[u32]),
        new: (&[u16], &[u32]),
        was: &SlotSet,
        is: &SlotSet,
    ) -> Option<(u32, u32, u32)> {
        let ((old_slots, old_members), (new_slots, new_members)) = (old, new);
        if old_slots.len() != new_slots.len() || old_slots.is_empty() {
            return None;
        }
        // Per member, not per slot: each old member's number in the new
        // table (its backend's; `u16::MAX` if gone), whether it had to
        // lose its slots, and whether a new member had to gain any. A
        // slot then costs two small lookups, not two set queries.
        let renumber: Vec<u16> = old_members
            .iter()
            .map(|o| {
                new_members
                    .iter()
                    .position(|n| n == o)
                    .and_then(|i| u16::try_from(i).ok())
                    .unwrap_or(u16::MAX)
            })
            .collect();
        let leaves: Vec<bool> = old_members.iter().map(|&o| !is.contains(o)).collect();
        let arrives: Vec<bool> = new_members.iter().map(|&n| !was.contains(n)).collect();
        let (mut changed, mut necessary) = (0u32, 0u32);
        for (&o, &n) in old_slots.iter().zip(new_slots) {
            let (o, n) = (usize::from(o), usize::from(n));
            if renumber.get(o) != Some(&(n as u16)) {
                changed += 1;
                if leaves.get(o).is_none_or(|&l| l) || arrives.get(n).is_none_or(|&a| a) {
                    necessary += 1;
                }
            }
        }
        let size = u32::try_from(old_slots.len()).unwrap_or(u32::MAX);
        self.rewrites += 1;
        self.slots_changed += u64::from(changed);
        self.slots_necessary += u64::from(necessary);
        self.last = Some((size, changed, necessary));
        self.last
    }
}

/// The (service, backend address) pair each backend slot serves, by slot
/// index: a vector (slots are dense, from 0), not a hashed map.
#[derive(Default)]
struct SlotPairs(Vec<Option<(ServiceKey, IpAddr)>>);

impl SlotPairs {
    fn get(&self, index: u32) -> Option<(ServiceKey, IpAddr)> {
        self.0.get(index as usize).copied().flatten()
    }

    fn insert(&mut self, index: u32, pair: (ServiceKey, IpAddr)) {
        let i = index as usize;
        if self.0.len() <= i {
            self.0.resize(i + 1, None);
        }
        self.0[i] = Some(pair);
    }

    fn remove(&mut self, index: u32) {
        if let Some(p) = self.0.get_mut(index as usize) {
            *p = None;
        }
    }
}

/// A backend slot, serving one (service, backend address) pair.
struct Slot {
    index: u32,
    /// References from the service's current and (during `set_backends`)
    /// next pool: 1 or 2.
    refs: u32,
    written: Backend,
}

/// The controller's view of the data plane; see the module doc.
pub struct Balancer<M> {
    maps: M,
    services: BTreeMap<ServiceKey, Service>,
    /// Backend slots by (service, backend address) (foldhash: a rewrite
    /// of a 100-backend pool asks it 200 times, and SipHash over these
    /// 40-byte keys showed in profiles).
    slots: HashMap<(ServiceKey, IpAddr), Slot, foldhash::fast::RandomState>,
    /// The pair each slot in `slots` serves, by slot index.
    pairs: SlotPairs,
    /// Freed slot indices, reused oldest first so a freed slot's stale
    /// flows have long been re-balanced before it is reused.
    free_slots: std::collections::VecDeque<u32>,
    /// The maps were created for us (not adopted): slots and ids never
    /// handed out have all-zero counters.
    pristine: bool,
    /// The last Maglev table built, with its input ([`Self::build_table`]).
    last_table: Option<(Vec<maglev::Backend>, u32, std::sync::Arc<maglev::Table>)>,
    next_slot: u32,
    /// Backend slots the maps hold.
    backend_capacity: u32,
    free_ids: Vec<u32>,
    next_id: u32,
    /// Next VIP generation to hand out; never 0.
    next_generation: u32,
    /// Bumped by every change of services, ids or slots.
    version: u64,
    /// The settings last written, with `vip_index` (the live half of the
    /// VIP index) kept by us.
    config: Config,
    /// Every address that has been a backend of a `nat` / `fullnat`
    /// service: the prefilter keeps marking them (`NAT_REAL`), because a
    /// TCP flow to a backend taken out of its pool keeps its translation
    /// until it times out, and its replies must still be recognised.
    nat_reals: BTreeSet<IpAddr>,
}

fn addr16(addr: IpAddr) -> [u8; 16] {
    match addr {
        IpAddr::V4(a) => v4_mapped(a.octets()),
        IpAddr::V6(a) => a.octets(),
    }
}

impl<M: Maps> Balancer<M> {
    /// A balancer with no services over `maps`.
    pub fn new(maps: M) -> Self {
        Self {
            backend_capacity: maps.backend_capacity(),
            maps,
            services: BTreeMap::new(),
            slots: HashMap::default(),
            pairs: SlotPairs::default(),
            free_slots: std::collections::VecDeque::new(),
            pristine: true,
            last_table: None,
            next_slot: 0,
            free_ids: Vec::new(),
            next_id: 0,
            next_generation: 1,
            version: 0,
            config: Config {
                mtu: lb_common::config::DEFAULT_MTU,
                ..Config::default()
            },
            nat_reals: BTreeSet::new(),
        }
    }

    /// A balancer over maps an earlier `lbd` wrote (an adopted data
    /// plane): its services, VIP ids and generations, backend slots and
    /// live table halves are read back, so that upserting the same
    /// services and setting the same pools finds the same ids and slots
    /// and changes nothing the kernel sees: established flows, which name
    /// a VIP id, generation and backend slot, keep matching. A backend's
    /// weight is not in the maps; the pool read back carries weight 1 (0
    /// for a drained slot) until the controller sets the real pool.
    ///
    /// Records that make no sense to this build (unknown protocol or mode)
    /// are left out, and removed with the services the configuration no
    /// longer has.
    ///
    /// # Errors
    /// Reading the maps failed.
    pub fn adopt(maps: M) -> Result<Self, BalancerError> {
        let state = maps.read_back()?;
        let mut b = Self::new(maps);
        b.pristine = false;
        b.config = state.config;
        let mut used_ids = std::collections::BTreeSet::new();
        for (key, meta) in &state.vips {
            let Some(service_key) = ServiceKey::from_map_key(key) else {
                continue;
            };
            let mode = match meta.mode {
                mode::DSR => Mode::Dsr,
                mode::IPIP => Mode::Ipip,
                mode::NAT => Mode::Nat,
                mode::FULLNAT => Mode::Fullnat,
                _ => continue,
            };
            let backends = state
                .backends
                .iter()
                .filter(|(_, be)| be.vip_id == meta.id)
                .map(|&(index, be)| {
                    let spec = BackendSpec {
                        addr: addr_of(&be.addr, be.family),
                        weight: u32::from(be.flags & backend_flags::DRAINED == 0),
                        mac: be.mac,
                        port: u16::from_be(be.port_be),
                        snat: (mode == Mode::Fullnat).then(|| addr_of(&be.snat, be.family)),
                        arm: be.arm,
                    };
                    b.pairs.insert(index, (service_key, spec.addr));
                    b.slots.insert(
                        (service_key, spec.addr),
                        Slot {
                            index,
                            refs: 1,
                            written: be,
                        },
                    );
                    (spec, index)
                })
                .collect();
            b.services.insert(
                service_key,
                Service {
                    id: meta.id,
                    generation: meta.generation,
                    spec: ServiceSpec {
                        mode,
                        ring_size: meta.ring_size,
                        on_no_backend: if meta.flags & vip_flags::PASS_NO_BACKEND != 0 {
                            NoBackend::Pass
                        } else {
                            NoBackend::Drop
                        },
                        source_hash: meta.flags & vip_flags::SOURCE_HASH != 0,
                        persistence: (meta.flags & vip_flags::PERSIST != 0).then_some(
                            Persistence {
                                timeout_s: meta.persist_timeout_s,
                                prefix: meta.persist_prefix,
                            },
                        ),
                    },
                    table: (meta.flags & vip_flags::NO_BACKEND == 0).then_some(meta.table),
                    flags: meta.flags,
                    backends,
                    churn: TableChurn::default(),
                },
            );
            used_ids.insert(meta.id);
            b.next_generation = b
                .next_generation
                .max(meta.generation.wrapping_add(1).max(1));
        }
        let nat_reals: Vec<IpAddr> = b
            .services
            .values()
            .filter(|s| s.spec.mode.is_nat())
            .flat_map(|s| s.backends.iter().map(|(spec, _)| spec.addr))
            .collect();
        b.nat_reals.extend(nat_reals);
        let live: Vec<u32> = b.services.values().filter_map(|s| s.table).collect();
        b.maps.adopt_tables(&live);
        b.next_id = used_ids.last().map_or(0, |&id| id + 1);
        b.free_ids = (0..b.next_id)
            .rev()
            .filter(|id| !used_ids.contains(id))
            .collect();
        let used_slots: std::collections::BTreeSet<u32> =
            b.slots.values().map(|s| s.index).collect();
        b.next_slot = used_slots.last().map_or(0, |&i| i + 1);
        b.free_slots = (0..b.next_slot)
            .filter(|i| !used_slots.contains(i))
            .collect();
        // Active slots of no service we kept: nothing routes to them.
        for &(index, _) in &state.backends {
            if !used_slots.contains(&index) {
                b.maps.set_backend(index, &Backend::default())?;
                b.free_slots.push_back(index);
            }
        }
        Ok(b)
    }

    /// Free what went out of use a while ago (Maglev table copies the
    /// kernel no longer reads); call now and then.
    pub fn tidy(&mut self) {
        self.maps.tidy();
    }

    /// The map writer, given back.
    pub fn into_maps(self) -> M {
        self.maps
    }

    /// The map writer (tests inspect their fake through this).
    pub const fn maps(&self) -> &M {
        &self.maps
    }

    /// Write the global settings.
    ///
    /// # Errors
    /// On map failure.
    pub fn set_config(&mut self, config: &Config) -> Result<(), BalancerError> {
        let config = Config {
            vip_index: self.config.vip_index,
            ..*config
        };
        self.maps.set_config(&config)?;
        self.config = config;
        Ok(())
    }

    /// Build the VIP index of the services that exist now into the
    /// inactive half, then make it the live one.
    fn publish_vip_index(&mut self) -> Result<(), BalancerError> {
        let next = self.config.vip_index ^ 1;
        let mut half = vec![VipIndexEntry::default(); VIP_INDEX_SLOTS as usize];
        vip_index_build(
            &mut half,
            self.services.iter().map(|(k, s)| (k.map_key(), s.id)),
        )
        .map_err(|full| {
            let key = self
                .services
                .keys()
                .find(|k| k.map_key() == full)
                .copied()
                .expect("built from the services");
            BalancerError::VipIndexFull(key)
        })?;
        self.maps.write_vip_index(u32::from(next), &half)?;
        let config = Config {
            vip_index: next,
            ..self.config
        };
        self.maps.set_config(&config)?;
        self.config = config;
        Ok(())
    }

    /// What connection sync needs to name this node's flows by address
    /// and back: every service with its VIP id, generation and backend
    /// slots.
    #[must_use]
    pub fn translation(&self) -> super::flows::Translation {
        let mut t = super::flows::Translation::build(self.services.iter().map(|(k, s)| {
            (
                *k,
                s.id,
                s.generation,
                s.backends.iter().map(|(b, i)| (b.addr, *i)).collect(),
            )
        }));
        for s in self.services.values() {
            if let Some(p) = s.spec.persistence {
                t.set_persistence(s.id, lb_common::persist::prefix_mask(p.prefix));
            }
        }
        t
    }

    /// A number that changes whenever services, VIP ids or backend slots
    /// may have changed.
    #[must_use]
    pub const fn version(&self) -> u64 {
        self.version
    }

    /// Services, in key order.
    pub fn services(&self) -> impl Iterator<Item = (&ServiceKey, &ServiceSpec, u32)> {
        self.services.iter().map(|(k, s)| (k, &s.spec, s.id))
    }

    /// A service's backends with their slot indices: the index of each
    /// (service, backend) pair's counters in `stats_backend`
    /// ([`crate::dataplane::stats::backend_stats_of`]); no two services
    /// share one.
    #[must_use]
    pub fn backends(&self, key: &ServiceKey) -> Option<&[(BackendSpec, u32)]> {
        self.services.get(key).map(|s| s.backends.as_slice())
    }

    /// Each service's live table (as this process wrote it), by VIP id:
    /// what a new flow of it would be given now.
    #[must_use]
    pub fn live_tables(&self) -> HashMap<u32, LiveTable> {
        self.services
            .values()
            .filter(|s| s.flags & vip_flags::NO_BACKEND == 0)
            .filter_map(|s| {
                let slot = s.table?;
                // Written by this process (an adopted table is not mapped
                // here until its first rewrite).
                self.maps.table_entry(slot, 0)?;
                Some((
                    s.id,
                    LiveTable {
                        generation: s.generation,
                        source_hash: s.spec.source_hash,
                        persistent: s.spec.persistence.is_some(),
                        size: s.spec.ring_size,
                        slot,
                    },
                ))
            })
            .collect()
    }

    /// Entry `index` of live table `t` (its backend slot).
    #[must_use]
    pub fn table_entry(&self, t: &LiveTable, index: u32) -> Option<u32> {
        self.maps.table_entry(t.slot, index)
    }

    /// How service `key`'s table rewrites have moved its slots.
    #[must_use]
    pub fn churn(&self, key: &ServiceKey) -> Option<TableChurn> {
        self.services.get(key).map(|s| s.churn)
    }

    /// Create a service, or change how an existing one forwards. A new
    /// service starts with no backends (new flows get `on_no_backend`)
    /// until [`Balancer::set_backends`].
    ///
    /// # Errors
    /// [`BalancerError`]; a new service is not created on error.
    ///
    /// # Panics
    /// Never: the `expect`s look up an existing service this function
    /// has just found, and nothing in between removes it.
    pub fn upsert_service(
        &mut self,
        key: ServiceKey,
        spec: ServiceSpec,
    ) -> Result<(), BalancerError> {
        self.version += 1;
        if let Some(service) = self.services.get(&key) {
            let backends: Vec<BackendSpec> = service.backends.iter().map(|(b, _)| *b).collect();
            let old = service.spec;
            self.services.get_mut(&key).expect("present").spec = spec;
            if old != spec {
                // Ring size or mode changed: rebuild into the inactive copy.
                if let Err(e) = self.set_backends(&key, &backends) {
                    self.services.get_mut(&key).expect("present").spec = old;
                    return Err(e);
                }
                if old.mode != spec.mode {
                    self.refresh_filters([key.vip])?;
                }
            }
            return Ok(());
        }
        let (id, fresh) = match self.free_ids.pop() {
            Some(id) => (id, false),
            None if self.next_id < MAX_VIPS => {
                self.next_id += 1;
                (self.next_id - 1, self.pristine)
            }
            None => return Err(BalancerError::TooManyServices),
        };
        // The id's counters may hold a removed service's traffic; the new
        // VIP is unreachable (not in the index, not in `vip_ids`) until
        // after this. An id never used since the maps were created has none.
        if !fresh && let Err(e) = self.maps.reset_vip_stats(id) {
            self.free_ids.push(id);
            return Err(e);
        }
        let generation = self.next_generation;
        self.next_generation = self.next_generation.checked_add(1).unwrap_or(1);
        let service = Service {
            id,
            generation,
            spec,
            table: None,
            flags: vip_flags::NO_BACKEND | spec_flags(&spec),
            backends: Vec::new(),
            churn: TableChurn::default(),
        };
        if let Err(e) = self.maps.set_vip(&key.map_key(), &meta(&service)) {
            self.free_ids.push(id);
            return Err(e);
        }
        self.services.insert(key, service);
        self.update_filter(&key)?;
        if let Err(e) = self.publish_vip_index() {
            // Not findable by the kernel: take the rest back too.
            self.services.remove(&key);
            self.maps.remove_vip(&key.map_key(), id)?;
            self.update_filter(&key)?;
            self.free_ids.push(id);
            return Err(e);
        }
        Ok(())
    }

    /// Rewrite the prefilter bucket of `key`'s address from the services
    /// that exist now.
    fn update_filter(&mut self, key: &ServiceKey) -> Result<(), BalancerError> {
        self.refresh_filters([key.vip])
    }

    /// Rewrite the prefilter buckets of `addrs` from the services that
    /// exist now and the addresses that have been NAT backends.
    fn refresh_filters(
        &mut self,
        addrs: impl IntoIterator<Item = IpAddr>,
    ) -> Result<(), BalancerError> {
        let buckets: BTreeSet<u32> = addrs
            .into_iter()
            .map(|a| filter_bucket(&addr16(a)))
            .collect();
        for bucket in buckets {
            let bits = self.filter_bits_of(bucket);
            self.maps.set_filter(bucket, bits)?;
        }
        Ok(())
    }

    /// The prefilter bits of `bucket`: which kinds of VIP, and whether a
    /// NAT backend, have an address there.
    fn filter_bits_of(&self, bucket: u32) -> u8 {
        let mut bits = 0;
        for (k, service) in &self.services {
            if filter_bucket(&addr16(k.vip)) == bucket {
                bits |= if k.port == 0 {
                    filter_bits::ANY_PORT
                } else {
                    filter_bits::PORT
                };
                bits |= if service.spec.mode.is_nat() {
                    filter_bits::NAT
                } else {
                    filter_bits::PLAIN
                };
            }
        }
        if self
            .nat_reals
            .iter()
            .any(|a| filter_bucket(&addr16(*a)) == bucket)
        {
            bits |= filter_bits::NAT_REAL;
        }
        bits
    }

    /// Remove a service: the kernel stops matching its VIP at once (its
    /// packets then pass to the local stack); its backend slots are
    /// released.
    ///
    /// # Errors
    /// [`BalancerError::NoService`], or a map failure.
    pub fn remove_service(&mut self, key: &ServiceKey) -> Result<(), BalancerError> {
        self.version += 1;
        // Out of the index first: the kernel stops finding the VIP before
        // its record goes.
        let Some(service) = self.services.remove(key) else {
            return Err(BalancerError::NoService(*key));
        };
        if let Err(e) = self.publish_vip_index() {
            self.services.insert(*key, service);
            return Err(e);
        }
        self.maps.remove_vip(&key.map_key(), service.id)?;
        if let Some(slot) = service.table {
            self.maps.drop_table(slot);
        }
        self.update_filter(key)?;
        self.release(service.backends.iter().map(|(_, i)| *i))?;
        self.free_ids.push(service.id);
        Ok(())
    }

    /// Replace a service's backends (weights included) and rewrite its
    /// table. Established flows keep their backends as long as those stay
    /// in this service's pool (drained included); new flows follow the new
    /// table.
    ///
    /// # Errors
    /// [`BalancerError`]; on error the old table stays live.
    ///
    /// # Panics
    /// Never: the `expect`s look up the service found at the start, and
    /// nothing in between removes it.
    pub fn set_backends(
        &mut self,
        key: &ServiceKey,
        backends: &[BackendSpec],
    ) -> Result<(), BalancerError> {
        let ring = self
            .services
            .get(key)
            .ok_or(BalancerError::NoService(*key))?
            .spec
            .ring_size;
        let table = self.build_table(maglev_backends(backends), ring);
        self.set_backends_built(key, backends, table)
    }

    /// [`Balancer::set_backends`] for several services: their Maglev
    /// tables are built on every core while the ones built are written
    /// (a service's table is written in order, one after another); an
    /// identical pool is built once. What a start or a reload of
    /// thousands of services needs.
    ///
    /// Returns each service's result, in order.
    ///
    /// # Panics
    /// If a builder thread panicked (as a build on this thread would).
    pub fn set_backends_many(
        &mut self,
        pools: &[(ServiceKey, Vec<BackendSpec>)],
    ) -> Vec<Result<(), BalancerError>> {
        // The builds: one per distinct (pool, ring), in first-use order.
        let mut builds: Vec<(Vec<maglev::Backend>, u32)> = Vec::new();
        let mut index: HashMap<(Vec<maglev::Backend>, u32), usize> = HashMap::new();
        let mut uses: Vec<usize> = Vec::new();
        let of_item: Vec<usize> = pools
            .iter()
            .map(|(key, pool)| {
                let ring = self.services.get(key).map_or(0, |s| s.spec.ring_size);
                let want = (maglev_backends(pool), ring);
                let b = *index.entry(want.clone()).or_insert_with(|| {
                    builds.push(want);
                    uses.push(0);
                    builds.len() - 1
                });
                uses[b] += 1;
                b
            })
            .collect();
        drop(index);
        let shapes: Vec<(u32, usize)> = pools
            .iter()
            .filter(|(_, pool)| pool.iter().any(|b| b.weight > 0))
            .filter_map(|(key, pool)| Some((self.services.get(key)?.spec.ring_size, pool.len())))
            .collect();
        self.maps.reserve_tables(&shapes);
        let threads = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        if threads < 2 || builds.len() < 2 {
            return pools
                .iter()
                .map(|(key, pool)| self.set_backends(key, pool))
                .collect();
        }
        let next = std::sync::atomic::AtomicUsize::new(0);
        // Built tables wait here for their turn (bounded: the builders stay
        // a few tables ahead of the writes, not a thousand).
        let (tx, rx) = std::sync::mpsc::sync_channel::<(usize, TableBuild)>(2 * threads);
        std::thread::scope(|scope| {
            for _ in 0..threads {
                let (tx, next, builds) = (tx.clone(), &next, &builds);
                scope.spawn(move || {
                    loop {
                        let b = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some((backends, ring)) = builds.get(b) else {
                            break;
                        };
                        let table = maglev::Table::build(backends, *ring).map(std::sync::Arc::new);
                        if tx.send((b, table)).is_err() {
                            break;
                        }
                    }
                });
            }
            drop(tx);
            let mut built: Vec<Option<TableBuild>> = vec![None; builds.len()];
            pools
                .iter()
                .zip(&of_item)
                .map(|((key, pool), &b)| {
                    while built[b].is_none() {
                        match rx.recv() {
                            Ok((i, table)) => built[i] = Some(table),
                            Err(_) => break, // A builder panicked.
                        }
                    }
                    uses[b] -= 1;
                    let table = if uses[b] == 0 {
                        built[b].take()
                    } else {
                        built[b].clone()
                    };
                    let table = table.expect("each build arrives before the builders stop");
                    self.set_backends_built(key, pool, table)
                })
                .collect()
        })
    }

    /// [`Balancer::set_backends`] with the pool's table built.
    fn set_backends_built(
        &mut self,
        key: &ServiceKey,
        backends: &[BackendSpec],
        table: TableBuild,
    ) -> Result<(), BalancerError> {
        self.version += 1;
        let service = self
            .services
            .get(key)
            .ok_or(BalancerError::NoService(*key))?;
        let (spec, id) = (service.spec, service.id);
        check_pool(key, &spec, backends)?;
        let table = match table {
            Ok(t) => Some(t),
            Err(maglev::Error::NoBackends { .. }) => None,
            Err(source) => {
                return Err(BalancerError::Maglev {
                    service: *key,
                    source,
                });
            }
        };

        // 1. Backend slots exist and are active before a table names them.
        let mut acquired = Vec::with_capacity(backends.len());
        let (mut writes, mut resets) = (Vec::new(), Vec::new());
        for b in backends {
            match self.acquire(key, id, b, &mut writes, &mut resets) {
                Ok(index) => acquired.push(index),
                Err(e) => {
                    self.release(acquired)?;
                    return Err(e);
                }
            }
        }
        // A reused slot's cell still holds its previous pair's traffic; the
        // slot is inactive (no packet counts against it) until written.
        let written = self
            .maps
            .reset_backend_stats_batch(&resets)
            .and_then(|()| self.maps.set_backends_batch(&writes));
        if let Err(e) = written {
            self.release(acquired)?;
            return Err(e);
        }
        for (index, value) in writes {
            if let Some(slot) = self.pairs.get(index).and_then(|p| self.slots.get_mut(&p)) {
                slot.written = value;
            }
        }
        // 2. A spare table, completely; 3. the VIP record points at it.
        let service = self.services.get(key).expect("checked above");
        let mut next = Service {
            id: service.id,
            generation: service.generation,
            spec,
            table: service.table,
            flags: spec_flags(&spec),
            backends: backends
                .iter()
                .copied()
                .zip(acquired.iter().copied())
                .collect(),
            churn: service.churn,
        };
        let had_table = service.flags & vip_flags::NO_BACKEND == 0;
        let written = if let Some(table) = &table {
            if had_table {
                let was = table_owners(&service.backends);
                self.measure_churn(key, &mut next, table.entries(), &acquired, &was);
            }
            self.maps
                .write_table(table.entries(), &acquired)
                .map(|slot| next.table = Some(slot))
        } else {
            next.flags |= vip_flags::NO_BACKEND;
            next.table = None;
            Ok(())
        };
        let written = written.and_then(|()| {
            self.maps
                .set_vip(&key.map_key(), &meta(&next))
                .inspect_err(|_| {
                    if let (Some(new), true) = (next.table, table.is_some()) {
                        self.maps.drop_table(new);
                    }
                })
        });
        if let Err(e) = written {
            self.release(acquired)?;
            return Err(e);
        }
        // 4. The table the kernel no longer reads goes; slots no pool uses
        // any more are released last.
        let old = std::mem::replace(self.services.get_mut(key).expect("checked above"), next);
        if let Some(slot) = old.table {
            self.maps.drop_table(slot);
        }
        self.release(old.backends.iter().map(|(_, i)| *i))?;
        // 5. Replies of NAT flows are recognised by their source: the
        // prefilter follows the NAT backends (and a changed mode's VIP).
        if spec.mode.is_nat() {
            let new: Vec<IpAddr> = backends
                .iter()
                .map(|b| b.addr)
                .filter(|a| !self.nat_reals.contains(a))
                .collect();
            self.nat_reals.extend(new.iter().copied());
            self.refresh_filters(new)?;
        }
        Ok(())
    }

    /// The Maglev table of `backends` (keys and weights, in pool order)
    /// with `ring` slots; the last one built is kept, so services with the
    /// same pool (a `virtual_server_group`'s VIPs, one server set on
    /// several ports, or a shared backend's health flip reaching them one
    /// after another) cost one build.
    fn build_table(&mut self, backends: Vec<maglev::Backend>, ring: u32) -> TableBuild {
        if let Some((b, r, t)) = &self.last_table
            && *r == ring
            && *b == backends
        {
            return Ok(std::sync::Arc::clone(t));
        }
        let table = std::sync::Arc::new(maglev::Table::build(&backends, ring)?);
        self.last_table = Some((backends, ring, std::sync::Arc::clone(&table)));
        Ok(table)
    }

    /// Count how the rewrite of `next`'s live table to `entries` moves
    /// its slots (service `key`), and log a rewrite that moves any.
    /// (`was`: the old pool's backend slots that own table slots).
    fn measure_churn(
        &self,
        key: &ServiceKey,
        next: &mut Service,
        ring: &[u16],
        members: &[u32],
        was: &SlotSet,
    ) {
        let is = table_owners(&next.backends);
        if let Some((old_slots, old_members)) = next
            .table
            .and_then(|live| self.maps.read_table_members(live))
            && let Some((size, changed, necessary)) =
                next.churn
                    .record((&old_slots, &old_members), (ring, members), was, &is)
            && changed > 0
        {
            let pct = |n: u32| 100.0 * f64::from(n) / f64::from(size);
            info!(
                service = %key,
                "table rewritten: {:.2}% of slots changed backend ({:.2}% had to: their backend left or is new)",
                pct(changed),
                pct(necessary)
            );
        }
    }

    /// Take a reference on the slot of `b` in service `key` (VIP id `id`),
    /// creating it, and make sure the slot holds `b`'s current MAC: the
    /// slot's value joins `writes` if it changes, a reused slot (whose
    /// counters are not zero) joins `resets`.
    fn acquire(
        &mut self,
        key: &ServiceKey,
        id: u32,
        b: &BackendSpec,
        writes: &mut Vec<(u32, Backend)>,
        resets: &mut Vec<u32>,
    ) -> Result<u32, BalancerError> {
        let value = Backend {
            addr: addr16(b.addr),
            mac: b.mac,
            family: if b.addr.is_ipv4() { 4 } else { 6 },
            flags: if b.weight == 0 {
                backend_flags::ACTIVE | backend_flags::DRAINED
            } else {
                backend_flags::ACTIVE
            },
            vip_id: id,
            port_be: b.port.to_be(),
            arm: b.arm,
            pad: 0,
            snat: b.snat.map_or([0; 16], addr16),
        };
        if let Some(slot) = self.slots.get_mut(&(*key, b.addr)) {
            if slot.written != value {
                writes.push((slot.index, value));
            }
            slot.refs += 1;
            return Ok(slot.index);
        }
        let (index, fresh) = match self.free_slots.pop_front() {
            Some(i) => (i, false),
            None if self.next_slot < self.backend_capacity => {
                self.next_slot += 1;
                (self.next_slot - 1, self.pristine)
            }
            None => {
                return Err(BalancerError::TooManyBackends {
                    max: self.backend_capacity,
                });
            }
        };
        // A slot no one has used since the maps were created is all zeros.
        if !fresh {
            resets.push(index);
        }
        writes.push((index, value));
        self.slots.insert(
            (*key, b.addr),
            Slot {
                index,
                refs: 1,
                // Until the caller's batch write lands.
                written: Backend::default(),
            },
        );
        self.pairs.insert(index, (*key, b.addr));
        Ok(index)
    }

    /// Drop one reference per index; slots left without any are deactivated
    /// (in one write).
    fn release(&mut self, indices: impl IntoIterator<Item = u32>) -> Result<(), BalancerError> {
        let mut cleared = Vec::new();
        for index in indices {
            let Some(pair) = self.pairs.get(index) else {
                continue;
            };
            let Some(slot) = self.slots.get_mut(&pair) else {
                continue;
            };
            slot.refs -= 1;
            if slot.refs == 0 {
                cleared.push((index, Backend::default()));
                self.slots.remove(&pair);
                self.pairs.remove(index);
                self.free_slots.push_back(index);
            }
        }
        self.maps.set_backends_batch(&cleared)
    }
}

/// A pool `set_backends` can take: no address twice, and for `ipip` and
/// the NAT modes every address (and SNAT address) of the VIP's family.
fn check_pool(
    key: &ServiceKey,
    spec: &ServiceSpec,
    backends: &[BackendSpec],
) -> Result<(), BalancerError> {
    for (i, b) in backends.iter().enumerate() {
        if backends[..i].iter().any(|o| o.addr == b.addr) {
            return Err(BalancerError::DuplicateBackend {
                service: *key,
                backend: b.addr,
            });
        }
        let same_family = b.addr.is_ipv4() == key.vip.is_ipv4()
            && b.snat.is_none_or(|a| a.is_ipv4() == key.vip.is_ipv4());
        if (spec.mode == Mode::Ipip || spec.mode.is_nat()) && !same_family {
            return Err(BalancerError::FamilyMismatch {
                service: *key,
                backend: b.addr,
                want: if key.vip.is_ipv4() { "IPv4" } else { "IPv6" },
            });
        }
    }
    Ok(())
}

/// The VIP flags a spec sets (`NO_BACKEND` follows the pool).
const fn spec_flags(spec: &ServiceSpec) -> u8 {
    let mut flags = match spec.on_no_backend {
        NoBackend::Drop => 0,
        NoBackend::Pass => vip_flags::PASS_NO_BACKEND,
    };
    if spec.source_hash {
        flags |= vip_flags::SOURCE_HASH;
    }
    if spec.persistence.is_some() {
        flags |= vip_flags::PERSIST;
    }
    flags
}

fn meta(service: &Service) -> VipMeta {
    VipMeta {
        id: service.id,
        ring_size: service.spec.ring_size,
        mode: match service.spec.mode {
            Mode::Dsr => mode::DSR,
            Mode::Ipip => mode::IPIP,
            Mode::Nat => mode::NAT,
            Mode::Fullnat => mode::FULLNAT,
        },
        flags: service.flags,
        pad: 0,
        persist_prefix: service.spec.persistence.map_or(0, |p| p.prefix),
        generation: service.generation,
        persist_timeout_s: service.spec.persistence.map_or(0, |p| p.timeout_s),
        persist_mask: service
            .spec
            .persistence
            .map_or([0; 16], |p| lb_common::persist::prefix_mask(p.prefix)),
        table: service.table.unwrap_or(0),
    }
}

/// The real [`Maps`]: handles taken from the loaded object (the traffic
/// counters: second handles, so the object keeps its own for reading).
pub struct EbpfMaps {
    vips: BpfHashMap<MapData, VipKey, VipMeta>,
    vip_ids: Array<MapData, VipMeta>,
    vip_filter: Array<MapData, u8>,
    backends: Array<MapData, Backend>,
    /// `maglev_tables` (installed through [`crate::sys::map_batch`]: aya's
    /// `ArrayOfMaps` sets one entry, one grace period, per call).
    tables_data: MapData,
    config: Array<MapData, Config>,
    /// `stats_vip`, to zero an id's cell before it is reused.
    stats_vip: PerCpuArray<MapData, TrafficCounters>,
    /// `stats_backend`, to zero a slot's cell before it is reused.
    stats_backend: PerCpuArray<MapData, TrafficCounters>,
    /// The Maglev tables, live and spare.
    pool: TablePool,
    /// The VIP index (both halves), memory-mapped.
    vip_index: VipIndexMapping,
}

/// The `vip_index` array mapped into our memory: a half is rewritten with
/// one copy, not thousands of map updates.
struct VipIndexMapping {
    _map: Array<MapData, VipIndexEntry>,
    mem: ArrayMemory,
}

// Entries are laid out `round_up(value_size, 8)` apart: 24, no gaps.
const _: () = assert!(std::mem::size_of::<VipIndexEntry>().is_multiple_of(8));

impl VipIndexMapping {
    fn new(map: aya::maps::Map) -> Result<Self, BalancerError> {
        let map =
            Array::<MapData, VipIndexEntry>::try_from(map).map_err(map_err("opening vip_index"))?;
        let bytes = 2 * VIP_INDEX_SLOTS as usize * std::mem::size_of::<VipIndexEntry>();
        let mem = ArrayMemory::map(map.map(), bytes, true).map_err(BalancerError::Mmap)?;
        Ok(Self { _map: map, mem })
    }
}

/// An inner Maglev table (`lb_common::vip::table`: `u64` cells).
///
/// Written through a mapping made for the write and unmapped after it;
/// read through one kept until the next [`Maps::tidy`]. The kernel holds
/// the table either way: a thousand tables kept mapped would add their
/// 130 MiB to lbd's RSS a second time.
struct InnerTable {
    map: Array<MapData, u64>,
    /// A read-only mapping, made by the first read since the last tidy.
    read: std::sync::OnceLock<ArrayMemory>,
    /// Table slots (M).
    ring: u32,
    /// Members it has room for.
    room: u32,
}

impl InnerTable {
    fn bytes(&self) -> usize {
        table::cells(self.ring, self.room) as usize * 8
    }

    /// Fill the table (no VIP record may name it).
    fn write(&mut self, ring: &[u16], members: &[u32]) -> Result<(), BalancerError> {
        let cells = table::cells(self.ring, self.room) as usize;
        let mut mem =
            ArrayMemory::map(self.map.map(), self.bytes(), true).map_err(BalancerError::Mmap)?;
        table::pack(ring, members, mem.slice_mut::<u64>(cells));
        // What an earlier read mapped is the same memory: still right.
        Ok(())
    }

    fn cells(&self) -> Option<&[u64]> {
        let cells = table::cells(self.ring, self.room) as usize;
        if self.read.get().is_none() {
            match ArrayMemory::map(self.map.map(), self.bytes(), false) {
                Ok(mem) => {
                    let _ = self.read.set(mem);
                }
                Err(e) => {
                    tracing::warn!("mapping a Maglev table to read it: {e}");
                    return None;
                }
            }
        }
        self.read.get().map(|m| m.slice::<u64>(cells))
    }

    fn entry(&self, index: u32) -> Option<u32> {
        if index >= self.ring {
            return None;
        }
        let cells = self.cells()?;
        table::lookup(self.ring, index, |i| cells.get(i as usize).copied())
    }

    /// Every slot's member number, and the members' backend slots.
    fn members(&self) -> Option<(Vec<u16>, Vec<u32>)> {
        let cells = self.cells()?;
        let (slot_part, member_part) =
            cells.split_at_checked(table::slot_cells(self.ring) as usize)?;
        // A plain loop: an iterator chain here cost a rewrite 80 us.
        let mut slots: Vec<u16> = Vec::with_capacity(slot_part.len() * 4);
        for &c in slot_part {
            slots.extend_from_slice(&[
                c as u16,
                (c >> 16) as u16,
                (c >> 32) as u16,
                (c >> 48) as u16,
            ]);
        }
        slots.truncate(self.ring as usize);
        let count = slots
            .iter()
            .copied()
            .max()
            .map_or(0, |m| usize::from(m) + 1);
        let members = (0..count)
            .map(|m| {
                let cell = member_part.get(m / table::MEMBERS_PER_CELL as usize)?;
                Some(table::backend_of(*cell, m as u32))
            })
            .collect::<Option<Vec<u32>>>()?;
        Some((slots, members))
    }

    /// Every slot's backend slot, in order.
    fn entries(&self) -> Option<Vec<u32>> {
        let (slots, members) = self.members()?;
        slots
            .iter()
            .map(|&m| members.get(usize::from(m)).copied())
            .collect()
    }
}

/// How long a table that went out of use waits before it is reused or
/// freed: far longer than any program run that read the VIP record
/// before it was pointed elsewhere.
const RETIRE_AFTER: std::time::Duration = std::time::Duration::from_secs(1);
/// How long a table out of use waits, at least, when every table of the
/// outer array is live or cooling down and a rewrite needs one.
const RETIRE_EARLY: std::time::Duration = std::time::Duration::from_millis(10);
/// Most tables installed ahead of need in one go.
const PROVISION_MAX: usize = 64;
/// Fewest: a service whose backend flaps rewrites its table once per flip,
/// and each installation waits a grace period (about 10 ms); eight spares
/// (1 MiB at M = 65,537) cover the flips of a second.
const PROVISION_MIN: usize = 8;
/// Spare tables kept ready beyond the ones cooling down; more are freed.
const SPARES_KEPT: usize = 64;

/// Members a table is made with room for: 256 at least, else the next
/// power of two, so that tables stay interchangeable as pools change.
fn member_room(members: usize) -> u32 {
    u32::try_from(members.max(256).next_power_of_two()).unwrap_or(u32::MAX)
}

/// The Maglev tables of `maglev_tables` this process holds: live ones
/// (a VIP record names them), and spares, installed in the outer array
/// ahead of need. An update of an array of maps waits for an RCU grace
/// period (about 10 ms here); a rewrite writes into a spare through its
/// memory mapping and pays none.
#[derive(Default)]
struct TablePool {
    tables: HashMap<u32, InnerTable>,
    live: HashSet<u32>,
    /// Held tables not live, with when they may be reused.
    spare: Vec<(std::time::Instant, u32)>,
    /// Outer indices that a VIP record of an earlier `lbd` still names.
    foreign: HashSet<u32>,
    /// Outer indices of foreign tables that went out of use, with when
    /// they may be freed.
    foreign_retired: Vec<(std::time::Instant, u32)>,
    /// A one-cell table installed over tables being freed (one batch
    /// update, one grace period, for all of them).
    placeholder: Option<Array<MapData, u64>>,
}

impl TablePool {
    /// Whether the table in outer slot `slot` is ours and of this shape.
    fn fits(&self, slot: u32, ring: u32, room: u32) -> bool {
        self.tables
            .get(&slot)
            .is_some_and(|t| t.ring == ring && t.room == room)
    }
}

fn map_err(op: impl Into<String>) -> impl FnOnce(MapError) -> BalancerError {
    let op = op.into();
    move |source| BalancerError::Map { op, source }
}

/// A second handle on the loaded object's per-CPU counter map `name` (by
/// map id): the object keeps its own, which the stats readers use.
fn counters_handle(
    ebpf: &aya::Ebpf,
    name: &'static str,
) -> Result<PerCpuArray<MapData, TrafficCounters>, BalancerError> {
    let op = || format!("opening {name}");
    let Some(Map::PerCpuArray(data)) = ebpf.map(name) else {
        return Err(BalancerError::Map {
            op: op(),
            source: MapError::InvalidName { name: name.into() },
        });
    };
    let id = data.info().map_err(map_err(op()))?.id();
    let data = MapData::from_id(id).map_err(map_err(op()))?;
    PerCpuArray::try_from(Map::PerCpuArray(data)).map_err(map_err(op()))
}

/// Zero cell `index` of a per-CPU counter map on every CPU.
fn zero_counters(
    map: &mut PerCpuArray<MapData, TrafficCounters>,
    index: u32,
    what: &str,
) -> Result<(), BalancerError> {
    let op = || format!("zeroing the counters of {what}");
    let cpus = aya::util::nr_cpus().map_err(|(_, e)| map_err(op())(MapError::IoError(e)))?;
    let zeros = PerCpuValues::try_from(vec![TrafficCounters::default(); cpus])
        .map_err(|e| map_err(op())(MapError::IoError(e)))?;
    map.set(index, zeros, 0).map_err(map_err(op()))
}

impl EbpfMaps {
    /// Take the writable maps out of a loaded object (pin them first: a
    /// taken map is no longer reachable through the object). The traffic
    /// counter maps stay in the object; this opens second handles on them.
    ///
    /// # Errors
    /// A map is missing or has the wrong type.
    pub fn take(ebpf: &mut aya::Ebpf) -> Result<Self, BalancerError> {
        use lb_common::{
            backend::BACKENDS_MAP,
            config::CONFIG_MAP,
            stats::{STATS_BACKEND_MAP, STATS_VIP_MAP},
            vip::{MAGLEV_TABLES_MAP, VIP_FILTER_MAP, VIP_IDS_MAP, VIP_INDEX_MAP, VIPS_MAP},
        };
        let stats_vip = counters_handle(ebpf, STATS_VIP_MAP)?;
        let stats_backend = counters_handle(ebpf, STATS_BACKEND_MAP)?;
        let mut take = |name: &'static str| {
            ebpf.take_map(name).ok_or_else(|| BalancerError::Map {
                op: format!("taking map {name}"),
                source: MapError::InvalidName { name: name.into() },
            })
        };
        Ok(Self {
            vips: BpfHashMap::try_from(take(VIPS_MAP)?).map_err(map_err("opening vips"))?,
            vip_ids: Array::try_from(take(VIP_IDS_MAP)?).map_err(map_err("opening vip_ids"))?,
            vip_filter: Array::try_from(take(VIP_FILTER_MAP)?)
                .map_err(map_err("opening vip_filter"))?,
            backends: Array::try_from(take(BACKENDS_MAP)?).map_err(map_err("opening backends"))?,
            tables_data: match take(MAGLEV_TABLES_MAP)? {
                Map::ArrayOfMaps(data) => data,
                _ => {
                    return Err(BalancerError::Map {
                        op: "opening maglev_tables".into(),
                        source: MapError::InvalidName {
                            name: MAGLEV_TABLES_MAP.into(),
                        },
                    });
                }
            },
            config: Array::try_from(take(CONFIG_MAP)?).map_err(map_err("opening config"))?,
            stats_vip,
            stats_backend,
            pool: TablePool::default(),
            vip_index: VipIndexMapping::new(take(VIP_INDEX_MAP)?)?,
        })
    }

    /// Install `maps` at outer indices `slots` with one system call (one
    /// RCU grace period).
    fn install(&self, slots: &[u32], maps: &[&Array<MapData, u64>]) -> Result<(), BalancerError> {
        use std::os::fd::{AsFd as _, AsRawFd as _};
        let fds: Vec<u32> = maps
            .iter()
            .map(|m| u32::try_from(m.map().fd().as_fd().as_raw_fd()).unwrap_or(u32::MAX))
            .collect();
        crate::sys::map_batch::update_batch(self.tables_data.fd().as_fd(), slots, &fds).map_err(
            |e| map_err(format!("installing {} Maglev tables", slots.len()))(MapError::IoError(e)),
        )
    }

    /// Up to `want` outer indices no table of ours and no live or cooling
    /// foreign one uses.
    fn free_slots(&self, want: usize) -> Vec<u32> {
        let pool = &self.pool;
        (0..lb_common::vip::TABLE_SLOTS)
            .filter(|s| !pool.tables.contains_key(s) && !pool.foreign.contains(s))
            .filter(|s| !pool.foreign_retired.iter().any(|(_, f)| f == s))
            .take(want)
            .collect()
    }

    /// Create and install `want` spare tables of `ring` slots and room for
    /// `room` members (fewer if the outer array has less room), in one
    /// system call.
    fn provision(&mut self, ring: u32, room: u32, want: usize) -> Result<(), BalancerError> {
        let slots = self.free_slots(want);
        if slots.is_empty() {
            return Err(BalancerError::Map {
                op: "finding room for another Maglev table".into(),
                source: MapError::IoError(std::io::Error::other(format!(
                    "all {} tables of maglev_tables are in use",
                    lb_common::vip::TABLE_SLOTS
                ))),
            });
        }
        let cells = table::cells(ring, room);
        let mut made = Vec::with_capacity(slots.len());
        for _ in &slots {
            let map = Array::<MapData, u64>::create(cells, TABLE_FLAGS)
                .map_err(map_err(format!("creating a {cells}-cell Maglev table")))?;
            made.push(InnerTable {
                map,
                read: std::sync::OnceLock::new(),
                ring,
                room,
            });
        }
        let maps: Vec<&Array<MapData, u64>> = made.iter().map(|t| &t.map).collect();
        self.install(&slots, &maps)?;
        let now = std::time::Instant::now();
        for (slot, t) in slots.into_iter().zip(made) {
            self.pool.tables.insert(slot, t);
            self.pool.spare.push((now, slot));
        }
        Ok(())
    }

    /// The spare table of this shape out of use longest, once it has been
    /// for [`RETIRE_EARLY`] (blocking until then: at most that long). A
    /// program run lasts microseconds: a table no VIP record has named
    /// for 10 ms is read by none.
    fn wait_for_spare(&mut self, ring: u32, room: u32) -> Option<u32> {
        let (at, &(from, slot)) = self
            .pool
            .spare
            .iter()
            .enumerate()
            .filter(|(_, (_, slot))| self.pool.fits(*slot, ring, room))
            .min_by_key(|(_, (from, _))| *from)?;
        let retired = from.checked_sub(RETIRE_AFTER)?;
        let wait = (retired + RETIRE_EARLY).saturating_duration_since(std::time::Instant::now());
        tracing::warn!(
            "every table of maglev_tables is live or cooling down: one out of use for {} ms is reused",
            retired.elapsed().as_millis().max(RETIRE_EARLY.as_millis())
        );
        std::thread::sleep(wait);
        self.pool.spare.swap_remove(at);
        Some(slot)
    }

    /// A spare table of this shape that may be reused now.
    fn take_spare(&mut self, ring: u32, room: u32) -> Option<u32> {
        let now = std::time::Instant::now();
        let at = self
            .pool
            .spare
            .iter()
            .position(|&(from, slot)| from <= now && self.pool.fits(slot, ring, room))?;
        Some(self.pool.spare.swap_remove(at).1)
    }
}

impl Maps for EbpfMaps {
    fn set_vip(&mut self, key: &VipKey, meta: &VipMeta) -> Result<(), BalancerError> {
        // The id slot first: a flow recorded right after the hash entry
        // appears must find its VIP by id.
        self.vip_ids
            .set(meta.id, meta, 0)
            .map_err(map_err(format!("writing VIP id {}", meta.id)))?;
        self.vips
            .insert(key, meta, 0)
            .map_err(map_err("writing a VIP"))
    }

    fn remove_vip(&mut self, key: &VipKey, id: u32) -> Result<(), BalancerError> {
        self.vips.remove(key).map_err(map_err("removing a VIP"))?;
        self.vip_ids
            .set(id, VipMeta::default(), 0)
            .map_err(map_err(format!("clearing VIP id {id}")))
    }

    fn set_filter(&mut self, bucket: u32, bits: u8) -> Result<(), BalancerError> {
        self.vip_filter
            .set(bucket, bits, 0)
            .map_err(map_err(format!("writing VIP filter bucket {bucket}")))
    }

    fn write_table(&mut self, ring: &[u16], members: &[u32]) -> Result<u32, BalancerError> {
        let too_big = || BalancerError::Map {
            op: "sizing a Maglev table".into(),
            source: MapError::IoError(std::io::Error::from(std::io::ErrorKind::InvalidInput)),
        };
        let ring_size = u32::try_from(ring.len()).map_err(|_| too_big())?;
        let room = member_room(members.len());
        let mut slot = self.take_spare(ring_size, room);
        if slot.is_none() {
            // As many as half the live tables, 8 to 64.
            let want = (self.pool.live.len() / 2).clamp(PROVISION_MIN, PROVISION_MAX);
            match self.provision(ring_size, room, want) {
                Ok(()) => slot = self.take_spare(ring_size, room),
                // The outer array is full (every table live or cooling
                // down, as when all services were just rewritten): the
                // table of this shape out of use longest, early.
                Err(e) => slot = Some(self.wait_for_spare(ring_size, room).ok_or(e)?),
            }
        }
        let slot = slot.ok_or_else(too_big)?;
        let t = self.pool.tables.get_mut(&slot).ok_or_else(too_big)?;
        // No VIP record names this table: the kernel does not read it.
        if let Err(e) = t.write(ring, members) {
            self.pool.spare.push((std::time::Instant::now(), slot));
            return Err(e);
        }
        self.pool.live.insert(slot);
        Ok(slot)
    }

    fn reserve_tables(&mut self, shapes: &[(u32, usize)]) {
        let mut wanted: HashMap<(u32, u32), usize> = HashMap::new();
        for &(ring, members) in shapes {
            *wanted.entry((ring, member_room(members))).or_default() += 1;
        }
        let now = std::time::Instant::now();
        for ((ring, room), count) in wanted {
            let ready = self
                .pool
                .spare
                .iter()
                .filter(|&&(from, slot)| from <= now && self.pool.fits(slot, ring, room))
                .count();
            // Room is left for the tables that rewrites (health flips)
            // take while these are written.
            let room_left = self
                .free_slots(usize::MAX)
                .len()
                .saturating_sub(PROVISION_MAX);
            let want = count.saturating_sub(ready).min(room_left);
            if want > 0
                && let Err(e) = self.provision(ring, room, want)
            {
                // The writes provision for themselves, a few at a time.
                tracing::warn!("installing {want} Maglev tables ahead: {e}");
            }
        }
    }

    fn drop_table(&mut self, slot: u32) {
        let reuse = std::time::Instant::now() + RETIRE_AFTER;
        if self.pool.live.remove(&slot) {
            self.pool.spare.push((reuse, slot));
        } else if self.pool.foreign.remove(&slot) {
            self.pool.foreign_retired.push((reuse, slot));
        }
    }

    fn adopt_tables(&mut self, slots: &[u32]) {
        self.pool.foreign.extend(slots.iter().copied());
    }

    fn tidy(&mut self) {
        // Tables mapped to be read (a churn count, a flow scan) are
        // unmapped: the next read maps them again.
        for t in self.pool.tables.values_mut() {
            t.read.take();
        }
        let now = std::time::Instant::now();
        // Spares beyond what rewrites need, and foreign tables out of use,
        // are freed: the placeholder replaces them all in one call.
        let mut ready: Vec<(std::time::Instant, u32)> = self
            .pool
            .spare
            .iter()
            .copied()
            .filter(|&(from, _)| from <= now)
            .collect();
        ready.sort_unstable();
        let excess: Vec<u32> = ready
            .iter()
            .skip(SPARES_KEPT)
            .map(|&(_, slot)| slot)
            .collect();
        let foreign: Vec<u32> = self
            .pool
            .foreign_retired
            .iter()
            .filter(|&&(from, _)| from <= now)
            .map(|&(_, slot)| slot)
            .collect();
        let slots: Vec<u32> = excess.iter().chain(&foreign).copied().collect();
        if slots.is_empty() {
            return;
        }
        if self.pool.placeholder.is_none() {
            match Array::<MapData, u64>::create(1, TABLE_FLAGS) {
                Ok(map) => self.pool.placeholder = Some(map),
                Err(e) => {
                    tracing::warn!("creating the placeholder Maglev table: {e}");
                    return;
                }
            }
        }
        let Some(placeholder) = self.pool.placeholder.as_ref() else {
            return;
        };
        let maps = vec![placeholder; slots.len()];
        if let Err(e) = self.install(&slots, &maps) {
            tracing::warn!("freeing {} Maglev tables: {e}", slots.len());
            return;
        }
        for slot in &excess {
            self.pool.tables.remove(slot);
        }
        self.pool.spare.retain(|(_, s)| !excess.contains(s));
        self.pool
            .foreign_retired
            .retain(|(_, s)| !foreign.contains(s));
    }

    fn read_table(&self, slot: u32) -> Option<Vec<u32>> {
        self.pool.tables.get(&slot)?.entries()
    }

    fn read_table_members(&self, slot: u32) -> Option<(Vec<u16>, Vec<u32>)> {
        self.pool.tables.get(&slot)?.members()
    }

    fn table_entry(&self, slot: u32, index: u32) -> Option<u32> {
        self.pool.tables.get(&slot)?.entry(index)
    }

    fn set_backend(&mut self, index: u32, backend: &Backend) -> Result<(), BalancerError> {
        self.backends
            .set(index, backend, 0)
            .map_err(map_err(format!("writing backend slot {index}")))
    }

    fn set_backends_batch(&mut self, writes: &[(u32, Backend)]) -> Result<(), BalancerError> {
        use std::os::fd::AsFd as _;
        if writes.is_empty() {
            return Ok(());
        }
        let (keys, values): (Vec<u32>, Vec<Backend>) = writes.iter().copied().unzip();
        crate::sys::map_batch::update_batch(self.backends.map().fd().as_fd(), &keys, &values)
            .map_err(|e| {
                map_err(format!("writing {} backend slots", keys.len()))(MapError::IoError(e))
            })
    }

    fn reset_backend_stats(&mut self, index: u32) -> Result<(), BalancerError> {
        zero_counters(
            &mut self.stats_backend,
            index,
            &format!("backend slot {index}"),
        )
    }

    fn reset_backend_stats_batch(&mut self, indices: &[u32]) -> Result<(), BalancerError> {
        use std::os::fd::AsFd as _;
        if indices.is_empty() {
            return Ok(());
        }
        let op = || format!("zeroing the counters of {} backend slots", indices.len());
        let cpus = aya::util::nr_cpus().map_err(|(_, e)| map_err(op())(MapError::IoError(e)))?;
        // A per-CPU value is one copy per possible CPU, each 8-byte aligned
        // (the counters are `u64`s).
        let zeros = vec![TrafficCounters::default(); indices.len() * cpus];
        crate::sys::map_batch::update_batch(self.stats_backend.map().fd().as_fd(), indices, &zeros)
            .map_err(|e| map_err(op())(MapError::IoError(e)))
    }

    fn reset_vip_stats(&mut self, id: u32) -> Result<(), BalancerError> {
        zero_counters(&mut self.stats_vip, id, &format!("VIP id {id}"))
    }

    fn backend_capacity(&self) -> u32 {
        self.backends.len()
    }

    fn set_config(&mut self, config: &Config) -> Result<(), BalancerError> {
        self.config
            .set(0, config, 0)
            .map_err(map_err("writing config"))
    }

    fn write_vip_index(
        &mut self,
        half: u32,
        entries: &[VipIndexEntry],
    ) -> Result<(), BalancerError> {
        assert_eq!(entries.len(), VIP_INDEX_SLOTS as usize, "a whole half");
        let start = (half as usize & 1) * VIP_INDEX_SLOTS as usize;
        // The kernel does not read this half until `Config::vip_index`
        // names it.
        let all = self
            .vip_index
            .mem
            .slice_mut::<VipIndexEntry>(2 * VIP_INDEX_SLOTS as usize);
        all[start..start + entries.len()].copy_from_slice(entries);
        Ok(())
    }

    fn read_back(&self) -> Result<MapState, BalancerError> {
        let config = self.config.get(&0, 0).map_err(map_err("reading config"))?;
        let vips = self
            .vips
            .iter()
            .collect::<Result<Vec<_>, _>>()
            .map_err(map_err("reading vips"))?;
        let mut backends = Vec::new();
        for (index, backend) in self.backends.iter().enumerate() {
            let backend = backend.map_err(map_err("reading backends"))?;
            if backend.flags & backend_flags::ACTIVE != 0 {
                backends.push((u32::try_from(index).expect("slots fit u32"), backend));
            }
        }
        Ok(MapState {
            config,
            vips,
            backends,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records every write in order; can be told to fail table writes.
    /// Keeps packet counters per VIP id and backend slot as the kernel
    /// does (tests add traffic with [`Fake::forward`]).
    #[derive(Default)]
    struct Fake {
        log: Vec<String>,
        vips: HashMap<VipKey, VipMeta>,
        filter: HashMap<u32, u8>,
        tables: HashMap<u32, Vec<u32>>,
        backends: HashMap<u32, Backend>,
        /// Packets per VIP id (`stats_vip`).
        vip_packets: HashMap<u32, u64>,
        /// Packets per backend slot (`stats_backend`).
        backend_packets: HashMap<u32, u64>,
        fail_tables: bool,
        config: Config,
        vip_index: [Vec<VipIndexEntry>; 2],
    }

    impl Maps for Fake {
        fn set_vip(&mut self, key: &VipKey, meta: &VipMeta) -> Result<(), BalancerError> {
            self.log.push(format!(
                "vip id={} table={} flags={}",
                meta.id, meta.table, meta.flags
            ));
            self.vips.insert(*key, *meta);
            Ok(())
        }
        fn remove_vip(&mut self, key: &VipKey, id: u32) -> Result<(), BalancerError> {
            self.log.push(format!("remove vip id={id}"));
            self.vips.remove(key);
            Ok(())
        }

        fn set_filter(&mut self, bucket: u32, bits: u8) -> Result<(), BalancerError> {
            self.log.push(format!("filter {bucket}={bits}"));
            if bits == 0 {
                self.filter.remove(&bucket);
            } else {
                self.filter.insert(bucket, bits);
            }
            Ok(())
        }
        fn write_table(&mut self, ring: &[u16], members: &[u32]) -> Result<u32, BalancerError> {
            if self.fail_tables {
                return Err(BalancerError::Mmap(std::io::Error::other("injected")));
            }
            // The lowest index no table holds.
            let slot = (0..u32::MAX)
                .find(|s| !self.tables.contains_key(s))
                .unwrap_or(0);
            self.log.push(format!("table {slot}"));
            self.tables.insert(
                slot,
                ring.iter().map(|&m| members[usize::from(m)]).collect(),
            );
            Ok(slot)
        }
        fn drop_table(&mut self, slot: u32) {
            self.log.push(format!("drop table {slot}"));
            self.tables.remove(&slot);
        }
        fn read_table(&self, slot: u32) -> Option<Vec<u32>> {
            self.tables.get(&slot).cloned()
        }
        fn set_backend(&mut self, index: u32, backend: &Backend) -> Result<(), BalancerError> {
            self.log.push(format!(
                "backend {index} active={}",
                backend.flags & backend_flags::ACTIVE
            ));
            self.backends.insert(index, *backend);
            Ok(())
        }
        fn reset_backend_stats(&mut self, index: u32) -> Result<(), BalancerError> {
            self.log.push(format!("reset backend {index}"));
            self.backend_packets.remove(&index);
            Ok(())
        }
        fn reset_vip_stats(&mut self, id: u32) -> Result<(), BalancerError> {
            self.log.push(format!("reset vip id={id}"));
            self.vip_packets.remove(&id);
            Ok(())
        }
        fn set_config(&mut self, config: &Config) -> Result<(), BalancerError> {
            self.log
                .push(format!("config vip_index={}", config.vip_index));
            self.config = *config;
            Ok(())
        }
        fn write_vip_index(
            &mut self,
            half: u32,
            entries: &[VipIndexEntry],
        ) -> Result<(), BalancerError> {
            self.log.push(format!("vip_index {half}"));
            self.vip_index[half as usize] = entries.to_vec();
            Ok(())
        }

        fn read_back(&self) -> Result<MapState, BalancerError> {
            let mut backends: Vec<(u32, Backend)> = self
                .backends
                .iter()
                .filter(|(_, b)| b.flags & backend_flags::ACTIVE != 0)
                .map(|(&i, &b)| (i, b))
                .collect();
            backends.sort_by_key(|&(i, _)| i);
            Ok(MapState {
                config: self.config,
                vips: self.vips.iter().map(|(&k, &m)| (k, m)).collect(),
                backends,
            })
        }
    }

    impl Fake {
        /// What the kernel does with `packets` packets of one flow recorded
        /// with VIP `vip_id` and backend slot `slot`: forward and count them
        /// only while the slot is active and serves that VIP (else the flow
        /// misses and is re-balanced). Returns whether they were forwarded.
        fn forward(&mut self, vip_id: u32, slot: u32, packets: u64) -> bool {
            let live = self
                .backends
                .get(&slot)
                .is_some_and(|b| b.flags & backend_flags::ACTIVE != 0 && b.vip_id == vip_id);
            if live {
                *self.vip_packets.entry(vip_id).or_default() += packets;
                *self.backend_packets.entry(slot).or_default() += packets;
            }
            live
        }
    }

    /// The VIP id of `key`.
    fn id_of(b: &Balancer<Fake>, key: &ServiceKey) -> u32 {
        b.services().find(|(k, _, _)| *k == key).unwrap().2
    }

    /// The backend slots of `key`, in the order given.
    fn slots_of(b: &Balancer<Fake>, key: &ServiceKey) -> Vec<u32> {
        b.backends(key).unwrap().iter().map(|(_, i)| *i).collect()
    }

    /// Packets per backend address of `key`, read from the fake's counters
    /// through the service's slots (as `traffic_stats` reads the kernel's).
    fn packets_by_backend(b: &Balancer<Fake>, key: &ServiceKey) -> Vec<(IpAddr, u64)> {
        b.backends(key)
            .unwrap()
            .iter()
            .map(|(spec, slot)| {
                let n = b.maps().backend_packets.get(slot).copied().unwrap_or(0);
                (spec.addr, n)
            })
            .collect()
    }

    fn key(last: u8) -> ServiceKey {
        ServiceKey {
            vip: IpAddr::from([198, 18, 0, last]),
            port: 80,
            proto: Protocol::Tcp,
        }
    }
    fn spec() -> ServiceSpec {
        ServiceSpec {
            mode: Mode::Dsr,
            ring_size: 251,
            on_no_backend: NoBackend::Drop,
            ..ServiceSpec::default()
        }
    }
    fn be(last: u8, weight: u32) -> BackendSpec {
        BackendSpec {
            addr: IpAddr::from([198, 18, 1, last]),
            weight,
            mac: [2, 0, 0, 0, 0, last],
            port: 0,
            snat: None,
            arm: 0,
        }
    }
    /// The table the kernel reads for `key`, via the VIP record.
    fn live_table(b: &Balancer<Fake>, key: &ServiceKey) -> Vec<u32> {
        let meta = b.maps().vips[&key.map_key()];
        b.maps().tables[&meta.table].clone()
    }

    /// The id the kernel finds for `key` in the live half of the index.
    fn indexed(b: &Balancer<Fake>, key: &ServiceKey) -> Option<u32> {
        let m = b.maps();
        let half = m.config.vip_index;
        lb_common::vip::vip_index_find(u32::from(half), &key.map_key(), |slot| {
            m.vip_index[half as usize].get((slot % VIP_INDEX_SLOTS) as usize)
        })
    }

    #[test]
    fn the_vip_index_follows_services_and_flips_only_when_whole() {
        let mut b = Balancer::new(Fake::default());
        b.upsert_service(key(100), spec()).unwrap();
        b.upsert_service(key(101), spec()).unwrap();
        let id = |b: &Balancer<Fake>, k| b.services().find(|(s, _, _)| **s == k).unwrap().2;
        assert_eq!(indexed(&b, &key(100)), Some(id(&b, key(100))));
        assert_eq!(indexed(&b, &key(101)), Some(id(&b, key(101))));
        // Each change writes the other half whole, then flips to it.
        let log = &b.maps().log;
        let flips: Vec<&String> = log
            .iter()
            .filter(|l| l.starts_with("vip_index") || l.starts_with("config"))
            .collect();
        assert_eq!(
            flips,
            [
                "vip_index 1",
                "config vip_index=1",
                "vip_index 0",
                "config vip_index=0"
            ]
        );

        b.maps.log.clear();
        b.remove_service(&key(100)).unwrap();
        assert_eq!(indexed(&b, &key(100)), None);
        assert_eq!(indexed(&b, &key(101)), Some(id(&b, key(101))));
        let log = &b.maps().log;
        let flip = log.iter().position(|l| l == "config vip_index=1").unwrap();
        let gone = log
            .iter()
            .position(|l| l.starts_with("remove vip"))
            .unwrap();
        assert!(
            flip < gone,
            "out of the index before the record goes: {log:?}"
        );

        // New settings keep the live half.
        b.set_config(&Config {
            mtu: 9000,
            ..Config::default()
        })
        .unwrap();
        assert_eq!(b.maps().config.vip_index, 1);
        assert_eq!(indexed(&b, &key(101)), Some(id(&b, key(101))));
    }

    #[test]
    fn table_rewrites_count_the_slots_they_move() {
        let mut b = Balancer::new(Fake::default());
        let k = key(100);
        b.upsert_service(k, spec()).unwrap();
        let four = [be(1, 1), be(2, 1), be(3, 1), be(4, 1)];
        b.set_backends(&k, &four).unwrap();
        // The first table has nothing to compare with.
        assert_eq!(b.churn(&k).unwrap().rewrites, 0);
        // One of four leaves: its quarter of the slots has to move; Maglev
        // moves those and hardly any more.
        b.set_backends(&k, &four[..3]).unwrap();
        let c = b.churn(&k).unwrap();
        let (size, changed, necessary) = c.last.unwrap();
        assert_eq!((c.rewrites, size), (1, 251));
        assert!((55..=70).contains(&necessary), "{c:?}");
        assert!(changed >= necessary && changed <= necessary + 10, "{c:?}");
        // The same pool again moves nothing.
        b.set_backends(&k, &four[..3]).unwrap();
        assert_eq!(b.churn(&k).unwrap().last, Some((251, 0, 0)));
        // It returns: its share comes back to it.
        b.set_backends(&k, &four).unwrap();
        let c = b.churn(&k).unwrap();
        let (_, changed, necessary) = c.last.unwrap();
        assert!((55..=70).contains(&necessary), "{c:?}");
        assert!(changed >= necessary && changed <= necessary + 10, "{c:?}");
        assert_eq!(c.rewrites, 3);
        assert!(c.slots_changed >= c.slots_necessary && c.slots_necessary >= 110);
        // A new ring size moves everything, which says nothing about
        // disruption: that rewrite is not counted; the next one is.
        let mut bigger = spec();
        bigger.ring_size = 509;
        b.upsert_service(k, bigger).unwrap();
        b.set_backends(&k, &four).unwrap();
        let after = b.churn(&k).unwrap();
        assert_eq!(after.last.map(|l| l.0), Some(509), "{after:?}");
        assert_eq!(
            (after.slots_changed, after.slots_necessary),
            (c.slots_changed, c.slots_necessary),
            "only the same pool at the new size was compared: {after:?}"
        );
    }

    #[test]
    fn new_service_has_no_backend_until_set() {
        let mut b = Balancer::new(Fake::default());
        b.upsert_service(key(100), spec()).unwrap();
        let meta = b.maps().vips[&key(100).map_key()];
        assert_eq!(meta.flags & vip_flags::NO_BACKEND, vip_flags::NO_BACKEND);
        assert_eq!(meta.ring_size, 251);
    }

    #[test]
    fn prefilter_bits_follow_the_services_on_an_address() {
        use filter_bits::{ANY_PORT, NAT, NAT_REAL, PLAIN, PORT};
        let mut b = Balancer::new(Fake::default());
        let exact = key(100);
        let any = ServiceKey { port: 0, ..exact };
        let bucket = filter_bucket(&addr16(exact.vip));
        b.upsert_service(exact, spec()).unwrap();
        assert_eq!(b.maps().filter.get(&bucket), Some(&(PORT | PLAIN)));
        b.upsert_service(any, spec()).unwrap();
        assert_eq!(
            b.maps().filter.get(&bucket),
            Some(&(PORT | ANY_PORT | PLAIN))
        );
        b.remove_service(&exact).unwrap();
        assert_eq!(b.maps().filter.get(&bucket), Some(&(ANY_PORT | PLAIN)));
        b.remove_service(&any).unwrap();
        assert_eq!(b.maps().filter.get(&bucket), None, "bucket cleared");
        // A fullnat service: the NAT table for its VIP, replies recognised
        // by its backends' addresses, which stay marked after they leave.
        let nat = ServiceKey { port: 443, ..exact };
        let fullnat = ServiceSpec {
            mode: Mode::Fullnat,
            ..spec()
        };
        b.upsert_service(nat, fullnat).unwrap();
        assert_eq!(b.maps().filter.get(&bucket), Some(&(PORT | NAT)));
        let backend = be(11, 1);
        b.set_backends(&nat, &[backend]).unwrap();
        let real = filter_bucket(&addr16(backend.addr));
        assert_eq!(
            b.maps().filter.get(&real).map(|v| v & NAT_REAL),
            Some(NAT_REAL)
        );
        b.set_backends(&nat, &[]).unwrap();
        assert_eq!(
            b.maps().filter.get(&real).map(|v| v & NAT_REAL),
            Some(NAT_REAL)
        );
    }

    #[test]
    fn a_reused_id_gets_a_new_generation() {
        let mut b = Balancer::new(Fake::default());
        b.upsert_service(key(100), spec()).unwrap();
        let first = b.maps().vips[&key(100).map_key()];
        assert_ne!(first.generation, 0, "0 means no VIP");
        b.set_backends(&key(100), &[be(1, 1)]).unwrap();
        let updated = b.maps().vips[&key(100).map_key()];
        assert_eq!(
            updated.generation, first.generation,
            "same VIP, same generation"
        );
        b.remove_service(&key(100)).unwrap();
        b.upsert_service(key(101), spec()).unwrap();
        let second = b.maps().vips[&key(101).map_key()];
        assert_eq!(second.id, first.id, "id reused");
        assert_ne!(second.generation, first.generation);
    }

    /// A restarted lbd adopting the maps, given the same services and
    /// pools, finds every VIP id, generation and backend slot where the
    /// last one left them and rewrites nothing the kernel reads but the
    /// inactive table copies; what the configuration dropped goes, and new
    /// ids and slots do not collide with adopted ones.
    #[test]
    fn adopting_maps_keeps_ids_generations_and_slots() {
        let mut b = Balancer::new(Fake::default());
        let svc_a = key(100);
        let svc_b = key(101);
        let gone = key(102);
        for k in [svc_a, svc_b, gone] {
            b.upsert_service(k, spec()).unwrap();
        }
        b.set_backends(&svc_a, &[be(11, 1), be(12, 1), be(13, 1)])
            .unwrap();
        b.set_backends(&svc_b, &[be(12, 1), be(14, 1)]).unwrap();
        b.set_backends(&gone, &[be(15, 1)]).unwrap();
        // A freed id and slot before the "crash".
        b.set_backends(&svc_a, &[be(11, 1), be(13, 1)]).unwrap();
        let before: Vec<(ServiceKey, u32, Vec<u32>)> = [svc_a, svc_b]
            .iter()
            .map(|k| (*k, id_of(&b, k), slots_of(&b, k)))
            .collect();
        let generations: Vec<u32> = b.maps.vips.values().map(|m| m.generation).collect();
        let live_a = live_table(&b, &svc_a);
        let vip_index = b.config.vip_index;

        let mut maps = b.into_maps();
        maps.log.clear();
        let mut b = Balancer::adopt(maps).unwrap();
        assert!(b.maps().log.is_empty(), "adopting writes nothing");
        assert_eq!(b.config.vip_index, vip_index);
        b.upsert_service(svc_a, spec()).unwrap();
        b.upsert_service(svc_b, spec()).unwrap();
        b.set_backends(&svc_a, &[be(11, 1), be(13, 1)]).unwrap();
        b.set_backends(&svc_b, &[be(12, 1), be(14, 1)]).unwrap();
        b.remove_service(&gone).unwrap();
        for (k, id, slots) in &before {
            assert_eq!(id_of(&b, k), *id, "{k}: same VIP id");
            assert_eq!(&slots_of(&b, k), slots, "{k}: same backend slots");
        }
        let mut kept: Vec<u32> = b.maps.vips.values().map(|m| m.generation).collect();
        kept.sort_unstable();
        assert!(
            kept.iter().all(|g| generations.contains(g)),
            "generations kept"
        );
        assert_eq!(live_table(&b, &svc_a), live_a, "the same table");
        assert!(
            !b.maps()
                .log
                .iter()
                .any(|l| l.starts_with("reset")
                    || l.contains("active=0 ") && l.starts_with("backend")),
            "no slot of a kept pair reset or deactivated: {:?}",
            b.maps().log
        );
        // The removed service's slot and id are free again, and new ones
        // do not collide with kept ones.
        b.upsert_service(key(103), spec()).unwrap();
        b.set_backends(&key(103), &[be(16, 1), be(17, 1)]).unwrap();
        let taken: Vec<u32> = before.iter().flat_map(|(_, _, s)| s.clone()).collect();
        assert!(slots_of(&b, &key(103)).iter().all(|s| !taken.contains(s)));
        assert!(before.iter().all(|(_, id, _)| *id != id_of(&b, &key(103))));
    }

    #[test]
    fn persistence_and_source_hash_reach_the_vip_record_and_read_back() {
        let mut b = Balancer::new(Fake::default());
        let persistent = ServiceSpec {
            source_hash: true,
            persistence: Some(Persistence {
                timeout_s: 300,
                prefix: 96 + 24,
            }),
            ..spec()
        };
        b.upsert_service(key(100), persistent).unwrap();
        b.set_backends(&key(100), &[be(11, 1)]).unwrap();
        let meta = b.maps().vips[&key(100).map_key()];
        assert_eq!(
            meta.flags & (vip_flags::SOURCE_HASH | vip_flags::PERSIST),
            vip_flags::SOURCE_HASH | vip_flags::PERSIST
        );
        assert_eq!(meta.persist_timeout_s, 300);
        assert_eq!(meta.persist_prefix, 120);
        assert_eq!(meta.persist_mask[11..], [0xff, 0xff, 0xff, 0xff, 0]);
        assert!(b.translation().persistent(meta.id));
        // Turned off by an upsert (a reload): the record follows.
        b.upsert_service(key(100), spec()).unwrap();
        let meta = b.maps().vips[&key(100).map_key()];
        assert_eq!(
            meta.flags & (vip_flags::SOURCE_HASH | vip_flags::PERSIST),
            0
        );
        assert!(!b.translation().persistent(meta.id));
        b.upsert_service(key(100), persistent).unwrap();
        b.set_backends(&key(100), &[be(11, 1), be(12, 0)]).unwrap();
        // An adopting lbd reads the spec back, drained slots as weight 0.
        let b = Balancer::adopt(b.into_maps()).unwrap();
        let (_, spec, _) = b.services().next().unwrap();
        assert_eq!(*spec, persistent);
        let weights: Vec<u32> = b
            .backends(&key(100))
            .unwrap()
            .iter()
            .map(|(s, _)| s.weight)
            .collect();
        assert_eq!(weights, [1, 0]);
    }

    #[test]
    fn writes_backends_then_a_spare_table_then_points_at_it() {
        let mut b = Balancer::new(Fake::default());
        b.upsert_service(key(100), spec()).unwrap();
        b.maps.log.clear();
        b.set_backends(&key(100), &[be(11, 1), be(12, 1)]).unwrap();
        assert_eq!(
            b.maps().log,
            [
                "backend 0 active=1",
                "backend 1 active=1",
                "table 0",
                "vip id=0 table=0 flags=0"
            ]
        );
        b.maps.log.clear();
        // Swap .12 for .13: new slot first, a new table, the record points
        // at it, the old table goes, then .12 is released last.
        b.set_backends(&key(100), &[be(11, 1), be(13, 1)]).unwrap();
        assert_eq!(
            b.maps().log,
            [
                "backend 2 active=1",
                "table 1",
                "vip id=0 table=1 flags=0",
                "drop table 0",
                "backend 1 active=0"
            ]
        );
        let live = live_table(&b, &key(100));
        assert!(
            live.iter().all(|&i| i == 0 || i == 2),
            "only live slots in the table"
        );
    }

    /// Pools applied together (tables built on every core, identical
    /// pools built once) end as the same pools applied one by one: the
    /// same slots, tables and VIP records, and the same errors in place.
    #[test]
    fn many_pools_at_once_write_what_one_at_a_time_writes() {
        let keys: Vec<ServiceKey> = (100..106).map(key).collect();
        let shared = vec![be(11, 1), be(12, 2), be(13, 1)];
        let pools = vec![
            (keys[0], shared.clone()),
            (keys[1], vec![be(14, 1), be(15, 3)]),
            (keys[2], shared.clone()),
            (keys[3], vec![be(16, 1), be(16, 1)]), // a duplicate: refused
            (keys[4], vec![be(17, 0)]),            // all drained: no table
            (key(200), vec![be(18, 1)]),           // no such service
            (
                keys[5],
                (20..60).map(|i| be(i, 1 + u32::from(i % 3))).collect(),
            ),
            (keys[1], vec![be(14, 1)]), // the same service again, later
        ];
        let mut one = Balancer::new(Fake::default());
        let mut many = Balancer::new(Fake::default());
        for b in [&mut one, &mut many] {
            for k in &keys {
                b.upsert_service(*k, spec()).unwrap();
            }
        }
        let singly: Vec<bool> = pools
            .iter()
            .map(|(k, p)| one.set_backends(k, p).is_ok())
            .collect();
        let together: Vec<bool> = many
            .set_backends_many(&pools)
            .iter()
            .map(Result::is_ok)
            .collect();
        assert_eq!(together, singly);
        assert_eq!(singly, [true, true, true, false, true, false, true, true]);
        for k in &keys {
            assert_eq!(many.backends(k), one.backends(k), "{k}");
            let (m, o) = (many.maps(), one.maps());
            let (vm, vo) = (m.vips[&k.map_key()], o.vips[&k.map_key()]);
            assert_eq!(vm.flags, vo.flags, "{k}");
            if vo.flags & vip_flags::NO_BACKEND == 0 {
                assert_eq!(m.tables[&vm.table], o.tables[&vo.table], "{k}");
            }
        }
        assert_eq!(many.maps().backends, one.maps().backends);
    }

    /// Two services on the same backend addresses (as the lab's HTTP and
    /// Redis services): a slot, and so a counter cell, per (service,
    /// backend); traffic to one service shows under it only.
    #[test]
    fn services_sharing_backend_addresses_get_a_slot_and_counters_each() {
        let mut b = Balancer::new(Fake::default());
        let http = key(100);
        let redis = ServiceKey { port: 6379, ..http };
        for k in [http, redis] {
            b.upsert_service(k, spec()).unwrap();
            b.set_backends(&k, &[be(11, 1), be(12, 1)]).unwrap();
        }
        let (http_slots, redis_slots) = (slots_of(&b, &http), slots_of(&b, &redis));
        assert_eq!(http_slots.len(), 2);
        assert!(
            http_slots.iter().all(|i| !redis_slots.contains(i)),
            "no slot shared: {http_slots:?} {redis_slots:?}"
        );
        for k in [http, redis] {
            let id = id_of(&b, &k);
            for (spec, slot) in b.backends(&k).unwrap() {
                let written = b.maps().backends[slot];
                assert_eq!(written.addr, addr16(spec.addr));
                assert_eq!(written.vip_id, id, "slot {slot} serves {k}");
            }
            let live = live_table(&b, &k);
            let own = slots_of(&b, &k);
            assert!(live.iter().all(|i| own.contains(i)), "{k}: own slots only");
        }

        // 30 packets to HTTP's .11, 12 to its .12, nothing to Redis.
        let http_id = id_of(&b, &http);
        assert!(b.maps.forward(http_id, http_slots[0], 30));
        assert!(b.maps.forward(http_id, http_slots[1], 12));
        let (a11, a12) = (be(11, 1).addr, be(12, 1).addr);
        assert_eq!(packets_by_backend(&b, &http), [(a11, 30), (a12, 12)]);
        assert_eq!(packets_by_backend(&b, &redis), [(a11, 0), (a12, 0)]);
        // A flow recorded for Redis never goes through HTTP's slot.
        let redis_id = id_of(&b, &redis);
        assert!(!b.maps.forward(redis_id, http_slots[0], 5));
        assert_eq!(packets_by_backend(&b, &redis), [(a11, 0), (a12, 0)]);
        assert_eq!(b.maps().vip_packets.get(&redis_id), None);
        assert_eq!(b.maps().vip_packets[&http_id], 42);
    }

    /// Removing a backend from one service releases that service's slot
    /// only; the other service's slot for the same address stays live.
    #[test]
    fn a_service_releases_only_its_own_slots() {
        let mut b = Balancer::new(Fake::default());
        for k in [key(100), key(101)] {
            b.upsert_service(k, spec()).unwrap();
            b.set_backends(&k, &[be(11, 1)]).unwrap();
        }
        let slot = |b: &Balancer<Fake>, k| b.backends(&k).unwrap()[0].1;
        let (s100, s101) = (slot(&b, key(100)), slot(&b, key(101)));
        assert_ne!(s100, s101);
        b.set_backends(&key(100), &[]).unwrap();
        assert_eq!(b.maps().backends[&s100].flags, 0, "released");
        assert_eq!(
            b.maps().backends[&s101].flags,
            backend_flags::ACTIVE,
            "still used by .101"
        );
        b.remove_service(&key(101)).unwrap();
        assert_eq!(b.maps().backends[&s101].flags, 0, "released with it");
        b.remove_service(&key(100)).unwrap();
        assert!(b.maps().vips.is_empty());
    }

    /// A freed slot and a freed VIP id given to a new service start from
    /// zero: the counters are reset before the kernel can reach them, and
    /// the old service's recorded flows do not count against them.
    #[test]
    fn a_new_service_does_not_inherit_counts_of_a_reused_slot_or_id() {
        let mut b = Balancer::new(Fake::default());
        let old = key(100);
        b.upsert_service(old, spec()).unwrap();
        b.set_backends(&old, &[be(11, 1)]).unwrap();
        let (old_id, old_slot) = (id_of(&b, &old), b.backends(&old).unwrap()[0].1);
        assert!(b.maps.forward(old_id, old_slot, 100));
        let old_generation = b.maps().vips[&old.map_key()].generation;
        b.remove_service(&old).unwrap();
        assert!(!b.maps.forward(old_id, old_slot, 1), "slot inactive");

        b.maps.log.clear();
        let new = ServiceKey {
            port: 6379,
            ..key(101)
        };
        b.upsert_service(new, spec()).unwrap();
        b.set_backends(&new, &[be(12, 1)]).unwrap();
        let (new_id, new_slot) = (id_of(&b, &new), b.backends(&new).unwrap()[0].1);
        assert_eq!((new_id, new_slot), (old_id, old_slot), "id and slot reused");
        assert_eq!(packets_by_backend(&b, &new), [(be(12, 1).addr, 0)]);
        assert_eq!(b.maps().vip_packets.get(&new_id), None);
        let log = &b.maps().log;
        let at = |line: &str| log.iter().position(|l| l == line).unwrap();
        assert!(at(&format!("reset vip id={new_id}")) < at("vip id=0 table=0 flags=1"));
        assert!(
            at(&format!("reset backend {new_slot}")) < at(&format!("backend {new_slot} active=1")),
            "counters zeroed before the slot is live: {log:?}"
        );
        // The old service's flows carry an old generation: the kernel
        // drops them at the VIP check. Its id check on the slot holds for
        // the new service's flows only.
        assert_ne!(b.maps().vips[&new.map_key()].generation, old_generation);
        assert!(b.maps.forward(new_id, new_slot, 7));
        assert_eq!(packets_by_backend(&b, &new), [(be(12, 1).addr, 7)]);
    }

    #[test]
    fn weight_zero_keeps_slot_but_no_entries_and_all_drained_sets_no_backend() {
        let mut b = Balancer::new(Fake::default());
        b.upsert_service(key(100), spec()).unwrap();
        b.set_backends(&key(100), &[be(11, 0), be(12, 1)]).unwrap();
        assert_eq!(
            b.maps().backends[&0].flags,
            backend_flags::ACTIVE | backend_flags::DRAINED,
            "drained slot stays active, marked drained"
        );
        assert_eq!(b.maps().backends[&1].flags, backend_flags::ACTIVE);
        assert!(live_table(&b, &key(100)).iter().all(|&i| i == 1));
        b.set_backends(&key(100), &[be(11, 0), be(12, 0)]).unwrap();
        let meta = b.maps().vips[&key(100).map_key()];
        assert_eq!(meta.flags & vip_flags::NO_BACKEND, vip_flags::NO_BACKEND);
    }

    #[test]
    fn failed_table_write_keeps_old_table_live_and_releases_new_slots() {
        let mut b = Balancer::new(Fake::default());
        b.upsert_service(key(100), spec()).unwrap();
        b.set_backends(&key(100), &[be(11, 1)]).unwrap();
        let before = live_table(&b, &key(100));
        b.maps.fail_tables = true;
        assert!(b.set_backends(&key(100), &[be(11, 1), be(12, 1)]).is_err());
        assert_eq!(live_table(&b, &key(100)), before);
        assert_eq!(
            b.maps().backends[&1].flags,
            0,
            "slot taken for .12 released"
        );
        assert_eq!(b.backends(&key(100)).unwrap().len(), 1);
    }

    #[test]
    fn refuses_bad_input() {
        let mut b = Balancer::new(Fake::default());
        assert!(matches!(
            b.set_backends(&key(1), &[]),
            Err(BalancerError::NoService(_))
        ));
        b.upsert_service(
            key(100),
            ServiceSpec {
                mode: Mode::Ipip,
                ..spec()
            },
        )
        .unwrap();
        let v6 = BackendSpec {
            addr: "2001:db8::1".parse().unwrap(),
            weight: 1,
            mac: [0; 6],
            port: 0,
            snat: None,
            arm: 0,
        };
        assert!(matches!(
            b.set_backends(&key(100), &[v6]),
            Err(BalancerError::FamilyMismatch { .. })
        ));
        assert!(matches!(
            b.set_backends(&key(100), &[be(11, 1), be(11, 2)]),
            Err(BalancerError::DuplicateBackend { .. })
        ));
        b.upsert_service(
            key(101),
            ServiceSpec {
                ring_size: 250,
                ..spec()
            },
        )
        .unwrap();
        assert!(matches!(
            b.set_backends(&key(101), &[be(11, 1)]),
            Err(BalancerError::Maglev { .. })
        ));
    }
}
