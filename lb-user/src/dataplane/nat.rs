//! The NAT table (`lb_common::nat`, map `nat`) from user space: its flows
//! as `lbctl flows` lists them, their census by state, and expiry.
//!
//! The XDP program writes a flow's two entries and stamps each direction
//! with its TCP flags and when it was last seen; it never deletes a live
//! flow. `lbd` does: every [`GC_INTERVAL`] it reads the table, pairs each
//! forward entry with its reply entry, derives the flow's state
//! ([`NatState::of`]) and deletes the flows idle longer than their state's
//! timeout (`[nat]` in the configuration), reply entry first, which frees
//! the SNAT port. The rules ([`plan`]) are pure, over a snapshot and a
//! clock the caller gives, and unit-tested here.
//!
//! A packet that arrives while its flow is being deleted finds half of it
//! or nothing, and starts the flow again (a fullnat flow asks for the same
//! SNAT port first): only flows idle for their whole timeout are deleted,
//! so that takes a packet arriving at the very moment of expiry.

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    path::Path,
    sync::{Arc, Mutex},
    time::Duration,
};

use aya::maps::{HashMap as BpfHashMap, MapData, MapError};
use lb_common::{
    flow::{FLOW_SEEN_UNIT_NS, FlowKey, flow_age, flow_seen},
    nat::{NAT_MAP, NatEntry, NatEvent, NatState, Timeouts, nat_flags, reversed},
};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tracing::{debug, warn};

use crate::dataplane::flows::{FlowRecord, FlowStatus, Translation, Unapplied};

/// How often `lbd` looks for expired NAT flows.
pub const GC_INTERVAL: Duration = Duration::from_secs(2);

/// The NAT table's flows by state, and what the last pass expired.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Census {
    /// Flows (pairs of entries) in the table.
    pub flows: u64,
    /// Flows per state, in [`NatState::ALL`] order.
    pub by_state: Vec<(String, u64)>,
    /// Entries without their partner (a flow half-deleted or half-written).
    pub orphans: u64,
    /// Flows expired since `lbd` started.
    pub expired_total: u64,
}

/// What one pass decided: the keys to delete (each flow's reply entry
/// before its forward entry) and the census of what stays.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Keys to delete, in order.
    pub delete: Vec<FlowKey>,
    /// Flows (and orphans) expired.
    pub expired: u64,
    /// The table after the deletions.
    pub census: Census,
}

/// A forward entry with its reply entry, if there is one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NatFlow {
    /// The forward entry's key: the client's 5-tuple.
    pub key: FlowKey,
    /// The forward entry.
    pub forward: NatEntry,
    /// The reply entry (keyed by `forward.to` reversed).
    pub reply: Option<NatEntry>,
}

impl NatFlow {
    /// The flow's state from both directions.
    #[must_use]
    pub fn state(&self) -> NatState {
        NatState::of(
            self.key.proto,
            self.forward.tcp,
            self.reply.map_or(0, |r| r.tcp),
        )
    }

    /// Time units since either direction was last seen.
    #[must_use]
    pub fn idle(&self, now: u32) -> u32 {
        let fwd = flow_age(now, self.forward.seen);
        self.reply.map_or(fwd, |r| fwd.min(flow_age(now, r.seen)))
    }
}

/// Pair a table snapshot's entries into flows; entries whose partner is
/// missing come back as orphans.
#[must_use]
pub fn pair(entries: &[(FlowKey, NatEntry)]) -> (Vec<NatFlow>, Vec<(FlowKey, NatEntry)>) {
    let by_key: HashMap<FlowKey, &NatEntry> = entries.iter().map(|(k, e)| (*k, e)).collect();
    let mut flows = Vec::new();
    let mut orphans = Vec::new();
    for (key, e) in entries {
        let partner = by_key.get(&reversed(&e.to)).copied();
        if e.flags & nat_flags::REPLY != 0 {
            // Paired from its forward side; alone, an orphan.
            if partner.is_none_or(|f| f.flags & nat_flags::REPLY != 0) {
                orphans.push((*key, *e));
            }
            continue;
        }
        match partner.filter(|r| r.flags & nat_flags::REPLY != 0) {
            Some(r) => flows.push(NatFlow {
                key: *key,
                forward: *e,
                reply: Some(*r),
            }),
            None => orphans.push((*key, *e)),
        }
    }
    (flows, orphans)
}

