//! Virtual services: map `vips` (hash, [`VipKey`] -> [`VipMeta`]) and the
//! Maglev lookup tables, map `maglev_tables` (array of maps).
//!
//! Table layout: `maglev_tables` is an array of [`TABLE_SLOTS`] tables;
//! `VipMeta::table` names the one a VIP's new flows read (see [`table`]
//! for what a table holds: the `ring_size` slots as 16-bit member numbers,
//! then the members' backend slots). User space writes a new table
//! completely into a spare one, then points `VipMeta::table` at it with
//! one map update, so the kernel never sees a half-written table; the
//! table that went out of use becomes a spare a second later. Tables are
//! installed in the outer array ahead of need, many per system call:
//! every update of an array of maps waits for an RCU grace period (about
//! 10 ms), which a rewrite must not pay.
//!
//! The program finds a VIP through `vip_index` (see [`VipIndexEntry`]):
//! an open-addressed table of `VipKey -> id` in a plain array, which the
//! verifier turns into pointer arithmetic; a kernel hash-map lookup cost a
//! new flow about 20 ns. User space builds the whole index into the
//! inactive half and flips `Config::vip_index`, as with the Maglev tables.
//! The `vips` hash map holds the same records for inspection
//! (`bpftool map dump`); the program does not read it.
//!
//! Two more maps serve the fast path:
//! - `vip_ids` (array, id -> [`VipMeta`]): a connection-table hit names its
//!   VIP by id and generation, so established flows skip the `vips` hash
//!   lookup. A removed VIP's slot is zeroed (generation 0 = no VIP), and a
//!   re-used id gets a new generation, so stale flows never match it.
//! - `vip_filter` (array, [`filter_bucket`] of an address -> bits of
//!   [`filter_bits`]): which kinds of VIP exist on addresses in that bucket.
//!   Traffic to an address in an empty bucket is passed without any hash
//!   lookup; a VIP address skips the lookup (exact port or port 0) that
//!   cannot match.

/// Name of the VIP map.
pub const VIPS_MAP: &str = "vips";
/// Name of the outer Maglev table map.
pub const MAGLEV_TABLES_MAP: &str = "maglev_tables";
/// Name of the id-indexed VIP array.
pub const VIP_IDS_MAP: &str = "vip_ids";
/// Name of the address prefilter.
pub const VIP_FILTER_MAP: &str = "vip_filter";
/// Buckets in `vip_filter` (a power of two).
pub const FILTER_BUCKETS: u32 = 1 << 16;

/// Bits of a `vip_filter` bucket.
pub mod filter_bits {
    /// Some VIP with a specific port has an address in this bucket.
    pub const PORT: u8 = 1 << 0;
    /// Some all-ports (port 0) VIP has an address in this bucket.
    pub const ANY_PORT: u8 = 1 << 1;
    /// Some `nat` / `fullnat` VIP has an address in this bucket: look the
    /// flow up in the NAT table first.
    pub const NAT: u8 = 1 << 2;
    /// Some backend of a `nat` / `fullnat` service has an address in this
    /// bucket (looked up by a packet's source): it may be a reply.
    pub const NAT_REAL: u8 = 1 << 3;
    /// Some `dsr` / `ipip` VIP has an address in this bucket: look the
    /// flow up in the connection table (else only the NAT table is).
    pub const PLAIN: u8 = 1 << 4;
}

/// The `vip_filter` bucket of an address (v4-mapped for IPv4).
#[inline(always)]
#[must_use]
pub const fn filter_bucket(addr: &[u8; 16]) -> u32 {
    use crate::hash::word;
    let h =
        (word(addr, 0) ^ word(addr, 1) ^ word(addr, 2) ^ word(addr, 3)).wrapping_mul(0x9e37_79b1);
    (h >> 16) & (FILTER_BUCKETS - 1)
}

