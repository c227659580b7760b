//! The sync protocol's datagrams: a checked view over bytes and plain
//! `Repr`s that parse and emit (smoltcp's `wire` pattern), authenticated
//! with HMAC-SHA256 over a shared secret (sync writes forwarding state, so
//! nobody else may).
//!
//! ```text
//! 0       4   5    6       8          12         16                 24
//! +-------+---+----+-------+----------+----------+------------------+
//! | "LBSY"|ver|kind| count | sender   | sequence | sent (Unix ns)   |
//! +-------+---+----+-------+----------+----------+------------------+
//! | count records of RECORD_LEN bytes (kind Flows and BulkFlows),    |
//! | of NAT_RECORD_LEN bytes (NatFlows, BulkNatFlows),                |
//! | or one u64 total (BulkEnd), or nothing (BulkRequest)            |
//! +------------------------------------------------------------------+
//! | HMAC-SHA256 over everything before it (32 bytes)                 |
//! +------------------------------------------------------------------+
//! ```
//!
//! A flow record (56 bytes): protocol, family, 2 bytes zero, VIP address
//! (16, IPv4 v4-mapped), VIP port, client port, client address (16),
//! backend address (16). A NAT record (88 bytes): protocol, family, flags
//! (bit 0: fullnat), the forward and reply TCP flags, the client's arm
//! (0, or 1: behind the backend interface), 2 bytes zero, VIP
//! address (16), VIP port, client port, client address (16), backend
//! address (16), backend port, source port, source address (16: what the
//! backend sees, the SNAT address or the client), the client's MAC (6), 2
//! bytes zero. Everything is big-endian. Records name VIPs and backends by
//! address, never by a node's map indices, which differ between nodes.

use std::net::IpAddr;

use hmac::{Hmac, Mac as _};

pub use crate::dataplane::flows::FlowRecord;
pub use crate::dataplane::nat::NatRecord;
use sha2::Sha256;

/// The first four bytes of every datagram.
pub const MAGIC: [u8; 4] = *b"LBSY";
/// Protocol version.
pub const VERSION: u8 = 1;
/// Header bytes.
pub const HEADER_LEN: usize = 24;
/// Bytes of one flow record.
pub const RECORD_LEN: usize = 56;
/// Bytes of the authentication tag.
pub const TAG_LEN: usize = 32;
/// Largest datagram we send: fits one Ethernet frame (1500 - 20 - 8).
pub const MAX_DATAGRAM: usize = 1472;
/// Records that fit one datagram.
pub const MAX_RECORDS: usize = (MAX_DATAGRAM - HEADER_LEN - TAG_LEN) / RECORD_LEN;
/// Bytes of one NAT record.
pub const NAT_RECORD_LEN: usize = 88;
/// NAT records that fit one datagram.
pub const MAX_NAT_RECORDS: usize = (MAX_DATAGRAM - HEADER_LEN - TAG_LEN) / NAT_RECORD_LEN;

/// What a datagram carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// New flows, as they happen.
    Flows,
    /// "Send me your whole table": a node that (re)joins.
    BulkRequest,
    /// Part of the answer to a bulk request.
    BulkFlows,
    /// The end of the answer, with the number of flows sent.
    BulkEnd,
    /// NAT flows: new ones as they happen, and live ones again now and
    /// then (so a peer's copies do not time out).
    NatFlows,
    /// NAT flows answering a bulk request.
    BulkNatFlows,
}

impl Kind {
    const fn code(self) -> u8 {
        match self {
            Self::Flows => 1,
            Self::BulkRequest => 2,
            Self::BulkFlows => 3,
            Self::BulkEnd => 4,
            Self::NatFlows => 5,
            Self::BulkNatFlows => 6,
        }
    }

    const fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            1 => Self::Flows,
            2 => Self::BulkRequest,
            3 => Self::BulkFlows,
            4 => Self::BulkEnd,
            5 => Self::NatFlows,
            6 => Self::BulkNatFlows,
            _ => return None,
        })
    }
}

