//! Every keepalived keyword lb knows, by block: honoured (the lb field it
//! becomes, any difference in meaning, and the tests that show it) or not
//! (why). `docs/keepalived.md` is this table ([`table`]; a test keeps the
//! two equal), `lbctl convert --keywords` prints it, and the reader's
//! warnings for ignored keywords quote its reasons ([`why_ignored`]).
//!
//! Tests are cited as `FILE::NAME`: FILE is `keepalived` (the converter's
//! tests, `config/keepalived/tests.rs`), `group` (`keepalived/group.rs`),
//! `config` (`config/tests.rs`), `controller` (`services/controller.rs`),
//! `health` (`services/health/`), `track`, `sync`, `machine` (`vrrp/`), or
//! a kernel test file of `lb-lab/tests/` (`vrrp_netns`, `daemon_netns`,
//! `ha`, `persist_test_run`, `nat_netns`).

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::Path;

use super::Ctx;
use super::lexer::Node;
use crate::config::ConfigError;

/// What lb does with a keyword.
#[derive(Debug, Clone, Copy)]
pub enum Support {
    /// lb does what keepalived does.
    Honoured {
        /// The lb field (or behaviour) and any difference in meaning.
        lb: &'static str,
        /// The tests that show it.
        tests: &'static [&'static str],
    },
    /// It configures something lb does not have (e-mail, SNMP, ...):
    /// ignoring it (with a warning) changes nothing.
    NoEffect(&'static str),
    /// lb lacks what it asks for (a warning, or an error where going on
    /// would change what the file means): what lb does instead.
    Unsupported(&'static str),
}

/// Keywords of one block with one treatment.
#[derive(Debug, Clone, Copy)]
pub struct Keyword {
    /// The block they appear in.
    pub block: &'static str,
    /// The keywords (aliases and companions).
    pub names: &'static [&'static str],
    /// What lb does with them.
    pub support: Support,
}

const fn ok(
    block: &'static str,
    names: &'static [&'static str],
    lb: &'static str,
    tests: &'static [&'static str],
) -> Keyword {
    Keyword {
        block,
        names,
        support: Support::Honoured { lb, tests },
    }
}

const fn no_effect(
    block: &'static str,
    names: &'static [&'static str],
    why: &'static str,
) -> Keyword {
    Keyword {
        block,
        names,
        support: Support::NoEffect(why),
    }
}

const fn unsupported(
    block: &'static str,
    names: &'static [&'static str],
    why: &'static str,
) -> Keyword {
    Keyword {
        block,
        names,
        support: Support::Unsupported(why),
    }
}

const TOP: &str = "top level";
const GLOBAL: &str = "global_defs";
const SCRIPT: &str = "vrrp_script";
const INSTANCE: &str = "vrrp_instance";
const GROUP: &str = "vrrp_sync_group";
const PROCESS: &str = "vrrp_track_process";
const FILE: &str = "track_file";
const VS: &str = "virtual_server";
const VSG: &str = "virtual_server_group";
const RS: &str = "real_server";
const CHECK: &str = "checkers";

