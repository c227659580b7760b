//! The Grafana dashboard (`dist/grafana/lb.json`) against lbd's exposition.
//!
//! Every PromQL expression of the dashboard (panel targets, collapsed
//! rows' panels, template variable queries) is tokenized; each metric it
//! selects must be one [`render`] exports from a snapshot where every
//! family has samples, each label it matches, groups by or prints in a
//! legend must be on that metric as Prometheus stores it (the target's
//! `instance` and `job` added, which lbd must not export itself), and
//! `rate()` / `increase()` must be over counters.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::api::metrics::{Snapshot, render};
use crate::services::controller::{BackendStatus, ServiceStatus, ServiceTraffic, Traffic};
use crate::vrrp::driver::InstanceStatus;

/// The dashboard as shipped.
const DASHBOARD: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../dist/grafana/lb.json"
));

/// Labels Prometheus attaches to every series it scrapes.
const TARGET_LABELS: [&str; 2] = ["instance", "job"];

/// Functions whose argument must be a counter.
const COUNTER_FUNCTIONS: [&str; 3] = ["rate", "irate", "increase"];

/// PromQL words that are neither functions nor metrics.
const KEYWORDS: [&str; 8] = [
    "and", "or", "unless", "bool", "offset", "inf", "nan", "atan2",
];

/// A sample family as Prometheus stores it after a scrape.
#[derive(Debug, Default)]
struct Series {
    /// `counter`, `gauge`, ... from the `# TYPE` line.
    kind: String,
    /// Its label names, target labels included.
    labels: BTreeSet<String>,
}

/// A snapshot with every family lbd can export.
fn every_family() -> Snapshot {
    let service = "198.18.0.100:80/tcp".to_owned();
    let traffic = Traffic {
        packets: 10,
        bytes: 1000,
        new_flows: 2,
        replies: 9,
        reply_bytes: 900,
        refused: 1,
    };
    Snapshot {
        services: vec![ServiceStatus {
            service: service.clone(),
            mode: "nat".into(),
            scheduler: "maglev".into(),
            vrrp_instance: Some("VI_1".into()),
            active: true,
            backends: vec![BackendStatus {
                address: "198.18.0.11".parse().unwrap(),
                port: 80,
                weight: 1,
                healthy: true,
                reason: "connect ok".into(),
                drained: false,
                in_pool: true,
                mac: None,
                sorry_server: false,
                etcd_key: None,
            }],
            table: crate::dataplane::balancer::TableChurn {
                rewrites: 2,
                slots_changed: 30,
                slots_necessary: 25,
                last: None,
            },
        }],
        traffic: vec![ServiceTraffic {
            service,
            total: traffic.clone(),
            backends: [("198.18.0.11".to_owned(), traffic)].into(),
            flows_recent: 40,
            flows_off_table: 3,
        }],
        vrrp: vec![InstanceStatus {
            name: "VI_1".into(),
            interface: "eth0".into(),
            vrid: 50,
            state: "MASTER".into(),
            base_priority: 150,
            priority: 150,
            master: None,
            vips: vec!["198.18.0.100/24".into()],
            transitions: 2,
            adverts_accepted: 7,
            rejected: [("bad_ttl".to_owned(), 3)].into(),
        }],
        flows: Some(crate::dataplane::stats::FlowTableUsage {
            capacity: 1 << 20,
            in_use: 5000,
            recent: 700,
            evicted_recent: 4,
            evicted_idle: 90,
            events_lost: 0,
        }),
        sync: Some(crate::sync::node::SyncStatus {
            bulk: "done".into(),
            flows_sent: 5,
            flows_received: 4,
            lag_last_us: 300,
            ..crate::sync::node::SyncStatus::default()
        }),
        nat: Some(crate::dataplane::nat::Census {
            flows: 12,
            by_state: vec![("ESTABLISHED".into(), 10), ("UDP".into(), 2)],
            orphans: 1,
            expired_total: 30,
        }),
        program: Some(crate::dataplane::stats::ProgramRuns {
            runs: 1000,
            run_ns: 150_000,
        }),
        cpus: vec![crate::dataplane::stats::CpuTime {
            cpu: 0,
            busy_ns: 5_000_000,
            softirq_ns: 2_000_000,
        }],
        bgp: Some(crate::bgp::BgpStatus {
            speaker: "BIRD 2.0.12".into(),
            socket: "/run/bird/bird.ctl".into(),
            reachable: true,
            sessions: vec![crate::bgp::bird::Session {
                name: "uplink".into(),
                state: "up".into(),
                info: "Established".into(),
            }],
            table: 100,
            announced: vec!["198.18.0.100".parse().unwrap()],
            error: None,
        }),
    }
}

