//! Kernel test: client affinity (`persistence_timeout`, the map `persist`)
//! and the `source_hash` scheduler, through `BPF_PROG_TEST_RUN`.
//!
//! Services are configured through the real `Balancer` and `EbpfMaps`;
//! templates are read and written through the pinned-map types
//! (`lb_common::persist`), with the program's clock
//! (`CLOCK_MONOTONIC_COARSE`), so expiry is tested without waiting.
//!
//! Needs root (BPF). `cargo xtask test` refuses to run without it.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use aya::{Ebpf, maps::HashMap as BpfHashMap, programs::Xdp};
use lb_common::{
    config::Config,
    nat::{NAT_MAP, NatEntry, nat_flags},
    persist::{PERSIST_MAP, PersistKey, Persisted, client_prefix, prefix_mask},
    v4_mapped,
};
use lb_lab::testpkt::{FrameSpec, L4};
use lb_lab::testrun::run;
use lb_user::dataplane::{
    balancer::{
        BackendSpec, Balancer, EbpfMaps, Mode, NoBackend, Persistence, Protocol, ServiceKey,
        ServiceSpec,
    },
    loader::PROGRAM,
    stats::coarse_now_ns,
};

const XDP_TX: u32 = 3;
const RING: u32 = 251;
const SECOND: u64 = 1_000_000_000;

/// Persistent dsr, 300 s, whole client address.
const VIP_PERSIST: [u8; 4] = [198, 18, 0, 120];
/// Persistent dsr, 300 s, clients by /24.
const VIP_PREFIX: [u8; 4] = [198, 18, 0, 121];
/// `source_hash`, no persistence.
const VIP_SH: [u8; 4] = [198, 18, 0, 122];
/// Persistent nat, 300 s.
const VIP_NAT: [u8; 4] = [198, 18, 0, 123];

struct Lab {
    ebpf: Ebpf,
    balancer: Balancer<EbpfMaps>,
}

fn key(vip: [u8; 4]) -> ServiceKey {
    ServiceKey {
        vip: IpAddr::from(vip),
        port: 80,
        proto: Protocol::Tcp,
    }
}

/// Backend `n` of the VIP ending in `v`: 198.18.(v).n, MAC ..:v:n.
fn backend(v: u8, n: u8, weight: u32) -> BackendSpec {
    BackendSpec {
        addr: IpAddr::from([198, 18, v, n]),
        weight,
        mac: [0x02, 0xbb, 0, 0, v, n],
        port: 0,
        snat: None,
        arm: 0,
    }
}

fn pool(v: u8, drained: Option<u8>) -> Vec<BackendSpec> {
    (1..=4)
        .map(|n| backend(v, n, u32::from(Some(n) != drained)))
        .collect()
}

fn lab() -> Lab {
    let mut ebpf = Ebpf::load(lb_user::EBPF_OBJ).expect("load BPF object (run as root)");
    let program: &mut Xdp = ebpf.program_mut(PROGRAM).unwrap().try_into().unwrap();
    program.load().expect("verifier accepts the program");
    let mut balancer = Balancer::new(EbpfMaps::take(&mut ebpf).unwrap());
    balancer
        .set_config(&Config {
            mtu: 1500,
            ..Config::default()
        })
        .unwrap();
    let persist = |prefix| {
        Some(Persistence {
            timeout_s: 300,
            prefix,
        })
    };
    for (vip, mode, source_hash, persistence) in [
        (VIP_PERSIST, Mode::Dsr, false, persist(128)),
        (VIP_PREFIX, Mode::Dsr, false, persist(96 + 24)),
        (VIP_SH, Mode::Dsr, true, None),
        (VIP_NAT, Mode::Nat, false, persist(128)),
    ] {
        let spec = ServiceSpec {
            mode,
            ring_size: RING,
            on_no_backend: NoBackend::Drop,
            source_hash,
            persistence,
        };
        balancer.upsert_service(key(vip), spec).unwrap();
        balancer
            .set_backends(&key(vip), &pool(vip[3], None))
            .unwrap();
    }
    Lab { ebpf, balancer }
}

/// A TCP segment `client:sport -> vip:80` with `flags`.
fn segment(client: [u8; 4], sport: u16, vip: [u8; 4], flags: u8) -> Vec<u8> {
    let mut spec = FrameSpec::new(
        IpAddr::from(client),
        IpAddr::from(vip),
        L4::Tcp {
            src: sport,
            dst: 80,
        },
    );
    spec.tcp_flags = flags;
    spec.build()
}

const SYN: u8 = 0x02;
const ACK: u8 = 0x10;

/// Which backend (last byte of its address) a segment went to: dsr and nat
/// both send it to the backend's MAC.
fn send(lab: &Lab, client: [u8; 4], sport: u16, vip: [u8; 4], flags: u8) -> u8 {
    let (verdict, out) = run(&lab.ebpf, &segment(client, sport, vip, flags));
    assert_eq!(verdict, XDP_TX, "{client:?}:{sport} -> {vip:?} forwarded");
    assert_eq!(out[4], vip[3], "to a backend of that VIP");
    out[5]
}

