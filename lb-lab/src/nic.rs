//! Frame templates for `nic_inject` (`lb-lab/ebpf`): what `lb-nicbench`
//! and `lbgen` write into map `nic_template` before injecting frames with
//! `BPF_PROG_TEST_RUN` live frames.

/// Bytes of a short frame and of a long one (`NIC_FRAME`,
/// `NIC_FRAME_LONG` of the program).
pub const SHORT: usize = 64;
/// See [`SHORT`].
pub const LONG: usize = 96;

/// The value of `nic_template`: flows, family, length, checksum offset
/// (four native-endian `u32`), then the frame padded to [`LONG`].
pub type Template = [u8; 16 + LONG];

/// Offset of the TCP or UDP checksum of `frame` (untagged Ethernet, IPv4
/// or IPv6 without extension headers); `None` for an IPv4 UDP datagram
/// without a checksum, or another protocol.
#[must_use]
pub fn l4_checksum_offset(frame: &[u8]) -> Option<usize> {
    let ether = u16::from_be_bytes([*frame.get(12)?, *frame.get(13)?]);
    let (l4, proto) = match ether {
        0x0800 => (14 + usize::from(frame.get(14)? & 0x0f) * 4, *frame.get(23)?),
        0x86dd => (54, *frame.get(20)?),
        _ => return None,
    };
    let at = match proto {
        6 => l4 + 16,
        17 => l4 + 6,
        _ => return None,
    };
    let csum = u16::from_be_bytes([*frame.get(at)?, *frame.get(at + 1)?]);
    (ether == 0x86dd || proto == 6 || csum != 0).then_some(at)
}

/// The template of `frame` spread over `flows` (`u32::MAX`: a new flow
/// every frame): `nic_inject` varies the client port and the low 16 bits
/// of the client address, and keeps the IPv4 header checksum and the
/// TCP/UDP checksum right.
///
/// # Errors
/// The frame is not IPv4 or IPv6, or is longer than [`LONG`] bytes, or
/// its TCP/UDP checksum lies beyond it.
pub fn template(frame: &[u8], flows: u32) -> Result<Template, String> {
    let family: u32 = match frame.get(12..14) {
        Some([0x08, 0x00]) => 4,
        Some([0x86, 0xdd]) => 6,
        _ => return Err("not an IPv4 or IPv6 frame".into()),
    };
    let len = match frame.len() {
        n if n <= SHORT => SHORT,
        n if n <= LONG => LONG,
        n => return Err(format!("{n} bytes: at most {LONG}")),
    };
    let csum = l4_checksum_offset(frame).unwrap_or(0);
    let mut t = [0u8; 16 + LONG];
    t[..4].copy_from_slice(&flows.to_ne_bytes());
    t[4..8].copy_from_slice(&family.to_ne_bytes());
    t[8..12].copy_from_slice(&u32::try_from(len).unwrap_or(0).to_ne_bytes());
    t[12..16].copy_from_slice(&u32::try_from(csum).unwrap_or(0).to_ne_bytes());
    t[16..16 + frame.len()].copy_from_slice(frame);
    Ok(t)
}