/// The label names of a sample line's `{a="x",b="y"}` (after the name).
fn sample_labels(rest: &str) -> Vec<String> {
    let mut names = Vec::new();
    let Some(body) = rest.strip_prefix('{') else {
        return names;
    };
    let mut chars = body.chars();
    loop {
        let name: String = chars.by_ref().take_while(|&c| c != '=').collect();
        if name.is_empty() {
            break;
        }
        assert_eq!(chars.next(), Some('"'), "label {name} has no quoted value");
        names.push(name);
        let mut escaped = false;
        for c in chars.by_ref() {
            match (escaped, c) {
                (false, '\\') => escaped = true,
                (false, '"') => break,
                _ => escaped = false,
            }
        }
        match chars.next() {
            Some(',') => {}
            _ => break,
        }
    }
    names
}

/// What Prometheus stores from the exposition `text`: sample name to its
/// type and label names. Asserts every family has a sample (the fixture
/// covers everything lbd exports).
fn scraped(text: &str) -> BTreeMap<String, Series> {
    let mut kinds = BTreeMap::new();
    let mut sampled = BTreeSet::new();
    let mut series: BTreeMap<String, Series> = BTreeMap::new();
    for line in text.lines() {
        if let Some(t) = line.strip_prefix("# TYPE ") {
            let (family, kind) = t.split_once(' ').expect("TYPE line");
            kinds.insert(family.to_owned(), kind.to_owned());
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let end = line.find(['{', ' ']).expect("sample line");
        let (name, rest) = line.split_at(end);
        let family = [name, name.strip_suffix("_total").unwrap_or(name)]
            .into_iter()
            .find(|f| kinds.contains_key(*f))
            .unwrap_or_else(|| panic!("sample {name} of no # TYPE family"));
        sampled.insert(family.to_owned());
        let s = series.entry(name.to_owned()).or_default();
        s.kind.clone_from(&kinds[family]);
        for label in sample_labels(rest) {
            // Prometheus (honor_labels: false) would rename a scraped
            // label that clashes with a target label to exported_*, and
            // every query by it would have to know: lbd exports none.
            assert!(
                !TARGET_LABELS.contains(&label.as_str()),
                "{name} has a label `{label}`, which Prometheus renames exported_{label}"
            );
            s.labels.insert(label);
        }
        s.labels
            .extend(TARGET_LABELS.iter().map(|l| (*l).to_owned()));
    }
    let empty: Vec<_> = kinds.keys().filter(|f| !sampled.contains(*f)).collect();
    assert!(
        empty.is_empty(),
        "families without samples in the fixture (give every_family() one): {empty:?}"
    );
    series
}

/// A PromQL token; strings, ranges, numbers, operators and Grafana
/// variables are `Other` (nothing in them is a metric or a label name).
#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Open,
    Close,
    LBrace,
    RBrace,
    Comma,
    Other,
}

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':'
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

fn tokenize(expr: &str) -> Vec<Tok> {
    let chars: Vec<char> = expr.chars().collect();
    let mut toks = Vec::new();
    let mut i = 0;
    // Skips from `chars[i]` (an opener) to just past `close`, honoring
    // backslash escapes.
    let skip_to = |mut i: usize, close: char| {
        i += 1;
        while i < chars.len() && chars[i] != close {
            i += if chars[i] == '\\' { 2 } else { 1 };
        }
        i + 1
    };
    while i < chars.len() {
        let c = chars[i];
        match c {
            _ if c.is_whitespace() => i += 1,
            '"' | '\'' | '`' => {
                i = skip_to(i, c);
                toks.push(Tok::Other);
            }
            '[' => {
                i = skip_to(i, ']');
                toks.push(Tok::Other);
            }
            '$' => {
                i = if chars.get(i + 1) == Some(&'{') {
                    skip_to(i + 1, '}')
                } else {
                    i + 1 + chars[i + 1..].iter().take_while(|c| is_ident(**c)).count()
                };
                toks.push(Tok::Other);
            }
            '(' | ')' | '{' | '}' | ',' => {
                toks.push(match c {
                    '(' => Tok::Open,
                    ')' => Tok::Close,
                    '{' => Tok::LBrace,
                    '}' => Tok::RBrace,
                    _ => Tok::Comma,
                });
                i += 1;
            }
            _ if is_ident_start(c) => {
                let n = chars[i..].iter().take_while(|c| is_ident(**c)).count();
                toks.push(Tok::Ident(chars[i..i + n].iter().collect()));
                i += n;
            }
            _ if c.is_ascii_digit() || c == '.' => {
                i += chars[i..]
                    .iter()
                    .take_while(|c| c.is_ascii_alphanumeric() || **c == '.')
                    .count();
                toks.push(Tok::Other);
            }
            _ => {
                toks.push(Tok::Other);
                i += 1;
            }
        }
    }
    toks
}

