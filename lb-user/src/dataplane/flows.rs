//! The connection table from user space, in node-independent terms: a
//! flow as a [`FlowRecord`] (client, VIP, backend: addresses, not this
//! node's map indices). Pure: over the table's sets (the memory-mapped
//! `flows` array in `lbd`, a vector in tests) and a [`Translation`] of this
//! node's ids and slots, so the rules are unit-tested without a kernel.
//!
//! Used by connection sync (`crate::sync`) and by `lbctl flows`. Out: a
//! [`FlowEvent`] or a table way names this node's VIP id and backend slot;
//! the record names addresses. In: the receiver finds its own VIP id,
//! generation and slot for those addresses and writes the flow exactly as
//! its XDP program would (`lb_common::flow::FlowTable::insert`). Writing a
//! set the program may be writing at the same moment is safe for the
//! reader (the check word rejects a torn way); at worst one of the two
//! flows is lost, and is re-balanced by Maglev on its next packet.

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
};

use lb_common::{
    flow::{
        FLOW_SEEN_UNIT_NS, FLOW_WAYS, FlowEvent, FlowKey, FlowSet, FlowTable, flow_age, flow_seen,
    },
    hash::flow_hash,
    persist::{PersistKey, Persisted, client_prefix},
};
use serde::{Deserialize, Serialize};

use crate::dataplane::balancer::{Protocol, ServiceKey};

/// One flow's decision, in node-independent terms.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlowRecord {
    /// IP protocol number (6, 17).
    pub proto: u8,
    /// VIP address.
    pub vip: IpAddr,
    /// VIP port.
    pub vip_port: u16,
    /// Client address.
    pub client: IpAddr,
    /// Client port.
    pub client_port: u16,
    /// The backend the flow goes to.
    pub backend: IpAddr,
}

/// This node's VIP ids, generations and backend slots, by address and
/// back: what turns events into records and records into table entries.
/// Built from the balancer after every change ([`Translation::build`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Translation {
    /// VIP id -> (service, generation).
    by_id: HashMap<u32, (ServiceKey, u32)>,
    /// Service -> (VIP id, generation).
    by_service: HashMap<ServiceKey, (u32, u32)>,
    /// Backend slot -> (VIP id, backend address).
    slots: HashMap<u32, (u32, IpAddr)>,
    /// (VIP id, backend address) -> slot.
    slot_of: HashMap<(u32, IpAddr), u32>,
    /// VIP id -> client prefix mask, for services with persistence.
    persist: HashMap<u32, [u8; 16]>,
}

/// Why a record was not written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unapplied {
    /// No service here for the record's VIP, port and protocol (or it is
    /// not active on this node).
    NoService,
    /// The backend is not in this node's pool for that service.
    NoBackend,
}

