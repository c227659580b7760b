//! VRRP advertisement codec: VRRPv3 (RFC 5798, IPv4 and IPv6) and VRRPv2
//! (RFC 3768, IPv4, with keepalived's `auth_type PASS`).
//!
//! Follows smoltcp's `wire` pattern: [`Packet`] is a view over a byte buffer
//! with typed getters and (on `AsMut<[u8]>` buffers) setters, and [`Repr`] is
//! a plain value that [`Repr::parse`]s a checked packet and [`Repr::emit`]s
//! one back.
//!
//! Layout (the IP header is not part of it; the caller strips it and passes
//! the address family and the source/destination addresses it carried):
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |Version| Type  | Virtual Rtr ID|   Priority    | Count IPvX Addr|
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! v3: |(rsvd)|  Max Adver Int (cs) |          Checksum            |
//! v2: | Auth Type   | Adver Int (s)|          Checksum            |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |            Count × IPvX address (4 or 16 bytes each)          |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! v2 only: 8 bytes of authentication data (always present)
//! ```
//!
//! Interop facts (checked against keepalived 2.2.7, see docs/ARCHITECTURE.md):
//! - v2's checksum covers the VRRP message only.
//! - v3's checksum covers a pseudo-header too (RFC 5798 §5.2.8): for IPv4
//!   `src, dst, 0, 112, length`; for IPv6 `src, dst, length (u32), 0, 0, 0, 112`.
//!   keepalived rejects a v3/IPv4 message-only checksum, so [`Repr::emit`]
//!   always writes the pseudo-header form; [`Repr::parse`] accepts either
//!   form for v3/IPv4 (older implementations send message-only).
//! - v2 always carries 8 bytes of authentication data: for `PASS` the
//!   password NUL-padded and cut to its first 8 bytes, for none 8 zero bytes.
//!
//! # Panic contract
//!
//! As in smoltcp: the getters and setters of [`Packet`] may panic when the
//! packet was built with [`Packet::new_unchecked`] over a buffer that
//! [`Packet::check_len`] would reject. [`Packet::new_checked`] followed by
//! [`Repr::parse`] never panics, whatever the input bytes; [`parse`] and
//! [`fuzz_parse`] are that combination. [`Repr::emit`] checks the
//! representation and the buffer first and returns an error instead of
//! panicking. Nothing here allocates on an error path; a successful parse
//! allocates the address list.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

/// IP protocol number of VRRP (both versions).
pub const IP_PROTOCOL: u8 = 112;

/// IPv4 multicast group of VRRP advertisements (224.0.0.18).
pub const MULTICAST_V4: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);

/// IPv6 multicast group of VRRP advertisements (`ff02::12`).
pub const MULTICAST_V6: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x12);

/// TTL / hop limit every advertisement is sent with and must arrive with.
pub const TTL: u8 = 255;

/// Length of the fixed header, before the addresses.
pub const HEADER_LEN: usize = field::ADDRESSES;

/// Length of the VRRPv2 authentication data that follows the addresses.
pub const AUTH_DATA_LEN: usize = 8;

/// Largest VRRPv3 advertisement interval the 12-bit field holds, in centiseconds.
pub const MAX_V3_INTERVAL_CS: u16 = 0x0fff;

/// Errors of parsing or emitting a VRRP advertisement.
///
/// Each variant is a distinct rejection cause so the socket layer can count
/// them separately ([`Error::label`] gives a stable metric label). No variant
/// allocates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The buffer is shorter than the fixed header or the v2 authentication data.
    #[error("VRRP packet truncated: {len} bytes, need {need}")]
    Truncated {
        /// Bytes available.
        len: usize,
        /// Bytes the header fields require.
        need: usize,
    },
    /// The address count does not fit the buffer (on parse) or a `u8` (on emit).
    #[error("VRRP address count {count} does not fit {len} bytes")]
    BadAddressCount {
        /// Addresses declared (or, on emit, listed).
        count: usize,
        /// Bytes available.
        len: usize,
    },
    /// The version nibble is neither 2 nor 3.
    #[error("unsupported VRRP version {version}")]
    BadVersion {
        /// The version nibble received.
        version: u8,
    },
    /// VRRPv2 is IPv4 only (RFC 3768).
    #[error("VRRPv2 over IPv6")]
    V2OverIpv6,
    /// The type nibble is not 1 (advertisement).
    #[error("unsupported VRRP message type {msg_type}")]
    BadType {
        /// The type nibble received.
        msg_type: u8,
    },
    /// The checksum does not verify (in any accepted form).
    #[error("bad VRRP checksum {checksum:#06x}")]
    BadChecksum {
        /// The checksum field received.
        checksum: u16,
    },
    /// VRRPv2 authentication type other than 0 (none) or 1 (simple text);
    /// type 2 (IP AH) is not supported, as in keepalived 2.x.
    #[error("unsupported VRRPv2 authentication type {auth_type}")]
    BadAuthType {
        /// The authentication type received.
        auth_type: u8,
    },
    /// Advertisement interval 0, or (on emit) larger than the field holds.
    #[error("bad VRRP advertisement interval {interval}")]
    BadInterval {
        /// The interval field (v2: seconds, v3: centiseconds).
        interval: u16,
    },
    /// The source/destination addresses or a listed address are not of the
    /// packet's address family.
    #[error("address family mismatch in VRRP packet")]
    AddressFamilyMismatch,
}

impl Error {
    /// A short, stable label for the cause (for counters and metrics).
    #[must_use]
    pub fn label(&self) -> &'static str {
        match self {
            Error::Truncated { .. } => "truncated",
            Error::BadAddressCount { .. } => "bad_address_count",
            Error::BadVersion { .. } => "bad_version",
            Error::V2OverIpv6 => "v2_over_ipv6",
            Error::BadType { .. } => "bad_type",
            Error::BadChecksum { .. } => "bad_checksum",
            Error::BadAuthType { .. } => "bad_auth_type",
            Error::BadInterval { .. } => "bad_interval",
            Error::AddressFamilyMismatch => "address_family_mismatch",
        }
    }
}

/// Address family of the IP packet that carried the VRRP message; it decides
/// the address length (4 or 16) and the checksum pseudo-header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// IPv4: 4-byte addresses.
    Ipv4,
    /// IPv6: 16-byte addresses.
    Ipv6,
}

impl Family {
    /// Length of one address of this family.
    #[must_use]
    pub const fn addr_len(self) -> usize {
        match self {
            Family::Ipv4 => 4,
            Family::Ipv6 => 16,
        }
    }

    /// The family of `addr`.
    #[must_use]
    pub const fn of(addr: &IpAddr) -> Family {
        match addr {
            IpAddr::V4(_) => Family::Ipv4,
            IpAddr::V6(_) => Family::Ipv6,
        }
    }
}

/// The VRRP version nibble. Total: unknown values are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Version {
    /// VRRPv2, RFC 3768.
    V2,
    /// VRRPv3, RFC 5798.
    V3,
    /// Any other value.
    Unknown(u8),
}

