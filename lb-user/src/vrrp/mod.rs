//! VRRP: the pure parts of keepalived-compatible failover.
//!
//! - [`wire`]: the advertisement codec (VRRPv3 for IPv4/IPv6, VRRPv2 with
//!   `auth_type PASS`), smoltcp-style `Packet` view + `Repr`, checksums with
//!   the pseudo-header keepalived 2.2.7 expects;
//! - [`machine`]: the per-instance state machine (RFC 5798 §6.4 with
//!   keepalived's preempt, `preempt_delay`, tracking and fault semantics),
//!   events and an injected `now` in, actions out.
//!
//! - [`sync`]: keepalived's `vrrp_sync_group`: which orders a group gives
//!   its members when one of them changes state;
//! - [`track`]: tracked scripts, interfaces, processes and files.
//!
//! Sockets, netlink (adding/removing VIPs), gratuitous ARP / unsolicited NA
//! and notify hooks sit at the edge and drive these.

// "VRRPv2"/"VRRPv3" in docs are protocol names, not code items.
#![allow(clippy::doc_markdown)]

pub mod driver;
pub mod garp;
pub mod machine;
pub mod net;
pub mod sync;
pub mod track;
pub mod wire;

pub use machine::{
    Action, Config, ConfigError, Event, Machine, Reason, RejectCause, State, Stats, SyncOrder,
    Track,
};
pub use wire::{Auth, Family, Kind, Repr};
