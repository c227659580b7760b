//! `virtual_server_group NAME { ... }`: the VIP:ports a `virtual_server
//! group NAME` serves with one set of real servers. lb has no such object:
//! the group's virtual server becomes one `[[service]]` per VIP and port,
//! each with the same backends, checks and settings (so each checks its
//! backends itself, where keepalived checks once for the group).
//!
//! Entries, as keepalived reads them (keepalived.conf(5),
//! check/check_data.c): `IP [PORT]`, `IP-END PORT` (a range of the last
//! byte of an IPv4 address, in decimal, or of the last 16 bits of an IPv6
//! one, in hex), `IP-IP PORT` (a range of whole addresses), `IP/LEN PORT`
//! (every address of the prefix; the address's host bits must be 0). A
//! missing port (or 0) is every port. `fwmark N` entries are reported and
//! skipped: lb balances addresses, not firewall marks.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::Ctx;
use super::lexer::{Loc, Node};
use crate::config::ConfigError;

/// The most addresses one group may expand to: each is a service with its
/// own checks.
const MAX_ADDRESSES: u128 = 1024;

/// One VIP:port of a group, and the line it came from.
#[derive(Debug, Clone, Copy)]
pub(super) struct Entry {
    pub vip: IpAddr,
    pub port: u16,
    pub loc: Loc,
}

/// The groups of a file, by name.
pub(super) type Groups = HashMap<String, Vec<Entry>>;

/// Read `virtual_server_group NAME { ... }` into `groups`.
pub(super) fn virtual_server_group(
    ctx: &mut Ctx,
    n: &Node,
    groups: &mut Groups,
) -> Result<(), ConfigError> {
    let Some(name) = n.args.first().map(|t| t.text.clone()) else {
        return Err(ctx.err(
            n.loc(),
            "virtual_server_group",
            "write `virtual_server_group NAME { IP PORT ... }`",
        ));
    };
    let sec = format!("virtual_server_group {name}");
    let mut entries = Vec::new();
    for e in ctx.block(n, &sec)? {
        if e.kw() == "fwmark" {
            ctx.warn(
                e.loc(),
                format!(
                    "unsupported `{}` in {sec}, skipped: lb balances addresses and ports, not firewall marks",
                    e.words()
                ),
            );
            continue;
        }
        let field = format!("{sec} {}", e.words());
        let port = match e.args.first() {
            None => 0,
            Some(p) => p
                .text
                .parse::<u16>()
                .map_err(|_| ctx.err(e.loc(), &field, format!("{:?} is not a port", p.text)))?,
        };
        let addresses = addresses(e.kw())
            .map_err(|m| ctx.err(e.loc(), &field, format!("{:?}: {m}", e.kw())))?;
        entries.extend(addresses.into_iter().map(|vip| Entry {
            vip,
            port,
            loc: e.loc(),
        }));
        if entries.len() as u128 > MAX_ADDRESSES {
            return Err(ctx.err(
                e.loc(),
                &field,
                format!(
                    "the group has more than {MAX_ADDRESSES} addresses: lb makes a service of each"
                ),
            ));
        }
    }
    if entries.is_empty() {
        return Err(ctx.err(n.loc(), sec, "the group has no `IP PORT` entry"));
    }
    if groups.insert(name.clone(), entries).is_some() {
        return Err(ctx.err(
            n.loc(),
            sec,
            format!("a second virtual_server_group named {name:?}"),
        ));
    }
    Ok(())
}

/// The addresses of one entry: `IP`, `IP-END`, `IP-IP` or `IP/LEN`.
fn addresses(text: &str) -> Result<Vec<IpAddr>, String> {
    let bad = |s: &str| format!("{s:?} is not an IP address");
    if let Some((ip, len)) = text.split_once('/') {
        let ip: IpAddr = ip.parse().map_err(|_| bad(ip))?;
        let bits = if ip.is_ipv4() { 32 } else { 128 };
        let len: u32 = len
            .parse()
            .ok()
            .filter(|l| (1..=bits).contains(l))
            .ok_or_else(|| format!("/{len} is not a prefix length from 1 to {bits}"))?;
        let host = if len == bits {
            0
        } else {
            u128::MAX >> (128 - (bits - len))
        };
        let first = number(ip);
        if first & host != 0 {
            return Err(format!("the host bits of {ip} are not 0"));
        }
        return span(ip, first, first | host);
    }
    let Some((ip, end)) = text.split_once('-') else {
        return Ok(vec![text.parse().map_err(|_| bad(text))?]);
    };
    let start: IpAddr = ip.parse().map_err(|_| bad(ip))?;
    let first = number(start);
    let last = if end.contains(['.', ':']) {
        let end_ip: IpAddr = end.parse().map_err(|_| bad(end))?;
        if end_ip.is_ipv4() != start.is_ipv4() {
            return Err("the range's ends are of two address families".into());
        }
        number(end_ip)
    } else {
        // keepalived: the last byte (IPv4, decimal) or 16 bits (IPv6, hex).
        let (radix, part) = if start.is_ipv4() {
            (10, 0xff)
        } else {
            (16, 0xffff)
        };
        let n = u128::from_str_radix(end, radix)
            .ok()
            .filter(|&n| n <= part)
            .ok_or_else(|| format!("the range end {end:?} is not a number up to {part}"))?;
        (first & !part) | n
    };
    if last <= first {
        return Err("the range end is not above its start".into());
    }
    span(start, first, last)
}

/// `ip`'s family's addresses from `first` to `last` (as numbers).
fn span(ip: IpAddr, first: u128, last: u128) -> Result<Vec<IpAddr>, String> {
    if last - first >= MAX_ADDRESSES {
        return Err(format!(
            "more than {MAX_ADDRESSES} addresses: lb makes a service of each"
        ));
    }
    Ok((first..=last)
        .map(|n| match ip {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::from(u32::try_from(n).unwrap_or(u32::MAX))),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::from(n)),
        })
        .collect())
}

fn number(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

#[cfg(test)]
mod tests {
    use super::addresses;

    fn texts(s: &str) -> Result<Vec<String>, String> {
        addresses(s).map(|v| v.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn entries_expand_as_keepalived_reads_them() {
        assert_eq!(texts("198.18.0.10").unwrap(), ["198.18.0.10"]);
        assert_eq!(
            texts("198.18.0.10-12").unwrap(),
            ["198.18.0.10", "198.18.0.11", "198.18.0.12"]
        );
        assert_eq!(
            texts("198.18.0.255-198.18.1.1").unwrap(),
            ["198.18.0.255", "198.18.1.0", "198.18.1.1"]
        );
        assert_eq!(texts("198.18.0.8/30").unwrap().len(), 4);
        // IPv6: the last 16 bits, in hex.
        assert_eq!(
            texts("2001:db8::e-10").unwrap(),
            ["2001:db8::e", "2001:db8::f", "2001:db8::10"]
        );
        assert_eq!(texts("2001:db8::/126").unwrap().len(), 4);
        for (bad, why) in [
            ("198.18.0.10-9", "not above its start"),
            ("198.18.0.10-256", "not a number up to 255"),
            ("198.18.0.9/30", "host bits of 198.18.0.9 are not 0"),
            ("198.18.0.0/33", "/33 is not a prefix length"),
            ("198.18.0.0/16", "more than 1024 addresses"),
            ("198.18.0.1-2001:db8::1", "two address families"),
            ("web", "\"web\" is not an IP address"),
        ] {
            let e = texts(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }
}
