//! Answers to the control socket's requests (`lbctl`).

use tracing::error;

use super::Daemon;
use crate::api::control::{self, DataPlaneStatus, Request, Response, StatusReply, VrrpBrief};
use crate::services::controller::{self, Controller};

impl Daemon {
    /// Answer one request; a reload runs here too, so `lbctl reload`
    /// reports what SIGHUP would only log.
    pub(super) async fn answer(&mut self, request: Request) -> Response {
        match request {
            Request::Reload => match self.reload().await {
                Ok(()) => Response::data("reloaded"),
                Err(e) => {
                    let message =
                        format!("reload failed, still running the previous configuration: {e}");
                    error!("{message}");
                    Response::error(message)
                }
            },
            Request::Status => self.status(),
            Request::Services | Request::Backends => Response::data(self.services_status()),
            Request::Vrrp => Response::data(self.vrrp_status()),
            Request::Stats => match (self.controller.as_ref(), self.dataplane.as_ref()) {
                (Some(c), Some(dp)) => Response::data(controller::traffic_stats(c, dp.ebpf())),
                _ => Response::error("no data plane runs here"),
            },
            Request::Flows { service, limit } => self.flows(service.as_deref(), limit),
            Request::Drain { service, backend } => self.drain(&service, &backend, true),
            Request::Enable { service, backend } => self.drain(&service, &backend, false),
        }
    }

    /// The controller's services, each backend from etcd with its key.
    fn services_status(&self) -> Vec<controller::ServiceStatus> {
        let mut services = self
            .controller
            .as_ref()
            .map(Controller::status)
            .unwrap_or_default();
        let Some(config) = self.config.as_ref() else {
            return services;
        };
        for s in &mut services {
            let Some(cfg) = config.service.iter().find(|c| {
                c.backends_from.is_some() && controller::key_of(c).to_string() == s.service
            }) else {
                continue;
            };
            for b in &mut s.backends {
                b.etcd_key = self.etcd.key_of(cfg, b.address);
            }
        }
        services
    }

    fn status(&self) -> Response {
        let services = self.services_status();
        Response::data(StatusReply {
            router_id: self.name.clone(),
            pid: std::process::id(),
            data_plane: self.dataplane.as_ref().map(|d| DataPlaneStatus {
                interface: d.interface().0.to_owned(),
                mode: d.mode().to_owned(),
                backend_interface: d
                    .backend_interface()
                    .map(|(name, _, mode)| (name.to_owned(), mode.to_owned())),
                pin_path: d.pin_dir().to_owned(),
                connection_table: crate::dataplane::stats::flow_table_usage(d.ebpf()).ok(),
                nat_table: self.nat_census().map(|c| {
                    let flows = self
                        .config
                        .as_ref()
                        .map_or(lb_common::nat::DEFAULT_NAT_FLOWS, |cfg| cfg.nat.flows);
                    (c, flows)
                }),
            }),
            sync: self.sync.as_ref().map(crate::sync::node::Sync::status),
            bgp: self.bgp.as_ref().map(crate::bgp::Announcer::status),
            services: services.len(),
            services_active: services.iter().filter(|s| s.active).count(),
            backends_healthy: services
                .iter()
                .flat_map(|s| &s.backends)
                .filter(|b| b.healthy)
                .count(),
            backends: services.iter().map(|s| s.backends.len()).sum(),
            vrrp: self
                .vrrp_status()
                .into_iter()
                .map(|i| VrrpBrief {
                    name: i.name,
                    state: i.state,
                })
                .collect(),
        })
    }

    /// The connection table's entries (of `service`), most recent first.
    fn flows(&self, service: Option<&str>, limit: usize) -> Response {
        let (Some(ctl), Some(dp)) = (self.controller.as_ref(), self.dataplane.as_ref()) else {
            return Response::error("no data plane runs here");
        };
        let key = match service.map(control::parse_service).transpose() {
            Ok(key) => key,
            Err(e) => return Response::error(e.to_string()),
        };
        let timeouts = self
            .config
            .as_ref()
            .map(|c| c.nat.timeouts())
            .unwrap_or_default();
        match crate::dataplane::stats::flow_list(
            dp.ebpf(),
            &ctl.balancer().translation(),
            Some((dp.pin_dir(), &timeouts)),
            key.as_ref(),
            limit,
        ) {
            Ok(reply) => Response::data(reply),
            Err(e) => Response::error(format!("reading the connection table: {e}")),
        }
    }

    /// Drain (`on`: weight 0, established flows continue) or re-enable a
    /// backend.
    fn drain(&mut self, service: &str, backend: &str, on: bool) -> Response {
        let Some(ctl) = self.controller.as_mut() else {
            return Response::error("no data plane runs here");
        };
        let result = control::parse_service(service)
            .and_then(|key| Ok((key, control::parse_backend(backend)?)))
            .map_err(|e| e.to_string())
            .and_then(|(key, addr)| ctl.set_drained(&key, addr, on).map_err(|e| e.to_string()));
        match result {
            Ok(()) => Response::data(if on { "drained" } else { "enabled" }),
            Err(e) => Response::error(e),
        }
    }
}
