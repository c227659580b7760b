//! keepalived.conf conversion: the seed fixtures
//! (`tests/fixtures/keepalived`), every section's keywords, and the errors
//! and warnings with their lines.

use std::path::Path;
use std::time::Duration;

use super::lexer::{split_line, wildcard};
use super::virtual_server::replace_address;
use super::*;
use crate::config::{HealthKind, Mode, Protocol, Scheduler};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/keepalived");

fn fixture(name: &str) -> (Config, Vec<Warning>) {
    let path = Path::new(FIXTURES).join(name);
    load(&path).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn conv(text: &str) -> Result<(Config, Vec<String>), String> {
    parse(text, Path::new("keepalived.conf"))
        .map(|(c, w)| (c, w.iter().map(ToString::to_string).collect()))
        .map_err(|e| e.to_string())
}

/// keepalived → Config → TOML → `Config::parse` gives the same Config.
fn round_trip(text: &str, path: &Path) {
    let mut ctx = Ctx::new(path);
    let (built, _) = build(&mut ctx, text).unwrap();
    let toml_text = to_toml(&built).unwrap();
    let back = Config::parse(&toml_text, Path::new("converted.toml"))
        .unwrap_or_else(|e| panic!("{e}\n{toml_text}"));
    assert_eq!(built, back, "\n{toml_text}");
}

#[test]
fn every_seed_fixture_loads_without_warnings_and_round_trips() {
    let mut names: Vec<_> = std::fs::read_dir(FIXTURES)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| {
            std::path::Path::new(n)
                .extension()
                .is_some_and(|e| e == "conf")
        })
        .collect();
    names.sort();
    assert!(names.len() >= 7, "{names:?}");
    for name in names {
        let path = Path::new(FIXTURES).join(&name);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(looks_like_keepalived(&text), "{name}");
        let (c, w) = fixture(&name);
        if name.starts_with("seed_") || name == "sync_group_nat.conf" {
            assert!(w.is_empty(), "{name}: {w:?}");
        }
        assert!(!c.vrrp_instance.is_empty(), "{name}");
        round_trip(&text, &path);
    }
}

#[test]
fn seed_lb01_and_lb02() {
    for (name, router, prio) in [
        ("seed_lb01.conf", "lb01", 150),
        ("seed_lb02.conf", "lb02", 100),
        ("seed_annotated.conf", "lb01", 150),
    ] {
        let (c, _) = fixture(name);
        assert_eq!(c.global.router_id.as_deref(), Some(router));
        assert_eq!(c.vrrp_instance.len(), 1);
        let v = &c.vrrp_instance[0];
        assert_eq!(v.name, "VI_1");
        assert_eq!(v.interface, "eth0");
        assert_eq!(v.virtual_router_id, 50);
        assert_eq!(v.priority, prio);
        assert_eq!(v.version, 2, "keepalived's default version");
        assert_eq!(v.advert_interval.0, Duration::from_secs(1));
        assert_eq!(v.auth_pass.as_deref(), Some("1111"));
        assert_eq!(v.virtual_ipaddress, ["10.0.0.3"]);
        assert!(v.preempt);
        assert!(c.dataplane.is_none() && c.service.is_empty());
    }
}

/// Name, VRID, priority, password, VIPs of an instance.
type InstanceSummary = (String, u8, u8, Option<String>, Vec<String>);

#[test]
fn seed_dual_master_pair() {
    let (a, _) = fixture("seed_dual_lb01.conf");
    let (b, _) = fixture("seed_dual_lb02.conf");
    let summary = |c: &Config| -> Vec<InstanceSummary> {
        c.vrrp_instance
            .iter()
            .map(|v| {
                (
                    v.name.clone(),
                    v.virtual_router_id,
                    v.priority,
                    v.auth_pass.clone(),
                    v.virtual_ipaddress.clone(),
                )
            })
            .collect()
    };
    let s = |x: &str| x.to_owned();
    assert_eq!(
        summary(&a),
        [
            (s("VI_1"), 50, 150, Some(s("1111")), vec![s("10.0.0.3")]),
            (s("VI_2"), 51, 100, Some(s("2222")), vec![s("10.0.0.4")]),
        ]
    );
    assert_eq!(
        summary(&b),
        [
            (s("VI_1"), 50, 100, Some(s("1111")), vec![s("10.0.0.3")]),
            (s("VI_2"), 51, 150, Some(s("2222")), vec![s("10.0.0.4")]),
        ]
    );
}

#[test]
fn seed_track_scripts() {
    let (c, _) = fixture("seed_check_web_lb01.conf");
    assert_eq!(c.vrrp_script.len(), 1);
    let s = &c.vrrp_script[0];
    assert_eq!(s.name, "check_web");
    assert_eq!(s.script, "/server/scripts/check_web.sh");
    assert_eq!(s.interval, Some(Dur(Duration::from_secs(5))));
    assert_eq!(s.weight, 50);
    assert_eq!((s.rise, s.fall), (1, 1));
    assert_eq!(c.vrrp_instance[0].track_script[0].name, "check_web");
    assert_eq!(c.vrrp_instance[0].track_script[0].weight, None);

    let (c, _) = fixture("seed_check_vip_lb02.conf");
    let names: Vec<_> = c.vrrp_script.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["check_web", "check_vip"]);
    assert_eq!(c.vrrp_script[1].script, "/server/scripts/check_vip.sh");
    let tracked: Vec<_> = c.vrrp_instance[0]
        .track_script
        .iter()
        .map(|t| t.name.as_str())
        .collect();
    assert_eq!(tracked, ["check_web", "check_vip"]);
    assert_eq!(c.vrrp_instance[0].priority, 100);
}

#[test]
fn includes_resolve_relative_to_the_file() {
    let (c, w) = fixture("includes.conf");
    assert_eq!(c.vrrp_instance.len(), 2, "{w:?}");
    assert_eq!(c.vrrp_script[0].name, "chk");
    assert!(w.is_empty(), "{w:?}");
}

const VRRP: &str = "
global_defs {
  router_id lb01
}
vrrp_instance VI_1 {
  interface eth0
  virtual_router_id 50
  priority 150
  virtual_ipaddress {
    198.18.0.100/24
  }
}
";

#[test]
fn virtual_server_with_tcp_check() {
    let text = format!(
        "{VRRP}
virtual_server 198.18.0.100 80 {{
  delay_loop 6
  lb_algo wrr
  lb_kind DR
  protocol TCP
  real_server 198.18.1.11 80 {{
    weight 3
    TCP_CHECK {{
      connect_port 80
      connect_timeout 3
      retry 2
    }}
  }}
  real_server 198.18.1.12 80 {{
    weight 1
    TCP_CHECK {{
      connect_port 80
      connect_timeout 3
      nb_get_retry 2
    }}
  }}
}}
"
    );
    let (c, w) = conv(&text).unwrap();
    let s = &c.service[0];
    assert_eq!((s.vip.to_string().as_str(), s.port), ("198.18.0.100", 80));
    assert_eq!((s.mode, s.scheduler), (Mode::Dsr, Scheduler::Maglev));
    assert_eq!(s.health.kind, HealthKind::Tcp);
    assert_eq!(s.health.interval.0, Duration::from_secs(6));
    assert_eq!(s.health.timeout.0, Duration::from_secs(3));
    assert_eq!((s.health.rise, s.health.fall), (1, 3));
    assert_eq!(s.health.port, None, "connect_port = the backend's port");
    assert_eq!(s.backend.len(), 2);
    assert_eq!(s.backend[0].weight, 3);
    assert_eq!(s.backend[0].port, None);
    assert_eq!(c.dataplane.as_ref().unwrap().interface, "eth0");
    assert_eq!(
        c.dataplane.as_ref().unwrap().xdp_mode,
        crate::config::XdpMode::Auto
    );
    assert!(
        w.iter()
            .any(|w| w.starts_with("keepalived.conf:16: notice: `lb_algo wrr`")),
        "{w:?}"
    );
    round_trip(&text, Path::new("keepalived.conf"));
}

