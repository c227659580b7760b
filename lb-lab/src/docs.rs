//! The manual and shell completions, made from the definitions the
//! programs themselves use, so they cannot drift from `--help` or from the
//! file lbd reads:
//!
//! - lbd(8), lbctl(8) and a page per subcommand (`lbctl-flows(8)`, as git
//!   and cargo do) from the clap definitions in `lb_user::cli`
//!   (clap_mangen), with FILES, EXIT STATUS and SEE ALSO added here;
//! - lb.toml(5) from the configuration's JSON Schema
//!   ([`lb_user::config::Config::schema`]: the serde types and their doc
//!   comments), a section per table with every key, its type, default and
//!   description;
//! - bash, zsh and fish completions for both programs (clap_complete).
//!
//! `lb-docs DIR` writes them all, and the schema as `lb.schema.json`;
//! `cargo xtask package` installs them.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};

use clap::CommandFactory as _;
use clap_complete::Shell;
use serde_json::Value;

/// The manual's date and version line: the package's version.
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The `.TH` footer's manual name.
const MANUAL: &str = "lb manual";

/// Every file the generator writes, relative to its output directory, with
/// its contents: `man/man8/lbd.8`, `man/man5/lb.toml.5`,
/// `completions/bash/lbctl`, ...
///
/// # Errors
/// A page that does not render (clap_mangen's writer only fails on I/O,
/// which a `Vec` does not do) or a schema of an unexpected shape.
pub fn render_all() -> io::Result<BTreeMap<PathBuf, Vec<u8>>> {
    let mut files = BTreeMap::new();
    for (name, cmd, extra) in [
        ("lbd", lb_user::cli::lbd::Cli::command(), LBD_EXTRA),
        ("lbctl", lb_user::cli::lbctl::Cli::command(), LBCTL_EXTRA),
    ] {
        for (file, page) in man_pages(cmd.clone(), extra)? {
            files.insert(Path::new("man/man8").join(file), page);
        }
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut cmd.clone(), name, &mut out);
            files.insert(completion_path(shell, name), out);
        }
    }
    let schema = schema_value()?;
    files.insert(
        PathBuf::from("man/man5/lb.toml.5"),
        lb_toml_page(&schema)?.into_bytes(),
    );
    let mut json = serde_json::to_vec_pretty(&schema).map_err(io::Error::other)?;
    json.push(b'\n');
    files.insert(PathBuf::from("lb.schema.json"), json);
    Ok(files)
}

/// Where Debian's shells look for a program's completion, under
/// `completions/` here and `/usr/share/...` installed.
fn completion_path(shell: Shell, name: &str) -> PathBuf {
    match shell {
        Shell::Zsh => PathBuf::from(format!("completions/zsh/_{name}")),
        Shell::Fish => PathBuf::from(format!("completions/fish/{name}.fish")),
        _ => PathBuf::from(format!("completions/bash/{name}")),
    }
}

/// Write [`render_all`]'s files under `dir`; returns their paths.
///
/// # Errors
/// Rendering, or creating a directory or file.
pub fn write_all(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    for (rel, bytes) in render_all()? {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, bytes)?;
        written.push(path);
    }
    Ok(written)
}

/// The configuration schema as JSON.
///
/// # Errors
/// Never in practice: the schema is JSON by construction.
pub fn schema_value() -> io::Result<Value> {
    serde_json::to_value(lb_user::config::Config::schema()).map_err(io::Error::other)
}

