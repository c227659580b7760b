//! `virtual_server` (with its `real_server`s and their checkers) →
//! `[[service]]`: the forwarding method, the protocol, the backends and
//! their checks, `alpha`, `omega`, `inhibit_on_failure`, the quorum, the
//! notify scripts and the sorry server.

use std::net::IpAddr;
use std::time::Duration;

use super::group::{Entry, Groups};
use super::instance::{Defaults, notify_script};
use super::lexer::{Loc, Node};
use super::{Ctx, Origin};
use crate::config::{
    BackendConfig, ConfigError, Dur, Health, HealthKind, Mode, Protocol, Quorum, Scheduler,
    Service, SorryServer, Statuses, Url,
};

/// Check parameters a virtual server passes to its real servers and they to
/// their checkers.
#[derive(Debug, Clone, Default)]
struct Inherit {
    delay_loop: Option<Dur>,
    retry: Option<u32>,
    connect_timeout: Option<Dur>,
    delay_before_retry: Option<Dur>,
    warmup: Option<Dur>,
    /// `virtualhost`: the Host of HTTP_GET and SSL_GET checks.
    virtualhost: Option<String>,
}

impl Inherit {
    /// Handle `n` if it is one of the inherited keywords (or one that is
    /// reported the same way at every level).
    fn take(&mut self, ctx: &mut Ctx, n: &Node, sec: &str) -> Result<bool, ConfigError> {
        let field = format!("{sec} {}", n.kw());
        match n.kw() {
            "delay_loop" => self.delay_loop = Some(ctx.secs(n, &field)?),
            "retry" | "nb_get_retry" => self.retry = Some(ctx.int(n, &field, "of at least 0")?),
            "connect_timeout" => self.connect_timeout = Some(ctx.secs(n, &field)?),
            "delay_before_retry" => self.delay_before_retry = Some(ctx.secs(n, &field)?),
            "warmup" => self.warmup = Some(ctx.secs(n, &field)?),
            "virtualhost" => self.virtualhost = Some(ctx.value(n, &field)?.text.clone()),
            "smtp_alert" => {
                ctx.ignored(n, sec);
            }
            _ => return Ok(false),
        }
        Ok(true)
    }
}

/// One real server's check.
#[derive(Debug, Clone)]
struct RsCheck {
    health: Health,
    checker: String,
    loc: Loc,
}

/// A real server's checks (none, one or several), its label
/// (`real_server IP PORT`) and line.
type Checked = (Vec<RsCheck>, String, Loc);

/// `virtual_server VIP PORT { ... }`, or `virtual_server group NAME { ...
/// }`: a service for each VIP and port of the group (`groups`).
pub(super) fn virtual_server(
    ctx: &mut Ctx,
    n: &Node,
    d: &Defaults,
    groups: &Groups,
) -> Result<Vec<(Service, Origin)>, ConfigError> {
    let (group, entries) = targets(ctx, n, groups)?;
    let Entry { vip, port, .. } = entries[0];
    let sec = match &group {
        Some(name) => format!("virtual_server group {name}"),
        None => format!("virtual_server {vip} {port}"),
    };
    let mut vs = ServerReader {
        o: Origin::new(sec.clone(), n.loc()),
        sec,
        port,
        svc: Service::new(vip, port, Vec::new()),
        inherit: Inherit::default(),
        mode: None,
        sorry_inhibit: false,
        sorry_mode: None,
        ports: Vec::new(),
        sorry_port: None,
    };
    let mut servers = Vec::new();
    for c in ctx.block(n, &vs.sec)? {
        if vs.inherit.take(ctx, c, &vs.sec)? {
            continue;
        }
        if c.kw() == "real_server" {
            servers.push(c);
        } else {
            vs.keyword(ctx, c)?;
        }
    }
    let mut checks = Vec::new();
    for rs in servers {
        checks.push(vs.real_server(ctx, rs, d)?);
    }
    let (ports, sorry_port) = (vs.ports.clone(), vs.sorry_port);
    let (svc, o) = vs.finish(ctx, &checks);
    if group.is_none() {
        return Ok(vec![(svc, o)]);
    }
    // The group's other VIP:ports: the same service elsewhere. A real
    // server given without a port follows each entry's.
    Ok(entries
        .iter()
        .map(|e| {
            let mut s = svc.clone();
            s.vip = e.vip;
            s.port = e.port;
            for (b, p) in s.backend.iter_mut().zip(&ports) {
                b.port = p.filter(|&p| p != e.port);
            }
            if let Some(sorry) = &mut s.sorry_server {
                sorry.port = sorry_port.filter(|&p| p != e.port);
            }
            let mut o = o.clone();
            o.label = format!("{} ({} {})", o.label, e.vip, e.port);
            // An error of the service as a whole (a duplicate, ...) points
            // at its entry.
            o.header = e.loc;
            (s, o)
        })
        .collect())
}