/// The table, in the order of `docs/keepalived.md`.
pub const KEYWORDS: &[Keyword] = &[
    // ---- the top level
    ok(
        TOP,
        &["include"],
        "read in place, relative to the including file; `*` and `?` expanded",
        &["keepalived::includes_resolve_relative_to_the_file"],
    ),
    ok(
        TOP,
        &[
            "global_defs",
            "vrrp_script",
            "vrrp_instance",
            "vrrp_sync_group",
            "vrrp_track_process",
            "track_file",
            "vrrp_track_file",
            "virtual_server",
            "virtual_server_group",
        ],
        "the blocks below",
        &["keepalived::every_seed_fixture_loads_without_warnings_and_round_trips"],
    ),
    unsupported(
        TOP,
        &["@ID", "$NAME="],
        "conditional lines and parameters are reported and skipped: expand them before",
    ),
    unsupported(
        TOP,
        &["static_ipaddress", "static_routes", "static_rules"],
        "lb manages no routes, rules or static addresses",
    ),
    unsupported(
        TOP,
        &["bfd_instance"],
        "lb tracks scripts, interfaces, processes and files only (use a vrrp_script)",
    ),
    unsupported(
        TOP,
        &["net_namespace"],
        "run lbd inside the namespace instead",
    ),
    no_effect(
        TOP,
        &["linkbeat_use_polling", "use_pid_dir"],
        "keepalived process option",
    ),
    unsupported(
        TOP,
        &["garp_group"],
        "lb sends gratuitous ARP per instance (`garp_*` keywords)",
    ),
    unsupported(
        TOP,
        &["SSL"],
        "SSL_GET checks present no client certificate",
    ),
    // ---- global_defs
    ok(
        GLOBAL,
        &["router_id", "lvs_id"],
        "`global.router_id`",
        &[
            "keepalived::global_defs_apply_and_warn",
            "keepalived::aliases_and_notify_keywords",
        ],
    ),
    ok(
        GLOBAL,
        &["vrrp_version"],
        "the `version` of instances that set none",
        &["keepalived::global_defs_apply_and_warn"],
    ),
    ok(
        GLOBAL,
        &[
            "vrrp_garp_master_delay",
            "vrrp_garp_master_repeat",
            "vrrp_garp_master_refresh",
            "vrrp_garp_master_refresh_repeat",
            "vrrp_garp_interval",
        ],
        "the `garp_*` of instances that set none",
        &[
            "keepalived::global_defs_apply_and_warn",
            "vrrp_netns::new_master_sends_gratuitous_arp",
        ],
    ),
    ok(
        GLOBAL,
        &["script_user"],
        "the `user` of vrrp_scripts and MISC_CHECKs that set none (its primary group; a group word is warned about); notify scripts run as lbd's user",
        &["keepalived::global_defs_apply_and_warn"],
    ),
    no_effect(
        GLOBAL,
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
        "lb sends no e-mail",
    ),
    no_effect(
        GLOBAL,
        &["enable_script_security"],
        "lb does not check script paths; scripts run as lbd's user unless `user` is set",
    ),
    no_effect(
        GLOBAL,
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
        "lbd's process scheduling is not configured here",
    ),
    no_effect(
        GLOBAL,
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
        "lb has no SNMP agent; see global.metrics_listen",
    ),
    no_effect(
        GLOBAL,
        &["enable_dbus", "dbus_service_name"],
        "lb has no D-Bus interface; use lbctl",
    ),
    no_effect(
        GLOBAL,
        &["debug", "instance", "dynamic_interfaces"],
        "keepalived process option",
    ),
    no_effect(
        GLOBAL,
        &[
            "lvs_flush",
            "lvs_sync_daemon",
            "lvs_timeouts",
            "lvs_flush_onstop",
        ],
        "lb does not use IPVS (its connection sync is `[sync]`)",
    ),
    no_effect(
        GLOBAL,
        &[
            "vrrp_skip_check_adv_addr",
            "skip_check_adv_addr",
            "vrrp_check_unicast_src",
            "vrrp_iptables",
            "vrrp_ipsets",
            "nftables",
        ],
        "keepalived-specific packet filtering and checks",
    ),
    no_effect(GLOBAL, &["native_ipv6"], "the addresses decide the family"),
    unsupported(
        GLOBAL,
        &["vrrp_strict", "strict_mode"],
        "lb does not add keepalived's strict-mode firewall rules",
    ),
    unsupported(
        GLOBAL,
        &["vrrp_mcast_group4", "vrrp_mcast_group6"],
        "lb sends to the standard groups 224.0.0.18 / ff02::12 (or unicast peers)",
    ),
    // ---- vrrp_script
    ok(
        SCRIPT,
        &["script"],
        "`script`, run with `/bin/sh -c` (keepalived splits the words itself: shell characters are warned about)",
        &[
            "keepalived::seed_track_scripts",
            "vrrp_netns::failing_track_script_moves_mastership",
        ],
    ),
    ok(
        SCRIPT,
        &[
            "interval",
            "timeout",
            "weight",
            "rise",
            "fall",
            "user",
            "init_fail",
        ],
        "the same fields; times in seconds, fractions allowed; `weight ... reverse` is an error",
        &[
            "keepalived::global_defs_apply_and_warn",
            "track::init_fail_needs_rise_successes",
        ],
    ),
    // ---- vrrp_instance
    ok(
        INSTANCE,
        &["state"],
        "no field: a start-up hint in keepalived too (the election decides); lb always starts as backup",
        &[
            "keepalived::global_defs_apply_and_warn",
            "vrrp_netns::election_crash_failover_restart_and_clean_release",
        ],
    ),
    ok(
        INSTANCE,
        &["interface", "virtual_router_id", "priority", "advert_int"],
        "the same fields (`advert_interval`); version 2 needs whole seconds",
        &[
            "keepalived::seed_lb01_and_lb02",
            "vrrp_netns::keepalived_interop_v2_pass",
        ],
    ),
    ok(
        INSTANCE,
        &["version", "vrrp_version"],
        "`version`; keepalived's default 2 (3 for an IPv6 instance)",
        &[
            "keepalived::ipv6_instances_default_to_version_3_as_in_keepalived",
            "vrrp_netns::keepalived_interop_v3",
        ],
    ),
    ok(
        INSTANCE,
        &["nopreempt", "preempt", "preempt_delay"],
        "`preempt = false`, `preempt_delay`",
        &[
            "keepalived::global_defs_apply_and_warn",
            "vrrp_netns::nopreempt_and_preempt_delay",
        ],
    ),
    ok(
        INSTANCE,
        &["authentication", "auth_type", "auth_pass"],
        "`auth_pass` (version 2, `PASS`); dropped with a warning under version 3, as keepalived ignores it; `AH` is an error",
        &[
            "keepalived::authentication",
            "vrrp_netns::keepalived_interop_v2_pass",
        ],
    ),
    ok(
        INSTANCE,
        &["virtual_ipaddress"],
        "`virtual_ipaddress` (`ADDR[/LEN]`); `dev`, `label`, `brd` and other words after an address are warned about and ignored",
        &[
            "keepalived::seed_lb01_and_lb02",
            "vrrp_netns::election_crash_failover_restart_and_clean_release",
        ],
    ),
    ok(
        INSTANCE,
        &["unicast_src_ip", "mcast_src_ip", "unicast_peer"],
        "`unicast_src_ip`, `unicast_peer`",
        &[
            "keepalived::aliases_and_notify_keywords",
            "vrrp_netns::unicast_peers_with_keepalived",
        ],
    ),
    ok(
        INSTANCE,
        &[
            "garp_master_delay",
            "garp_master_repeat",
            "garp_master_refresh",
            "garp_master_refresh_repeat",
            "garp_interval",
        ],
        "the same `garp_*` fields",
        &[
            "keepalived::global_defs_apply_and_warn",
            "vrrp_netns::new_master_sends_gratuitous_arp",
        ],
    ),
    ok(
        INSTANCE,
        &["track_script", "track_interface"],
        "`track_script`, `track_interface` with their weights (`weight ... reverse` is an error)",
        &[
            "keepalived::global_defs_apply_and_warn",
            "vrrp_netns::tracked_interface_down_means_fault",
        ],
    ),
    ok(
        INSTANCE,
        &["track_process", "track_file"],
        "`track_process`, `track_file` (`NAME [weight N]`)",
        &[
            "keepalived::track_process_and_track_file_keywords",
            "vrrp_netns::track_process_follows_an_nginx_process",
            "vrrp_netns::track_file_value_faults_and_recovers",
        ],
    ),
    ok(
        INSTANCE,
        &[
            "notify_master",
            "notify_backup",
            "notify_fault",
            "notify_stop",
            "notify",
        ],
        "the same fields, run with `/bin/sh -c` and keepalived's arguments (`notify` gets `INSTANCE NAME STATE PRIORITY`); a user after the script is warned about (lbd's user runs them)",
        &[
            "keepalived::aliases_and_notify_keywords",
            "vrrp_netns::notify_hooks_get_keepalived_arguments",
        ],
    ),
    unsupported(
        INSTANCE,
        &["virtual_ipaddress_excluded"],
        "these addresses are not added or removed by lb",
    ),
    unsupported(
        INSTANCE,
        &["virtual_routes", "virtual_rules"],
        "lb manages no routes, rules or static addresses",
    ),
    unsupported(
        INSTANCE,
        &["track_bfd"],
        "lb tracks scripts, interfaces, processes and files only (use a vrrp_script)",
    ),
    unsupported(
        INSTANCE,
        &["use_vmac", "vmac_xmit_base"],
        "lb sends from the interface's own MAC address",
    ),
    // ---- vrrp_sync_group
    ok(
        GROUP,
        &["group"],
        "`[[vrrp_sync_group]] instances`: one member in FAULT takes the others to FAULT, a transition of one to MASTER or BACKUP takes the others along (keepalived's vrrp_sync.c)",
        &[
            "keepalived::sync_group_keywords",
            "sync::own_fault_forces_the_others_to_fault_until_it_recovers",
            "vrrp_netns::sync_group_fails_over_together_when_one_interface_goes_down",
        ],
    ),
    ok(
        GROUP,
        &["notify_master", "notify_backup", "notify_fault", "notify"],
        "the group's own notify scripts (`notify` gets `GROUP NAME STATE`)",
        &[
            "keepalived::sync_group_nat_fixture",
            "vrrp_netns::sync_group_fails_over_together_when_one_interface_goes_down",
        ],
    ),
    ok(
        GROUP,
        &["sync_group_tracking_weight"],
        "`tracking_weight`: without it a member's tracking weights count as 0, as in keepalived",
        &["keepalived::sync_group_keywords"],
    ),
    unsupported(
        GROUP,
        &[
            "track_interface",
            "track_script",
            "track_file",
            "track_process",
        ],
        "track the objects in each member vrrp_instance instead (a member's FAULT takes the group to FAULT)",
    ),
    no_effect(
        GROUP,
        &["global_tracking"],
        "deprecated in keepalived; use sync_group_tracking_weight",
    ),
    unsupported(GROUP, &["notify_stop"], "the members' own notify_stop run"),
    // ---- vrrp_track_process
    ok(
        PROCESS,
        &["process", "param_match", "full_command"],
        "`process` and `parameters`, `param_match`, `full_command`; lb reads /proc every 500 ms (keepalived listens to the proc connector)",
        &[
            "keepalived::track_process_and_track_file_keywords",
            "track::processes_match_by_command_line",
        ],
    ),
    ok(
        PROCESS,
        &[
            "quorum",
            "quorum_max",
            "weight",
            "delay",
            "fork_delay",
            "terminate_delay",
        ],
        "the same fields (`delay` sets both delays); weight default 1",
        &[
            "keepalived::track_process_and_track_file_keywords",
            "track::debounce_waits_for_the_delays",
            "vrrp_netns::track_process_follows_an_nginx_process",
        ],
    ),
    // ---- track_file
    ok(
        FILE,
        &["file", "weight", "init_file"],
        "`[[vrrp_track_file]]` `file`, `weight` (default 1), `init_file [VALUE] [overwrite]`; a missing file reads as 0",
        &[
            "keepalived::track_process_and_track_file_keywords",
            "track::file_values_parse_as_keepalived_reads_them",
            "vrrp_netns::track_file_value_faults_and_recovers",
        ],
    ),
    // ---- virtual_server
    ok(
        VS,
        &["virtual_server IP PORT"],
        "`[[service]] vip`, `port`, and a `[dataplane]` on the interface of the instance holding the first VIP",
        &[
            "keepalived::virtual_server_with_tcp_check",
            "keepalived::a_virtual_server_needs_an_instance_for_the_data_plane",
        ],
    ),
    ok(
        VS,
        &["virtual_server group NAME"],
        "one `[[service]]` per VIP and port of the group, each with the same backends and settings (each checks its backends itself; keepalived checks once for the group)",
        &[
            "keepalived::virtual_server_groups_expand_and_errors_name_their_lines",
            "keepalived::vs_group_sorry_quorum_fixture",
        ],
    ),
    unsupported(
        VS,
        &["virtual_server fwmark"],
        "an error: lb balances addresses and ports, not firewall marks",
    ),
    ok(
        VS,
        &["lb_kind", "lvs_method"],
        "`mode`: `NAT` (keepalived's default) → `nat`, `DR` → `dsr`, `TUN` → `ipip`; one method for all real servers",
        &[
            "keepalived::forwarding_method_and_protocol_keywords",
            "nat_netns::nat_backends_see_the_client_and_answer_through_the_lb",
        ],
    ),
    ok(
        VS,
        &["lb_algo", "lvs_sched"],
        "`sh` → `scheduler = \"source_hash\"` (Maglev on the client address: stateless, as sh); every other scheduler → Maglev, with a notice where the meaning differs (wlc, lc, ...: Maglev does not count connections)",
        &[
            "keepalived::persistence_and_source_hashing",
            "persist_test_run::source_hash_sends_a_client_to_one_backend_without_state",
        ],
    ),
    ok(
        VS,
        &["persistence_timeout", "persistence_granularity"],
        "`persistence_timeout`, `persistence_prefix`: templates in the data plane, carried by the HA sync",
        &[
            "keepalived::persistence_and_source_hashing",
            "persist_test_run::a_client_keeps_its_backend_across_connections_while_others_spread",
            "ha::persistence_keeps_clients_on_their_backends_across_a_failover",
        ],
    ),
    ok(
        VS,
        &["protocol"],
        "`protocol`: TCP or UDP (SCTP is an error)",
        &["keepalived::forwarding_method_and_protocol_keywords"],
    ),
    ok(
        VS,
        &["alpha"],
        "`start_down`: backends start down until their checks pass",
        &[
            "keepalived::alpha_inhibit_and_sorry_server",
            "controller::start_down_keeps_backends_out_until_their_checks_pass",
        ],
    ),
    ok(
        VS,
        &["omega"],
        "`notify_on_stop`: when lbd stops, the up real servers' notify_down and the quorum_down run",
        &[
            "keepalived::vs_group_sorry_quorum_fixture",
            "daemon_netns::a_sorry_server_stands_in_while_no_backend_is_up",
        ],
    ),
    ok(
        VS,
        &["inhibit_on_failure"],
        "`inhibit_on_failure`: a failed backend stays with weight 0 (its flows go on)",
        &[
            "keepalived::alpha_inhibit_and_sorry_server",
            "controller::inhibit_on_failure_keeps_a_failed_backend_with_weight_0",
        ],
    ),
    ok(
        VS,
        &["quorum", "hysteresis", "quorum_up", "quorum_down"],
        "`quorum = { weight, hysteresis, notify_up, notify_down }`: keepalived's rule; without the quorum the sorry server takes new flows (up backends keep theirs)",
        &[
            "keepalived::vs_group_sorry_quorum_fixture",
            "controller::quorum_with_hysteresis_brings_the_sorry_server_and_runs_the_hooks",
            "daemon_netns::a_sorry_server_stands_in_while_no_backend_is_up",
        ],
    ),
    ok(
        VS,
        &["sorry_server", "sorry_server_inhibit"],
        "`sorry_server = { address, port, inhibit }`",
        &[
            "keepalived::alpha_inhibit_and_sorry_server",
            "daemon_netns::a_sorry_server_stands_in_while_no_backend_is_up",
        ],
    ),
    ok(
        VS,
        &["sorry_server_lvs_method"],
        "accepted; lb forwards to the sorry server as to the real servers (a notice when it differs)",
        &["keepalived::alpha_inhibit_and_sorry_server"],
    ),
    ok(
        VS,
        &[
            "delay_loop",
            "retry",
            "nb_get_retry",
            "connect_timeout",
            "delay_before_retry",
            "warmup",
            "virtualhost",
        ],
        "defaults for the real servers' checkers (see checkers)",
        &[
            "keepalived::virtual_server_with_tcp_check",
            "keepalived::retries_follow_delay_before_retry_and_warmup",
        ],
    ),
    ok(
        VS,
        &["real_server"],
        "a `backend`; a port other than the virtual server's in `nat` (and `fullnat`) only",
        &["keepalived::nat_is_keepalived_default_and_real_servers_may_change_the_port"],
    ),
    unsupported(
        VS,
        &["persistence_engine"],
        "lb's persistence is by client address (persistence_timeout) only",
    ),
    // ---- virtual_server_group
    ok(
        VSG,
        &["IP PORT", "IP-END PORT", "IP-IP PORT", "IP/LEN PORT"],
        "the VIP:ports of `virtual_server group NAME`, as keepalived reads them (IPv4 range ends decimal, IPv6 hex); no port = every port",
        &[
            "group::entries_expand_as_keepalived_reads_them",
            "keepalived::virtual_server_groups_expand_and_errors_name_their_lines",
        ],
    ),
    unsupported(
        VSG,
        &["fwmark"],
        "skipped with a warning: lb balances addresses and ports, not firewall marks",
    ),
    // ---- real_server
    ok(
        RS,
        &["weight"],
        "`weight` (0 = drained)",
        &["keepalived::virtual_server_with_tcp_check"],
    ),
    ok(
        RS,
        &["inhibit_on_failure"],
        "the backend's own `inhibit_on_failure`",
        &["keepalived::alpha_inhibit_and_sorry_server"],
    ),
    ok(
        RS,
        &["notify_up", "notify_down"],
        "the backend's `notify_up`, `notify_down`",
        &[
            "keepalived::vs_group_sorry_quorum_fixture",
            "daemon_netns::a_sorry_server_stands_in_while_no_backend_is_up",
        ],
    ),
    ok(
        RS,
        &["lvs_method", "lb_kind"],
        "accepted when it is the virtual server's; another method is an error (lb forwards to all backends of a service the same way)",
        &["keepalived::forwarding_method_and_protocol_keywords"],
    ),
    ok(
        RS,
        &[
            "delay_loop",
            "retry",
            "nb_get_retry",
            "connect_timeout",
            "delay_before_retry",
            "warmup",
            "virtualhost",
        ],
        "defaults for its checkers (see checkers)",
        &["keepalived::each_real_server_keeps_its_own_checkers"],
    ),
    ok(
        RS,
        &[
            "TCP_CHECK",
            "HTTP_GET",
            "SSL_GET",
            "DNS_CHECK",
            "SMTP_CHECK",
            "MISC_CHECK",
        ],
        "the backend's `health` (`tcp`, `http`, `https`, `dns`, `smtp`, `exec`); the service's `health` when every real server has the same one; several on a real server must all pass, none = always up",
        &[
            "keepalived::each_real_server_keeps_its_own_checkers",
            "keepalived::mixed_checkers_fixture",
            "daemon_netns::per_backend_checks_take_out_exactly_the_failing_backend",
            "daemon_netns::https_checks_judge_urls_digests_and_certificates",
        ],
    ),
    unsupported(
        RS,
        &["BFD_CHECK", "PING_CHECK", "UDP_CHECK", "FILE_CHECK"],
        "warned about and ignored (the real server has the other checkers, or none): lb checks with TCP_CHECK, HTTP_GET, SSL_GET, DNS_CHECK, SMTP_CHECK or MISC_CHECK",
    ),
    unsupported(
        RS,
        &["uthreshold", "lthreshold"],
        "lb has no per-backend connection limits",
    ),
    unsupported(
        RS,
        &["alpha"],
        "lb applies alpha to a whole virtual_server (start_down)",
    ),
    // ---- checkers
    ok(
        CHECK,
        &["delay_loop", "connect_timeout", "misc_timeout"],
        "`interval` (default 60s), `timeout` (default 5s; MISC_CHECK: delay_loop)",
        &[
            "keepalived::virtual_server_with_http_get_and_defaults",
            "keepalived::virtual_server_with_misc_check",
        ],
    ),
    ok(
        CHECK,
        &["retry", "nb_get_retry", "delay_before_retry"],
        "`fall = retry + 1`, `rise = 1` (defaults: 1 retry, DNS_CHECK 3, MISC_CHECK 0); `retry_interval` (default 1s)",
        &[
            "keepalived::retries_follow_delay_before_retry_and_warmup",
            "health::a_failing_backend_is_retried_after_the_retry_interval_until_it_is_down",
        ],
    ),
    ok(
        CHECK,
        &["warmup"],
        "`warmup`: the first check waits a random delay up to it",
        &["keepalived::retries_follow_delay_before_retry_and_warmup"],
    ),
    ok(
        CHECK,
        &["connect_port", "bindto"],
        "`port` (when not the real server's), `bind`",
        &[
            "keepalived::each_real_server_keeps_its_own_checkers",
            "health::http_checks_every_url_with_its_status_codes_and_digest",
        ],
    ),
    ok(
        CHECK,
        &["url", "path", "status_code", "digest"],
        "`path`, `expect_status` (codes and ranges; default any 2xx, as keepalived), `digest` (MD5 of the body); several urls → `urls`, all must pass",
        &[
            "keepalived::ssl_get_dns_check_and_misc_dynamic",
            "health::http_checks_every_url_with_its_status_codes_and_digest",
        ],
    ),
    ok(
        CHECK,
        &["virtualhost"],
        "`virtualhost` (the Host header, and the TLS name); one per check: urls with different ones get a notice",
        &[
            "keepalived::mixed_checkers_fixture",
            "daemon_netns::https_checks_judge_urls_digests_and_certificates",
        ],
    ),
    ok(
        CHECK,
        &["http_protocol", "enable_sni"],
        "accepted: lb speaks HTTP/1.1 and sends the virtual host as SNI when it is a name",
        &["keepalived::aliases_and_notify_keywords"],
    ),
    ok(
        CHECK,
        &["type", "name"],
        "DNS_CHECK: `dns_type` (default SOA), `dns_name` (default `.`)",
        &[
            "keepalived::ssl_get_dns_check_and_misc_dynamic",
            "health::probes_a_local_server",
        ],
    ),
    ok(
        CHECK,
        &["helo_name"],
        "SMTP_CHECK: `smtp_helo` (default keepalived's, `smtpchecker.keepalived.org`); `host` sub-blocks (deprecated in keepalived) are warned about",
        &["keepalived::smtp_check", "health::greeting_helo_and_quit"],
    ),
    ok(
        CHECK,
        &["misc_path", "misc_dynamic", "user"],
        "`command` (the real server's address becomes `$BACKEND`), `dynamic_weight` (exit 2–255 sets weight code − 2), `user`",
        &[
            "keepalived::virtual_server_with_misc_check",
            "health::exit_codes_pass_fail_or_set_the_weight",
            "controller::a_dynamic_check_sets_the_weight_until_it_sets_another",
        ],
    ),
    unsupported(
        CHECK,
        &["connect_ip", "bind_port", "bind_if", "fwmark"],
        "lb's checks connect to the real server's address, from `bindto` if given, on a port the kernel picks",
    ),
    unsupported(
        CHECK,
        &[
            "regex",
            "regex_no_match",
            "regex_options",
            "regex_stack",
            "regex_min_offset",
            "regex_max_offset",
        ],
        "lb judges an answer by its status codes and digest, not by a regex",
    ),
    unsupported(
        CHECK,
        &["inhibit_on_failure"],
        "lb applies inhibit_on_failure to a virtual_server or a real_server",
    ),
];