#[test]
fn virtual_server_with_http_get_and_defaults() {
    let text = format!(
        "{VRRP}
virtual_server 198.18.0.100 8080 {{
  lvs_method TUN
  lvs_sched mh
  real_server 198.18.1.11 8080 {{
    HTTP_GET {{
      url {{
        path /healthz
        status_code 204
      }}
      connect_port 9000
    }}
  }}
}}
"
    );
    let (c, w) = conv(&text).unwrap();
    assert!(w.is_empty(), "{w:?}");
    let s = &c.service[0];
    assert_eq!(s.mode, Mode::Ipip);
    assert_eq!(s.protocol, Protocol::Tcp);
    let h = &s.health;
    assert_eq!(
        (
            h.kind,
            h.path.as_str(),
            h.expect_status.to_string().as_str()
        ),
        (HealthKind::Http, "/healthz", "204")
    );
    assert_eq!(
        h.interval.0,
        Duration::from_mins(1),
        "keepalived's delay_loop default"
    );
    assert_eq!(
        h.timeout.0,
        Duration::from_secs(5),
        "connect_timeout default"
    );
    assert_eq!((h.rise, h.fall), (1, 2), "retry defaults to 1");
    assert_eq!(h.port, Some(9000));
    round_trip(&text, Path::new("keepalived.conf"));
}

#[test]
fn virtual_server_with_misc_check() {
    let text = format!(
        "{VRRP}
virtual_server 198.18.0.100 53 {{
  delay_loop 2.5
  lb_kind DR
  protocol UDP
  real_server 198.18.1.11 53 {{
    MISC_CHECK {{
      misc_path \"/usr/local/bin/check_dns 198.18.1.11\"
      misc_timeout 1
      user nobody
    }}
  }}
  real_server 198.18.1.12 53 {{
    MISC_CHECK {{
      misc_path \"/usr/local/bin/check_dns 198.18.1.12\"
      misc_timeout 1
      user nobody
    }}
  }}
}}
"
    );
    let (c, w) = conv(&text).unwrap();
    let s = &c.service[0];
    assert_eq!(s.protocol, Protocol::Udp);
    let h = &s.health;
    assert_eq!(h.kind, HealthKind::Exec);
    assert_eq!(
        h.command.as_deref(),
        Some("/usr/local/bin/check_dns $BACKEND")
    );
    assert_eq!(h.user.as_deref(), Some("nobody"));
    assert_eq!(h.interval.0, Duration::from_millis(2500));
    assert_eq!(h.timeout.0, Duration::from_secs(1));
    assert_eq!((h.rise, h.fall), (1, 1), "MISC_CHECK's retry defaults to 0");
    assert_eq!(w.len(), 2, "{w:?}");
    round_trip(&text, Path::new("keepalived.conf"));
}

/// Real servers checked differently (as keepalived allows) each keep
/// their own checks: an LVS-DR service with HTTP_GET on one, TCP_CHECK on
/// another, MISC_CHECK on a third, two checkers on a fourth, none on a
/// fifth; the service's own check is then `none`. The TOML reads back the
/// same.
#[test]
fn each_real_server_keeps_its_own_checkers() {
    let text = format!(
        "{VRRP}
virtual_server 198.18.0.100 80 {{
  lb_kind DR
  delay_loop 3
  real_server 198.18.1.11 80 {{
    HTTP_GET {{
      url {{
        path /ready
        status_code 200
      }}
      retry 2
    }}
  }}
  real_server 198.18.1.12 80 {{
    TCP_CHECK {{
      connect_timeout 2
    }}
  }}
  real_server 198.18.1.13 80 {{
    MISC_CHECK {{
      misc_path \"/bin/true\"
    }}
  }}
  real_server 198.18.1.14 80 {{
    TCP_CHECK {{
      connect_port 8080
    }}
    HTTP_GET {{
      url {{
        path /health
      }}
    }}
  }}
  real_server 198.18.1.15 80 {{
  }}
}}
"
    );
    let (c, w) = conv(&text).unwrap();
    let s = &c.service[0];
    assert_eq!(s.health.kind, HealthKind::None, "no one check for all");
    let kinds: Vec<Vec<HealthKind>> = s
        .backend
        .iter()
        .map(|b| b.health.iter().map(|h| h.kind).collect())
        .collect();
    assert_eq!(
        kinds,
        vec![
            vec![HealthKind::Http],
            vec![HealthKind::Tcp],
            vec![HealthKind::Exec],
            vec![HealthKind::Tcp, HealthKind::Http],
            vec![],
        ]
    );
    let b = &s.backend;
    assert_eq!(b[0].health[0].path, "/ready");
    assert_eq!(b[0].health[0].fall, 3, "retry 2");
    assert_eq!(b[0].health[0].interval.0, Duration::from_secs(3));
    assert_eq!(b[1].health[0].timeout.0, Duration::from_secs(2));
    assert_eq!(b[3].health[0].port, Some(8080));
    assert_eq!(b[3].health[1].path, "/health");
    // A url without a status_code accepts any 2xx, as in keepalived.
    assert_eq!(b[3].health[1].expect_status.to_string(), "200-299");
    assert!(w.is_empty(), "{w:?}");
    round_trip(&text, Path::new("keepalived.conf"));
}

/// SSL_GET with several urls (status code lists and ranges, digests, a
/// virtual host from the virtual_server), bindto, DNS_CHECK, MISC_CHECK
/// with misc_dynamic: each becomes its lb check, and the TOML reads back.
#[test]
fn ssl_get_dns_check_and_misc_dynamic() {
    let text = format!(
        "{VRRP}
virtual_server 198.18.0.100 443 {{
  lb_kind DR
  virtualhost www.example.test
  real_server 198.18.1.11 443 {{
    SSL_GET {{
      url {{
        path /
        digest FF20AD2481F97B1754EF3E12ECD3A9CC
      }}
      url {{
        path /ready
        status_code 200 204
        status_code 300-399
      }}
      bindto 198.18.0.2
      connect_timeout 3
      enable_sni
    }}
  }}
  real_server 198.18.1.12 443 {{
    MISC_CHECK {{
      misc_path \"/usr/local/bin/load-weight\"
      misc_dynamic
    }}
  }}
}}
virtual_server 198.18.0.100 53 {{
  lb_kind DR
  protocol UDP
  real_server 198.18.1.11 53 {{
    DNS_CHECK {{
      type a
      name lb.example.test
    }}
  }}
}}
"
    );
    let (c, w) = conv(&text).unwrap();
    assert!(w.is_empty(), "{w:?}");
    let b = &c.service[0].backend;
    let ssl = &b[0].health[0];
    assert_eq!(ssl.kind, HealthKind::Https);
    assert_eq!(ssl.virtualhost.as_deref(), Some("www.example.test"));
    assert_eq!(ssl.bind, Some("198.18.0.2".parse().unwrap()));
    let urls: Vec<(String, Option<String>, Option<String>)> = ssl
        .urls
        .iter()
        .map(|u| {
            (
                u.path.clone(),
                u.expect_status.as_ref().map(ToString::to_string),
                u.digest.clone(),
            )
        })
        .collect();
    assert_eq!(
        urls,
        [
            (
                "/".to_owned(),
                None,
                Some("ff20ad2481f97b1754ef3e12ecd3a9cc".to_owned())
            ),
            (
                "/ready".to_owned(),
                Some("200, 204, 300-399".to_owned()),
                None
            ),
        ]
    );
    assert_eq!(
        ssl.expect_status.to_string(),
        "200-299",
        "the urls' default"
    );
    let misc = &b[1].health[0];
    assert!(misc.dynamic_weight && misc.kind == HealthKind::Exec);
    let dns = &c.service[1].health;
    assert_eq!(dns.kind, HealthKind::Dns);
    assert_eq!(
        (dns.dns_type.as_deref(), dns.dns_name.as_deref()),
        (Some("A"), Some("lb.example.test"))
    );
    assert_eq!(dns.fall, 4, "DNS_CHECK retries 3 times by default");
    round_trip(&text, Path::new("keepalived.conf"));
}

