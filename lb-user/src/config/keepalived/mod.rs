//! keepalived.conf, read as it is: `lbd --config keepalived.conf` and
//! `lbctl convert keepalived.conf` (which prints the equivalent TOML).
//!
//! The file is read into the TOML schema of [`crate::config`], and the
//! result goes through the same validation as a TOML file (the same
//! checks, run on the configuration built), so both paths are exactly as
//! strict. Errors name the keepalived file, line and keyword. The TOML
//! [`to_toml`] writes (`lbctl convert`) reads back as the same
//! configuration.
//!
//! Syntax: `{ }` blocks (a `{` may also open on the next line, and a block
//! may close on its own line), `#` and `!` comments anywhere outside
//! double quotes, quoted strings, `include FILE` anywhere (relative to the
//! including file; `*` and `?` in the file name are expanded, other glob
//! forms are reported and skipped). Conditional lines (`@ID ...`) and
//! parameter definitions (`$NAME=...`) are not supported: reported and
//! skipped.
//!
//! What maps where, and where keepalived's meaning is kept:
//! - `global_defs`: `router_id` (or the old `lvs_id`) → `global.router_id`;
//!   `vrrp_version` → the version of instances that set none;
//!   `vrrp_garp_master_delay/repeat/refresh/refresh_repeat`,
//!   `vrrp_garp_interval` → the instances' `garp_*` when they set none;
//!   `script_user` → the user of `vrrp_script`s and `MISC_CHECK`s that set
//!   none. E-mail, SNMP, scheduling and similar keywords are accepted with a
//!   warning that they have no effect.
//! - `vrrp_script` → `[[vrrp_script]]`; times are seconds, fractions
//!   allowed.
//! - `vrrp_instance` → `[[vrrp_instance]]`. `state MASTER|BACKUP` has no
//!   field: keepalived uses it only as a start-up hint (the election
//!   decides), and lb always starts as backup; `state MASTER` with
//!   `priority 255` is nothing special either (255 = address owner by
//!   priority alone). keepalived's default VRRP version is 2, so an
//!   instance with no `version` (and no global `vrrp_version`) is version 2
//!   — whose `advert_int` must be whole seconds. `auth_type PASS` keeps
//!   `auth_pass` (version 2); with an explicit version 3 the authentication
//!   is dropped with a warning, as keepalived ignores it. `auth_type AH` is
//!   an error. `nopreempt` → `preempt = false`. Extra words after a virtual
//!   address (`dev`, `label`, `brd`, ...) are reported and ignored. Notify
//!   scripts: lb runs them with `/bin/sh -c` (keepalived splits the words
//!   itself); a `username [groupname]` after the script is reported and
//!   ignored.
//!   `track_process` and `track_file` entries (`NAME [weight N]`) keep
//!   their names and weights.
//! - `vrrp_sync_group` → `[[vrrp_sync_group]]`: `group { ... }` →
//!   `instances`, its notify scripts (`notify` gets `GROUP NAME STATE`),
//!   `sync_group_tracking_weight` → `tracking_weight`. Tracking on the
//!   group itself is reported and ignored (track in the members).
//! - `vrrp_track_process` → `[[vrrp_track_process]]`: `process NAME
//!   [PARAMS...]` → `process` and `parameters`, `param_match`,
//!   `full_command`, `quorum`, `quorum_max`, `weight` (default 1, as
//!   keepalived), `delay` → `fork_delay` and `terminate_delay`.
//! - `track_file` (or the old `vrrp_track_file`) → `[[vrrp_track_file]]`:
//!   `file`, `weight` (default 1), `init_file [VALUE] [overwrite]` →
//!   `init_file` and `init_overwrite`. `weight ... reverse` is an error
//!   everywhere.
//! - `virtual_server VIP PORT` → `[[service]]`, and a `[dataplane]` on the
//!   interface of the instance holding the first service's VIP (or of the
//!   first instance). `lb_algo`/`lvs_sched` `sh` becomes `source_hash`,
//!   every other one Maglev (a notice when the scheduler's meaning
//!   differs); `persistence_timeout` and `persistence_granularity` become
//!   `persistence_timeout` and `persistence_prefix`. `lb_kind`/`lvs_method` `NAT`
//!   (keepalived's default when none is given) → `nat`, `DR` → `dsr`,
//!   `TUN` → `ipip`; a real server on another port than the virtual
//!   server's is accepted in `nat` only. `virtual_server group NAME`
//!   (with its `virtual_server_group NAME`) → one `[[service]]` per VIP
//!   and port of the group (see `group`). `quorum`, `hysteresis`,
//!   `quorum_up`, `quorum_down` → `quorum`; `omega` → `notify_on_stop`;
//!   a real server's `notify_up`/`notify_down` → its backend's. Health
//!   checks come from the real
//!   servers' checkers: the service's `health` when every real server has
//!   the same single checker, else each backend's own `health` list (a
//!   real server with several checkers is up when all pass; one with none
//!   is always up, as in keepalived): `TCP_CHECK` → `tcp`, `HTTP_GET`
//!   (first `url`) → `http`,
//!   `MISC_CHECK` → `exec` (the real server's address in `misc_path` becomes
//!   `$BACKEND`). `delay_loop` (default 60s) → interval; `connect_timeout`
//!   (default 5s) or `misc_timeout` (default: `delay_loop`) → timeout;
//!   keepalived takes a server down after `retry` retries following a
//!   failure, so `fall = retry + 1` (retry defaults: 1, `MISC_CHECK` 0) and
//!   `rise = 1`; `connect_port` → `health.port` when it is not the real
//!   server's port. `alpha` (on the virtual server) → `start_down`;
//!   `inhibit_on_failure` → the service's or the backend's own;
//!   `sorry_server IP PORT` (with `sorry_server_inhibit`) → `sorry_server`.
//!
//! Anything else is reported as a [`Warning`] with its file and line, never
//! silently dropped.
//!
//! The reader, by file: `lexer` (text → a tree of keyword nodes),
//! `instance` (`global_defs`, `vrrp_script`, `vrrp_instance`),
//! `tracking` (`vrrp_sync_group`, `vrrp_track_process`, `track_file`),
//! `virtual_server` (services, real servers, checkers), `group`
//! (`virtual_server_group`), `ignored`
//! (keywords accepted without effect, and why), `tidy` (the layout of
//! [`to_toml`]'s output); here: the entry points, the shared context
//! (`Ctx`) and the map from the built configuration back to keepalived
//! lines (`SourceMap`).