/// Units of [`FLOW_SEEN_UNIT_NS`] in `secs` seconds.
fn units(secs: u32) -> u64 {
    u64::from(secs) * 1_000_000_000 / FLOW_SEEN_UNIT_NS
}

/// Decide a pass at `now` (a `flow_seen` time): flows idle longer than
/// their state's timeout go, orphans idle longer than the timeout of the
/// state their own flags give.
#[must_use]
pub fn plan(entries: &[(FlowKey, NatEntry)], now: u32, timeouts: &Timeouts) -> Plan {
    let (flows, orphans) = pair(entries);
    let mut plan = Plan::default();
    let mut by_state: HashMap<NatState, u64> = HashMap::new();
    for flow in &flows {
        let state = flow.state();
        if u64::from(flow.idle(now)) > units(timeouts.of(state)) {
            plan.delete.push(reversed(&flow.forward.to));
            plan.delete.push(flow.key);
            plan.expired += 1;
        } else {
            *by_state.entry(state).or_default() += 1;
            plan.census.flows += 1;
        }
    }
    for (key, e) in &orphans {
        let reply = e.flags & nat_flags::REPLY != 0;
        let (f, r) = if reply { (0, e.tcp) } else { (e.tcp, 0) };
        let state = NatState::of(key.proto, f, r);
        if u64::from(flow_age(now, e.seen)) > units(timeouts.of(state)) {
            plan.delete.push(*key);
            plan.expired += 1;
        } else {
            plan.census.orphans += 1;
        }
    }
    plan.census.by_state = NatState::ALL
        .iter()
        .map(|s| (s.name().to_owned(), by_state.get(s).copied().unwrap_or(0)))
        .collect();
    plan
}

/// The table's flows as `lbctl flows` shows them, with their idle time
/// in [`flow_seen`] units (for sorting).
#[must_use]
pub fn statuses(
    entries: &[(FlowKey, NatEntry)],
    now: u32,
    timeouts: &Timeouts,
) -> Vec<(u32, FlowStatus)> {
    let (flows, _) = pair(entries);
    flows
        .iter()
        .map(|flow| {
            let idle = flow.idle(now);
            let state = flow.state();
            let to = &flow.forward.to;
            let fullnat = flow.forward.flags & nat_flags::FULLNAT != 0;
            let idle_ms = u64::from(idle) * FLOW_SEEN_UNIT_NS / 1_000_000;
            let status = FlowStatus {
                protocol: if flow.key.proto == 17 { "udp" } else { "tcp" }.into(),
                client: socket(&flow.key.src, flow.key.src_port_be),
                vip: socket(&flow.key.dst, flow.key.dst_port_be),
                backend: addr(&to.dst),
                backend_port: Some(u16::from_be(to.dst_port_be)),
                mode: Some(if fullnat { "fullnat" } else { "nat" }.into()),
                snat: fullnat.then(|| socket(&to.src, to.src_port_be)),
                state: Some(state.name().into()),
                expires_ms: Some((u64::from(timeouts.of(state)) * 1000).saturating_sub(idle_ms)),
                idle_ms,
            };
            (idle, status)
        })
        .collect()
}

/// A NAT flow in node-independent terms (addresses, not this node's map
/// indices): what connection sync sends, and writes on the other node as
/// both of the flow's entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NatRecord {
    /// IP protocol number.
    pub proto: u8,
    /// `fullnat` (else `nat`).
    pub fullnat: bool,
    /// TCP flags each direction has seen (forward, reply).
    pub tcp: (u8, u8),
    /// The VIP and port the client addressed.
    pub vip: SocketAddr,
    /// The client.
    pub client: SocketAddr,
    /// The backend and its port.
    pub backend: SocketAddr,
    /// The source the backend sees: the SNAT address and port (`fullnat`)
    /// or the client (`nat`).
    pub source: SocketAddr,
    /// Where replies go: the client's (or its router's) MAC.
    pub client_mac: [u8; 6],
    /// The interface the client is on (0 the data plane's, 1 the
    /// backend interface: `lb_common::config::Config::arm_mac`).
    pub client_arm: u8,
}

