//! keepalived's `vrrp_sync_group`: instances that change state together.
//!
//! Pure: [`SyncGroup::report`] takes one member's new state (and whether
//! its own tracking faults it) and returns the orders for the other
//! members ([`SyncOrder`], fed to their machines as
//! [`super::Event::Sync`]) and the group states entered (for the group's
//! notify scripts). The driver (`super::driver`) runs one task per group
//! that carries this out.
//!
//! The rules follow keepalived 2.2's `vrrp_sync.c`:
//! - a member in FAULT of its own (`vrrp_sync_fault`): the group enters
//!   FAULT and every other member is forced to FAULT (a master releases
//!   with a priority-0 advert); the group leaves FAULT when no member is
//!   in FAULT of its own any more, and the forced members recover (to
//!   BACKUP, as keepalived's `vrrp_state_leave_fault`);
//! - a member becomes MASTER (`vrrp_sync_master`): the group enters
//!   MASTER and the other members in BACKUP become MASTER at once;
//! - a member leaves MASTER for BACKUP, e.g. a peer with a higher priority
//!   appeared (`vrrp_sync_backup`): the group enters BACKUP and the other
//!   members in MASTER step down to BACKUP.
//!
//! Orders a member carried out come back as reports that match the group's
//! state and so give no further orders. Unlike keepalived, a member is not
//! held back from MASTER until every other member also wants it
//! (`vrrp_sync_can_goto_master`): the first one pulls the others along. As
//! keepalived's manual warns, a group whose members have their higher
//! priorities on different nodes keeps re-electing.

use super::machine::{State, SyncOrder};

/// One member as the group last heard of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Member {
    state: State,
    own_fault: bool,
}

/// What the group decided on a report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decision {
    /// Orders for members, by index, in the order to send them.
    pub orders: Vec<(usize, SyncOrder)>,
    /// The group states entered, in order (run the group's notify
    /// scripts for each).
    pub entered: Vec<State>,
}

/// The state of one sync group: its members' last reports and its own
/// state ([`State::Initialize`] until the first member runs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncGroup {
    members: Vec<Member>,
    state: State,
}

impl SyncGroup {
    /// A group of `members` instances, none running yet.
    #[must_use]
    pub fn new(members: usize) -> Self {
        Self {
            members: vec![
                Member {
                    state: State::Initialize,
                    own_fault: false,
                };
                members
            ],
            state: State::Initialize,
        }
    }

    /// The group's state.
    #[must_use]
    pub const fn state(&self) -> State {
        self.state
    }

    /// Member `index` is now in `state`; `own_fault`: its own tracking
    /// puts it in FAULT (not an order of the group). Unknown indices are
    /// ignored.
    pub fn report(&mut self, index: usize, state: State, own_fault: bool) -> Decision {
        let mut d = Decision::default();
        let Some(member) = self.members.get_mut(index) else {
            return d;
        };
        let was = member.state;
        *member = Member { state, own_fault };
        if self.members.iter().any(|m| m.own_fault) {
            if self.state == State::Fault {
                // A member not faulted by itself that is running outside
                // FAULT (it started, or a report crossed the order) goes
                // back to FAULT.
                if !own_fault && matches!(state, State::Backup | State::Master) {
                    d.orders.push((index, SyncOrder::Fault));
                }
            } else {
                self.enter(State::Fault, &mut d);
                for (i, m) in self.members.iter().enumerate() {
                    if !m.own_fault && m.state != State::Initialize {
                        d.orders.push((i, SyncOrder::Fault));
                    }
                }
            }
            return d;
        }
        let mut recovered = Vec::new();
        if self.state == State::Fault {
            // The last member faulted by itself recovered.
            for (i, m) in self.members.iter().enumerate() {
                if m.state == State::Fault {
                    d.orders.push((i, SyncOrder::Recover));
                    recovered.push(i);
                }
            }
            if state != State::Master {
                self.enter(State::Backup, &mut d);
            }
        }
        match state {
            State::Master if self.state != State::Master => {
                self.enter(State::Master, &mut d);
                for (i, m) in self.members.iter().enumerate() {
                    if i != index && (m.state == State::Backup || recovered.contains(&i)) {
                        d.orders.push((i, SyncOrder::Master));
                    }
                }
            }
            State::Backup if self.state == State::Master && was == State::Master => {
                // Stepped down (a higher priority elsewhere): the others
                // follow.
                self.enter(State::Backup, &mut d);
                for (i, m) in self.members.iter().enumerate() {
                    if i != index && m.state == State::Master {
                        d.orders.push((i, SyncOrder::Backup));
                    }
                }
            }
            State::Backup if self.state == State::Master => {
                // Joined a master group (started, or restarted by a
                // reload): it follows the group.
                d.orders.push((index, SyncOrder::Master));
            }
            State::Backup if self.state == State::Initialize => {
                self.enter(State::Backup, &mut d);
            }
            _ => {}
        }
        d
    }