/// The MAC address of interface `iface` in the calling process's network
/// namespace (`ip -br link show`: netlink follows the namespace, where
/// `/sys/class/net` shows the one sysfs was mounted in).
///
/// # Errors
/// `ip` fails or prints no MAC address.
pub fn iface_mac(iface: &str) -> Result<[u8; 6], String> {
    let out = std::process::Command::new("ip")
        .args(["-br", "link", "show", iface])
        .output()
        .map_err(|e| format!("ip: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let word = text.split_whitespace().nth(2).ok_or_else(|| {
        format!(
            "no interface {iface}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )
    })?;
    parse_mac(word)
}

/// `aa:bb:cc:dd:ee:ff`.
///
/// # Errors
/// Not six hex bytes separated by colons.
pub fn parse_mac(s: &str) -> Result<[u8; 6], String> {
    let bad = || format!("{s:?} is not a MAC address (aa:bb:cc:dd:ee:ff)");
    let parts: Vec<&str> = s.split(':').collect();
    if parts.len() != 6 {
        return Err(bad());
    }
    let mut mac = [0u8; 6];
    for (m, p) in mac.iter_mut().zip(parts) {
        *m = u8::from_str_radix(p, 16).map_err(|_| bad())?;
    }
    Ok(mac)
}

/// Packets interface `iface` dropped on transmit so far (0 if the
/// calling thread's namespace has no such interface).
#[must_use]
pub fn tx_dropped(iface: &str) -> u64 {
    tx_dropped_of(iface).unwrap_or(0)
}

/// [`tx_dropped`], `None` without such an interface. Read from
/// `/proc/thread-self/net/dev`, the calling *thread's* namespace:
/// `/proc/net` is `/proc/self/net`, the main thread's, so a thread that
/// entered a namespace ([`crate::netns::Netns::run`]) read the root
/// namespace's interface of that name there (and the NIC-like bench's
/// stack paths showed 0% refused where ~5% were dropped).
#[must_use]
pub fn tx_dropped_of(iface: &str) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/thread-self/net/dev").ok()?;
    text.lines().find_map(|l| {
        let (name, rest) = l.split_once(':')?;
        // receive: bytes packets errs drop fifo frame compressed
        // multicast; transmit: bytes packets errs drop ...
        (name.trim() == iface).then(|| rest.split_whitespace().nth(11)?.parse().ok())?
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testpkt::{FrameSpec, L4};

    #[test]
    fn checksum_offsets_and_templates() {
        let v4 = |l4| FrameSpec::new([198, 18, 0, 1].into(), [198, 18, 0, 2].into(), l4).build();
        let v6 = |l4| {
            FrameSpec::new(
                "2001:db8::1".parse().unwrap(),
                "2001:db8::2".parse().unwrap(),
                l4,
            )
            .build()
        };
        let udp = L4::Udp { src: 1, dst: 2 };
        let tcp = L4::Tcp { src: 1, dst: 2 };
        assert_eq!(l4_checksum_offset(&v4(udp)), Some(40));
        assert_eq!(l4_checksum_offset(&v4(tcp)), Some(50));
        assert_eq!(l4_checksum_offset(&v6(udp)), Some(60));
        assert_eq!(l4_checksum_offset(&v6(tcp)), Some(70));
        let mut no_csum = v4(udp);
        no_csum[40] = 0;
        no_csum[41] = 0;
        assert_eq!(l4_checksum_offset(&no_csum), None);
        let t = template(&v6(tcp), 7).unwrap();
        assert_eq!(u32::from_ne_bytes(t[..4].try_into().unwrap()), 7);
        assert_eq!(u32::from_ne_bytes(t[4..8].try_into().unwrap()), 6);
        assert_eq!(
            u32::from_ne_bytes(t[8..12].try_into().unwrap()),
            LONG as u32
        );
        assert_eq!(u32::from_ne_bytes(t[12..16].try_into().unwrap()), 70);
        assert!(template(&[0u8; 200], 1).is_err());
        assert_eq!(parse_mac("02:00:0a:ff:00:01"), Ok([2, 0, 10, 255, 0, 1]));
        assert!(parse_mac("02:00:0a:ff:00").is_err());
        assert!(tx_dropped("lo") < u64::MAX);
    }

    /// A thread inside a namespace reads that namespace's interfaces, not
    /// the process's (needs root, as every namespace test).
    #[test]
    fn tx_dropped_reads_the_calling_threads_namespace() {
        let ns = crate::netns::Netns::create(&format!("nic-txd-{}", std::process::id())).unwrap();
        ns.ip(&[
            "link", "add", "txdtest0", "type", "veth", "peer", "name", "txdtest1",
        ])
        .unwrap();
        assert_eq!(ns.run(|| tx_dropped_of("txdtest0")).unwrap(), Some(0));
        assert_eq!(tx_dropped_of("txdtest0"), None);
        assert!(ns.run(|| tx_dropped_of("lo")).unwrap().is_some());
    }
}