/// What `virtual_server` serves: `VIP PORT`, or the entries of `group
/// NAME` (and the name). `fwmark` is refused.
fn targets(
    ctx: &Ctx,
    n: &Node,
    groups: &Groups,
) -> Result<(Option<String>, Vec<Entry>), ConfigError> {
    let field0 = n.words();
    match n.args.as_slice() {
        [kind, ..] if kind.is("fwmark") => Err(ctx.err(
            n.loc(),
            field0,
            "`virtual_server fwmark ...` is not supported: lb balances addresses and ports, not firewall marks; write a virtual_server (or a virtual_server_group) of VIP PORT",
        )),
        [kind, name, ..] if kind.is("group") => match groups.get(&name.text) {
            Some(entries) => Ok((Some(name.text.clone()), entries.clone())),
            None => Err(ctx.err(
                n.loc(),
                field0,
                format!("no virtual_server_group named {:?}", name.text),
            )),
        },
        [ip, port, ..] => {
            let vip: IpAddr = ip.text.parse().map_err(|_| {
                ctx.err(
                    n.loc(),
                    &field0,
                    format!("{:?} is not an IP address", ip.text),
                )
            })?;
            let port: u16 = port
                .text
                .parse()
                .map_err(|_| ctx.err(n.loc(), &field0, format!("{:?} is not a port", port.text)))?;
            Ok((
                None,
                vec![Entry {
                    vip,
                    port,
                    loc: n.loc(),
                }],
            ))
        }
        _ => Err(ctx.err(
            n.loc(),
            field0,
            "write `virtual_server IP PORT { ... }` or `virtual_server group NAME { ... }`",
        )),
    }
}

/// A `virtual_server` block being read.
struct ServerReader {
    /// `virtual_server VIP PORT`, for messages.
    sec: String,
    port: u16,
    svc: Service,
    o: Origin,
    inherit: Inherit,
    /// The forwarding method and where it was set.
    mode: Option<(Mode, Loc)>,
    /// `sorry_server_inhibit` was given.
    sorry_inhibit: bool,
    /// `sorry_server_lvs_method` and where.
    sorry_mode: Option<(Mode, Loc)>,
    /// Each real server's port as written (`None`: none given).
    ports: Vec<Option<u16>>,
    /// The sorry server's port as written.
    sorry_port: Option<u16>,
}