/// Bad checker values are errors with their line.
#[test]
fn bad_checker_values_are_errors() {
    let bad = |checker: &str| {
        let t = format!(
            "{VRRP}\nvirtual_server 198.18.0.100 80 {{\n  lb_kind DR\n  real_server 198.18.1.11 80 {{\n{checker}\n  }}\n}}\n"
        );
        conv(&t).unwrap_err()
    };
    let e = bad("    SSL_GET {\n      url {\n        path /\n        digest 1234\n      }\n    }");
    assert!(e.contains("is not an MD5 digest"), "{e}");
    let e =
        bad("    HTTP_GET {\n      url {\n        path /\n        status_code 2xx\n      }\n    }");
    assert!(e.contains("\"2xx\" is not a status code"), "{e}");
    let e = bad("    DNS_CHECK {\n      type PTR\n    }");
    assert!(e.contains("\"PTR\" is not a type lb queries"), "{e}");
    let e = bad("    TCP_CHECK {\n      bindto eth0\n    }");
    assert!(e.contains("\"eth0\" is not an IP address"), "{e}");
}

/// Two HTTP_GETs that differ only in `retry`: per backend too. Every
/// real server with the same single checker: the service's `health`.
#[test]
fn checkers_alike_become_the_service_s_health() {
    let server = |last: u8, retry: u8| {
        format!(
            "  real_server 198.18.1.{last} 80 {{\n    HTTP_GET {{\n      url {{\n        path /\n      }}\n      retry {retry}\n    }}\n  }}\n"
        )
    };
    let vs = |servers: String| {
        format!("{VRRP}\nvirtual_server 198.18.0.100 80 {{\n  lb_kind DR\n{servers}}}\n")
    };
    let (c, _) = conv(&vs(server(11, 1) + &server(12, 4))).unwrap();
    let s = &c.service[0];
    assert_eq!(s.health.kind, HealthKind::None);
    let falls: Vec<u32> = s.backend.iter().map(|b| b.health[0].fall).collect();
    assert_eq!(falls, vec![2, 5]);
    let (c, _) = conv(&vs(server(11, 1) + &server(12, 1))).unwrap();
    let s = &c.service[0];
    assert_eq!((s.health.kind, s.health.fall), (HealthKind::Http, 2));
    assert!(s.backend.iter().all(|b| b.health.is_empty()));
}

/// `alpha`, `inhibit_on_failure` (virtual and real server), the sorry
/// server with `sorry_server_inhibit`: honoured, and the TOML reads back.
#[test]
fn alpha_inhibit_and_sorry_server() {
    let text = format!(
        "{VRRP}
virtual_server 198.18.0.100 80 {{
  lb_kind NAT
  alpha
  sorry_server 198.18.1.99 8080
  sorry_server_inhibit
  sorry_server_lvs_method DR
  real_server 198.18.1.11 80 {{
    inhibit_on_failure
    TCP_CHECK {{
    }}
  }}
  real_server 198.18.1.12 80 {{
    TCP_CHECK {{
    }}
  }}
}}
virtual_server 198.18.0.100 443 {{
  lb_kind NAT
  inhibit_on_failure
  sorry_server 198.18.1.99 443
  real_server 198.18.1.11 443 {{
  }}
}}
"
    );
    let (c, w) = conv(&text).unwrap();
    let s = &c.service[0];
    assert!(s.start_down && !s.inhibit_on_failure);
    assert_eq!(
        s.sorry_server,
        Some(crate::config::SorryServer {
            address: "198.18.1.99".parse().unwrap(),
            port: Some(8080),
            inhibit: true,
        })
    );
    assert_eq!(s.backend[0].inhibit_on_failure, Some(true));
    assert_eq!(s.backend[1].inhibit_on_failure, None);
    let s = &c.service[1];
    assert!(!s.start_down && s.inhibit_on_failure);
    let sorry = s.sorry_server.as_ref().unwrap();
    assert_eq!(
        (sorry.port, sorry.inhibit),
        (None, false),
        "the service's port"
    );
    // Only the sorry server's own forwarding method is worth a notice.
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].contains("sorry_server_lvs_method"), "{w:?}");
    round_trip(&text, Path::new("keepalived.conf"));
}

#[test]
fn retries_follow_delay_before_retry_and_warmup() {
    let text = format!(
        "{VRRP}
virtual_server 198.18.0.100 80 {{
  lb_kind DR
  delay_loop 30
  real_server 198.18.1.11 80 {{
    TCP_CHECK {{
      retry 2
      delay_before_retry 3
      warmup 5
    }}
  }}
  real_server 198.18.1.12 80 {{
    TCP_CHECK {{
      retry 3
    }}
  }}
  real_server 198.18.1.13 80 {{
    MISC_CHECK {{
      misc_path \"/bin/true\"
    }}
  }}
}}
"
    );
    let (c, w) = conv(&text).unwrap();
    assert!(w.is_empty(), "{w:?}");
    let s = &c.service[0];
    let secs = |n| Some(Dur(Duration::from_secs(n)));
    let h = &s.backend[0].health[0];
    assert_eq!((h.fall, h.retry_interval, h.warmup), (3, secs(3), secs(5)));
    let h = &s.backend[1].health[0];
    assert_eq!(
        (h.fall, h.retry_interval, h.warmup),
        (4, secs(1), None),
        "keepalived's default delay_before_retry: 1 s"
    );
    let h = &s.backend[2].health[0];
    assert_eq!((h.fall, h.retry_interval), (1, None), "no retry, no delay");
    round_trip(&text, Path::new("keepalived.conf"));
}

