//! `global_defs`, `vrrp_script` and `vrrp_instance` → `[global]`,
//! `[[vrrp_script]]` and `[[vrrp_instance]]`.

use std::net::IpAddr;

use super::lexer::{Loc, Node};
use super::{Ctx, Origin};
use crate::config::{
    Config, ConfigError, Dur, TrackInterface, TrackScript, VrrpInstance, VrrpScript,
};

/// Instance defaults from `global_defs`.
#[derive(Debug, Default, Clone)]
pub(super) struct Defaults {
    version: Option<u8>,
    garp_master_delay: Option<Dur>,
    garp_master_repeat: Option<u32>,
    garp_master_refresh: Option<Dur>,
    garp_master_refresh_repeat: Option<u32>,
    garp_interval: Option<Dur>,
    /// The user of `vrrp_script`s and `MISC_CHECK`s that name none.
    pub(super) script_user: Option<String>,
}

/// `global_defs { ... }`: the router id into `config`, instance and script
/// defaults into `d`.
pub(super) fn global_defs(
    ctx: &mut Ctx,
    n: &Node,
    config: &mut Config,
    d: &mut Defaults,
) -> Result<(), ConfigError> {
    const SEC: &str = "global_defs";
    for c in ctx.block(n, SEC)? {
        let field = format!("{SEC} {}", c.kw());
        match c.kw() {
            "router_id" | "lvs_id" => {
                config.global.router_id = Some(ctx.value(c, &field)?.text.clone());
            }
            "vrrp_version" => d.version = Some(ctx.int(c, &field, "2 or 3")?),
            "vrrp_garp_master_delay" => d.garp_master_delay = Some(ctx.secs(c, &field)?),
            "vrrp_garp_master_repeat" => {
                d.garp_master_repeat = Some(ctx.int(c, &field, "of at least 0")?);
            }
            "vrrp_garp_master_refresh" => d.garp_master_refresh = Some(ctx.secs(c, &field)?),
            "vrrp_garp_master_refresh_repeat" => {
                d.garp_master_refresh_repeat = Some(ctx.int(c, &field, "of at least 0")?);
            }
            "vrrp_garp_interval" => d.garp_interval = Some(ctx.secs(c, &field)?),
            "script_user" => {
                d.script_user = Some(ctx.value(c, &field)?.text.clone());
                if c.args.len() > 1 {
                    ctx.warn(
                        c.loc(),
                        "the group of `script_user` is ignored: lb uses the user's primary group",
                    );
                }
                ctx.warn(
                    c.loc(),
                    "notice: `script_user` applies to vrrp_script and MISC_CHECK; notify scripts run as lbd's user",
                );
            }
            _ => ctx.ignored(c, SEC),
        }
    }
    Ok(())
}

/// The name after `vrrp_script`, `vrrp_instance` and the other named
/// blocks.
pub(super) fn name_of(ctx: &Ctx, n: &Node) -> Result<String, ConfigError> {
    n.args
        .first()
        .map(|t| t.text.clone())
        .ok_or_else(|| ctx.err(n.loc(), n.kw(), format!("`{}` needs a name", n.kw())))
}

/// `vrrp_script NAME { ... }`.
pub(super) fn vrrp_script(
    ctx: &mut Ctx,
    n: &Node,
    d: &Defaults,
) -> Result<(VrrpScript, Origin), ConfigError> {
    let name = name_of(ctx, n)?;
    let sec = format!("vrrp_script {name}");
    let mut o = Origin::new(sec.clone(), n.loc());
    let mut s = VrrpScript {
        user: d.script_user.clone(),
        ..VrrpScript::new(name, String::new())
    };
    let mut script = false;
    for c in ctx.block(n, &sec)? {
        let field = format!("{sec} {}", c.kw());
        match c.kw() {
            "script" => {
                if c.args.is_empty() {
                    return Err(ctx.err(c.loc(), field, "`script` needs a command"));
                }
                s.script = ctx.command(c, &c.args);
                script = true;
                o.field("script", c);
            }
            "interval" => {
                s.interval = Some(ctx.secs(c, &field)?);
                o.field("interval", c);
            }
            "timeout" => {
                s.timeout = Some(ctx.secs(c, &field)?);
                o.field("timeout", c);
            }
            "weight" => {
                if c.args.get(1).is_some_and(|a| a.is("reverse")) {
                    return Err(ctx.err(
                        c.loc(),
                        field,
                        "`weight ... reverse` is not supported: invert the script's exit status instead",
                    ));
                }
                s.weight = ctx.int(c, &field, "from -253 to 253")?;
                o.field("weight", c);
            }
            "rise" => {
                s.rise = ctx.int(c, &field, "of at least 1")?;
                o.field("rise", c);
            }
            "fall" => {
                s.fall = ctx.int(c, &field, "of at least 1")?;
                o.field("fall", c);
            }
            "user" => {
                s.user = Some(ctx.value(c, &field)?.text.clone());
                o.field("user", c);
            }
            "init_fail" => s.init_fail = true,
            _ => ctx.ignored(c, &sec),
        }
    }
    if !script {
        return Err(ctx.err(n.loc(), sec, "a vrrp_script needs `script \"COMMAND\"`"));
    }
    Ok((s, o))
}