impl ServerReader {
    /// A keyword of the block other than `real_server` and the inherited
    /// check parameters.
    fn keyword(&mut self, ctx: &mut Ctx, c: &Node) -> Result<(), ConfigError> {
        let field = format!("{} {}", self.sec, c.kw());
        match c.kw() {
            "lb_algo" | "lvs_sched" => {
                let s = ctx.value(c, &field)?.text.clone();
                self.o.field("scheduler", c);
                if s == "sh" {
                    self.svc.scheduler = Scheduler::SourceHash;
                } else if s != "mh" {
                    ctx.warn(c.loc(), scheduler_notice(c.kw(), &s));
                }
            }
            "persistence_timeout" => {
                // keepalived takes whole seconds; 0 turns persistence off.
                let secs: u32 = ctx.int(c, &field, "of at least 0 (seconds)")?;
                self.svc.persistence_timeout =
                    (secs > 0).then(|| Dur(Duration::from_secs(u64::from(secs))));
                self.o.field("persistence_timeout", c);
            }
            "persistence_granularity" => {
                let v = ctx.value(c, &field)?.text.clone();
                let prefix = granularity(&v, self.svc.vip.is_ipv4()).ok_or_else(|| {
                    ctx.err(
                        c.loc(),
                        &field,
                        format!(
                            "{v:?} is not a netmask (255.255.255.0) or a prefix length of this service's family"
                        ),
                    )
                })?;
                self.svc.persistence_prefix = Some(prefix);
                self.o.field("persistence_prefix", c);
            }
            "lb_kind" | "lvs_method" => {
                let m = lvs_method(ctx, c, &field)?;
                self.o.field("mode", c);
                self.mode = Some((m, c.loc()));
            }
            "alpha" => {
                self.svc.start_down = true;
                self.o.field("start_down", c);
            }
            "inhibit_on_failure" => {
                self.svc.inhibit_on_failure = true;
                self.o.field("inhibit_on_failure", c);
            }
            "sorry_server" => {
                let (address, port) = address_and_port(ctx, c, &field)?;
                self.sorry_port = port;
                let inhibit = self.svc.sorry_server.as_ref().is_some_and(|s| s.inhibit);
                self.svc.sorry_server = Some(SorryServer {
                    address,
                    port: port.filter(|&p| p != self.port),
                    inhibit,
                });
                self.o.field("sorry_server", c);
            }
            "sorry_server_inhibit" => {
                self.sorry_inhibit = true;
            }
            "quorum" | "hysteresis" | "quorum_up" | "quorum_down" => {
                let q = self.svc.quorum.get_or_insert(Quorum {
                    weight: 1,
                    hysteresis: 0,
                    notify_up: None,
                    notify_down: None,
                });
                match c.kw() {
                    "quorum" => q.weight = ctx.int(c, &field, "from 1")?,
                    "hysteresis" => q.hysteresis = ctx.int(c, &field, "of at least 0")?,
                    "quorum_up" => q.notify_up = Some(notify_script(ctx, c, field)?),
                    _ => q.notify_down = Some(notify_script(ctx, c, field)?),
                }
                self.o.field("quorum", c);
            }
            "omega" => {
                self.svc.notify_on_stop = true;
                self.o.field("notify_on_stop", c);
            }
            "sorry_server_lvs_method" => {
                let m = lvs_method(ctx, c, &field)?;
                self.sorry_mode = Some((m, c.loc()));
            }
            "protocol" => {
                let p = ctx.value(c, &field)?;
                self.svc.protocol = match p.text.to_ascii_uppercase().as_str() {
                    "TCP" => Protocol::Tcp,
                    "UDP" => Protocol::Udp,
                    _ => {
                        return Err(ctx.err(
                            c.loc(),
                            field,
                            format!("{:?} is not supported: TCP or UDP", p.text),
                        ));
                    }
                };
                self.o.field("protocol", c);
            }
            _ => ctx.ignored(c, &self.sec),
        }
        Ok(())
    }

    /// `real_server IP [PORT] { ... }`: a backend, and its check.
    fn real_server(
        &mut self,
        ctx: &mut Ctx,
        rs: &Node,
        d: &Defaults,
    ) -> Result<Checked, ConfigError> {
        let (sec, port) = (&self.sec, self.port);
        let (backend, check, rs_mode) = real_server(ctx, rs, sec, port, &self.inherit, d)?;
        if let Some((m, loc)) = rs_mode {
            match &self.mode {
                Some((vm, _)) if *vm != m => {
                    return Err(ctx.err(
                        loc,
                        format!("{sec} real_server lvs_method"),
                        "lb forwards to all backends of a service the same way: use the virtual server's lb_kind",
                    ));
                }
                Some(_) => {}
                None => self.mode = Some((m, loc)),
            }
        }
        let label = format!(
            "real_server {} {}",
            backend.address,
            backend.port.unwrap_or(port)
        );
        if self
            .svc
            .backend
            .iter()
            .any(|b| b.address == backend.address)
        {
            // "listed twice": point at the second one.
            self.o.items.retain(|i| i.1 != backend.address.to_string());
        }
        self.o.items.push((
            "backend",
            backend.address.to_string(),
            rs.loc(),
            label.clone(),
        ));
        self.ports.push(backend.port);
        self.svc.backend.push(BackendConfig {
            port: backend.port.filter(|&p| p != port),
            ..backend
        });
        Ok((check, label, rs.loc()))
    }