impl From<u8> for Version {
    fn from(value: u8) -> Self {
        match value {
            2 => Version::V2,
            3 => Version::V3,
            other => Version::Unknown(other),
        }
    }
}

impl From<Version> for u8 {
    fn from(value: Version) -> Self {
        match value {
            Version::V2 => 2,
            Version::V3 => 3,
            Version::Unknown(other) => other,
        }
    }
}

/// The VRRP message type nibble. Total: unknown values are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageType {
    /// 1: advertisement, the only type either RFC defines.
    Advertisement,
    /// Any other value.
    Unknown(u8),
}

impl From<u8> for MessageType {
    fn from(value: u8) -> Self {
        match value {
            1 => MessageType::Advertisement,
            other => MessageType::Unknown(other),
        }
    }
}

impl From<MessageType> for u8 {
    fn from(value: MessageType) -> Self {
        match value {
            MessageType::Advertisement => 1,
            MessageType::Unknown(other) => other,
        }
    }
}

/// The VRRPv2 authentication type. Total: unknown values (including 2, IP
/// AH, which keepalived 2.x no longer supports) are kept and rejected by
/// [`Repr::parse`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuthType {
    /// 0: no authentication.
    None,
    /// 1: simple text password (keepalived `auth_type PASS`).
    SimpleText,
    /// Any other value.
    Unknown(u8),
}

impl From<u8> for AuthType {
    fn from(value: u8) -> Self {
        match value {
            0 => AuthType::None,
            1 => AuthType::SimpleText,
            other => AuthType::Unknown(other),
        }
    }
}

impl From<AuthType> for u8 {
    fn from(value: AuthType) -> Self {
        match value {
            AuthType::None => 0,
            AuthType::SimpleText => 1,
            AuthType::Unknown(other) => other,
        }
    }
}

/// Which form of the checksum a received packet carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChecksumForm {
    /// Over the IPv4/IPv6 pseudo-header and the message (v3, RFC 5798).
    PseudoHeader,
    /// Over the message only (v2; also accepted for v3 over IPv4).
    MessageOnly,
}

mod field {
    //! Byte ranges of the VRRP header.
    pub type Field = core::ops::Range<usize>;

    /// Version (high nibble) and type (low nibble).
    pub const VER_TYPE: usize = 0;
    /// Virtual router id.
    pub const VRID: usize = 1;
    /// Priority.
    pub const PRIORITY: usize = 2;
    /// Count of addresses.
    pub const COUNT: usize = 3;
    /// v3: 4 reserved bits and the 12-bit max advertisement interval (cs).
    pub const V3_MAX_ADVER_INT: Field = 4..6;
    /// v2: authentication type.
    pub const V2_AUTH_TYPE: usize = 4;
    /// v2: advertisement interval (s).
    pub const V2_ADVER_INT: usize = 5;
    /// Checksum.
    pub const CHECKSUM: Field = 6..8;
    /// Start of the address list.
    pub const ADDRESSES: usize = 8;

    /// The address list for `count` addresses of `addr_len` bytes.
    pub const fn addresses(count: u8, addr_len: usize) -> Field {
        ADDRESSES..ADDRESSES + count as usize * addr_len
    }

    /// The v2 authentication data after `count` addresses.
    pub const fn auth_data(count: u8, addr_len: usize) -> Field {
        let start = addresses(count, addr_len).end;
        start..start + super::AUTH_DATA_LEN
    }
}