    fn enter(&mut self, state: State, d: &mut Decision) {
        self.state = state;
        d.entered.push(state);
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};
    use std::time::{Duration, Instant};

    use super::super::machine::{Action, Config, Event, Machine, Reason, Track};
    use super::*;

    fn decision(orders: &[(usize, SyncOrder)], entered: &[State]) -> Decision {
        Decision {
            orders: orders.to_vec(),
            entered: entered.to_vec(),
        }
    }

    #[test]
    fn startup_enters_backup_once() {
        let mut g = SyncGroup::new(2);
        assert_eq!(g.state(), State::Initialize);
        assert_eq!(
            g.report(0, State::Backup, false),
            decision(&[], &[State::Backup])
        );
        assert_eq!(g.report(1, State::Backup, false), Decision::default());
        assert_eq!(g.state(), State::Backup);
    }

    #[test]
    fn one_master_pulls_the_others_to_master() {
        let mut g = SyncGroup::new(3);
        for i in 0..3 {
            g.report(i, State::Backup, false);
        }
        assert_eq!(
            g.report(1, State::Master, false),
            decision(
                &[(0, SyncOrder::Master), (2, SyncOrder::Master)],
                &[State::Master]
            )
        );
        // The members carrying the order out report MASTER: nothing more.
        assert_eq!(g.report(0, State::Master, false), Decision::default());
        assert_eq!(g.report(2, State::Master, false), Decision::default());
    }

    #[test]
    fn one_backup_pulls_the_masters_to_backup() {
        let mut g = SyncGroup::new(2);
        g.report(0, State::Master, false);
        g.report(1, State::Master, false);
        assert_eq!(
            g.report(1, State::Backup, false),
            decision(&[(0, SyncOrder::Backup)], &[State::Backup])
        );
        assert_eq!(g.report(0, State::Backup, false), Decision::default());
        assert_eq!(g.state(), State::Backup);
    }

    #[test]
    fn a_member_joining_a_master_group_is_pulled_to_master() {
        let mut g = SyncGroup::new(2);
        g.report(0, State::Backup, false);
        g.report(0, State::Master, false);
        // Member 1 (re)starts in BACKUP: the group stays MASTER.
        assert_eq!(
            g.report(1, State::Backup, false),
            decision(&[(1, SyncOrder::Master)], &[])
        );
        assert_eq!(g.state(), State::Master);
    }

    #[test]
    fn own_fault_forces_the_others_to_fault_until_it_recovers() {
        let mut g = SyncGroup::new(3);
        for i in 0..3 {
            g.report(i, State::Master, false);
        }
        assert_eq!(
            g.report(2, State::Fault, true),
            decision(
                &[(0, SyncOrder::Fault), (1, SyncOrder::Fault)],
                &[State::Fault]
            )
        );
        // Forced members report FAULT (not their own): nothing more.
        assert_eq!(g.report(0, State::Fault, false), Decision::default());
        assert_eq!(g.report(1, State::Fault, false), Decision::default());
        // A second member faulting by itself changes nothing yet.
        assert_eq!(g.report(1, State::Fault, true), Decision::default());
        // The first recovers; the second still holds the group in FAULT.
        assert_eq!(
            g.report(2, State::Backup, false),
            decision(&[(2, SyncOrder::Fault)], &[])
        );
        assert_eq!(g.report(2, State::Fault, false), Decision::default());
        // The second recovers (to BACKUP): everyone forced recovers.
        assert_eq!(
            g.report(1, State::Backup, false),
            decision(
                &[(0, SyncOrder::Recover), (2, SyncOrder::Recover)],
                &[State::Backup]
            )
        );
        assert_eq!(g.state(), State::Backup);
        assert_eq!(g.report(0, State::Backup, false), Decision::default());
    }

    #[test]
    fn a_member_recovering_to_master_takes_the_group_to_master() {
        // An address owner leaves FAULT straight to MASTER.
        let mut g = SyncGroup::new(2);
        g.report(0, State::Fault, true);
        g.report(1, State::Fault, false);
        assert_eq!(
            g.report(0, State::Master, false),
            decision(
                &[(1, SyncOrder::Recover), (1, SyncOrder::Master)],
                &[State::Master]
            )
        );
    }

    #[test]
    fn fault_at_startup_and_members_not_running_are_not_ordered() {
        let mut g = SyncGroup::new(2);
        assert_eq!(
            g.report(0, State::Fault, true),
            decision(&[], &[State::Fault])
        );
        // Member 1 starts later, in BACKUP: sent to FAULT.
        assert_eq!(
            g.report(1, State::Backup, false),
            decision(&[(1, SyncOrder::Fault)], &[])
        );
        assert_eq!(g.report(9, State::Master, false), Decision::default());
    }

