//! `BPF_F_MMAPABLE` arrays mapped into our memory: the Maglev tables and
//! the VIP index are written with one copy instead of thousands of map
//! updates, and the connection table is scanned without a syscall per set.

use std::os::fd::{AsFd as _, AsRawFd as _};

use aya::maps::MapData;

/// A mapping of (the first bytes of) an array's values, unmapped on drop.
pub struct ArrayMemory {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: the mapping is owned; readers and writers go through `&self` /
// `&mut self`, so Rust's aliasing rules hold on our side (the kernel's
// concurrent access is what BPF array memory is for).
unsafe impl Send for ArrayMemory {}

impl ArrayMemory {
    /// Map the first `bytes` (rounded up to pages) of `map`'s values,
    /// shared, read-only or read-write.
    ///
    /// # Errors
    /// mmap(2) failed (e.g. the map is not `BPF_F_MMAPABLE`, or `bytes`
    /// exceeds its value area).
    pub fn map(map: &MapData, bytes: usize, writable: bool) -> std::io::Result<Self> {
        let len = bytes.div_ceil(4096) * 4096;
        let prot = if writable {
            libc::PROT_READ | libc::PROT_WRITE
        } else {
            libc::PROT_READ
        };
        // SAFETY: mapping a BPF array's fd, shared, for (at most) its
        // page-rounded value area, as the kernel documents.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                prot,
                libc::MAP_SHARED,
                map.fd().as_fd().as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Self {
            ptr: ptr.cast(),
            len,
        })
    }

    /// The first `n` values as `T`s.
    ///
    /// # Panics
    /// If `n` values of `T` do not fit the mapping.
    #[must_use]
    pub fn slice<T: aya::Pod>(&self, n: usize) -> &[T] {
        assert!(n * size_of::<T>() <= self.len && self.ptr.cast::<T>().is_aligned());
        // SAFETY: inside the mapping, aligned (page-aligned start), and any
        // bit pattern is a valid `T` (Pod).
        unsafe { std::slice::from_raw_parts(self.ptr.cast(), n) }
    }

    /// The first `n` values as `T`s, writable (a writable mapping only).
    ///
    /// # Panics
    /// As [`ArrayMemory::slice`].
    pub fn slice_mut<T: aya::Pod>(&mut self, n: usize) -> &mut [T] {
        assert!(n * size_of::<T>() <= self.len && self.ptr.cast::<T>().is_aligned());
        // SAFETY: as `slice`; `&mut self` makes this the only view.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.cast(), n) }
    }
}

impl Drop for ArrayMemory {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what we mapped.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}
