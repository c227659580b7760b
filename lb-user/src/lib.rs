//! lb user space: the library behind `lbd` (the daemon) and `lbctl` (its client).
//!
//! Components:
//! - [`balancer`]: services and backends written into the data-plane maps
//!   (VIP ids, backend slots, Maglev tables, the double-buffer flip);
//! - [`loader`]: load the XDP program, attach it to an interface, pin its maps
//!   under bpffs, and undo all of it on shutdown;
//! - [`preflight`]: the checks that turn kernel errnos into refusals an
//!   operator can act on (privileges, interface, bpffs, existing XDP program);
//! - [`stats`]: read the per-CPU counters back from the maps;
//! - [`maglev`]: Maglev lookup-table generation with weights;
//! - [`neigh`]: next-hop MAC resolution from the kernel's route and
//!   neighbour tables (probing when the entry is missing);
//! - [`vrrp`]: VRRP v2/v3 wire codec and state machine;
//! - [`netns`]: network-namespace topologies for kernel tests and the lab;
//! - [`testpkt`]: frames for `BPF_PROG_TEST_RUN` fixtures and benchmarks.

pub mod balancer;
pub mod bpfmem;
pub mod config;
pub mod control;
pub mod controller;
pub mod health;
pub mod keepalived;
pub mod loader;
pub mod maglev;
pub mod metrics;
pub mod neigh;
pub mod netns;
pub mod preflight;
pub mod stats;
pub mod testpkt;
pub mod vrrp;

/// The XDP object built from `lb-ebpf` by `build.rs`.
pub static EBPF_OBJ: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/lb-ebpf"));
