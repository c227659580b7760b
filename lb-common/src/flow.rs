//! Connection table: map `flows`, a set-associative hash table with LRU
//! replacement, kept in a plain BPF array of [`FlowSet`]s.
//!
//! A flow's [`flow_hash`] picks its set (`hash & (sets - 1)`); the set holds
//! up to [`FLOW_WAYS`] flows. Lookup reads the set's directory (one cache
//! line of hash tags and last-seen times) and compares the key only in the
//! way whose tag matches. Insert reuses the flow's own way, else an empty one, else the way whose
//! flow was seen least recently: a full set evicts, it never refuses a flow.
//! A hit keeps a flow on its backend whatever happens to the pool.
//!
//! Why not the kernel's `BPF_MAP_TYPE_LRU_HASH`: one insert there costs
//! more than the whole new-flow budget (it takes the LRU list lock and the
//! bucket lock and moves nodes between lists; `cargo xtask bench dataplane`
//! measures it alone, side by side). An array lookup is inlined by the
//! verifier into pointer arithmetic, and a set is one map value, so a hit
//! or an insert is a few dozen instructions with no lock and no helper call.
//! Google's Maglev (Eisenbud et al., 2016) likewise tracks connections in
//! fixed-size tables of its own rather than a general-purpose map.
//!
//! Concurrency: two CPUs may write the same way at once (different flows
//! in one set), and a reader may see a way half written. Each entry carries
//! a check word ([`flow_check`]) over the flow hash and the state; a lookup
//! accepts an entry only if its key matches and its check word agrees with
//! what it read, so a torn entry reads as a miss (the flow is re-balanced
//! by Maglev, which gives the same backend unless the pool changed).
//!
//! Trade-off: eviction is per set, not global. A set can overflow while
//! the table as a whole still has room. Measured by the unit test
//! `premature_evictions_by_load` (random clients, 8 ways): with a quarter
//! of the capacity in use about 1 flow in 8,000 is evicted early, with half
//! about 1 in 120, with the table full 14%. The kernel test
//! `a_million_random_clients_in_a_table_for_two_million`
//! (`lb-lab/tests/full_table.rs`) measures half load through the XDP
//! program itself: 1 M random clients in a table of 2 M, every SYN
//! forwarded, 8,941 flows evicted early (`stats_flows`; 1 in 117), and
//! every other flow found again by its next packet, on its backend. An
//! evicted flow is re-balanced on its next packet, to the same backend
//! unless the pool changed meanwhile.
//!
//! Clients on a regular grid get the same rates: the multilinear flow
//! hash (`crate::hash`) is linear in the key's words, so their hashes lie
//! on a lattice, and [`flow_set_index`] mixes the hash (MurmurHash3's
//! finaliser) before taking the set. Without the mix, the kernel test
//! `a_million_consecutive_clients_in_a_table_for_two_million` (a /16 of
//! consecutive addresses times 16 consecutive ports) had 21% of its flows
//! evicted early at half load, more than a full table of random clients.
//!
//! Size the table at about twice the concurrent flows. Memory: 72 bytes
//! per flow of capacity (576 per set, plus one page per table), so 144 per
//! concurrent flow at that sizing, where the kernel's LRU hash charges 120
//! per flow (this key and state, Linux 6.18) but costs more per insert
//! than lb's whole new-flow path (see above). Measured, the kernel's charge
//! (`memlock`, as `bpftool map show` prints it) and the pages the map
//! really took (`/proc/vmallocinfo`) agreeing to the page: 72.0 MiB for
//! 1 M entries (`flow_table_memory_at_one_million_entries` in the same
//! kernel test file), 144.0 MiB for 2 M, 1,152.0 MiB for 16 M, and the
//! LRU hash 120.0 MiB for 1 M (`cargo xtask bench dataplane`).

use crate::hash::flow_hash;

