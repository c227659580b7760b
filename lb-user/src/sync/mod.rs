//! Connection-state sync between lbd nodes, as IPVS's sync daemon does for
//! its connection table, at XDP rates.
//!
//! Every new flow the XDP program records also goes into a ring buffer
//! (`flow_events`, on when `[sync]` is configured). lbd drains it, turns
//! each event into a node-independent [`wire::FlowRecord`] (VIP, client,
//! backend: addresses, not this node's map indices), batches records into
//! authenticated datagrams and sends them to its peers. A peer writes each
//! record into its own connection table, so when the VIP moves to it (VRRP
//! failover) its table already holds every flow and no flow changes
//! backend, even when the pools differ by then. Entries age out as any
//! other: a set that fills evicts its least recently seen flow.
//!
//! A node that starts asks its peers for their whole tables (bulk sync);
//! until the answers are in (or a timeout passes) its VRRP instances do not
//! preempt, so a returning master never takes the VIP back with a cold
//! table.
//!
//! - [`wire`]: the datagrams (HMAC-SHA256 over a shared secret);
//! - records in and out of the connection table: `crate::dataplane::flows`;
//! - [`node`]: the task: ring buffer, sockets, batching, bulk sync, counters;
//! - [`parked`]: peers' flows waiting for their backend to join a pool here.

pub mod node;
pub mod parked;
pub mod wire;
