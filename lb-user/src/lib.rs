//! lb user space: the library behind `lbd` (the daemon) and `lbctl` (its
//! client). `docs/ARCHITECTURE.md` draws the layers and follows a packet
//! and a configuration change through them.
//!
//! Layers, lowest first:
//! - [`dataplane`]: the XDP program's object and maps from user space:
//!   [`dataplane::loader`] (load, attach, pin, undo), [`dataplane::preflight`]
//!   (errnos turned into refusals an operator can act on),
//!   [`dataplane::balancer`] (services and backends written into the maps),
//!   [`dataplane::maglev`] (weighted Maglev tables), [`dataplane::bpfmem`]
//!   (mmap of BPF arrays), [`dataplane::flows`] (the connection table by
//!   address: sync records, `lbctl flows`), [`dataplane::stats`] (counters
//!   read back);
//! - [`sys`]: the host around lbd: [`sys::neigh`] (next-hop MACs from the
//!   kernel's route and neighbour tables), [`sys::addr`] (addresses via
//!   rtnetlink, VIPs tagged as lbd's), [`sys::interface`] (index, link
//!   flags), [`sys::process`] (users, process groups of child processes);
//! - [`config`]: the TOML model (keyword fields as enums), its validation
//!   with file:line errors, and [`config::keepalived`] (keepalived.conf read
//!   into the same model);
//! - [`vrrp`]: VRRP v2/v3: wire codec, pure state machine, sockets,
//!   gratuitous ARP / NA, tracked scripts and interfaces, and the driver
//!   that runs the instances;
//! - [`services`]: [`services::controller`] (configuration, health and VRRP
//!   state in; the data plane's pools out), [`services::health`] (the
//!   checks and their rise/fall) and [`services::etcd`] (backends from
//!   etcd prefixes; `lbctl register` in [`services::etcd_register`]);
//! - [`sync`]: connection-state sync between lbd nodes: new flows out of
//!   the XDP program's ring buffer to the peers, theirs into our
//!   connection table, bulk sync for a node that (re)joins;
//! - [`bgp`]: VIPs announced over BGP through a speaker (bird2): lbd's
//!   routes in a kernel table the speaker exports, the speaker checked
//!   and polled over its control socket;
//! - [`api`]: [`api::control`] (the control socket and its typed
//!   requests, shared with `lbctl`) and [`api::metrics`] (Prometheus);
//! - [`top`]: `lbctl top` and `lbctl stats --rate`: rates from lbd's
//!   counters, the rows they make, the live terminal view;
//! - [`daemon`]: `lbd`'s event loop: signals, reload, control requests;
//!   `bin/lbd.rs` only parses arguments and calls it.
//!
//! `fuzzing` (tests and the `fuzzing` feature only) holds the bodies of
//! the fuzz targets in `fuzz/`.
//!
//! Test and benchmark code (network-namespace kits, packet builders, the
//! lab, the benches) lives in the `lb-lab` crate, not here.

pub mod api;
pub mod bgp;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod dataplane;
/// The fuzz targets' bodies (`fuzz/`), shared with their stable seed
/// test; not part of lb's API.
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
pub mod services;
pub mod sync;
pub mod sys;
pub mod top;
pub mod vrrp;

/// The balancer's XDP object (program `lb_xdp` and its maps), built from
/// `lb-ebpf` by `build.rs`.
pub static EBPF_OBJ: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/lb-ebpf"));

/// The decapsulator's XDP object (program `lb_decap`, map `stats_decap`),
/// built from `lb-ebpf/src/bin/lb-decap.rs` by `build.rs`.
pub static DECAP_OBJ: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/lb-decap"));

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    /// Program and map names in an object (maps the loader makes for
    /// `.bss`/`.data`/`.rodata` left out).
    fn contents(obj: &[u8]) -> (BTreeSet<String>, BTreeSet<String>) {
        let obj = aya_obj::Object::parse(obj).expect("a BPF object");
        (
            obj.programs.keys().cloned().collect(),
            obj.maps
                .keys()
                .filter(|m| !m.starts_with('.'))
                .cloned()
                .collect(),
        )
    }

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|&n| n.to_owned()).collect()
    }

    /// What production loads and pins is exactly the balancer or exactly
    /// the decapsulator: no test or benchmark program or map.
    #[test]
    fn production_objects_hold_only_their_own_programs_and_maps() {
        let (programs, maps) = contents(super::EBPF_OBJ);
        assert_eq!(programs, set(&["lb_xdp"]));
        assert_eq!(
            maps,
            set(&[
                "arms",
                "backends",
                "clock",
                "config",
                "flow_events",
                "flows",
                "layout",
                "maglev_tables",
                "nat",
                "nat_scratch",
                "parse_scratch",
                "persist",
                "persist_scratch",
                "stats_backend",
                "stats_exit",
                "stats_flows",
                "stats_proto",
                "stats_vip",
                "vip_filter",
                "vip_ids",
                "vip_index",
                "vips",
            ])
        );
        let (programs, maps) = contents(super::DECAP_OBJ);
        assert_eq!(programs, set(&["lb_decap"]));
        assert_eq!(maps, set(&["stats_decap"]));
    }
}