fn templates(lab: &Lab) -> BpfHashMap<&aya::maps::MapData, PersistKey, Persisted> {
    BpfHashMap::try_from(lab.ebpf.map(PERSIST_MAP).unwrap()).unwrap()
}

fn templates_mut(lab: &mut Lab) -> BpfHashMap<&mut aya::maps::MapData, PersistKey, Persisted> {
    BpfHashMap::try_from(lab.ebpf.map_mut(PERSIST_MAP).unwrap()).unwrap()
}

/// The template key of `client` for `vip` (prefix bits of the 16-byte
/// form).
fn template_key(lab: &Lab, vip: [u8; 4], client: [u8; 4], prefix: u8) -> PersistKey {
    let (id, generation) = lab
        .balancer
        .translation()
        .service_id(&key(vip))
        .expect("the service exists");
    PersistKey {
        client: client_prefix(&v4_mapped(client), &prefix_mask(prefix)),
        vip_id: id,
        generation,
    }
}

/// The slot of backend `n` of `vip`.
fn slot(lab: &Lab, vip: [u8; 4], n: u8) -> u32 {
    let addr = IpAddr::from([198, 18, vip[3], n]);
    lab.balancer
        .backends(&key(vip))
        .unwrap()
        .iter()
        .find(|(b, _)| b.addr == addr)
        .map(|&(_, slot)| slot)
        .unwrap()
}

/// The backend `n` whose slot is `slot`.
fn backend_at(lab: &Lab, vip: [u8; 4], slot: u32) -> u8 {
    (1..=4).find(|&n| self::slot(lab, vip, n) == slot).unwrap()
}

#[test]
fn a_client_keeps_its_backend_across_connections_while_others_spread() {
    let lab = lab();
    let client = [198, 18, 9, 1];
    let first = send(&lab, client, 40_000, VIP_PERSIST, SYN);
    for sport in 40_001..40_020 {
        assert_eq!(
            send(&lab, client, sport, VIP_PERSIST, SYN),
            first,
            "connection from port {sport} follows the client's template"
        );
    }
    let t = templates(&lab)
        .get(&template_key(&lab, VIP_PERSIST, client, 128), 0)
        .expect("the client's template");
    assert_eq!(backend_at(&lab, VIP_PERSIST, t.backend), first);

    // Other clients spread: persistence is per client, not per service.
    let others: BTreeSet<u8> = (1..=32)
        .map(|n| send(&lab, [198, 18, 10, n], 40_000, VIP_PERSIST, SYN))
        .collect();
    assert!(others.len() >= 3, "32 clients over 4 backends: {others:?}");

    // Without persistence the same client's connections spread (the
    // 5-tuple is hashed): the check above is not a property of Maglev.
    let mut lab = lab;
    let mut spread = BTreeSet::new();
    let mut spec = *lab
        .balancer
        .services()
        .find(|(k, _, _)| **k == key(VIP_PERSIST))
        .unwrap()
        .1;
    spec.persistence = None;
    lab.balancer.upsert_service(key(VIP_PERSIST), spec).unwrap();
    for sport in 41_000..41_020 {
        spread.insert(send(&lab, client, sport, VIP_PERSIST, SYN));
    }
    assert!(spread.len() >= 2, "without persistence: {spread:?}");
}

#[test]
fn clients_in_one_prefix_share_a_backend() {
    let lab = lab();
    let first = send(&lab, [198, 18, 11, 1], 40_000, VIP_PREFIX, SYN);
    for n in 2..=40 {
        assert_eq!(
            send(
                &lab,
                [198, 18, 11, n],
                40_000 + u16::from(n),
                VIP_PREFIX,
                SYN
            ),
            first,
            "198.18.11.{n} shares 198.18.11.0/24's template"
        );
    }
    let by_prefix: BTreeSet<u8> = (12..=43)
        .map(|x| send(&lab, [198, 18, x, 1], 40_000, VIP_PREFIX, SYN))
        .collect();
    assert!(by_prefix.len() >= 3, "32 prefixes spread: {by_prefix:?}");
}

