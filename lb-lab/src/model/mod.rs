//! A model of the XDP program's decision, for differential testing
//! (`crate::difftest`, `cargo xtask fuzz`): given a frame, the verdict,
//! the exit reason, the frame that leaves and the counters bumped.
//!
//! Built from the same `lb-common` code the program uses for its tables
//! (flow hash, connection-table sets, VIP index, Maglev ring, SNAT ports,
//! templates) and from the configuration `lbd`'s own code wrote
//! ([`mirror::Mirror`]), and written again, over plain byte slices, where
//! the program has its own logic: parsing ([`parse`]), the order of the
//! decisions (this file, following `lb-ebpf/src/main.rs`, `select.rs` and
//! `nat.rs` rule by rule) and every rewrite and checksum ([`rewrite`]).
//!
//! What it leaves out, and the harness keeps out of its runs: a second
//! interface (`backend_interface`: every frame here leaves by `XDP_TX`),
//! new-flow events, and eviction from a full connection-table set or a
//! full NAT table (which way the program evicts depends on its clock; the
//! harness keeps the tables far from full and reports any set that fills,
//! see [`Outcome::unpredictable`]). Templates hold for the run (the
//! harness configures timeouts longer than it).

pub mod mirror;
pub(crate) mod parse;
pub(crate) mod rewrite;

use std::{cell::RefCell, collections::HashMap, rc::Rc};

use lb_common::{
    backend::{Backend, backend_flags},
    flow::{FlowKey, FlowSet, Replaced, flow_set_index},
    hash::{flow_hash, maglev_slot, source_hash},
    nat::{NatEntry, SNAT_PORT_TRIES, nat_flags, reversed, snat_port},
    persist::{PersistKey, Persisted, client_prefix},
    stats::{ProtoClass, TrafficCounters, VerdictCounters, exit},
    vip::{VipKey, VipMeta, filter_bits, filter_bucket, mode, vip_flags, vip_index_find},
};

use self::{
    mirror::View,
    parse::{Packet, TCP, UDP},
};

/// XDP verdicts.
pub const XDP_ABORTED: u32 = 0;
pub const XDP_DROP: u32 = 1;
pub const XDP_PASS: u32 = 2;
pub const XDP_TX: u32 = 3;

/// What the program should do with one frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// The XDP verdict.
    pub action: u32,
    /// The exit reason (`lb_common::stats::exit`).
    pub reason: usize,
    /// The frame as it leaves (the input, untouched, unless `XDP_TX`).
    pub frame: Vec<u8>,
    /// The frame needed something the model does not predict (an
    /// eviction): the harness counts it and resynchronises.
    pub unpredictable: bool,
}

/// The counters the model keeps, as the program's maps hold them (summed
/// over CPUs). Evictions (`stats_flows`) are not modelled: the harness
/// expects none.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// `stats_exit`, by reason (`lb_user::dataplane::stats::exit_fields`).
    pub exits: [u64; exit::COUNT],
    /// `stats_proto`, by class.
    pub proto: [VerdictCounters; ProtoClass::COUNT as usize],
    /// `stats_vip`, by id (only ids counted).
    pub vips: HashMap<u32, TrafficCounters>,
    /// `stats_backend`, by slot (only slots counted).
    pub backends: HashMap<u32, TrafficCounters>,
}

/// The program's state as the model keeps it.
pub struct Model {
    view: Rc<RefCell<View>>,
    /// Connection-table sets, by index (absent: empty).
    flows: HashMap<u32, FlowSet>,
    flow_set_mask: u32,
    /// The NAT table and its capacity.
    nat: HashMap<FlowKey, NatEntry>,
    nat_capacity: usize,
    /// Client templates.
    persist: HashMap<PersistKey, Persisted>,
    /// What the model has counted.
    pub counters: Counters,
    /// A clock for the connection table's directory (only orders ways).
    now_ns: u64,
    unpredictable: bool,
}

/// The backend chosen for a dsr / ipip packet.
struct Chosen {
    index: u32,
    new_flow: bool,
    backend: Backend,
    vip: VipMeta,
}

/// Not a packet of a flow the NAT table holds: go on.
const MISS: usize = usize::MAX;
/// Another entry holds the flow's key (`nat::RACED`).
const RACED: usize = usize::MAX - 1;

