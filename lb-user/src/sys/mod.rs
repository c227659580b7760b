//! The host around lbd: kernel tables and processes it consults.
//!
//! - [`neigh`]: next-hop MAC resolution from the kernel's route and
//!   neighbour tables (probing when the entry is missing).

pub mod neigh;