/// Name of the connection table.
pub const FLOWS_MAP: &str = "flows";
/// Default number of flows.
pub const DEFAULT_FLOW_ENTRIES: u32 = 1 << 20;
/// Smallest table `lbd` accepts.
pub const MIN_FLOW_ENTRIES: u32 = FLOW_WAYS as u32;
/// Largest table `lbd` accepts (64 M flows, 4.5 GiB).
pub const MAX_FLOW_ENTRIES: u32 = 1 << 26;
/// Flows per set.
pub const FLOW_WAYS: usize = 8;
/// Symbol of the program's global holding `sets - 1`, set at load time
/// (`aya::EbpfLoader::set_global`) next to the map's size.
pub const FLOW_SET_MASK_SYMBOL: &str = "FLOW_SET_MASK";

/// Name of the ring buffer of new-flow events ([`FlowEvent`]).
pub const FLOW_EVENTS_MAP: &str = "flow_events";
/// Bytes in the new-flow ring buffer: 4 MiB, 65,536 events (each takes
/// its 56 bytes and an 8-byte record header) for `lbd` to drain.
pub const FLOW_EVENTS_BYTES: u32 = 4 << 20;
/// Symbol of the program's global that turns new-flow events on (nonzero;
/// set at load: `lbd` sets it when connection sync is configured, and the
/// verifier removes the event code when it is 0).
pub const FLOW_EVENTS_SYMBOL: &str = "FLOW_EVENTS_ON";

/// A flow the program has just recorded in the connection table, for
/// connection sync: what `lbd` tells its peers so their tables hold the
/// flow before they need it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct FlowEvent {
    /// The flow.
    pub key: FlowKey,
    /// The backend slot chosen (this node's index).
    pub backend: u32,
    /// The VIP id (this node's).
    pub vip_id: u32,
    /// The VIP's generation when the flow began.
    pub vip_generation: u32,
    /// Explicit padding, always 0.
    pub pad: u32,
}

const _: () = assert!(size_of::<FlowEvent>() == 56);

/// Sets (map entries) for a table of at least `flows` flows: a power of
/// two, at least one.
#[must_use]
pub const fn flow_sets(flows: u32) -> u32 {
    let sets = flows.div_ceil(FLOW_WAYS as u32);
    if sets <= 1 {
        1
    } else {
        sets.next_power_of_two()
    }
}

/// The set a flow hash selects, given `mask = sets - 1`.
#[inline(always)]
#[must_use]
pub const fn flow_set_index(hash: u32, mask: u32) -> u32 {
    // The flow hash is multilinear (`crate::hash`): linear in the key's
    // words, so clients on a regular grid (consecutive addresses and
    // ports) give hashes on a lattice, whose low bits piled a /16 of
    // consecutive clients into a fifth of the sets (21% of flows evicted
    // early at half load). MurmurHash3's finaliser mixes every bit into
    // every other first: a few ALU instructions per packet.
    let mut h = hash;
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^= h >> 16;
    h & mask
}

/// A flow's 5-tuple as the client sent it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[repr(C, align(4))]
pub struct FlowKey {
    /// Client address (v4-mapped for IPv4).
    pub src: [u8; 16],
    /// VIP address (v4-mapped for IPv4).
    pub dst: [u8; 16],
    /// Client port, network order.
    pub src_port_be: u16,
    /// VIP port, network order.
    pub dst_port_be: u16,
    /// IP protocol number.
    pub proto: u8,
    /// Explicit padding, always 0.
    pub pad: [u8; 3],
}

/// Words of a [`FlowKey`].
const KEY_WORDS: usize = size_of::<FlowKey>() / 4;

impl FlowKey {
    /// The key as ten native-endian words (it is `repr(C, align(4))`).
    #[inline(always)]
    #[must_use]
    pub const fn words(&self) -> &[u32; KEY_WORDS] {
        // SAFETY: FlowKey is 40 bytes, 4-aligned, padding spelled out as a
        // field, so it is exactly ten initialised u32s.
        unsafe { &*core::ptr::from_ref(self).cast::<[u32; KEY_WORDS]>() }
    }
}

