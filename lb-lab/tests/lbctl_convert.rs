//! `lbctl convert` as an operator runs it: a keepalived.conf in, lb's TOML
//! out, headed by the file's keywords classified (honoured, not honoured,
//! unknown); the warnings on stderr with file, line and why; `--keywords`
//! prints the whole table, which is `docs/keepalived.md`'s. No root
//! needed.

use std::path::{Path, PathBuf};
use std::process::Output;

static LBCTL: std::sync::LazyLock<PathBuf> = std::sync::LazyLock::new(|| lb_lab::bin("lbctl"));

fn lbctl(args: &[&str]) -> Output {
    std::process::Command::new(&*LBCTL)
        .args(args)
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn convert_classifies_the_file_s_keywords_and_prints_toml_that_loads() {
    let dir = std::env::temp_dir().join(format!("lbctl-convert-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let conf = dir.join("keepalived.conf");
    std::fs::write(
        &conf,
        "global_defs {
  router_id lb01
  smtp_server 127.0.0.1
  bogus_option 1
}
vrrp_instance VI_1 {
  interface eth0
  virtual_router_id 50
  priority 150
  virtual_ipaddress {
    198.18.0.100/24
  }
}
virtual_server_group WEB {
  198.18.0.100 80
  198.18.0.100 8080
}
virtual_server group WEB {
  lb_kind NAT
  quorum 1
  real_server 198.18.1.11 80 {
    uthreshold 100
    TCP_CHECK {
      connect_timeout 2
    }
  }
}
",
    )
    .unwrap();
    let out = lbctl(&["convert", conf.to_str().unwrap()]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains("# honoured: TCP_CHECK connect_timeout global_defs interface lb_kind priority quorum real_server router_id virtual_ipaddress virtual_router_id virtual_server virtual_server_group vrrp_instance\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("# not honoured (see the warnings): smtp_server uthreshold\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("# unknown to lb (see the warnings): bogus_option\n"),
        "{stdout}"
    );
    let file = conf.display();
    for want in [
        format!(
            "{file}:3: `smtp_server` in global_defs has no effect in lb (lb sends no e-mail), ignored"
        ),
        format!("{file}:4: unsupported keyword `bogus_option` in global_defs, ignored"),
        format!(
            "{file}:22: unsupported keyword `uthreshold` in virtual_server group WEB real_server 198.18.1.11 80, ignored: lb has no per-backend connection limits"
        ),
    ] {
        assert!(stderr.contains(&want), "{want}\n{stderr}");
    }
    // The TOML loads: two services, one per VIP:port of the group.
    let toml_path = dir.join("lb.toml");
    std::fs::write(&toml_path, &stdout).unwrap();
    let config = lb_user::config::Config::load(&toml_path).unwrap();
    let ports: Vec<u16> = config.service.iter().map(|s| s.port).collect();
    assert_eq!(ports, [80, 8080]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn keywords_prints_the_table_of_docs_keepalived_md() {
    let out = lbctl(&["convert", "--keywords"]);
    assert!(out.status.success());
    let table = text(&out.stdout);
    let doc = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/keepalived.md"),
    )
    .unwrap();
    assert!(table.contains("| `quorum`, `hysteresis`, `quorum_up`, `quorum_down` | honoured:"));
    assert!(
        doc.contains(table.trim()),
        "docs/keepalived.md is not the table"
    );
}

#[test]
fn convert_says_what_is_wrong() {
    let out = lbctl(&["convert"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("<FILE>"),
        "{}",
        text(&out.stderr)
    );
    let out = lbctl(&["convert", "/nonexistent/keepalived.conf"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("/nonexistent/keepalived.conf"),
        "{}",
        text(&out.stderr)
    );
}