    /// The end of the block: the forwarding method (keepalived's default,
    /// NAT, when none is given), and the real servers' checks: the
    /// service's `health` when every real server has the same one check
    /// (the usual file, and the shortest TOML); else each backend carries
    /// its own, every one of which has to pass, and a real server without
    /// a checker is up (as in keepalived).
    fn finish(mut self, ctx: &mut Ctx, checks: &[Checked]) -> (Service, Origin) {
        // keepalived's default forwarding method is NAT.
        self.svc.mode = self.mode.map_or(Mode::Nat, |(m, _)| m);
        if let Some(s) = &mut self.svc.sorry_server {
            s.inhibit = self.sorry_inhibit;
        }
        if let Some((m, loc)) = self.sorry_mode
            && m != self.svc.mode
        {
            ctx.warn(
                loc,
                format!(
                    "notice: sorry_server_lvs_method {m}: lb forwards to the sorry server as to the real servers ({})",
                    self.svc.mode
                ),
            );
        }
        let none = Health {
            kind: HealthKind::None,
            interval: self
                .inherit
                .delay_loop
                .unwrap_or(Dur(Duration::from_mins(1))),
            ..Health::default()
        };
        let alike = |a: &Checked, b: &Checked| {
            a.0.len() == b.0.len() && a.0.iter().zip(&b.0).all(|(x, y)| x.health == y.health)
        };
        let shared = checks.windows(2).all(|w| alike(&w[0], &w[1]))
            && checks.first().is_none_or(|c| c.0.len() <= 1);
        match checks.first().and_then(|c| c.0.first()) {
            Some(c) if shared => {
                self.o.fields.insert("health", (c.loc, c.checker.clone()));
                self.svc.health = c.health.clone();
            }
            _ => {
                self.svc.health = none;
                for (backend, (rs_checks, _, _)) in self.svc.backend.iter_mut().zip(checks) {
                    backend.health = rs_checks.iter().map(|c| c.health.clone()).collect();
                }
            }
        }
        (self.svc, self.o)
    }
}

/// `persistence_granularity`: an IPv4 netmask (`255.255.255.0`) or a
/// prefix length, as a prefix length within the service's family.
pub(super) fn granularity(v: &str, ipv4: bool) -> Option<u8> {
    let max = if ipv4 { 32 } else { 128 };
    if let Ok(p) = v.parse::<u8>() {
        return (p <= max).then_some(p);
    }
    let mask = u32::from(v.parse::<std::net::Ipv4Addr>().ok().filter(|_| ipv4)?);
    let ones = mask.leading_ones();
    // Contiguous: the ones, then only zeros.
    (mask.checked_shl(ones).unwrap_or(0) == 0).then_some(ones as u8)
}

/// The notice for `lb_algo S` (`kw`) other than `mh` and `sh`: how Maglev
/// differs.
fn scheduler_notice(kw: &str, s: &str) -> String {
    format!(
        "notice: `{kw} {s}`: lb balances with Maglev consistent hashing of the flow (weighted), which {}",
        match s {
            "dh" => "hashes the whole 5-tuple, not only the destination address",
            "rr" | "wrr" => "spreads flows by hash, not in turn",
            "lc" | "wlc" | "lblc" | "lblcr" | "sed" | "nq" => "does not count connections",
            _ => "may differ from this scheduler",
        }
    )
}

/// `lb_kind` / `lvs_method` (any case): `NAT`, `DR` or `TUN`.
fn lvs_method(ctx: &mut Ctx, c: &Node, field: &str) -> Result<Mode, ConfigError> {
    let m = ctx.value(c, field)?;
    match m.text.to_ascii_uppercase().as_str() {
        "NAT" => Ok(Mode::Nat),
        "DR" => Ok(Mode::Dsr),
        "TUN" => Ok(Mode::Ipip),
        _ => Err(ctx.err(
            c.loc(),
            field,
            format!("{:?} is not a forwarding method: NAT, DR or TUN", m.text),
        )),
    }
}

/// A backend, its checks, and the forwarding method it names (if any).
type RealServer = (BackendConfig, Vec<RsCheck>, Option<(Mode, Loc)>);

