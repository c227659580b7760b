//! The `dns` check (keepalived's `DNS_CHECK`): one query over UDP, with
//! recursion desired; the backend passes when an answer with the query's
//! id comes back with no error (RCODE 0). Answers with another id, and
//! datagrams that are not answers, are ignored while the check's timeout
//! runs (as keepalived does); an error RCODE fails at once.
//!
//! The message is built and read here: a query is a 12-byte header and
//! one question, and only the answer's header is read, every length
//! checked.

use std::net::{IpAddr, SocketAddr};

use super::CheckError;

/// Record types a check may ask for (keepalived's list).
pub const TYPES: [(&str, u16); 7] = [
    ("A", 1),
    ("NS", 2),
    ("CNAME", 5),
    ("SOA", 6),
    ("MX", 15),
    ("TXT", 16),
    ("AAAA", 28),
];

/// The code of record type `name` (`"SOA"`, case-insensitive).
#[must_use]
pub fn type_code(name: &str) -> Option<u16> {
    TYPES
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|&(_, c)| c)
}

/// What a `dns` check asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsCheck {
    /// The name queried (`.` for the root).
    pub name: String,
    /// The record type's code ([`type_code`]).
    pub qtype: u16,
}

/// The wire form of `name` (labels, then the root's zero).
///
/// # Errors
/// A message when a label is empty or longer than 63 bytes, or the name
/// longer than 255.
pub fn encode_name(name: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(name.len() + 2);
    let trimmed = name.strip_suffix('.').unwrap_or(name);
    if !trimmed.is_empty() {
        for label in trimmed.split('.') {
            if label.is_empty() {
                return Err(format!("{name:?} has an empty label"));
            }
            if label.len() > 63 {
                return Err(format!("{name:?} has a label longer than 63 bytes"));
            }
            out.push(label.len() as u8);
            out.extend_from_slice(label.as_bytes());
        }
    }
    out.push(0);
    if out.len() > 255 {
        return Err(format!("{name:?} is longer than 255 bytes"));
    }
    Ok(out)
}

/// A query for `check` with `id`.
///
/// # Errors
/// The name does not encode ([`encode_name`]).
pub fn query(check: &DnsCheck, id: u16) -> Result<Vec<u8>, String> {
    let mut q = Vec::with_capacity(32);
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&0x0100u16.to_be_bytes()); // RD
    q.extend_from_slice(&1u16.to_be_bytes()); // QDCOUNT
    q.extend_from_slice(&[0; 6]); // AN, NS, AR counts
    q.extend_from_slice(&encode_name(&check.name)?);
    q.extend_from_slice(&check.qtype.to_be_bytes());
    q.extend_from_slice(&1u16.to_be_bytes()); // IN
    Ok(q)
}

/// What a received datagram means for the query `id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// Not the answer (too short, another id, a query): keep waiting.
    Ignore,
    /// The answer, without error.
    Ok,
    /// The answer, with this RCODE.
    Error(u8),
}

/// Read the header of `datagram` as an answer to query `id`.
#[must_use]
pub fn judge(id: u16, datagram: &[u8]) -> Reply {
    let Some(header) = datagram.get(..12) else {
        return Reply::Ignore;
    };
    let got = u16::from_be_bytes([header[0], header[1]]);
    let flags = u16::from_be_bytes([header[2], header[3]]);
    if got != id || flags & 0x8000 == 0 {
        return Reply::Ignore;
    }
    match (flags & 0x000f) as u8 {
        0 => Reply::Ok,
        rcode => Reply::Error(rcode),
    }
}