/// How many VIPs the maps hold (ids `0..MAX_VIPS`).
pub const MAX_VIPS: u32 = 1024;
/// Tables `maglev_tables` holds: one live per VIP, the rest spares and
/// tables going out of use.
pub const TABLE_SLOTS: u32 = 2 * MAX_VIPS;
/// Default Maglev table size (prime).
pub const DEFAULT_RING_SIZE: u32 = 65537;
/// `BPF_F_INNER_MAP`: inner tables may differ in `max_entries` (ring size).
pub const BPF_F_INNER_MAP: u32 = 1 << 12;
/// `BPF_F_MMAPABLE`: user space writes a whole table with one copy into
/// the array's memory instead of one syscall per slot.
pub const BPF_F_MMAPABLE: u32 = 1 << 10;
/// Flags of every inner Maglev table (the kernel requires inner maps to
/// match the template's flags).
pub const TABLE_FLAGS: u32 = BPF_F_INNER_MAP | BPF_F_MMAPABLE;

/// Key of the VIP map. A VIP with `port_be == 0` matches every port.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[repr(C, align(4))]
pub struct VipKey {
    /// VIP address; IPv4 as v4-mapped IPv6 (`::ffff:a.b.c.d`).
    pub addr: [u8; 16],
    /// Destination port, network byte order; 0 = all ports.
    pub port_be: u16,
    /// IP protocol number (6 TCP, 17 UDP).
    pub proto: u8,
    /// Explicit padding, always 0.
    pub pad: u8,
}

/// Forwarding modes (`VipMeta::mode`).
pub mod mode {
    /// L2 direct routing (LVS-DR): rewrite MACs, `XDP_TX`.
    pub const DSR: u8 = 0;
    /// IP-in-IP encapsulation to the backend, `XDP_TX` to the next hop.
    pub const IPIP: u8 = 1;
    /// LVS-NAT: destination rewritten to the backend, replies (routed
    /// through us) rewritten back (`nat`).
    pub const NAT: u8 = 2;
    /// Destination and source rewritten: the backend answers our SNAT
    /// address (`nat`).
    pub const FULLNAT: u8 = 3;
}

/// Bits of `VipMeta::flags`.
pub mod vip_flags {
    /// No backend can take new flows (all down or drained): established
    /// flows still forward; new ones are dropped unless `PASS_NO_BACKEND`.
    pub const NO_BACKEND: u8 = 1 << 0;
    /// With `NO_BACKEND`: hand new flows to the local stack instead of
    /// dropping them.
    pub const PASS_NO_BACKEND: u8 = 1 << 1;
    /// Maglev hashes the client's address only (`source_hash`
    /// scheduler, keepalived's `lb_algo sh`): every flow of a client goes
    /// to one backend, without state.
    pub const SOURCE_HASH: u8 = 1 << 2;
    /// Client affinity (`crate::persist`): a client's new flows follow its
    /// template while it holds.
    pub const PERSIST: u8 = 1 << 3;
}

/// Value of the VIP map.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct VipMeta {
    /// Index into per-VIP stats and (times two) into `maglev_tables`.
    pub id: u32,
    /// Maglev table size M (prime); the flow hash is taken modulo this.
    pub ring_size: u32,
    /// One of [`mode`].
    pub mode: u8,
    /// Bits from [`vip_flags`].
    pub flags: u8,
    /// Explicit padding, always 0.
    pub pad: u8,
    /// With `vip_flags::PERSIST`: the client address bits a template
    /// covers (of the 16-byte form: an IPv4 `/24` is 120), for reading
    /// back; the program uses `persist_mask`.
    pub persist_prefix: u8,
    /// Generation of this id's current VIP: never 0 for a live VIP, new
    /// each time the id is given to a VIP. Flows record it.
    pub generation: u32,
    /// With `vip_flags::PERSIST`: how long a template holds after its
    /// client was last seen, in seconds.
    pub persist_timeout_s: u32,
    /// With `vip_flags::PERSIST`: `persist_prefix` as a mask over the
    /// 16-byte address (`crate::persist::prefix_mask`), precomputed so the
    /// program cuts an address with two ANDs and no branch.
    pub persist_mask: [u8; 16],
    /// The `maglev_tables` index of the live table (meaningless with
    /// `vip_flags::NO_BACKEND`).
    pub table: u32,
}

const _: () = assert!(core::mem::size_of::<VipMeta>() == 40);

