//! Every map the program declares. BTF-defined (`btf_map`) so that
//! `bpftool map dump` prints typed, named fields.

use aya_ebpf::{btf_maps::PerCpuArray, macros::btf_map};
use lb_common::stats::{ProtoClass, VerdictCounters};

/// Packets by protocol class (key) and verdict (value fields).
#[btf_map(name = "stats_proto")]
pub static STATS_PROTO: PerCpuArray<VerdictCounters, { ProtoClass::COUNT as usize }> =
    PerCpuArray::new();