impl Model {
    /// A model reading the configuration from `view`, with a connection
    /// table of `flow_sets` sets (a power of two) and a NAT table of
    /// `nat_entries` entries, all empty.
    #[must_use]
    pub fn new(view: Rc<RefCell<View>>, flow_sets: u32, nat_entries: usize) -> Self {
        Self {
            view,
            flows: HashMap::new(),
            flow_set_mask: flow_sets - 1,
            nat: HashMap::new(),
            nat_capacity: nat_entries,
            persist: HashMap::new(),
            counters: Counters::default(),
            now_ns: 1 << 30,
            unpredictable: false,
        }
    }

    /// Forget every flow, NAT entry and template (the harness empties the
    /// program's tables at the same time).
    pub fn clear_tables(&mut self) {
        self.flows.clear();
        self.nat.clear();
        self.persist.clear();
    }

    /// Flows in the connection table and entries in the NAT table.
    #[must_use]
    pub fn table_sizes(&self) -> (usize, usize) {
        let flows = self
            .flows
            .values()
            .map(|s| s.tags.iter().filter(|&&t| t != 0).count())
            .sum();
        (flows, self.nat.len())
    }

    /// The NAT table's entries (the generator answers flows it holds).
    pub fn nat_entries(&self) -> impl Iterator<Item = (&FlowKey, &NatEntry)> {
        self.nat.iter()
    }

    /// The NAT entry under `key`.
    #[must_use]
    pub fn nat_entry(&self, key: &FlowKey) -> Option<&NatEntry> {
        self.nat.get(key)
    }

    /// The templates: client key and backend slot.
    #[must_use]
    pub fn templates(&self) -> HashMap<PersistKey, u32> {
        self.persist.iter().map(|(k, t)| (*k, t.backend)).collect()
    }

    /// The connection-table sets the model has written, by index.
    pub fn flow_sets(&self) -> impl Iterator<Item = (u32, &FlowSet)> {
        self.flows.iter().map(|(i, s)| (*i, s))
    }

    /// What the program does with `frame`.
    pub fn run(&mut self, frame: &[u8]) -> Outcome {
        self.unpredictable = false;
        self.now_ns += 1 << 20;
        let pkt = parse::parse(frame);
        let mut out = frame.to_vec();
        let reason = match pkt.class.0 {
            ProtoClass::NonIp => exit::PASS_NOT_IP,
            ProtoClass::Malformed => exit::PASS_MALFORMED,
            _ => self.addressed(frame, &pkt, &mut out),
        };
        let action = action_of(reason);
        if action != XDP_TX {
            out = frame.to_vec();
        }
        let c = &mut self.counters.proto[pkt.class.0 as usize];
        match action {
            XDP_ABORTED => c.aborted += 1,
            XDP_DROP => c.drop += 1,
            XDP_PASS => c.pass += 1,
            _ => c.tx += 1,
        }
        if let Some(c) = self.counters.exits.get_mut(reason) {
            *c += 1;
        }
        Outcome {
            action,
            reason,
            frame: out,
            unpredictable: self.unpredictable,
        }
    }

    fn filter(&self, addr: &[u8; 16]) -> u8 {
        self.view
            .borrow()
            .filter
            .get(&filter_bucket(addr))
            .copied()
            .unwrap_or(0)
    }

    fn vip_id(&self, id: u32) -> Option<VipMeta> {
        if id >= lb_common::vip::MAX_VIPS {
            return None;
        }
        Some(
            self.view
                .borrow()
                .vip_ids
                .get(&id)
                .copied()
                .unwrap_or_default(),
        )
    }

    fn live_vip(&self, id: u32) -> Option<VipMeta> {
        self.vip_id(id).filter(|m| m.generation != 0)
    }

    fn backend(&self, index: u32) -> Option<Backend> {
        if index >= lb_common::backend::MAX_BACKENDS {
            return None;
        }
        Some(
            self.view
                .borrow()
                .backends
                .get(&index)
                .copied()
                .unwrap_or_default(),
        )
    }

    fn backend_at(&self, index: u32, vip_id: u32) -> Option<Backend> {
        self.backend(index)
            .filter(|b| b.flags & backend_flags::ACTIVE != 0 && b.vip_id == vip_id)
    }

