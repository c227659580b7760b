//! The host around lbd: kernel tables, interfaces and processes it
//! consults or changes.
//!
//! - [`neigh`]: next-hop MAC resolution from the kernel's route and
//!   neighbour tables (probing when the entry is missing);
//! - [`addr`]: addresses on an interface through rtnetlink: VIPs added and
//!   removed tagged as lbd's own, and the interface's addresses listed;
//! - [`interface`]: interface index and link flags by name;
//! - [`process`]: the user a child runs as, and its process group, killed
//!   as a whole;
//! - [`route`]: host routes to VIPs in lbd's own routing table, which the
//!   BGP speaker announces (`crate::bgp`);
//! - [`map_batch`]: map commands aya lacks (batch lookup and update);
//! - [`trim_heap`]: give freed heap back to the kernel.

pub mod addr;
pub mod interface;
pub mod map_batch;
pub mod neigh;
pub mod process;
pub mod route;

/// Give the heap's free memory back to the kernel (`malloc_trim`). glibc
/// keeps what a burst freed (applying 1,000 services, encoding a large
/// `lbctl services` answer) mapped otherwise, and lbd's resident size
/// would stay at its peak; called after such bursts, never per packet.
pub fn trim_heap() {
    #[cfg(target_env = "gnu")]
    // SAFETY: no arguments to validate; glibc's own locking.
    unsafe {
        libc::malloc_trim(0);
    }
}
