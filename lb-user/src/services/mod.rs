//! Services: what the configuration asks for, kept true as backends come
//! and go.
//!
//! - [`controller`]: configuration, health results and VRRP state in; the
//!   data plane's services and pools out;
//! - [`health`]: the health checks (tcp, http, exec) and the rise/fall
//!   [`health::Checker`];
//! - [`etcd`]: backends from etcd prefixes (`backends_from`): one watcher
//!   task per prefix, its membership merged into the services;
//!   [`etcd_register`]: `lbctl register`, the agent a backend runs.

pub mod controller;
pub mod etcd;
pub mod etcd_register;
pub mod health;