/// The LVS-DR fixture with mixed checkers: every real server keeps its
/// own, with their keywords honoured, and nothing is warned about.
#[test]
fn mixed_checkers_fixture() {
    let (c, w) = fixture("lvs_dr_mixed_checkers.conf");
    // The one notice: the address in misc_path became $BACKEND.
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].message.contains("written as $BACKEND"), "{w:?}");
    let web = &c.service[0];
    let kinds: Vec<Vec<HealthKind>> = web
        .backend
        .iter()
        .map(|b| b.health.iter().map(|h| h.kind).collect())
        .collect();
    assert_eq!(
        kinds,
        [
            vec![HealthKind::Http],
            vec![HealthKind::Tcp],
            vec![HealthKind::Exec],
            vec![HealthKind::Tcp, HealthKind::Http],
        ]
    );
    let b = &web.backend;
    assert_eq!(b[0].health[0].urls.len(), 2);
    assert_eq!(
        b[0].health[0].urls[1]
            .expect_status
            .as_ref()
            .unwrap()
            .to_string(),
        "200-299, 304"
    );
    assert_eq!(b[1].health[0].bind, Some("198.18.30.2".parse().unwrap()));
    assert!(b[2].health[0].dynamic_weight);
    assert_eq!(
        b[2].health[0].command.as_deref(),
        Some("/usr/local/bin/check_load $BACKEND")
    );
    assert_eq!(b[3].health[1].port, Some(8081));
    let tls = &c.service[1];
    assert_eq!(tls.health.kind, HealthKind::None, "two different SSL_GETs");
    let ssl = &tls.backend[0].health[0];
    assert_eq!(ssl.kind, HealthKind::Https);
    assert_eq!(ssl.virtualhost.as_deref(), Some("www.example.test"));
    assert_eq!(
        ssl.urls[1].digest.as_deref(),
        Some("9b3a0c85a887a256d6939da88aabd8cd")
    );
    assert_eq!(ssl.fall, 4);
    assert_eq!(tls.backend[1].health[0].expect_status.to_string(), "200");
}

/// The resolver fixture: DNS_CHECK on the UDP service, its type and name.
#[test]
fn dns_check_fixture() {
    let (c, w) = fixture("udp_dns_check.conf");
    assert!(w.is_empty(), "{w:?}");
    let udp = &c.service[0];
    assert_eq!(udp.protocol, Protocol::Udp);
    let h = &udp.health;
    assert_eq!(h.kind, HealthKind::Dns, "one check for every resolver");
    assert_eq!(
        (h.dns_type.as_deref(), h.dns_name.as_deref(), h.fall),
        (Some("A"), Some("resolver-check.example.test"), 3)
    );
    assert_eq!(c.service[1].health.kind, HealthKind::Tcp);
}

#[test]
fn persistence_and_source_hashing() {
    let (c, w) = fixture("lvs_nat_persistence.conf");
    let cart = &c.service[0];
    assert_eq!(cart.persistence_timeout, Some(Dur(Duration::from_mins(10))));
    assert_eq!(cart.persistence_prefix, Some(24));
    assert_eq!(cart.scheduler, Scheduler::Maglev);
    let cache = &c.service[1];
    assert_eq!(cache.scheduler, Scheduler::SourceHash);
    assert_eq!(cache.persistence_timeout, None);
    // Only wlc is worth a notice (Maglev does not count connections).
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].to_string().contains("wlc"), "{w:?}");
    for (g, v4, want) in [
        ("255.255.0.0", true, Some(16)),
        ("255.255.255.255", true, Some(32)),
        ("24", true, Some(24)),
        ("64", false, Some(64)),
        ("33", true, None),
        ("255.0.255.0", true, None),
        ("255.255.255.0", false, None),
        ("wide", true, None),
    ] {
        assert_eq!(super::virtual_server::granularity(g, v4), want, "{g}");
    }
    let off = format!(
        "{VRRP}\nvirtual_server 198.18.0.100 80 {{\n  lb_kind DR\n  persistence_timeout 0\n  real_server 198.18.1.11 80 {{\n  }}\n}}\n"
    );
    let (c, _) = conv(&off).unwrap();
    assert_eq!(c.service[0].persistence_timeout, None, "0: off");
}

#[test]
fn nat_is_keepalived_default_and_real_servers_may_change_the_port() {
    let text = format!(
        "{VRRP}
virtual_server 198.18.0.100 80 {{
  lb_kind NAT
  real_server 198.18.1.11 8080 {{
  }}
  real_server 198.18.1.12 80 {{
  }}
}}
"
    );
    let (c, _) = conv(&text).unwrap();
    let s = &c.service[0];
    assert_eq!(s.mode, Mode::Nat);
    assert_eq!(s.backend[0].port, Some(8080));
    assert_eq!(s.backend[1].port, None, "the service's own port");
    // No lb_kind: keepalived's default, NAT.
    let text = format!(
        "{VRRP}\nvirtual_server 198.18.0.100 80 {{\n  real_server 198.18.1.11 80 {{\n  }}\n}}\n"
    );
    assert_eq!(conv(&text).unwrap().0.service[0].mode, Mode::Nat);
    // DR cannot change the port.
    let text = format!(
        "{VRRP}\nvirtual_server 198.18.0.100 80 {{\n  lb_kind DR\n  real_server 198.18.1.11 8080 {{\n  }}\n}}\n"
    );
    let e = conv(&text).unwrap_err();
    assert!(e.contains("port 8080 differs from the service's 80"), "{e}");
}

/// keepalived's keywords for the service's keyword fields, any case;
/// anything else is refused naming the line, the keyword and what is
/// allowed.
#[test]
fn forwarding_method_and_protocol_keywords() {
    let vs = |body: &str| {
        format!(
            "{VRRP}\nvirtual_server 198.18.0.100 80 {{\n{body}\n  real_server 198.18.1.11 80 {{\n  }}\n}}\n"
        )
    };
    for (body, mode, protocol) in [
        ("  lb_kind DR", Mode::Dsr, Protocol::Tcp),
        ("  lb_kind tun\n  protocol udp", Mode::Ipip, Protocol::Udp),
        (
            "  lvs_method TUN\n  protocol TCP",
            Mode::Ipip,
            Protocol::Tcp,
        ),
    ] {
        let (c, _) = conv(&vs(body)).unwrap();
        let s = &c.service[0];
        assert_eq!((s.mode, s.protocol), (mode, protocol), "{body}");
        assert_eq!(s.scheduler, Scheduler::Maglev);
        assert_eq!(s.health.kind, HealthKind::None, "no checker");
    }
    let cases = [
        (
            "  lb_kind DR\n  protocol SCTP",
            "keepalived.conf:16: virtual_server 198.18.0.100 80 protocol: \"SCTP\" is not supported: TCP or UDP",
        ),
        (
            "  lb_kind FOO",
            "keepalived.conf:15: virtual_server 198.18.0.100 80 lb_kind: \"FOO\" is not a forwarding method: NAT, DR or TUN",
        ),
    ];
    for (body, want) in cases {
        assert_eq!(conv(&vs(body)).unwrap_err(), want);
    }
}

#[test]
fn a_virtual_server_needs_an_instance_for_the_data_plane() {
    let text = "virtual_server 198.18.0.100 80 {\n  lb_kind DR\n}\n";
    let e = conv(text).unwrap_err();
    assert!(
        e.starts_with("keepalived.conf:1: virtual_server 198.18.0.100 80: "),
        "{e}"
    );
    assert!(e.contains("[dataplane] interface"), "{e}");
}