impl Translation {
    /// From the services a balancer has: `(service, VIP id, generation,
    /// [(backend address, slot)])`.
    pub fn build<'a>(
        services: impl IntoIterator<Item = (ServiceKey, u32, u32, Vec<(IpAddr, u32)>)> + 'a,
    ) -> Self {
        let mut t = Self::default();
        for (key, id, generation, backends) in services {
            t.by_id.insert(id, (key, generation));
            t.by_service.insert(key, (id, generation));
            for (addr, slot) in backends {
                t.slots.insert(slot, (id, addr));
                t.slot_of.insert((id, addr), slot);
            }
        }
        t
    }

    /// VIP `id` keeps client templates, clients cut by `mask`
    /// (`lb_common::persist::prefix_mask`).
    pub fn set_persistence(&mut self, id: u32, mask: [u8; 16]) {
        self.persist.insert(id, mask);
    }

    /// Whether VIP `id` keeps client templates.
    #[must_use]
    pub fn persistent(&self, id: u32) -> bool {
        self.persist.contains_key(&id)
    }

    /// The client template a synced flow implies on this node at `now_ns`
    /// (the program's clock): for a flow of a persistent service, its
    /// client (cut to the service's prefix) goes to the flow's backend
    /// slot. `None` for other services, or when the record does not place
    /// here.
    #[must_use]
    pub fn template(&self, r: &FlowRecord, now_ns: u64) -> Option<(PersistKey, Persisted)> {
        let (id, generation, slot) = self.place(r).ok()?;
        let mask = self.persist.get(&id)?;
        Some((
            PersistKey {
                client: client_prefix(&addr16(r.client), mask),
                vip_id: id,
                generation,
            },
            Persisted {
                backend: slot,
                pad: 0,
                last_ns: now_ns,
            },
        ))
    }

    /// A service's VIP id and generation on this node.
    #[must_use]
    pub fn service_id(&self, key: &ServiceKey) -> Option<(u32, u32)> {
        self.by_service.get(key).copied()
    }

    /// Services known.
    #[must_use]
    pub fn services(&self) -> usize {
        self.by_service.len()
    }

    /// The record for a new-flow event, if its VIP and slot are still the
    /// ones the event names (an event of a service removed meanwhile is
    /// dropped).
    #[must_use]
    pub fn record(&self, e: &FlowEvent) -> Option<FlowRecord> {
        let &(service, generation) = self.by_id.get(&e.vip_id)?;
        if generation != e.vip_generation {
            return None;
        }
        let &(slot_vip, backend) = self.slots.get(&e.backend)?;
        if slot_vip != e.vip_id {
            return None;
        }
        Some(record_of(&e.key, service.proto.number(), backend))
    }

    /// Whether VIP id `vip_id` of generation `generation` and slot `slot`
    /// (serving `backend`) are still what this node has.
    #[must_use]
    pub fn owns(&self, vip_id: u32, generation: u32, slot: u32, backend: IpAddr) -> bool {
        self.by_id
            .get(&vip_id)
            .is_some_and(|&(_, g)| g == generation)
            && self.slots.get(&slot) == Some(&(vip_id, backend))
    }

    /// This node's (VIP id, generation, slot) for a record.
    ///
    /// # Errors
    /// [`Unapplied`].
    pub fn place(&self, r: &FlowRecord) -> Result<(u32, u32, u32), Unapplied> {
        let proto = match r.proto {
            6 => Protocol::Tcp,
            17 => Protocol::Udp,
            _ => return Err(Unapplied::NoService),
        };
        let exact = ServiceKey {
            vip: r.vip,
            port: r.vip_port,
            proto,
        };
        // A port-0 service takes every port of its address, as in XDP.
        let &(id, generation) = self
            .by_service
            .get(&exact)
            .or_else(|| self.by_service.get(&ServiceKey { port: 0, ..exact }))
            .ok_or(Unapplied::NoService)?;
        let slot = *self
            .slot_of
            .get(&(id, r.backend))
            .ok_or(Unapplied::NoBackend)?;
        Ok((id, generation, slot))
    }
}

fn addr16(addr: IpAddr) -> [u8; 16] {
    match addr {
        IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
        IpAddr::V6(a) => a.octets(),
    }
}

fn addr_of(bytes: [u8; 16]) -> IpAddr {
    let v6 = std::net::Ipv6Addr::from(bytes);
    v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4)
}

fn record_of(key: &FlowKey, proto: u8, backend: IpAddr) -> FlowRecord {
    FlowRecord {
        proto,
        vip: addr_of(key.dst),
        vip_port: u16::from_be(key.dst_port_be),
        client: addr_of(key.src),
        client_port: u16::from_be(key.src_port_be),
        backend,
    }
}

/// The connection-table key of a record.
#[must_use]
pub fn key_of(r: &FlowRecord) -> FlowKey {
    FlowKey {
        src: addr16(r.client),
        dst: addr16(r.vip),
        src_port_be: r.client_port.to_be(),
        dst_port_be: r.vip_port.to_be(),
        proto: r.proto,
        pad: [0; 3],
    }
}

/// Write a record into `sets` (this node's table) at `now_ns` (the
/// program's clock, `CLOCK_MONOTONIC_COARSE`), as the XDP program records
/// a new flow.
///
/// # Errors
/// [`Unapplied`]: nothing written.
pub fn apply(
    sets: &mut [FlowSet],
    t: &Translation,
    r: &FlowRecord,
    now_ns: u64,
) -> Result<(), Unapplied> {
    let (id, generation, slot) = t.place(r)?;
    FlowTable::new(sets).insert(&key_of(r), slot, id, generation, now_ns);
    Ok(())
}

/// Every live flow in `sets` as a record (what a bulk sync sends).
pub fn dump<'a>(sets: &'a [FlowSet], t: &'a Translation) -> impl Iterator<Item = FlowRecord> + 'a {
    live(sets, t).map(|(r, _)| r)
}

