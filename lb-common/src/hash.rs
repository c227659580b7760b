//! The flow hash, shared so the kernel and user space (tests, tools that
//! predict a flow's backend) compute the same value.
//!
//! Multilinear hashing (Lemire & Kaser, "Strongly universal string hashing
//! is fast", 2014): the high 32 bits of `K[0] + sum(K[i+1] * w[i])` mod
//! 2^64 over the 5-tuple's ten 32-bit words, with odd random 64-bit
//! constants. The ten multiplies are independent, so the CPU runs them in
//! parallel: about a third of the time of a serial mixing chain, and the
//! hash is on every VIP packet's path (connection-table set, Maglev slot,
//! `ipip` outer source). Not cryptographic; it spreads flows.

use crate::flow::FlowKey;

/// The constants: `K[0]` the offset, `K[1..]` one per key word.
const K: [u64; 11] = [
    0x3fa1_11f1_42b5_19d9,
    0x31d9_59de_dd15_bf9d,
    0xae07_b038_8518_6c7b,
    0xb3d0_9c18_297e_0bb1,
    0xa1c8_6525_e2a4_3185,
    0x20a9_845a_746d_16ad,
    0x67af_7ad5_cd37_e357,
    0x29b4_6644_fffe_e28f,
    0x3e44_9d20_ba49_1275,
    0xf811_d545_59c4_e9af,
    0x5dc4_dded_6db4_7d1f,
];
/// Word `i` (0..4) of a 16-byte address, little-endian.
#[inline(always)]
pub(crate) const fn word(b: &[u8; 16], i: usize) -> u32 {
    u32::from_le_bytes([b[i * 4], b[i * 4 + 1], b[i * 4 + 2], b[i * 4 + 3]])
}

/// Multilinear hash of `w` with constants `k` (`k[0]` the offset, then one
/// per word; `k.len() > w.len()`): the high half of
/// `k[0] + sum(k[i+1] * w[i])` mod 2^64.
#[inline(always)]
#[must_use]
pub(crate) const fn multilinear(w: &[u32], k: &[u64]) -> u32 {
    let mut h = k[0];
    let mut i = 0;
    while i < w.len() {
        h = h.wrapping_add((w[i] as u64).wrapping_mul(k[i + 1]));
        i += 1;
    }
    (h >> 32) as u32
}

/// Hash of a flow's 5-tuple.
#[inline(always)]
#[must_use]
pub const fn flow_hash(key: &FlowKey) -> u32 {
    multilinear(key.words(), &K)
}

/// Hash of a client address alone (the `source_hash` scheduler): the
/// flow hash's constants over the address's four words.
#[inline(always)]
#[must_use]
pub const fn source_hash(addr: &[u8; 16]) -> u32 {
    multilinear(
        &[word(addr, 0), word(addr, 1), word(addr, 2), word(addr, 3)],
        &K,
    )
}

/// A flow's slot in a Maglev table of `ring_size` entries: the hash scaled
/// into `0..ring_size` with one multiply (Lemire's fast range reduction)
/// instead of a division, which costs tens of cycles. It takes the hash's
/// high bits; the connection table takes its low bits for the set.
#[inline(always)]
#[must_use]
pub const fn maglev_slot(hash: u32, ring_size: u32) -> u32 {
    ((hash as u64 * ring_size as u64) >> 32) as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        flow::{FlowKey, flow_set_index},
        v4_mapped,
    };

    #[test]
    fn maglev_slot_covers_the_ring_and_nothing_past_it() {
        for m in [3, 251, 65537] {
            assert_eq!(maglev_slot(0, m), 0);
            assert_eq!(maglev_slot(u32::MAX, m), m - 1);
            assert!(
                (0..=u32::MAX)
                    .step_by(65_521)
                    .all(|h| maglev_slot(h, m) < m)
            );
        }
    }

    /// Counts per bucket stay within `spread` of the mean.
    fn assert_even(counts: &[u32], spread: f64, what: &str) {
        let mean = counts.iter().map(|&c| f64::from(c)).sum::<f64>() / counts.len() as f64;
        let (lo, hi) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
        assert!(
            f64::from(*lo) >= mean * (1.0 - spread) && f64::from(*hi) <= mean * (1.0 + spread),
            "{what}: counts {lo}..{hi} around {mean}"
        );
    }

    /// The usual worst case for a cheap hash: clients that differ only in
    /// their source port, or only in the last bytes of their address.
    #[test]
    fn sequential_clients_spread_over_maglev_slots_and_table_sets() {
        let flow = |addr: [u8; 4], port: u16| FlowKey {
            src: v4_mapped(addr),
            dst: v4_mapped([198, 18, 0, 100]),
            src_port_be: port.to_be(),
            dst_port_be: 443u16.to_be(),
            proto: 6,
            pad: [0; 3],
        };
        let by_port: Vec<u32> = (0..=u16::MAX)
            .map(|p| flow_hash(&flow([198, 18, 0, 1], p)))
            .collect();
        let by_addr: Vec<u32> = (0..=u16::MAX)
            .map(|a| {
                let [x, y] = a.to_be_bytes();
                flow_hash(&flow([198, 19, x, y], 40000))
            })
            .collect();
        for (what, hashes) in [("ports", &by_port), ("addresses", &by_addr)] {
            let mut slots = vec![0; 251];
            let mut sets = vec![0; 1024];
            for &h in hashes {
                slots[maglev_slot(h, 251) as usize] += 1;
                sets[flow_set_index(h, 1023) as usize] += 1;
            }
            // 261 and 64 per bucket on average.
            assert_even(&slots, 0.25, &format!("{what} over Maglev slots"));
            assert_even(&sets, 0.5, &format!("{what} over table sets"));
        }
    }
}