impl NatRecord {
    /// The record of a flow (both entries) of this node's table.
    #[must_use]
    pub fn of_flow(flow: &NatFlow) -> Self {
        let to = &flow.forward.to;
        Self {
            proto: flow.key.proto,
            fullnat: flow.forward.flags & nat_flags::FULLNAT != 0,
            tcp: (flow.forward.tcp, flow.reply.map_or(0, |r| r.tcp)),
            vip: socket(&flow.key.dst, flow.key.dst_port_be),
            client: socket(&flow.key.src, flow.key.src_port_be),
            backend: socket(&to.dst, to.dst_port_be),
            source: socket(&to.src, to.src_port_be),
            client_mac: flow.reply.map_or([0; 6], |r| r.mac),
            client_arm: flow.reply.map_or(0, |r| r.arm),
        }
    }

    /// The record of a new-flow event, if its VIP and slot are still the
    /// ones the event names.
    #[must_use]
    pub fn of_event(e: &NatEvent, t: &Translation) -> Option<Self> {
        let flow = NatFlow {
            key: e.key,
            forward: NatEntry {
                to: e.to,
                flags: e.flags,
                tcp: e.tcp,
                backend: e.backend,
                vip_id: e.vip_id,
                ..NatEntry::default()
            },
            reply: Some(NatEntry {
                mac: e.client_mac,
                arm: e.client_arm,
                ..NatEntry::default()
            }),
        };
        let r = Self::of_flow(&flow);
        t.owns(e.vip_id, e.vip_generation, e.backend, r.backend.ip())
            .then_some(r)
    }

    /// The connection-table terms of the record, to find this node's VIP
    /// id and backend slot.
    /// The flow as a connection-table record (client, VIP, backend).
    #[must_use]
    pub fn flow_record(&self) -> FlowRecord {
        FlowRecord {
            proto: self.proto,
            vip: self.vip.ip(),
            vip_port: self.vip.port(),
            client: self.client.ip(),
            client_port: self.client.port(),
            backend: self.backend.ip(),
        }
    }

    /// Both entries, keyed, as this node's program would have written
    /// them at `now` (`flow_seen` units), marked [`nat_flags::SYNCED`].
    /// The forward entry has no MAC: the program sends to the backend
    /// slot's, and balances the flow again if the slot is gone.
    ///
    /// # Errors
    /// [`Unapplied`]: the service or the backend is not here.
    pub fn entries(
        &self,
        t: &Translation,
        now: u32,
    ) -> Result<[(FlowKey, NatEntry); 2], Unapplied> {
        let (vip_id, _, backend) = t.place(&self.flow_record())?;
        let key = tuple(self.client, self.vip, self.proto);
        let to = tuple(self.source, self.backend, self.proto);
        let mut flags = nat_flags::SYNCED | if self.fullnat { nat_flags::FULLNAT } else { 0 };
        if t.persistent(vip_id) {
            flags |= nat_flags::PERSIST;
        }
        let common = NatEntry {
            seen: now,
            backend,
            vip_id,
            ..NatEntry::default()
        };
        Ok([
            (
                key,
                NatEntry {
                    to,
                    flags,
                    tcp: self.tcp.0,
                    ..common
                },
            ),
            (
                reversed(&to),
                NatEntry {
                    to: reversed(&key),
                    mac: self.client_mac,
                    arm: self.client_arm,
                    flags: flags | nat_flags::REPLY,
                    tcp: self.tcp.1,
                    ..common
                },
            ),
        ])
    }
}

fn tuple(src: SocketAddr, dst: SocketAddr, proto: u8) -> FlowKey {
    FlowKey {
        src: addr16(src.ip()),
        dst: addr16(dst.ip()),
        src_port_be: src.port().to_be(),
        dst_port_be: dst.port().to_be(),
        proto,
        pad: [0; 3],
    }
}

fn addr16(a: IpAddr) -> [u8; 16] {
    match a {
        IpAddr::V4(v) => v.to_ipv6_mapped().octets(),
        IpAddr::V6(v) => v.octets(),
    }
}

/// Why a synced flow was not written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotWritten {
    /// No such service or backend here.
    Unapplied(Unapplied),
    /// This node has the flow live itself (its entries are its own).
    Live,
    /// The reply tuple belongs to another flow here (its SNAT port is
    /// taken).
    Taken,
    /// The map refused the write (full).
    Full,
}