/// Why a datagram was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Shorter than a header and tag, or its length does not match its
    /// count.
    #[error("truncated or mis-sized datagram")]
    Length,
    /// Not ours (magic) or another version.
    #[error("not an lb sync datagram of version {VERSION}")]
    Foreign,
    /// Unknown kind.
    #[error("unknown datagram kind")]
    Kind,
    /// The tag does not verify: another secret, or tampering.
    #[error("authentication failed (is the sync secret the same on every node?)")]
    Auth,
    /// A record is malformed (family, or mixed families).
    #[error("malformed flow record")]
    Record,
}

/// A datagram, parsed and authenticated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Datagram {
    /// What it carries.
    pub kind: Kind,
    /// The sending process's random id: a new id is a restarted peer.
    pub sender: u32,
    /// The sender's sequence number (per sender id), for loss counting.
    pub sequence: u32,
    /// When it was sent, Unix time in nanoseconds (for lag, on one clock
    /// or NTP-synchronised clocks).
    pub sent_ns: u64,
    /// Flow records (`Flows`, `BulkFlows`).
    pub flows: Vec<FlowRecord>,
    /// NAT flow records (`NatFlows`, `BulkNatFlows`).
    pub nat: Vec<NatRecord>,
    /// Flows sent in the bulk answer (`BulkEnd`).
    pub total: u64,
}

type HmacSha256 = Hmac<Sha256>;

fn mac(secret: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length.
    HmacSha256::new_from_slice(secret).expect("HMAC accepts any key length")
}

fn addr16(addr: IpAddr) -> [u8; 16] {
    match addr {
        IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
        IpAddr::V6(a) => a.octets(),
    }
}

fn addr_of(bytes: &[u8], v4: bool) -> Option<IpAddr> {
    let b: [u8; 16] = bytes.try_into().ok()?;
    let v6 = std::net::Ipv6Addr::from(b);
    if v4 {
        v6.to_ipv4_mapped().map(IpAddr::V4)
    } else {
        Some(IpAddr::V6(v6))
    }
}

impl FlowRecord {
    fn emit(&self, out: &mut Vec<u8>) {
        out.push(self.proto);
        out.push(if self.vip.is_ipv4() { 4 } else { 6 });
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&addr16(self.vip));
        out.extend_from_slice(&self.vip_port.to_be_bytes());
        out.extend_from_slice(&self.client_port.to_be_bytes());
        out.extend_from_slice(&addr16(self.client));
        out.extend_from_slice(&addr16(self.backend));
    }

    fn parse(b: &[u8]) -> Result<Self, WireError> {
        if b.len() != RECORD_LEN {
            return Err(WireError::Length);
        }
        let v4 = match b[1] {
            4 => true,
            6 => false,
            _ => return Err(WireError::Record),
        };
        let vip = addr_of(&b[4..20], v4).ok_or(WireError::Record)?;
        let client = addr_of(&b[24..40], v4).ok_or(WireError::Record)?;
        // The backend's family may differ from the VIP's (IPv6 VIP over
        // IPv4 backends is not a mode lb has, but the record allows it).
        let backend_bytes: [u8; 16] = b[40..56].try_into().map_err(|_| WireError::Record)?;
        let backend6 = std::net::Ipv6Addr::from(backend_bytes);
        let backend = backend6
            .to_ipv4_mapped()
            .map_or(IpAddr::V6(backend6), IpAddr::V4);
        Ok(Self {
            proto: b[0],
            vip,
            vip_port: u16::from_be_bytes([b[20], b[21]]),
            client,
            client_port: u16::from_be_bytes([b[22], b[23]]),
            backend,
        })
    }
}

fn socket_of(bytes: &[u8], port: &[u8], v4: bool) -> Result<std::net::SocketAddr, WireError> {
    let addr = addr_of(bytes, v4).ok_or(WireError::Record)?;
    let port = u16::from_be_bytes(port.try_into().map_err(|_| WireError::Record)?);
    Ok(std::net::SocketAddr::new(addr, port))
}

