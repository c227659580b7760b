//! Next-hop resolution against a real kernel: a LAN of network namespaces
//! with the load balancer `lb` and a backend `b1`, resolved from inside
//! `lb`. Needs root (CI runs as root); these tests never skip.

use std::{
    future::Future,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    time::Duration,
};

use lb_lab::netns::{Lan, Netns};
use lb_user::sys::neigh::{self, NeighError, NextHop};

const TIMEOUT: Duration = Duration::from_secs(5);
const B1_V4: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 11));
const LB_V4: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 2));
const LB_V6: IpAddr = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2));
const B1_V6: IpAddr = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x11));

fn lan() -> Lan {
    let mut lan = Lan::new().expect("create LAN (are we root?)");
    lan.add_host("lb", "198.18.0.2/24", "2001:db8::2/64")
        .expect("add lb");
    lan.add_host("b1", "198.18.0.11/24", "2001:db8::11/64")
        .expect("add b1");
    lan
}

/// Run `f` to completion on a current-thread runtime inside `ns`, so the
/// netlink and probe sockets belong to that namespace.
fn block_on_in<T: Send, F: Future<Output = T>>(ns: &Netns, f: impl FnOnce() -> F + Send) -> T {
    ns.run(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime")
            .block_on(f())
    })
    .expect("enter namespace")
}

/// `eth0`'s ifindex in `ns`.
fn eth0(ns: &Netns) -> u32 {
    ns.run(|| {
        // SAFETY: a NUL-terminated literal.
        unsafe { libc::if_nametoindex(c"eth0".as_ptr()) }
    })
    .expect("enter namespace")
}

#[test]
fn on_link_backend_resolves_to_its_own_mac() {
    let lan = lan();
    let lb = &lan.host("lb").ns;
    let mac = lan.host("b1").mac().expect("b1 MAC");
    let eth0 = eth0(lb);
    assert_ne!(eth0, 0);

    for (dest, src) in [(B1_V4, LB_V4), (B1_V6, LB_V6)] {
        let expected = NextHop {
            ifindex: eth0,
            gateway: None,
            mac,
            src: Some(src),
        };
        // First call: nothing in the table, so it probes and polls.
        let oifs = [eth0];
        let hop = block_on_in(lb, || neigh::resolve(dest, Some(&oifs), TIMEOUT))
            .unwrap_or_else(|e| panic!("resolve {dest}: {e}"));
        assert_eq!(hop, expected, "{dest}");
        // Second call: straight from the table, also without `oif`.
        let hop = block_on_in(lb, || neigh::resolve(dest, None, TIMEOUT))
            .unwrap_or_else(|e| panic!("resolve {dest} again: {e}"));
        assert_eq!(hop, expected, "{dest} again");
    }
}

#[test]
fn routed_backend_resolves_to_the_gateway_mac() {
    let lan = lan();
    let lb = &lan.host("lb").ns;
    lb.ip(&["route", "add", "198.18.9.0/24", "via", "198.18.0.11"])
        .expect("add route");
    let mac = lan.host("b1").mac().expect("b1 MAC");

    let dest = IpAddr::V4(Ipv4Addr::new(198, 18, 9, 5));
    let hop = block_on_in(lb, || neigh::resolve(dest, None, TIMEOUT))
        .unwrap_or_else(|e| panic!("resolve {dest}: {e}"));
    assert_eq!(
        hop,
        NextHop {
            ifindex: eth0(lb),
            gateway: Some(B1_V4),
            mac,
            src: Some(LB_V4),
        }
    );
}

#[test]
fn silent_on_link_address_is_unresolved() {
    let lan = lan();
    let lb = &lan.host("lb").ns;
    let timeout = Duration::from_millis(300);
    let dest = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 77));

    let started = std::time::Instant::now();
    let err = block_on_in(lb, || neigh::resolve(dest, None, timeout))
        .expect_err("nobody has 198.18.0.77");
    let took = started.elapsed();
    match err {
        NeighError::Unresolved {
            addr,
            ifindex,
            timeout: t,
        } => {
            assert_eq!(addr, dest);
            assert_eq!(ifindex, eth0(lb));
            assert_eq!(t, timeout);
        }
        other => panic!("expected Unresolved, got {other:?}"),
    }
    assert!(took >= timeout, "gave up after {took:?}");
    assert!(
        took < timeout * 4,
        "took {took:?} for a {timeout:?} timeout"
    );
}

#[test]
fn unrouted_address_has_no_route() {
    let lan = lan();
    let lb = &lan.host("lb").ns;
    // No default route in the namespace: outside the /24 and /64 nothing is
    // reachable.
    for dest in [
        IpAddr::V4(Ipv4Addr::new(198, 19, 200, 1)),
        IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 1)),
    ] {
        match block_on_in(lb, || neigh::resolve(dest, None, TIMEOUT)) {
            Err(NeighError::NoRoute { dest: d }) => assert_eq!(d, dest),
            other => panic!("{dest}: expected NoRoute, got {other:?}"),
        }
    }
}

#[test]
fn route_out_of_another_interface_is_refused() {
    let lan = lan();
    let lb = &lan.host("lb").ns;
    let eth0 = eth0(lb);
    let lo = 1;
    let oifs = [lo, 0];
    match block_on_in(lb, || neigh::resolve(B1_V4, Some(&oifs), TIMEOUT)) {
        Err(NeighError::WrongInterface { dest, want, got }) => {
            assert_eq!((dest, want, got), (B1_V4, vec![lo], eth0));
        }
        other => panic!("expected WrongInterface, got {other:?}"),
    }
}

#[test]
fn own_address_is_not_a_backend() {
    let lan = lan();
    let lb = &lan.host("lb").ns;
    let own = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 2));
    match block_on_in(lb, || neigh::resolve(own, None, TIMEOUT)) {
        Err(NeighError::NotUnicast { dest, .. }) => assert_eq!(dest, own),
        other => panic!("expected NotUnicast, got {other:?}"),
    }
}