mod group;
mod ignored;
mod instance;
pub mod keywords;
mod lexer;
#[cfg(test)]
mod tests;
mod tidy;
mod tracking;
mod virtual_server;

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use crate::config::validate::FieldPath;
use crate::config::{Config, ConfigError, Dataplane, Dur, Invalid, ValueError, VrrpInstance};
use instance::{Defaults, global_defs, vrrp_instance, vrrp_script};
use lexer::{Loc, Node, Tok};
use virtual_server::virtual_server;

/// Something in the file that lb accepts but does not (or not exactly)
/// honour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// The file (the main one or an included one).
    pub file: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// What is ignored or differs, and why.
    pub message: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file.display(), self.line, self.message)
    }
}

/// Keywords that start a keepalived.conf (at the top level).
const TOP_KEYWORDS: &[&str] = &[
    "global_defs",
    "vrrp_instance",
    "vrrp_script",
    "vrrp_sync_group",
    "virtual_server",
    "virtual_server_group",
    "include",
    "static_ipaddress",
    "static_routes",
    "static_rules",
    "garp_group",
    "vrrp_track_file",
    "track_file",
    "vrrp_track_process",
    "bfd_instance",
    "net_namespace",
    "linkbeat_use_polling",
    "use_pid_dir",
    "SSL",
];