/// `real_server IP [PORT] { ... }` of the virtual server `vs`.
fn real_server(
    ctx: &mut Ctx,
    n: &Node,
    vs: &str,
    vs_port: u16,
    inherit: &Inherit,
    d: &Defaults,
) -> Result<RealServer, ConfigError> {
    let sec = format!("{vs} {}", n.words());
    let (address, port) = address_and_port(ctx, n, &sec)?;
    let mut backend = BackendConfig {
        port,
        ..BackendConfig::new(address)
    };
    let mut inherit = inherit.clone();
    let mut mode = None;
    let mut checkers = Vec::new();
    for c in n.block.as_deref().unwrap_or_default() {
        let field = format!("{sec} {}", c.kw());
        if inherit.take(ctx, c, &sec)? {
            continue;
        }
        match c.kw() {
            "weight" => backend.weight = ctx.int(c, &field, "of at least 0")?,
            "inhibit_on_failure" => backend.inhibit_on_failure = Some(true),
            "notify_up" => backend.notify_up = Some(notify_script(ctx, c, field)?),
            "notify_down" => backend.notify_down = Some(notify_script(ctx, c, field)?),
            "lvs_method" | "lb_kind" => mode = Some((lvs_method(ctx, c, &field)?, c.loc())),
            "TCP_CHECK" | "HTTP_GET" | "SSL_GET" | "DNS_CHECK" | "SMTP_CHECK" | "MISC_CHECK" => {
                checkers.push(c);
            }
            "BFD_CHECK" | "PING_CHECK" | "UDP_CHECK" | "FILE_CHECK" => ctx.warn(
                c.loc(),
                format!(
                    "unsupported checker `{}` in {sec}, ignored: lb checks with TCP_CHECK, HTTP_GET, SSL_GET, DNS_CHECK, SMTP_CHECK or MISC_CHECK",
                    c.kw()
                ),
            ),
            _ => ctx.ignored(c, &sec),
        }
    }
    // Several checkers: every one has to pass, as in keepalived.
    let target = (address, port.unwrap_or(vs_port));
    let checks = checkers
        .into_iter()
        .map(|c| checker(ctx, c, &sec, &inherit, target, d))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((backend, checks, mode))
}

/// The `IP [PORT]` after `real_server` (`field` names it in errors).
fn address_and_port(
    ctx: &Ctx,
    n: &Node,
    field: &str,
) -> Result<(IpAddr, Option<u16>), ConfigError> {
    let [ip, rest @ ..] = n.args.as_slice() else {
        return Err(ctx.err(n.loc(), field, "write `real_server IP PORT { ... }`"));
    };
    let address: IpAddr = ip.text.parse().map_err(|_| {
        ctx.err(
            n.loc(),
            field,
            format!("{:?} is not an IP address", ip.text),
        )
    })?;
    let port = match rest.first() {
        Some(p) => Some(
            p.text
                .parse::<u16>()
                .map_err(|_| ctx.err(n.loc(), field, format!("{:?} is not a port", p.text)))?,
        ),
        None => None,
    };
    Ok((address, port))
}