    /// `select::find_vip`: the exact port first (its answer final when
    /// the index has the key), then the port-0 VIP.
    fn find_vip(&self, flow: &FlowKey, bits: u8) -> Option<VipMeta> {
        let (exact, any) = {
            let view = self.view.borrow();
            let half = u32::from(view.config.vip_index);
            let index = &view.vip_index;
            let find = |key: &VipKey| vip_index_find(half, key, |slot| index.get(slot as usize));
            let mut key = VipKey {
                addr: flow.dst,
                port_be: flow.dst_port_be,
                proto: flow.proto,
                pad: 0,
            };
            let exact = if bits & filter_bits::PORT == 0 {
                None
            } else {
                find(&key)
            };
            key.port_be = 0;
            let any = if exact.is_none() && bits & filter_bits::ANY_PORT != 0 {
                find(&key)
            } else {
                None
            };
            (exact, any)
        };
        if let Some(id) = exact {
            return self.live_vip(id);
        }
        self.live_vip(any?)
    }

    /// `main.rs` `to_vip` (a packet to a VIP, a NAT backend's reply, or neither).
    fn addressed(&mut self, f: &[u8], pkt: &Packet, out: &mut Vec<u8>) -> usize {
        let is_l4 = matches!(pkt.flow.proto, TCP | UDP) && !pkt.icmp_error;
        if !is_l4 && !pkt.icmp_error && !pkt.fragment {
            return exit::PASS_NOT_VIP;
        }
        let bits = self.filter(&pkt.flow.dst);
        if pkt.icmp_error {
            if bits & filter_bits::NAT != 0
                || self.filter(&pkt.flow.src) & filter_bits::NAT_REAL != 0
            {
                let reason = self.nat_icmp_error(f, pkt, out);
                if reason != MISS {
                    return reason;
                }
            }
            if !pkt.icmp_too_big || bits == 0 {
                return exit::PASS_NOT_VIP;
            }
        }
        let plain_l4 = is_l4 && !pkt.fragment;
        if bits != 0 {
            let reason = self.vip_packet(f, pkt, bits, out);
            if reason != exit::PASS_NOT_VIP {
                return reason;
            }
        }
        if plain_l4 && self.filter(&pkt.flow.src) & filter_bits::NAT_REAL != 0 {
            return self.nat_reply(f, pkt, out);
        }
        exit::PASS_NOT_VIP
    }

    /// `main.rs` `vip_packet`.
    fn vip_packet(&mut self, f: &[u8], pkt: &Packet, bits: u8, out: &mut Vec<u8>) -> usize {
        let hash = flow_hash(&pkt.flow);
        let fast = if bits & filter_bits::PLAIN != 0 && !pkt.syn && !pkt.fragment {
            self.established(pkt, hash)
        } else {
            None
        };
        let chosen = if let Some(c) = fast {
            c
        } else {
            if bits & filter_bits::NAT != 0 && !pkt.fragment && !pkt.icmp_error {
                let reason = self.nat_forward(f, pkt, out);
                if reason != MISS {
                    return reason;
                }
            }
            let Some(vip) = self.find_vip(&pkt.flow, bits) else {
                return exit::PASS_NOT_VIP;
            };
            if pkt.fragment {
                return exit::DROP_FRAGMENT;
            }
            if vip.mode >= mode::NAT {
                if pkt.icmp_too_big {
                    return exit::PASS_NOT_VIP;
                }
                let index = self.choose(&vip, pkt, hash);
                let reason = self.nat_new_flow(f, pkt, hash, &vip, index, out);
                if reason == RACED {
                    let reason = self.nat_forward(f, pkt, out);
                    return if reason == MISS {
                        exit::DROP_NAT_FULL
                    } else {
                        reason
                    };
                }
                return reason;
            }
            let index = self.choose(&vip, pkt, hash);
            let Some(c) = self.new_flow(vip, pkt, hash, index) else {
                return if vip.flags & vip_flags::PASS_NO_BACKEND != 0 {
                    exit::PASS_NO_BACKEND
                } else {
                    exit::DROP_NO_BACKEND
                };
            };
            c
        };
        let bytes = f.len() as u64;
        let reason = if chosen.vip.mode == mode::IPIP {
            let cfg = self.view.borrow().config;
            let overhead = if pkt.v6 { 40 } else { 20 };
            if f.len() - pkt.l3_off + overhead > usize::from(cfg.mtu) {
                if !pkt.df || pkt.l3_off != 14 || pkt.icmp_too_big {
                    return exit::DROP_TOO_BIG;
                }
                *out = rewrite::icmp_too_big(f, pkt, cfg.mtu - overhead as u16);
                return exit::TX_ICMP_TOO_BIG;
            }
            *out = rewrite::ipip(f, pkt, hash, &chosen.backend, &cfg);
            exit::TX_IPIP
        } else {
            out.copy_from_slice(f);
            rewrite::send(out, chosen.backend.mac);
            exit::TX_DSR
        };
        self.count_traffic(chosen.vip.id, chosen.index, bytes, chosen.new_flow);
        reason
    }