/// Sections lbd(8) adds after the generated ones (roff).
const LBD_EXTRA: &str = r#".SH FILES
.TP
.I /etc/lb/lb.toml
The configuration (the package's unit reads it); see
.BR lb.toml (5).
A keepalived.conf is read as well (see
.BR lbctl-convert (8)).
.TP
.I /run/lb/lbd.sock
The control socket
.BR lbctl (8)
talks to (mode 0600).
.TP
.I /sys/fs/bpf/lb
The pinned XDP program, its link and maps
.RB ( "bpftool map dump pinned /sys/fs/bpf/lb/MAP" ).
.TP
.I /usr/share/lb/lb.schema.json
The configuration's JSON Schema, as
.B lbd config-schema
prints it.
.SH SIGNALS
.TP
.B SIGHUP
Re-read the configuration and apply the difference
.RB ( "systemctl reload lbd" );
a file that does not validate is refused and the running one stays.
.TP
.B SIGTERM, SIGINT
Stop: masters send priority 0 and remove their VIPs, the XDP program is
detached and its pins removed.
.TP
.B SIGUSR2
Exit leaving the data plane forwarding for the next lbd to adopt (the unit's
restart; an upgrade without a gap).
.SH ENVIRONMENT
.TP
.B LB_LOG
The log level: error, warn, info (default), debug, trace; or a
tracing filter such as
.BR lb_user::vrrp=debug .
.SH EXIT STATUS
0 after a clean stop; 1 when lbd cannot start (the reason is its last log
line) or a check fails.
.SH SEE ALSO
.BR lbctl (8),
.BR lb.toml (5),
.BR keepalived (8),
.BR bpftool (8),
.BR systemctl (1)
"#;

/// Sections lbctl(8) adds after the generated ones (roff).
const LBCTL_EXTRA: &str = r".SH FILES
.TP
.I /run/lb/lbd.sock
lbd's control socket (mode 0600: lbctl runs as root).
.SH EXIT STATUS
.TP
.B 0
Success.
.TP
.B 1
lbd refused the request (no such service, a reload whose file does not
validate, ...).
.TP
.B 2
Bad usage.
.TP
.B 3
lbd cannot be reached (not running, or not root).
.SH SEE ALSO
.BR lbd (8),
.BR lb.toml (5),
.BR ipvsadm (8)
";

/// A program's page and one page per subcommand, as (file name, roff).
fn man_pages(cmd: clap::Command, extra: &str) -> io::Result<Vec<(String, Vec<u8>)>> {
    let mut cmd = cmd.version(VERSION).disable_help_subcommand(true);
    cmd.build();
    let mut pages = Vec::new();
    let man = clap_mangen::Man::new(cmd.clone())
        .section("8")
        .date(VERSION)
        .manual(MANUAL);
    let mut page = Vec::new();
    man.render_title(&mut page)?;
    man.render_name_section(&mut page)?;
    man.render_synopsis_section(&mut page)?;
    man.render_description_section(&mut page)?;
    man.render_options_section(&mut page)?;
    if cmd.get_subcommands().next().is_some() {
        man.render_subcommands_section(&mut page)?;
    }
    page.extend_from_slice(extra.as_bytes());
    pages.push((man.get_filename(), page));
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let man = clap_mangen::Man::new(sub.clone())
            .section("8")
            .date(VERSION)
            .manual(MANUAL);
        let mut page = Vec::new();
        man.render(&mut page)?;
        let _ = write!(
            Sink(&mut page),
            ".SH SEE ALSO\n.BR {} (8)\n",
            cmd.get_name()
        );
        pages.push((man.get_filename(), page));
    }
    Ok(pages)
}