fn emit_nat(r: &NatRecord, out: &mut Vec<u8>) {
    out.push(r.proto);
    out.push(if r.vip.is_ipv4() { 4 } else { 6 });
    out.push(u8::from(r.fullnat));
    out.push(r.tcp.0);
    out.push(r.tcp.1);
    out.push(r.client_arm);
    out.extend_from_slice(&[0; 2]);
    out.extend_from_slice(&addr16(r.vip.ip()));
    out.extend_from_slice(&r.vip.port().to_be_bytes());
    out.extend_from_slice(&r.client.port().to_be_bytes());
    out.extend_from_slice(&addr16(r.client.ip()));
    out.extend_from_slice(&addr16(r.backend.ip()));
    out.extend_from_slice(&r.backend.port().to_be_bytes());
    out.extend_from_slice(&r.source.port().to_be_bytes());
    out.extend_from_slice(&addr16(r.source.ip()));
    out.extend_from_slice(&r.client_mac);
    out.extend_from_slice(&[0; 2]);
}

fn parse_nat(b: &[u8]) -> Result<NatRecord, WireError> {
    if b.len() != NAT_RECORD_LEN {
        return Err(WireError::Length);
    }
    let v4 = match b[1] {
        4 => true,
        6 => false,
        _ => return Err(WireError::Record),
    };
    if b[2] > 1 || b[5] > 1 {
        return Err(WireError::Record);
    }
    Ok(NatRecord {
        proto: b[0],
        fullnat: b[2] == 1,
        tcp: (b[3], b[4]),
        vip: socket_of(&b[8..24], &b[24..26], v4)?,
        client: socket_of(&b[28..44], &b[26..28], v4)?,
        backend: socket_of(&b[44..60], &b[60..62], v4)?,
        source: socket_of(&b[64..80], &b[62..64], v4)?,
        client_mac: b[80..86].try_into().map_err(|_| WireError::Record)?,
        client_arm: b[5],
    })
}

impl Datagram {
    /// The datagram's bytes, tag included. At most [`MAX_RECORDS`] flows.
    ///
    /// # Panics
    /// With more than [`MAX_RECORDS`] flows (a caller's bug).
    #[must_use]
    pub fn emit(&self, secret: &[u8]) -> Vec<u8> {
        assert!(self.flows.len() <= MAX_RECORDS, "too many records");
        assert!(self.nat.len() <= MAX_NAT_RECORDS, "too many NAT records");
        let mut out = Vec::with_capacity(MAX_DATAGRAM);
        out.extend_from_slice(&MAGIC);
        out.push(VERSION);
        out.push(self.kind.code());
        let count = u16::try_from(self.flows.len() + self.nat.len()).expect("bounded above");
        out.extend_from_slice(&count.to_be_bytes());
        out.extend_from_slice(&self.sender.to_be_bytes());
        out.extend_from_slice(&self.sequence.to_be_bytes());
        out.extend_from_slice(&self.sent_ns.to_be_bytes());
        match self.kind {
            Kind::Flows | Kind::BulkFlows => {
                for f in &self.flows {
                    f.emit(&mut out);
                }
            }
            Kind::NatFlows | Kind::BulkNatFlows => {
                for r in &self.nat {
                    emit_nat(r, &mut out);
                }
            }
            Kind::BulkEnd => out.extend_from_slice(&self.total.to_be_bytes()),
            Kind::BulkRequest => {}
        }
        let mut m = mac(secret);
        m.update(&out);
        out.extend_from_slice(&m.finalize().into_bytes());
        out
    }