    fn flow_set(&mut self, hash: u32) -> &mut FlowSet {
        self.flows
            .entry(flow_set_index(hash, self.flow_set_mask))
            .or_default()
    }

    /// `select::established`.
    fn established(&mut self, pkt: &Packet, hash: u32) -> Option<Chosen> {
        let (way, state) = self.flow_set(hash).find(&pkt.flow, hash)?;
        let vip = self.vip_id(state.vip_id)?;
        if vip.generation != state.vip_generation || vip.generation == 0 {
            return None;
        }
        let backend = self.backend_at(state.backend, vip.id)?;
        let now = self.now_ns;
        self.flow_set(hash).touch(way, now);
        if vip.flags & vip_flags::PERSIST != 0 {
            self.keep_template(&vip, &pkt.flow.src, state.backend);
        }
        Some(Chosen {
            index: state.backend,
            new_flow: false,
            backend,
            vip,
        })
    }

    /// `select::new_flow`.
    fn new_flow(
        &mut self,
        vip: VipMeta,
        pkt: &Packet,
        hash: u32,
        index: Option<u32>,
    ) -> Option<Chosen> {
        let index = index?;
        let backend = self.backend_at(index, vip.id)?;
        if !pkt.icmp_too_big {
            let now = self.now_ns;
            let set = self.flow_set(hash);
            let (way, replaced) = set.slot_for(&pkt.flow, hash, now);
            set.write(way, &pkt.flow, hash, index, vip.id, vip.generation, now);
            if replaced != Replaced::Nothing {
                self.unpredictable = true;
            }
        }
        Some(Chosen {
            index,
            new_flow: true,
            backend,
            vip,
        })
    }

    fn template_key(vip: &VipMeta, src: &[u8; 16]) -> PersistKey {
        PersistKey {
            client: client_prefix(src, &vip.persist_mask),
            vip_id: vip.id,
            generation: vip.generation,
        }
    }

    /// `select::choose`: `None` is `NO_SLOT`.
    fn choose(&mut self, vip: &VipMeta, pkt: &Packet, hash: u32) -> Option<u32> {
        if vip.flags & vip_flags::NO_BACKEND != 0 || vip.ring_size == 0 {
            return None;
        }
        let key =
            (vip.flags & vip_flags::PERSIST != 0).then(|| Self::template_key(vip, &pkt.flow.src));
        if let Some(key) = &key
            && let Some(t) = self.persist.get(key)
            && let Some(b) = self.backend_at(t.backend, vip.id)
            && b.flags & backend_flags::DRAINED == 0
        {
            return Some(t.backend);
        }
        let h = if vip.flags & vip_flags::SOURCE_HASH != 0 {
            source_hash(&pkt.flow.src)
        } else {
            hash
        };
        let slot = maglev_slot(h, vip.ring_size);
        let index = *self
            .view
            .borrow()
            .tables
            .get(&vip.table)?
            .get(slot as usize)?;
        if let Some(key) = key
            && !pkt.icmp_too_big
        {
            self.insert_template(key, index);
        }
        Some(index)
    }

    fn insert_template(&mut self, key: PersistKey, backend: u32) {
        if self.persist.len() >= lb_common::persist::PERSIST_ENTRIES as usize {
            self.unpredictable = true;
        }
        self.persist.insert(
            key,
            Persisted {
                backend,
                pad: 0,
                last_ns: 0,
            },
        );
    }

    /// `select::keep_template`: written when the client has none.
    fn keep_template(&mut self, vip: &VipMeta, src: &[u8; 16], index: u32) {
        let key = Self::template_key(vip, src);
        if !self.persist.contains_key(&key) {
            self.insert_template(key, index);
        }
    }

