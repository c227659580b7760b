//! Frame builder for `BPF_PROG_TEST_RUN` fixtures and benchmarks.
//!
//! Builds Ethernet frames (optionally 802.1Q-tagged) carrying IPv4 (with
//! optional options) or IPv6 and TCP or UDP, with every length and checksum
//! filled in, using `pnet_packet`. Tests then damage copies of these frames
//! to get truncated and inconsistent input.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use pnet_packet::{
    ethernet::{EtherType, EtherTypes, MutableEthernetPacket},
    ip::{IpNextHeaderProtocol, IpNextHeaderProtocols},
    ipv4::{self, MutableIpv4Packet},
    ipv6::MutableIpv6Packet,
    tcp::{self, MutableTcpPacket, TcpFlags},
    udp::{self, MutableUdpPacket},
};

/// Source MAC of built frames.
pub const CLIENT_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x01];
/// Destination MAC of built frames.
pub const LB_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x02];

/// The transport header to put in a frame.
#[derive(Clone, Copy, Debug)]
pub enum L4 {
    /// TCP from `src` to `dst` port (flags: `FrameSpec::tcp_flags`).
    Tcp {
        /// Source port.
        src: u16,
        /// Destination port.
        dst: u16,
    },
    /// UDP datagram.
    Udp {
        /// Source port.
        src: u16,
        /// Destination port.
        dst: u16,
    },
    /// Raw bytes under another IP protocol number (e.g. 1 for ICMP).
    Other(u8),
}

/// A frame to build. `Default` is an untagged frame without IPv4 options.
#[derive(Clone, Debug)]
pub struct FrameSpec {
    /// Source address (its family decides IPv4 vs IPv6).
    pub src: IpAddr,
    /// Destination address; must have the same family as `src`.
    pub dst: IpAddr,
    /// Transport header.
    pub l4: L4,
    /// Application payload.
    pub payload: Vec<u8>,
    /// 802.1Q VLAN id to tag the frame with.
    pub vlan: Option<u16>,
    /// IPv4 options, in whole 4-byte words.
    pub ipv4_options: Vec<u8>,
    /// IPv4 TTL / IPv6 hop limit.
    pub ttl: u8,
    /// TCP flags (`TcpFlags` bits); default SYN.
    pub tcp_flags: u8,
}

impl FrameSpec {
    /// A frame `src:sport -> dst:dport` over `l4`, default everything else.
    #[must_use]
    pub fn new(src: IpAddr, dst: IpAddr, l4: L4) -> Self {
        Self {
            src,
            dst,
            l4,
            payload: b"lb test payload".to_vec(),
            vlan: None,
            ipv4_options: Vec::new(),
            ttl: 64,
            tcp_flags: TcpFlags::SYN,
        }
    }

    /// Build the frame bytes.
    ///
    /// # Panics
    /// If `src` and `dst` differ in family or options are not whole words:
    /// both are bugs in the caller.
    #[must_use]
    pub fn build(&self) -> Vec<u8> {
        let l4 = self.l4_bytes();
        let (ether_type, l3) = match (self.src, self.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => (EtherTypes::Ipv4, self.ipv4(s, d, &l4)),
            (IpAddr::V6(s), IpAddr::V6(d)) => (EtherTypes::Ipv6, self.ipv6(s, d, &l4)),
            _ => panic!("FrameSpec: src and dst families differ"),
        };
        ethernet(ether_type, self.vlan, &l3)
    }

    fn next_header(&self) -> IpNextHeaderProtocol {
        match self.l4 {
            L4::Tcp { .. } => IpNextHeaderProtocols::Tcp,
            L4::Udp { .. } => IpNextHeaderProtocols::Udp,
            L4::Other(p) => IpNextHeaderProtocol(p),
        }
    }

    /// Transport header + payload with a zero checksum (filled in per family).
    fn l4_bytes(&self) -> Vec<u8> {
        match self.l4 {
            L4::Tcp { src, dst } => {
                let mut buf = vec![0u8; 20 + self.payload.len()];
                let mut tcp = MutableTcpPacket::new(&mut buf).expect("sized above");
                tcp.set_source(src);
                tcp.set_destination(dst);
                tcp.set_sequence(0x1000);
                tcp.set_data_offset(5);
                tcp.set_flags(self.tcp_flags);
                tcp.set_window(65_535);
                tcp.set_payload(&self.payload);
                buf
            }
            L4::Udp { src, dst } => {
                let mut buf = vec![0u8; 8 + self.payload.len()];
                let len = u16::try_from(buf.len()).expect("test frames are small");
                let mut udp = MutableUdpPacket::new(&mut buf).expect("sized above");
                udp.set_source(src);
                udp.set_destination(dst);
                udp.set_length(len);
                udp.set_payload(&self.payload);
                buf
            }
            L4::Other(_) => self.payload.clone(),
        }
    }