/// Every live flow in `sets` as a record, with when it was last seen (in
/// the table's time units): ways whose check word holds and whose VIP and
/// slot are still the ones recorded.
fn live<'a>(
    sets: &'a [FlowSet],
    t: &'a Translation,
) -> impl Iterator<Item = (FlowRecord, u32)> + 'a {
    sets.iter().flat_map(move |set| {
        (0..FLOW_WAYS).filter_map(move |i| {
            if set.tags[i] == 0 {
                return None;
            }
            let way = set.ways[i];
            let hash = flow_hash(&way.key);
            let state = way.valid_state(hash)?;
            let record = t.record(&FlowEvent {
                key: way.key,
                backend: state.backend,
                vip_id: state.vip_id,
                vip_generation: state.vip_generation,
                pad: 0,
            })?;
            Some((record, set.seen[i]))
        })
    })
}

/// One connection-table entry as `lbctl flows` shows it (as `ipvsadm
/// -Lc` does).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowStatus {
    /// `tcp` or `udp`.
    pub protocol: String,
    /// The client.
    pub client: SocketAddr,
    /// The VIP and port the client addressed.
    pub vip: SocketAddr,
    /// The backend the flow goes to.
    pub backend: IpAddr,
    /// Time since its last packet, in milliseconds (the table keeps it in
    /// units of about 1 ms).
    pub idle_ms: u64,
    /// NAT flows: the backend's port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend_port: Option<u16>,
    /// NAT flows: `nat` or `fullnat` (connection-table flows: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// `fullnat` flows: the source address and port the backend sees.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snat: Option<SocketAddr>,
    /// NAT flows: the TCP state (`ESTABLISHED`, ...) or `UDP`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// NAT flows: milliseconds until it expires if no packet comes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_ms: Option<u64>,
}

/// What `lbctl flows` gets: the entries, most recently seen first, at most
/// the number asked for, and how many matched in all.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowsReply {
    /// Entries that matched.
    pub total: usize,
    /// The first `limit` of them.
    pub flows: Vec<FlowStatus>,
}

/// The live flows of `sets`, and the NAT table's (`nat`: from
/// `nat::statuses`, with their idle time in `flow_seen` units), of
/// `service` only, if given (a port-0 service matches every port), most
/// recently seen first, at most `limit` of them (0: all). `now_ns` is the
/// program's clock (`CLOCK_MONOTONIC_COARSE`).
#[must_use]
pub fn list(
    sets: &[FlowSet],
    nat: Vec<(u32, FlowStatus)>,
    t: &Translation,
    now_ns: u64,
    service: Option<&ServiceKey>,
    limit: usize,
) -> FlowsReply {
    let now = flow_seen(now_ns);
    let table = live(sets, t)
        .filter(|(r, _)| {
            service.is_none_or(|s| {
                s.vip == r.vip
                    && s.proto.number() == r.proto
                    && (s.port == 0 || s.port == r.vip_port)
            })
        })
        .map(|(r, seen)| {
            let age = flow_age(now, seen);
            let status = FlowStatus {
                protocol: if r.proto == 17 { "udp" } else { "tcp" }.into(),
                client: SocketAddr::new(r.client, r.client_port),
                vip: SocketAddr::new(r.vip, r.vip_port),
                backend: r.backend,
                idle_ms: u64::from(age) * FLOW_SEEN_UNIT_NS / 1_000_000,
                backend_port: None,
                mode: None,
                snat: None,
                state: None,
                expires_ms: None,
            };
            (age, status)
        });
    let nat = nat.into_iter().filter(|(_, f)| {
        service.is_none_or(|s| {
            s.vip == f.vip.ip()
                && (if s.proto == Protocol::Udp {
                    "udp"
                } else {
                    "tcp"
                }) == f.protocol
                && (s.port == 0 || s.port == f.vip.port())
        })
    });
    let (total, flows) = most_recent(table.chain(nat), limit);
    FlowsReply { total, flows }
}

