//! The keepalived keywords lb accepts and does not honour, and why: each
//! is a warning naming the file and line, never silently dropped.

use super::Ctx;
use super::lexer::Node;

impl Ctx {
    /// A keyword lb does not honour: a warning.
    pub(super) fn ignored(&mut self, n: &Node, section: &str) {
        let kw = n.kw();
        let message = match why_ignored(kw) {
            Some(Why::NoEffect(reason)) => {
                format!("`{kw}` in {section} has no effect in lb ({reason}), ignored")
            }
            Some(Why::Unsupported(impact)) => {
                format!("unsupported keyword `{kw}` in {section}, ignored: {impact}")
            }
            None => format!("unsupported keyword `{kw}` in {section}, ignored"),
        };
        self.warn(n.loc(), message);
    }
}

/// Why a keyword is ignored.
#[derive(Debug, Clone, Copy)]
enum Why {
    /// It configures something lb does not have (e-mail, SNMP, ...):
    /// ignoring it changes nothing.
    NoEffect(&'static str),
    /// lb lacks what it asks for: the text says what lb does instead.
    Unsupported(&'static str),
}

/// Keywords (of any section) lb ignores, and why.
const IGNORED: &[(&[&str], Why)] = {
    use Why::{NoEffect, Unsupported};
    &[
        (
            &[
                "notification_email",
                "notification_email_from",
                "smtp_server",
                "smtp_connect_timeout",
                "smtp_helo_name",
                "smtp_alert",
                "smtp_alert_vrrp",
                "smtp_alert_checker",
                "no_email_faults",
            ],
            NoEffect("lb sends no e-mail"),
        ),
        (
            &["enable_script_security"],
            NoEffect(
                "lb does not check script paths; scripts run as lbd's user unless `user` is set",
            ),
        ),
        (
            &[
                "max_auto_priority",
                "vrrp_priority",
                "checker_priority",
                "bfd_priority",
                "vrrp_no_swap",
                "checker_no_swap",
                "bfd_no_swap",
                "vrrp_rt_priority",
                "checker_rt_priority",
                "bfd_rt_priority",
                "vrrp_rlimit_rtime",
                "checker_rlimit_rtime",
                "bfd_rlimit_rtime",
                "child_wait_time",
            ],
            NoEffect("lbd's process scheduling is not configured here"),
        ),
        (
            &[
                "snmp_socket",
                "enable_snmp_keepalived",
                "enable_snmp_checker",
                "enable_snmp_rfc",
                "enable_snmp_rfcv2",
                "enable_snmp_rfcv3",
                "enable_snmp_vrrp",
                "enable_traps",
            ],
            NoEffect("lb has no SNMP agent; see global.metrics_listen"),
        ),
        (
            &["enable_dbus", "dbus_service_name"],
            NoEffect("lb has no D-Bus interface; use lbctl"),
        ),
        (
            &[
                "debug",
                "instance",
                "use_pid_dir",
                "linkbeat_use_polling",
                "dynamic_interfaces",
            ],
            NoEffect("keepalived process option"),
        ),
        (
            &[
                "lvs_flush",
                "lvs_sync_daemon",
                "lvs_timeouts",
                "lvs_flush_onstop",
            ],
            NoEffect("lb does not use IPVS"),
        ),
        (
            &[
                "vrrp_skip_check_adv_addr",
                "skip_check_adv_addr",
                "vrrp_check_unicast_src",
                "vrrp_iptables",
                "vrrp_ipsets",
                "nftables",
            ],
            NoEffect("keepalived-specific packet filtering and checks"),
        ),
        (
            &["native_ipv6"],
            NoEffect("the addresses decide the family"),
        ),
        (
            &["vrrp_strict", "strict_mode"],
            Unsupported("lb does not add keepalived's strict-mode firewall rules"),
        ),
        (
            &["vrrp_mcast_group4", "vrrp_mcast_group6"],
            Unsupported("lb sends to the standard groups 224.0.0.18 / ff02::12 (or unicast peers)"),
        ),
        (
            &["use_vmac", "vmac_xmit_base"],
            Unsupported("lb sends from the interface's own MAC address"),
        ),
        (
            &["virtual_ipaddress_excluded"],
            Unsupported("these addresses are not added or removed by lb"),
        ),
        (
            &[
                "virtual_routes",
                "virtual_rules",
                "static_ipaddress",
                "static_routes",
                "static_rules",
            ],
            Unsupported("lb manages no routes, rules or static addresses"),
        ),
        (
            &["track_bfd", "bfd_instance"],
            Unsupported(
                "lb tracks scripts, interfaces, processes and files only (use a vrrp_script)",
            ),
        ),
        (
            &["net_namespace"],
            Unsupported("run lbd inside the namespace instead"),
        ),
        (
            &["persistence_engine"],
            Unsupported("lb's persistence is by client address (persistence_timeout) only"),
        ),
        (
            &["alpha"],
            Unsupported("lb applies alpha to a whole virtual_server (start_down)"),
        ),
        (
            &["inhibit_on_failure"],
            Unsupported("lb applies inhibit_on_failure to a virtual_server or a real_server"),
        ),
        (
            &["connect_ip", "bind_port", "bind_if", "fwmark"],
            Unsupported(
                "lb's checks connect to the real server's address, from `bindto` if given, on a port the kernel picks",
            ),
        ),
        (
            &[
                "regex",
                "regex_no_match",
                "regex_options",
                "regex_stack",
                "regex_min_offset",
                "regex_max_offset",
            ],
            Unsupported("lb judges an answer by its status codes and digest, not by a regex"),
        ),
        (
            &["uthreshold", "lthreshold"],
            Unsupported("lb has no per-backend connection limits"),
        ),
    ]
};

/// Why lb ignores `kw`; `None` for a keyword it does not know at all.
fn why_ignored(kw: &str) -> Option<Why> {
    IGNORED
        .iter()
        .find(|(keywords, _)| keywords.contains(&kw))
        .map(|&(_, why)| why)
}