    /// Parse and authenticate `bytes`. The tag is checked before anything
    /// else is believed.
    ///
    /// # Errors
    /// [`WireError`].
    ///
    /// # Panics
    /// Never: header fields are read at fixed offsets of a body checked to
    /// be at least a header long.
    pub fn parse(bytes: &[u8], secret: &[u8]) -> Result<Self, WireError> {
        if bytes.len() < HEADER_LEN + TAG_LEN {
            return Err(WireError::Length);
        }
        if bytes[..4] != MAGIC || bytes[4] != VERSION {
            return Err(WireError::Foreign);
        }
        let (body, tag) = bytes.split_at(bytes.len() - TAG_LEN);
        let mut m = mac(secret);
        m.update(body);
        m.verify_slice(tag).map_err(|_| WireError::Auth)?;
        let kind = Kind::from_code(body[5]).ok_or(WireError::Kind)?;
        let count = usize::from(u16::from_be_bytes([body[6], body[7]]));
        let word = |at: usize| u32::from_be_bytes(body[at..at + 4].try_into().expect("4 bytes"));
        let sender = word(8);
        let sequence = word(12);
        let sent_ns = u64::from_be_bytes(body[16..24].try_into().expect("8 bytes"));
        let payload = &body[HEADER_LEN..];
        let mut d = Self {
            kind,
            sender,
            sequence,
            sent_ns,
            flows: Vec::new(),
            nat: Vec::new(),
            total: 0,
        };
        match kind {
            Kind::Flows | Kind::BulkFlows => {
                if payload.len() != count * RECORD_LEN {
                    return Err(WireError::Length);
                }
                d.flows = payload
                    .chunks_exact(RECORD_LEN)
                    .map(FlowRecord::parse)
                    .collect::<Result<_, _>>()?;
            }
            Kind::NatFlows | Kind::BulkNatFlows => {
                if payload.len() != count * NAT_RECORD_LEN {
                    return Err(WireError::Length);
                }
                d.nat = payload
                    .chunks_exact(NAT_RECORD_LEN)
                    .map(parse_nat)
                    .collect::<Result<_, _>>()?;
            }
            Kind::BulkEnd => {
                let total: [u8; 8] = payload.try_into().map_err(|_| WireError::Length)?;
                d.total = u64::from_be_bytes(total);
            }
            Kind::BulkRequest => {
                if !payload.is_empty() {
                    return Err(WireError::Length);
                }
            }
        }
        Ok(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"correct horse battery staple";

    fn record(i: u16) -> FlowRecord {
        FlowRecord {
            proto: 6,
            vip: "198.18.0.100".parse().unwrap(),
            vip_port: 80,
            client: "198.18.0.1".parse().unwrap(),
            client_port: 40000 + i,
            backend: "198.18.0.11".parse().unwrap(),
        }
    }

    fn flows(n: u16) -> Datagram {
        Datagram {
            kind: Kind::Flows,
            sender: 0xdead_beef,
            sequence: 7,
            sent_ns: 1_700_000_000_000_000_000,
            flows: (0..n).map(record).collect(),
            nat: Vec::new(),
            total: 0,
        }
    }

    fn nat_record(i: u16, v6: bool) -> NatRecord {
        let sa = |s: &str| s.parse().unwrap();
        if v6 {
            NatRecord {
                proto: 17,
                fullnat: false,
                tcp: (0, 0),
                vip: sa("[2001:db8::100]:53"),
                client: sa(&format!("[2001:db8::1]:{}", 5000 + i)),
                backend: sa("[2001:db8:2::11]:5353"),
                source: sa(&format!("[2001:db8::1]:{}", 5000 + i)),
                client_mac: [2, 0, 0, 0, 0, 1],
                client_arm: 1,
            }
        } else {
            NatRecord {
                proto: 6,
                fullnat: true,
                tcp: (0x12, 0x12),
                vip: sa("198.18.0.100:80"),
                client: sa(&format!("198.18.0.1:{}", 40000 + i)),
                backend: sa("198.18.2.11:8080"),
                source: sa(&format!("198.18.2.1:{}", 1024 + i)),
                client_mac: [2, 0, 0, 0, 0, 1],
                client_arm: 0,
            }
        }
    }

    #[test]
    fn nat_records_round_trip_and_fill_one_frame() {
        let d = Datagram {
            kind: Kind::NatFlows,
            nat: (0..u16::try_from(MAX_NAT_RECORDS).unwrap())
                .map(|i| nat_record(i, i % 2 == 1))
                .collect(),
            ..flows(0)
        };
        let bytes = d.emit(SECRET);
        assert!(bytes.len() <= MAX_DATAGRAM, "{} bytes", bytes.len());
        assert_eq!(MAX_NAT_RECORDS, 16);
        assert_eq!(Datagram::parse(&bytes, SECRET).unwrap(), d);
        let bulk = Datagram {
            kind: Kind::BulkNatFlows,
            ..d
        };
        assert_eq!(Datagram::parse(&bulk.emit(SECRET), SECRET).unwrap(), bulk);
        // A bad family or flags byte is refused, authenticated or not.
        let mut body = bulk.emit(SECRET);
        body.truncate(body.len() - TAG_LEN);
        body[HEADER_LEN + 2] = 7;
        let mut m = mac(SECRET);
        m.update(&body);
        body.extend_from_slice(&m.finalize().into_bytes());
        assert_eq!(Datagram::parse(&body, SECRET), Err(WireError::Record));
    }

    #[test]
    fn round_trips_every_kind_within_one_frame() {
        let full = flows(u16::try_from(MAX_RECORDS).unwrap());
        let bytes = full.emit(SECRET);
        assert!(bytes.len() <= MAX_DATAGRAM, "{} bytes", bytes.len());
        assert_eq!(Datagram::parse(&bytes, SECRET).unwrap(), full);
        let v6 = Datagram {
            flows: vec![FlowRecord {
                proto: 17,
                vip: "2001:db8::100".parse().unwrap(),
                vip_port: 53,
                client: "2001:db8::1".parse().unwrap(),
                client_port: 5353,
                backend: "2001:db8::11".parse().unwrap(),
            }],
            kind: Kind::BulkFlows,
            ..flows(0)
        };
        assert_eq!(Datagram::parse(&v6.emit(SECRET), SECRET).unwrap(), v6);
        for kind in [Kind::BulkRequest, Kind::BulkEnd] {
            let d = Datagram {
                kind,
                total: if kind == Kind::BulkEnd { 123_456 } else { 0 },
                ..flows(0)
            };
            assert_eq!(Datagram::parse(&d.emit(SECRET), SECRET).unwrap(), d);
        }
    }

    #[test]
    fn refuses_what_it_cannot_trust() {
        let bytes = flows(3).emit(SECRET);
        assert_eq!(
            Datagram::parse(&bytes, b"another secret"),
            Err(WireError::Auth)
        );
        // Any flipped bit fails the tag.
        for at in [0, 5, 9, 30, bytes.len() - 1] {
            let mut bad = bytes.clone();
            bad[at] ^= 1;
            assert!(Datagram::parse(&bad, SECRET).is_err(), "bit flip at {at}");
        }
        // Every truncation is refused, never a panic.
        for len in 0..bytes.len() {
            assert!(
                Datagram::parse(&bytes[..len], SECRET).is_err(),
                "length {len}"
            );
        }
        assert_eq!(
            Datagram::parse(&[b'G'; HEADER_LEN + TAG_LEN + 8], SECRET),
            Err(WireError::Foreign)
        );
    }

    /// A well-authenticated datagram whose count lies, or whose record is
    /// malformed, is refused (a peer's bug must not write garbage).
    #[test]
    fn refuses_inconsistent_contents_even_when_signed() {
        let sign = |mut body: Vec<u8>| {
            let mut m = mac(SECRET);
            m.update(&body);
            body.extend_from_slice(&m.finalize().into_bytes());
            body
        };
        let good = flows(2).emit(SECRET);
        let mut body = good[..good.len() - TAG_LEN].to_vec();
        body[7] = 3; // claims 3 records, carries 2
        assert_eq!(Datagram::parse(&sign(body), SECRET), Err(WireError::Length));
        let mut body = good[..good.len() - TAG_LEN].to_vec();
        body[HEADER_LEN + 1] = 5; // family 5
        assert_eq!(Datagram::parse(&sign(body), SECRET), Err(WireError::Record));
        let mut body = good[..good.len() - TAG_LEN].to_vec();
        body[5] = 9;
        assert_eq!(Datagram::parse(&sign(body), SECRET), Err(WireError::Kind));
    }
}