/// Write a synced flow into this node's NAT table: both entries, unless
/// this node uses the flow itself or its reply tuple is another flow's.
///
/// # Errors
/// [`NotWritten`].
pub fn write<T: std::borrow::BorrowMut<MapData>>(
    map: &mut BpfHashMap<T, FlowKey, NatEntry>,
    r: &NatRecord,
    t: &Translation,
    now: u32,
) -> Result<(), NotWritten> {
    let [(fkey, fwd), (rkey, reply)] = r.entries(t, now).map_err(NotWritten::Unapplied)?;
    if let Ok(have) = map.get(&fkey, 0)
        && have.flags & nat_flags::SYNCED == 0
    {
        return Err(NotWritten::Live);
    }
    if let Ok(have) = map.get(&rkey, 0)
        && have.to != reply.to
    {
        return Err(NotWritten::Taken);
    }
    map.insert(rkey, reply, 0).map_err(|_| NotWritten::Full)?;
    if map.insert(fkey, fwd, 0).is_err() {
        let _ = map.remove(&rkey);
        return Err(NotWritten::Full);
    }
    Ok(())
}

/// This node's live flows (not synced copies) among `flows` whose key
/// hashes into `slice` of `slices`: what one refresh pass resends.
#[must_use]
pub fn refresh_slice(flows: &[NatFlow], slice: u32, slices: u32) -> Vec<NatRecord> {
    flows
        .iter()
        .filter(|f| f.forward.flags & nat_flags::SYNCED == 0)
        .filter(|f| lb_common::hash::flow_hash(&f.key) % slices.max(1) == slice)
        .map(NatRecord::of_flow)
        .collect()
}

fn addr(a: &[u8; 16]) -> IpAddr {
    let v6 = std::net::Ipv6Addr::from(*a);
    v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4)
}

fn socket(a: &[u8; 16], port_be: u16) -> SocketAddr {
    SocketAddr::new(addr(a), u16::from_be(port_be))
}

/// The pinned NAT table under `pin_dir`.
///
/// # Errors
/// The pin is missing or is not a hash map of NAT entries.
pub fn open(pin_dir: &Path) -> Result<BpfHashMap<MapData, FlowKey, NatEntry>, MapError> {
    let data = MapData::from_pin(pin_dir.join(NAT_MAP))?;
    BpfHashMap::try_from(aya::maps::Map::HashMap(data))
}

/// Every entry of the table, read a few thousand per system call
/// (`sys::map_batch`); on a kernel without batch lookups, one by one.
#[must_use]
pub fn snapshot<T: std::borrow::Borrow<MapData>>(
    map: &BpfHashMap<T, FlowKey, NatEntry>,
) -> Vec<(FlowKey, NatEntry)> {
    use aya::maps::IterableMap as _;
    use std::os::fd::AsFd as _;
    match crate::sys::map_batch::lookup_all(map.map().fd().as_fd()) {
        Ok(entries) => entries,
        Err(_) => map.iter().filter_map(Result::ok).collect(),
    }
}