/// Why lb ignores `kw` (in any block), as the reader's warning says it;
/// `None` for a keyword it honours or does not know at all.
pub(super) fn why_ignored(kw: &str) -> Option<Support> {
    KEYWORDS
        .iter()
        .filter(|k| !matches!(k.support, Support::Honoured { .. }))
        .find(|k| k.names.contains(&kw))
        .map(|k| k.support)
}

/// The table as Markdown: one section per block.
#[must_use]
pub fn table() -> String {
    let mut out = String::new();
    let mut block = "";
    for k in KEYWORDS {
        if k.block != block {
            block = k.block;
            let _ = write!(
                out,
                "{}### {block}\n\n| keepalived | lb | shown by |\n|---|---|---|\n",
                if out.is_empty() { "" } else { "\n" }
            );
        }
        let names = k
            .names
            .iter()
            .map(|n| format!("`{n}`"))
            .collect::<Vec<_>>()
            .join(", ");
        let (what, tests) = match k.support {
            Support::Honoured { lb, tests } => (
                format!("honoured: {lb}"),
                tests
                    .iter()
                    .map(|t| format!("`{t}`"))
                    .collect::<Vec<_>>()
                    .join(", "),
            ),
            Support::NoEffect(why) => (format!("no effect: {why}"), String::new()),
            Support::Unsupported(why) => (format!("not supported: {why}"), String::new()),
        };
        let _ = writeln!(out, "| {names} | {} | {tests} |", what.replace('|', "\\|"));
    }
    out
}