/// `vrrp_instance NAME { ... }`.
pub(super) fn vrrp_instance(
    ctx: &mut Ctx,
    n: &Node,
    d: &Defaults,
) -> Result<(VrrpInstance, Origin), ConfigError> {
    let mut r = InstanceReader::new(name_of(ctx, n)?, n.loc());
    for c in ctx.block(n, &r.sec)? {
        r.keyword(ctx, c)?;
    }
    r.finish(ctx, n, d)
}

/// A `vrrp_instance` block being read: the instance so far, where its
/// fields came from, and what is settled only at the end of the block.
struct InstanceReader {
    /// `vrrp_instance NAME`, for messages.
    sec: String,
    v: VrrpInstance,
    o: Origin,
    interface: bool,
    vrid: bool,
    version: Option<u8>,
    auth_type: Option<(String, Loc)>,
    auth_pass: Option<(String, Loc)>,
    /// `dev IF` after virtual addresses.
    devs: Vec<(String, Loc)>,
}

impl InstanceReader {
    fn new(name: String, header: Loc) -> Self {
        let sec = format!("vrrp_instance {name}");
        Self {
            o: Origin::new(sec.clone(), header),
            sec,
            // keepalived's default version is 2.
            v: VrrpInstance {
                version: 2,
                ..VrrpInstance::new(name, String::new(), 0, Vec::new())
            },
            interface: false,
            vrid: false,
            version: None,
            auth_type: None,
            auth_pass: None,
            devs: Vec::new(),
        }
    }

    /// One keyword of the block.
    fn keyword(&mut self, ctx: &mut Ctx, c: &Node) -> Result<(), ConfigError> {
        let field = format!("{} {}", self.sec, c.kw());
        if self.election(ctx, c, &field)? || self.garp(ctx, c, &field)? {
            return Ok(());
        }
        match c.kw() {
            "authentication" => self.authentication(ctx, c, &field)?,
            "virtual_ipaddress" => self.addresses(ctx, c, &field)?,
            "unicast_src_ip" | "mcast_src_ip" => {
                self.v.unicast_src_ip = Some(ctx.ip(c, &field)?);
                self.o.field("unicast_src_ip", c);
            }
            "unicast_peer" => self.peers(ctx, c, &field)?,
            "track_script" => self.track_scripts(ctx, c, &field)?,
            "track_interface" => self.track_interfaces(ctx, c, &field)?,
            "track_process" => {
                self.o.field("track_process", c);
                self.v.track_process = tracked(ctx, c, &field, "track_process", &mut self.o)?;
            }
            "track_file" => {
                self.o.field("track_file", c);
                self.v.track_file = tracked(ctx, c, &field, "track_file", &mut self.o)?;
            }
            "notify_master" | "notify_backup" | "notify_fault" | "notify_stop" | "notify" => {
                self.notify(ctx, c, field)?;
            }
            _ => ctx.ignored(c, &self.sec),
        }
        Ok(())
    }

