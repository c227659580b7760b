//! Peers' flows this node cannot place yet, kept for another try.
//!
//! A record names its backend by address; this node writes it only when
//! that backend is in its pool (`crate::dataplane::flows::Unapplied::
//! NoBackend` otherwise). A backend is out of the pool here while its
//! health check fails here, and a node whose interface towards the
//! servers is down fails every check: every flow its peer sends while it
//! is out would be lost, and a flow opened meanwhile would be balanced
//! afresh (perhaps to another server, which resets it) when this node
//! takes the VIP back. So such records wait in [`Parked`], at most
//! [`PARK_FOR`], and are tried again whenever this node's pools change.
//!
//! Pure: time is passed in.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use lb_common::flow::FlowKey;

/// How long a record waits for its backend: a peer sends each of its live
/// NAT flows again once a minute, so a later copy would come anyway.
pub const PARK_FOR: Duration = Duration::from_mins(1);

/// Most records kept; more are refused (a bound on memory when a
/// backend never comes back while a peer opens flows to it).
pub const PARK_MAX: usize = 65_536;

/// Records waiting for their backend, by flow (the client's 5-tuple): a
/// newer record of a flow replaces the older one, and keeps its first
/// refusal's time.
#[derive(Debug)]
pub struct Parked<R> {
    records: HashMap<FlowKey, (R, Instant)>,
    max: usize,
}

impl<R> Default for Parked<R> {
    fn default() -> Self {
        Self::with_capacity(PARK_MAX)
    }
}

impl<R> Parked<R> {
    /// Keeping at most `max` records.
    #[must_use]
    pub fn with_capacity(max: usize) -> Self {
        Self {
            records: HashMap::new(),
            max,
        }
    }

    /// Keep record `r` of flow `key`, first refused at `since`. `false`
    /// when full (the record is dropped).
    pub fn park(&mut self, key: FlowKey, r: R, since: Instant) -> bool {
        if let Some(slot) = self.records.get_mut(&key) {
            let first = slot.1.min(since);
            *slot = (r, first);
            return true;
        }
        if self.records.len() >= self.max {
            return false;
        }
        self.records.insert(key, (r, since));
        true
    }

    /// Take every record to try again at `now`, with the time it was first
    /// refused; those older than [`PARK_FOR`] are forgotten (and counted).
    pub fn take(&mut self, now: Instant) -> (Vec<(FlowKey, R, Instant)>, usize) {
        let mut expired = 0;
        let young = self
            .records
            .drain()
            .filter(|(_, (_, since))| {
                let keep = now.saturating_duration_since(*since) < PARK_FOR;
                expired += usize::from(!keep);
                keep
            })
            .map(|(key, (r, since))| (key, r, since))
            .collect();
        (young, expired)
    }

    /// Forget the records older than [`PARK_FOR`] at `now`: how many.
    pub fn expire(&mut self, now: Instant) -> usize {
        let before = self.records.len();
        self.records
            .retain(|_, (_, since)| now.saturating_duration_since(*since) < PARK_FOR);
        before - self.records.len()
    }

    /// Records waiting.
    #[must_use]
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether none waits.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(port: u16) -> FlowKey {
        FlowKey {
            src_port_be: port.to_be(),
            proto: 6,
            ..FlowKey::default()
        }
    }

    #[test]
    fn records_wait_to_be_taken_again() {
        let t0 = Instant::now();
        let mut p = Parked::default();
        assert!(p.park(key(1), "a", t0));
        assert!(p.park(key(2), "b", t0 + Duration::from_secs(1)));
        assert_eq!(p.len(), 2);
        let (mut taken, expired) = p.take(t0 + Duration::from_secs(2));
        assert_eq!(expired, 0);
        taken.sort_by_key(|(_, r, _)| *r);
        assert_eq!(
            taken,
            vec![
                (key(1), "a", t0),
                (key(2), "b", t0 + Duration::from_secs(1))
            ]
        );
        assert!(p.is_empty(), "taken means gone until parked again");
    }

    #[test]
    fn a_newer_record_of_a_flow_replaces_the_older_and_keeps_its_age() {
        let t0 = Instant::now();
        let mut p = Parked::default();
        p.park(key(1), "old", t0);
        p.park(key(1), "new", t0 + Duration::from_secs(5));
        assert_eq!(p.len(), 1);
        assert_eq!(
            p.take(t0 + Duration::from_secs(6)),
            (vec![(key(1), "new", t0)], 0)
        );
    }

    #[test]
    fn records_older_than_park_for_are_forgotten() {
        let t0 = Instant::now();
        let mut p = Parked::default();
        p.park(key(1), "old", t0);
        p.park(key(2), "young", t0 + Duration::from_secs(30));
        let now = t0 + PARK_FOR;
        assert_eq!(
            p.take(now),
            (vec![(key(2), "young", t0 + Duration::from_secs(30))], 1)
        );
        p.park(key(3), "x", t0);
        p.park(key(4), "y", now);
        assert_eq!(p.expire(now), 1);
        assert_eq!(p.len(), 1);
    }

    #[test]
    fn a_full_park_refuses_new_flows_but_updates_parked_ones() {
        let t0 = Instant::now();
        let mut p = Parked::with_capacity(2);
        assert!(p.park(key(1), 1, t0));
        assert!(p.park(key(2), 2, t0));
        assert!(!p.park(key(3), 3, t0), "full");
        assert!(p.park(key(2), 22, t0), "an update takes no room");
        assert_eq!(p.len(), 2);
    }
}
