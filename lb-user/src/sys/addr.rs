//! Virtual addresses on interfaces, through rtnetlink.
//!
//! Every address lbd adds carries the address protocol [`ADDR_PROTO`]
//! (`IFA_PROTO`, `ip addr show` prints it as `proto 0x6c`): that tag is how
//! lbd removes only what it added, also after a crash. An address that
//! was already on the interface without the tag (configured by the
//! operator, or by another daemon) is left alone: not re-added, not
//! removed. IPv6 VIPs are added with `nodad`, as keepalived does, so they
//! answer at once.

use std::net::IpAddr;

use futures::TryStreamExt as _;
use rtnetlink::packet_route::address::{
    AddressAttribute, AddressFlags, AddressMessage, AddressProtocol,
};

/// `IFA_PROTO` value of the addresses lbd adds (`'l'`).
pub const ADDR_PROTO: u8 = 0x6c;

/// A virtual address with its prefix length (`198.18.0.100/24`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Vip {
    /// The address.
    pub addr: IpAddr,
    /// Prefix length (32 / 128 for a host address).
    pub prefix: u8,
}

impl std::fmt::Display for Vip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// What [`add`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Added {
    /// The address was added (tagged).
    New,
    /// We had already added it (tagged): nothing to do.
    Ours,
    /// It was there untagged: left as it is, and never removed by lbd.
    Foreign,
}

/// An address on an interface as netlink reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Present {
    /// The address and prefix.
    pub vip: Vip,
    /// Whether lbd added it ([`ADDR_PROTO`]).
    pub ours: bool,
}

/// The addresses on interface `ifindex`.
///
/// # Errors
/// Netlink failure.
pub async fn list(
    handle: &rtnetlink::Handle,
    ifindex: u32,
) -> Result<Vec<Present>, rtnetlink::Error> {
    Ok(find_message(handle, ifindex, |_| true)
        .await?
        .iter()
        .filter_map(present_of)
        .collect())
}

/// Add `vip` to interface `ifindex`, tagged, unless it is already there.
///
/// # Errors
/// Netlink failure.
pub async fn add(
    handle: &rtnetlink::Handle,
    ifindex: u32,
    vip: Vip,
) -> Result<Added, rtnetlink::Error> {
    if let Some(p) = list(handle, ifindex)
        .await?
        .into_iter()
        .find(|p| p.vip.addr == vip.addr)
    {
        return Ok(if p.ours { Added::Ours } else { Added::Foreign });
    }
    let mut req = handle.address().add(ifindex, vip.addr, vip.prefix);
    let msg = req.message_mut();
    msg.attributes
        .push(AddressAttribute::Protocol(AddressProtocol::from(
            ADDR_PROTO,
        )));
    if vip.addr.is_ipv6() {
        msg.attributes
            .push(AddressAttribute::Flags(AddressFlags::Nodad));
    }
    req.execute().await?;
    Ok(Added::New)
}

/// Remove `vip` from interface `ifindex` if lbd added it. Returns whether
/// an address was removed.
///
/// # Errors
/// Netlink failure.
pub async fn remove(
    handle: &rtnetlink::Handle,
    ifindex: u32,
    vip: Vip,
) -> Result<bool, rtnetlink::Error> {
    let found = find_message(handle, ifindex, |p| p.ours && p.vip.addr == vip.addr).await?;
    let removed = !found.is_empty();
    for msg in found {
        handle.address().del(msg).execute().await?;
    }
    Ok(removed)
}

/// Remove every address lbd added on `ifindex` (left over from a run that
/// crashed). Returns what was removed.
///
/// # Errors
/// Netlink failure.
pub async fn sweep(handle: &rtnetlink::Handle, ifindex: u32) -> Result<Vec<Vip>, rtnetlink::Error> {
    let mut removed = Vec::new();
    for msg in find_message(handle, ifindex, |p| p.ours).await? {
        let vip = present_of(&msg).map(|p| p.vip);
        handle.address().del(msg).execute().await?;
        removed.extend(vip);
    }
    Ok(removed)
}

/// IPv4 reports the interface address as `IFA_LOCAL` (`IFA_ADDRESS` is the
/// peer on point-to-point links); IPv6 only has `IFA_ADDRESS`.
fn present_of(msg: &AddressMessage) -> Option<Present> {
    let mut addr = None;
    let mut local = None;
    let mut ours = false;
    for attr in &msg.attributes {
        match attr {
            AddressAttribute::Address(a) => addr = Some(*a),
            AddressAttribute::Local(a) => local = Some(*a),
            AddressAttribute::Protocol(p) => ours = u8::from(*p) == ADDR_PROTO,
            _ => {}
        }
    }
    local.or(addr).map(|addr| Present {
        vip: Vip {
            addr,
            prefix: msg.header.prefix_len,
        },
        ours,
    })
}

async fn find_message(
    handle: &rtnetlink::Handle,
    ifindex: u32,
    want: impl Fn(&Present) -> bool,
) -> Result<Vec<AddressMessage>, rtnetlink::Error> {
    let mut out = Vec::new();
    let mut stream = handle
        .address()
        .get()
        .set_link_index_filter(ifindex)
        .execute();
    while let Some(msg) = stream.try_next().await? {
        if msg.header.index == ifindex && present_of(&msg).is_some_and(|p| want(&p)) {
            out.push(msg);
        }
    }
    Ok(out)
}
