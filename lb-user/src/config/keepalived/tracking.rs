//! `vrrp_sync_group`, `vrrp_track_process` and `track_file`
//! (`vrrp_track_file`) → `[[vrrp_sync_group]]`, `[[vrrp_track_process]]`
//! and `[[vrrp_track_file]]`.

use super::instance::{name_of, notify_script};
use super::lexer::Node;
use super::{Ctx, Origin};
use crate::config::{ConfigError, ParamMatch, VrrpSyncGroup, VrrpTrackFile, VrrpTrackProcess};

/// `vrrp_sync_group NAME { group { VI_1 VI_2 } notify_master ... }`.
pub(super) fn vrrp_sync_group(
    ctx: &mut Ctx,
    n: &Node,
) -> Result<(VrrpSyncGroup, Origin), ConfigError> {
    let name = name_of(ctx, n)?;
    let sec = format!("vrrp_sync_group {name}");
    let mut o = Origin::new(sec.clone(), n.loc());
    let mut g = VrrpSyncGroup::new(name, Vec::new());
    for c in ctx.block(n, &sec)? {
        let field = format!("{sec} {}", c.kw());
        match c.kw() {
            "group" => {
                o.field("instances", c);
                for a in ctx.block(c, &field)? {
                    // One per line, or several on a line.
                    for w in std::iter::once(&a.key).chain(&a.args) {
                        g.instances.push(w.text.clone());
                        o.item("instances", w.text.clone(), a);
                    }
                }
            }
            "notify_master" | "notify_backup" | "notify_fault" | "notify" => {
                let cmd = notify_script(ctx, c, field)?;
                let slot = match c.kw() {
                    "notify_master" => &mut g.notify_master,
                    "notify_backup" => &mut g.notify_backup,
                    "notify_fault" => &mut g.notify_fault,
                    _ => &mut g.notify,
                };
                *slot = Some(cmd);
            }
            "sync_group_tracking_weight" => g.tracking_weight = true,
            "global_tracking" => ctx.warn(
                c.loc(),
                "`global_tracking` ignored: deprecated in keepalived; use sync_group_tracking_weight",
            ),
            "track_interface" | "track_script" | "track_file" | "track_process" => ctx.warn(
                c.loc(),
                format!(
                    "unsupported keyword `{}` in {sec}, ignored: track the objects in each member vrrp_instance instead (a member's FAULT takes the group to FAULT)",
                    c.kw()
                ),
            ),
            _ => ctx.ignored(c, &sec),
        }
    }
    Ok((g, o))
}

/// `weight N` of a tracked object's block (`reverse` refused, as for
/// `vrrp_script`).
fn block_weight(ctx: &mut Ctx, c: &Node, field: &str) -> Result<i32, ConfigError> {
    if c.args.get(1).is_some_and(|a| a.is("reverse")) {
        return Err(ctx.err(
            c.loc(),
            field,
            "`weight ... reverse` is not supported: use a weight of the other sign instead",
        ));
    }
    ctx.int(c, field, "from -253 to 253")
}

/// `vrrp_track_process NAME { process nginx ...; quorum N; weight N ... }`.
pub(super) fn vrrp_track_process(
    ctx: &mut Ctx,
    n: &Node,
) -> Result<(VrrpTrackProcess, Origin), ConfigError> {
    let name = name_of(ctx, n)?;
    let sec = format!("vrrp_track_process {name}");
    let mut o = Origin::new(sec.clone(), n.loc());
    let mut p = VrrpTrackProcess::new(name, String::new());
    let mut process = false;
    for c in ctx.block(n, &sec)? {
        let field = format!("{sec} {}", c.kw());
        match c.kw() {
            "process" => {
                let Some((first, rest)) = c.args.split_first() else {
                    return Err(ctx.err(c.loc(), field, "`process` needs a process name"));
                };
                p.process.clone_from(&first.text);
                p.parameters = rest.iter().map(|t| t.text.clone()).collect();
                process = true;
                o.field("process", c);
            }
            "param_match" => {
                p.param_match = Some(match c.args.first() {
                    None => ParamMatch::Exact,
                    Some(a) if a.is("partial") => ParamMatch::Partial,
                    Some(a) if a.is("initial") => ParamMatch::Initial,
                    Some(a) => {
                        return Err(ctx.err(
                            c.loc(),
                            field,
                            format!("{:?} is not a param_match: initial or partial", a.text),
                        ));
                    }
                });
                o.field("param_match", c);
            }
            "full_command" => p.full_command = true,
            "weight" => {
                p.weight = block_weight(ctx, c, &field)?;
                o.field("weight", c);
            }
            "quorum" => {
                p.quorum = ctx.int(c, &field, "of at least 0")?;
                o.field("quorum", c);
            }
            "quorum_max" => {
                p.quorum_max = Some(ctx.int(c, &field, "of at least 0")?);
                o.field("quorum_max", c);
            }
            "delay" => {
                let d = ctx.secs(c, &field)?;
                p.fork_delay = Some(d);
                p.terminate_delay = Some(d);
                o.field("fork_delay", c);
                o.field("terminate_delay", c);
            }
            "fork_delay" => {
                p.fork_delay = Some(ctx.secs(c, &field)?);
                o.field("fork_delay", c);
            }
            "terminate_delay" => {
                p.terminate_delay = Some(ctx.secs(c, &field)?);
                o.field("terminate_delay", c);
            }
            _ => ctx.ignored(c, &sec),
        }
    }
    if !process {
        return Err(ctx.err(n.loc(), sec, "a vrrp_track_process needs `process NAME`"));
    }
    Ok((p, o))
}

/// `track_file NAME { file PATH; weight N; init_file [VALUE] [overwrite] }`
/// (or its old name `vrrp_track_file`).
pub(super) fn track_file(ctx: &mut Ctx, n: &Node) -> Result<(VrrpTrackFile, Origin), ConfigError> {
    let name = name_of(ctx, n)?;
    let sec = format!("{} {name}", n.kw());
    let mut o = Origin::new(sec.clone(), n.loc());
    let mut f = VrrpTrackFile::new(name, "");
    let mut file = false;
    for c in ctx.block(n, &sec)? {
        let field = format!("{sec} {}", c.kw());
        match c.kw() {
            "file" => {
                f.file = ctx.value(c, &field)?.text.clone().into();
                file = true;
                o.field("file", c);
            }
            "weight" => {
                f.weight = block_weight(ctx, c, &field)?;
                o.field("weight", c);
            }
            "init_file" => {
                let mut value = 0;
                for a in &c.args {
                    if a.is("overwrite") {
                        f.init_overwrite = true;
                    } else {
                        value = a.text.parse().map_err(|_| {
                            ctx.err(
                                c.loc(),
                                &field,
                                format!("{:?} is not a number (or `overwrite`)", a.text),
                            )
                        })?;
                    }
                }
                f.init_file = Some(value);
                o.field("init_file", c);
            }
            _ => ctx.ignored(c, &sec),
        }
    }
    if !file {
        return Err(ctx.err(n.loc(), sec, format!("a {} needs `file PATH`", n.kw())));
    }
    Ok((f, o))
}