/// One copy of a Maglev table: an array of `u64` cells (the kernel lays an
/// array's values out 8 bytes apart, so a smaller value would waste the
/// rest). A table names up to 65,535 *members* (the service's backends, in
/// pool order); each of its `ring_size` slots holds a member number, four
/// to a cell (2 bytes a slot). The cells after them hold each member's
/// backend slot (`crate::backend`), two to a cell. With M = 65,537 and
/// 100 backends that is 16,385 + 50 cells: 128 KiB, a quarter of the
/// 8 bytes a slot an array of backend slots would take.
pub mod table {
    /// Table slots per cell.
    pub const SLOTS_PER_CELL: u32 = 4;
    /// Members per cell.
    pub const MEMBERS_PER_CELL: u32 = 2;

    /// Cells holding the slots of a table of `ring_size` slots; the
    /// members start at this cell.
    #[inline(always)]
    #[must_use]
    pub const fn slot_cells(ring_size: u32) -> u32 {
        ring_size.div_ceil(SLOTS_PER_CELL)
    }

    /// Cells of a whole table: `ring_size` slots and `members` members.
    #[must_use]
    pub const fn cells(ring_size: u32, members: u32) -> u32 {
        slot_cells(ring_size) + members.div_ceil(MEMBERS_PER_CELL)
    }

    /// The cell holding table slot `slot`.
    #[inline(always)]
    #[must_use]
    pub const fn slot_cell(slot: u32) -> u32 {
        slot / SLOTS_PER_CELL
    }

    /// Member number of table slot `slot`, from its cell.
    #[inline(always)]
    #[must_use]
    pub const fn member_of(cell: u64, slot: u32) -> u32 {
        ((cell >> ((slot % SLOTS_PER_CELL) * 16)) & 0xffff) as u32
    }

    /// The cell holding member `member`'s backend slot.
    #[inline(always)]
    #[must_use]
    pub const fn member_cell(ring_size: u32, member: u32) -> u32 {
        slot_cells(ring_size) + member / MEMBERS_PER_CELL
    }

    /// Member `member`'s backend slot, from its cell.
    #[inline(always)]
    #[must_use]
    pub const fn backend_of(cell: u64, member: u32) -> u32 {
        (cell >> ((member % MEMBERS_PER_CELL) * 32)) as u32
    }

    /// The backend slot a table (cells read through `cell`) gives table
    /// slot `slot`: what the program does for a new flow.
    #[inline(always)]
    pub fn lookup(ring_size: u32, slot: u32, cell: impl Fn(u32) -> Option<u64>) -> Option<u32> {
        let member = member_of(cell(slot_cell(slot))?, slot);
        Some(backend_of(cell(member_cell(ring_size, member))?, member))
    }

    /// Fill `out` (at least [`cells`] long: a table may have room for
    /// more members; the cells past them are zeroed) with a table:
    /// `slots[i]` is slot `i`'s member number, `members[m]` member `m`'s
    /// backend slot.
    ///
    /// # Panics
    /// If `out` is shorter than [`cells`].
    pub fn pack(slots: &[u16], members: &[u32], out: &mut [u64]) {
        let ring = slots.len() as u32;
        assert!(
            out.len() >= cells(ring, members.len() as u32) as usize,
            "room for the whole table"
        );
        let (slot_part, member_part) = out.split_at_mut(slot_cells(ring) as usize);
        let whole = slots.chunks_exact(SLOTS_PER_CELL as usize);
        let last = whole.remainder();
        for (cell, four) in slot_part.iter_mut().zip(whole) {
            *cell = u64::from(four[0])
                | (u64::from(four[1]) << 16)
                | (u64::from(four[2]) << 32)
                | (u64::from(four[3]) << 48);
        }
        if let Some(cell) = slot_part.get_mut(slots.len() / SLOTS_PER_CELL as usize) {
            *cell = last
                .iter()
                .rev()
                .fold(0, |acc, &m| (acc << 16) | u64::from(m));
        }
        for (cell, two) in member_part
            .iter_mut()
            .zip(members.chunks(MEMBERS_PER_CELL as usize))
        {
            *cell = two
                .iter()
                .rev()
                .fold(0, |acc, &b| (acc << 32) | u64::from(b));
        }
        let used = members.len().div_ceil(MEMBERS_PER_CELL as usize);
        if let Some(rest) = member_part.get_mut(used..) {
            rest.fill(0);
        }
    }
}

