//! Backend selection: connection table first, then VIP lookup and Maglev.
//!
//! Fast path: an established flow's connection-table entry names its VIP by
//! id and generation, checked against the `vip_ids` array (no hash lookup
//! of the VIP). Slow path: find the VIP through `vip_index`, take the
//! client's template (`lb_common::persist`) or Maglev's choice ([`choose`])
//! and record it. The connection table's rules (ways, check word, eviction)
//! live in `lb_common::flow`, shared with user space's unit tests.

#![allow(
    clippy::needless_borrows_for_generic_args,
    reason = "keys and values go to the map helpers by reference: by value they would be copied onto the 512-byte BPF stack first"
)]

use core::mem::MaybeUninit;

use aya_ebpf::helpers::bpf_ktime_get_coarse_ns;
use lb_common::{
    backend::{Backend, backend_flags},
    flow::{FlowEvent, FlowKey, FlowSet, flow_set_index},
    hash::{maglev_slot, source_hash},
    persist::{PERSIST_REFRESH_NS, PersistKey, Persisted, client_prefix, holds},
    vip::{VipKey, VipMeta, filter_bits, filter_bucket, table, vip_flags, vip_index_find},
};

use crate::{
    maps::{
        BACKENDS, CONFIG, FLOW_EVENTS, FLOW_EVENTS_ON, FLOW_SET_MASK, FLOWS, MAGLEV_TABLES,
        PERSIST, PERSIST_SCRATCH, PersistScratch, VIP_FILTER, VIP_IDS, VIP_INDEX,
    },
    parse::Packet,
};

/// The connection-table set of a flow hash.
#[inline(always)]
fn flow_set(hash: u32) -> Option<&'static mut FlowSet> {
    let set = FLOWS.get_ptr_mut(flow_set_index(hash, FLOW_SET_MASK.load()))?;
    // SAFETY: pointer from a successful lookup, valid for the whole run;
    // other CPUs may write the set concurrently, which the ways' check
    // words make harmless (see `lb_common::flow`).
    Some(unsafe { &mut *set })
}

/// Which kinds of VIP or NAT backend (bits of `filter_bits`) may live on
/// an address; 0: certainly none.
#[inline(always)]
pub fn filter(addr: &[u8; 16]) -> u8 {
    VIP_FILTER.get(filter_bucket(addr)).copied().unwrap_or(0)
}

/// The VIP a flow is addressed to: exact port first, then the port-0
/// (all ports) VIP for the address. `bits` (from [`filter`]) skips the
/// lookups that cannot match. Found through the live half of `vip_index`,
/// then `vip_ids`; the record stays in the map (valid for the rest of this
/// run: map values are RCU-protected).
#[inline(always)]
pub fn find_vip(flow: &FlowKey, bits: u8) -> Option<&'static VipMeta> {
    let half = u32::from(CONFIG.get(0)?.vip_index);
    let mut key = VipKey {
        addr: flow.dst,
        port_be: flow.dst_port_be,
        proto: flow.proto,
        pad: 0,
    };
    if bits & filter_bits::PORT != 0
        && let Some(id) = vip_index_find(half, &key, |slot| VIP_INDEX.get(slot))
    {
        return vip_by_id(id);
    }
    if bits & filter_bits::ANY_PORT == 0 {
        return None;
    }
    key.port_be = 0;
    vip_by_id(vip_index_find(half, &key, |slot| VIP_INDEX.get(slot))?)
}

/// The live VIP with id `id` (generation 0: the id is free).
#[inline(always)]
fn vip_by_id(id: u32) -> Option<&'static VipMeta> {
    VIP_IDS.get(id).filter(|meta| meta.generation != 0)
}

/// A live backend slot of VIP `vip_id`. A slot serves one (service,
/// backend) pair; a flow recorded before its slot was freed and given to
/// another service's backend misses here and is re-balanced.
#[inline(always)]
pub fn backend_at(index: u32, vip_id: u32) -> Option<&'static Backend> {
    let b = BACKENDS.get(index)?;
    (b.flags & backend_flags::ACTIVE != 0 && b.vip_id == vip_id).then_some(b)
}