/// A read/write view of a VRRP advertisement in a byte buffer.
///
/// The family is not in the VRRP message: it comes from the IP header and
/// decides the address length.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
    family: Family,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps `buffer` without checking its length; see the module's panic
    /// contract.
    pub const fn new_unchecked(buffer: T, family: Family) -> Packet<T> {
        Packet { buffer, family }
    }

    /// Wraps `buffer` and checks it is long enough for every field the
    /// header declares ([`Packet::check_len`]).
    ///
    /// # Errors
    /// [`Error::Truncated`] or [`Error::BadAddressCount`], as `check_len`.
    pub fn new_checked(buffer: T, family: Family) -> Result<Packet<T>, Error> {
        let packet = Self::new_unchecked(buffer, family);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks that every getter is in bounds: the fixed header, the
    /// declared addresses and, for v2, the authentication data. Any version
    /// other than 2 is laid out as v3 (no authentication data), so the
    /// getters are safe on it too and [`Repr::parse`] rejects it.
    ///
    /// # Errors
    /// [`Error::Truncated`] if the fixed header or the v2 authentication
    /// data is cut short, [`Error::BadAddressCount`] if the declared
    /// addresses do not fit.
    pub fn check_len(&self) -> Result<(), Error> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated {
                len,
                need: HEADER_LEN,
            });
        }
        let count = self.addr_count();
        if len < field::addresses(count, self.addr_len()).end {
            return Err(Error::BadAddressCount {
                count: count.into(),
                len,
            });
        }
        let need = self.total_len();
        if len < need {
            return Err(Error::Truncated { len, need });
        }
        Ok(())
    }

    /// Consumes the view, returning the buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The address family the view was built with.
    pub const fn family(&self) -> Family {
        self.family
    }

    fn addr_len(&self) -> usize {
        self.family.addr_len()
    }

    fn has_auth_data(&self) -> bool {
        self.version() == Version::V2
    }

    /// Length of the message the header declares: header, addresses and,
    /// for v2, the authentication data. Bytes past it are not part of the
    /// message (not checksummed, not parsed).
    pub fn total_len(&self) -> usize {
        let count = self.addr_count();
        if self.has_auth_data() {
            field::auth_data(count, self.addr_len()).end
        } else {
            field::addresses(count, self.addr_len()).end
        }
    }

    /// The version nibble.
    pub fn version(&self) -> Version {
        Version::from(self.buffer.as_ref()[field::VER_TYPE] >> 4)
    }

    /// The type nibble.
    pub fn msg_type(&self) -> MessageType {
        MessageType::from(self.buffer.as_ref()[field::VER_TYPE] & 0x0f)
    }

    /// The virtual router id.
    pub fn vrid(&self) -> u8 {
        self.buffer.as_ref()[field::VRID]
    }

    /// The sender's priority (0: the master releases; 255: address owner).
    pub fn priority(&self) -> u8 {
        self.buffer.as_ref()[field::PRIORITY]
    }

    /// The number of addresses listed.
    pub fn addr_count(&self) -> u8 {
        self.buffer.as_ref()[field::COUNT]
    }

    /// v3: the 12-bit maximum advertisement interval, in centiseconds
    /// (the reserved bits are masked off).
    pub fn max_advert_interval(&self) -> u16 {
        let data = self.buffer.as_ref();
        u16::from_be_bytes([
            data[field::V3_MAX_ADVER_INT.start],
            data[field::V3_MAX_ADVER_INT.start + 1],
        ]) & MAX_V3_INTERVAL_CS
    }

    /// v3: the 4 reserved bits (must be zero on send, ignored on receive).
    pub fn reserved(&self) -> u8 {
        self.buffer.as_ref()[field::V3_MAX_ADVER_INT.start] >> 4
    }

    /// v2: the authentication type.
    pub fn auth_type(&self) -> AuthType {
        AuthType::from(self.buffer.as_ref()[field::V2_AUTH_TYPE])
    }

    /// v2: the advertisement interval, in seconds.
    pub fn advert_interval_secs(&self) -> u8 {
        self.buffer.as_ref()[field::V2_ADVER_INT]
    }

    /// The checksum field.
    pub fn checksum(&self) -> u16 {
        let data = self.buffer.as_ref();
        u16::from_be_bytes([data[field::CHECKSUM.start], data[field::CHECKSUM.start + 1]])
    }

    /// The raw address list (`addr_count` × 4 or 16 bytes).
    pub fn address_bytes(&self) -> &[u8] {
        &self.buffer.as_ref()[field::addresses(self.addr_count(), self.addr_len())]
    }

    /// The listed addresses, in wire order.
    pub fn addresses(&self) -> impl Iterator<Item = IpAddr> + '_ {
        let family = self.family;
        self.address_bytes()
            .chunks_exact(family.addr_len())
            .map(move |chunk| addr_from_bytes(family, chunk))
    }

    /// v2: the 8 bytes of authentication data; empty for any other version.
    pub fn auth_data(&self) -> &[u8] {
        if self.has_auth_data() {
            &self.buffer.as_ref()[field::auth_data(self.addr_count(), self.addr_len())]
        } else {
            &[]
        }
    }

    /// The declared message (`..total_len()`).
    fn message(&self) -> &[u8] {
        &self.buffer.as_ref()[..self.total_len()]
    }

    /// Verifies the checksum as received from `src` to `dst`, returning the
    /// form that matched, or `None`. v2: message only. v3 over IPv4:
    /// pseudo-header form, else message-only form. v3 over IPv6:
    /// pseudo-header form only. Returns `None` if `src`/`dst` are not of
    /// the packet's family and a pseudo-header is required.
    pub fn verify_checksum(&self, src: IpAddr, dst: IpAddr) -> Option<ChecksumForm> {
        let message = self.message();
        let message_sum = sum_words(0, message);
        if self.version() == Version::V2 {
            return (fold(message_sum) == 0xffff).then_some(ChecksumForm::MessageOnly);
        }
        if pseudo_header_sum(self.family, src, dst, message.len())
            .is_some_and(|pseudo| fold(pseudo + message_sum) == 0xffff)
        {
            return Some(ChecksumForm::PseudoHeader);
        }
        (self.family == Family::Ipv4 && fold(message_sum) == 0xffff)
            .then_some(ChecksumForm::MessageOnly)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the version and type nibbles.
    pub fn set_version_and_type(&mut self, version: Version, msg_type: MessageType) {
        self.buffer.as_mut()[field::VER_TYPE] =
            (u8::from(version) << 4) | (u8::from(msg_type) & 0x0f);
    }

    /// Sets the virtual router id.
    pub fn set_vrid(&mut self, value: u8) {
        self.buffer.as_mut()[field::VRID] = value;
    }

    /// Sets the priority.
    pub fn set_priority(&mut self, value: u8) {
        self.buffer.as_mut()[field::PRIORITY] = value;
    }

    /// Sets the address count.
    pub fn set_addr_count(&mut self, value: u8) {
        self.buffer.as_mut()[field::COUNT] = value;
    }

    /// v3: sets the maximum advertisement interval (centiseconds, masked to
    /// 12 bits) and clears the reserved bits.
    pub fn set_max_advert_interval(&mut self, value: u16) {
        let bytes = (value & MAX_V3_INTERVAL_CS).to_be_bytes();
        self.buffer.as_mut()[field::V3_MAX_ADVER_INT].copy_from_slice(&bytes);
    }

    /// v2: sets the authentication type.
    pub fn set_auth_type(&mut self, value: AuthType) {
        self.buffer.as_mut()[field::V2_AUTH_TYPE] = value.into();
    }

    /// v2: sets the advertisement interval, in seconds.
    pub fn set_advert_interval_secs(&mut self, value: u8) {
        self.buffer.as_mut()[field::V2_ADVER_INT] = value;
    }

    /// Sets the checksum field.
    pub fn set_checksum(&mut self, value: u16) {
        self.buffer.as_mut()[field::CHECKSUM].copy_from_slice(&value.to_be_bytes());
    }

    /// Sets the `index`th address.
    ///
    /// # Panics
    /// If `addr` is not of the packet's family or `index` is past the
    /// buffer.
    pub fn set_address(&mut self, index: usize, addr: IpAddr) {
        let len = self.addr_len();
        let start = field::ADDRESSES + index * len;
        let slot = &mut self.buffer.as_mut()[start..start + len];
        match addr {
            IpAddr::V4(a) => slot.copy_from_slice(&a.octets()),
            IpAddr::V6(a) => slot.copy_from_slice(&a.octets()),
        }
    }

    /// v2: sets the authentication data (after `addr_count` addresses).
    ///
    /// # Panics
    /// If the version is not 2 or the buffer is too short.
    pub fn set_auth_data(&mut self, value: &[u8; AUTH_DATA_LEN]) {
        assert_eq!(
            self.version(),
            Version::V2,
            "authentication data is VRRPv2 only"
        );
        let range = field::auth_data(self.addr_count(), self.addr_len());
        self.buffer.as_mut()[range].copy_from_slice(value);
    }

    /// Computes and writes the checksum for a packet sent from `src` to
    /// `dst`: v2 over the message only, v3 with the pseudo-header.
    ///
    /// # Errors
    /// [`Error::AddressFamilyMismatch`] if `src`/`dst` are not of the
    /// packet's family (v3 only; v2 ignores them).
    pub fn fill_checksum(&mut self, src: IpAddr, dst: IpAddr) -> Result<(), Error> {
        self.set_checksum(0);
        let len = self.total_len();
        let message_sum = sum_words(0, &self.buffer.as_ref()[..len]);
        let sum = if self.version() == Version::V2 {
            message_sum
        } else {
            pseudo_header_sum(self.family, src, dst, len).ok_or(Error::AddressFamilyMismatch)?
                + message_sum
        };
        self.set_checksum(!fold(sum));
        Ok(())
    }
}

impl<T: AsRef<[u8]>> fmt::Display for Packet<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.check_len().is_err() {
            return write!(f, "VRRP (truncated, {} bytes)", self.buffer.as_ref().len());
        }
        write!(
            f,
            "VRRP version={:?} type={:?} vrid={} prio={} count={}",
            self.version(),
            self.msg_type(),
            self.vrid(),
            self.priority(),
            self.addr_count()
        )
    }
}