/// Name of the VIP index (array of [`VipIndexEntry`], two halves).
pub const VIP_INDEX_MAP: &str = "vip_index";
/// Slots per half of the index: a power of two, four per possible VIP, so
/// probe sequences stay short.
pub const VIP_INDEX_SLOTS: u32 = 4 * MAX_VIPS;
/// Longest probe sequence: the builder places every key within this many
/// slots of its home slot, so a lookup needs no more.
pub const VIP_INDEX_PROBES: u32 = 8;

/// One slot of the VIP index.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C, align(4))]
pub struct VipIndexEntry {
    /// The VIP.
    pub key: VipKey,
    /// Its id plus one (`vip_ids` index + 1); 0: the slot is empty.
    pub id_plus_one: u32,
}

const _: () = assert!(core::mem::size_of::<VipIndexEntry>() == 24);
const _: () = assert!(VIP_INDEX_SLOTS.is_power_of_two());

impl VipKey {
    /// The key as five native-endian words (`repr(C, align(4))`, padding
    /// spelled out).
    #[inline(always)]
    #[must_use]
    pub const fn words(&self) -> &[u32; 5] {
        // SAFETY: 20 bytes, 4-aligned, every byte initialised.
        unsafe { &*core::ptr::from_ref(self).cast::<[u32; 5]>() }
    }
}

/// Home slot of a key in one half of the index (multilinear hash, as the
/// flow hash).
#[inline(always)]
#[must_use]
pub const fn vip_index_home(key: &VipKey) -> u32 {
    const K: [u64; 6] = [
        0x0328_9393_56c1_6757,
        0x6db5_61e2_596b_66ab,
        0x9e37_79b9_7f4a_7c15,
        0xc2b2_ae3d_27d4_eb4f,
        0x1656_67b1_9e37_79f9,
        0x27d4_eb2f_1656_67c5,
    ];
    crate::hash::multilinear(key.words(), &K) & (VIP_INDEX_SLOTS - 1)
}

/// Map index of probe `probe` for a key with home slot `home`, in half
/// `half` (0 or 1).
#[inline(always)]
#[must_use]
pub const fn vip_index_slot(half: u32, home: u32, probe: u32) -> u32 {
    (half & 1) * VIP_INDEX_SLOTS + ((home + probe) & (VIP_INDEX_SLOTS - 1))
}

/// Look `key` up in half `half` of an index read through `slot` (a map
/// lookup in the kernel, a slice in user space): the VIP's id.
#[inline(always)]
pub fn vip_index_find<'a>(
    half: u32,
    key: &VipKey,
    slot: impl Fn(u32) -> Option<&'a VipIndexEntry>,
) -> Option<u32> {
    let home = vip_index_home(key);
    let k = key.words();
    let mut probe = 0;
    while probe < VIP_INDEX_PROBES {
        let e = slot(vip_index_slot(half, home, probe))?;
        if e.id_plus_one == 0 {
            return None;
        }
        let w = e.key.words();
        if w[4] == k[4] && w[3] == k[3] && w[0] == k[0] && w[1] == k[1] && w[2] == k[2] {
            return Some(e.id_plus_one - 1);
        }
        probe += 1;
    }
    None
}

/// Fill `half` (one half of the index, [`VIP_INDEX_SLOTS`] entries) with
/// `vips` (key, id), linear probing.
///
/// # Errors
/// The first key that cannot be placed within [`VIP_INDEX_PROBES`] slots
/// of its home (with at most [`MAX_VIPS`] keys in four times as many
/// slots, a run that long is very unlikely).
///
/// # Panics
/// If `half` is not [`VIP_INDEX_SLOTS`] entries long.
pub fn vip_index_build(
    half: &mut [VipIndexEntry],
    vips: impl IntoIterator<Item = (VipKey, u32)>,
) -> Result<(), VipKey> {
    assert_eq!(
        half.len(),
        VIP_INDEX_SLOTS as usize,
        "one half of the index"
    );
    half.fill(VipIndexEntry::default());
    for (key, id) in vips {
        let home = vip_index_home(&key);
        let free = (0..VIP_INDEX_PROBES)
            .map(|p| vip_index_slot(0, home, p) as usize)
            .find(|&i| half[i].id_plus_one == 0)
            .ok_or(key)?;
        half[free] = VipIndexEntry {
            key,
            id_plus_one: id + 1,
        };
    }
    Ok(())
}