#[test]
fn unknown_keywords_are_warnings_with_lines() {
    let text = VRRP.replace(
        "  priority 150\n",
        "  priority 150\n  smtp_alert\n  use_vmac\n",
    );
    let (c, w) = conv(&text).unwrap();
    assert_eq!(c.vrrp_instance[0].priority, 150);
    assert_eq!(w.len(), 2, "{w:?}");
    assert!(
        w[0].starts_with("keepalived.conf:9: `smtp_alert` in vrrp_instance VI_1 has no effect"),
        "{w:?}"
    );
    assert!(
        w[1].starts_with(
            "keepalived.conf:10: unsupported keyword `use_vmac` in vrrp_instance VI_1, ignored"
        ),
        "{w:?}"
    );
    let (_, w) = conv(&format!("{VRRP}\nfoo_bar 1\n")).unwrap();
    assert_eq!(
        w,
        ["keepalived.conf:14: unsupported keyword `foo_bar` in the top level, ignored"]
    );
}

#[test]
fn global_defs_apply_and_warn() {
    let text = "
global_defs {
  notification_email {
    root@localhost
  }
  smtp_server 127.0.0.1
  router_id lb01
  vrrp_version 3
  vrrp_garp_master_delay 2
  vrrp_garp_interval 0.001
  enable_script_security
  script_user nobody
}
vrrp_script chk {
  script \"/bin/true\"
  interval 0.5
  weight -20
  rise 2
  fall 3
  init_fail
}
vrrp_instance VI_1 {
  state MASTER
  interface eth0
  virtual_router_id 7
  priority 255
  advert_int 0.1
  nopreempt
  preempt_delay 3
  virtual_ipaddress {
    2001:db8::100/64 dev eth0
  }
  unicast_peer {
    2001:db8::2
  }
  track_interface {
    eth1 weight -30
    eth2
  }
  track_script {
    chk weight 10
  }
  notify_master \"/etc/keepalived/master.sh VI_1\"
  notify /etc/keepalived/notify.sh
}
";
    let (c, w) = conv(text).unwrap();
    let v = &c.vrrp_instance[0];
    assert_eq!(v.version, 3);
    assert_eq!(v.priority, 255);
    assert_eq!(v.advert_interval.0, Duration::from_millis(100));
    assert!(!v.preempt);
    assert_eq!(v.preempt_delay, Some(Dur(Duration::from_secs(3))));
    assert_eq!(v.garp_master_delay, Some(Dur(Duration::from_secs(2))));
    assert_eq!(v.garp_interval, Some(Dur(Duration::from_millis(1))));
    assert_eq!(v.track_interface[0].weight, -30);
    assert_eq!(v.track_script[0].weight, Some(10));
    assert_eq!(
        v.notify_master.as_deref(),
        Some("/etc/keepalived/master.sh VI_1")
    );
    assert_eq!(v.notify.as_deref(), Some("/etc/keepalived/notify.sh"));
    let s = &c.vrrp_script[0];
    assert_eq!(s.interval, Some(Dur(Duration::from_millis(500))));
    assert_eq!((s.weight, s.rise, s.fall, s.init_fail), (-20, 2, 3, true));
    assert_eq!(s.user.as_deref(), Some("nobody"));
    let lines: Vec<&str> = w.iter().map(|w| w.split(": ").next().unwrap()).collect();
    assert_eq!(
        lines,
        [
            "keepalived.conf:3",
            "keepalived.conf:6",
            "keepalived.conf:11",
            "keepalived.conf:12"
        ],
        "{w:?}"
    );
    round_trip(text, Path::new("keepalived.conf"));
}

#[test]
fn version_2_rules_come_from_lb_validation_with_keepalived_lines() {
    let text = VRRP.replace("  priority 150\n", "  priority 150\n  advert_int 0.5\n");
    let e = conv(&text).unwrap_err();
    assert!(
        e.starts_with(
            "keepalived.conf:9: vrrp_instance VI_1 advert_int: 500ms is not allowed: whole seconds"
        ),
        "{e}"
    );
    let text = VRRP.replace("198.18.0.100/24", "198.18.0.300");
    let e = conv(&text).unwrap_err();
    assert!(
        e.starts_with("keepalived.conf:10: vrrp_instance VI_1 virtual_ipaddress: "),
        "{e}"
    );
    let text = VRRP.replace("  priority 150\n", "  track_script {\n    nope\n  }\n");
    let e = conv(&text).unwrap_err();
    assert!(
        e.starts_with("keepalived.conf:9: vrrp_instance VI_1 track_script: "),
        "{e}"
    );
    let text = VRRP.replace("priority 150", "priority 0");
    let e = conv(&text).unwrap_err();
    assert!(
        e.starts_with("keepalived.conf:8: vrrp_instance VI_1 priority: 0 is reserved"),
        "{e}"
    );
}

#[test]
fn ipv6_instances_default_to_version_3_as_in_keepalived() {
    let text = VRRP.replace("198.18.0.100/24", "2001:db8::100/64");
    let (c, _) = conv(&text).unwrap();
    assert_eq!(c.vrrp_instance[0].version, 3);
    let e = conv(&text.replace("  priority 150\n", "  version 2\n")).unwrap_err();
    assert!(
        e.starts_with("keepalived.conf:8: vrrp_instance VI_1 version: VRRPv2 is IPv4 only"),
        "{e}"
    );
}

#[test]
fn authentication() {
    let auth = "  authentication {\n    auth_type PASS\n    auth_pass secret\n  }\n";
    let (c, _) = conv(&VRRP.replace("  priority 150\n", auth)).unwrap();
    assert_eq!(c.vrrp_instance[0].version, 2);
    assert_eq!(c.vrrp_instance[0].auth_pass.as_deref(), Some("secret"));
    let (c, w) = conv(&VRRP.replace("  priority 150\n", &format!("  version 3\n{auth}"))).unwrap();
    assert_eq!(c.vrrp_instance[0].version, 3);
    assert_eq!(c.vrrp_instance[0].auth_pass, None);
    assert_eq!(w.len(), 1, "{w:?}");
    let e = conv(&VRRP.replace("  priority 150\n", &auth.replace("PASS", "AH"))).unwrap_err();
    assert!(
        e.starts_with(
            "keepalived.conf:9: vrrp_instance VI_1 authentication auth_type: auth_type AH"
        ),
        "{e}"
    );
}