/// Where a flow goes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct FlowState {
    /// Backend index.
    pub backend: u32,
    /// VIP id the flow belongs to.
    pub vip_id: u32,
    /// That VIP's generation (`VipMeta::generation`) when the flow began:
    /// a flow of a removed VIP never matches the id's next owner.
    pub vip_generation: u32,
    /// [`flow_check`] of the way.
    pub check: u32,
}

/// One way of a set: a flow and where it goes. 64 bytes, one cache line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct FlowEntry {
    /// The flow.
    pub key: FlowKey,
    /// Where it goes.
    pub state: FlowState,
    /// Explicit padding to the cache line, always 0.
    pub pad: [u32; 2],
}

/// One map entry: [`FLOW_WAYS`] flows whose hashes select this set.
///
/// The first cache line is a directory: each way's tag (its flow's hash,
/// 0 when empty) and when it was last seen. A lookup reads the directory
/// and then only the way whose tag matches; an insert picks its way from
/// the directory alone. So a set costs at most two cache lines, not nine,
/// which is what matters once the table is larger than the CPU caches.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C, align(64))]
pub struct FlowSet {
    /// [`flow_tag`] of each way's flow; 0: the way is empty.
    pub tags: [u32; FLOW_WAYS],
    /// When each way was last used, in units of [`FLOW_SEEN_UNIT_NS`] of
    /// `bpf_ktime_get_coarse_ns()` (wrapping: ages are compared, not
    /// times).
    pub seen: [u32; FLOW_WAYS],
    /// The flows.
    pub ways: [FlowEntry; FLOW_WAYS],
}

const _: () = assert!(size_of::<FlowEntry>() == 64 && size_of::<FlowSet>() == 64 * (FLOW_WAYS + 1));

/// A way's directory tag for a flow hash (never 0, which marks empty).
#[inline(always)]
#[must_use]
pub const fn flow_tag(hash: u32) -> u32 {
    hash | 1
}

/// The way where [`FlowSet::slot_for`] and [`FlowSet::find`] start their
/// scans: the hash's top bits (the low ones pick the set).
#[inline(always)]
#[must_use]
pub const fn first_way(hash: u32) -> usize {
    (hash >> (32 - FLOW_WAYS.trailing_zeros())) as usize
}

/// The directory's time unit, 2^20 ns (about 1 ms, the coarse clock's
/// own resolution): a busy flow writes its directory line at most once per
/// unit, and ages compare correctly up to 2^32 units (50 days).
pub const FLOW_SEEN_UNIT_NS: u64 = 1 << 20;

/// An evicted flow seen within this many time units (about 1.07 s) counts
/// as recent: most likely still live, so the table is too small.
pub const FLOW_RECENT_UNITS: u32 = 1 << 10;

/// What recording a flow displaced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Replaced {
    /// Nothing: the flow's own way, or an empty one.
    Nothing,
    /// A flow last seen [`FLOW_RECENT_UNITS`] or more ago.
    Idle,
    /// A flow seen within the last [`FLOW_RECENT_UNITS`].
    Recent,
}

/// A time in the directory's unit (see [`FlowSet::seen`]).
#[inline(always)]
#[must_use]
pub const fn flow_seen(now_ns: u64) -> u32 {
    (now_ns / FLOW_SEEN_UNIT_NS) as u32
}

/// How many time units ago `seen` was, at `now` (both [`flow_seen`]
/// values, wrapping). A `seen` slightly ahead of `now` is age 0, not an
/// age of four billion units: another CPU (or `lbd`, writing a synced
/// flow) may have stamped the way after this reader took its clock.
#[inline(always)]
#[must_use]
pub const fn flow_age(now: u32, seen: u32) -> u32 {
    let age = now.wrapping_sub(seen);
    if age > u32::MAX / 2 { 0 } else { age }
}

