//! lbd's interfaces to operators.
//!
//! - [`control`]: the control socket (JSON over a root-only Unix socket),
//!   its requests and replies, shared with `lbctl`;
//! - [`metrics`]: Prometheus text exposition on `metrics_listen`.

pub mod control;
pub mod metrics;