/// `write!` into a byte vector.
struct Sink<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for Sink<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// Text for roff: backslashes and leading dots or quotes escaped, so a
/// description can never be read as a request.
fn roff_text(s: &str) -> String {
    let mut out = String::new();
    for line in s.lines() {
        let line = line.trim_end().replace('\\', "\\e").replace('-', "\\-");
        if line.starts_with('.') || line.starts_with('\'') {
            out.push_str("\\&");
        }
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// A description from the schema for a page: Markdown's backquotes
/// dropped (the page sets keys in bold already), one paragraph.
fn prose(description: &str) -> String {
    roff_text(&description.replace('`', "").replace('\n', " "))
}

/// lb.toml(5): the tables and keys of the file, from `schema`.
///
/// # Errors
/// A schema whose root is not an object with properties.
pub fn lb_toml_page(schema: &Value) -> io::Result<String> {
    let defs = schema
        .get("$defs")
        .and_then(Value::as_object)
        .ok_or_else(|| io::Error::other("the schema has no $defs"))?;
    let root = schema
        .get("properties")
        .and_then(Value::as_object)
        .ok_or_else(|| io::Error::other("the schema's root has no properties"))?;
    let mut page =
        format!(".TH LB.TOML 5 \"{VERSION}\" \"lb {VERSION}\" \"{MANUAL}\"\n{LB_TOML_HEAD}");
    // Tables first in the order of the file's struct, then each table's
    // sub-tables after it.
    let mut order: Vec<(&String, &Value)> = root.iter().collect();
    order.sort_by_key(|(name, _)| table_rank(name));
    for (name, prop) in order {
        render_table(&mut page, defs, name, prop);
    }
    page.push_str(LB_TOML_TAIL);
    Ok(page)
}

/// The order tables appear in on the page: as an operator meets them.
fn table_rank(name: &str) -> usize {
    const ORDER: &[&str] = &[
        "global",
        "dataplane",
        "service",
        "nat",
        "vrrp_instance",
        "vrrp_sync_group",
        "vrrp_script",
        "vrrp_track_process",
        "vrrp_track_file",
        "sync",
        "bgp",
    ];
    ORDER.iter().position(|n| *n == name).unwrap_or(ORDER.len())
}

/// What a property holds: a table (the `$defs` name of an object), an
/// array of tables, or a value.
enum Shape<'a> {
    Table(&'a str),
    Tables(&'a str),
    Value,
}

/// The `$defs` name a `$ref` points at.
fn ref_name(v: &Value) -> Option<&str> {
    v.get("$ref")?.as_str()?.strip_prefix("#/$defs/")
}

/// `v` without its `null` alternative (an `Option` field).
fn non_null(v: &Value) -> &Value {
    if let Some(any) = v.get("anyOf").and_then(Value::as_array) {
        let rest: Vec<&Value> = any
            .iter()
            .filter(|a| a.get("type").and_then(Value::as_str) != Some("null"))
            .collect();
        if let [one] = rest.as_slice() {
            return one;
        }
    }
    v
}

/// Whether `name` in `defs` is an object with properties (a table).
fn is_table(defs: &serde_json::Map<String, Value>, name: &str) -> bool {
    defs.get(name)
        .and_then(|d| d.get("properties"))
        .is_some_and(Value::is_object)
}

fn shape<'a>(defs: &serde_json::Map<String, Value>, prop: &'a Value) -> Shape<'a> {
    let v = non_null(prop);
    if let Some(name) = ref_name(v).filter(|n| is_table(defs, n)) {
        return Shape::Table(name);
    }
    if v.get("type").and_then(Value::as_str) == Some("array")
        && let Some(name) = v
            .get("items")
            .and_then(ref_name)
            .filter(|n| is_table(defs, n))
    {
        return Shape::Tables(name);
    }
    Shape::Value
}

/// A table's heading, its description, its keys, then its sub-tables.
fn render_table(
    page: &mut String,
    defs: &serde_json::Map<String, Value>,
    path: &str,
    prop: &Value,
) {
    let (def, header) = match shape(defs, prop) {
        Shape::Table(def) => (def, format!("[{path}]")),
        Shape::Tables(def) => (def, format!("[[{path}]]")),
        Shape::Value => return,
    };
    let Some(props) = defs
        .get(def)
        .and_then(|d| d.get("properties"))
        .and_then(Value::as_object)
    else {
        return;
    };
    let required: Vec<&str> = defs[def]
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let _ = writeln!(
        page,
        "{} {}",
        if path.contains('.') { ".SS" } else { ".SH" },
        roff_quoted(&header)
    );
    // A table's description, unless it only repeats its heading.
    if let Some(d) = prop.get("description").and_then(Value::as_str)
        && d.trim_matches(|c: char| c == '`' || c == '.') != header
    {
        page.push_str(&prose(d));
    }
    let mut nested = Vec::new();
    for (key, value) in props {
        if !matches!(shape(defs, value), Shape::Value) {
            nested.push((format!("{path}.{key}"), value));
        }
        let _ = writeln!(page, ".TP\n.B {key}");
        let kind = type_words(defs, value);
        let mut facts = vec![kind];
        if required.contains(&key.as_str()) {
            facts.push("required".into());
        }
        if let Some(d) = value.get("default").filter(|d| is_simple(d)) {
            facts.push(format!("default {}", toml_value(d)));
        }
        let _ = writeln!(page, "({})", roff_text(&facts.join("; ")).trim_end());
        if let Some(d) = value.get("description").and_then(Value::as_str) {
            page.push_str(&prose(d));
        }
    }
    for (sub, value) in nested {
        render_table(page, defs, &sub, value);
    }
}

/// A `.SH`/`.SS` argument in double quotes (a heading with brackets).
fn roff_quoted(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\\(dq"))
}

/// Whether a default is worth printing inline (not a whole table).
fn is_simple(v: &Value) -> bool {
    match v {
        Value::Null | Value::Object(_) => false,
        Value::Array(a) => a.iter().all(|x| !x.is_object() && !x.is_array()),
        _ => true,
    }
}

/// A JSON default as TOML writes it.
fn toml_value(v: &Value) -> String {
    match v {
        Value::String(s) => format!("\"{s}\""),
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(toml_value).collect::<Vec<_>>().join(", ")
        ),
        other => other.to_string(),
    }
}

/// A value's type in words: `string`, `integer`, `duration`, `tcp | udp`,
/// `array of string`, `table` ...
fn type_words(defs: &serde_json::Map<String, Value>, prop: &Value) -> String {
    let v = non_null(prop);
    if let Some(name) = ref_name(v) {
        return match name {
            "Duration" => "duration".into(),
            "StatusCodes" => "status codes".into(),
            "TrackInterface" => "interface name or { name, weight }".into(),
            n if is_table(defs, n) => "table".into(),
            n => enum_words(&defs[n]).unwrap_or_else(|| n.to_lowercase()),
        };
    }
    if let Some(words) = enum_words(v) {
        return words;
    }
    match v.get("type") {
        Some(Value::String(t)) if t == "array" => {
            let items = v
                .get("items")
                .map_or_else(|| "value".into(), |i| type_words(defs, i));
            format!("array of {items}")
        }
        Some(Value::String(t)) if t == "object" => "table".into(),
        Some(Value::String(t)) => t.clone(),
        // `["integer", "null"]`: an optional value.
        Some(Value::Array(ts)) => ts
            .iter()
            .filter_map(Value::as_str)
            .filter(|t| *t != "null")
            .collect::<Vec<_>>()
            .join(" or "),
        _ => "value".into(),
    }
}

/// `a | b | c` for a schema of constant strings (`enum`, or `oneOf` of
/// `const`s with their own descriptions).
fn enum_words(v: &Value) -> Option<String> {
    if let Some(e) = v.get("enum").and_then(Value::as_array) {
        let words: Vec<&str> = e.iter().filter_map(Value::as_str).collect();
        return (!words.is_empty()).then(|| words.join(" | "));
    }
    let one_of = v.get("oneOf").and_then(Value::as_array)?;
    let mut words = Vec::new();
    for alt in one_of {
        if let Some(c) = alt.get("const").and_then(Value::as_str) {
            words.push(c.to_owned());
        } else if let Some(e) = alt.get("enum").and_then(Value::as_array) {
            words.extend(e.iter().filter_map(Value::as_str).map(str::to_owned));
        } else {
            return None;
        }
    }
    (!words.is_empty()).then(|| words.join(" | "))
}

/// lb.toml(5) before the tables.
const LB_TOML_HEAD: &str = r#".SH NAME
lb.toml \- configuration file of lbd, the XDP load balancer
.SH SYNOPSIS
.I /etc/lb/lb.toml
.SH DESCRIPTION
.B lbd
reads a TOML file: virtual services (a VIP, port and protocol) and their
backends, the data plane's interface, VRRP instances that decide which node
holds each VIP, health checks, connection sync between nodes and BGP
announcement.
An unknown key is an error, not a warning; every error names the file, the
line and the key, and says what is allowed.
Check a file without touching the kernel with
.BR "lbd check-config FILE" ;
apply a changed file to a running lbd with
.B systemctl reload lbd
(or
.BR "lbctl reload" ),
which refuses a file that does not validate and keeps the running one.
.PP
Durations are strings with a unit:
.BR \(dq100ms\(dq ", " \(dq1s\(dq ", " \(dq1.5s\(dq ", " \(dq2m\(dq .
Key names follow keepalived's keywords where one exists; a keepalived.conf
can be read as it is, or converted with
.BR "lbctl convert keepalived.conf" .
.PP
Each key below gives its type, whether it is required, and its default
when it has one. This page is made from the same types and descriptions
lbd reads the file with; the file's JSON Schema
.RI ( /usr/share/lb/lb.schema.json ,
or
.BR "lbd config-schema" )
lets an editor complete and check it.
"#;

/// lb.toml(5) after the tables.
const LB_TOML_TAIL: &str = r#".SH EXAMPLE
A commented example that validates is installed as
.IR /etc/lb/lb.toml ;
the package's
.I /usr/share/doc/lb/examples/
holds more (connection sync, etcd backends, bird for BGP).
.PP
.nf
[dataplane]
interface = "eth0"

[[vrrp_instance]]
name = "VI_1"
interface = "eth0"
virtual_router_id = 51
priority = 150
virtual_ipaddress = ["198.18.0.100/24"]

[[service]]
vip = "198.18.0.100"
port = 80
vrrp_instance = "VI_1"
backend = [
    { address = "198.18.0.11" },
    { address = "198.18.0.12", weight = 2 },
]
.fi
.SH SEE ALSO
.BR lbd (8),
.BR lbctl (8),
.BR keepalived.conf (5)
"#;

#[cfg(test)]
mod tests {
    use super::*;

    /// The schema's node for a key path (`service.backend.weight`):
    /// through `$ref`s, optional values, arrays of tables.
    fn resolve<'a>(schema: &'a Value, path: &[&str]) -> Option<&'a Value> {
        let defs = schema["$defs"].as_object()?;
        let mut node = schema;
        for key in path {
            let table = table_of(defs, node)?;
            node = table.get("properties")?.get(*key)?;
        }
        Some(node)
    }

    /// The object schema a node holds (itself, its `$ref`, its array's
    /// items, an alternative of `anyOf`).
    fn table_of<'a>(
        defs: &'a serde_json::Map<String, Value>,
        node: &'a Value,
    ) -> Option<&'a Value> {
        if node.get("properties").is_some() {
            return Some(node);
        }
        if let Some(name) = ref_name(node) {
            return table_of(defs, defs.get(name)?);
        }
        if let Some(items) = node.get("items") {
            return table_of(defs, items);
        }
        node.get("anyOf")?
            .as_array()?
            .iter()
            .find_map(|alt| table_of(defs, alt))
    }

    /// Every key path of a TOML document (tables and arrays of tables
    /// descended into).
    fn key_paths(prefix: &[String], v: &toml::Value, out: &mut Vec<Vec<String>>) {
        match v {
            toml::Value::Table(t) => {
                for (k, v) in t {
                    let mut p = prefix.to_vec();
                    p.push(k.clone());
                    out.push(p.clone());
                    key_paths(&p, v, out);
                }
            }
            toml::Value::Array(a) => {
                for v in a.iter().filter(|v| v.is_table()) {
                    key_paths(prefix, v, out);
                }
            }
            _ => {}
        }
    }

    fn repo() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
    }

    #[test]
    fn every_key_the_examples_use_is_described_on_the_page() {
        let schema = schema_value().unwrap();
        let page = lb_toml_page(&schema).unwrap();
        let mut checked = 0;
        for file in [
            "examples/lb.toml",
            "examples/etcd-backends.toml",
            "examples/bird/lb.toml",
            "examples/lab/lb1.toml",
        ] {
            let text = std::fs::read_to_string(repo().join(file)).unwrap();
            let doc: toml::Value = toml::from_str(&text).unwrap();
            let mut paths = Vec::new();
            key_paths(&[], &doc, &mut paths);
            assert!(!paths.is_empty(), "{file}: no keys read");
            for path in paths {
                let keys: Vec<&str> = path.iter().map(String::as_str).collect();
                // Map-valued keys (`backends_from = { etcd = [...] }`)
                // descend into their own table's keys as well.
                let node = resolve(&schema, &keys)
                    .unwrap_or_else(|| panic!("{file}: {} is not in the schema", keys.join(".")));
                let described = node
                    .get("description")
                    .and_then(Value::as_str)
                    .is_some_and(|d| !d.trim().is_empty());
                assert!(described, "{file}: {} has no description", keys.join("."));
                let last = keys.last().unwrap();
                let dotted = keys.join(".");
                assert!(
                    page.contains(&format!(".B {last}\n"))
                        || page.contains(&format!("\"[{dotted}]\""))
                        || page.contains(&format!("\"[[{dotted}]]\"")),
                    "{file}: {} is not on lb.toml(5)",
                    keys.join(".")
                );
                checked += 1;
            }
        }
        assert!(checked > 50, "only {checked} keys checked");
    }

    #[test]
    fn every_key_in_the_schema_has_a_description() {
        let schema = schema_value().unwrap();
        let mut missing = Vec::new();
        let mut seen = 0;
        for (name, def) in schema["$defs"].as_object().unwrap() {
            for (key, prop) in def
                .get("properties")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
            {
                seen += 1;
                if prop.get("description").and_then(Value::as_str).is_none() {
                    missing.push(format!("{name}.{key}"));
                }
            }
        }
        assert!(seen > 100, "only {seen} keys in the schema");
        assert!(
            missing.is_empty(),
            "keys without a description: {missing:?}"
        );
    }

    #[test]
    fn the_page_has_a_section_for_every_table() {
        let page = lb_toml_page(&schema_value().unwrap()).unwrap();
        for header in [
            ".SH \"[global]\"",
            ".SH \"[dataplane]\"",
            ".SH \"[[service]]\"",
            ".SS \"[[service.backend]]\"",
            ".SS \"[service.health]\"",
            ".SH \"[[vrrp_instance]]\"",
            ".SH \"[sync]\"",
            ".SH \"[bgp]\"",
            ".SH \"[nat]\"",
        ] {
            assert!(page.contains(header), "lb.toml(5) has no {header}");
        }
        // Types, requirements and defaults are written out.
        assert!(page.contains("(dsr | ipip | nat | fullnat; default \"dsr\")"));
        assert!(page.contains("(string; required)"));
    }

    #[test]
    fn the_example_on_the_page_validates() {
        let body = LB_TOML_TAIL
            .split(".nf\n")
            .nth(1)
            .and_then(|rest| rest.split(".fi\n").next())
            .unwrap();
        lb_user::config::Config::parse(body, Path::new("lb.toml(5)")).unwrap();
    }

    #[test]
    fn every_subcommand_and_option_has_its_page() {
        let files = render_all().unwrap();
        for (name, cmd) in [
            ("lbd", lb_user::cli::lbd::Cli::command()),
            ("lbctl", lb_user::cli::lbctl::Cli::command()),
        ] {
            let main =
                String::from_utf8(files[&PathBuf::from(format!("man/man8/{name}.8"))].clone())
                    .unwrap();
            assert!(main.contains(".SH FILES") && main.contains(".SH EXIT STATUS"));
            for arg in cmd.get_arguments().filter_map(clap::Arg::get_long) {
                assert!(
                    main.contains(&format!("\\-\\-{}", arg.replace('-', "\\-"))),
                    "{name}(8) lacks --{arg}"
                );
            }
            for sub in cmd.get_subcommands() {
                let file = PathBuf::from(format!("man/man8/{name}-{}.8", sub.get_name()));
                let page = String::from_utf8(
                    files
                        .get(&file)
                        .unwrap_or_else(|| panic!("no {}", file.display()))
                        .clone(),
                )
                .unwrap();
                for arg in sub.get_arguments().filter_map(clap::Arg::get_long) {
                    assert!(
                        page.contains(&arg.replace('-', "\\-")),
                        "{} lacks --{arg}",
                        file.display()
                    );
                }
                for shell in ["bash/", "zsh/_", "fish/"] {
                    let ext = if shell == "fish/" { ".fish" } else { "" };
                    let comp = String::from_utf8(
                        files[&PathBuf::from(format!("completions/{shell}{name}{ext}"))].clone(),
                    )
                    .unwrap();
                    assert!(
                        comp.contains(sub.get_name()),
                        "{shell}{name} does not complete {}",
                        sub.get_name()
                    );
                }
            }
        }
    }

    #[test]
    fn man_renders_every_page_without_a_warning() {
        let dir = std::env::temp_dir().join(format!("lb-docs-test-{}", std::process::id()));
        let written = write_all(&dir).unwrap();
        let pages: Vec<&PathBuf> = written
            .iter()
            .filter(|p| p.extension().is_some_and(|e| e == "5" || e == "8"))
            .collect();
        assert!(pages.len() > 10, "{pages:?}");
        for page in pages {
            let out = std::process::Command::new("man")
                .args(["--warnings", "-l"])
                .arg(page)
                .env("MANWIDTH", "80")
                .env("MAN_KEEP_FORMATTING", "0")
                .output()
                .expect("man (Debian's man-db) runs");
            let text = String::from_utf8_lossy(&out.stdout);
            let warnings = String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success(), "{}: {warnings}", page.display());
            assert!(warnings.trim().is_empty(), "{}: {warnings}", page.display());
            assert!(text.contains(MANUAL), "{}: {text}", page.display());
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
