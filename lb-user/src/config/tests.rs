//! The TOML reader: good files with their defaults, and golden errors
//! (file, line, field, message) for broken ones.

use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use serde::Serialize;

use super::*;

fn parse(text: &str) -> Result<Config, String> {
    Config::parse(text, Path::new("lb.toml")).map_err(|e| e.to_string())
}

/// Each file of `cases` is refused with an error that `matches` the one
/// wanted; all that do not are listed in the failure.
fn assert_errors<'w>(
    cases: impl IntoIterator<Item = (String, &'w str)>,
    matches: impl Fn(&str, &'w str) -> bool,
) {
    let mut wrong = Vec::new();
    for (text, want) in cases {
        let got = parse(&text).unwrap_err();
        if !matches(&got, want) {
            wrong.push(format!(" got: {got}\nwant: {want}"));
        }
    }
    assert!(wrong.is_empty(), "\n{}", wrong.join("\n"));
}

const GOOD: &str = r#"
[global]
router_id = "lb01"

[[vrrp_script]]
name = "check_web"
script = "true"
interval = "2s"
weight = 20

[[vrrp_instance]]
name = "VI_1"
interface = "eth0"
virtual_router_id = 50
priority = 150
advert_interval = "100ms"
virtual_ipaddress = ["198.18.0.100/24", "198.18.0.101"]
track_script = [{ name = "check_web" }]
track_interface = ["eth0", { name = "eth1", weight = -30 }]
"#;

#[test]
fn a_good_file_loads_with_defaults() {
    let c = parse(GOOD).unwrap();
    let v = &c.vrrp_instance[0];
    assert_eq!(v.advert_interval.0, Duration::from_millis(100));
    assert_eq!(v.version, 3);
    assert!(v.preempt);
    assert_eq!(v.vips().unwrap()[1].prefix, 32);
    assert_eq!(v.track_interface[1].weight, -30);
    assert_eq!(c.vrrp_script[0].rise, 1);
    assert_eq!(c.global.bpf_pin_path, Path::new("/sys/fs/bpf/lb"));
}

#[test]
fn errors_name_file_line_and_field() {
    let cases = [
        (
            GOOD.replace("priority = 150", "priority = 0"),
            "lb.toml:15: vrrp_instance[0].priority: 0 is reserved (a master sends it when it stops): 1..=255, 255 = address owner",
        ),
        (
            GOOD.replace("\"100ms\"", "\"105ms\""),
            "lb.toml:16: vrrp_instance[0].advert_interval: 105ms is not allowed: a multiple of 10ms from 10ms to 40.95s for version 3",
        ),
        (
            GOOD.replace("198.18.0.101", "198.18.0.300"),
            "lb.toml:17: vrrp_instance[0].virtual_ipaddress: \"198.18.0.300\" is not an address: write \"198.18.0.100/24\" or \"2001:db8::100/64\"",
        ),
        (
            GOOD.replace("name = \"check_web\" }", "name = \"check_db\" }"),
            "lb.toml:18: vrrp_instance[0].track_script: no [[vrrp_script]] named \"check_db\"",
        ),
        (
            GOOD.replace("priority = 150", "priority = 150\nprio = 1"),
            "lb.toml:16: unknown field `prio`, expected one of",
        ),
        (
            GOOD.replace("interval = \"2s\"", "interval = \"2 seconds\""),
            "lb.toml:8: invalid duration \"2 seconds\": write a number with a unit",
        ),
    ];
    for (text, want) in cases {
        let got = parse(&text).unwrap_err();
        assert!(got.starts_with(want), "\n got: {got}\nwant: {want}");
    }
}

const WITH_SERVICE: &str = r#"[dataplane]
interface = "eth0"

[[vrrp_instance]]
name = "VI_1"
interface = "eth0"
virtual_router_id = 50
virtual_ipaddress = ["198.18.0.100/24"]

[[service]]
vip = "198.18.0.100"
port = 80
mode = "dsr"
ring_size = 65537
health = { kind = "http", interval = "1s" }
backend = [
  { address = "198.18.0.11" },
  { address = "198.18.0.12", weight = 2 },
]
"#;

/// Golden messages for broken files: each names file, line and field
/// and says what is allowed.
#[test]
fn golden_errors_for_broken_files() {
    let s = WITH_SERVICE;
    let cases: Vec<(String, &str)> = vec![
        (
            s.replace("vip = \"198.18.0.100\"", "vip = \"198.18.0.300\""),
            "lb.toml:11: invalid IP address syntax",
        ),
        (
            s.replace("port = 80", "port = 80\nbackends = []"),
            "lb.toml:13: unknown field `backends`, expected one of `vip`, `port`, `protocol`, `mode`, `snat_address`, `scheduler`, `ring_size`, `on_no_backend`, `vrrp_instance`, `active_active`, `announce`, `health`, `start_down`, `inhibit_on_failure`, `sorry_server`, `persistence_timeout`, `persistence_prefix`, `quorum`, `notify_on_stop`, `backends_from`, `backend`",
        ),
        (
            format!("{s}\n[[service]]\nvip = \"198.18.0.100\"\nport = 80\nbackend = []\n"),
            "lb.toml:22: service[1].vip: duplicate service 198.18.0.100:80/tcp",
        ),
        (
            s.replace(
                "virtual_router_id = 50",
                "virtual_router_id = 50\npriority = 0",
            ),
            "lb.toml:8: vrrp_instance[0].priority: 0 is reserved (a master sends it when it stops): 1..=255, 255 = address owner",
        ),
        (
            s.replace("ring_size = 65537", "ring_size = 65536"),
            "lb.toml:14: service[0].ring_size: 65536 is not a prime: use 65537 (default), 131071, 251, ...",
        ),
        (
            s.replace("kind = \"http\"", "kind = \"exec\""),
            "lb.toml:15: service[0].health: kind = \"exec\" needs command = \"...\"",
        ),
        (
            s.replace(
                "{ address = \"198.18.0.11\" }",
                "{ address = \"198.18.0.11\", port = 8080 }",
            ),
            "lb.toml:16: service[0].backend: 198.18.0.11: port 8080 differs from the service's 80: dsr and ipip forward to the same port",
        ),
        (
            s.replace("[dataplane]\ninterface = \"eth0\"\n", ""),
            "lb.toml:8: service: services need a [dataplane] table (interface = ...)",
        ),
        (
            s.replace("interval = \"1s\"", "interval = \"1 s\""),
            "lb.toml:15: invalid duration \"1 s\": write a number with a unit: ms, s, m or h (\"1s\", \"100ms\")",
        ),
        (
            s.replace(
                "{ address = \"198.18.0.12\", weight = 2 }",
                "{ address = \"2001:db8::12\" }",
            ),
            "lb.toml:16: service[0].backend: 2001:db8::12 is not of the VIP's address family",
        ),
        (
            s.replace(
                "virtual_router_id = 50",
                "virtual_router_id = 50\nauth_pass = \"1111\"",
            ),
            "lb.toml:8: vrrp_instance[0].auth_pass: VRRPv3 has no authentication: remove it, or use version = 2",
        ),
        (
            s.replace(
                "interface = \"eth0\"\n\n[[vrrp",
                "interface = \"eth0\"\nxdp_mode = \"fast\"\n\n[[vrrp",
            ),
            "lb.toml:3: dataplane.xdp_mode: \"fast\" is not a mode: auto, native or generic",
        ),
        (
            s.replace(
                "interface = \"eth0\"\n\n[[vrrp",
                "interface = \"eth0\"\nconntrack_entries = 4\n\n[[vrrp",
            ),
            "lb.toml:3: dataplane.conntrack_entries: 4 is too small: at least 8",
        ),
        (
            s.replace(
                "interface = \"eth0\"\n\n[[vrrp",
                "interface = \"eth0\"\nconntrack_entries = 100000000\n\n[[vrrp",
            ),
            "lb.toml:3: dataplane.conntrack_entries: 100000000 is too large: at most 67108864 (72 bytes per flow)",
        ),
        (
            s.replace(
                "interface = \"eth0\"\n\n[[vrrp",
                "interface = \"eth0\"\nbackend_pairs = 16\n\n[[vrrp",
            ),
            "lb.toml:3: dataplane.backend_pairs: 16 is out of range: 64 to 1048576 (48 bytes each, plus 48 per CPU)",
        ),
        (
            format!(
                "{s}\n[[vrrp_instance]]\nname = \"VI_2\"\ninterface = \"eth0\"\nvirtual_router_id = 50\nvirtual_ipaddress = [\"198.18.0.101\"]\n"
            ),
            "lb.toml:24: vrrp_instance[1].virtual_router_id: 50 is already used on eth0 by another instance",
        ),
    ];
    assert_errors(cases, str::starts_with);
    assert!(parse(s).is_ok(), "the base file is valid");
}

/// A backend's own `health`: one table or several, each of any kind;
/// without one, the service's. Checked as the service's is.
#[test]
fn a_backend_may_carry_its_own_checks() {
    let text = WITH_SERVICE.replace(
        "  { address = \"198.18.0.12\", weight = 2 },\n]",
        "  { address = \"198.18.0.12\", weight = 2, health = { kind = \"tcp\", port = 8080 } },\n]\n\
         [[service.backend]]\naddress = \"198.18.0.13\"\n\
         [[service.backend.health]]\nkind = \"exec\"\ncommand = \"true\"\n\
         [[service.backend.health]]\nkind = \"http\"\npath = \"/ready\"\n",
    );
    // An inline array of tables and [[service.backend]] do not mix in
    // one service: write the whole list one way.
    let text = text.replace("backend = [\n", "[[service.backend]]\n").replace(
        "  { address = \"198.18.0.11\" },\n  { address = \"198.18.0.12\", weight = 2, health = { kind = \"tcp\", port = 8080 } },\n]\n",
        "address = \"198.18.0.11\"\n[[service.backend]]\naddress = \"198.18.0.12\"\nweight = 2\nhealth = { kind = \"tcp\", port = 8080 }\n",
    );
    let c = parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let svc = &c.service[0];
    let b = &svc.backend;
    assert!(b[0].health.is_empty());
    assert_eq!(b[0].checks(&svc.health), std::slice::from_ref(&svc.health));
    assert_eq!(b[1].health.len(), 1);
    assert_eq!(
        (b[1].health[0].kind, b[1].health[0].port),
        (HealthKind::Tcp, Some(8080))
    );
    let kinds: Vec<HealthKind> = b[2].health.iter().map(|h| h.kind).collect();
    assert_eq!(kinds, [HealthKind::Exec, HealthKind::Http]);
    assert_eq!(b[2].checks(&svc.health).len(), 2);
    // Written out and read back: the same.
    assert_eq!(parse(&c.to_toml().unwrap()).unwrap(), c);
    let bad = text.replace("command = \"true\"\n", "");
    let err = parse(&bad).unwrap_err();
    assert!(
        err.contains("service[0].backend: 198.18.0.13: health: kind = \"exec\" needs command"),
        "{err}"
    );
}

/// A sorry server: of the VIP's family, not one of the backends, on the
/// service's port unless the service translates it.
#[test]
fn sorry_server_is_checked() {
    let with = |sorry: &str| {
        WITH_SERVICE.replace(
            "ring_size = 65537\n",
            &format!("ring_size = 65537\nsorry_server = {sorry}\n"),
        )
    };
    let ok = parse(&with("{ address = \"198.18.0.99\", inhibit = true }")).unwrap();
    let s = ok.service[0].sorry_server.as_ref().unwrap();
    assert!(s.inhibit && s.port.is_none());
    for (sorry, want) in [
        (
            "{ address = \"2001:db8::99\" }",
            "service[0].sorry_server: 2001:db8::99 is not of the VIP's address family",
        ),
        (
            "{ address = \"198.18.0.11\" }",
            "service[0].sorry_server: 198.18.0.11 is also a backend",
        ),
        (
            "{ address = \"198.18.0.99\", port = 8080 }",
            "service[0].sorry_server: port 8080 differs from the service's 80",
        ),
    ] {
        let err = parse(&with(sorry)).unwrap_err();
        assert!(err.contains(want), "{sorry}: {err}");
    }
}

#[test]
fn quorum_and_notify_commands_are_checked() {
    let with = |extra: &str, backend: &str| {
        WITH_SERVICE
            .replace(
                "ring_size = 65537\n",
                &format!("ring_size = 65537\n{extra}\n"),
            )
            .replace(
                "{ address = \"198.18.0.11\" }",
                &format!("{{ address = \"198.18.0.11\"{backend} }}"),
            )
    };
    let ok = parse(&with(
        "notify_on_stop = true\nquorum = { weight = 2, hysteresis = 1, notify_down = \"logger down\" }",
        ", notify_up = \"logger up\"",
    ))
    .unwrap();
    let svc = &ok.service[0];
    let q = svc.quorum.as_ref().unwrap();
    assert_eq!(
        (q.weight, q.hysteresis, q.notify_up.as_deref()),
        (2, 1, None)
    );
    assert!(svc.notify_on_stop);
    assert_eq!(svc.backend[0].notify_up.as_deref(), Some("logger up"));
    // The defaults: weight 1, hysteresis 0.
    let ok = parse(&with("quorum = {}", "")).unwrap();
    let q = ok.service[0].quorum.as_ref().unwrap();
    assert_eq!((q.weight, q.hysteresis), (1, 0));
    for (extra, backend, want) in [
        (
            "quorum = { weight = 0 }",
            "",
            "service[0].quorum: weight 0 is out of range: from 1",
        ),
        (
            "quorum = { notify_up = \" \" }",
            "",
            "service[0].quorum: a notify command is empty",
        ),
        (
            "",
            ", notify_down = \"\"",
            "service[0].backend: 198.18.0.11: a notify command is empty",
        ),
        (
            "quorum = { weigth = 2 }",
            "",
            "unknown field `weigth`, expected one of `weight`, `hysteresis`, `notify_up`, `notify_down`",
        ),
    ] {
        let err = parse(&with(extra, backend)).unwrap_err();
        assert!(err.contains(want), "{extra} {backend}: {err}");
    }
}

#[test]
fn persistence_is_checked() {
    let with = |extra: &str| {
        WITH_SERVICE.replace(
            "ring_size = 65537\n",
            &format!("ring_size = 65537\n{extra}\n"),
        )
    };
    let ok = parse(&with(
        "persistence_timeout = \"5m\"\npersistence_prefix = 24\nscheduler = \"source_hash\"",
    ))
    .unwrap();
    let svc = &ok.service[0];
    assert_eq!(svc.persistence_timeout, Some(Dur(Duration::from_mins(5))));
    assert_eq!(svc.persistence_prefix, Some(24));
    assert_eq!(svc.scheduler, Scheduler::SourceHash);
    for (extra, want) in [
        (
            "persistence_prefix = 24",
            "service[0].persistence_prefix: needs persistence_timeout",
        ),
        (
            "persistence_timeout = \"5m\"\npersistence_prefix = 33",
            "service[0].persistence_prefix: 33 is longer than a client address of this service (32 bits)",
        ),
        (
            "persistence_timeout = \"500ms\"",
            "service[0].persistence_timeout: 500ms is out of range: from 1s",
        ),
    ] {
        let err = parse(&with(extra)).unwrap_err();
        assert!(err.contains(want), "{extra}: {err}");
    }
}

/// The fields of `https`, `dns` and dynamic `exec` checks: read (status
/// codes as a number, a range or a list), written back, and refused where
/// they do not belong.
#[test]
fn check_kinds_and_their_fields() {
    let with = |health: &str| {
        WITH_SERVICE.replace(
            "health = { kind = \"http\", interval = \"1s\" }",
            &format!("health = {{ {health} }}"),
        )
    };
    let ok = parse(&with(
        r#"kind = "https", expect_status = [200, "300-302"], virtualhost = "www.example.test", tls_ca = "/etc/lb/ca.pem", bind = "198.18.0.2", urls = [{ path = "/a" }, { path = "/b", expect_status = 204, digest = "d41d8cd98f00b204e9800998ecf8427e" }]"#,
    ))
    .unwrap();
    let h = &ok.service[0].health;
    assert_eq!(h.kind, HealthKind::Https);
    assert_eq!(h.expect_status.to_string(), "200, 300-302");
    assert_eq!(h.urls.len(), 2);
    assert_eq!(h.urls[1].expect_status.as_ref().unwrap().to_string(), "204");
    let text = toml::to_string(&ok).unwrap();
    assert_eq!(parse(&text).unwrap(), ok, "written back: {text}");
    let dns = parse(&with(
        r#"kind = "dns", dns_name = "lb.example.test", dns_type = "AAAA""#,
    ))
    .unwrap();
    assert_eq!(dns.service[0].health.dns_type.as_deref(), Some("AAAA"));
    let smtp = parse(&with(r#"kind = "smtp", smtp_helo = "lb1.example.test""#)).unwrap();
    assert_eq!(
        smtp.service[0].health.smtp_helo.as_deref(),
        Some("lb1.example.test")
    );
    assert!(
        parse(&with(
            r#"kind = "exec", command = "true", dynamic_weight = true"#
        ))
        .is_ok()
    );
    for (health, want) in [
        (
            r#"kind = "tcp", urls = [{ path = "/" }]"#,
            "urls, digest and virtualhost is for kind = \"http\" and \"https\" only",
        ),
        (
            r#"kind = "http", tls_ca = "/ca.pem""#,
            "tls_ca is for kind = \"https\" only",
        ),
        (
            r#"kind = "tcp", dns_name = "x""#,
            "dns_name and dns_type is for kind = \"dns\" only",
        ),
        (
            r#"kind = "tcp", smtp_helo = "x""#,
            "smtp_helo is for kind = \"smtp\" only",
        ),
        (
            r#"kind = "smtp", smtp_helo = "two words""#,
            "smtp_helo \"two words\" is not a name",
        ),
        (
            r#"kind = "tcp", dynamic_weight = true"#,
            "dynamic_weight is for kind = \"exec\" only",
        ),
        (
            r#"kind = "http", bind = "2001:db8::1""#,
            "bind must be of the VIP's address family",
        ),
        (
            r#"kind = "http", path = "/x", urls = [{ path = "/" }]"#,
            "give the paths in urls = [...] or path, not both",
        ),
        (
            r#"kind = "http", digest = "abc""#,
            "digest: \"abc\" is not an MD5 digest (32 hex digits)",
        ),
        (
            r#"kind = "http", path = "ready""#,
            "path \"ready\" must start with /",
        ),
        (
            r#"kind = "http", expect_status = "299-200""#,
            "299-200 is backwards",
        ),
        (
            r#"kind = "http", expect_status = 42"#,
            "42-42 is not within 100-999",
        ),
        (
            r#"kind = "dns", dns_type = "PTR""#,
            "dns_type \"PTR\" is not one of A, NS, CNAME, SOA, MX, TXT, AAAA",
        ),
        (
            r#"kind = "dns", dns_name = "a..b""#,
            "dns_name: \"a..b\" has an empty label",
        ),
    ] {
        let err = parse(&with(health)).unwrap_err();
        assert!(err.contains(want), "{health}: {err}");
    }
}

#[test]
fn backend_interface_is_a_second_interface() {
    let one_arm = WITH_SERVICE;
    // The first `interface` is [dataplane]'s.
    let two = one_arm.replacen(
        "interface = \"eth0\"\n",
        "interface = \"eth0\"\nbackend_interface = \"eth1\"\n",
        1,
    );
    let dp = parse(&two).unwrap().dataplane.unwrap();
    assert_eq!(dp.backend_interface.as_deref(), Some("eth1"));
    assert_eq!(
        parse(one_arm).unwrap().dataplane.unwrap().backend_interface,
        None
    );
    let same = two.replace(
        "backend_interface = \"eth1\"",
        "backend_interface = \"eth0\"",
    );
    let err = parse(&same).unwrap_err();
    assert!(
        err.starts_with("lb.toml:3: dataplane.backend_interface: \"eth0\" is the interface itself"),
        "{err}"
    );
}

/// Every keyword value reads back from its `Display`, and serde writes
/// the same spelling.
#[test]
fn keywords_parse_and_display_their_spelling() {
    fn check<T>(all: &[T], spellings: &[&str])
    where
        T: Copy + fmt::Debug + PartialEq + fmt::Display + FromStr + Serialize,
        T::Err: fmt::Debug,
    {
        let shown: Vec<String> = all.iter().map(ToString::to_string).collect();
        assert_eq!(shown, spellings);
        for &v in all {
            assert_eq!(v.to_string().parse::<T>().unwrap(), v);
            assert_eq!(serde_json::to_value(v).unwrap(), v.to_string(), "{v:?}");
        }
    }
    check(Protocol::ALL, &["tcp", "udp"]);
    check(Mode::ALL, &["dsr", "ipip", "nat", "fullnat"]);
    check(Scheduler::ALL, &["maglev", "source_hash"]);
    check(NoBackend::ALL, &["drop", "pass"]);
    check(
        HealthKind::ALL,
        &["tcp", "http", "https", "dns", "smtp", "exec", "none"],
    );
    check(XdpMode::ALL, &["auto", "native", "generic"]);
    assert_eq!(Protocol::default(), Protocol::Tcp);
    assert_eq!(Mode::default(), Mode::Dsr);
    assert_eq!(Scheduler::default(), Scheduler::Maglev);
    assert_eq!(NoBackend::default(), NoBackend::Drop);
    assert_eq!(HealthKind::default(), HealthKind::Tcp);
    assert_eq!(XdpMode::default(), XdpMode::Auto);
    // Spellings are exact: keepalived's upper case is its reader's job.
    assert!("TCP".parse::<Protocol>().is_err());
    assert!("Dsr".parse::<Mode>().is_err());
}

/// The defaults the file gets when it leaves the keyword fields out.
#[test]
fn keyword_defaults_apply() {
    let text = "[dataplane]\ninterface = \"eth0\"\n\n[[service]]\nvip = \"198.18.0.100\"\nport = 80\nbackend = []\n";
    let c = parse(text).unwrap();
    let s = &c.service[0];
    assert_eq!(
        (
            s.protocol,
            s.mode,
            s.scheduler,
            s.on_no_backend,
            s.health.kind
        ),
        (
            Protocol::Tcp,
            Mode::Dsr,
            Scheduler::Maglev,
            NoBackend::Drop,
            HealthKind::Tcp
        )
    );
    assert_eq!(c.dataplane.unwrap().xdp_mode, XdpMode::Auto);
}

#[test]
fn keywords_convert_to_the_data_planes_types() {
    use crate::dataplane::{balancer, loader::AttachMode};
    assert_eq!(
        balancer::Protocol::from(Protocol::Udp),
        balancer::Protocol::Udp
    );
    assert_eq!(
        balancer::Protocol::from(Protocol::Tcp),
        balancer::Protocol::Tcp
    );
    assert_eq!(balancer::Mode::from(Mode::Dsr), balancer::Mode::Dsr);
    assert_eq!(balancer::Mode::from(Mode::Ipip), balancer::Mode::Ipip);
    assert_eq!(
        balancer::NoBackend::from(NoBackend::Drop),
        balancer::NoBackend::Drop
    );
    assert_eq!(
        balancer::NoBackend::from(NoBackend::Pass),
        balancer::NoBackend::Pass
    );
    // The file's native or generic wins over --xdp-mode; auto leaves it
    // to the command line.
    for cli in [AttachMode::Auto, AttachMode::Native, AttachMode::Generic] {
        assert_eq!(XdpMode::Native.or_command_line(cli), AttachMode::Native);
        assert_eq!(XdpMode::Generic.or_command_line(cli), AttachMode::Generic);
        assert_eq!(XdpMode::Auto.or_command_line(cli), cli);
    }
}

/// Golden messages for every refused keyword value: file, line, field
/// and the values allowed.
#[test]
fn golden_errors_for_keywords() {
    let s = WITH_SERVICE;
    let dp = |line: &str| {
        s.replace(
            "interface = \"eth0\"\n\n[[vrrp",
            &format!("interface = \"eth0\"\n{line}\n\n[[vrrp"),
        )
    };
    let svc = |line: &str| s.replace("mode = \"dsr\"", &format!("mode = \"dsr\"\n{line}"));
    let cases: Vec<(String, &str)> = vec![
        (
            s.replace("mode = \"dsr\"", "protocol = \"sctp\""),
            "lb.toml:13: service[0].protocol: \"sctp\" is not a protocol: tcp or udp",
        ),
        (
            s.replace("mode = \"dsr\"", "protocol = \"TCP\""),
            "lb.toml:13: service[0].protocol: \"TCP\" is not a protocol: tcp or udp",
        ),
        (
            svc("snat_address = \"198.18.0.2\""),
            "lb.toml:14: service[0].snat_address: only fullnat translates the source; this service is dsr",
        ),
        (
            s.replace("mode = \"dsr\"", "mode = \"tun\""),
            "lb.toml:13: service[0].mode: \"tun\" is not a mode: dsr, ipip, nat or fullnat",
        ),
        (
            svc("scheduler = \"rr\""),
            "lb.toml:14: service[0].scheduler: \"rr\" is not a scheduler: maglev or source_hash",
        ),
        (
            svc("on_no_backend = \"reject\""),
            "lb.toml:14: service[0].on_no_backend: \"reject\": drop or pass",
        ),
        (
            s.replace("kind = \"http\"", "kind = \"icmp\""),
            "lb.toml:15: service[0].health: kind \"icmp\": tcp, http, https, dns, smtp, exec or none",
        ),
        (
            dp("xdp_mode = \"fast\""),
            "lb.toml:3: dataplane.xdp_mode: \"fast\" is not a mode: auto, native or generic",
        ),
        (
            dp("xdp_mode = \"offload\""),
            "lb.toml:3: dataplane.xdp_mode: \"offload\" is not a mode: auto, native or generic",
        ),
        // Not a string at all: serde's wording, with the field.
        (
            s.replace("mode = \"dsr\"", "mode = 1"),
            "lb.toml:13: service[0].mode: invalid type: integer `1`, expected a string",
        ),
        // The second service, and `health` as a table of its own.
        (
            format!(
                "{s}\n[[service]]\nvip = \"198.18.0.100\"\nport = 81\nbackend = []\nmode = \"gre\"\n"
            ),
            "lb.toml:25: service[1].mode: \"gre\" is not a mode: dsr, ipip, nat or fullnat",
        ),
        (
            format!(
                "{s}\n[[service]]\nvip = \"198.18.0.100\"\nport = 81\nbackend = []\n\n[service.health]\nkind = \"ping\"\n"
            ),
            "lb.toml:27: service[1].health: kind \"ping\": tcp, http, https, dns, smtp, exec or none",
        ),
    ];
    assert_errors(cases, |got, want| got == want);
}

/// The VRRP ranges come from the state machine's checks; the messages
/// name the file's line and field.
#[test]
fn golden_errors_for_vrrp_ranges() {
    let cases = [
        (
            GOOD.replace("virtual_router_id = 50", "virtual_router_id = 0"),
            "lb.toml:14: vrrp_instance[0].virtual_router_id: 0 is not allowed: 1..=255",
        ),
        (
            GOOD.replace("priority = 150", "priority = 150\nversion = 4"),
            "lb.toml:16: vrrp_instance[0].version: 4 is not a VRRP version: 2 or 3",
        ),
        (
            GOOD.replace("priority = 150", "priority = 150\nversion = 2")
                .replace("\"100ms\"", "\"1500ms\""),
            "lb.toml:17: vrrp_instance[0].advert_interval: 1.5s is not allowed: whole seconds from 1s to 255s for version 2",
        ),
        (
            GOOD.replace("\"100ms\"", "\"41s\""),
            "lb.toml:16: vrrp_instance[0].advert_interval: 41s is not allowed: a multiple of 10ms from 10ms to 40.95s for version 3",
        ),
        (
            GOOD.replace("priority = 150", "priority = 150\nversion = 2")
                .replace("\"100ms\"", "\"1s\"")
                .replace(
                    "[\"198.18.0.100/24\", \"198.18.0.101\"]",
                    "[\"2001:db8::100/64\"]",
                ),
            "lb.toml:16: vrrp_instance[0].version: VRRPv2 is IPv4 only: use version = 3 for IPv6",
        ),
        (
            GOOD.replace("weight = 20", "weight = 254"),
            "lb.toml:9: vrrp_script[0].weight: 254 is out of range: -253..=253",
        ),
        (
            GOOD.replace("weight = 20", "weight = -254"),
            "lb.toml:9: vrrp_script[0].weight: -254 is out of range: -253..=253",
        ),
    ];
    assert_errors(cases, |got, want| got == want);
    for ok in ["weight = 253", "weight = -253"] {
        assert!(parse(&GOOD.replace("weight = 20", ok)).is_ok(), "{ok}");
    }
}

/// Lines come from the TOML parser's spans: a key however it is written,
/// the header of its table for a field written as a table of its own.
/// A file that is not TOML has no spans: its error names the line only.
#[test]
fn error_lines_come_from_the_parsers_spans() {
    let s = WITH_SERVICE;
    let second = |head: &str, body: &str| format!("{s}\n{head}\n{body}\nport = 80\nbackend = []\n");
    let cases: Vec<(String, &str)> = vec![
        (
            second("[[service]] # again", "vip = \"198.18.0.100\""),
            "lb.toml:22: service[1].vip: duplicate service 198.18.0.100:80/tcp",
        ),
        (
            second("[[service]]", "\"vip\" = \"198.18.0.100\""),
            "lb.toml:22: service[1].vip: duplicate service 198.18.0.100:80/tcp",
        ),
        (
            format!(
                "{s}\n[[service]]\nvip = \"198.18.0.100\"\nport = 81\nbackend = []\n\n[service.health]\nkind = \"exec\"\n"
            ),
            "lb.toml:21: service[1].health: kind = \"exec\" needs command = \"...\"",
        ),
        (
            second(
                "[[service]]",
                "vip = \"198.18.0.101\"\nhealth.kind = \"exec\"",
            ),
            "lb.toml:21: service[1].health: kind = \"exec\" needs command = \"...\"",
        ),
        (
            s.replace("mode = \"dsr\"", "mode = dsr"),
            "lb.toml:13: invalid string",
        ),
    ];
    assert_errors(cases, str::starts_with);
}

#[test]
fn the_shipped_example_loads() {
    let text = include_str!("../../../examples/lb.toml");
    let c = Config::parse(text, Path::new("examples/lb.toml")).unwrap();
    assert_eq!(c.vrrp_instance.len(), 1);
    assert_eq!(c.vrrp_script[0].weight, -60);
    assert_eq!(c.service.len(), 1);
    assert_eq!(c.service[0].backend.len(), 2);
    assert_eq!(
        c.global.metrics_listen,
        Some("127.0.0.1:9678".parse().unwrap())
    );
    assert_eq!(c.dataplane.unwrap().interface, "eth0");
}

#[test]
fn the_scale_out_example_loads() {
    let text = include_str!("../../../examples/bird/lb.toml");
    let c = Config::parse(text, Path::new("examples/bird/lb.toml")).unwrap();
    assert_eq!(c.bgp, Some(Bgp::new("/run/bird/bird.ctl")));
    assert_eq!(c.service[0].announce, Announce::Bgp);
    assert_eq!(c.sync_peers().len(), 3);
}

#[test]
fn the_etcd_example_loads() {
    let text = include_str!("../../../examples/etcd-backends.toml");
    let c = Config::parse(text, Path::new("examples/etcd-backends.toml")).unwrap();
    let from = c.service[0].backends_from.as_ref().unwrap();
    assert_eq!(from.prefix, "/lb/web/");
    assert_eq!(from.etcd.len(), 2);
    assert_eq!(c.service[0].backend.len(), 1);
}

#[test]
fn durations() {
    assert_eq!(parse_duration("1s"), Ok(Duration::from_secs(1)));
    assert_eq!(parse_duration("100ms"), Ok(Duration::from_millis(100)));
    assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
    assert_eq!(parse_duration("2m"), Ok(Duration::from_mins(2)));
    assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
    assert!(parse_duration("1").is_err());
    assert!(parse_duration("-1s").is_err());
}

/// Value errors are typed, keep their cause, and say what they always said.
#[test]
fn value_errors_keep_their_cause() {
    use std::error::Error as _;
    let e = parse_cidr("nope").unwrap_err();
    assert!(matches!(e, ValueError::NotCidr { .. }), "{e:?}");
    assert!(e.source().is_some());
    assert_eq!(e.to_string(), "\"nope\" is not ADDRESS/PREFIX");
    let e = parse_duration("1.2.3s").unwrap_err();
    assert!(e.source().is_some());
    assert_eq!(
        e.to_string(),
        "invalid duration \"1.2.3s\": \"1.2.3\" is not a number"
    );
    assert_eq!(
        check_flow_entries(4),
        Err(ValueError::TooFewFlows { entries: 4, min: 8 })
    );
    assert_eq!(
        "fast".parse::<XdpMode>().unwrap_err().to_string(),
        "\"fast\" is not a mode: auto, native or generic"
    );
    assert_eq!("nat".parse::<Mode>(), Ok(Mode::Nat));
    assert_eq!(
        "masq".parse::<Mode>().unwrap_err().to_string(),
        "\"masq\" is not a mode: dsr, ipip, nat or fullnat"
    );
}

/// The constructors fill every field with serde's default: the minimal
/// file `text` parses to what they build.
fn assert_built(text: &str, built: &Config) {
    assert_eq!(&parse(text).unwrap(), built, "{text}");
}

const DATAPLANE: &str = "[dataplane]\ninterface = \"eth0\"\n";

fn with_dataplane(c: Config) -> Config {
    Config {
        dataplane: Some(Dataplane::new("eth0")),
        ..c
    }
}

#[test]
fn dataplane_new_has_the_files_defaults() {
    assert_built(DATAPLANE, &with_dataplane(Config::default()));
}

#[test]
fn service_new_and_backend_config_new_have_the_files_defaults() {
    let vip = "198.18.0.100".parse().unwrap();
    let be = "198.18.1.1".parse().unwrap();
    assert_built(
        &format!("{DATAPLANE}[[service]]\nvip = \"{vip}\"\nport = 80\nbackend = []\n"),
        &with_dataplane(Config {
            service: vec![Service::new(vip, 80, Vec::new())],
            ..Config::default()
        }),
    );
    assert_built(
        &format!(
            "{DATAPLANE}[[service]]\nvip = \"{vip}\"\nport = 80\nbackend = [{{ address = \"{be}\" }}]\n"
        ),
        &with_dataplane(Config {
            service: vec![Service::new(vip, 80, vec![BackendConfig::new(be)])],
            ..Config::default()
        }),
    );
}

#[test]
fn vrrp_instance_new_has_the_files_defaults() {
    assert_built(
        "[[vrrp_instance]]\nname = \"VI_1\"\ninterface = \"eth0\"\nvirtual_router_id = 50\n\
         virtual_ipaddress = [\"198.18.0.100/24\"]\n",
        &Config {
            vrrp_instance: vec![VrrpInstance::new(
                "VI_1",
                "eth0",
                50,
                vec!["198.18.0.100/24".into()],
            )],
            ..Config::default()
        },
    );
}

#[test]
fn vrrp_script_new_and_track_script_new_have_the_files_defaults() {
    assert_built(
        "[[vrrp_script]]\nname = \"chk\"\nscript = \"true\"\n\n\
         [[vrrp_instance]]\nname = \"VI_1\"\ninterface = \"eth0\"\nvirtual_router_id = 50\n\
         virtual_ipaddress = [\"198.18.0.100/24\"]\ntrack_script = [{ name = \"chk\" }]\n",
        &Config {
            vrrp_script: vec![VrrpScript::new("chk", "true")],
            vrrp_instance: vec![VrrpInstance {
                track_script: vec![TrackScript::new("chk")],
                ..VrrpInstance::new("VI_1", "eth0", 50, vec!["198.18.0.100/24".into()])
            }],
            ..Config::default()
        },
    );
}

/// What [`Config::to_toml`] writes reads back as the same configuration.
#[test]
fn to_toml_reads_back_as_the_same_config() {
    let c = parse(GOOD).unwrap();
    assert_eq!(parse(&c.to_toml().unwrap()).unwrap(), c);
    let vip = "198.18.0.100".parse().unwrap();
    let c = with_dataplane(Config {
        global: Global {
            control_socket: "/tmp/lbd.sock".into(),
            ..Global::default()
        },
        service: vec![Service {
            health: Health {
                kind: HealthKind::None,
                ..Health::default()
            },
            ..Service::new(vip, 80, vec![BackendConfig::new(vip)])
        }],
        ..Config::default()
    });
    assert_eq!(parse(&c.to_toml().unwrap()).unwrap(), c);
}

/// `[sync]`: a secret (one way, long enough), some peers (its own list or
/// the VRRP instances' unicast peers), a data plane; errors name the line.
#[test]
fn sync_needs_a_secret_peers_and_a_data_plane() {
    let base = "[dataplane]\ninterface = \"eth0\"\n\n\
                [[vrrp_instance]]\nname = \"VI_1\"\ninterface = \"eth0\"\n\
                virtual_router_id = 50\nvirtual_ipaddress = [\"198.18.0.100\"]\n\
                unicast_peer = [\"198.18.0.3\"]\n\n";
    let with = |sync: &str| format!("{base}[sync]\n{sync}");
    let ok = parse(&with("secret = \"0123456789abcdef\"\n")).unwrap();
    assert_eq!(
        ok.sync_peers(),
        vec!["198.18.0.3".parse::<std::net::IpAddr>().unwrap()],
        "peers default to the unicast peers"
    );
    let s = ok.sync.as_ref().unwrap();
    assert_eq!((s.port, s.bulk_timeout.0), (8849, Duration::from_secs(5)));
    let own = parse(&with(
        "secret_file = \"/etc/lb/sync.key\"\npeers = [\"198.18.0.9\"]\n",
    ))
    .unwrap();
    assert_eq!(
        own.sync_peers(),
        vec!["198.18.0.9".parse::<std::net::IpAddr>().unwrap()]
    );
    let cases = [
        (
            with("peers = [\"198.18.0.9\"]\n"),
            "lb.toml:11: sync.secret: missing: sync writes forwarding state",
        ),
        (
            with("secret = \"short\"\n"),
            "lb.toml:12: sync.secret: too short: at least 16 characters",
        ),
        (
            with("secret = \"0123456789abcdef\"\nsecret_file = \"/k\"\n"),
            "lb.toml:13: sync.secret_file: give secret or secret_file, not both",
        ),
        (
            with("secret = \"0123456789abcdef\"\n")
                .replace("unicast_peer = [\"198.18.0.3\"]\n", ""),
            "lb.toml:10: sync.peers: no peers",
        ),
        (
            with("secret = \"0123456789abcdef\"\n")
                .replace("[dataplane]\ninterface = \"eth0\"\n", ""),
            "lb.toml:9: sync: sync needs a [dataplane] table",
        ),
        (
            with("secret = \"0123456789abcdef\"\nport = 0\n"),
            "lb.toml:13: sync.port: 0 is not a port",
        ),
    ];
    assert_errors(cases.iter().map(|(t, w)| (t.clone(), *w)), str::starts_with);
}

const TRACKING: &str = r#"[[vrrp_track_process]]
name = "web"
process = "nginx"
weight = 0

[[vrrp_track_file]]
name = "maint"
file = "/run/lb/maint"

[[vrrp_instance]]
name = "VI_1"
interface = "eth0"
virtual_router_id = 50
virtual_ipaddress = ["198.18.0.100/24"]
track_process = [{ name = "web" }]
track_file = [{ name = "maint", weight = -10 }]

[[vrrp_instance]]
name = "VI_2"
interface = "eth1"
virtual_router_id = 51
virtual_ipaddress = ["198.18.1.100/24"]

[[vrrp_sync_group]]
name = "VG_1"
instances = ["VI_1", "VI_2"]
notify = "/etc/lb/group.sh"
"#;

/// `[[vrrp_sync_group]]`, `[[vrrp_track_process]]`, `[[vrrp_track_file]]`:
/// defaults, and golden errors naming the line and field.
#[test]
fn sync_groups_and_tracked_processes_and_files() {
    let c = parse(TRACKING).unwrap();
    let p = &c.vrrp_track_process[0];
    assert_eq!((p.quorum, p.quorum_max, p.param_match), (1, None, None));
    assert_eq!(c.vrrp_track_file[0].weight, 1);
    assert_eq!(c.vrrp_instance[0].track_file[0].weight, Some(-10));
    assert!(!c.vrrp_sync_group[0].tracking_weight);
    assert_eq!(parse(&c.to_toml().unwrap()).unwrap(), c);
    assert_eq!(
        VrrpSyncGroup::new("VG_1", vec!["VI_1".into(), "VI_2".into()]),
        VrrpSyncGroup {
            notify: None,
            ..c.vrrp_sync_group[0].clone()
        }
    );
    assert_eq!(
        VrrpTrackProcess {
            weight: 0,
            ..VrrpTrackProcess::new("web", "nginx")
        },
        *p
    );
    assert_eq!(
        VrrpTrackFile::new("maint", "/run/lb/maint"),
        c.vrrp_track_file[0]
    );
    let t = TRACKING;
    let cases = [
        (
            t.replace(r#"["VI_1", "VI_2"]"#, r#"["VI_1", "VI_3"]"#),
            "lb.toml:26: vrrp_sync_group[0].instances: no [[vrrp_instance]] named \"VI_3\"",
        ),
        (
            t.replace(r#"["VI_1", "VI_2"]"#, r#"["VI_1", "VI_1"]"#),
            "lb.toml:26: vrrp_sync_group[0].instances: \"VI_1\" is listed twice",
        ),
        (
            t.replace(r#"["VI_1", "VI_2"]"#, "[]"),
            "lb.toml:26: vrrp_sync_group[0].instances: list the [[vrrp_instance]] names that change state together",
        ),
        (
            format!("{t}\n[[vrrp_sync_group]]\nname = \"VG_2\"\ninstances = [\"VI_2\"]\n"),
            "lb.toml:31: vrrp_sync_group[1].instances: \"VI_2\" is already in sync group \"VG_1\": an instance is in one group at most",
        ),
        (
            format!("{t}\n[[vrrp_sync_group]]\nname = \"VG_1\"\ninstances = [\"VI_3\"]\n"),
            "lb.toml:30: vrrp_sync_group[1].name: duplicate sync group name \"VG_1\"",
        ),
        (
            t.replace("weight = 0", "weight = 0\nquorum = 2\nquorum_max = 1"),
            "lb.toml:6: vrrp_track_process[0].quorum_max: must be at least quorum (2)",
        ),
        (
            t.replace("weight = 0", "weight = 300"),
            "lb.toml:4: vrrp_track_process[0].weight: 300 is out of range: -253..=253",
        ),
        (
            t.replace(
                "weight = 0",
                "weight = 0\ndelay = \"1s\"\nfork_delay = \"2s\"",
            ),
            "lb.toml:5: vrrp_track_process[0].delay: delay sets fork_delay and terminate_delay: give delay, or those two",
        ),
        (
            t.replace("weight = 0", "param_match = \"fuzzy\""),
            "lb.toml:4: unknown variant `fuzzy`, expected one of `exact`, `partial`, `initial`",
        ),
        (
            t.replace(
                "file = \"/run/lb/maint\"",
                "file = \"/run/lb/maint\"\ninit_overwrite = true",
            ),
            "lb.toml:9: vrrp_track_file[0].init_overwrite: needs init_file (the value to write)",
        ),
        (
            t.replace("{ name = \"web\" }", "{ name = \"db\" }"),
            "lb.toml:15: vrrp_instance[0].track_process: no [[vrrp_track_process]] named \"db\"",
        ),
        (
            t.replace("weight = -10", "weight = -300"),
            "lb.toml:16: vrrp_instance[0].track_file: maint: -300 is out of range: -253..=253",
        ),
    ];
    assert_errors(cases, |got, want| got == want);
}

const BGP: &str = r#"[dataplane]
interface = "eth0"

[bgp]
socket = "/run/bird/bird.ctl"

[[service]]
vip = "198.18.100.1"
port = 80
announce = "bgp"
backend = [{ address = "198.18.0.11" }]
"#;

#[test]
fn bgp_announced_services_load_with_defaults() {
    let c = parse(BGP).unwrap();
    let bgp = c.bgp.as_ref().unwrap();
    assert_eq!(*bgp, Bgp::new("/run/bird/bird.ctl"));
    assert_eq!((bgp.speaker, bgp.table), (Speaker::Bird, 100));
    assert_eq!(bgp.withdraw_grace.0, Duration::from_secs(1));
    assert_eq!(c.service[0].announce, Announce::Bgp);
    assert_eq!(
        parse(WITH_SERVICE).unwrap().service[0].announce,
        Announce::Vrrp
    );
    // The file lbd writes reads back the same.
    assert_eq!(parse(&c.to_toml().unwrap()).unwrap(), c);
}

#[test]
fn bgp_mistakes_are_refused_with_the_way_out() {
    let s = BGP;
    let cases: Vec<(String, &str)> = vec![
        (
            s.replace("[bgp]\nsocket = \"/run/bird/bird.ctl\"\n", ""),
            "lb.toml:8: service[0].announce: \"bgp\" needs a [bgp] table",
        ),
        (
            s.replace("[bgp]\n", "[bgp]\ntable = 254\n"),
            "lb.toml:5: bgp.table: 254 is a table the kernel routes by",
        ),
        (
            s.replace("[bgp]\n", "[bgp]\nspeaker = \"quagga\"\n"),
            "lb.toml:5: \"quagga\" is not a BGP speaker: bird",
        ),
        (
            s.replace("announce = \"bgp\"", "announce = \"ospf\""),
            "lb.toml:10: \"ospf\" is not a way of announcing: vrrp or bgp",
        ),
        (
            s.replace(
                "announce = \"bgp\"",
                "announce = \"bgp\"\nactive_active = true",
            ),
            "lb.toml:11: service[0].active_active: a service announced by BGP forwards on every node",
        ),
        (
            format!("{s}\n[[service]]\nvip = \"198.18.100.1\"\nport = 443\nbackend = []\n"),
            "lb.toml:10: service[0].announce: 198.18.100.1:443/tcp is announced by vrrp, this service on the same VIP by bgp: one VIP, one way",
        ),
        (
            s.replace(
                "announce = \"bgp\"",
                "announce = \"bgp\"\nmode = \"fullnat\"\nsnat_address = \"198.18.0.2\"",
            ),
            "lb.toml:12: service[0].snat_address: a fullnat service announced by BGP translates from each node's own address",
        ),
        (
            format!(
                "{s}\n[[vrrp_instance]]\nname = \"VI_1\"\ninterface = \"eth0\"\nvirtual_router_id = 50\nvirtual_ipaddress = [\"198.18.100.1\"]\n"
            ),
            "lb.toml:10: service[0].announce: VIP 198.18.100.1 is a virtual_ipaddress of [[vrrp_instance]] \"VI_1\"",
        ),
    ];
    assert_errors(cases, str::starts_with);
}

/// `backends_from`: etcd URLs (http, HOST:PORT), a prefix, a port dsr can
/// forward to; errors name the line and say what to write.
#[test]
fn backends_from_etcd_is_checked() {
    let s = WITH_SERVICE;
    let with = |from: &str| {
        s.replace(
            "mode = \"dsr\"",
            &format!("mode = \"dsr\"\nbackends_from = {from}"),
        )
    };
    let ok = parse(&with(
        "{ etcd = [\"http://198.18.0.50:2379\", \"http://etcd2:2379/\"], prefix = \"/lb/web/\" }",
    ))
    .unwrap();
    let from = ok.service[0].backends_from.as_ref().unwrap();
    assert_eq!(from.etcd.len(), 2);
    assert_eq!(from.prefix, "/lb/web/");
    assert_eq!(from.port, None);
    // It round-trips through TOML.
    assert_eq!(parse(&ok.to_toml().unwrap()).unwrap(), ok);
    let cases: Vec<(String, &str)> = vec![
        (
            with("{ etcd = [], prefix = \"/lb/web/\" }"),
            "lb.toml:14: service[0].backends_from: etcd: list etcd's client URLs, e.g. etcd = [\"http://198.18.0.50:2379\"]",
        ),
        (
            with("{ etcd = [\"198.18.0.50:2379\"], prefix = \"/lb/web/\" }"),
            "lb.toml:14: service[0].backends_from: etcd: \"198.18.0.50:2379\" is not a URL: write http://HOST:PORT",
        ),
        (
            with("{ etcd = [\"https://198.18.0.50:2379\"], prefix = \"/lb/web/\" }"),
            "lb.toml:14: service[0].backends_from: etcd: \"https://198.18.0.50:2379\" is https: lbd's etcd client is built without TLS; use http://",
        ),
        (
            with("{ etcd = [\"http://198.18.0.50\"], prefix = \"/lb/web/\" }"),
            "lb.toml:14: service[0].backends_from: etcd: \"http://198.18.0.50\" is not a URL: write http://HOST:PORT (no path)",
        ),
        (
            with("{ etcd = [\"http://198.18.0.50:2379\"], prefix = \"\" }"),
            "lb.toml:14: service[0].backends_from: prefix: missing: the key prefix the backends register under, e.g. prefix = \"/lb/web/\"",
        ),
        (
            with("{ etcd = [\"http://198.18.0.50:2379\"], prefix = \"/p/\", port = 8080 }"),
            "lb.toml:14: service[0].backends_from: port: 8080 differs from the service's 80: dsr and ipip forward to the same port (nat and fullnat may change it)",
        ),
        (
            with("{ etcd = [\"http://198.18.0.50:2379\"] }"),
            "lb.toml:14: missing field `prefix`",
        ),
    ];
    assert_errors(cases, str::starts_with);
}
