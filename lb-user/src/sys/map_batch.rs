//! Read a whole BPF hash map with `BPF_MAP_LOOKUP_BATCH`: a few thousand
//! entries per system call instead of two calls per entry (aya's map
//! iterator: `BPF_MAP_GET_NEXT_KEY`, then `BPF_MAP_LOOKUP_ELEM`). The NAT
//! table's expiry pass and connection sync's refresh read the whole table
//! every two seconds; with a quarter of a million flows (half a million
//! entries) one walk cost about a second of CPU the other way.
//!
//! The walk is not atomic: an entry inserted or deleted meanwhile may be
//! seen or not, as with any iteration of a live map.
//!
//! Also [`update_batch`], which aya does not offer: writing many entries
//! (inner maps of an array of maps, backend slots) at once.

use std::{
    io,
    os::fd::{AsRawFd as _, BorrowedFd},
};

/// `BPF_MAP_LOOKUP_BATCH` in `enum bpf_cmd` (`linux/bpf.h`).
const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;

/// Entries asked for per call.
const CHUNK: usize = 4096;

/// The `batch` member of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

/// Every entry of the hash map `fd`, whose keys are `K` and values `V`
/// (plain data of exactly the map's key and value sizes).
///
/// # Errors
/// The kernel refused the lookup (not a hash map, or sizes that differ).
pub fn lookup_all<K: Copy + Default, V: Copy + Default>(
    fd: BorrowedFd<'_>,
) -> io::Result<Vec<(K, V)>> {
    let mut out = Vec::new();
    let mut keys = vec![K::default(); CHUNK];
    let mut values = vec![V::default(); CHUNK];
    // The batch token: a bucket index for hash maps (the kernel copies
    // the key size's worth at most; 8 bytes hold it).
    let mut token = 0u64;
    let mut first = true;
    loop {
        let mut attr = BatchAttr {
            in_batch: if first {
                0
            } else {
                std::ptr::from_mut(&mut token) as u64
            },
            out_batch: std::ptr::from_mut(&mut token) as u64,
            keys: keys.as_mut_ptr() as u64,
            values: values.as_mut_ptr() as u64,
            count: u32::try_from(CHUNK).unwrap_or(u32::MAX),
            map_fd: u32::try_from(fd.as_raw_fd()).unwrap_or(u32::MAX),
            ..BatchAttr::default()
        };
        // SAFETY: `attr` is a valid `bpf_attr` prefix for this command; the
        // kernel writes at most `count` keys and values into buffers of that
        // many elements, and the token into `token`.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_MAP_LOOKUP_BATCH,
                std::ptr::from_mut(&mut attr),
                std::mem::size_of::<BatchAttr>(),
            )
        };
        let err = (ret < 0).then(io::Error::last_os_error);
        let n = (attr.count as usize).min(CHUNK);
        out.extend(keys[..n].iter().copied().zip(values[..n].iter().copied()));
        match err {
            None => first = false,
            // The end of the map: what this call returned was the last.
            Some(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(out),
            Some(e) => return Err(e),
        }
    }
}

/// `BPF_MAP_UPDATE_BATCH` in `enum bpf_cmd`.
const BPF_MAP_UPDATE_BATCH: libc::c_long = 26;

/// Set `keys[i]` to `values[i]` in map `fd` with one system call (`K`
/// and `V` plain data of exactly the map's key and value sizes; an array
/// of maps takes inner map fds as `u32`): an array of maps waits for one
/// RCU grace period per call, not per entry.
///
/// # Errors
/// The kernel refused; entries before the one it stopped at are set.
///
/// For a per-CPU map, `values` holds one value per possible CPU for each
/// key, in key order (each 8-byte aligned): `count` stays `keys.len()`.
pub fn update_batch<K: Copy, V: Copy>(
    fd: BorrowedFd<'_>,
    keys: &[K],
    values: &[V],
) -> io::Result<()> {
    let count = keys.len().min(values.len());
    let mut attr = BatchAttr {
        keys: keys.as_ptr() as u64,
        values: values.as_ptr() as u64,
        count: u32::try_from(count).unwrap_or(u32::MAX),
        map_fd: u32::try_from(fd.as_raw_fd()).unwrap_or(u32::MAX),
        ..BatchAttr::default()
    };
    // SAFETY: `attr` is a valid `bpf_attr` prefix for this command; the
    // kernel reads `count` keys and values from buffers that long.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_MAP_UPDATE_BATCH,
            std::ptr::from_mut(&mut attr),
            std::mem::size_of::<BatchAttr>(),
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