    // ---- the group driving real machines ----

    fn addr(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(198, 18, 0, last))
    }

    /// Feed `event` to machine `i`, then every report and order it causes
    /// until the group is quiet; the group states entered.
    fn run(
        g: &mut SyncGroup,
        ms: &mut [Machine],
        i: usize,
        event: Event,
        now: Instant,
    ) -> Vec<State> {
        let mut entered = Vec::new();
        let mut queue = vec![(i, event)];
        while let Some((i, event)) = queue.pop() {
            let before = (ms[i].state(), ms[i].own_fault());
            ms[i].handle(event, now);
            let after = (ms[i].state(), ms[i].own_fault());
            if before != after {
                let d = g.report(i, after.0, after.1);
                entered.extend(d.entered);
                for (to, order) in d.orders.into_iter().rev() {
                    let group = "VG_1".to_owned();
                    queue.push((to, Event::Sync { group, order }));
                }
            }
        }
        entered
    }

    #[test]
    fn machines_follow_the_group() {
        let mut cfg = Config::new(1, 150, addr(1), vec![addr(100)]);
        cfg.tracks = vec![Track {
            name: "eth1".into(),
            weight: 0,
        }];
        let cfg2 = Config::new(2, 150, addr(1), vec![addr(101)]);
        let mut ms = [Machine::new(cfg).unwrap(), Machine::new(cfg2).unwrap()];
        let mut g = SyncGroup::new(2);
        let t0 = Instant::now();
        assert_eq!(run(&mut g, &mut ms, 0, Event::Startup, t0), [State::Backup]);
        assert_eq!(run(&mut g, &mut ms, 1, Event::Startup, t0), []);
        // Member 0's timer runs out first: both become master.
        let later = t0 + Duration::from_secs(4);
        assert_eq!(
            run(&mut g, &mut ms, 0, Event::Timer, later),
            [State::Master]
        );
        assert_eq!(ms[1].state(), State::Master);

        // Member 0's interface goes down: both in FAULT, member 1 released
        // its VIPs with a priority-0 advert.
        let down = Event::Track {
            index: 0,
            up: false,
        };
        assert_eq!(run(&mut g, &mut ms, 0, down, later), [State::Fault]);
        assert_eq!((ms[0].state(), ms[1].state()), (State::Fault, State::Fault));
        assert!(!ms[1].own_fault());
        assert_eq!(ms[1].stats().priority_zero_sent, 1);
        // Member 1's own tracking is fine, but the group holds it: a
        // timer changes nothing.
        assert!(ms[1].tick(later + Duration::from_secs(10)).is_empty());

        // Back up: both leave FAULT for BACKUP.
        let up = Event::Track { index: 0, up: true };
        assert_eq!(run(&mut g, &mut ms, 0, up, later), [State::Backup]);
        assert_eq!(
            (ms[0].state(), ms[1].state()),
            (State::Backup, State::Backup)
        );
    }

    #[test]
    fn forced_transitions_carry_the_group_in_their_reason() {
        let mut m = Machine::new(Config::new(1, 100, addr(1), vec![addr(100)])).unwrap();
        let t0 = Instant::now();
        m.handle(Event::Startup, t0);
        let actions = m.handle(
            Event::Sync {
                group: "VG_1".into(),
                order: SyncOrder::Master,
            },
            t0,
        );
        assert!(actions.contains(&Action::AddVips), "{actions:?}");
        assert!(actions.contains(&Action::Transition {
            from: State::Backup,
            to: State::Master,
            reason: Reason::Sync {
                group: "VG_1".into(),
                order: SyncOrder::Master
            }
        }));
        let actions = m.handle(
            Event::Sync {
                group: "VG_1".into(),
                order: SyncOrder::Backup,
            },
            t0,
        );
        assert_eq!(actions[0], Action::RemoveVips);
        assert_eq!(m.state(), State::Backup);
        // Master and Backup orders do nothing in other states.
        let fault = Event::Sync {
            group: "VG_1".into(),
            order: SyncOrder::Fault,
        };
        m.handle(fault, t0);
        assert_eq!(m.state(), State::Fault);
        for order in [SyncOrder::Master, SyncOrder::Backup] {
            let group = "VG_1".to_owned();
            assert!(m.handle(Event::Sync { group, order }, t0).is_empty());
        }
        let recover = Event::Sync {
            group: "VG_1".into(),
            order: SyncOrder::Recover,
        };
        m.handle(recover, t0);
        assert_eq!(m.state(), State::Backup);
    }
}