#[test]
fn syntax() {
    let one_line = "vrrp_instance VI_1\n{\n interface eth0 ! comment\n virtual_router_id 1 # c\n virtual_ipaddress { 198.18.0.1 }\n}\n";
    let (c, w) = conv(one_line).unwrap();
    assert!(w.is_empty(), "{w:?}");
    assert_eq!(c.vrrp_instance[0].virtual_ipaddress, ["198.18.0.1"]);
    let e = conv("vrrp_instance VI_1 {\n interface eth0\n").unwrap_err();
    assert!(
        e.starts_with("keepalived.conf:1: this `{` is never closed"),
        "{e}"
    );
    let e = conv("vrrp_script x {\n script \"/bin/true\n}\n").unwrap_err();
    assert!(e.starts_with("keepalived.conf:2: unterminated"), "{e}");
    assert_eq!(
        split_line(r#"a "b c" {d}"#).unwrap(),
        [
            ("a".into(), false),
            ("b c".into(), true),
            ("{".into(), false),
            ("d".into(), false),
            ("}".into(), false)
        ]
    );
}

#[test]
fn converted_toml_is_tidy() {
    let text = format!(
        "{VRRP}
virtual_server 198.18.0.100 80 {{
  lb_kind DR
  real_server 198.18.1.11 80 {{
    TCP_CHECK {{
    }}
  }}
  real_server 198.18.1.12 80 {{
    TCP_CHECK {{
    }}
  }}
}}
"
    )
    .replace("  priority 150\n", "  track_script {\n    chk\n  }\n")
        + "vrrp_script chk {\n  script true\n}\n";
    let (c, _) = conv(&text).unwrap();
    let out = to_toml(&c).unwrap();
    assert!(
        out.contains("track_script = [{ name = \"chk\" }]\n"),
        "{out}"
    );
    assert!(out.contains("\nhealth = { kind = \"tcp\", "), "{out}");
    assert!(
        out.contains("backend = [\n  { address = \"198.18.1.11\", weight = 1 },\n"),
        "{out}"
    );
    assert!(!out.contains("[]") && !out.contains("[service."), "{out}");
    assert_eq!(Config::parse(&out, Path::new("x.toml")).unwrap(), c);
    let (c, _) = conv(&format!(
        "{VRRP}\nvirtual_server 198.18.0.100 80 {{\n lb_kind DR\n}}\n"
    ))
    .unwrap();
    assert!(to_toml(&c).unwrap().contains("\nbackend = []\n"));
}

#[test]
fn detection() {
    assert!(looks_like_keepalived(
        "! Configuration File\nglobal_defs {\n}\n"
    ));
    assert!(looks_like_keepalived("# c\n\nvrrp_instance VI_1 {"));
    assert!(looks_like_keepalived(
        "include /etc/keepalived/conf.d/*.conf\n"
    ));
    assert!(!looks_like_keepalived("# c\n[global]\nrouter_id = \"x\"\n"));
    assert!(!looks_like_keepalived(
        "[[vrrp_instance]]\nname = \"VI_1\"\n"
    ));
    assert!(!looks_like_keepalived(""));
}

#[test]
fn seconds_and_addresses() {
    assert_eq!(seconds("1"), Ok(Duration::from_secs(1)));
    assert_eq!(seconds("0.25"), Ok(Duration::from_millis(250)));
    assert_eq!(seconds("2.000001"), Ok(Duration::from_micros(2_000_001)));
    assert!(seconds("1s").is_err() && seconds("-1").is_err() && seconds(".").is_err());
    assert_eq!(
        replace_address("chk 10.0.0.1 10.0.0.12 x10.0.0.1", "10.0.0.1", "$B"),
        "chk $B 10.0.0.12 x10.0.0.1"
    );
    assert!(wildcard(&['*', '.', 'c'], &['a', '.', 'c']));
}

/// The two-NIC LVS-NAT director: both instances in one sync group with its
/// notify scripts, a tracked process and a track file.
#[test]
fn sync_group_nat_fixture() {
    let (c, w) = fixture("sync_group_nat.conf");
    assert!(w.is_empty(), "{w:?}");
    let group = &c.vrrp_sync_group[0];
    assert_eq!(group.name, "VG_NAT");
    assert_eq!(group.instances, ["VI_EXT", "VI_GW"]);
    assert_eq!(
        group.notify_master.as_deref(),
        Some("/etc/lb/notify.sh master")
    );
    assert_eq!(
        group.notify_backup.as_deref(),
        Some("/etc/lb/notify.sh backup")
    );
    assert_eq!(
        group.notify_fault.as_deref(),
        Some("/etc/lb/notify.sh fault")
    );
    assert_eq!(group.notify.as_deref(), Some("/etc/lb/notify-all.sh"));
    assert!(!group.tracking_weight);
    let process = &c.vrrp_track_process[0];
    assert_eq!(
        (process.name.as_str(), process.process.as_str()),
        ("nginx_up", "nginx")
    );
    assert_eq!((process.quorum, process.weight), (1, 0));
    assert_eq!(process.fork_delay, Some(Dur(Duration::from_secs(2))));
    assert_eq!(process.terminate_delay, Some(Dur(Duration::from_secs(2))));
    let file = &c.vrrp_track_file[0];
    assert_eq!(file.file, Path::new("/run/lb/maintenance"));
    assert_eq!(
        (file.weight, file.init_file, file.init_overwrite),
        (0, Some(0), false)
    );
    assert_eq!(c.vrrp_instance[0].track_file[0].name, "maintenance");
    assert_eq!(c.vrrp_instance[1].interface, "eth1");
    assert_eq!(c.vrrp_instance[1].track_process[0].name, "nginx_up");
    // Port remapping: the real servers listen on 8080 behind port 80.
    let svc = &c.service[0];
    assert_eq!((svc.port, svc.mode), (80, Mode::Nat));
    assert!(svc.backend.iter().all(|b| b.port == Some(8080)));
    assert_eq!(svc.health.kind, HealthKind::Tcp);
}

#[test]
fn sync_group_keywords() {
    let two = format!(
        "{VRRP}vrrp_instance VI_2 {{\n  interface eth1\n  virtual_router_id 51\n  virtual_ipaddress {{\n    198.18.1.100/24\n  }}\n}}\n"
    );
    let group = |body: &str| format!("{two}vrrp_sync_group VG {{\n{body}}}\n");
    // One per line or several on a line; sync_group_tracking_weight.
    let (c, w) = conv(&group(
        "  group {\n    VI_1 VI_2\n  }\n  sync_group_tracking_weight\n  notify \"/bin/n.sh x\" root\n",
    ))
    .unwrap();
    let g = &c.vrrp_sync_group[0];
    assert_eq!(g.instances, ["VI_1", "VI_2"]);
    assert!(g.tracking_weight);
    assert_eq!(g.notify.as_deref(), Some("/bin/n.sh x"));
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].contains("the user `root` of `notify` is ignored"),
        "{w:?}"
    );
    // Group-level tracking: a warning; it is not honoured.
    let (_, w) = conv(&group(
        "  group {\n    VI_1\n    VI_2\n  }\n  track_script {\n    chk\n  }\n",
    ))
    .unwrap();
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].starts_with("keepalived.conf:25: unsupported keyword `track_script` in vrrp_sync_group VG, ignored: track the objects in each member"),
        "{w:?}"
    );
    // Errors from lb's validation, on the group's lines.
    let e = conv(&group("  group {\n    VI_1\n    VI_9\n  }\n")).unwrap_err();
    assert_eq!(
        e,
        "keepalived.conf:23: vrrp_sync_group VG instances: no [[vrrp_instance]] named \"VI_9\" (lb: vrrp_sync_group[0].instances)"
    );
    let e = conv(&format!(
        "{}vrrp_sync_group VG2 {{\n  group {{\n    VI_2\n  }}\n}}\n",
        group("  group {\n    VI_1\n    VI_2\n  }\n")
    ))
    .unwrap_err();
    assert!(
        e.starts_with("keepalived.conf:28: vrrp_sync_group VG2 instances: \"VI_2\" is already in sync group \"VG\""),
        "{e}"
    );
}