/// A label that must be on metrics of an expression.
#[derive(Debug, PartialEq)]
struct LabelUse {
    /// Where it comes from: `{}`, `by`, `on`, `label_values`, `legend` ...
    clause: String,
    label: String,
    /// The metrics it applies to.
    metrics: Vec<String>,
    /// On every one of them (`by`, a matcher) or on some (`on`, a legend).
    every: bool,
}

/// What one expression queries.
#[derive(Debug, Default, PartialEq)]
struct Query {
    metrics: BTreeSet<String>,
    labels: Vec<LabelUse>,
    /// `rate` and the like, with the metrics under them.
    counted: Vec<(String, Vec<String>)>,
    /// Parse trouble (a selector without a metric name, unbalanced parens).
    errors: Vec<String>,
}

/// One parenthesised group being read.
#[derive(Default)]
struct Frame {
    func: Option<String>,
    metrics: Vec<String>,
    /// A prefix `by (...)` / `without (...)` for this group.
    grouping: Option<(String, Vec<String>)>,
    /// `on (...)` and the like inside this group.
    matching: Vec<(String, Vec<String>)>,
    /// `label_values(metric, label)`: past the comma.
    past_comma: bool,
}

/// Reads the identifiers of a `(a, b)` list starting at `toks[i]`;
/// returns them and the index after `)`.
fn label_list(toks: &[Tok], mut i: usize) -> (Vec<String>, usize) {
    let mut labels = Vec::new();
    i += 1;
    while i < toks.len() && toks[i] != Tok::Close {
        if let Tok::Ident(l) = &toks[i] {
            labels.push(l.clone());
        }
        i += 1;
    }
    (labels, i + 1)
}

#[allow(
    clippy::too_many_lines,
    reason = "one pass over the tokens: each arm is one PromQL construct"
)]
fn extract(expr: &str) -> Query {
    let toks = tokenize(expr);
    let mut q = Query::default();
    let mut stack = vec![Frame::default()];
    let mut next_func: Option<String> = None;
    let mut pending: Option<(String, Vec<String>)> = None;
    let mut last_closed: Option<Vec<String>> = None;
    let mut i = 0;
    while i < toks.len() {
        let next = toks.get(i + 1);
        let closed = last_closed.take();
        match &toks[i] {
            Tok::Ident(w) if matches!(w.as_str(), "by" | "without") && next == Some(&Tok::Open) => {
                let (labels, j) = label_list(&toks, i + 1);
                i = j;
                if let Some(metrics) = closed {
                    // Postfix: `sum(x) by (l)`.
                    for label in labels {
                        q.labels.push(LabelUse {
                            clause: w.clone(),
                            label,
                            metrics: metrics.clone(),
                            every: true,
                        });
                    }
                } else {
                    pending = Some((w.clone(), labels));
                }
                continue;
            }
            Tok::Ident(w)
                if matches!(w.as_str(), "on" | "ignoring" | "group_left" | "group_right") =>
            {
                if next == Some(&Tok::Open) {
                    let (labels, j) = label_list(&toks, i + 1);
                    stack
                        .last_mut()
                        .expect("a frame")
                        .matching
                        .push((w.clone(), labels));
                    i = j;
                    continue;
                }
            }
            Tok::Ident(w) if KEYWORDS.contains(&w.as_str()) => {}
            // A function, or an aggregation with a prefix `by (...)`.
            Tok::Ident(w)
                if next == Some(&Tok::Open)
                    || matches!(next, Some(Tok::Ident(b)) if b == "by" || b == "without") =>
            {
                next_func = Some(w.clone());
            }
            Tok::Ident(w) => {
                let frame = stack.last_mut().expect("a frame");
                if frame.func.as_deref() == Some("label_values") && frame.past_comma {
                    q.labels.push(LabelUse {
                        clause: "label_values".into(),
                        label: w.clone(),
                        metrics: frame.metrics.clone(),
                        every: true,
                    });
                } else {
                    frame.metrics.push(w.clone());
                    q.metrics.insert(w.clone());
                    if next == Some(&Tok::LBrace) {
                        let (labels, j) = matchers(&toks, i + 1);
                        q.labels.extend(labels.into_iter().map(|label| LabelUse {
                            clause: "{}".into(),
                            label,
                            metrics: vec![w.clone()],
                            every: true,
                        }));
                        i = j;
                        continue;
                    }
                }
            }
            Tok::LBrace => {
                q.errors
                    .push("a selector without a metric name: name the metric".into());
                i = matchers(&toks, i).1;
                continue;
            }
            Tok::Open => stack.push(Frame {
                func: next_func.take(),
                grouping: pending.take(),
                ..Frame::default()
            }),
            Tok::Close => {
                if stack.len() < 2 {
                    q.errors.push("unbalanced `)`".into());
                } else {
                    let f = stack.pop().expect("a frame");
                    close(&mut q, &f);
                    stack
                        .last_mut()
                        .expect("a frame")
                        .metrics
                        .extend(f.metrics.iter().cloned());
                    last_closed = Some(f.metrics);
                }
            }
            Tok::Comma => stack.last_mut().expect("a frame").past_comma = true,
            Tok::RBrace | Tok::Other => {}
        }
        i += 1;
    }
    if stack.len() != 1 {
        q.errors.push("unbalanced `(`".into());
    }
    for f in &stack {
        close(&mut q, f);
    }
    q
}