    /// `nat::serving`.
    fn serving(&self, slot: u32, vip_id: u32, addr: &[u8; 16]) -> Option<Backend> {
        self.backend(slot).filter(|b| {
            b.flags & backend_flags::ACTIVE != 0 && b.vip_id == vip_id && b.addr == *addr
        })
    }

    /// `nat::forward`.
    fn nat_forward(&mut self, f: &[u8], pkt: &Packet, out: &mut Vec<u8>) -> usize {
        let Some(e) = self.nat.get(&pkt.flow).copied() else {
            return MISS;
        };
        if e.flags & nat_flags::REPLY != 0 {
            return MISS;
        }
        let live = self.serving(e.backend, e.vip_id, &e.to.dst);
        if live.is_none() && (pkt.flow.proto != TCP || e.mac == [0; 6]) {
            self.nat.remove(&reversed(&e.to));
            self.nat.remove(&pkt.flow);
            return MISS;
        }
        if e.flags & nat_flags::PERSIST != 0
            && let Some(vip) = self.vip_id(e.vip_id)
        {
            self.keep_template(&vip, &pkt.flow.src, e.backend);
        }
        let mac = live.map_or(e.mac, |b| b.mac);
        let Some(frame) = rewrite::translate(f, pkt, &e.to, mac) else {
            return exit::ABORTED;
        };
        *out = frame;
        if live.is_some() {
            self.count_traffic(e.vip_id, e.backend, f.len() as u64, false);
        }
        exit::TX_NAT
    }

    /// `nat::icmp_error`.
    fn nat_icmp_error(&mut self, f: &[u8], pkt: &Packet, out: &mut Vec<u8>) -> usize {
        let Some(e) = self.nat.get(&pkt.flow).copied() else {
            return MISS;
        };
        let mac = if e.flags & nat_flags::REPLY != 0 {
            e.mac
        } else {
            self.serving(e.backend, e.vip_id, &e.to.dst)
                .map_or(e.mac, |b| b.mac)
        };
        if mac == [0; 6] {
            return MISS;
        }
        match rewrite::translate_icmp(f, pkt, &e.to, mac) {
            Some(frame) => {
                *out = frame;
                exit::TX_NAT_ICMP
            }
            None => exit::ABORTED,
        }
    }

    /// `nat::reply`.
    fn nat_reply(&mut self, f: &[u8], pkt: &Packet, out: &mut Vec<u8>) -> usize {
        let Some(e) = self.nat.get(&pkt.flow).copied() else {
            return exit::PASS_NAT_NO_ENTRY;
        };
        if e.flags & nat_flags::REPLY == 0 {
            return exit::PASS_NAT_NO_ENTRY;
        }
        let Some(frame) = rewrite::translate(f, pkt, &e.to, e.mac) else {
            return exit::ABORTED;
        };
        *out = frame;
        if self
            .backend(e.backend)
            .is_some_and(|b| b.vip_id == e.vip_id && b.addr == pkt.flow.src)
        {
            let c = self.counters.vips.entry(e.vip_id).or_default();
            c.replies += 1;
            c.reply_bytes += f.len() as u64;
            let c = self.counters.backends.entry(e.backend).or_default();
            c.replies += 1;
            c.reply_bytes += f.len() as u64;
        }
        exit::TX_NAT_REPLY
    }

    /// Insert `entry` under `key` unless the key is taken: 0, or the
    /// refusal (`DROP_NAT_PORTS` for a taken key, `DROP_NAT_FULL`).
    fn nat_insert(&mut self, key: FlowKey, entry: NatEntry) -> usize {
        if self.nat.contains_key(&key) {
            return exit::DROP_NAT_PORTS;
        }
        if self.nat.len() >= self.nat_capacity {
            self.unpredictable = true;
            return exit::DROP_NAT_FULL;
        }
        self.nat.insert(key, entry);
        0
    }