#[test]
fn track_process_and_track_file_keywords() {
    let with = |blocks: &str, tracks: &str| {
        format!(
            "{blocks}\n{}",
            VRRP.replace("  priority 150\n", &format!("  priority 150\n{tracks}"))
        )
    };
    let text = with(
        "vrrp_track_process haproxy {\n  process /usr/sbin/haproxy -f \"/etc/hap roxy.cfg\"\n  param_match partial\n  quorum 2\n  quorum_max 4\n  weight -20\n  fork_delay 0.5\n  terminate_delay 1\n}\n\
         vrrp_track_file old_name {\n  file /run/prio\n  init_file 5 overwrite\n}\n",
        "  track_process {\n    haproxy weight -30\n  }\n  track_file {\n    old_name\n  }\n",
    );
    let (c, w) = conv(&text).unwrap();
    assert!(w.is_empty(), "{w:?}");
    let process = &c.vrrp_track_process[0];
    assert_eq!(process.process, "/usr/sbin/haproxy");
    assert_eq!(process.parameters, ["-f", "/etc/hap roxy.cfg"]);
    assert_eq!(
        process.param_match,
        Some(crate::config::ParamMatch::Partial)
    );
    assert_eq!(
        (process.quorum, process.quorum_max, process.weight),
        (2, Some(4), -20)
    );
    assert_eq!(process.fork_delay, Some(Dur(Duration::from_millis(500))));
    assert_eq!(process.terminate_delay, Some(Dur(Duration::from_secs(1))));
    let file = &c.vrrp_track_file[0];
    // weight defaults to 1, as keepalived's.
    assert_eq!(
        (file.weight, file.init_file, file.init_overwrite),
        (1, Some(5), true)
    );
    let inst = &c.vrrp_instance[0];
    assert_eq!(inst.track_process[0].weight, Some(-30));
    assert_eq!(inst.track_file[0].weight, None);
    round_trip(&text, Path::new("keepalived.conf"));

    // param_match alone: no arguments allowed.
    let (c, _) = conv(&with(
        "vrrp_track_process p {\n  process nginx\n  param_match\n}\n",
        "",
    ))
    .unwrap();
    assert_eq!(
        c.vrrp_track_process[0].param_match,
        Some(crate::config::ParamMatch::Exact)
    );
    let cases = [
        (
            with("vrrp_track_process p {\n  quorum 1\n}\n", ""),
            "keepalived.conf:1: vrrp_track_process p: a vrrp_track_process needs `process NAME`",
        ),
        (
            with(
                "vrrp_track_process p {\n  process x\n  weight 10 reverse\n}\n",
                "",
            ),
            "keepalived.conf:3: vrrp_track_process p weight: `weight ... reverse` is not supported",
        ),
        (
            with(
                "vrrp_track_process p {\n  process x\n  param_match fuzzy\n}\n",
                "",
            ),
            "keepalived.conf:3: vrrp_track_process p param_match: \"fuzzy\" is not a param_match",
        ),
        (
            with(
                "vrrp_track_process p {\n  process x\n  quorum 3\n  quorum_max 2\n}\n",
                "",
            ),
            "keepalived.conf:4: vrrp_track_process p quorum_max: must be at least quorum (3)",
        ),
        (
            with("track_file f {\n  weight 2\n}\n", ""),
            "keepalived.conf:1: track_file f: a track_file needs `file PATH`",
        ),
        (
            with("track_file f {\n  file /x\n  init_file many\n}\n", ""),
            "keepalived.conf:3: track_file f init_file: \"many\" is not a number",
        ),
        (
            with("", "  track_file {\n    nope\n  }\n"),
            "keepalived.conf:11: vrrp_instance VI_1 track_file: no [[vrrp_track_file]] named \"nope\"",
        ),
    ];
    for (text, want) in cases {
        let e = conv(&text).unwrap_err();
        assert!(e.starts_with(want), "\n got: {e}\nwant: {want}");
    }
}

/// A virtual_server_group: one service per VIP, each with the group's
/// real servers (ports remapped), sorry server, quorum, omega and the
/// real servers' notify scripts.
#[test]
fn vs_group_sorry_quorum_fixture() {
    let (c, w) = fixture("vs_group_sorry_quorum.conf");
    assert!(w.is_empty(), "{w:?}");
    assert_eq!(c.service.len(), 2);
    for (s, vip) in c.service.iter().zip(["198.18.10.80", "198.18.10.81"]) {
        assert_eq!((s.vip.to_string().as_str(), s.port), (vip, 80));
        assert_eq!((s.mode, s.scheduler), (Mode::Nat, Scheduler::SourceHash));
        let q = s.quorum.as_ref().unwrap();
        assert_eq!((q.weight, q.hysteresis), (2, 1));
        assert_eq!(
            q.notify_down.as_deref(),
            Some("/etc/keepalived/web-quorum.sh down")
        );
        assert!(s.notify_on_stop);
        let sorry = s.sorry_server.as_ref().unwrap();
        assert_eq!((sorry.port, sorry.inhibit), (Some(8080), true));
        let b = &s.backend[0];
        assert_eq!((b.port, b.weight), (Some(8080), 2));
        assert_eq!(
            b.notify_up.as_deref(),
            Some("/etc/keepalived/rs.sh up 198.18.20.11")
        );
        assert_eq!(s.health.kind, HealthKind::Http);
    }
}

#[test]
fn virtual_server_groups_expand_and_errors_name_their_lines() {
    let text = |group: &str, vs: &str| {
        format!(
            "{VRRP}
virtual_server_group G {{
{group}
}}
virtual_server {vs} {{
  lb_kind NAT
  real_server 198.18.1.11 8080 {{
  }}
  real_server 198.18.1.12 {{
  }}
}}
"
        )
    };
    let (c, w) = conv(&text(
        "  198.18.0.100 80\n  198.18.0.101-102 443\n  fwmark 7\n",
        "group G",
    ))
    .unwrap();
    let got: Vec<_> = c
        .service
        .iter()
        .map(|s| {
            (
                s.vip.to_string(),
                s.port,
                s.backend.iter().map(|b| b.port).collect::<Vec<_>>(),
            )
        })
        .collect();
    // A real server without a port follows each entry's.
    let want = [
        ("198.18.0.100", 80, [Some(8080), None]),
        ("198.18.0.101", 443, [Some(8080), None]),
        ("198.18.0.102", 443, [Some(8080), None]),
    ];
    assert_eq!(got.len(), want.len());
    for (g, (vip, port, ports)) in got.iter().zip(want) {
        assert_eq!((g.0.as_str(), g.1, g.2.as_slice()), (vip, port, &ports[..]));
    }
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].starts_with("keepalived.conf:17: unsupported `fwmark 7`"),
        "{w:?}"
    );
    for (group, vs, want) in [
        (
            "  198.18.0.100 80\n",
            "group H",
            "keepalived.conf:18: virtual_server group H: no virtual_server_group named \"H\"",
        ),
        (
            "  198.18.0.100-99 80\n",
            "group G",
            "keepalived.conf:15: virtual_server_group G 198.18.0.100-99 80: \"198.18.0.100-99\": the range end is not above its start",
        ),
        ("  198.18.0.100 http\n", "group G", "\"http\" is not a port"),
        (
            "  fwmark 1\n",
            "group G",
            "the group has no `IP PORT` entry",
        ),
        (
            "  198.18.0.100 80\n  198.18.0.100 80\n",
            "group G",
            "keepalived.conf:16: virtual_server group G (198.18.0.100 80): duplicate service",
        ),
        ("  198.18.0.100 80\n", "fwmark 1", "not firewall marks"),
    ] {
        let err = conv(&text(group, vs)).unwrap_err();
        assert!(err.contains(want), "{group} {vs}: {err}");
    }
}