    fn ipv4(&self, src: Ipv4Addr, dst: Ipv4Addr, l4: &[u8]) -> Vec<u8> {
        assert!(
            self.ipv4_options.len().is_multiple_of(4),
            "IPv4 options must be whole words"
        );
        let header_len = 20 + self.ipv4_options.len();
        let mut l4 = l4.to_vec();
        match self.l4 {
            L4::Tcp { .. } => {
                let mut tcp = MutableTcpPacket::new(&mut l4).expect("built above");
                let sum = tcp::ipv4_checksum(&tcp.to_immutable(), &src, &dst);
                tcp.set_checksum(sum);
            }
            L4::Udp { .. } => {
                let mut udp = MutableUdpPacket::new(&mut l4).expect("built above");
                let sum = udp::ipv4_checksum(&udp.to_immutable(), &src, &dst);
                udp.set_checksum(sum);
            }
            L4::Other(_) => {}
        }
        let mut buf = vec![0u8; header_len + l4.len()];
        let total = u16::try_from(buf.len()).expect("test frames are small");
        let mut ip = MutableIpv4Packet::new(&mut buf).expect("sized above");
        ip.set_version(4);
        ip.set_header_length(u8::try_from(header_len / 4).expect("options are short"));
        ip.set_total_length(total);
        ip.set_identification(0x4242);
        ip.set_ttl(self.ttl);
        ip.set_next_level_protocol(self.next_header());
        ip.set_source(src);
        ip.set_destination(dst);
        buf[20..header_len].copy_from_slice(&self.ipv4_options);
        buf[header_len..].copy_from_slice(&l4);
        let mut ip = MutableIpv4Packet::new(&mut buf).expect("sized above");
        let sum = ipv4::checksum(&ip.to_immutable());
        ip.set_checksum(sum);
        buf
    }

    fn ipv6(&self, src: Ipv6Addr, dst: Ipv6Addr, l4: &[u8]) -> Vec<u8> {
        let mut l4 = l4.to_vec();
        match self.l4 {
            L4::Tcp { .. } => {
                let mut tcp = MutableTcpPacket::new(&mut l4).expect("built above");
                let sum = tcp::ipv6_checksum(&tcp.to_immutable(), &src, &dst);
                tcp.set_checksum(sum);
            }
            L4::Udp { .. } => {
                let mut udp = MutableUdpPacket::new(&mut l4).expect("built above");
                let sum = udp::ipv6_checksum(&udp.to_immutable(), &src, &dst);
                udp.set_checksum(sum);
            }
            L4::Other(_) => {}
        }
        let mut buf = vec![0u8; 40 + l4.len()];
        let mut ip = MutableIpv6Packet::new(&mut buf).expect("sized above");
        ip.set_version(6);
        ip.set_payload_length(u16::try_from(l4.len()).expect("test frames are small"));
        ip.set_next_header(self.next_header());
        ip.set_hop_limit(self.ttl);
        ip.set_source(src);
        ip.set_destination(dst);
        ip.set_payload(&l4);
        buf
    }
}

/// Ethernet header (+ optional 802.1Q tag) in front of `payload`.
///
/// # Panics
/// Never: the buffer always has room for the Ethernet header.
#[must_use]
pub fn ethernet(ether_type: EtherType, vlan: Option<u16>, payload: &[u8]) -> Vec<u8> {
    let tag = if vlan.is_some() { 4 } else { 0 };
    let mut buf = vec![0u8; 14 + tag + payload.len()];
    buf[..6].copy_from_slice(&LB_MAC);
    buf[6..12].copy_from_slice(&CLIENT_MAC);
    let mut eth = MutableEthernetPacket::new(&mut buf).expect("sized above");
    match vlan {
        Some(vid) => {
            eth.set_ethertype(EtherTypes::Vlan);
            buf[14..16].copy_from_slice(&(vid & 0x0FFF).to_be_bytes());
            buf[16..18].copy_from_slice(&ether_type.0.to_be_bytes());
        }
        None => eth.set_ethertype(ether_type),
    }
    buf[14 + tag..].copy_from_slice(payload);
    buf
}