/// The label names of the matchers of a `{...}` at `toks[i]`, and the
/// index after `}`.
fn matchers(toks: &[Tok], mut i: usize) -> (Vec<String>, usize) {
    let mut labels = Vec::new();
    i += 1;
    while i < toks.len() && toks[i] != Tok::RBrace {
        if let Tok::Ident(l) = &toks[i] {
            labels.push(l.clone());
        }
        i += 1;
    }
    (labels, i + 1)
}

/// Records what a finished group says about its metrics.
fn close(q: &mut Query, f: &Frame) {
    if let Some(func) = &f.func
        && COUNTER_FUNCTIONS.contains(&func.as_str())
    {
        q.counted.push((func.clone(), f.metrics.clone()));
    }
    if let Some((clause, labels)) = &f.grouping {
        for label in labels {
            q.labels.push(LabelUse {
                clause: clause.clone(),
                label: label.clone(),
                metrics: f.metrics.clone(),
                every: true,
            });
        }
    }
    for (clause, labels) in &f.matching {
        for label in labels {
            q.labels.push(LabelUse {
                clause: clause.clone(),
                label: label.clone(),
                metrics: f.metrics.clone(),
                every: false,
            });
        }
    }
}

/// The `{{label}}`s of a legend format.
fn legend_labels(legend: &str) -> Vec<String> {
    legend
        .split("{{")
        .skip(1)
        .filter_map(|s| s.split_once("}}"))
        .map(|(l, _)| l.trim().to_owned())
        .collect()
}

/// What is wrong with `expr` (and its legend) against `series`.
fn problems(expr: &str, legend: &str, series: &BTreeMap<String, Series>) -> Vec<String> {
    let mut q = extract(expr);
    let mut out = std::mem::take(&mut q.errors);
    for m in &q.metrics {
        if !series.contains_key(m) {
            out.push(format!("metric `{m}` is not exported by lbd"));
        }
    }
    for label in legend_labels(legend) {
        q.labels.push(LabelUse {
            clause: "legend".into(),
            label,
            metrics: q.metrics.iter().cloned().collect(),
            every: false,
        });
    }
    for u in &q.labels {
        let on: Vec<&Series> = u.metrics.iter().filter_map(|m| series.get(m)).collect();
        if on.is_empty() && !u.metrics.is_empty() {
            // Its metrics are not exported: said above.
            continue;
        }
        let has = |s: &&Series| u.label == "__name__" || s.labels.contains(&u.label);
        let ok = if u.metrics.is_empty() {
            series.values().any(|s| s.labels.contains(&u.label))
        } else if u.every {
            on.iter().all(has)
        } else {
            on.iter().any(has)
        };
        if !ok {
            out.push(format!(
                "label `{}` ({}) is not on {}: {:?}",
                u.label,
                u.clause,
                if u.every {
                    "every metric of"
                } else {
                    "any metric of"
                },
                u.metrics
            ));
        }
    }
    for (func, metrics) in &q.counted {
        for m in metrics {
            if let Some(s) = series.get(m)
                && s.kind != "counter"
            {
                out.push(format!("{func}() over `{m}`, a {}", s.kind));
            }
        }
    }
    out
}

