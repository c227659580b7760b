//! Sync records in and out of the connection table. Pure: over the
//! table's sets (the memory-mapped `flows` array in `lbd`, a vector in
//! tests) and a [`Translation`] of this node's ids and slots, so the rules
//! are unit-tested without a kernel.
//!
//! Out: a [`FlowEvent`] names this node's VIP id and backend slot; the
//! record names addresses. In: the receiver finds its own VIP id,
//! generation and slot for those addresses and writes the flow exactly as
//! its XDP program would (`lb_common::flow::FlowTable::insert`). Writing a
//! set the program may be writing at the same moment is safe for the
//! reader (the check word rejects a torn way); at worst one of the two
//! flows is lost, and is re-balanced by Maglev on its next packet.

use std::{collections::HashMap, net::IpAddr};

use lb_common::{
    flow::{FLOW_WAYS, FlowEvent, FlowKey, FlowSet, FlowTable},
    hash::flow_hash,
};

use super::wire::FlowRecord;
use crate::dataplane::balancer::{Protocol, ServiceKey};

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

/// Every live flow in `sets` as a record: ways whose check word holds and
/// whose VIP and slot are still the ones recorded (what a bulk sync
/// sends).
pub fn dump<'a>(sets: &'a [FlowSet], t: &'a Translation) -> impl Iterator<Item = FlowRecord> + 'a {
    sets.iter().flat_map(move |set| {
        (0..FLOW_WAYS).filter_map(move |i| {
            if set.tags[i] == 0 {
                return None;
            }
            let way = set.ways[i];
            let hash = flow_hash(&way.key);
            let state = way.valid_state(hash)?;
            t.record(&FlowEvent {
                key: way.key,
                backend: state.backend,
                vip_id: state.vip_id,
                vip_generation: state.vip_generation,
                pad: 0,
            })
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