/// How many `flows` there are, and the `limit` most recently seen of them
/// (least idle first, then by client; 0: all), keeping no more than
/// `limit` at a time: with a limit, a table of a million flows costs
/// `lbctl flows` a heap of `limit` entries, not a million (the soak saw
/// lbd's heap grow with the table through its `lbctl flows --limit 20`
/// loop).
fn most_recent(
    flows: impl Iterator<Item = (u32, FlowStatus)>,
    limit: usize,
) -> (usize, Vec<FlowStatus>) {
    /// Ordered by idle time, then client: the heap's top is the entry to
    /// drop first.
    struct ByAge(u32, FlowStatus);
    impl PartialEq for ByAge {
        fn eq(&self, o: &Self) -> bool {
            self.cmp(o) == std::cmp::Ordering::Equal
        }
    }
    impl Eq for ByAge {}
    impl PartialOrd for ByAge {
        fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
            Some(self.cmp(o))
        }
    }
    impl Ord for ByAge {
        fn cmp(&self, o: &Self) -> std::cmp::Ordering {
            self.0
                .cmp(&o.0)
                .then_with(|| self.1.client.cmp(&o.1.client))
        }
    }
    let mut total = 0;
    let mut kept = std::collections::BinaryHeap::new();
    for (age, f) in flows {
        total += 1;
        kept.push(ByAge(age, f));
        if limit > 0 && kept.len() > limit {
            kept.pop();
        }
    }
    let flows = kept.into_sorted_vec().into_iter().map(|b| b.1).collect();
    (total, flows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_most_recent_are_kept_without_holding_the_rest() {
        let status = |port: u16| FlowStatus {
            protocol: "tcp".into(),
            client: SocketAddr::new(IpAddr::from([198, 18, 9, 1]), port),
            vip: SocketAddr::new(IpAddr::from([198, 18, 0, 1]), 80),
            backend: IpAddr::from([198, 18, 1, 1]),
            idle_ms: 0,
            backend_port: None,
            mode: None,
            snat: None,
            state: None,
            expires_ms: None,
        };
        // Ages 0..1000 in a scrambled order, two flows per age.
        let flows: Vec<(u32, FlowStatus)> = (0..2000u32)
            .map(|i| ((i * 7919) % 1000, status(i as u16)))
            .collect();
        let mut sorted = flows.clone();
        sorted.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.client.cmp(&b.1.client)));
        let want: Vec<FlowStatus> = sorted.into_iter().map(|(_, f)| f).collect();
        let (total, top) = most_recent(flows.clone().into_iter(), 25);
        assert_eq!((total, top.as_slice()), (2000, &want[..25]));
        let (total, all) = most_recent(flows.into_iter(), 0);
        assert_eq!((total, all), (2000, want));
    }

    fn svc(last: u8, port: u16) -> ServiceKey {
        ServiceKey {
            vip: IpAddr::from([198, 18, 0, last]),
            port,
            proto: Protocol::Tcp,
        }
    }

    fn be(last: u8) -> IpAddr {
        IpAddr::from([198, 18, 0, last])
    }

    fn record(client_port: u16, backend: u8) -> FlowRecord {
        FlowRecord {
            proto: 6,
            vip: IpAddr::from([198, 18, 0, 100]),
            vip_port: 80,
            client: IpAddr::from([198, 18, 0, 1]),
            client_port,
            backend: be(backend),
        }
    }

    /// A synced flow of a persistent service implies its client's
    /// template on the receiver, in the receiver's ids and slots; other
    /// services' flows imply none.
    #[test]
    fn synced_flows_of_persistent_services_imply_client_templates() {
        let mut t = Translation::build([
            (svc(100, 80), 4, 9, vec![(be(11), 7)]),
            (svc(101, 80), 5, 2, vec![(be(11), 8)]),
        ]);
        t.set_persistence(4, lb_common::persist::prefix_mask(96 + 24));
        let (key, value) = t.template(&record(40_000, 11), 1234).expect("persistent");
        assert_eq!(key.client, lb_common::v4_mapped([198, 18, 0, 0]));
        assert_eq!((key.vip_id, key.generation), (4, 9));
        assert_eq!((value.backend, value.last_ns), (7, 1234));
        let other = FlowRecord {
            vip: IpAddr::from([198, 18, 0, 101]),
            ..record(40_000, 11)
        };
        assert_eq!(t.template(&other, 1234), None, "not persistent");
        assert_eq!(
            t.template(&record(40_000, 12), 1234),
            None,
            "no such backend here"
        );
    }

    /// The sender's and the receiver's ids and slots differ; records carry
    /// addresses, so the receiver's table ends up naming its own.
    #[test]
    fn a_flow_crosses_nodes_with_different_ids_and_slots() {
        let sender = Translation::build([(svc(100, 80), 3, 17, vec![(be(11), 5), (be(12), 6)])]);
        let receiver = Translation::build([
            (svc(101, 80), 0, 1, vec![(be(11), 0)]),
            (svc(100, 80), 1, 2, vec![(be(12), 1), (be(11), 2)]),
        ]);
        let r = record(40_000, 12);
        let event = FlowEvent {
            key: key_of(&r),
            backend: 6,
            vip_id: 3,
            vip_generation: 17,
            pad: 0,
        };
        assert_eq!(sender.record(&event), Some(r));
        // A stale generation or a slot of another VIP: no record.
        assert_eq!(
            sender.record(&FlowEvent {
                vip_generation: 16,
                ..event
            }),
            None
        );
        assert_eq!(
            sender.record(&FlowEvent {
                backend: 9,
                ..event
            }),
            None
        );

        let mut sets = vec![FlowSet::default(); 16];
        apply(&mut sets, &receiver, &r, 1 << 30).unwrap();
        let state = FlowTable::new(&mut sets)
            .lookup(&key_of(&r), 1 << 30)
            .expect("recorded");
        assert_eq!(
            (state.vip_id, state.vip_generation, state.backend),
            (1, 2, 1)
        );
        // And it dumps back as the same record.
        assert_eq!(dump(&sets, &receiver).collect::<Vec<_>>(), vec![r]);
    }

    #[test]
    fn records_for_what_this_node_lacks_are_not_written() {
        let t = Translation::build([(svc(100, 80), 0, 1, vec![(be(11), 0)])]);
        let mut sets = vec![FlowSet::default(); 4];
        assert_eq!(
            apply(&mut sets, &t, &record(1, 12), 1),
            Err(Unapplied::NoBackend)
        );
        let other_port = FlowRecord {
            vip_port: 443,
            ..record(1, 11)
        };
        assert_eq!(
            apply(&mut sets, &t, &other_port, 1),
            Err(Unapplied::NoService)
        );
        assert_eq!(dump(&sets, &t).count(), 0);
        // A port-0 service takes any port.
        let any = Translation::build([(svc(100, 0), 4, 9, vec![(be(11), 2)])]);
        apply(&mut sets, &any, &other_port, 1).unwrap();
        assert_eq!(dump(&sets, &any).collect::<Vec<_>>(), vec![other_port]);
    }

    /// `lbctl flows`: a service's flows, the most recently seen first, how
    /// long each has been idle, and the total beyond the limit.
    #[test]
    fn lists_flows_of_a_service_most_recent_first() {
        let t = Translation::build([
            (svc(100, 80), 0, 1, vec![(be(11), 0), (be(12), 1)]),
            (svc(101, 80), 1, 1, vec![(be(11), 2)]),
        ]);
        let ms = 1_000_000u64;
        let mut sets = vec![FlowSet::default(); 16];
        apply(&mut sets, &t, &record(1, 11), 1000 * ms).unwrap();
        apply(&mut sets, &t, &record(2, 12), 1500 * ms).unwrap();
        let other = FlowRecord {
            vip: IpAddr::from([198, 18, 0, 101]),
            ..record(3, 11)
        };
        apply(&mut sets, &t, &other, 1500 * ms).unwrap();
        let all = list(&sets, Vec::new(), &t, 2000 * ms, Some(&svc(100, 80)), 0);
        assert_eq!(all.total, 2);
        let ports: Vec<u16> = all.flows.iter().map(|f| f.client.port()).collect();
        assert_eq!(ports, vec![2, 1], "most recently seen first");
        let idle: Vec<u64> = all.flows.iter().map(|f| f.idle_ms).collect();
        assert!(
            (490..=510).contains(&idle[0]) && (990..=1010).contains(&idle[1]),
            "{idle:?}"
        );
        assert_eq!(all.flows[0].backend, be(12));
        assert_eq!(all.flows[0].vip, "198.18.0.100:80".parse().unwrap());
        let first = list(&sets, Vec::new(), &t, 2000 * ms, None, 1);
        assert_eq!((first.total, first.flows.len()), (3, 1));
    }

    /// Applying the same record twice keeps one entry (a resent or bulk
    /// record after a live one).
    #[test]
    fn applying_twice_keeps_one_flow() {
        let t = Translation::build([(svc(100, 80), 0, 1, vec![(be(11), 0), (be(12), 1)])]);
        let mut sets = vec![FlowSet::default(); 4];
        apply(&mut sets, &t, &record(7, 11), 1).unwrap();
        apply(&mut sets, &t, &record(7, 12), 2).unwrap();
        let all: Vec<FlowRecord> = dump(&sets, &t).collect();
        assert_eq!(all, vec![record(7, 12)], "the later decision wins");
    }
}