/// An expression of the dashboard (a panel target or a variable query), and
/// where it is.
struct Target {
    place: String,
    expr: String,
    legend: String,
}

/// Every panel, rows' nested panels included.
fn panels(d: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    let mut todo: Vec<&Value> = d["panels"].as_array().expect("panels").iter().collect();
    while let Some(p) = todo.pop() {
        if let Some(nested) = p["panels"].as_array() {
            todo.extend(nested);
        }
        out.push(p);
    }
    out
}

/// Every PromQL expression: panel targets and query variables.
fn exprs(d: &Value) -> Vec<Target> {
    let mut out = Vec::new();
    for p in panels(d) {
        for t in p["targets"].as_array().into_iter().flatten() {
            out.push(Target {
                place: format!(
                    "panel {:?} target {}",
                    p["title"].as_str().unwrap_or_default(),
                    t["refId"].as_str().unwrap_or_default()
                ),
                expr: t["expr"].as_str().unwrap_or_default().to_owned(),
                legend: t["legendFormat"].as_str().unwrap_or_default().to_owned(),
            });
        }
    }
    for v in d["templating"]["list"].as_array().expect("templating") {
        if v["type"] == "query" {
            let query = v["query"]["query"].as_str().or(v["query"].as_str());
            out.push(Target {
                place: format!("variable {}", v["name"].as_str().unwrap_or_default()),
                expr: query.expect("a query variable's query").to_owned(),
                legend: String::new(),
            });
        }
    }
    out
}

fn dashboard() -> Value {
    serde_json::from_str(DASHBOARD).expect("dist/grafana/lb.json is JSON")
}

#[test]
fn every_metric_and_label_the_dashboard_queries_is_exported() {
    let series = scraped(&render(&every_family()));
    let d = dashboard();
    let all = exprs(&d);
    assert!(all.len() > 40, "only {} expressions found", all.len());
    let mut bad = Vec::new();
    for e in &all {
        bad.extend(
            problems(&e.expr, &e.legend, &series)
                .into_iter()
                .map(|p| format!("{}: {p}\n    {}", e.place, e.expr)),
        );
    }
    assert!(
        bad.is_empty(),
        "dist/grafana/lb.json queries what lbd does not export:\n{}\nexported: {:?}",
        bad.join("\n"),
        series.keys().collect::<Vec<_>>()
    );
}

#[test]
fn the_dashboard_covers_each_area() {
    let d = dashboard();
    let mut queried: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for p in panels(&d).into_iter().filter(|p| p["type"] != "row") {
        let title = p["title"].as_str().unwrap_or_default();
        let targets = p["targets"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        assert!(
            !targets.is_empty()
                && targets.iter().all(|t| {
                    t["expr"].as_str().is_some_and(|e| !e.trim().is_empty())
                        && t["datasource"]["uid"] == "${datasource}"
                }),
            "panel {title:?}: every panel queries the `datasource` variable"
        );
        for t in targets {
            for m in extract(t["expr"].as_str().unwrap_or_default()).metrics {
                queried.entry(m).or_default().push(title.to_owned());
            }
        }
    }
    for (area, metrics) in [
        (
            "traffic per service",
            &[
                "lb_vip_packets_total",
                "lb_vip_bytes_total",
                "lb_vip_new_flows_total",
            ][..],
        ),
        (
            "traffic per backend",
            &[
                "lb_backend_packets_total",
                "lb_backend_bytes_total",
                "lb_backend_new_flows_total",
            ],
        ),
        (
            "backend health",
            &[
                "lb_backend_healthy",
                "lb_backend_in_pool",
                "lb_backend_drained",
            ],
        ),
        ("VRRP", &["lb_vrrp_state", "lb_vrrp_transitions_total"]),
        (
            "connection table",
            &[
                "lb_flows_in_use",
                "lb_flows_capacity",
                "lb_flows_evicted_total",
            ],
        ),
        (
            "sync",
            &[
                "lb_sync_lag_microseconds",
                "lb_sync_flows_sent_total",
                "lb_sync_flows_received_total",
            ],
        ),
        ("NAT", &["lb_nat_flows"]),
        ("BGP", &["lb_bgp_speaker_up", "lb_bgp_session_up"]),
    ] {
        for m in metrics {
            assert!(
                queried.contains_key(*m),
                "the dashboard has no {area} panel querying {m}"
            );
        }
    }
    // One dashboard for a fleet: the data source, the node and the service
    // are chosen, not written in.
    let vars: BTreeMap<&str, &Value> = d["templating"]["list"]
        .as_array()
        .expect("templating")
        .iter()
        .map(|v| (v["name"].as_str().unwrap_or_default(), v))
        .collect();
    assert_eq!(vars["datasource"]["type"], "datasource");
    assert_eq!(vars["datasource"]["query"], "prometheus");
    for v in ["instance", "service"] {
        assert_eq!(vars[v]["type"], "query", "variable {v}");
    }
    let ids: Vec<_> = panels(&d).iter().map(|p| p["id"].as_u64()).collect();
    let unique: BTreeSet<_> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "panel ids are unique and present");
    assert!(d["schemaVersion"].as_u64().is_some_and(|v| v >= 36));
}

