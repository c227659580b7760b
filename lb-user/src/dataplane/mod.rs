//! The data plane seen from user space: the XDP program's object, its
//! maps and what is written into them.
//!
//! - [`loader`]: load the program, attach it to an interface, pin its maps
//!   under bpffs, and undo all of it on shutdown;
//! - [`preflight`]: the checks that turn kernel errnos into refusals an
//!   operator can act on (privileges, interface, bpffs, an XDP program
//!   already there);
//! - [`balancer`]: services and backends written into the maps (VIP ids,
//!   backend slots, Maglev tables, the double-buffer flip), behind the
//!   [`balancer::Maps`] trait so tests use a fake;
//! - [`maglev`]: Maglev lookup-table generation with weights;
//! - [`bpfmem`]: mmap of BPF arrays (the Maglev tables, the connection table);
//! - [`flows`]: the connection table in node-independent terms (read,
//!   written by connection sync, listed by `lbctl flows`);
//! - [`nat`]: the NAT table's flows (listed, counted by state, expired);
//! - [`stats`]: the per-CPU counters and the connection table's fill, read back.

pub mod balancer;
pub mod bpfmem;
pub mod flows;
pub mod loader;
pub mod maglev;
pub mod nat;
pub mod preflight;
pub mod stats;