/// A checker block (`TCP_CHECK`, `HTTP_GET`, `SSL_GET`, `DNS_CHECK`,
/// `SMTP_CHECK` or `MISC_CHECK`) of the real server `rs` at `(address, port)`.
fn checker(
    ctx: &mut Ctx,
    n: &Node,
    rs: &str,
    inherit: &Inherit,
    (address, rs_port): (IpAddr, u16),
    d: &Defaults,
) -> Result<RsCheck, ConfigError> {
    let kind = n.kw().to_owned();
    let sec = format!("{rs} {kind}");
    let mut inherit = inherit.clone();
    let mut h = Health {
        kind: match kind.as_str() {
            "TCP_CHECK" => HealthKind::Tcp,
            "HTTP_GET" => HealthKind::Http,
            "SSL_GET" => HealthKind::Https,
            "DNS_CHECK" => HealthKind::Dns,
            "SMTP_CHECK" => HealthKind::Smtp,
            _ => HealthKind::Exec,
        },
        ..Health::default()
    };
    let web = matches!(h.kind, HealthKind::Http | HealthKind::Https);
    let mut connect_port = None;
    let mut misc_timeout = None;
    let mut urls = Vec::new();
    let mut user = d.script_user.clone();
    for c in n.block.as_deref().unwrap_or_default() {
        let field = format!("{sec} {}", c.kw());
        if inherit.take(ctx, c, &sec)? {
            continue;
        }
        match (kind.as_str(), c.kw()) {
            (_, "connect_port") if kind != "MISC_CHECK" => {
                connect_port = Some(ctx.int::<u16>(c, &field, "from 1 to 65535")?);
            }
            (_, "bindto") if kind != "MISC_CHECK" => {
                let v = ctx.value(c, &field)?;
                h.bind = Some(v.text.parse().map_err(|_| {
                    ctx.err(
                        c.loc(),
                        &field,
                        format!("{:?} is not an IP address", v.text),
                    )
                })?);
            }
            ("HTTP_GET" | "SSL_GET", "url") => urls.push(http_url(ctx, c, &field, &sec)?),
            // lb speaks HTTP/1.1 (with `Connection: close`) and sends the
            // virtual host as SNI whenever it is a name.
            ("HTTP_GET" | "SSL_GET", "http_protocol" | "enable_sni") => {}
            ("DNS_CHECK", "type") => {
                let t = ctx.value(c, &field)?.text.to_ascii_uppercase();
                if crate::services::health::dns::type_code(&t).is_none() {
                    return Err(ctx.err(
                        c.loc(),
                        &field,
                        format!(
                            "{t:?} is not a type lb queries (A, NS, CNAME, SOA, MX, TXT, AAAA)"
                        ),
                    ));
                }
                h.dns_type = Some(t);
            }
            ("DNS_CHECK", "name") => h.dns_name = Some(ctx.value(c, &field)?.text.clone()),
            ("SMTP_CHECK", "helo_name") => h.smtp_helo = Some(ctx.value(c, &field)?.text.clone()),
            ("MISC_CHECK", "misc_path") => h.command = Some(misc_path(ctx, c, field, address)?),
            ("MISC_CHECK", "misc_timeout") => misc_timeout = Some(ctx.secs(c, &field)?),
            ("MISC_CHECK", "misc_dynamic") => h.dynamic_weight = true,
            ("MISC_CHECK", "user") => {
                user = Some(ctx.value(c, &field)?.text.clone());
            }
            _ => ctx.ignored(c, &sec),
        }
    }
    let exec = kind == "MISC_CHECK";
    if exec && h.command.is_none() {
        return Err(ctx.err(n.loc(), sec, "MISC_CHECK needs `misc_path \"COMMAND\"`"));
    }
    if web {
        web_urls(ctx, n, &sec, urls, &mut h);
        h.virtualhost = h.virtualhost.take().or(inherit.virtualhost.clone());
    }
    timing(&mut h, &inherit, &kind, misc_timeout);
    h.port = connect_port.filter(|&p| p != rs_port);
    if exec {
        h.user = user;
    }
    Ok(RsCheck {
        health: h,
        checker: kind,
        loc: n.loc(),
    })
}

/// The schedule of a `kind` checker (interval, timeout, retries, retry
/// delay, warmup) from what it inherited, with keepalived's defaults.
fn timing(h: &mut Health, inherit: &Inherit, kind: &str, misc_timeout: Option<Dur>) {
    let exec = kind == "MISC_CHECK";
    h.interval = inherit.delay_loop.unwrap_or(Dur(Duration::from_mins(1)));
    h.timeout = if exec {
        misc_timeout.unwrap_or(h.interval)
    } else {
        inherit
            .connect_timeout
            .unwrap_or(Dur(Duration::from_secs(5)))
    };
    h.rise = 1;
    // keepalived's default retries: 1 for the connecting checkers, 3 for
    // DNS_CHECK, none for MISC_CHECK.
    let retries = match kind {
        "MISC_CHECK" => 0,
        "DNS_CHECK" => 3,
        _ => 1,
    };
    h.fall = inherit.retry.unwrap_or(retries).saturating_add(1);
    // keepalived retries a failing server after delay_before_retry
    // (default 1 s), not after delay_loop; its 0 (retry at once) becomes
    // lb's shortest, 1 ms. A warmup of 0 is none.
    h.retry_interval = (h.fall > 1).then(|| {
        inherit
            .delay_before_retry
            .map_or(Dur(Duration::from_secs(1)), |d| {
                Dur(d.0.max(Duration::from_millis(1)))
            })
    });
    h.warmup = inherit.warmup.filter(|d| !d.0.is_zero());
}

/// One `url { ... }` block as read: the URL and its `virtualhost`.
type UrlBlock = (Url, Option<String>, Loc);