#[test]
fn aliases_and_notify_keywords() {
    let text = "
global_defs {
  lvs_id lb07
}
vrrp_instance VI_1 {
  interface eth0
  virtual_router_id 50
  priority 150
  mcast_src_ip 198.18.0.2
  virtual_ipaddress {
    198.18.0.100/24
  }
  notify_backup /etc/keepalived/backup.sh
  notify_fault \"/etc/keepalived/fault.sh VI_1\"
  notify_stop /etc/keepalived/stop.sh
}
virtual_server 198.18.0.100 443 {
  lb_kind DR
  real_server 198.18.0.11 443 {
    SSL_GET {
      url {
        path /
      }
      http_protocol 1.1
      enable_sni
    }
  }
}
";
    let (c, w) = conv(text).unwrap();
    assert!(w.is_empty(), "{w:?}");
    assert_eq!(c.global.router_id.as_deref(), Some("lb07"));
    let v = &c.vrrp_instance[0];
    assert_eq!(v.unicast_src_ip, Some("198.18.0.2".parse().unwrap()));
    assert_eq!(
        v.notify_backup.as_deref(),
        Some("/etc/keepalived/backup.sh")
    );
    assert_eq!(
        v.notify_fault.as_deref(),
        Some("/etc/keepalived/fault.sh VI_1")
    );
    assert_eq!(v.notify_stop.as_deref(), Some("/etc/keepalived/stop.sh"));
    assert_eq!(c.service[0].health.kind, HealthKind::Https);
}

/// `docs/keepalived.md` holds the keyword table as `keywords::table`
/// writes it (`lbctl convert --keywords` prints the same).
#[test]
fn docs_keepalived_md_is_the_keyword_table() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/keepalived.md");
    let doc = std::fs::read_to_string(path).unwrap();
    let (begin, end) = ("<!-- keywords: begin -->\n", "<!-- keywords: end -->");
    let from = doc.find(begin).expect("begin marker") + begin.len();
    let to = doc.find(end).expect("end marker");
    let want = keywords::table();
    assert!(
        doc[from..to].trim() == want.trim(),
        "docs/keepalived.md's table differs from keywords::table(): write it with `lbctl convert --keywords`\n{want}"
    );
}

/// Each test the table cites exists.
#[test]
fn the_tests_the_keyword_table_cites_exist() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let files = |place: &str| -> Vec<std::path::PathBuf> {
        let src = root.join("src");
        match place {
            "keepalived" => vec![src.join("config/keepalived/tests.rs")],
            "group" => vec![src.join("config/keepalived/group.rs")],
            "config" => vec![src.join("config/tests.rs")],
            "controller" => vec![src.join("services/controller.rs")],
            "health" => ["mod.rs", "http.rs", "dns.rs", "smtp.rs"]
                .iter()
                .map(|f| src.join("services/health").join(f))
                .collect(),
            "track" | "sync" | "machine" => vec![src.join(format!("vrrp/{place}.rs"))],
            lab => vec![root.join(format!("../lb-lab/tests/{lab}.rs"))],
        }
    };
    let mut cited = 0;
    for k in keywords::KEYWORDS {
        if let keywords::Support::Honoured { tests, .. } = k.support {
            assert!(!tests.is_empty(), "{:?} cites no test", k.names);
            for t in tests {
                let (place, name) = t.split_once("::").expect("FILE::NAME");
                let found = files(place).iter().any(|f| {
                    std::fs::read_to_string(f)
                        .unwrap_or_else(|e| panic!("{}: {e}", f.display()))
                        .contains(&format!("fn {name}("))
                });
                assert!(found, "{t} (cited for {:?}) not found", k.names);
                cited += 1;
            }
        }
    }
    assert!(cited > 50, "{cited}");
}

/// Each keyword the table calls honoured is one the reader handles, and
/// each it does not honour is a warning naming it where the table puts
/// it.
#[test]
fn the_keyword_table_matches_the_reader() {
    let sources = [
        include_str!("mod.rs"),
        include_str!("instance.rs"),
        include_str!("tracking.rs"),
        include_str!("virtual_server.rs"),
        include_str!("group.rs"),
        include_str!("lexer.rs"),
    ];
    let plain = |n: &str| n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    for k in keywords::KEYWORDS {
        for name in k.names.iter().filter(|n| plain(n)) {
            let honoured = matches!(k.support, keywords::Support::Honoured { .. });
            if honoured {
                let quoted = format!("\"{name}\"");
                assert!(
                    sources.iter().any(|s| s.contains(&quoted)),
                    "{name} ({}) is not in the reader",
                    k.block
                );
                continue;
            }
            let line = format!("  {name} 1\n");
            let vs = |vs_line: &str, rs_line: &str, check_line: &str| {
                format!(
                    "{VRRP}virtual_server 198.18.0.100 80 {{\n  lb_kind DR\n{vs_line}  real_server 198.18.0.11 80 {{\n{rs_line}    TCP_CHECK {{\n{check_line}    }}\n  }}\n}}\n"
                )
            };
            let text = match k.block {
                "top level" => format!("{VRRP}{name} 1\n"),
                "global_defs" => format!("global_defs {{\n{line}}}\n{VRRP}"),
                "vrrp_instance" => {
                    VRRP.replace("  priority 150\n", &format!("  priority 150\n{line}"))
                }
                "vrrp_sync_group" => format!(
                    "{VRRP}vrrp_instance VI_2 {{\n  interface eth1\n  virtual_router_id 51\n  priority 150\n  virtual_ipaddress {{\n    198.18.1.100/24\n  }}\n}}\nvrrp_sync_group G {{\n  group {{\n    VI_1\n    VI_2\n  }}\n{line}}}\n"
                ),
                "virtual_server" => vs(&line, "", ""),
                "real_server" => vs("", &line, ""),
                "checkers" => vs("", "", &line),
                "virtual_server_group" => format!(
                    "{VRRP}virtual_server_group G {{\n  198.18.0.100 80\n{line}}}\nvirtual_server group G {{\n  lb_kind DR\n  real_server 198.18.0.11 80 {{\n  }}\n}}\n"
                ),
                other => panic!("no template for block {other}"),
            };
            let (_, w) =
                conv(&text).unwrap_or_else(|e| panic!("{name} in {}: {e}\n{text}", k.block));
            assert!(
                w.iter()
                    .any(|w| w.contains(&format!("`{name}")) || w.contains(&format!("`{name} 1`"))),
                "{name} in {}: {w:?}",
                k.block
            );
        }
    }
}

#[test]
fn smtp_check() {
    let text = format!(
        "{VRRP}
virtual_server 198.18.0.100 25 {{
  lb_kind DR
  delay_loop 10
  real_server 198.18.1.11 25 {{
    SMTP_CHECK {{
      connect_timeout 4
      retry 2
      helo_name mx-check.example.test
    }}
  }}
  real_server 198.18.1.12 25 {{
    SMTP_CHECK {{
      connect_timeout 4
      retry 2
    }}
  }}
}}
"
    );
    let (c, w) = conv(&text).unwrap();
    assert!(w.is_empty(), "{w:?}");
    let s = &c.service[0];
    // Two different checks: each backend keeps its own.
    let h = &s.backend[0].health[0];
    assert_eq!(h.kind, HealthKind::Smtp);
    assert_eq!(h.smtp_helo.as_deref(), Some("mx-check.example.test"));
    assert_eq!((h.fall, h.timeout.0), (3, Duration::from_secs(4)));
    assert_eq!(s.backend[1].health[0].smtp_helo, None);
    round_trip(&text, Path::new("keepalived.conf"));
}