/// VRRPv2 authentication, as carried in the auth type and the 8 bytes of
/// authentication data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Auth {
    /// Type 0; the data is 8 zero bytes on send and ignored on receive.
    None,
    /// Type 1, keepalived `auth_type PASS`: the password NUL-padded and cut
    /// to its first 8 bytes.
    Pass([u8; AUTH_DATA_LEN]),
}

impl Auth {
    /// The `PASS` authentication for `password`, cut to its first 8 bytes
    /// and NUL-padded, as keepalived does.
    #[must_use]
    pub fn pass(password: &str) -> Auth {
        let mut data = [0u8; AUTH_DATA_LEN];
        let bytes = password.as_bytes();
        let n = bytes.len().min(AUTH_DATA_LEN);
        data[..n].copy_from_slice(&bytes[..n]);
        Auth::Pass(data)
    }

    /// The wire authentication type.
    #[must_use]
    pub const fn auth_type(&self) -> AuthType {
        match self {
            Auth::None => AuthType::None,
            Auth::Pass(_) => AuthType::SimpleText,
        }
    }

    /// The 8 bytes of authentication data sent.
    #[must_use]
    pub const fn data(&self) -> [u8; AUTH_DATA_LEN] {
        match self {
            Auth::None => [0; AUTH_DATA_LEN],
            Auth::Pass(data) => *data,
        }
    }
}

/// The version-specific fields of an advertisement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// VRRPv2 (RFC 3768).
    V2 {
        /// Advertisement interval, whole seconds (1..=255).
        advert_interval_secs: u8,
        /// Authentication.
        auth: Auth,
    },
    /// VRRPv3 (RFC 5798).
    V3 {
        /// Maximum advertisement interval, centiseconds (1..=4095).
        max_advert_interval_cs: u16,
    },
}

/// A parsed VRRP advertisement.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Repr {
    /// The address family of the carrying IP packet (v2: always IPv4).
    pub family: Family,
    /// Virtual router id.
    pub vrid: u8,
    /// Sender priority (0: release, 255: owner).
    pub priority: u8,
    /// Version and version-specific fields.
    pub kind: Kind,
    /// The virtual addresses, in wire order; all of `family`.
    pub addresses: Vec<IpAddr>,
}

impl Repr {
    /// Parses a checked packet received from `src` to `dst` (the IP header's
    /// addresses, needed for the v3 pseudo-header) and verifies it.
    ///
    /// # Errors
    /// [`Error::BadVersion`], [`Error::BadType`], [`Error::V2OverIpv6`],
    /// [`Error::AddressFamilyMismatch`] (src/dst not of the packet's
    /// family), [`Error::BadChecksum`], [`Error::BadAuthType`],
    /// [`Error::BadInterval`] (interval 0).
    pub fn parse<T: AsRef<[u8]>>(
        packet: &Packet<T>,
        src: IpAddr,
        dst: IpAddr,
    ) -> Result<Repr, Error> {
        let version = packet.version();
        if !matches!(version, Version::V2 | Version::V3) {
            return Err(Error::BadVersion {
                version: version.into(),
            });
        }
        if let MessageType::Unknown(msg_type) = packet.msg_type() {
            return Err(Error::BadType { msg_type });
        }
        if version == Version::V2 && packet.family() == Family::Ipv6 {
            return Err(Error::V2OverIpv6);
        }
        if Family::of(&src) != packet.family() || Family::of(&dst) != packet.family() {
            return Err(Error::AddressFamilyMismatch);
        }
        if packet.verify_checksum(src, dst).is_none() {
            return Err(Error::BadChecksum {
                checksum: packet.checksum(),
            });
        }
        let kind = if version == Version::V2 {
            let auth = match packet.auth_type() {
                AuthType::None => Auth::None,
                AuthType::SimpleText => {
                    let mut data = [0u8; AUTH_DATA_LEN];
                    data.copy_from_slice(packet.auth_data());
                    Auth::Pass(data)
                }
                AuthType::Unknown(auth_type) => return Err(Error::BadAuthType { auth_type }),
            };
            let advert_interval_secs = packet.advert_interval_secs();
            if advert_interval_secs == 0 {
                return Err(Error::BadInterval { interval: 0 });
            }
            Kind::V2 {
                advert_interval_secs,
                auth,
            }
        } else {
            let max_advert_interval_cs = packet.max_advert_interval();
            if max_advert_interval_cs == 0 {
                return Err(Error::BadInterval { interval: 0 });
            }
            Kind::V3 {
                max_advert_interval_cs,
            }
        };
        Ok(Repr {
            family: packet.family(),
            vrid: packet.vrid(),
            priority: packet.priority(),
            kind,
            addresses: packet.addresses().collect(),
        })
    }

    /// The version.
    #[must_use]
    pub const fn version(&self) -> Version {
        match self.kind {
            Kind::V2 { .. } => Version::V2,
            Kind::V3 { .. } => Version::V3,
        }
    }

    /// The advertisement interval as a duration.
    #[must_use]
    pub fn advert_interval(&self) -> Duration {
        match self.kind {
            Kind::V2 {
                advert_interval_secs,
                ..
            } => Duration::from_secs(advert_interval_secs.into()),
            Kind::V3 {
                max_advert_interval_cs,
            } => Duration::from_millis(u64::from(max_advert_interval_cs) * 10),
        }
    }

    /// The length of the message [`Repr::emit`] writes.
    #[must_use]
    pub fn buffer_len(&self) -> usize {
        let auth = match self.kind {
            Kind::V2 { .. } => AUTH_DATA_LEN,
            Kind::V3 { .. } => 0,
        };
        HEADER_LEN + self.addresses.len() * self.family.addr_len() + auth
    }

    /// Checks that this representation can be emitted from `src` to `dst`.
    fn check_emit(&self, src: IpAddr, dst: IpAddr) -> Result<u8, Error> {
        let count = u8::try_from(self.addresses.len()).map_err(|_| Error::BadAddressCount {
            count: self.addresses.len(),
            len: self.buffer_len(),
        })?;
        if Family::of(&src) != self.family
            || Family::of(&dst) != self.family
            || self.addresses.iter().any(|a| Family::of(a) != self.family)
        {
            return Err(Error::AddressFamilyMismatch);
        }
        match self.kind {
            Kind::V2 { .. } if self.family == Family::Ipv6 => return Err(Error::V2OverIpv6),
            Kind::V2 {
                advert_interval_secs: 0,
                ..
            } => return Err(Error::BadInterval { interval: 0 }),
            Kind::V3 {
                max_advert_interval_cs,
            } if max_advert_interval_cs == 0 || max_advert_interval_cs > MAX_V3_INTERVAL_CS => {
                return Err(Error::BadInterval {
                    interval: max_advert_interval_cs,
                });
            }
            _ => {}
        }
        Ok(count)
    }