#[test]
fn templates_expire_skip_drained_backends_and_are_rewritten_by_established_flows() {
    let mut lab = lab();
    let client = [198, 18, 9, 2];
    let k = template_key(&lab, VIP_PERSIST, client, 128);
    // A connection (source port) Maglev sends to a backend other than
    // backend 1 (each try's template removed again).
    let sport = (50_000..50_100)
        .find(|&p| {
            let b = send(&lab, client, p, VIP_PERSIST, SYN);
            templates_mut(&mut lab).remove(&k).unwrap();
            b != 1
        })
        .expect("some connection hashes away from backend 1");
    let pin = |lab: &mut Lab, last_ns: u64| {
        let t = Persisted {
            backend: slot(lab, VIP_PERSIST, 1),
            pad: 0,
            last_ns,
        };
        templates_mut(lab).insert(k, t, 0).unwrap();
    };
    // A SYN always takes the new-flow path, so the same 5-tuple again.
    let fresh = coarse_now_ns();
    pin(&mut lab, fresh);
    assert_eq!(
        send(&lab, client, sport, VIP_PERSIST, SYN),
        1,
        "a fresh template wins over Maglev"
    );

    // Last seen 301 s ago (timeout 300 s): Maglev decides, and its choice
    // becomes the template.
    pin(&mut lab, coarse_now_ns() - 301 * SECOND);
    let hashed = send(&lab, client, sport, VIP_PERSIST, SYN);
    assert_ne!(hashed, 1, "the expired template is not followed");
    let t = templates(&lab).get(&k, 0).unwrap();
    assert_eq!(backend_at(&lab, VIP_PERSIST, t.backend), hashed);
    assert!(t.last_ns >= fresh, "rewritten now");

    // A template naming a drained backend (weight 0) is not followed.
    pin(&mut lab, coarse_now_ns());
    lab.balancer
        .set_backends(&key(VIP_PERSIST), &pool(VIP_PERSIST[3], Some(1)))
        .unwrap();
    let b = send(&lab, client, sport + 3000, VIP_PERSIST, SYN);
    assert_ne!(b, 1, "no new flow to a drained backend");
    let t = templates(&lab).get(&k, 0).unwrap();
    assert_eq!(backend_at(&lab, VIP_PERSIST, t.backend), b, "re-pinned");
    lab.balancer
        .set_backends(&key(VIP_PERSIST), &pool(VIP_PERSIST[3], None))
        .unwrap();

    // An established flow whose client has no template (evicted, or the
    // flow came by sync) writes one naming its backend.
    let established = send(&lab, client, sport, VIP_PERSIST, ACK);
    templates_mut(&mut lab).remove(&k).unwrap();
    assert_eq!(send(&lab, client, sport, VIP_PERSIST, ACK), established);
    let t = templates(&lab).get(&k, 0).expect("written by the flow");
    assert_eq!(backend_at(&lab, VIP_PERSIST, t.backend), established);
}

#[test]
fn nat_flows_keep_and_refresh_their_clients_templates() {
    let mut lab = lab();
    let client = [198, 18, 9, 3];
    let first = send(&lab, client, 40_000, VIP_NAT, SYN);
    for sport in 40_001..40_020 {
        assert_eq!(send(&lab, client, sport, VIP_NAT, SYN), first);
    }
    let nat: BpfHashMap<_, lb_common::flow::FlowKey, NatEntry> =
        BpfHashMap::try_from(lab.ebpf.map(NAT_MAP).unwrap()).unwrap();
    let forward: Vec<NatEntry> = nat
        .iter()
        .map(|r| r.unwrap().1)
        .filter(|e| e.flags & nat_flags::REPLY == 0)
        .collect();
    assert_eq!(forward.len(), 20);
    assert!(
        forward.iter().all(|e| e.flags & nat_flags::PERSIST != 0),
        "every forward entry of a persistent service says so"
    );
    // The NAT table's forward path writes a missing template back.
    let k = template_key(&lab, VIP_NAT, client, 128);
    templates_mut(&mut lab).remove(&k).unwrap();
    assert_eq!(send(&lab, client, 40_005, VIP_NAT, ACK), first);
    let t = templates(&lab).get(&k, 0).expect("written by the NAT flow");
    assert_eq!(backend_at(&lab, VIP_NAT, t.backend), first);
}

#[test]
fn source_hash_sends_a_client_to_one_backend_without_state() {
    let lab = lab();
    let mut by_client = BTreeMap::new();
    for n in 1..=48 {
        let client = [198, 18, 12, n];
        let first = send(&lab, client, 40_000, VIP_SH, SYN);
        for sport in 40_001..40_010 {
            assert_eq!(send(&lab, client, sport, VIP_SH, SYN), first);
        }
        by_client.insert(n, first);
    }
    let used: BTreeSet<u8> = by_client.values().copied().collect();
    assert_eq!(used.len(), 4, "48 clients over 4 backends: {by_client:?}");
    assert!(
        templates(&lab).keys().next().is_none(),
        "source hashing keeps no templates"
    );
}

/// The verifier accepts the program with every read-only setting lbd
/// loads it with: new-flow events (connection sync) on or off, one arm or
/// two. Each setting compiles different code paths in (a persistence
/// branch once multiplied the states of the events-on program past the
/// verifier's million instructions); the count each one costs is printed.
#[test]
fn the_program_loads_with_every_read_only_setting() {
    use lb_user::dataplane::loader::{Sizes, load_object_with};
    for events in [false, true] {
        for arm1_ifindex in [0, 1] {
            let sizes = Sizes {
                arm1_ifindex,
                ..Sizes::default()
            };
            let mut ebpf = load_object_with(&sizes, events, None).unwrap();
            let program: &mut Xdp = ebpf.program_mut(PROGRAM).unwrap().try_into().unwrap();
            let started = std::time::Instant::now();
            program
                .load()
                .unwrap_or_else(|e| panic!("events {events}, arm 1 {arm1_ifindex}: {e}"));
            let verified = program
                .info()
                .ok()
                .and_then(|i| i.verified_instruction_count());
            println!(
                "events {events}, arm 1 ifindex {arm1_ifindex}: verified {verified:?} instructions in {:?}",
                started.elapsed()
            );
        }
    }
}
