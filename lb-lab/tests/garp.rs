//! Kernel test for VIP announcements: frames from
//! [`lb_user::vrrp::garp`] sent with a [`FrameSender`] on a LAN of network
//! namespaces must make a neighbour move its cache entry for the VIP to
//! the new master's MAC, as keepalived's do. The kernel drops an NA with a
//! bad checksum or hop limit, so this also checks the frames end to end.
//!
//! Needs root (namespaces, `CAP_NET_RAW`); nothing here skips.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    time::Duration,
};

use lb_lab::netns::{Lan, wait_for};
use lb_user::{
    dataplane::preflight,
    vrrp::garp::{FrameSender, gratuitous_arp, unsolicited_na},
};

const TIMEOUT: Duration = Duration::from_secs(5);
const VIP4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 100);
const VIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x100);
/// Where the peer believes the VIP is before the takeover.
const OLD_MAC: &str = "02:00:00:00:00:99";

fn lan() -> Lan {
    let mut lan = Lan::new().expect("create LAN (run as root)");
    lan.add_host("lb", "198.18.0.2/24", "2001:db8::2/64")
        .expect("add lb");
    lan.add_host("peer", "198.18.0.11/24", "2001:db8::11/64")
        .expect("add peer");
    lan
}

fn mac_string(mac: [u8; 6]) -> String {
    mac.map(|b| format!("{b:02x}")).join(":")
}

/// The peer's neighbour entry for `vip`, as `ip neigh` prints it.
fn peer_entry(lan: &Lan, vip: IpAddr) -> String {
    let out = lan
        .host("peer")
        .ns
        .ip(&["neigh", "show", &vip.to_string(), "dev", "eth0"])
        .expect("ip neigh show");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Plants a stale entry `vip → OLD_MAC` on the peer, sends `frame` from
/// `lb`, and waits for the entry to point at `lb`'s MAC.
fn check_takeover(vip: IpAddr, frame: impl Fn([u8; 6]) -> Vec<u8>) {
    let lan = lan();
    let lb = lan.host("lb");
    let mac = lb.mac().expect("lb MAC");
    lan.host("peer")
        .ns
        .ip(&[
            "neigh",
            "replace",
            &vip.to_string(),
            "lladdr",
            OLD_MAC,
            "dev",
            "eth0",
            "nud",
            "stale",
        ])
        .expect("plant stale entry");
    assert!(peer_entry(&lan, vip).contains(OLD_MAC));

    // The socket belongs to the namespace it is created in.
    let sender = lb
        .ns
        .run(|| FrameSender::open(preflight::ifindex("eth0").expect("eth0 in lb")))
        .expect("enter lb")
        .expect("open packet socket (CAP_NET_RAW)");
    let frame = frame(mac);
    let want = mac_string(mac);
    let moved = wait_for(TIMEOUT, || {
        sender.send(&frame).expect("send");
        peer_entry(&lan, vip).contains(&want).then_some(())
    });
    assert!(
        moved.is_some(),
        "peer still has {:?}, want {want}",
        peer_entry(&lan, vip)
    );
}

#[test]
fn gratuitous_arp_moves_the_peer_s_entry() {
    check_takeover(IpAddr::V4(VIP4), |mac| gratuitous_arp(mac, VIP4));
}

#[test]
fn unsolicited_na_moves_the_peer_s_entry() {
    let link_local = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0x2);
    check_takeover(IpAddr::V6(VIP6), |mac| {
        unsolicited_na(mac, link_local, VIP6)
    });
}

#[test]
fn na_with_a_bad_checksum_is_ignored() {
    // Shows the NA test above can fail: the kernel checks what we build.
    let lan = lan();
    let lb = lan.host("lb");
    let mac = lb.mac().expect("lb MAC");
    let vip = IpAddr::V6(VIP6);
    lan.host("peer")
        .ns
        .ip(&[
            "neigh",
            "replace",
            &vip.to_string(),
            "lladdr",
            OLD_MAC,
            "dev",
            "eth0",
            "nud",
            "stale",
        ])
        .expect("plant stale entry");
    let sender = lb
        .ns
        .run(|| FrameSender::open(preflight::ifindex("eth0").expect("eth0 in lb")))
        .expect("enter lb")
        .expect("open packet socket (CAP_NET_RAW)");
    let mut frame = unsolicited_na(mac, Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0x2), VIP6);
    // ICMPv6 checksum: Ethernet 14 + IPv6 40 + 2.
    frame[56] ^= 0xff;
    let moved = wait_for(Duration::from_millis(500), || {
        sender.send(&frame).expect("send");
        peer_entry(&lan, vip)
            .contains(&mac_string(mac))
            .then_some(())
    });
    assert!(moved.is_none(), "a corrupt NA was accepted");
    assert!(peer_entry(&lan, vip).contains(OLD_MAC));
}

#[test]
fn open_fails_on_a_missing_interface() {
    let lan = lan();
    let err = lan
        .host("lb")
        .ns
        .run(|| FrameSender::open(0x7fff_fff0))
        .expect("enter lb")
        .expect_err("no such interface");
    assert_eq!(err.raw_os_error(), Some(libc::ENODEV), "{err}");
}