    /// Writes this advertisement, sent from `src` to `dst`, into the first
    /// [`Repr::buffer_len`] bytes of `packet` (whose family must be
    /// `self.family`) and fills in the checksum (v3: pseudo-header form;
    /// in unicast mode `dst` is the unicast peer).
    ///
    /// # Errors
    /// [`Error::Truncated`] if the buffer is too short;
    /// [`Error::AddressFamilyMismatch`], [`Error::V2OverIpv6`],
    /// [`Error::BadAddressCount`] (more than 255 addresses) or
    /// [`Error::BadInterval`] if the representation cannot be sent. Nothing
    /// is written on error.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        packet: &mut Packet<T>,
        src: IpAddr,
        dst: IpAddr,
    ) -> Result<(), Error> {
        let count = self.check_emit(src, dst)?;
        if packet.family() != self.family {
            return Err(Error::AddressFamilyMismatch);
        }
        let need = self.buffer_len();
        let len = packet.buffer.as_ref().len();
        if len < need {
            return Err(Error::Truncated { len, need });
        }
        packet.set_version_and_type(self.version(), MessageType::Advertisement);
        packet.set_vrid(self.vrid);
        packet.set_priority(self.priority);
        packet.set_addr_count(count);
        match self.kind {
            Kind::V2 {
                advert_interval_secs,
                auth,
            } => {
                packet.set_auth_type(auth.auth_type());
                packet.set_advert_interval_secs(advert_interval_secs);
            }
            Kind::V3 {
                max_advert_interval_cs,
            } => packet.set_max_advert_interval(max_advert_interval_cs),
        }
        for (i, addr) in self.addresses.iter().enumerate() {
            packet.set_address(i, *addr);
        }
        if let Kind::V2 { auth, .. } = self.kind {
            packet.set_auth_data(&auth.data());
        }
        packet.fill_checksum(src, dst)
    }

    /// Emits into a new buffer of exactly [`Repr::buffer_len`] bytes.
    ///
    /// # Errors
    /// As [`Repr::emit`].
    pub fn to_bytes(&self, src: IpAddr, dst: IpAddr) -> Result<Vec<u8>, Error> {
        self.check_emit(src, dst)?;
        let mut packet = Packet::new_unchecked(vec![0u8; self.buffer_len()], self.family);
        self.emit(&mut packet, src, dst)?;
        Ok(packet.into_inner())
    }
}

impl fmt::Display for Repr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "VRRPv{} vrid={} prio={} interval={:?} addrs={:?}",
            u8::from(self.version()),
            self.vrid,
            self.priority,
            self.advert_interval(),
            self.addresses
        )
    }
}

/// Parses the IP payload `bytes` of a VRRP packet received from `src` to
/// `dst` (the family is taken from `src`). This is `new_checked` + `parse`:
/// the entry point for the socket layer.
///
/// # Errors
/// Any [`Error`] of [`Packet::new_checked`] or [`Repr::parse`].
pub fn parse(bytes: &[u8], src: IpAddr, dst: IpAddr) -> Result<Repr, Error> {
    let packet = Packet::new_checked(bytes, Family::of(&src))?;
    Repr::parse(&packet, src, dst)
}

/// Fuzz entry: feeds arbitrary bytes through the codec and checks its
/// properties; never panics unless a property is broken (which is the bug
/// the fuzzer is looking for).
///
/// The first byte selects the family (bit 0: IPv6). The rest is parsed
/// as received from fixed test addresses; then, so that the fuzzer gets
/// past the checksum, the checksum is recomputed on a copy and parsed
/// again, and any successfully parsed [`Repr`] must emit and re-parse to
/// itself.
///
/// # Panics
/// Only if one of those properties does not hold.
pub fn fuzz_parse(data: &[u8]) {
    let Some((&selector, payload)) = data.split_first() else {
        return;
    };
    let (src, dst) = if selector & 1 == 0 {
        (
            IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1)),
            IpAddr::V4(MULTICAST_V4),
        )
    } else {
        (
            IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1)),
            IpAddr::V6(MULTICAST_V6),
        )
    };
    let family = Family::of(&src);
    if let Ok(repr) = parse(payload, src, dst) {
        assert_round_trip(&repr, src, dst);
    }
    let Ok(mut packet) = Packet::new_checked(payload.to_vec(), family) else {
        return;
    };
    packet.fill_checksum(src, dst).expect("family matches");
    match Repr::parse(&packet, src, dst) {
        Ok(repr) => assert_round_trip(&repr, src, dst),
        Err(
            Error::BadChecksum { .. } | Error::Truncated { .. } | Error::BadAddressCount { .. },
        ) => {
            panic!("a recomputed checksum must verify on a checked packet");
        }
        Err(_) => {}
    }
}

/// Emit-then-parse must give back `repr` (used by [`fuzz_parse`]).
fn assert_round_trip(repr: &Repr, src: IpAddr, dst: IpAddr) {
    let bytes = repr.to_bytes(src, dst).expect("a parsed repr emits");
    assert_eq!(bytes.len(), repr.buffer_len());
    let again = parse(&bytes, src, dst).expect("an emitted repr parses");
    assert_eq!(&again, repr);
}

fn addr_from_bytes(family: Family, bytes: &[u8]) -> IpAddr {
    match family {
        Family::Ipv4 => {
            let mut octets = [0u8; 4];
            octets.copy_from_slice(bytes);
            IpAddr::V4(Ipv4Addr::from(octets))
        }
        Family::Ipv6 => {
            let mut octets = [0u8; 16];
            octets.copy_from_slice(bytes);
            IpAddr::V6(Ipv6Addr::from(octets))
        }
    }
}

/// RFC 1071: the 32-bit running sum of `data` as big-endian 16-bit words
/// (an odd trailing byte is padded with zero). VRRP messages are at most
/// 8 + 255×16 + 8 bytes, far from overflowing the accumulator.
fn sum_words(mut acc: u32, data: &[u8]) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for word in &mut chunks {
        acc += u32::from(u16::from_be_bytes([word[0], word[1]]));
    }
    if let [last] = chunks.remainder() {
        acc += u32::from(*last) << 8;
    }
    acc
}

/// Folds a running sum into 16 bits with end-around carry.
fn fold(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    // The loop leaves at most 16 bits.
    u16::try_from(acc).unwrap_or(u16::MAX)
}