#[test]
fn the_extractor_reads_metrics_labels_and_functions() {
    let q = extract(
        r#"sum by (instance, service) (rate(lb_vip_packets_total{job=~"$job", service=~"a,b{c}"}[$__rate_interval])) / on (instance) group_left max(lb_flows_capacity offset 5m) * 1e9"#,
    );
    assert_eq!(
        q.metrics,
        BTreeSet::from(["lb_vip_packets_total".into(), "lb_flows_capacity".into()])
    );
    assert!(q.errors.is_empty(), "{:?}", q.errors);
    let labels: Vec<_> = q
        .labels
        .iter()
        .map(|u| (u.clause.as_str(), u.label.as_str(), u.metrics.len()))
        .collect();
    assert_eq!(
        labels,
        [
            ("{}", "job", 1),
            ("{}", "service", 1),
            ("by", "instance", 1),
            ("by", "service", 1),
            ("on", "instance", 2),
        ]
    );
    assert_eq!(
        q.counted,
        [("rate".to_owned(), vec!["lb_vip_packets_total".to_owned()])]
    );
    let postfix = extract("sum(rate(lb_vip_packets_total[5m])) by (service)");
    assert_eq!(
        postfix.labels,
        [LabelUse {
            clause: "by".into(),
            label: "service".into(),
            metrics: vec!["lb_vip_packets_total".into()],
            every: true,
        }]
    );
    let v = extract(r#"label_values(lb_service_active{job=~"$job"}, service)"#);
    assert_eq!(v.metrics, BTreeSet::from(["lb_service_active".into()]));
    assert!(
        v.labels
            .iter()
            .any(|u| u.clause == "label_values" && u.label == "service")
    );
}

#[test]
fn a_bogus_metric_or_label_is_caught() {
    let series = scraped(&render(&every_family()));
    for (expr, legend, wanted) in [
        (
            r#"sum by (service) (rate(lb_bogus_total{service=~"$service"}[$__rate_interval]))"#,
            "",
            "metric `lb_bogus_total` is not exported",
        ),
        (
            "sum by (backend) (lb_vip_packets_total)",
            "",
            "label `backend` (by)",
        ),
        (
            r#"lb_flows_in_use{service="x"}"#,
            "",
            "label `service` ({})",
        ),
        ("lb_flows_in_use", "{{service}}", "label `service` (legend)"),
        (
            "rate(lb_flows_in_use[5m])",
            "",
            "rate() over `lb_flows_in_use`, a gauge",
        ),
        (
            // The VRRP instance is `vrrp_instance`; the connection
            // table has none.
            "max by (vrrp_instance) (lb_flows_capacity)",
            "",
            "label `vrrp_instance`",
        ),
        (
            "label_values(lb_vrrp_priority, session)",
            "",
            "label `session` (label_values)",
        ),
        (r#"{__name__="lb_x"}"#, "", "without a metric name"),
    ] {
        let found = problems(expr, legend, &series);
        assert!(
            found.iter().any(|p| p.contains(wanted)),
            "{expr:?}: wanted a problem containing {wanted:?}, got {found:?}"
        );
    }
    assert_eq!(
        problems(
            r#"max by (instance, vrrp_instance) (lb_vrrp_state{state="MASTER"})"#,
            "{{vrrp_instance}} @ {{instance}}",
            &series
        ),
        Vec::<String>::new()
    );
}
