//! Services: what the configuration asks for, kept true as backends come
//! and go.
//!
//! - [`controller`]: configuration, health results and VRRP state in; the
//!   data plane's services and pools out;
//! - [`health`]: the health checks (tcp, http, exec) and the rise/fall
//!   [`health::Checker`].

pub mod controller;
pub mod health;