/// The running sum of the pseudo-header for a VRRP message of `len` bytes,
/// or `None` if `src`/`dst` are not of `family`.
fn pseudo_header_sum(family: Family, src: IpAddr, dst: IpAddr, len: usize) -> Option<u32> {
    // `len` is at most 4096 (a u8 count of 16-byte addresses plus headers).
    let len = u32::try_from(len).unwrap_or(u32::MAX);
    match (family, src, dst) {
        (Family::Ipv4, IpAddr::V4(s), IpAddr::V4(d)) => {
            // src, dst, zero, protocol, VRRP length (u16).
            let acc = sum_words(sum_words(0, &s.octets()), &d.octets());
            Some(acc + u32::from(IP_PROTOCOL) + (len & 0xffff))
        }
        (Family::Ipv6, IpAddr::V6(s), IpAddr::V6(d)) => {
            // src, dst, upper-layer length (u32), 3 zero bytes, next header.
            let acc = sum_words(sum_words(0, &s.octets()), &d.octets());
            Some(acc + (len >> 16) + (len & 0xffff) + u32::from(IP_PROTOCOL))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC4: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1));
    const DST4: IpAddr = IpAddr::V4(MULTICAST_V4);
    const SRC6: IpAddr = IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1));
    const DST6: IpAddr = IpAddr::V6(MULTICAST_V6);

    /// Independent RFC 1071 checksum: a plain u64 sum over byte pairs of the
    /// concatenation, folded at the end. Shares no code with the module.
    fn reference_checksum(parts: &[&[u8]]) -> u16 {
        let bytes: Vec<u8> = parts.iter().flat_map(|p| p.iter().copied()).collect();
        let mut sum: u64 = 0;
        let mut i = 0;
        while i < bytes.len() {
            let hi = u64::from(bytes[i]);
            let lo = u64::from(*bytes.get(i + 1).unwrap_or(&0));
            sum += (hi << 8) | lo;
            i += 2;
        }
        while sum >> 16 != 0 {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        !u16::try_from(sum).unwrap()
    }

    /// A keepalived-style VRRPv3 advertisement from 198.18.0.1 to
    /// 224.0.0.18: VRID 51, priority 100, one VIP 198.18.0.100, interval 1 s.
    ///
    /// Checksum by hand (16-bit words, end-around carry):
    /// message   3133 + 6401 + 0064 + 0000 + c612 + 0064          = 0x15c0e
    /// pseudo    c612 + 0001 + e000 + 0012 + 0070 (0, 112) + 000c (len 12)
    ///           0x15c0e + 0x1c6a1                                = 0x302af
    /// fold      0x02af + 0x3 = 0x02b2;  !0x02b2 = 0xfd4d
    static V3_IPV4: [u8; 12] = [
        0x31, 0x33, 0x64, 0x01, // v3 advert, vrid 51, prio 100, 1 address
        0x00, 0x64, 0xfd, 0x4d, // interval 100 cs, checksum (pseudo-header form)
        198, 18, 0, 100, // VIP
    ];

    /// The same message with a message-only checksum (older senders):
    /// fold(0x15c0e) = 0x5c0f, !0x5c0f = 0xa3f0.
    const V3_IPV4_MESSAGE_ONLY_CSUM: u16 = 0xa3f0;

    /// keepalived `auth_type PASS`, `auth_pass 1111`, VRID 51, priority 100,
    /// `advert_int 1`, VIP 198.18.0.16.
    ///
    /// Checksum by hand, message only:
    /// 2133 + 6401 + 0101 + 0000 + c612 + 0010 + 3131 + 3131 + 0 + 0 = 0x1aeb9
    /// fold 0xaeb9 + 1 = 0xaeba; !0xaeba = 0x5145
    static V2_PASS: [u8; 20] = [
        0x21, 0x33, 0x64, 0x01, // v2 advert, vrid 51, prio 100, 1 address
        0x01, 0x01, 0x51, 0x45, // auth PASS, interval 1 s, checksum
        198, 18, 0, 16, // VIP
        b'1', b'1', b'1', b'1', 0, 0, 0, 0, // "1111" NUL-padded to 8
    ];

    /// VRRPv3 over IPv6 from fe80::1 to ff02::12: VRID 51, priority 100,
    /// interval 1 s, VIP 2001:db8::100. Checksum 0x3d8f, checked against
    /// [`reference_checksum`] in `v3_ipv6_known_packet`.
    static V3_IPV6: [u8; 24] = [
        0x31, 0x33, 0x64, 0x01, // v3 advert, vrid 51, prio 100, 1 address
        0x00, 0x64, 0x3d, 0x8f, // interval 100 cs, checksum
        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0x00, // 2001:db8::100
    ];

    fn v3_ipv4_repr() -> Repr {
        Repr {
            family: Family::Ipv4,
            vrid: 51,
            priority: 100,
            kind: Kind::V3 {
                max_advert_interval_cs: 100,
            },
            addresses: vec!["198.18.0.100".parse().unwrap()],
        }
    }

    fn v2_pass_repr() -> Repr {
        Repr {
            family: Family::Ipv4,
            vrid: 51,
            priority: 100,
            kind: Kind::V2 {
                advert_interval_secs: 1,
                auth: Auth::pass("1111"),
            },
            addresses: vec!["198.18.0.16".parse().unwrap()],
        }
    }

    fn v3_ipv6_repr() -> Repr {
        Repr {
            family: Family::Ipv6,
            vrid: 51,
            priority: 100,
            kind: Kind::V3 {
                max_advert_interval_cs: 100,
            },
            addresses: vec!["2001:db8::100".parse().unwrap()],
        }
    }

    #[test]
    fn reference_checksum_agrees_with_hand_derivation() {
        let mut zeroed = V3_IPV4;
        zeroed[6] = 0;
        zeroed[7] = 0;
        let pseudo = [198, 18, 0, 1, 224, 0, 0, 18, 0, 112, 0, 12];
        assert_eq!(reference_checksum(&[&pseudo, &zeroed]), 0xfd4d);
        assert_eq!(reference_checksum(&[&zeroed]), V3_IPV4_MESSAGE_ONLY_CSUM);
        let mut v2 = V2_PASS;
        v2[6] = 0;
        v2[7] = 0;
        assert_eq!(reference_checksum(&[&v2]), 0x5145);
    }

    #[test]
    fn v3_ipv4_deconstruct() {
        let packet = Packet::new_checked(&V3_IPV4[..], Family::Ipv4).unwrap();
        assert_eq!(packet.version(), Version::V3);
        assert_eq!(packet.msg_type(), MessageType::Advertisement);
        assert_eq!(packet.vrid(), 51);
        assert_eq!(packet.priority(), 100);
        assert_eq!(packet.addr_count(), 1);
        assert_eq!(packet.reserved(), 0);
        assert_eq!(packet.max_advert_interval(), 100);
        assert_eq!(packet.checksum(), 0xfd4d);
        assert_eq!(
            packet.addresses().collect::<Vec<_>>(),
            vec!["198.18.0.100".parse::<IpAddr>().unwrap()]
        );
        assert!(packet.auth_data().is_empty());
        assert_eq!(packet.total_len(), 12);
        assert_eq!(
            packet.verify_checksum(SRC4, DST4),
            Some(ChecksumForm::PseudoHeader)
        );
    }

    #[test]
    fn v3_ipv4_parse_and_emit() {
        let repr = parse(&V3_IPV4, SRC4, DST4).unwrap();
        assert_eq!(repr, v3_ipv4_repr());
        assert_eq!(repr.advert_interval(), Duration::from_secs(1));
        assert_eq!(repr.buffer_len(), V3_IPV4.len());
        let bytes = v3_ipv4_repr().to_bytes(SRC4, DST4).unwrap();
        assert_eq!(bytes, V3_IPV4);
    }

    #[test]
    fn v3_ipv4_accepts_message_only_checksum() {
        let mut bytes = V3_IPV4;
        bytes[6..8].copy_from_slice(&V3_IPV4_MESSAGE_ONLY_CSUM.to_be_bytes());
        let packet = Packet::new_checked(&bytes[..], Family::Ipv4).unwrap();
        assert_eq!(
            packet.verify_checksum(SRC4, DST4),
            Some(ChecksumForm::MessageOnly)
        );
        assert_eq!(Repr::parse(&packet, SRC4, DST4).unwrap(), v3_ipv4_repr());
    }

    #[test]
    fn v3_ipv4_pseudo_header_uses_the_destination() {
        // Unicast mode: the pseudo-header carries the peer address, so the
        // multicast-form checksum does not verify for a unicast destination.
        let peer: IpAddr = "198.18.0.2".parse().unwrap();
        assert_eq!(
            parse(&V3_IPV4, SRC4, peer),
            Err(Error::BadChecksum { checksum: 0xfd4d })
        );
        let bytes = v3_ipv4_repr().to_bytes(SRC4, peer).unwrap();
        assert_eq!(parse(&bytes, SRC4, peer).unwrap(), v3_ipv4_repr());
        let pseudo = [198, 18, 0, 1, 198, 18, 0, 2, 0, 112, 0, 12];
        let mut zeroed = bytes.clone();
        zeroed[6..8].fill(0);
        assert_eq!(
            u16::from_be_bytes([bytes[6], bytes[7]]),
            reference_checksum(&[&pseudo, &zeroed])
        );
    }

    #[test]
    fn v3_ipv4_bad_checksum() {
        let mut bytes = V3_IPV4;
        bytes[7] ^= 1;
        assert_eq!(
            parse(&bytes, SRC4, DST4),
            Err(Error::BadChecksum { checksum: 0xfd4c })
        );
    }

    #[test]
    fn v2_pass_known_packet() {
        let packet = Packet::new_checked(&V2_PASS[..], Family::Ipv4).unwrap();
        assert_eq!(packet.version(), Version::V2);
        assert_eq!(packet.auth_type(), AuthType::SimpleText);
        assert_eq!(packet.advert_interval_secs(), 1);
        assert_eq!(packet.auth_data(), b"1111\0\0\0\0");
        assert_eq!(packet.total_len(), 20);
        assert_eq!(
            packet.verify_checksum(SRC4, DST4),
            Some(ChecksumForm::MessageOnly)
        );
        assert_eq!(Repr::parse(&packet, SRC4, DST4).unwrap(), v2_pass_repr());
        assert_eq!(v2_pass_repr().to_bytes(SRC4, DST4).unwrap(), V2_PASS);
        // v2's checksum ignores the IP addresses.
        let other: IpAddr = "198.18.9.9".parse().unwrap();
        assert_eq!(parse(&V2_PASS, other, other).unwrap(), v2_pass_repr());
    }

    #[test]
    fn v2_password_is_cut_to_8_bytes_and_padded() {
        assert_eq!(Auth::pass("1111"), Auth::Pass(*b"1111\0\0\0\0"));
        assert_eq!(Auth::pass("0123456789"), Auth::Pass(*b"01234567"));
        assert_eq!(Auth::pass(""), Auth::Pass([0; 8]));
    }

    #[test]
    fn v2_auth_none_sends_zero_auth_data() {
        let repr = Repr {
            kind: Kind::V2 {
                advert_interval_secs: 1,
                auth: Auth::None,
            },
            ..v2_pass_repr()
        };
        let bytes = repr.to_bytes(SRC4, DST4).unwrap();
        assert_eq!(bytes.len(), 20);
        assert_eq!(bytes[4], 0);
        assert_eq!(&bytes[12..], &[0; 8]);
        assert_eq!(parse(&bytes, SRC4, DST4).unwrap(), repr);
    }

    #[test]
    fn v2_rejects_ah_and_unknown_auth() {
        for auth_type in [2u8, 3, 255] {
            let mut bytes = V2_PASS;
            bytes[4] = auth_type;
            let mut packet = Packet::new_checked(&mut bytes[..], Family::Ipv4).unwrap();
            packet.fill_checksum(SRC4, DST4).unwrap();
            assert_eq!(
                parse(&bytes, SRC4, DST4),
                Err(Error::BadAuthType { auth_type })
            );
        }
    }

    #[test]
    fn v2_over_ipv6_is_rejected() {
        assert_eq!(
            parse(&V2_PASS[..], SRC6, DST6),
            Err(Error::BadAddressCount { count: 1, len: 20 })
        );
        let mut bytes = V2_PASS.to_vec();
        bytes.extend_from_slice(&[0; 12]);
        assert_eq!(parse(&bytes, SRC6, DST6), Err(Error::V2OverIpv6));
        let repr = Repr {
            family: Family::Ipv6,
            addresses: vec!["2001:db8::1".parse().unwrap()],
            ..v2_pass_repr()
        };
        assert_eq!(repr.to_bytes(SRC6, DST6), Err(Error::V2OverIpv6));
    }

    #[test]
    fn v3_ipv6_known_packet() {
        let mut zeroed = V3_IPV6;
        zeroed[6..8].fill(0);
        let mut pseudo = Vec::new();
        pseudo.extend_from_slice(&[0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        pseudo.extend_from_slice(&[0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x12]);
        pseudo.extend_from_slice(&24u32.to_be_bytes());
        pseudo.extend_from_slice(&[0, 0, 0, 112]);
        assert_eq!(reference_checksum(&[&pseudo, &zeroed]), 0x3d8f);

        let packet = Packet::new_checked(&V3_IPV6[..], Family::Ipv6).unwrap();
        assert_eq!(
            packet.verify_checksum(SRC6, DST6),
            Some(ChecksumForm::PseudoHeader)
        );
        assert_eq!(Repr::parse(&packet, SRC6, DST6).unwrap(), v3_ipv6_repr());
        assert_eq!(v3_ipv6_repr().to_bytes(SRC6, DST6).unwrap(), V3_IPV6);
    }

    #[test]
    fn v3_ipv6_rejects_message_only_checksum() {
        let mut bytes = V3_IPV6;
        bytes[6..8].fill(0);
        let sum = reference_checksum(&[&bytes]);
        bytes[6..8].copy_from_slice(&sum.to_be_bytes());
        assert!(matches!(
            parse(&bytes, SRC6, DST6),
            Err(Error::BadChecksum { .. })
        ));
    }

    #[test]
    fn family_mismatch_is_an_error() {
        let packet = Packet::new_checked(&V3_IPV4[..], Family::Ipv4).unwrap();
        assert_eq!(
            Repr::parse(&packet, SRC6, DST4),
            Err(Error::AddressFamilyMismatch)
        );
        assert_eq!(
            v3_ipv4_repr().to_bytes(SRC6, DST6),
            Err(Error::AddressFamilyMismatch)
        );
        let mixed = Repr {
            addresses: vec!["2001:db8::1".parse().unwrap()],
            ..v3_ipv4_repr()
        };
        assert_eq!(
            mixed.to_bytes(SRC4, DST4),
            Err(Error::AddressFamilyMismatch)
        );
    }

    #[test]
    fn bad_version_type_interval() {
        let fix = |mut bytes: [u8; 12]| {
            Packet::new_checked(&mut bytes[..], Family::Ipv4)
                .unwrap()
                .fill_checksum(SRC4, DST4)
                .unwrap();
            parse(&bytes, SRC4, DST4)
        };
        let mut b = V3_IPV4;
        b[0] = 0x41;
        assert_eq!(fix(b), Err(Error::BadVersion { version: 4 }));
        b[0] = 0x32;
        assert_eq!(fix(b), Err(Error::BadType { msg_type: 2 }));
        b = V3_IPV4;
        b[4] = 0xf0; // reserved bits set, interval 0
        b[5] = 0;
        assert_eq!(fix(b), Err(Error::BadInterval { interval: 0 }));
        b[5] = 5; // reserved bits are ignored
        assert_eq!(
            fix(b).unwrap().kind,
            Kind::V3 {
                max_advert_interval_cs: 5
            }
        );
    }

    #[test]
    fn emit_checks_interval_count_and_buffer() {
        let repr = Repr {
            kind: Kind::V3 {
                max_advert_interval_cs: 4096,
            },
            ..v3_ipv4_repr()
        };
        assert_eq!(
            repr.to_bytes(SRC4, DST4),
            Err(Error::BadInterval { interval: 4096 })
        );
        let many = Repr {
            addresses: vec![SRC4; 256],
            ..v3_ipv4_repr()
        };
        assert!(matches!(
            many.to_bytes(SRC4, DST4),
            Err(Error::BadAddressCount { count: 256, .. })
        ));
        let mut small = Packet::new_unchecked([0u8; 11], Family::Ipv4);
        assert_eq!(
            v3_ipv4_repr().emit(&mut small, SRC4, DST4),
            Err(Error::Truncated { len: 11, need: 12 })
        );
        assert_eq!(small.into_inner(), [0u8; 11]);
    }

    #[test]
    fn sub_second_interval_round_trips() {
        let repr = Repr {
            kind: Kind::V3 {
                max_advert_interval_cs: 10,
            },
            ..v3_ipv4_repr()
        };
        let parsed = parse(&repr.to_bytes(SRC4, DST4).unwrap(), SRC4, DST4).unwrap();
        assert_eq!(parsed.advert_interval(), Duration::from_millis(100));
    }

    #[test]
    fn many_addresses_round_trip() {
        let addresses: Vec<IpAddr> = (0..255u8)
            .map(|i| IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, i.into())))
            .collect();
        let repr = Repr {
            addresses,
            ..v3_ipv6_repr()
        };
        let bytes = repr.to_bytes(SRC6, DST6).unwrap();
        assert_eq!(bytes.len(), 8 + 255 * 16);
        assert_eq!(parse(&bytes, SRC6, DST6).unwrap(), repr);
    }

    #[test]
    fn trailing_bytes_are_ignored() {
        let mut bytes = V3_IPV4.to_vec();
        bytes.extend_from_slice(&[0xaa, 0xbb]);
        assert_eq!(parse(&bytes, SRC4, DST4).unwrap(), v3_ipv4_repr());
    }

    #[test]
    fn every_truncation_is_an_error() {
        for (bytes, src, dst) in [
            (&V3_IPV4[..], SRC4, DST4),
            (&V2_PASS[..], SRC4, DST4),
            (&V3_IPV6[..], SRC6, DST6),
        ] {
            for len in 0..bytes.len() {
                let cut = &bytes[..len];
                let err = parse(cut, src, dst).unwrap_err();
                assert!(
                    matches!(err, Error::Truncated { .. } | Error::BadAddressCount { .. }),
                    "len {len}: {err:?}"
                );
                fuzz_parse(
                    &[u8::from(src.is_ipv6())]
                        .iter()
                        .chain(cut)
                        .copied()
                        .collect::<Vec<_>>(),
                );
            }
            assert!(parse(bytes, src, dst).is_ok());
        }
        assert_eq!(
            parse(&V2_PASS[..19], SRC4, DST4),
            Err(Error::Truncated { len: 19, need: 20 })
        );
        assert_eq!(
            parse(&V3_IPV4[..11], SRC4, DST4),
            Err(Error::BadAddressCount { count: 1, len: 11 })
        );
        assert_eq!(
            parse(&V3_IPV4[..7], SRC4, DST4),
            Err(Error::Truncated { len: 7, need: 8 })
        );
    }

    #[test]
    fn error_labels_are_distinct() {
        let errors = [
            Error::Truncated { len: 0, need: 8 },
            Error::BadAddressCount { count: 1, len: 8 },
            Error::BadVersion { version: 1 },
            Error::V2OverIpv6,
            Error::BadType { msg_type: 0 },
            Error::BadChecksum { checksum: 0 },
            Error::BadAuthType { auth_type: 2 },
            Error::BadInterval { interval: 0 },
            Error::AddressFamilyMismatch,
        ];
        let mut labels: Vec<_> = errors.iter().map(Error::label).collect();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), errors.len());
    }

    /// xorshift64*: a deterministic PRNG for the fuzz-like test.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn byte(&mut self) -> u8 {
            self.next().to_be_bytes()[0]
        }
    }

    #[test]
    fn random_inputs_never_panic() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let seeds: [&[u8]; 3] = [&V3_IPV4, &V2_PASS, &V3_IPV6];
        let mut parsed = 0;
        for i in 0..6000 {
            let mut data = Vec::new();
            let len = usize::try_from(rng.next() % 80).unwrap();
            if i % 2 == 0 {
                // Mutations of known-good packets reach deeper than noise.
                let seed = seeds[i % 3];
                data.push(u8::from(seed.len() == V3_IPV6.len()));
                data.extend_from_slice(seed);
                for _ in 0..(rng.next() % 4) {
                    let at = usize::try_from(rng.next() % 4096).unwrap() % data.len();
                    data[at] = rng.byte();
                }
                data.truncate(len.max(1) + 12);
            } else {
                data.extend((0..len).map(|_| rng.byte()));
                if data.len() > 4 {
                    // Valid-looking version/type and a small count half the time.
                    data[1] = [0x21, 0x31][i % 4 / 2];
                    data[4] %= 4;
                }
            }
            fuzz_parse(&data);
            if let Some((sel, payload)) = data.split_first() {
                let (src, dst) = if sel & 1 == 0 {
                    (SRC4, DST4)
                } else {
                    (SRC6, DST6)
                };
                if let Ok(packet) = Packet::new_checked(payload, Family::of(&src)) {
                    let _ = packet.to_string();
                    if Repr::parse(&packet, src, dst).is_ok() {
                        parsed += 1;
                    }
                }
            }
        }
        assert!(parsed > 0, "the mutations should leave some packets valid");
    }
}
