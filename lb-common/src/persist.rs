//! Client affinity (keepalived's `persistence_timeout`, IPVS persistence
//! templates): map `persist` (LRU hash, [`PersistKey`] -> [`Persisted`]).
//!
//! A service with `vip_flags::PERSIST` sends every new flow of a client
//! (its address cut to `VipMeta::persist_prefix` bits by
//! `VipMeta::persist_mask`) to the backend the
//! client's previous flows went to, while the client was last seen less
//! than `VipMeta::persist_timeout_s` ago. The program records the choice
//! when it balances a client's first flow, and refreshes `last_ns` as the
//! client's flows go on (at most once per [`PERSIST_REFRESH_NS`]), so a
//! client stays with its backend while it has traffic and for the timeout
//! after, as an IPVS template outlives its connections by the timeout.
//!
//! A template is followed only to a live slot of the same VIP that takes
//! new flows (not drained, `backend_flags::DRAINED`); otherwise Maglev
//! chooses again and the template is overwritten. The key carries the
//! VIP's generation, so a re-created service starts afresh. Connection sync
//! carries no templates: the receiving node derives them from the flows it
//! is sent (a synced flow of a persistent service writes its client's
//! template), so a client keeps its backend across a failover.

/// Name of the template map.
pub const PERSIST_MAP: &str = "persist";
/// Templates the map holds (clients of persistent services across all
/// services); the least recently used is evicted when it is full.
pub const PERSIST_ENTRIES: u32 = 1 << 16;
/// A template's `last_ns` is rewritten at most this often by a flow's
/// packets (a map write per packet would cost every persistent flow).
pub const PERSIST_REFRESH_NS: u64 = 1_000_000_000;

/// Key of the template map.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[repr(C, align(4))]
pub struct PersistKey {
    /// The client's address (v4-mapped for IPv4) cut to the service's
    /// prefix ([`client_prefix`]).
    pub client: [u8; 16],
    /// The VIP's id.
    pub vip_id: u32,
    /// The VIP's generation.
    pub generation: u32,
}

/// Value of the template map.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct Persisted {
    /// The backend slot the client's flows go to.
    pub backend: u32,
    /// Explicit padding, always 0.
    pub pad: u32,
    /// When the client was last seen (`CLOCK_MONOTONIC_COARSE`, ns).
    pub last_ns: u64,
}

const _: () = assert!(core::mem::size_of::<PersistKey>() == 24);
const _: () = assert!(core::mem::size_of::<Persisted>() == 16);

/// The mask keeping the first `prefix` bits of a 16-byte address (an
/// IPv4 prefix `p` is `96 + p` here; more than 128 keeps all).
#[must_use]
pub const fn prefix_mask(prefix: u8) -> [u8; 16] {
    let mut out = [0u8; 16];
    let mut i = 0;
    while i < 16 {
        let keep = (prefix as u32).saturating_sub(8 * i as u32);
        out[i] = if keep >= 8 { 0xff } else { !(0xffu8 >> keep) };
        i += 1;
    }
    out
}

/// `addr` (16 bytes, v4-mapped for IPv4) cut by `mask` ([`prefix_mask`]).
#[inline(always)]
#[must_use]
pub fn client_prefix(addr: &[u8; 16], mask: &[u8; 16]) -> [u8; 16] {
    let a = u128::from_ne_bytes(*addr);
    let m = u128::from_ne_bytes(*mask);
    (a & m).to_ne_bytes()
}

/// Whether a template last seen at `last_ns` still holds at `now_ns` for a
/// timeout of `timeout_s` seconds.
#[inline(always)]
#[must_use]
pub const fn holds(last_ns: u64, now_ns: u64, timeout_s: u32) -> bool {
    now_ns.saturating_sub(last_ns) < timeout_s as u64 * 1_000_000_000
}

crate::pod!(PersistKey, Persisted);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v4_mapped;

    #[test]
    fn prefixes_cut_the_client_address() {
        let cut = |a: &[u8; 16], p: u8| client_prefix(a, &prefix_mask(p));
        let a = v4_mapped([198, 18, 7, 200]);
        assert_eq!(cut(&a, 128), a);
        assert_eq!(cut(&a, 200), a);
        assert_eq!(cut(&a, 96 + 24), v4_mapped([198, 18, 7, 0]));
        assert_eq!(cut(&a, 96 + 20), v4_mapped([198, 18, 0, 0]));
        assert_eq!(cut(&a, 96 + 23), v4_mapped([198, 18, 6, 0]));
        assert_eq!(cut(&a, 0), [0; 16]);
        let v6 = [
            0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 2, 0xaa, 0xbb, 0, 0, 0, 0, 0, 9,
        ];
        let mut want = [0u8; 16];
        want[..8].copy_from_slice(&v6[..8]);
        assert_eq!(cut(&v6, 64), want);
        want[8] = 0xa0;
        assert_eq!(cut(&v6, 68), want);
    }

    #[test]
    fn a_template_holds_for_its_timeout_after_it_was_last_seen() {
        let s = 1_000_000_000;
        assert!(holds(10 * s, 10 * s, 300));
        assert!(holds(10 * s, 309 * s, 300));
        assert!(!holds(10 * s, 310 * s, 300));
        assert!(!holds(10 * s, 10 * s, 0), "timeout 0: never");
        // A clock reading before last (another CPU refreshed it) holds.
        assert!(holds(10 * s, 9 * s, 300));
    }
}