/// The keywords of one keepalived.conf, by what lb does with them.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Classified {
    /// Honoured.
    pub honoured: BTreeSet<String>,
    /// Known, and not honoured (warned about, with why).
    pub ignored: BTreeSet<String>,
    /// Not in the table (warned about).
    pub unknown: BTreeSet<String>,
}

impl Classified {
    /// As comment lines for the head of `lbctl convert`'s output.
    #[must_use]
    pub fn comments(&self) -> String {
        let mut out = String::new();
        for (what, set) in [
            ("honoured", &self.honoured),
            ("not honoured (see the warnings)", &self.ignored),
            ("unknown to lb (see the warnings)", &self.unknown),
        ] {
            if !set.is_empty() {
                let list = set.iter().map(String::as_str).collect::<Vec<_>>().join(" ");
                let _ = writeln!(out, "# {what}: {list}");
            }
        }
        out
    }
}

/// The keywords of the keepalived.conf `text` (the file `path`, includes
/// expanded), classified by the table in the block each appears in.
///
/// # Errors
/// The file (or an included one) does not parse.
pub fn classify(text: &str, path: &Path) -> Result<Classified, ConfigError> {
    let mut ctx = Ctx::new(path);
    let tree = ctx.parse_tree(text)?;
    let mut out = Classified::default();
    walk(&tree, TOP, &mut out);
    Ok(out)
}