/// Query `addr:port` (from `bind` if set) until the answer arrives; the
/// caller's timeout ends the wait.
///
/// # Errors
/// The socket fails, or the answer has an error RCODE.
pub async fn probe(
    check: &DnsCheck,
    bind: Option<IpAddr>,
    addr: IpAddr,
    port: u16,
) -> Result<(), CheckError> {
    let to = SocketAddr::new(addr, port);
    let io = |source| CheckError::Dns { addr: to, source };
    let local = SocketAddr::new(
        bind.unwrap_or(match addr {
            IpAddr::V4(_) => IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
            IpAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
        }),
        0,
    );
    let socket = tokio::net::UdpSocket::bind(local).await.map_err(io)?;
    socket.connect(to).await.map_err(io)?;
    let id = super::random_u64() as u16;
    // Validated when the configuration loaded.
    let q = query(check, id).map_err(|reason| CheckError::BadRequest {
        path: check.name.clone(),
        reason,
    })?;
    socket.send(&q).await.map_err(io)?;
    let mut buf = [0u8; 512];
    loop {
        let n = socket.recv(&mut buf).await.map_err(io)?;
        match judge(id, &buf[..n]) {
            Reply::Ignore => {}
            Reply::Ok => return Ok(()),
            Reply::Error(rcode) => return Err(CheckError::DnsRcode { rcode }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_encode_as_labels() {
        assert_eq!(encode_name(".").unwrap(), [0]);
        assert_eq!(encode_name("").unwrap(), [0]);
        assert_eq!(
            encode_name("lb.example.").unwrap(),
            b"\x02lb\x07example\x00"
        );
        assert_eq!(encode_name("lb.example").unwrap(), b"\x02lb\x07example\x00");
        assert!(encode_name("a..b").is_err());
        assert!(encode_name(&"a".repeat(64)).is_err());
        let long = vec!["abcdefghi"; 30].join(".");
        assert!(encode_name(&long).unwrap_err().contains("255"));
    }

    #[test]
    fn a_query_is_a_header_and_one_question() {
        let q = query(
            &DnsCheck {
                name: "lb.example".into(),
                qtype: type_code("soa").unwrap(),
            },
            0xbeef,
        )
        .unwrap();
        assert_eq!(&q[..12], [0xbe, 0xef, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&q[12..24], b"\x02lb\x07example\x00");
        assert_eq!(&q[24..], [0, 6, 0, 1]);
        assert_eq!(type_code("AAAA"), Some(28));
        assert_eq!(type_code("PTR"), None);
    }

    #[test]
    fn answers_are_matched_by_id_and_judged_by_rcode() {
        let answer = |id: u16, flags: u16| {
            let mut a = id.to_be_bytes().to_vec();
            a.extend_from_slice(&flags.to_be_bytes());
            a.extend_from_slice(&[0; 8]);
            a
        };
        assert_eq!(judge(7, &answer(7, 0x8180)), Reply::Ok);
        assert_eq!(judge(7, &answer(7, 0x8183)), Reply::Error(3), "NXDOMAIN");
        assert_eq!(judge(7, &answer(8, 0x8180)), Reply::Ignore, "another id");
        assert_eq!(judge(7, &answer(7, 0x0100)), Reply::Ignore, "a query");
        assert_eq!(judge(7, &answer(7, 0x8180)[..11]), Reply::Ignore, "short");
        assert_eq!(judge(7, &[]), Reply::Ignore);
    }

    #[tokio::test]
    async fn probes_a_local_server() {
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        let server = tokio::net::UdpSocket::bind((lo, 0)).await.unwrap();
        let port = server.local_addr().unwrap().port();
        // Answers first with a stray id, then NOERROR; then REFUSED.
        let task = tokio::spawn(async move {
            for rcode in [0u8, 5] {
                let mut buf = [0u8; 512];
                let (n, from) = server.recv_from(&mut buf).await.unwrap();
                assert!(n > 12);
                let mut stray = buf[..n].to_vec();
                stray[0] ^= 0xff;
                stray[2] |= 0x80;
                server.send_to(&stray, from).await.unwrap();
                let mut reply = buf[..n].to_vec();
                reply[2] |= 0x80;
                reply[3] = 0x80 | rcode;
                server.send_to(&reply, from).await.unwrap();
            }
        });
        let check = DnsCheck {
            name: ".".into(),
            qtype: 6,
        };
        probe(&check, Some(lo), lo, port).await.unwrap();
        assert_eq!(
            probe(&check, None, lo, port).await.unwrap_err().to_string(),
            "DNS answer with RCODE 5"
        );
        task.await.unwrap();
    }
}