/// Whether `text` looks like a keepalived.conf rather than lb's TOML: its
/// first significant word is a keepalived top-level keyword (not followed
/// by `=`), or a keepalived `@` / `$` line.
#[must_use]
pub fn looks_like_keepalived(text: &str) -> bool {
    for line in text.lines() {
        let t = line.trim_start_matches('\u{feff}').trim_start();
        if t.is_empty() || t.starts_with('#') || t.starts_with('!') {
            continue;
        }
        if t.starts_with('@') || t.starts_with('$') {
            return true;
        }
        let end = t
            .find(|c: char| c.is_whitespace() || c == '{')
            .unwrap_or(t.len());
        let rest = t[end..].trim_start();
        return TOP_KEYWORDS.contains(&&t[..end]) && !rest.starts_with('=');
    }
    false
}

/// Read and convert the keepalived.conf at `path`.
///
/// # Errors
/// The file (or an included one) cannot be read, or does not convert or
/// validate; the error names the keepalived file, line and keyword.
pub fn load(path: &Path) -> Result<(Config, Vec<Warning>), ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::unreadable(path, &e))?;
    parse(&text, path)
}

/// Convert keepalived.conf `text` (from `path`: messages, and the directory
/// `include`s are relative to) and validate the result as lb's own
/// configuration.
///
/// # Errors
/// As [`load`].
pub fn parse(text: &str, path: &Path) -> Result<(Config, Vec<Warning>), ConfigError> {
    parse_with(text, path, Includes::Disk)
}

/// Where the files an `include` names are read from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Includes {
    /// The file system: lbd and `lbctl convert`.
    #[default]
    Disk,
    /// Only these files (path, text), the paths as an `include` relative
    /// to the main file resolves them. The fuzz targets read this way: an
    /// input that includes `/dev/zero` or `/dev/stdin` would otherwise
    /// hang the fuzzer, and no input should read the host's files.
    Memory(Vec<(PathBuf, String)>),
}

/// [`parse`], reading `include`d files from `includes`.
///
/// # Errors
/// As [`load`].
pub fn parse_with(
    text: &str,
    path: &Path,
    includes: Includes,
) -> Result<(Config, Vec<Warning>), ConfigError> {
    let mut ctx = Ctx::with_includes(path, includes);
    let (config, map) = build(&mut ctx, text)?;
    config.validate().map_err(|e| map.translate(&ctx, e))?;
    Ok((config, ctx.into_warnings()))
}

/// `config` as lb's TOML (what `lbctl convert` prints, without its header).
///
/// # Errors
/// [`ValueError::ToToml`]: the configuration cannot be written as TOML (a
/// bug).
pub fn to_toml(config: &Config) -> Result<String, ValueError> {
    let raw = toml::to_string(config).map_err(|source| ValueError::ToToml { source })?;
    // The tidy form is used only when it reads back as the same thing.
    Ok(tidy::tidy(&raw)
        .filter(|t| toml::from_str::<Config>(t).is_ok_and(|c| c == *config))
        .unwrap_or(raw))
}

/// Collects files and warnings; makes errors.
struct Ctx {
    files: Vec<PathBuf>,
    warnings: Vec<(Loc, String)>,
    includes: Includes,
}

impl Ctx {
    /// A context whose main file is `path`, its includes read from disk.
    fn new(path: &Path) -> Self {
        Self::with_includes(path, Includes::Disk)
    }

    /// A context whose main file is `path`, its includes read from
    /// `includes`.
    fn with_includes(path: &Path, includes: Includes) -> Self {
        Self {
            files: vec![path.to_owned()],
            warnings: Vec::new(),
            includes,
        }
    }

    /// A warning at `loc`.
    fn warn(&mut self, loc: Loc, message: impl Into<String>) {
        self.warnings.push((loc, message.into()));
    }