/// The backend chosen for a packet, and its VIP: pointers into the maps,
/// not copies (a map value stays valid for the whole run).
pub struct Chosen {
    /// Backend index.
    pub index: u32,
    /// The flow was not in the connection table.
    pub new_flow: bool,
    /// The backend's slot.
    pub backend: &'static Backend,
    /// The VIP's record.
    pub vip: &'static VipMeta,
}

/// Fast path: the flow (hash `hash`) is in the connection table, its VIP
/// still exists (same id and generation) and its backend slot is live and
/// still serves that VIP.
/// Fills `out` and returns true; otherwise returns false and the slow path
/// decides.
///
/// A BPF subprogram: with [`new_flow`] it keeps the main frame small (main
/// plus the deepest forwarding call must fit 512 bytes of stack).
#[inline(never)]
pub fn established(pkt: &Packet, hash: u32, out: &mut MaybeUninit<Chosen>) -> bool {
    let Some(set) = flow_set(hash) else {
        return false;
    };
    let Some((way, state)) = set.find(&pkt.flow, hash) else {
        return false;
    };
    let Some(vip) = VIP_IDS.get(state.vip_id) else {
        return false;
    };
    if vip.generation != state.vip_generation || vip.generation == 0 {
        return false;
    }
    let index = state.backend;
    let Some(backend) = backend_at(index, vip.id) else {
        return false;
    };
    let now = crate::clock::coarse_now_ns();
    set.touch(way, now);
    if vip.flags & vip_flags::PERSIST != 0 {
        keep_template(vip, &pkt.flow.src, index, now);
    }
    out.write(Chosen {
        index,
        new_flow: false,
        backend,
        vip,
    });
    true
}

/// Slow path: the choice of [`choose`] (`index`) for `pkt` (addressed to
/// `vip`, flow hash `hash`) into `out`, recorded in the connection table, except for ICMP
/// errors, which only follow existing flows. Returns false when the VIP has no backend for a
/// new flow (flag `NO_BACKEND`, or an empty table slot).
#[inline(never)]
pub fn new_flow(
    vip: &'static VipMeta,
    pkt: &Packet,
    hash: u32,
    index: u32,
    out: &mut MaybeUninit<Chosen>,
) -> bool {
    // SAFETY: a helper without arguments.
    let now = unsafe { bpf_ktime_get_coarse_ns() };
    let Some(backend) = backend_at(index, vip.id) else {
        return false;
    };
    if !pkt.icmp_too_big
        && let Some(set) = flow_set(hash)
    {
        // A full set evicts its least recently seen flow, never refuses.
        let (way, replaced) = set.slot_for(&pkt.flow, hash, now);
        set.write(way, &pkt.flow, hash, index, vip.id, vip.generation, now);
        crate::stats::count_replaced(replaced);
        if FLOW_EVENTS_ON.load() != 0 {
            let event = FlowEvent {
                key: pkt.flow,
                backend: index,
                vip_id: vip.id,
                vip_generation: vip.generation,
                pad: 0,
            };
            if FLOW_EVENTS.output_untyped::<FlowEvent>(event, 0).is_err() {
                crate::stats::count_event_lost();
            }
        }
    }
    out.write(Chosen {
        index,
        new_flow: true,
        backend,
        vip,
    });
    true
}

/// [`choose`]'s answer when the VIP has no backend for a new flow.
pub const NO_SLOT: u32 = u32::MAX;