/// The `url` blocks of an `HTTP_GET`/`SSL_GET` (`n`, `sec`) into `h`: one
/// as its `path` (and `expect_status`, `digest`), several as `urls`. A
/// URL without `status_code` passes with any 2xx, as in keepalived.
fn web_urls(ctx: &mut Ctx, n: &Node, sec: &str, urls: Vec<UrlBlock>, h: &mut Health) {
    let any_2xx = || Statuses("200-299".parse().expect("a valid range"));
    let mut hosts = urls
        .iter()
        .filter_map(|(_, host, loc)| Some((host.clone()?, *loc)));
    if let Some((first, _)) = hosts.next() {
        if let Some((_, loc)) = hosts.find(|(other, _)| *other != first) {
            ctx.warn(
                loc,
                format!(
                    "notice: lb sends one virtual host per check: {first} for every url of {sec}"
                ),
            );
        }
        h.virtualhost = Some(first);
    }
    match <[UrlBlock; 1]>::try_from(urls) {
        Ok([(url, _, _)]) => {
            h.path = url.path;
            h.expect_status = url.expect_status.unwrap_or_else(any_2xx);
            h.digest = url.digest;
        }
        Err(urls) if urls.is_empty() => {
            ctx.warn(
                n.loc(),
                format!("notice: {sec} has no `url`: lb asks for / and accepts any 2xx"),
            );
            h.expect_status = any_2xx();
        }
        Err(urls) => {
            h.expect_status = any_2xx();
            h.urls = urls.into_iter().map(|(u, _, _)| u).collect();
        }
    }
}

/// `url { path ...; status_code ...; digest ...; virtualhost ... }` of an
/// `HTTP_GET` or `SSL_GET` (`sec`).
fn http_url(ctx: &mut Ctx, c: &Node, field: &str, sec: &str) -> Result<UrlBlock, ConfigError> {
    let mut url = Url {
        path: String::new(),
        expect_status: None,
        digest: None,
    };
    let mut ranges = Vec::new();
    let mut host = None;
    for u in ctx.block(c, field)? {
        let f = format!("{field} {}", u.kw());
        match u.kw() {
            "path" => url.path.clone_from(&ctx.value(u, &f)?.text),
            // Several codes and ranges, on one line or several.
            "status_code" => {
                let words: Vec<&str> = u.args.iter().map(|a| a.text.as_str()).collect();
                let codes: Statuses = words.join(" ").parse().map_err(|e: String| {
                    ctx.err(u.loc(), &f, format!("{e} (write 200, 200-299, or several)"))
                })?;
                ranges.extend_from_slice(codes.0.ranges());
            }
            "digest" => {
                let d = ctx.value(u, &f)?.text.clone();
                crate::services::health::http::parse_digest(&d)
                    .map_err(|e| ctx.err(u.loc(), &f, e))?;
                url.digest = Some(d.to_ascii_lowercase());
            }
            "virtualhost" => host = Some(ctx.value(u, &f)?.text.clone()),
            _ => ctx.ignored(u, &format!("{sec} url")),
        }
    }
    if url.path.is_empty() {
        return Err(ctx.err(c.loc(), field, "a url needs `path /PATH`"));
    }
    if !ranges.is_empty() {
        url.expect_status = Some(Statuses(
            crate::services::health::http::StatusCodes::new(ranges)
                .map_err(|e| ctx.err(c.loc(), field, e))?,
        ));
    }
    Ok((url, host, c.loc()))
}

/// `misc_path COMMAND` of a `MISC_CHECK`, the real server's `address` in it
/// written as `$BACKEND`.
fn misc_path(
    ctx: &mut Ctx,
    c: &Node,
    field: String,
    address: IpAddr,
) -> Result<String, ConfigError> {
    if c.args.is_empty() {
        return Err(ctx.err(c.loc(), field, "`misc_path` needs a command"));
    }
    let cmd = ctx.command(c, &c.args);
    let with_backend = replace_address(&cmd, &address.to_string(), "$BACKEND");
    if with_backend != cmd {
        ctx.warn(
            c.loc(),
            format!(
                "notice: {address} in misc_path written as $BACKEND: lb runs one command for every backend, with BACKEND and PORT set"
            ),
        );
    }
    Ok(with_backend)
}

/// `text` with `addr` replaced by `with` where it stands alone (not part
/// of a longer address or number).
pub(super) fn replace_address(text: &str, addr: &str, with: &str) -> String {
    let part = |c: char| c.is_ascii_alphanumeric() || c == '.' || c == ':';
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find(addr) {
        let before = rest[..i].chars().next_back();
        let after = rest[i + addr.len()..].chars().next();
        out.push_str(&rest[..i]);
        if before.is_some_and(part) || after.is_some_and(part) {
            out.push_str(addr);
        } else {
            out.push_str(with);
        }
        rest = &rest[i + addr.len()..];
    }
    out.push_str(rest);
    out
}
