//! The host around lbd: kernel tables, interfaces and processes it
//! consults or changes.
//!
//! - [`neigh`]: next-hop MAC resolution from the kernel's route and
//!   neighbour tables (probing when the entry is missing);
//! - [`addr`]: addresses on an interface through rtnetlink: VIPs added and
//!   removed tagged as lbd's own, and the interface's addresses listed;
//! - [`interface`]: interface index and link flags by name;
//! - [`process`]: the user a child runs as, and its process group, killed
//!   as a whole.

pub mod addr;
pub mod interface;
pub mod map_batch;
pub mod neigh;
pub mod process;