/// Classify `nodes`, keywords of the table's `block`, and the keyword
/// blocks inside them.
fn walk(nodes: &[Node], block: &str, out: &mut Classified) {
    for n in nodes {
        let kw = n.kw();
        let named = |name: &str| {
            name == kw
                || name.split_once(' ').is_some_and(|(first, rest)| {
                    first == kw
                        && n.args
                            .first()
                            .is_some_and(|a| rest.starts_with(a.text.as_str()))
                })
        };
        let entry = KEYWORDS
            .iter()
            .filter(|k| k.block == block)
            .find(|k| k.names.iter().any(|name| named(name)));
        let set = match entry.map(|k| k.support) {
            Some(Support::Honoured { .. }) => &mut out.honoured,
            Some(_) => &mut out.ignored,
            None if kw.starts_with(['@', '$']) => &mut out.ignored,
            None => &mut out.unknown,
        };
        set.insert(kw.to_owned());
        let inner = match (block, kw) {
            (
                TOP,
                "global_defs" | "vrrp_script" | "vrrp_instance" | "vrrp_sync_group"
                | "vrrp_track_process" | "virtual_server",
            ) => kw,
            (TOP, "track_file" | "vrrp_track_file") => FILE,
            (INSTANCE, "authentication") => INSTANCE,
            (VS, "real_server") => RS,
            (RS, k) if k.ends_with("_CHECK") || k.ends_with("_GET") => CHECK,
            (CHECK, "url") => CHECK,
            _ => continue,
        };
        if let Some(b) = &n.block {
            walk(b, inner, out);
        }
    }
}