    /// What the election runs on: interface, VRID, priority, timing,
    /// version, preemption. `false`: not one of these keywords.
    fn election(&mut self, ctx: &mut Ctx, c: &Node, field: &str) -> Result<bool, ConfigError> {
        let v = &mut self.v;
        let o = &mut self.o;
        match c.kw() {
            "state" => {
                let s = ctx.value(c, field)?;
                if !s.is("MASTER") && !s.is("BACKUP") {
                    ctx.warn(
                        c.loc(),
                        format!(
                            "`state {}` ignored: MASTER or BACKUP, and only a start-up hint (the election decides)",
                            s.text
                        ),
                    );
                }
            }
            "interface" => {
                v.interface.clone_from(&ctx.value(c, field)?.text);
                self.interface = true;
                o.field("interface", c);
            }
            "virtual_router_id" => {
                v.virtual_router_id = ctx.int(c, field, "from 1 to 255")?;
                self.vrid = true;
                o.field("virtual_router_id", c);
            }
            "priority" => {
                v.priority = ctx.int(c, field, "from 1 to 255")?;
                o.field("priority", c);
            }
            "advert_int" => {
                v.advert_interval = ctx.secs(c, field)?;
                o.field("advert_interval", c);
            }
            "version" | "vrrp_version" => {
                self.version = Some(ctx.int(c, field, "2 or 3")?);
                o.field("version", c);
            }
            "nopreempt" => {
                v.preempt = false;
                o.field("preempt", c);
            }
            "preempt" => v.preempt = true,
            "preempt_delay" => {
                v.preempt_delay = Some(ctx.secs(c, field)?);
                o.field("preempt_delay", c);
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// The gratuitous ARP / NA keywords. `false`: not one of them.
    fn garp(&mut self, ctx: &mut Ctx, c: &Node, field: &str) -> Result<bool, ConfigError> {
        let v = &mut self.v;
        match c.kw() {
            "garp_master_delay" => v.garp_master_delay = Some(ctx.secs(c, field)?),
            "garp_master_repeat" => {
                v.garp_master_repeat = Some(ctx.int(c, field, "of at least 0")?);
            }
            "garp_master_refresh" => v.garp_master_refresh = Some(ctx.secs(c, field)?),
            "garp_master_refresh_repeat" => {
                v.garp_master_refresh_repeat = Some(ctx.int(c, field, "of at least 0")?);
            }
            "garp_interval" => v.garp_interval = Some(ctx.secs(c, field)?),
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// `authentication { auth_type ...; auth_pass ... }`: kept until the
    /// version is known ([`InstanceReader::finish`]).
    fn authentication(&mut self, ctx: &mut Ctx, c: &Node, field: &str) -> Result<(), ConfigError> {
        for a in ctx.block(c, field)? {
            let f = format!("{field} {}", a.kw());
            match a.kw() {
                "auth_type" => {
                    self.auth_type = Some((ctx.value(a, &f)?.text.clone(), a.loc()));
                }
                "auth_pass" => {
                    self.auth_pass = Some((ctx.value(a, &f)?.text.clone(), a.loc()));
                    self.o.field("auth_pass", a);
                }
                _ => ctx.ignored(a, &format!("{} authentication", self.sec)),
            }
        }
        Ok(())
    }

    /// `virtual_ipaddress { ADDR[/PREFIX] [dev IF] ... }`.
    fn addresses(&mut self, ctx: &mut Ctx, c: &Node, field: &str) -> Result<(), ConfigError> {
        self.o.field("virtual_ipaddress", c);
        for a in ctx.block(c, field)? {
            self.v.virtual_ipaddress.push(a.kw().to_owned());
            self.o.item("virtual_ipaddress", a.kw().to_owned(), a);
            let mut rest = a.args.iter();
            let mut ignored = Vec::new();
            while let Some(w) = rest.next() {
                if w.is("dev") {
                    if let Some(dev) = rest.next() {
                        self.devs.push((dev.text.clone(), a.loc()));
                    }
                } else {
                    ignored.push(w.text.as_str());
                }
            }
            if !ignored.is_empty() {
                ctx.warn(
                    a.loc(),
                    format!(
                        "`{}` after the address {} ignored: lb adds the address with its prefix only",
                        ignored.join(" "),
                        a.kw()
                    ),
                );
            }
        }
        Ok(())
    }

    /// `unicast_peer { ADDR ... }`.
    fn peers(&mut self, ctx: &mut Ctx, c: &Node, field: &str) -> Result<(), ConfigError> {
        self.o.field("unicast_peer", c);
        for a in ctx.block(c, field)? {
            let ip: IpAddr = a.kw().parse().map_err(|_| {
                ctx.err(a.loc(), field, format!("{:?} is not an IP address", a.kw()))
            })?;
            if !a.args.is_empty() {
                ctx.warn(
                    a.loc(),
                    format!(
                        "`{}` after the peer {ip} ignored",
                        a.words()[a.kw().len()..].trim()
                    ),
                );
            }
            self.v.unicast_peer.push(ip);
            self.o.item("unicast_peer", ip.to_string(), a);
        }
        Ok(())
    }

    /// `track_script { NAME [weight N] ... }`.
    fn track_scripts(&mut self, ctx: &mut Ctx, c: &Node, field: &str) -> Result<(), ConfigError> {
        self.o.field("track_script", c);
        for a in ctx.block(c, field)? {
            let weight = track_weight(ctx, a, field)?;
            self.v.track_script.push(TrackScript {
                name: a.kw().to_owned(),
                weight,
            });
            self.o.item("track_script", a.kw().to_owned(), a);
        }
        Ok(())
    }

    /// `track_interface { IF [weight N] ... }`.
    fn track_interfaces(
        &mut self,
        ctx: &mut Ctx,
        c: &Node,
        field: &str,
    ) -> Result<(), ConfigError> {
        self.o.field("track_interface", c);
        for a in ctx.block(c, field)? {
            let weight = track_weight(ctx, a, field)?;
            self.v.track_interface.push(TrackInterface {
                name: a.kw().to_owned(),
                weight: weight.unwrap_or(0),
            });
        }
        Ok(())
    }

    /// `notify_master SCRIPT [USER [GROUP]]` and the other notify scripts.
    fn notify(&mut self, ctx: &mut Ctx, c: &Node, field: String) -> Result<(), ConfigError> {
        let cmd = notify_script(ctx, c, field)?;
        let v = &mut self.v;
        let slot = match c.kw() {
            "notify_master" => &mut v.notify_master,
            "notify_backup" => &mut v.notify_backup,
            "notify_fault" => &mut v.notify_fault,
            "notify_stop" => &mut v.notify_stop,
            _ => &mut v.notify,
        };
        *slot = Some(cmd);
        Ok(())
    }

    /// The end of the block (`n`): required keywords, the version (which
    /// the authentication depends on), and `global_defs`' defaults.
    fn finish(
        mut self,
        ctx: &mut Ctx,
        n: &Node,
        d: &Defaults,
    ) -> Result<(VrrpInstance, Origin), ConfigError> {
        let sec = &self.sec;
        if !self.interface {
            return Err(ctx.err(
                n.loc(),
                format!("{sec} interface"),
                "`interface` is required",
            ));
        }
        if !self.vrid {
            return Err(ctx.err(
                n.loc(),
                format!("{sec} virtual_router_id"),
                "`virtual_router_id` is required",
            ));
        }
        for (dev, loc) in &self.devs {
            if *dev != self.v.interface {
                ctx.warn(
                    *loc,
                    format!(
                        "`dev {dev}` ignored: lb adds all of {sec}'s addresses on its interface {}",
                        self.v.interface
                    ),
                );
            }
        }
        // keepalived: the instance's version; else 3 for IPv6 addresses; else
        // global_defs' vrrp_version; else 2.
        let v6 = self.v.virtual_ipaddress.first().is_some_and(|a| {
            a.split('/')
                .next()
                .and_then(|a| a.parse::<IpAddr>().ok())
                .is_some_and(|a| a.is_ipv6())
        });
        self.v.version = self
            .version
            .or(if v6 { Some(3) } else { None })
            .or(d.version)
            .unwrap_or(2);
        self.apply_authentication(ctx)?;
        let v = &mut self.v;
        v.garp_master_delay = v.garp_master_delay.or(d.garp_master_delay);
        v.garp_master_repeat = v.garp_master_repeat.or(d.garp_master_repeat);
        v.garp_master_refresh = v.garp_master_refresh.or(d.garp_master_refresh);
        v.garp_master_refresh_repeat = v
            .garp_master_refresh_repeat
            .or(d.garp_master_refresh_repeat);
        v.garp_interval = v.garp_interval.or(d.garp_interval);
        Ok((self.v, self.o))
    }

    /// `auth_type` and `auth_pass`, once the version is known.
    fn apply_authentication(&mut self, ctx: &mut Ctx) -> Result<(), ConfigError> {
        let sec = &self.sec;
        match (self.auth_type.take(), self.auth_pass.take()) {
            (None, None) => {}
            (None, Some((_, loc))) => ctx.warn(
                loc,
                "`auth_pass` without `auth_type PASS`: no authentication (as keepalived)",
            ),
            (Some((t, loc)), pass) => match t.as_str() {
                "PASS" if self.v.version == 3 => ctx.warn(
                    loc,
                    format!("authentication in {sec} ignored: VRRP version 3 has none (keepalived ignores it too)"),
                ),
                "PASS" => self.v.auth_pass = Some(pass.map(|p| p.0).unwrap_or_default()),
                "AH" => {
                    return Err(ctx.err(
                        loc,
                        format!("{sec} authentication auth_type"),
                        "auth_type AH is not implemented: use PASS (VRRP version 2) or no authentication",
                    ));
                }
                other => {
                    return Err(ctx.err(
                        loc,
                        format!("{sec} authentication auth_type"),
                        format!("{other:?} is not an auth_type: PASS or AH"),
                    ));
                }
            },
        }
        Ok(())
    }
}

/// `track_process { NAME [weight N] ... }` or `track_file { ... }`: the
/// entries, each recorded in `o` under the lb field `lb`.
fn tracked(
    ctx: &mut Ctx,
    c: &Node,
    field: &str,
    lb: &'static str,
    o: &mut Origin,
) -> Result<Vec<TrackScript>, ConfigError> {
    let mut out = Vec::new();
    for a in ctx.block(c, field)? {
        let weight = track_weight(ctx, a, field)?;
        out.push(TrackScript {
            name: a.kw().to_owned(),
            weight,
        });
        o.item(lb, a.kw().to_owned(), a);
    }
    Ok(out)
}

/// `NAME [weight N]` of track_script / track_interface / track_process /
/// track_file.
fn track_weight(ctx: &mut Ctx, a: &Node, field: &str) -> Result<Option<i32>, ConfigError> {
    match a.args.as_slice() {
        [] => Ok(None),
        [w, n, rest @ ..] if w.is("weight") => {
            if rest.first().is_some_and(|r| r.is("reverse")) {
                return Err(ctx.err(
                    a.loc(),
                    field,
                    "`weight ... reverse` is not supported: invert the check instead",
                ));
            }
            if !rest.is_empty() {
                ctx.warn(
                    a.loc(),
                    format!("extra words after `{} weight {}` ignored", a.kw(), n.text),
                );
            }
            n.text.parse().map(Some).map_err(|_| {
                ctx.err(
                    a.loc(),
                    field,
                    format!("weight {:?} is not a number from -253 to 253", n.text),
                )
            })
        }
        _ => {
            ctx.warn(
                a.loc(),
                format!("`{}` ignored: write `{} weight N`", a.words(), a.kw()),
            );
            Ok(None)
        }
    }
}

/// The script of `notify_master SCRIPT [USER [GROUP]]` (or another notify
/// keyword `c`, of an instance or a sync group); a user is warned about:
/// lb runs notify scripts as its own user.
pub(super) fn notify_script(ctx: &mut Ctx, c: &Node, field: String) -> Result<String, ConfigError> {
    let Some(first) = c.args.first() else {
        return Err(ctx.err(c.loc(), field, format!("`{}` needs a script", c.kw())));
    };
    let cmd = ctx.command(c, std::slice::from_ref(first));
    if c.args.len() > 1 {
        ctx.warn(
            c.loc(),
            format!(
                "the user `{}` of `{}` is ignored: lb runs notify scripts as its own user",
                c.args[1..]
                    .iter()
                    .map(|t| t.text.as_str())
                    .collect::<Vec<_>>()
                    .join(" "),
                c.kw()
            ),
        );
    }
    Ok(cmd)
}