crate::pod!(VipKey, VipMeta, VipIndexEntry);

#[cfg(test)]
mod tests {
    use super::*;

    /// A distinct VIP for every `n`: 2001:db8::n.
    fn key(n: u32, port: u16) -> VipKey {
        let mut addr = [0; 16];
        addr[..4].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
        addr[12..].copy_from_slice(&n.to_be_bytes());
        VipKey {
            addr,
            port_be: port.to_be(),
            proto: 6,
            pad: 0,
        }
    }

    #[test]
    fn every_vip_is_found_in_its_half_and_nothing_else_is() {
        let mut table = vec![VipIndexEntry::default(); 2 * VIP_INDEX_SLOTS as usize];
        let vips: Vec<(VipKey, u32)> = (0..MAX_VIPS).map(|n| (key(n, 80), n)).collect();
        let (a, b) = table.split_at_mut(VIP_INDEX_SLOTS as usize);
        vip_index_build(a, vips.iter().copied()).expect("1024 VIPs fit");
        vip_index_build(b, [(key(7, 443), 5)]).unwrap();
        let get = |i: u32| table.get(i as usize);
        for &(k, id) in &vips {
            assert_eq!(vip_index_find(0, &k, get), Some(id));
            assert_eq!(vip_index_find(1, &k, get), None, "not in the other half");
        }
        assert_eq!(vip_index_find(1, &key(7, 443), get), Some(5));
        assert_eq!(vip_index_find(0, &key(7, 443), get), None, "other port");
        assert_eq!(
            vip_index_find(0, &key(5000, 80), get),
            None,
            "other address"
        );
    }

    #[test]
    fn a_packed_table_gives_every_slot_its_members_backend() {
        for (ring, n) in [(7u32, 3u32), (13, 1), (31, 5), (65_537, 100)] {
            let slots: Vec<u16> = (0..ring).map(|i| ((i * 7 + i / 3) % n) as u16).collect();
            let members: Vec<u32> = (0..n).map(|m| 1_000_000 - m * 9_999).collect();
            let mut cells = vec![u64::MAX; table::cells(ring, n + 7) as usize];
            table::pack(&slots, &members, &mut cells);
            let get = |i: u32| cells.get(i as usize).copied();
            for (slot, &m) in (0..).zip(&slots) {
                assert_eq!(
                    table::lookup(ring, slot, get),
                    Some(members[usize::from(m)]),
                    "ring {ring} slot {slot}"
                );
            }
            assert_eq!(table::lookup(ring, 0, |_| None), None, "no table");
        }
    }

    #[test]
    fn rebuilding_a_half_forgets_what_was_there() {
        let mut half = vec![VipIndexEntry::default(); VIP_INDEX_SLOTS as usize];
        vip_index_build(&mut half, [(key(1, 80), 0), (key(2, 80), 1)]).unwrap();
        vip_index_build(&mut half, [(key(2, 80), 1)]).unwrap();
        let get = |i: u32| half.get(i as usize);
        assert_eq!(vip_index_find(0, &key(1, 80), get), None);
        assert_eq!(vip_index_find(0, &key(2, 80), get), Some(1));
    }

    #[test]
    fn a_key_is_refused_when_its_probe_run_is_full() {
        // Keys that all share one home slot: the ninth cannot be placed.
        let home = vip_index_home(&key(0, 80));
        let same: Vec<VipKey> = (0..200_000)
            .map(|n| key(n, 80))
            .filter(|k| vip_index_home(k) == home)
            .take(VIP_INDEX_PROBES as usize + 1)
            .collect();
        assert_eq!(
            same.len(),
            VIP_INDEX_PROBES as usize + 1,
            "enough colliding keys"
        );
        let mut half = vec![VipIndexEntry::default(); VIP_INDEX_SLOTS as usize];
        let last = *same.last().unwrap();
        assert_eq!(
            vip_index_build(&mut half, same.into_iter().zip(0..)),
            Err(last)
        );
    }
}