    /// `nat::new_flow`.
    fn nat_new_flow(
        &mut self,
        f: &[u8],
        pkt: &Packet,
        hash: u32,
        vip: &VipMeta,
        index: Option<u32>,
        out: &mut Vec<u8>,
    ) -> usize {
        let no_backend = if vip.flags & vip_flags::PASS_NO_BACKEND != 0 {
            exit::PASS_NO_BACKEND
        } else {
            exit::DROP_NO_BACKEND
        };
        let Some((index, backend)) = index.and_then(|i| self.backend_at(i, vip.id).map(|b| (i, b)))
        else {
            return no_backend;
        };
        let fullnat = vip.mode == mode::FULLNAT;
        let flags =
            (if fullnat { nat_flags::FULLNAT } else { 0 }) | (vip.flags & vip_flags::PERSIST);
        let fl = &pkt.flow;
        let reply = NatEntry {
            to: FlowKey {
                src: fl.dst,
                dst: fl.src,
                src_port_be: fl.dst_port_be,
                dst_port_be: fl.src_port_be,
                proto: fl.proto,
                pad: [0; 3],
            },
            mac: f[6..12].try_into().expect("6 bytes"),
            flags: flags | nat_flags::REPLY,
            backend: index,
            vip_id: vip.id,
            ..NatEntry::default()
        };
        let mut fwd = NatEntry {
            to: FlowKey {
                src: if fullnat { backend.snat } else { fl.src },
                dst: backend.addr,
                src_port_be: if fullnat { 0 } else { fl.src_port_be },
                dst_port_be: if backend.port_be == 0 {
                    fl.dst_port_be
                } else {
                    backend.port_be
                },
                proto: fl.proto,
                pad: [0; 3],
            },
            mac: backend.mac,
            flags,
            backend: index,
            vip_id: vip.id,
            ..NatEntry::default()
        };
        let placed = if fullnat {
            let cfg = self.view.borrow().config;
            let (min, count) = (cfg.snat_port_min, cfg.snat_ports);
            let mut placed = exit::DROP_NAT_PORTS;
            let mut attempt = 0;
            while attempt < SNAT_PORT_TRIES && attempt < u32::from(count) {
                fwd.to.src_port_be = snat_port(hash, attempt, min, count).to_be();
                placed = self.nat_insert(reversed(&fwd.to), reply);
                if placed != exit::DROP_NAT_PORTS {
                    break;
                }
                attempt += 1;
            }
            placed
        } else {
            self.nat_insert(reversed(&fwd.to), reply)
        };
        if placed != 0 {
            self.count_refused(vip.id, index);
            return placed;
        }
        if self.nat.contains_key(&pkt.flow) {
            self.nat.remove(&reversed(&fwd.to));
            return RACED;
        }
        if self.nat.len() >= self.nat_capacity {
            self.unpredictable = true;
            self.nat.remove(&reversed(&fwd.to));
            self.count_refused(vip.id, index);
            return exit::DROP_NAT_FULL;
        }
        self.nat.insert(pkt.flow, fwd);
        let Some(frame) = rewrite::translate(f, pkt, &fwd.to, backend.mac) else {
            return exit::ABORTED;
        };
        *out = frame;
        self.count_traffic(vip.id, index, f.len() as u64, true);
        exit::TX_NAT
    }

    fn count_traffic(&mut self, vip_id: u32, backend: u32, bytes: u64, new_flow: bool) {
        let new = u64::from(new_flow);
        for c in [
            self.counters.vips.entry(vip_id).or_default(),
            self.counters.backends.entry(backend).or_default(),
        ] {
            c.packets += 1;
            c.bytes += bytes;
            c.new_flows += new;
        }
    }

    fn count_refused(&mut self, vip_id: u32, backend: u32) {
        self.counters.vips.entry(vip_id).or_default().refused += 1;
        self.counters.backends.entry(backend).or_default().refused += 1;
    }
}

/// `main.rs` `action_of`.
#[must_use]
pub const fn action_of(reason: usize) -> u32 {
    match reason {
        exit::PASS_NOT_IP
        | exit::PASS_MALFORMED
        | exit::PASS_NOT_VIP
        | exit::PASS_NO_BACKEND
        | exit::PASS_NAT_NO_ENTRY => XDP_PASS,
        exit::DROP_MALFORMED
        | exit::DROP_FRAGMENT
        | exit::DROP_NO_BACKEND
        | exit::DROP_TOO_BIG
        | exit::DROP_NAT_PORTS
        | exit::DROP_NAT_FULL => XDP_DROP,
        exit::TX_DSR
        | exit::TX_IPIP
        | exit::TX_ICMP_TOO_BIG
        | exit::TX_NAT
        | exit::TX_NAT_REPLY
        | exit::TX_NAT_ICMP => XDP_TX,
        _ => XDP_ABORTED,
    }
}