/// The backend slot for a new flow of `vip` (flow hash `hash`):
/// the client's persistence template while it holds (`lb_common::persist`),
/// else Maglev's choice of the flow hash (of the client's address alone
/// with `SOURCE_HASH`), which becomes the client's template when the VIP
/// keeps them (ICMP errors follow templates but write none). [`NO_SLOT`]
/// when the VIP has no backend for a new flow (flag `NO_BACKEND`, or an
/// empty table slot); the caller checks the slot with [`backend_at`].
///
/// A BPF subprogram returning a plain number, called from the main frame
/// (not from `new_flow` or `nat::new_flow`, which would make the call
/// chain's stack too deep): its branches (templates, hashing) end in one
/// unknown scalar for the caller, so the verifier does not carry them into
/// the connection-table, NAT and event code that follows (inlined, they
/// multiplied the states past the verifier's budget).
#[inline(never)]
pub fn choose(vip: &VipMeta, pkt: &Packet, hash: u32) -> u32 {
    if vip.flags & vip_flags::NO_BACKEND != 0 || vip.ring_size == 0 {
        return NO_SLOT;
    }
    // SAFETY: a helper without arguments.
    let now = unsafe { bpf_ktime_get_coarse_ns() };
    let scratch = if vip.flags & vip_flags::PERSIST != 0 {
        persist_scratch(vip, &pkt.flow.src)
    } else {
        None
    };
    if let Some(s) = &scratch
        && let Some(index) = template(vip, &s.key, now)
    {
        return index;
    }
    let h = if vip.flags & vip_flags::SOURCE_HASH != 0 {
        source_hash(&pkt.flow.src)
    } else {
        hash
    };
    let slot = maglev_slot(h, vip.ring_size);
    let Some(cells) = MAGLEV_TABLES.get(vip.table) else {
        return NO_SLOT;
    };
    let Some(index) = table::lookup(vip.ring_size, slot, |i| cells.get(i).copied()) else {
        return NO_SLOT;
    };
    if let Some(s) = scratch
        && !pkt.icmp_too_big
    {
        s.value = Persisted {
            backend: index,
            pad: 0,
            last_ns: now,
        };
        let _ = PERSIST.insert(&s.key, &s.value, 0);
    }
    index
}

/// This CPU's scratch space (`maps::PERSIST_SCRATCH`: keys and values
/// for the helpers live there, not on the 512-byte stack), its key set to
/// client `src`'s template key for `vip`.
#[inline(always)]
fn persist_scratch(vip: &VipMeta, src: &[u8; 16]) -> Option<&'static mut PersistScratch> {
    let s = PERSIST_SCRATCH.get_ptr_mut(0)?;
    // SAFETY: this CPU's slot of a per-CPU array, valid for the run.
    let s = unsafe { &mut *s };
    s.key = PersistKey {
        client: client_prefix(src, &vip.persist_mask),
        vip_id: vip.id,
        generation: vip.generation,
    };
    Some(s)
}

/// The backend slot the template `key` names, if it holds at `now`
/// and the slot is live, serves `vip` and takes new flows; its `last_ns`
/// is brought to `now`.
#[inline(always)]
fn template(vip: &VipMeta, key: &PersistKey, now: u64) -> Option<u32> {
    let t = PERSIST.get_ptr_mut(key)?;
    // SAFETY: a map value, valid for the whole run; another CPU writing
    // `last_ns` at the same moment only loses one refresh.
    let t = unsafe { &mut *t };
    if !holds(t.last_ns, now, vip.persist_timeout_s) {
        return None;
    }
    let backend = backend_at(t.backend, vip.id)?;
    if backend.flags & backend_flags::DRAINED != 0 {
        return None;
    }
    t.last_ns = now;
    Some(t.backend)
}

/// A packet of an established flow of client `src` to slot `index` of a
/// persistent `vip`: the client's template is refreshed (at most once per
/// `PERSIST_REFRESH_NS`) while it names that slot, and written when
/// there is none (evicted, or the flow came from a peer by sync). A
/// template naming another slot is newer than this flow: left alone.
#[inline(always)]
pub fn keep_template(vip: &VipMeta, src: &[u8; 16], index: u32, now: u64) {
    let Some(s) = persist_scratch(vip, src) else {
        return;
    };
    if let Some(t) = PERSIST.get_ptr_mut(&s.key) {
        // SAFETY: as in `template`.
        let t = unsafe { &mut *t };
        if t.backend == index && now.saturating_sub(t.last_ns) >= PERSIST_REFRESH_NS {
            t.last_ns = now;
        }
        return;
    }
    s.value = Persisted {
        backend: index,
        pad: 0,
        last_ns: now,
    };
    let _ = PERSIST.insert(&s.key, &s.value, 0);
}