    /// An error at `loc`, about the keepalived keyword(s) `field`.
    fn err(&self, loc: Loc, field: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.files[loc.file].clone(),
            line: Some(loc.line),
            field: field.into(),
            message: message.into(),
        }
    }

    /// The warnings, in file and line order.
    fn into_warnings(self) -> Vec<Warning> {
        let mut w = self.warnings;
        w.sort_by_key(|(loc, _)| (loc.file, loc.line));
        w.into_iter()
            .map(|(loc, message)| Warning {
                file: self.files[loc.file].clone(),
                line: loc.line,
                message,
            })
            .collect()
    }

    /// The block of `n`; an error if it has none.
    fn block<'n>(&self, n: &'n Node, field: &str) -> Result<&'n [Node], ConfigError> {
        n.block.as_deref().ok_or_else(|| {
            self.err(
                n.loc(),
                field,
                format!("`{}` needs a {{ ... }} block", n.kw()),
            )
        })
    }

    /// The single value of `n` (extra words: a warning).
    fn value<'n>(&mut self, n: &'n Node, field: &str) -> Result<&'n Tok, ConfigError> {
        let Some(v) = n.args.first() else {
            return Err(self.err(n.loc(), field, format!("`{}` needs a value", n.kw())));
        };
        if n.args.len() > 1 {
            self.warn(
                n.loc(),
                format!("extra words after `{} {}` ignored", n.kw(), v.text),
            );
        }
        Ok(v)
    }

    /// The value of `n` as a number; `range` says what is allowed.
    fn int<T: FromStr>(&mut self, n: &Node, field: &str, range: &str) -> Result<T, ConfigError> {
        let v = self.value(n, field)?;
        v.text.parse().map_err(|_| {
            self.err(
                n.loc(),
                field,
                format!("{:?} is not a number {range}", v.text),
            )
        })
    }

    /// The value of `n` as an IP address.
    fn ip(&mut self, n: &Node, field: &str) -> Result<IpAddr, ConfigError> {
        let v = self.value(n, field)?;
        v.text
            .parse()
            .map_err(|_| self.err(n.loc(), field, format!("{:?} is not an IP address", v.text)))
    }

    /// Seconds, fractions allowed (keepalived's unit for every time).
    fn secs(&mut self, n: &Node, field: &str) -> Result<Dur, ConfigError> {
        let v = self.value(n, field)?;
        let d = seconds(&v.text).map_err(|e| self.err(n.loc(), field, e.to_string()))?;
        let ms =
            Duration::from_millis(u64::try_from((d.as_micros() + 500) / 1000).unwrap_or(u64::MAX));
        if ms != d {
            self.warn(
                n.loc(),
                format!(
                    "`{} {}` rounded to {:?}: lb times are whole milliseconds",
                    n.kw(),
                    v.text,
                    ms
                ),
            );
        }
        Ok(Dur(ms))
    }

    /// A script command line: the words joined (quoted words re-quoted for
    /// `/bin/sh`), with a notice when shell characters change meaning.
    fn command(&mut self, n: &Node, words: &[Tok]) -> String {
        let cmd = words
            .iter()
            .map(|t| {
                if t.quoted && (words.len() > 1) && t.text.contains(char::is_whitespace) {
                    format!("'{}'", t.text.replace('\'', r"'\''"))
                } else {
                    t.text.clone()
                }
            })
            .collect::<Vec<_>>()
            .join(" ");
        if cmd.contains(['|', '&', ';', '<', '>', '`', '$']) {
            self.warn(
                n.loc(),
                format!(
                    "notice: lb runs `{}` with /bin/sh -c; keepalived runs it without a shell, so shell characters in it now have their shell meaning",
                    n.kw()
                ),
            );
        }
        cmd
    }
}

/// keepalived seconds: `"1"`, `"0.5"`, `"2.25"` (microsecond resolution).
fn seconds(s: &str) -> Result<Duration, ValueError> {
    let bad = |source| ValueError::NotSeconds {
        input: s.to_owned(),
        source,
    };
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if int.is_empty() && frac.is_empty()
        || !int.chars().all(|c| c.is_ascii_digit())
        || !frac.chars().all(|c| c.is_ascii_digit())
    {
        return Err(bad(None));
    }
    let whole: u64 = if int.is_empty() {
        0
    } else {
        int.parse().map_err(|e| bad(Some(e)))?
    };
    let mut micros: u64 = 0;
    for c in frac.chars().chain(std::iter::repeat('0')).take(6) {
        micros = micros * 10 + u64::from(c.to_digit(10).unwrap_or(0));
    }
    Ok(Duration::from_secs(whole) + Duration::from_micros(micros))
}