/// The expiry task: a pass every [`GC_INTERVAL`], with the timeouts the
/// configuration holds now; the census after each pass goes to `census`.
///
/// # Errors
/// The pinned table cannot be opened.
pub fn spawn_gc(
    pin_dir: &Path,
    timeouts: watch::Receiver<Timeouts>,
    census: Arc<Mutex<Census>>,
) -> Result<tokio::task::JoinHandle<()>, MapError> {
    let map = Arc::new(Mutex::new(open(pin_dir)?));
    Ok(tokio::spawn(async move {
        let mut tick = tokio::time::interval(GC_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut expired_total = 0;
        loop {
            tick.tick().await;
            let t = *timeouts.borrow();
            let map = Arc::clone(&map);
            let pass = tokio::task::spawn_blocking(move || {
                let mut map = map
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                let now = flow_seen(crate::dataplane::stats::coarse_now_ns());
                let plan = plan(&snapshot(&map), now, &t);
                for key in &plan.delete {
                    // Gone already (the program replaced a stale flow):
                    // nothing to do.
                    let _ = map.remove(key);
                }
                plan
            })
            .await;
            match pass {
                Ok(plan) => {
                    expired_total += plan.expired;
                    if plan.expired > 0 {
                        debug!(
                            expired = plan.expired,
                            flows = plan.census.flows,
                            "NAT flows expired"
                        );
                    }
                    let mut c = census
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    *c = Census {
                        expired_total,
                        ..plan.census
                    };
                }
                Err(e) => warn!("NAT expiry pass failed: {e}"),
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use lb_common::nat::tcp_flags::{ACK, FIN, RST, SYN};

    fn key(client_port: u16) -> FlowKey {
        FlowKey {
            src: lb_common::v4_mapped([198, 18, 0, 1]),
            dst: lb_common::v4_mapped([198, 18, 0, 100]),
            src_port_be: client_port.to_be(),
            dst_port_be: 80u16.to_be(),
            proto: 6,
            pad: [0; 3],
        }
    }

    /// A fullnat flow's two entries, each seen at `seen` with `tcp` flags.
    fn flow(client_port: u16, snat_port: u16, seen: u32, f: u8, r: u8) -> [(FlowKey, NatEntry); 2] {
        let k = key(client_port);
        let to = FlowKey {
            src: lb_common::v4_mapped([198, 18, 2, 1]),
            dst: lb_common::v4_mapped([198, 18, 2, 10]),
            src_port_be: snat_port.to_be(),
            dst_port_be: 8080u16.to_be(),
            proto: 6,
            pad: [0; 3],
        };
        let fwd = NatEntry {
            to,
            flags: nat_flags::FULLNAT,
            tcp: f,
            seen,
            ..NatEntry::default()
        };
        let reply = NatEntry {
            to: reversed(&k),
            flags: nat_flags::FULLNAT | nat_flags::REPLY,
            tcp: r,
            seen,
            ..NatEntry::default()
        };
        [(k, fwd), (reversed(&to), reply)]
    }

    fn secs(s: u64) -> u32 {
        u32::try_from(s * 1_000_000_000 / FLOW_SEEN_UNIT_NS).unwrap()
    }

    #[test]
    fn flows_expire_by_the_timeout_of_their_state() {
        let t = Timeouts::default();
        let now = secs(10_000);
        let mut entries = Vec::new();
        // Established, idle 14 min: stays; idle 16 min: goes.
        entries.extend(flow(1, 40_001, now - secs(14 * 60), SYN | ACK, SYN | ACK));
        entries.extend(flow(2, 40_002, now - secs(16 * 60), SYN | ACK, SYN | ACK));
        // Closed by a RST 11 s ago: goes; 9 s ago: stays.
        entries.extend(flow(3, 40_003, now - secs(11), ACK | RST, ACK));
        entries.extend(flow(4, 40_004, now - secs(9), ACK | RST, ACK));
        // Half-open 61 s: goes. FIN both ways 30 s: stays.
        entries.extend(flow(5, 40_005, now - secs(61), SYN, 0));
        entries.extend(flow(6, 40_006, now - secs(30), ACK | FIN, ACK | FIN));
        let p = plan(&entries, now, &t);
        assert_eq!(p.expired, 3);
        let gone: Vec<u16> = p
            .delete
            .iter()
            .filter(|k| k.dst_port_be == 80u16.to_be())
            .map(|k| u16::from_be(k.src_port_be))
            .collect();
        assert_eq!(gone, vec![2, 3, 5]);
        // Each flow's reply entry (which holds the SNAT port) goes first.
        assert_eq!(p.delete[0], entries[3].0);
        assert_eq!(p.delete[1], entries[2].0);
        assert_eq!(p.census.flows, 3);
        let count = |name: &str| {
            p.census
                .by_state
                .iter()
                .find(|(n, _)| n == name)
                .map_or(0, |(_, c)| *c)
        };
        assert_eq!(count("ESTABLISHED"), 1);
        assert_eq!(count("CLOSE"), 1);
        assert_eq!(count("TIME_WAIT"), 1);
    }

    #[test]
    fn a_recent_packet_either_way_keeps_a_flow() {
        let t = Timeouts::default();
        let now = secs(10_000);
        let mut entries = flow(1, 40_001, now - secs(3600), SYN | ACK, SYN | ACK).to_vec();
        entries[1].1.seen = now - secs(1);
        assert_eq!(plan(&entries, now, &t).expired, 0);
        // A clock read just before the program stamped: age 0, not huge.
        entries[0].1.seen = now + 2;
        entries[1].1.seen = now + 2;
        assert_eq!(plan(&entries, now, &t).expired, 0);
    }

    #[test]
    fn orphans_are_counted_and_expire_on_their_own() {
        let t = Timeouts::default();
        let now = secs(10_000);
        let [fwd, reply] = flow(1, 40_001, now - secs(5), SYN | ACK, SYN | ACK);
        let p = plan(&[reply], now, &t);
        assert_eq!((p.census.flows, p.census.orphans, p.expired), (0, 1, 0));
        let [_, old_reply] = flow(2, 40_002, now - secs(120), 0, SYN | ACK);
        let p = plan(&[fwd, old_reply], now, &t);
        assert_eq!((p.census.orphans, p.expired), (1, 1));
        assert_eq!(p.delete, vec![old_reply.0]);
    }

    fn translation() -> Translation {
        let service = crate::dataplane::balancer::ServiceKey {
            vip: "198.18.0.100".parse().unwrap(),
            port: 80,
            proto: crate::dataplane::balancer::Protocol::Tcp,
        };
        Translation::build([(service, 3, 9, vec![("198.18.2.10".parse().unwrap(), 17)])])
    }

    #[test]
    fn a_record_rebuilds_both_entries_with_this_node_s_ids() {
        let [fwd, reply] = flow(7, 40_007, 100, SYN | ACK, SYN | ACK);
        let (flows, _) = pair(&[fwd, reply]);
        let r = NatRecord::of_flow(&flows[0]);
        assert!(r.fullnat);
        assert_eq!(r.source.to_string(), "198.18.2.1:40007");
        assert_eq!(r.backend.to_string(), "198.18.2.10:8080");
        let [(fk, fe), (rk, re)] = r.entries(&translation(), 500).unwrap();
        assert_eq!((fk, fe.to), (fwd.0, fwd.1.to));
        assert_eq!((rk, re.to), (reply.0, reply.1.to));
        for e in [fe, re] {
            assert_eq!((e.vip_id, e.backend, e.seen), (3, 17, 500));
            assert_ne!(e.flags & nat_flags::SYNCED, 0, "marked as a copy");
            assert_ne!(e.flags & nat_flags::FULLNAT, 0);
        }
        assert_eq!(re.flags & nat_flags::REPLY, nat_flags::REPLY);
        assert_eq!((fe.tcp, re.tcp), (SYN | ACK, SYN | ACK));
        // A backend this node does not have: not written.
        let other = NatRecord {
            backend: "198.18.2.99:8080".parse().unwrap(),
            ..r
        };
        assert_eq!(
            other.entries(&translation(), 500).unwrap_err(),
            Unapplied::NoBackend
        );
        // An event names this node's ids: checked against the translation.
        let event = NatEvent {
            key: fwd.0,
            to: fwd.1.to,
            client_mac: [2, 0, 0, 0, 0, 1],
            flags: nat_flags::FULLNAT,
            tcp: SYN,
            backend: 17,
            vip_id: 3,
            vip_generation: 9,
            client_arm: 1,
            pad: [0; 3],
        };
        let from_event = NatRecord::of_event(&event, &translation()).unwrap();
        assert_eq!(from_event.source, r.source);
        assert_eq!(from_event.client_mac, [2, 0, 0, 0, 0, 1]);
        assert_eq!(from_event.client_arm, 1);
        let stale = NatEvent {
            vip_generation: 8,
            ..event
        };
        assert_eq!(NatRecord::of_event(&stale, &translation()), None);
    }

    #[test]
    fn refresh_slices_cover_this_node_s_flows_once_and_skip_copies() {
        let mut entries = Vec::new();
        for i in 0..200 {
            entries.extend(flow(i, 40_000 + i, 100, SYN | ACK, SYN | ACK));
        }
        entries[0].1.flags |= nat_flags::SYNCED;
        let (flows, _) = pair(&entries);
        let mut seen = std::collections::BTreeSet::new();
        for slice in 0..30 {
            for r in refresh_slice(&flows, slice, 30) {
                assert!(seen.insert(r.client.port()), "sent twice");
            }
        }
        assert_eq!(seen.len(), 199, "every flow once, but the synced copy");
        assert!(!seen.contains(&0));
    }

    #[test]
    fn statuses_show_both_ends_the_snat_port_and_the_state() {
        let t = Timeouts::default();
        let now = secs(10_000);
        let entries = flow(7, 40_007, now - secs(2), SYN | ACK, SYN | ACK);
        let s = statuses(&entries, now, &t);
        assert_eq!(s.len(), 1);
        let f = &s[0].1;
        assert_eq!(f.client.to_string(), "198.18.0.1:7");
        assert_eq!(f.vip.to_string(), "198.18.0.100:80");
        assert_eq!(f.backend.to_string(), "198.18.2.10");
        assert_eq!(f.backend_port, Some(8080));
        assert_eq!(
            f.snat.map(|s| s.to_string()).as_deref(),
            Some("198.18.2.1:40007")
        );
        assert_eq!(f.state.as_deref(), Some("ESTABLISHED"));
        let expires = f.expires_ms.unwrap();
        assert!((897_000..=898_100).contains(&expires), "{expires}");
    }
}