/// The check word of an entry: binds the state to the flow's hash, so an
/// entry torn between two writers (or read mid-write) fails the check.
#[inline(always)]
#[must_use]
pub const fn flow_check(hash: u32, backend: u32, vip_id: u32, vip_generation: u32) -> u32 {
    // Two independent multiplies by odd constants: a change in any one
    // field always changes the high half (odd times non-zero is non-zero
    // mod 2^32), several at once collide with odds of about 2^-32.
    let a = (hash as u64 | (backend as u64) << 32).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let b = (vip_id as u64 | (vip_generation as u64) << 32).wrapping_mul(0xc2b2_ae3d_27d4_eb4f);
    (a.wrapping_add(b) >> 32) as u32
}

/// Volatile read: the set may be written by another CPU meanwhile, and a
/// plain compare chain could be merged into a `memcmp` call, which BPF
/// does not have.
#[inline(always)]
fn read<T: Copy>(p: &T) -> T {
    // SAFETY: a reference is valid for reads.
    unsafe { core::ptr::read_volatile(p) }
}

/// Volatile write, so the order of a way's writes stays as written.
#[inline(always)]
fn write<T>(p: &mut T, v: T) {
    // SAFETY: a mutable reference is valid for writes.
    unsafe { core::ptr::write_volatile(p, v) }
}

impl FlowEntry {
    /// The way holds `key` (whatever the state of its check word).
    #[inline(always)]
    #[must_use]
    pub fn has_key(&self, key: &FlowKey) -> bool {
        let (a, b) = (self.key.words(), key.words());
        // Ports first (differ between a set's flows nearly always), then
        // the low words of the addresses (the IPv4 ones), then the rest.
        // `key`'s words are read in place too: hoisted out of a caller's
        // loop over the ways, they were ten spills on the BPF stack.
        read(&a[8]) == read(&b[8])
            && read(&a[3]) == read(&b[3])
            && read(&a[7]) == read(&b[7])
            && read(&a[9]) == read(&b[9])
            && read(&a[2]) == read(&b[2])
            && read(&a[6]) == read(&b[6])
            && read(&a[0]) == read(&b[0])
            && read(&a[1]) == read(&b[1])
            && read(&a[4]) == read(&b[4])
            && read(&a[5]) == read(&b[5])
    }

    /// The state, if the check word vouches for it (`hash`: the key's).
    #[inline(always)]
    #[must_use]
    pub fn valid_state(&self, hash: u32) -> Option<FlowState> {
        let s = FlowState {
            backend: read(&self.state.backend),
            vip_id: read(&self.state.vip_id),
            vip_generation: read(&self.state.vip_generation),
            check: read(&self.state.check),
        };
        (s.check == flow_check(hash, s.backend, s.vip_id, s.vip_generation)).then_some(s)
    }
}

impl FlowSet {
    /// The way holding `key` (hash `hash`) with a valid check word: its
    /// index (below [`FLOW_WAYS`]) and state.
    ///
    /// The scan starts where [`FlowSet::slot_for`]'s does, at the way the
    /// hash picks: a flow that found that way empty when it was recorded
    /// (in a set less than full, most flows) is found at the first tag.
    #[inline(always)]
    #[must_use]
    pub fn find(&self, key: &FlowKey, hash: u32) -> Option<(usize, FlowState)> {
        let tag = flow_tag(hash);
        let start = first_way(hash);
        let mut n = 0;
        while n < FLOW_WAYS {
            let i = (start + n) & (FLOW_WAYS - 1);
            if read(&self.tags[i]) == tag {
                let way = &self.ways[i];
                if way.has_key(key)
                    && let Some(state) = way.valid_state(hash)
                {
                    return Some((i, state));
                }
            }
            n += 1;
        }
        None
    }

    /// Mark way `i` used at `now_ns` (a directory write at most once per
    /// time unit, so a busy flow does not write on every packet).
    #[inline(always)]
    pub fn touch(&mut self, i: usize, now_ns: u64) {
        let seen = &mut self.seen[i & (FLOW_WAYS - 1)];
        let now = flow_seen(now_ns);
        if read(seen) != now {
            write(seen, now);
        }
    }