// ---------------------------------------------------------------------------
// Where each item of the built configuration came from: for mapping lb's
// validation errors back to keepalived lines.

/// Where one item (`[[vrrp_instance]]`, `[[service]]`, ...) of the built
/// configuration came from.
#[derive(Debug, Default, Clone)]
struct Origin {
    /// `vrrp_instance VI_1`, `virtual_server 10.0.0.3 80`, ...
    label: String,
    /// The line of its keyword.
    header: Loc,
    /// lb field → (line, keepalived keyword).
    fields: HashMap<&'static str, (Loc, String)>,
    /// Entries of list fields: (lb field, text the lb message may quote,
    /// line, keepalived keyword).
    items: Vec<(&'static str, String, Loc, String)>,
}

impl Origin {
    fn new(label: String, header: Loc) -> Self {
        Self {
            label,
            header,
            ..Self::default()
        }
    }

    /// The lb field `lb` came from the keyword node `n`.
    fn field(&mut self, lb: &'static str, n: &Node) {
        self.fields.insert(lb, (n.loc(), n.kw().to_owned()));
    }

    /// An entry of the list field `lb` (and of the keepalived block of the
    /// same name), quoted by lb's messages as `text`, came from `n`.
    fn item(&mut self, lb: &'static str, text: String, n: &Node) {
        self.items.push((lb, text, n.loc(), lb.to_owned()));
    }
}

/// The [`Origin`] of every item of the built configuration, by table and
/// index.
#[derive(Debug, Default)]
struct SourceMap {
    vrrp_instance: Vec<Origin>,
    vrrp_script: Vec<Origin>,
    vrrp_track_process: Vec<Origin>,
    vrrp_track_file: Vec<Origin>,
    vrrp_sync_group: Vec<Origin>,
    service: Vec<Origin>,
    dataplane: Option<Origin>,
}

impl SourceMap {
    /// lb's validation error on the built configuration → the keepalived
    /// line and keyword.
    fn translate(&self, ctx: &Ctx, e: Invalid) -> ConfigError {
        let FieldPath {
            table,
            index,
            field,
        } = e.at;
        let origin = match table {
            "vrrp_instance" => index.and_then(|i| self.vrrp_instance.get(i)),
            "vrrp_script" => index.and_then(|i| self.vrrp_script.get(i)),
            "vrrp_track_process" => index.and_then(|i| self.vrrp_track_process.get(i)),
            "vrrp_track_file" => index.and_then(|i| self.vrrp_track_file.get(i)),
            "vrrp_sync_group" => index.and_then(|i| self.vrrp_sync_group.get(i)),
            "service" => self.service.get(index.unwrap_or(0)),
            "dataplane" => self.dataplane.as_ref(),
            _ => None,
        };
        let Some(o) = origin else {
            let e = e.into_error(&ctx.files[0], None);
            return ConfigError {
                file: e.file.clone(),
                line: None,
                field: e.field.clone(),
                message: format!("the converted configuration does not load: {e}"),
            };
        };
        let item = o.items.iter().find(|(f, text, _, _)| {
            *f == field
                && (e.message.contains(&format!("{text:?}"))
                    || e.message.contains(&format!("{text}:"))
                    || e.message.contains(&format!("{text} ")))
        });
        let (loc, kw) = match (item, o.fields.get(field)) {
            (Some((_, _, loc, kw)), _) | (None, Some((loc, kw))) => (*loc, kw.clone()),
            (None, None) => (o.header, String::new()),
        };
        ConfigError {
            file: ctx.files[loc.file].clone(),
            line: Some(loc.line),
            field: if kw.is_empty() {
                o.label.clone()
            } else {
                format!("{} {kw}", o.label)
            },
            message: format!("{} (lb: {})", e.message, e.at),
        }
    }
}

// ---------------------------------------------------------------------------
// The conversion.

/// The configuration `text` (the file `ctx.files[0]`) describes, and where
/// each of its items came from.
fn build(ctx: &mut Ctx, text: &str) -> Result<(Config, SourceMap), ConfigError> {
    let tree = ctx.parse_tree(text)?;
    let mut config = Config::default();
    let mut map = SourceMap::default();
    let mut defaults = Defaults::default();
    for n in tree.iter().filter(|n| n.kw() == "global_defs") {
        global_defs(ctx, n, &mut config, &mut defaults)?;
    }
    let mut servers = Vec::new();
    let mut groups = group::Groups::new();
    for n in &tree {
        match n.kw() {
            "global_defs" => {}
            "vrrp_script" => {
                let (s, o) = vrrp_script(ctx, n, &defaults)?;
                config.vrrp_script.push(s);
                map.vrrp_script.push(o);
            }
            "vrrp_track_process" => {
                let (p, o) = tracking::vrrp_track_process(ctx, n)?;
                config.vrrp_track_process.push(p);
                map.vrrp_track_process.push(o);
            }
            "track_file" | "vrrp_track_file" => {
                let (f, o) = tracking::track_file(ctx, n)?;
                config.vrrp_track_file.push(f);
                map.vrrp_track_file.push(o);
            }
            "vrrp_sync_group" => {
                let (g, o) = tracking::vrrp_sync_group(ctx, n)?;
                config.vrrp_sync_group.push(g);
                map.vrrp_sync_group.push(o);
            }
            "vrrp_instance" => {
                let (v, o) = vrrp_instance(ctx, n, &defaults)?;
                config.vrrp_instance.push(v);
                map.vrrp_instance.push(o);
            }
            "virtual_server" => servers.push(n),
            "virtual_server_group" => group::virtual_server_group(ctx, n, &mut groups)?,
            _ => ctx.ignored(n, "the top level"),
        }
    }
    for n in servers {
        for (s, o) in virtual_server(ctx, n, &defaults, &groups)? {
            config.service.push(s);
            map.service.push(o);
        }
    }
    if !config.service.is_empty() {
        let (dp, origin) = dataplane(ctx, &config, &map)?;
        config.dataplane = Some(dp);
        map.dataplane = Some(origin);
    }
    Ok((config, map))
}

/// The `[dataplane]` the services need: on the interface of the instance
/// holding the first service's VIP (or of the first instance), with a
/// notice for each other service whose VIP is on another interface.
fn dataplane(
    ctx: &mut Ctx,
    config: &Config,
    map: &SourceMap,
) -> Result<(Dataplane, Origin), ConfigError> {
    let holds = |v: &VrrpInstance, vip: IpAddr| {
        v.vips()
            .is_ok_and(|vips| vips.iter().any(|a| a.addr == vip))
    };
    let first = &config.service[0];
    let holder = config
        .vrrp_instance
        .iter()
        .position(|v| holds(v, first.vip))
        .or(if config.vrrp_instance.is_empty() {
            None
        } else {
            Some(0)
        });
    let Some(i) = holder else {
        let o = &map.service[0];
        return Err(ctx.err(
            o.header,
            o.label.clone(),
            "lb runs virtual servers on the interface of a vrrp_instance, and there is none: run `lbctl convert` on this file and add `[dataplane] interface = \"...\"` to the TOML it prints",
        ));
    };
    let v = &config.vrrp_instance[i];
    let dp = Dataplane::new(v.interface.clone());
    let o = &map.vrrp_instance[i];
    let mut origin = Origin::new(
        format!("{} (the data plane's interface)", o.label),
        o.header,
    );
    if let Some(f) = o.fields.get("interface") {
        origin.header = f.0;
    }
    for (n, s) in config.service.iter().enumerate().skip(1) {
        let other = config.vrrp_instance.iter().find(|v| holds(v, s.vip));
        if let Some(other) = other
            && other.interface != dp.interface
        {
            ctx.warn(
                map.service[n].header,
                format!(
                    "notice: the data plane runs on {} only (lb has one); {} is on {}",
                    dp.interface, map.service[n].label, other.interface
                ),
            );
        }
    }
    Ok((dp, origin))
}
