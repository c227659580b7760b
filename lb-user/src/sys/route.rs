//! Host routes in a routing table of lbd's own, through rtnetlink: how lbd
//! tells the BGP speaker which VIPs to announce (`crate::bgp`).
//!
//! Each announced VIP is a `blackhole VIP/32` (or `/128`) route in the
//! table `[bgp] table` names, tagged with the route protocol
//! [`ROUTE_PROTO`] (`ip route show table 100` prints `proto 108`): that
//! tag is how lbd finds and removes only its own routes, also after a
//! crash. No rule points the kernel at the table, so the routes never
//! route a packet; the speaker (bird's `kernel` protocol with `learn`)
//! reads them and exports them as BGP routes with this node as next hop.

use std::net::IpAddr;

use futures::TryStreamExt as _;
use rtnetlink::RouteMessageBuilder;
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteMessage, RouteProtocol, RouteType,
};

/// The route protocol of lbd's routes (`'l'`, as the address tag of
/// `crate::sys::addr`).
pub const ROUTE_PROTO: u8 = 0x6c;

/// The host route's message for `vip` in `table`.
fn message(table: u32, vip: IpAddr) -> RouteMessage {
    let len = if vip.is_ipv4() { 32 } else { 128 };
    RouteMessageBuilder::<IpAddr>::new()
        .destination_prefix(vip, len)
        .expect("a host prefix of the address's own family")
        .table_id(table)
        .protocol(RouteProtocol::from(ROUTE_PROTO))
        .kind(RouteType::BlackHole)
        .build()
}

/// Put lbd's route to `vip` into `table` (nothing changes if it is there).
///
/// # Errors
/// Netlink failure.
pub async fn add(
    handle: &rtnetlink::Handle,
    table: u32,
    vip: IpAddr,
) -> Result<(), rtnetlink::Error> {
    handle
        .route()
        .add(message(table, vip))
        .replace()
        .execute()
        .await
}

/// Remove lbd's route to `vip` from `table`; a route that is not there
/// is no error.
///
/// # Errors
/// Netlink failure.
pub async fn remove(
    handle: &rtnetlink::Handle,
    table: u32,
    vip: IpAddr,
) -> Result<(), rtnetlink::Error> {
    match handle.route().del(message(table, vip)).execute().await {
        Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ESRCH => Ok(()),
        other => other,
    }
}

/// The VIPs lbd's routes in `table` lead to (host routes tagged
/// [`ROUTE_PROTO`]), IPv4 and IPv6.
///
/// # Errors
/// Netlink failure.
pub async fn list(handle: &rtnetlink::Handle, table: u32) -> Result<Vec<IpAddr>, rtnetlink::Error> {
    let mut out = Vec::new();
    for family in [AddressFamily::Inet, AddressFamily::Inet6] {
        let mut query = RouteMessage::default();
        query.header.address_family = family;
        let mut routes = handle.route().get(query).execute();
        while let Some(msg) = routes.try_next().await? {
            if let Some(vip) = ours(&msg, table) {
                out.push(vip);
            }
        }
    }
    Ok(out)
}

/// The VIP of `msg` if it is one of lbd's host routes in `table`.
fn ours(msg: &RouteMessage, table: u32) -> Option<IpAddr> {
    if u8::from(msg.header.protocol) != ROUTE_PROTO {
        return None;
    }
    let mut in_table = u32::from(msg.header.table);
    let mut dest = None;
    for attr in &msg.attributes {
        match attr {
            RouteAttribute::Table(t) => in_table = *t,
            RouteAttribute::Destination(RouteAddress::Inet(a)) => dest = Some(IpAddr::V4(*a)),
            RouteAttribute::Destination(RouteAddress::Inet6(a)) => dest = Some(IpAddr::V6(*a)),
            _ => {}
        }
    }
    let dest = dest?;
    let host = if dest.is_ipv4() { 32 } else { 128 };
    (in_table == table && msg.header.destination_prefix_length == host).then_some(dest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_route_is_ours_by_tag_table_and_host_prefix() {
        let vip: IpAddr = "198.18.100.1".parse().unwrap();
        assert_eq!(ours(&message(100, vip), 100), Some(vip));
        assert_eq!(ours(&message(100, vip), 101), None);
        // Tables above 255 travel in an attribute.
        assert_eq!(ours(&message(1000, vip), 1000), Some(vip));
        let v6: IpAddr = "2001:db8::100".parse().unwrap();
        assert_eq!(ours(&message(100, v6), 100), Some(v6));
        let mut foreign = message(100, vip);
        foreign.header.protocol = RouteProtocol::Static;
        assert_eq!(ours(&foreign, 100), None);
        let mut prefix = message(100, vip);
        prefix.header.destination_prefix_length = 24;
        assert_eq!(ours(&prefix, 100), None);
    }
}