    /// Where to record `key` (hash `hash`) at `now_ns`: the way already
    /// holding it (so a set never holds a flow twice), else an empty way,
    /// else the least recently seen; among equals (a burst of new flows
    /// within one time unit), the scan starts at a way the hash picks, so
    /// a burst does not keep evicting one way. Returns the way's index and
    /// what recording there displaces.
    #[inline(always)]
    #[must_use]
    pub fn slot_for(&self, key: &FlowKey, hash: u32, now_ns: u64) -> (usize, Replaced) {
        let tag = flow_tag(hash);
        let now = flow_seen(now_ns);
        let start = first_way(hash);
        let mut best = start;
        // Age in time units, plus one; an empty way ranks above any flow.
        let mut best_age = 0u64;
        let mut n = 0;
        while n < FLOW_WAYS {
            let i = (start + n) & (FLOW_WAYS - 1);
            let t = read(&self.tags[i]);
            if t == tag && self.ways[i].has_key(key) {
                return (i, Replaced::Nothing);
            }
            let age = if t == 0 {
                u64::MAX
            } else {
                u64::from(flow_age(now, read(&self.seen[i]))) + 1
            };
            if age > best_age {
                best = i;
                best_age = age;
            }
            n += 1;
        }
        let replaced = if best_age == u64::MAX {
            Replaced::Nothing
        } else if best_age > u64::from(FLOW_RECENT_UNITS) {
            Replaced::Idle
        } else {
            Replaced::Recent
        };
        (best, replaced)
    }

    /// Record a flow in way `i`: its tag is cleared first and set last, and
    /// the check word covers the rest, so a reader never accepts a
    /// half-written way.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    pub fn write(
        &mut self,
        i: usize,
        key: &FlowKey,
        hash: u32,
        backend: u32,
        vip_id: u32,
        vip_generation: u32,
        now_ns: u64,
    ) {
        // The mask proves the index in bounds (no panic path for BPF).
        let i = i & (FLOW_WAYS - 1);
        write(&mut self.tags[i], 0);
        let way = &mut self.ways[i];
        let dst = (&raw mut way.key).cast::<u32>();
        let src = key.words();
        let mut w = 0;
        while w < KEY_WORDS {
            // SAFETY: w < 10, inside the 40-byte, 4-aligned key.
            unsafe { core::ptr::write_volatile(dst.add(w), src[w]) };
            w += 1;
        }
        write(&mut way.state.backend, backend);
        write(&mut way.state.vip_id, vip_id);
        write(&mut way.state.vip_generation, vip_generation);
        write(
            &mut way.state.check,
            flow_check(hash, backend, vip_id, vip_generation),
        );
        write(&mut self.seen[i], flow_seen(now_ns));
        write(&mut self.tags[i], flow_tag(hash));
    }
}

/// A table in user space, for tests and tools: same layout and rules as
/// the kernel's, so a unit test drives exactly the code the XDP program
/// runs.
pub struct FlowTable<'a> {
    sets: &'a mut [FlowSet],
}

impl<'a> FlowTable<'a> {
    /// A table over `sets` (a power of two, at least one).
    ///
    /// # Panics
    /// If `sets.len()` is not a power of two.
    #[must_use]
    pub fn new(sets: &'a mut [FlowSet]) -> Self {
        assert!(sets.len().is_power_of_two(), "sets must be a power of two");
        Self { sets }
    }

    fn set(&mut self, hash: u32) -> &mut FlowSet {
        let mask = (self.sets.len() - 1) as u32;
        &mut self.sets[flow_set_index(hash, mask) as usize]
    }

    /// The state recorded for `key`, marking it used at `now` as a hit in
    /// the kernel does.
    pub fn lookup(&mut self, key: &FlowKey, now: u64) -> Option<FlowState> {
        let hash = flow_hash(key);
        let set = self.set(hash);
        let (i, state) = set.find(key, hash)?;
        set.touch(i, now);
        Some(state)
    }

    /// Record `key`: what it displaced.
    pub fn insert(
        &mut self,
        key: &FlowKey,
        backend: u32,
        vip_id: u32,
        vip_generation: u32,
        now: u64,
    ) -> Replaced {
        let hash = flow_hash(key);
        let set = self.set(hash);
        let (i, replaced) = set.slot_for(key, hash, now);
        set.write(i, key, hash, backend, vip_id, vip_generation, now);
        replaced
    }
}

crate::pod!(FlowKey, FlowState, FlowEntry, FlowSet);

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    fn key(n: u32) -> FlowKey {
        let mut k = FlowKey {
            src: crate::v4_mapped([198, 18, (n >> 8) as u8, n as u8]),
            dst: crate::v4_mapped([198, 18, 0, 100]),
            src_port_be: (1024 + (n % 60_000) as u16).to_be(),
            dst_port_be: 80u16.to_be(),
            proto: 6,
            pad: [0; 3],
        };
        k.src[11] ^= (n >> 16) as u8; // beyond 2^16: still distinct keys
        k
    }

    /// xorshift: reproducible "random" clients.
    fn random_keys(n: usize) -> Vec<FlowKey> {
        let mut x = 0x2545_f491_u32;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                let mut k = key(0);
                k.src[12..].copy_from_slice(&x.to_be_bytes());
                k.src_port_be = (x >> 7) as u16;
                k
            })
            .collect()
    }

    #[test]
    fn sets_are_a_power_of_two_covering_the_flows() {
        for (flows, sets) in [
            (0, 1),
            (1, 1),
            (8, 1),
            (9, 2),
            (100, 16),
            (1 << 20, 1 << 17),
        ] {
            assert_eq!(flow_sets(flows), sets, "{flows} flows");
        }
        assert_eq!(
            flow_sets(MAX_FLOW_ENTRIES),
            MAX_FLOW_ENTRIES / FLOW_WAYS as u32
        );
    }

    #[test]
    fn insert_then_lookup_and_reinsert_replaces() {
        let mut sets = vec![FlowSet::default(); 4];
        let mut t = FlowTable::new(&mut sets);
        assert_eq!(t.lookup(&key(1), SEC), None);
        assert_eq!(t.insert(&key(1), 7, 3, 9, SEC), Replaced::Nothing);
        let s = t.lookup(&key(1), SEC).expect("hit");
        assert_eq!((s.backend, s.vip_id, s.vip_generation), (7, 3, 9));
        assert_eq!(t.lookup(&key(2), SEC), None, "another flow misses");
        // A new connection on the same 5-tuple takes a new backend: the
        // way is rewritten, never duplicated.
        assert_eq!(
            t.insert(&key(1), 8, 3, 9, 2 * SEC),
            Replaced::Nothing,
            "replacing itself is no eviction"
        );
        assert_eq!(t.lookup(&key(1), SEC).map(|s| s.backend), Some(8));
        let held = sets
            .iter()
            .flat_map(|s| s.ways.iter())
            .filter(|w| w.has_key(&key(1)))
            .count();
        assert_eq!(held, 1);
    }

    #[test]
    fn a_flow_recorded_in_a_set_with_room_sits_where_find_looks_first() {
        for n in 0..64 {
            let mut set = FlowSet::default();
            let (k, h) = (key(n), flow_hash(&key(n)));
            let (way, replaced) = set.slot_for(&k, h, SEC);
            assert_eq!((way, replaced), (first_way(h), Replaced::Nothing));
            set.write(way, &k, h, 1, 0, 1, SEC);
            assert_eq!(set.find(&k, h).map(|(i, _)| i), Some(way));
        }
    }

    #[test]
    fn an_all_zero_key_never_matches_an_empty_way() {
        let mut sets = vec![FlowSet::default(); 1];
        let mut t = FlowTable::new(&mut sets);
        assert_eq!(t.lookup(&FlowKey::default(), SEC), None);
    }

    #[test]
    fn a_full_set_evicts_the_least_recently_seen() {
        // One set: every flow competes for the same eight ways.
        let mut sets = vec![FlowSet::default(); 1];
        let mut t = FlowTable::new(&mut sets);
        for n in 0..FLOW_WAYS as u32 {
            assert_eq!(
                t.insert(&key(n), n, 0, 1, u64::from(n + 1) * 10 * SEC),
                Replaced::Nothing,
                "room for {n}"
            );
        }
        // Flow 0 is used again (later than everyone): flow 1 is now the
        // least recently seen.
        assert!(t.lookup(&key(0), 100 * SEC).is_some());
        assert_eq!(
            t.insert(&key(100), 100, 0, 1, 101 * SEC),
            Replaced::Idle,
            "flow 1, seen 81 s ago, is evicted"
        );
        assert_eq!(t.lookup(&key(1), 102 * SEC), None, "the oldest went");
        for n in [0, 2, 3, 4, 5, 6, 7, 100] {
            assert!(t.lookup(&key(n), 102 * SEC).is_some(), "flow {n} stays");
        }
    }

    #[test]
    fn touch_writes_once_per_time_unit() {
        let unit = FLOW_SEEN_UNIT_NS;
        let mut set = FlowSet::default();
        set.write(3, &key(1), flow_hash(&key(1)), 1, 0, 1, 10 * unit);
        assert_eq!(set.seen[3], 10);
        set.touch(3, 10 * unit + unit / 2);
        assert_eq!(set.seen[3], 10, "same unit: no write");
        set.touch(3, 12 * unit);
        assert_eq!(set.seen[3], 12);
    }

    #[test]
    fn an_empty_way_is_taken_before_any_flow_is_evicted() {
        let mut set = FlowSet::default();
        // Flows seen at time unit 0 (right after boot) are still flows.
        for i in [0, 1, 2, 4, 5, 6, 7] {
            set.write(i, &key(i as u32), flow_hash(&key(i as u32)), 1, 0, 1, 0);
        }
        let (h9, t) = (flow_hash(&key(9)), 5 * FLOW_SEEN_UNIT_NS);
        assert_eq!(set.slot_for(&key(9), h9, t), (3, Replaced::Nothing));
        set.write(3, &key(3), flow_hash(&key(3)), 1, 0, 1, t);
        let (way, replaced) = set.slot_for(&key(9), h9, t);
        assert!(
            replaced == Replaced::Recent && way != 3,
            "a flow of time 0 goes, not the one of now"
        );
    }

    #[test]
    fn ages_survive_the_clock_wrapping() {
        let mut set = FlowSet::default();
        let wrap = FLOW_SEEN_UNIT_NS << 32;
        // Way 0 seen just before the directory clock wraps, the others
        // just after: way 0 is the oldest.
        set.write(
            0,
            &key(0),
            flow_hash(&key(0)),
            1,
            0,
            1,
            wrap - FLOW_SEEN_UNIT_NS,
        );
        for i in 1..FLOW_WAYS {
            set.write(
                i,
                &key(i as u32),
                flow_hash(&key(i as u32)),
                1,
                0,
                1,
                wrap + 3 * FLOW_SEEN_UNIT_NS,
            );
        }
        let now = wrap + 4 * FLOW_SEEN_UNIT_NS;
        assert_eq!(
            set.slot_for(&key(9), flow_hash(&key(9)), now),
            (0, Replaced::Recent),
            "way 0, five units old"
        );
        let later = now + u64::from(FLOW_RECENT_UNITS) * FLOW_SEEN_UNIT_NS;
        assert_eq!(
            set.slot_for(&key(9), flow_hash(&key(9)), later),
            (0, Replaced::Idle)
        );
    }

    #[test]
    fn a_burst_within_one_time_unit_spreads_its_evictions() {
        let mut sets = vec![FlowSet::default(); 1];
        let mut t = FlowTable::new(&mut sets);
        for n in 0..100 {
            t.insert(&key(n), n, 0, 1, 7);
        }
        let kept: Vec<u32> = (0..100)
            .filter(|&n| t.lookup(&key(n), 7).is_some())
            .collect();
        assert_eq!(kept.len(), FLOW_WAYS);
        assert!(kept.contains(&99), "the newest flow stays: {kept:?}");
        assert!(
            kept.iter().filter(|&&n| n >= 80).count() >= 2,
            "not only old flows stay: {kept:?}"
        );
    }

    #[test]
    fn a_torn_way_reads_as_a_miss() {
        let mut sets = vec![FlowSet::default(); 1];
        let mut t = FlowTable::new(&mut sets);
        t.insert(&key(1), 7, 3, 9, SEC);
        let h = flow_hash(&key(1));
        let (w, _) = sets[0].find(&key(1), h).expect("inserted");
        // Another writer's backend landed over ours, or our check word
        // over another flow's state: either way the check fails.
        sets[0].ways[w].state.backend = 8;
        let mut t = FlowTable::new(&mut sets);
        assert_eq!(t.lookup(&key(1), SEC), None);
        sets[0].ways[w].state.backend = 7;
        sets[0].ways[w].state.vip_generation = 10;
        let mut t = FlowTable::new(&mut sets);
        assert_eq!(t.lookup(&key(1), SEC), None);
        // Half a write: the tag still cleared.
        sets[0].ways[w].state.vip_generation = 9;
        let tag = sets[0].tags[w];
        sets[0].tags[w] = 0;
        let mut t = FlowTable::new(&mut sets);
        assert_eq!(t.lookup(&key(1), SEC), None);
        sets[0].tags[w] = tag;
        let mut t = FlowTable::new(&mut sets);
        assert!(t.lookup(&key(1), SEC).is_some(), "whole again");
        // Another flow's check word with our key and state.
        sets[0].ways[w].state.check = flow_check(flow_hash(&key(2)), 7, 3, 9);
        let mut t = FlowTable::new(&mut sets);
        assert_eq!(t.lookup(&key(1), SEC), None);
    }

    /// The trade-off the module documents: premature evictions by load.
    #[test]
    fn premature_evictions_by_load() {
        let sets_n = 1 << 14;
        let capacity = sets_n * FLOW_WAYS;
        for (load, most) in [(0.25, 0.001), (0.5, 0.02), (1.0, 0.2)] {
            let mut sets = vec![FlowSet::default(); sets_n];
            let mut t = FlowTable::new(&mut sets);
            let keys = random_keys((capacity as f64 * load) as usize);
            let evicted = keys
                .iter()
                .enumerate()
                .filter(|(i, k)| t.insert(k, 0, 0, 1, *i as u64 + 1) != Replaced::Nothing)
                .count();
            let fraction = evicted as f64 / keys.len() as f64;
            println!(
                "load {load}: {evicted}/{} flows evicted ({fraction:.5})",
                keys.len()
            );
            assert!(fraction <= most, "load {load}: {fraction} > {most}");
            let kept = keys.iter().filter(|k| t.lookup(k, 0).is_some()).count();
            assert_eq!(
                kept + evicted,
                keys.len(),
                "every flow not evicted is found"
            );
        }
    }

    /// A way stamped just after the inserter took its clock (another CPU,
    /// or lbd writing a synced flow) is the newest, not the oldest.
    #[test]
    fn a_way_seen_in_the_future_is_not_evicted_first() {
        assert_eq!(flow_age(100, 101), 0);
        assert_eq!(flow_age(100, 90), 10);
        assert_eq!(flow_age(5, u32::MAX - 4), 10, "across the wrap");
        let mut set = FlowSet::default();
        for n in 0..FLOW_WAYS as u32 {
            let k = key(n);
            let hash = flow_hash(&k);
            // Way ages: all 5 s old but one, stamped 1 unit after `now`.
            let t = if n == 3 {
                10 * SEC + FLOW_SEEN_UNIT_NS
            } else {
                5 * SEC
            };
            let (i, _) = set.slot_for(&k, hash, t);
            set.write(i, &k, hash, n, 0, 1, t);
        }
        let newcomer = key(100);
        let (i, replaced) = set.slot_for(&newcomer, flow_hash(&newcomer), 10 * SEC);
        assert_ne!(set.ways[i].key, key(3), "the future-stamped way stays");
        assert_eq!(replaced, Replaced::Idle);
    }
}
