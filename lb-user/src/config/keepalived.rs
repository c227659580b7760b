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
//! - `virtual_server VIP PORT` → `[[service]]`, and a `[dataplane]` on the
//!   interface of the instance holding the first service's VIP (or of the
//!   first instance). Every `lb_algo`/`lvs_sched` becomes Maglev (a notice
//!   when the scheduler's meaning differs). `lb_kind`/`lvs_method` `DR` →
//!   `dsr`, `TUN` → `ipip`; `NAT` — keepalived's default when none is given
//!   — is an error. The health check comes from the real servers' checkers,
//!   which must all be the same (lb checks all backends of a service one
//!   way): `TCP_CHECK` → `tcp`, `HTTP_GET` (first `url`) → `http`,
//!   `MISC_CHECK` → `exec` (the real server's address in `misc_path` becomes
//!   `$BACKEND`). `delay_loop` (default 60s) → interval; `connect_timeout`
//!   (default 5s) or `misc_timeout` (default: `delay_loop`) → timeout;
//!   keepalived takes a server down after `retry` retries following a
//!   failure, so `fall = retry + 1` (retry defaults: 1, `MISC_CHECK` 0) and
//!   `rise = 1`; `connect_port` → `health.port` when it is not the real
//!   server's port.
//!
//! Anything else is reported as a [`Warning`] with its file and line, never
//! silently dropped.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use crate::config::{
    BackendConfig, Config, ConfigError, Dataplane, Dur, Health, HealthKind, Mode, Protocol,
    Scheduler, Service, TrackInterface, TrackScript, VrrpInstance, VrrpScript,
};

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
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: path.to_owned(),
        line: None,
        field: String::new(),
        message: format!("cannot read: {e}"),
    })?;
    parse(&text, path)
}

/// Convert keepalived.conf `text` (from `path`: messages, and the directory
/// `include`s are relative to) and validate the result as lb's own
/// configuration.
///
/// # Errors
/// As [`load`].
pub fn parse(text: &str, path: &Path) -> Result<(Config, Vec<Warning>), ConfigError> {
    let mut ctx = Ctx::new(path);
    let (config, map) = build(&mut ctx, text)?;
    config
        .validate_built(path)
        .map_err(|e| map.translate(&ctx, e))?;
    Ok((config, ctx.into_warnings()))
}

/// `config` as lb's TOML (what `lbctl convert` prints, without its header).
///
/// # Errors
/// The configuration cannot be written as TOML (a bug).
pub fn to_toml(config: &Config) -> Result<String, String> {
    let raw = toml::to_string(config)
        .map_err(|e| format!("cannot write the configuration as TOML: {e}"))?;
    // The tidy form is used only when it reads back as the same thing.
    Ok(tidy(&raw)
        .filter(|t| toml::from_str::<Config>(t).is_ok_and(|c| c == *config))
        .unwrap_or(raw))
}

/// `toml::to_string`'s output in the shape of `examples/lb.toml`: nested
/// tables inline (`health = { ... }`, `backend = [ { ... }, ... ]`), empty
/// optional lists left out. `None` when the text has a shape this does
/// not know.
fn tidy(raw: &str) -> Option<String> {
    struct Section {
        header: String,
        name: String,
        lines: Vec<String>,
        /// Inline children: key, elements, is an array.
        children: Vec<(String, Vec<String>, bool)>,
    }
    let keep = |line: &str| !line.ends_with(" = []") || line.starts_with("backend = ");
    let mut top: Vec<String> = Vec::new();
    let mut sections: Vec<Section> = Vec::new();
    let mut child: Option<(String, bool, Vec<String>)> = None;
    let close = |child: &mut Option<(String, bool, Vec<String>)>, sections: &mut Vec<Section>| {
        if let Some((key, array, lines)) = child.take() {
            let inline = format!("{{ {} }}", lines.join(", "));
            let parent = sections.last_mut()?;
            match parent.children.iter_mut().find(|c| c.0 == key) {
                Some(c) if array && c.2 => c.1.push(inline),
                Some(_) => return None,
                None => parent.children.push((key, vec![inline], array)),
            }
        }
        Some(())
    };
    for line in raw.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if line.starts_with('[') {
            close(&mut child, &mut sections)?;
            let array = line.starts_with("[[");
            let name = line.trim_matches(|c| c == '[' || c == ']').to_owned();
            match name.split_once('.') {
                None => sections.push(Section {
                    header: line.to_owned(),
                    name,
                    lines: Vec::new(),
                    children: Vec::new(),
                }),
                Some((parent, key)) => {
                    if sections.last().is_none_or(|s| s.name != parent) || key.contains('.') {
                        return None;
                    }
                    child = Some((key.to_owned(), array, Vec::new()));
                }
            }
        } else if let Some((_, _, lines)) = &mut child {
            lines.push(line.to_owned());
        } else if let Some(s) = sections.last_mut() {
            if keep(line) {
                s.lines.push(line.to_owned());
            }
        } else if keep(line) {
            top.push(line.to_owned());
        }
    }
    close(&mut child, &mut sections)?;
    let mut out = String::new();
    for line in &top {
        out.push_str(line);
        out.push('\n');
    }
    for s in sections {
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(&s.header);
        out.push('\n');
        for line in &s.lines {
            out.push_str(line);
            out.push('\n');
        }
        for (key, items, array) in s.children {
            match (array, items.as_slice()) {
                (false, [one]) => out.push_str(&format!("{key} = {one}\n")),
                (true, [one]) => out.push_str(&format!("{key} = [{one}]\n")),
                (true, many) => {
                    out.push_str(&format!("{key} = [\n"));
                    for item in many {
                        out.push_str(&format!("  {item},\n"));
                    }
                    out.push_str("]\n");
                }
                (false, _) => return None,
            }
        }
    }
    Some(out)
}

// ---------------------------------------------------------------------------
// Tokens and blocks.

/// Where a token is: file index (into `Ctx::files`) and 1-based line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Loc {
    file: usize,
    line: usize,
}

#[derive(Debug, Clone)]
struct Tok {
    text: String,
    quoted: bool,
    loc: Loc,
    /// First word of its line.
    first: bool,
}

impl Tok {
    fn is(&self, s: &str) -> bool {
        !self.quoted && self.text == s
    }
}

/// `KEYWORD ARGS... [{ CHILDREN }]`.
#[derive(Debug)]
struct Node {
    key: Tok,
    args: Vec<Tok>,
    block: Option<Vec<Node>>,
}

impl Node {
    fn kw(&self) -> &str {
        &self.key.text
    }
    fn loc(&self) -> Loc {
        self.key.loc
    }
    /// The keyword and its arguments, as written (for messages).
    fn words(&self) -> String {
        std::iter::once(&self.key)
            .chain(&self.args)
            .map(|t| t.text.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Split one line into words: `(text, quoted)`.
fn split_line(line: &str) -> Result<Vec<(String, bool)>, String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut chars = line.chars();
    let flush = |cur: &mut String, words: &mut Vec<(String, bool)>| {
        if !cur.is_empty() {
            words.push((std::mem::take(cur), false));
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '#' | '!' => break,
            '{' | '}' => {
                flush(&mut cur, &mut words);
                words.push((c.to_string(), false));
            }
            '"' => {
                flush(&mut cur, &mut words);
                let mut s = String::new();
                let mut closed = false;
                while let Some(q) = chars.next() {
                    match q {
                        '"' => {
                            closed = true;
                            break;
                        }
                        '\\' => match chars.next() {
                            Some('"') => s.push('"'),
                            Some(o) => {
                                s.push('\\');
                                s.push(o);
                            }
                            None => s.push('\\'),
                        },
                        o => s.push(o),
                    }
                }
                if !closed {
                    return Err("unterminated quoted string: add the closing \"".into());
                }
                words.push((s, true));
            }
            c if c.is_whitespace() => flush(&mut cur, &mut words),
            c => cur.push(c),
        }
    }
    flush(&mut cur, &mut words);
    Ok(words)
}

/// `$NAME=...` (keepalived parameter definition).
fn is_param_def(t: &str) -> bool {
    t.strip_prefix('$').is_some_and(|r| {
        let name_end = r
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(r.len());
        name_end > 0 && r[name_end..].starts_with('=')
    })
}

/// Shell-style match of `*` and `?`.
fn wildcard(pattern: &[char], name: &[char]) -> bool {
    match pattern.split_first() {
        None => name.is_empty(),
        Some(('*', rest)) => (0..=name.len()).any(|i| wildcard(rest, &name[i..])),
        Some(('?', rest)) => !name.is_empty() && wildcard(rest, &name[1..]),
        Some((c, rest)) => name.first() == Some(c) && wildcard(rest, &name[1..]),
    }
}

const MAX_INCLUDE_DEPTH: usize = 16;

/// Collects files and warnings; makes errors.
struct Ctx {
    files: Vec<PathBuf>,
    warnings: Vec<(Loc, String)>,
}

impl Ctx {
    fn new(path: &Path) -> Self {
        Self {
            files: vec![path.to_owned()],
            warnings: Vec::new(),
        }
    }

    fn warn(&mut self, loc: Loc, message: impl Into<String>) {
        self.warnings.push((loc, message.into()));
    }

    fn err(&self, loc: Loc, field: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.files[loc.file].clone(),
            line: Some(loc.line),
            field: field.into(),
            message: message.into(),
        }
    }

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

    /// Words of `text` (file `file`), with `include`s expanded in place.
    fn tokenize(
        &mut self,
        text: &str,
        file: usize,
        depth: usize,
        out: &mut Vec<Tok>,
    ) -> Result<(), ConfigError> {
        for (n, raw) in text.lines().enumerate() {
            let loc = Loc { file, line: n + 1 };
            let t = raw.trim_start_matches('\u{feff}').trim_start();
            if t.starts_with('@') {
                self.warn(
                    loc,
                    "conditional configuration lines (`@ID ...`) are not supported, line ignored",
                );
                continue;
            }
            if is_param_def(t) {
                self.warn(
                    loc,
                    "parameter definitions (`$NAME=...`) are not supported, line ignored",
                );
                continue;
            }
            let words = split_line(raw).map_err(|m| self.err(loc, "", m))?;
            if words.first().is_some_and(|(w, q)| !q && w == "include") {
                self.include(&words, loc, depth, out)?;
                continue;
            }
            for (i, (text, quoted)) in words.into_iter().enumerate() {
                out.push(Tok {
                    text,
                    quoted,
                    loc,
                    first: i == 0,
                });
            }
        }
        Ok(())
    }

    fn include(
        &mut self,
        words: &[(String, bool)],
        loc: Loc,
        depth: usize,
        out: &mut Vec<Tok>,
    ) -> Result<(), ConfigError> {
        let Some((pattern, _)) = words.get(1) else {
            return Err(self.err(loc, "include", "needs a file name"));
        };
        if words.len() > 2 {
            self.warn(loc, "extra words after `include FILE` ignored");
        }
        if depth >= MAX_INCLUDE_DEPTH {
            return Err(self.err(
                loc,
                "include",
                format!(
                    "includes nest deeper than {MAX_INCLUDE_DEPTH}: does a file include itself?"
                ),
            ));
        }
        let base = self.files[loc.file]
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let full = base.join(pattern);
        let name = full
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let dir = full.parent().map(Path::to_path_buf).unwrap_or_default();
        let special = |s: &str| s.contains(['*', '?', '[', '{']);
        let paths = if special(&dir.to_string_lossy()) || name.contains(['[', '{']) {
            self.warn(
                loc,
                format!(
                    "include `{pattern}`: only `*` and `?` in the file name are supported, ignored"
                ),
            );
            Vec::new()
        } else if special(&name) {
            let pat: Vec<char> = name.chars().collect();
            let mut found: Vec<PathBuf> = std::fs::read_dir(&dir)
                .map(|rd| {
                    rd.filter_map(Result::ok)
                        .filter(|e| {
                            let n: Vec<char> = e.file_name().to_string_lossy().chars().collect();
                            wildcard(&pat, &n) && e.path().is_file()
                        })
                        .map(|e| e.path())
                        .collect()
                })
                .unwrap_or_default();
            found.sort();
            if found.is_empty() {
                self.warn(loc, format!("include `{pattern}` matches no file"));
            }
            found
        } else {
            vec![full]
        };
        for p in paths {
            let text = std::fs::read_to_string(&p).map_err(|e| {
                self.err(loc, "include", format!("cannot read {}: {e}", p.display()))
            })?;
            self.files.push(p);
            let idx = self.files.len() - 1;
            self.tokenize(&text, idx, depth + 1, out)?;
        }
        Ok(())
    }

    /// Nodes up to the `}` closing the block opened at `open` (or the end).
    fn nodes(
        &self,
        toks: &[Tok],
        pos: &mut usize,
        open: Option<Loc>,
    ) -> Result<Vec<Node>, ConfigError> {
        let mut nodes = Vec::new();
        loop {
            let Some(t) = toks.get(*pos) else {
                return match open {
                    None => Ok(nodes),
                    Some(loc) => Err(self.err(loc, "", "this `{` is never closed")),
                };
            };
            if t.is("}") {
                *pos += 1;
                return match open {
                    Some(_) => Ok(nodes),
                    None => Err(self.err(t.loc, "", "`}` closes no block")),
                };
            }
            if t.is("{") {
                return Err(self.err(t.loc, "", "`{` with no keyword before it"));
            }
            let key = t.clone();
            *pos += 1;
            let mut args = Vec::new();
            while let Some(a) = toks.get(*pos) {
                if a.first || a.is("{") || a.is("}") {
                    break;
                }
                args.push(a.clone());
                *pos += 1;
            }
            let block = match toks.get(*pos) {
                Some(b) if b.is("{") => {
                    let l = b.loc;
                    *pos += 1;
                    Some(self.nodes(toks, pos, Some(l))?)
                }
                _ => None,
            };
            nodes.push(Node { key, args, block });
        }
    }

    // --- values -----------------------------------------------------------

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

    fn ip(&mut self, n: &Node, field: &str) -> Result<IpAddr, ConfigError> {
        let v = self.value(n, field)?;
        v.text
            .parse()
            .map_err(|_| self.err(n.loc(), field, format!("{:?} is not an IP address", v.text)))
    }

    /// Seconds, fractions allowed (keepalived's unit for every time).
    fn secs(&mut self, n: &Node, field: &str) -> Result<Dur, ConfigError> {
        let v = self.value(n, field)?;
        let d = seconds(&v.text).map_err(|m| self.err(n.loc(), field, m))?;
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

    /// A keyword lb does not honour: a warning.
    fn ignored(&mut self, n: &Node, section: &str) {
        let kw = n.kw();
        let message = match why_ignored(kw) {
            Some(Why::NoEffect(reason)) => {
                format!("`{kw}` in {section} has no effect in lb ({reason}), ignored")
            }
            Some(Why::Unsupported(impact)) => {
                format!("unsupported keyword `{kw}` in {section}, ignored: {impact}")
            }
            None => format!("unsupported keyword `{kw}` in {section}, ignored"),
        };
        self.warn(n.loc(), message);
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
fn seconds(s: &str) -> Result<Duration, String> {
    let bad = || format!("{s:?} is not a time in seconds (\"1\", \"0.5\")");
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if int.is_empty() && frac.is_empty()
        || !int.chars().all(|c| c.is_ascii_digit())
        || !frac.chars().all(|c| c.is_ascii_digit())
    {
        return Err(bad());
    }
    let whole: u64 = if int.is_empty() {
        0
    } else {
        int.parse().map_err(|_| bad())?
    };
    let mut micros: u64 = 0;
    for c in frac.chars().chain(std::iter::repeat('0')).take(6) {
        micros = micros * 10 + u64::from(c.to_digit(10).unwrap_or(0));
    }
    Ok(Duration::from_secs(whole) + Duration::from_micros(micros))
}

enum Why {
    NoEffect(&'static str),
    Unsupported(&'static str),
}

fn why_ignored(kw: &str) -> Option<Why> {
    use Why::{NoEffect, Unsupported};
    Some(match kw {
        "notification_email"
        | "notification_email_from"
        | "smtp_server"
        | "smtp_connect_timeout"
        | "smtp_helo_name"
        | "smtp_alert"
        | "smtp_alert_vrrp"
        | "smtp_alert_checker"
        | "no_email_faults" => NoEffect("lb sends no e-mail"),
        "enable_script_security" => NoEffect(
            "lb does not check script paths; scripts run as lbd's user unless `user` is set",
        ),
        "max_auto_priority"
        | "vrrp_priority"
        | "checker_priority"
        | "bfd_priority"
        | "vrrp_no_swap"
        | "checker_no_swap"
        | "bfd_no_swap"
        | "vrrp_rt_priority"
        | "checker_rt_priority"
        | "bfd_rt_priority"
        | "vrrp_rlimit_rtime"
        | "checker_rlimit_rtime"
        | "bfd_rlimit_rtime"
        | "child_wait_time" => NoEffect("lbd's process scheduling is not configured here"),
        "snmp_socket"
        | "enable_snmp_keepalived"
        | "enable_snmp_checker"
        | "enable_snmp_rfc"
        | "enable_snmp_rfcv2"
        | "enable_snmp_rfcv3"
        | "enable_snmp_vrrp"
        | "enable_traps" => NoEffect("lb has no SNMP agent; see global.metrics_listen"),
        "enable_dbus" | "dbus_service_name" => NoEffect("lb has no D-Bus interface; use lbctl"),
        "debug" | "instance" | "use_pid_dir" | "linkbeat_use_polling" | "dynamic_interfaces" => {
            NoEffect("keepalived process option")
        }
        "lvs_flush" | "lvs_sync_daemon" | "lvs_timeouts" | "lvs_flush_onstop" => {
            NoEffect("lb does not use IPVS")
        }
        "vrrp_skip_check_adv_addr"
        | "skip_check_adv_addr"
        | "vrrp_check_unicast_src"
        | "vrrp_iptables"
        | "vrrp_ipsets"
        | "nftables" => NoEffect("keepalived-specific packet filtering and checks"),
        "native_ipv6" => NoEffect("the addresses decide the family"),
        "vrrp_strict" | "strict_mode" => {
            Unsupported("lb does not add keepalived's strict-mode firewall rules")
        }
        "vrrp_mcast_group4" | "vrrp_mcast_group6" => {
            Unsupported("lb sends to the standard groups 224.0.0.18 / ff02::12 (or unicast peers)")
        }
        "use_vmac" | "vmac_xmit_base" => {
            Unsupported("lb sends from the interface's own MAC address")
        }
        "vrrp_sync_group" => Unsupported("its instances fail over independently in lb"),
        "virtual_ipaddress_excluded" => {
            Unsupported("these addresses are not added or removed by lb")
        }
        "virtual_routes" | "virtual_rules" | "static_ipaddress" | "static_routes"
        | "static_rules" => Unsupported("lb manages no routes, rules or static addresses"),
        "track_file" | "track_bfd" | "track_process" | "vrrp_track_file" | "vrrp_track_process"
        | "bfd_instance" => {
            Unsupported("lb tracks scripts and interfaces only (use a vrrp_script)")
        }
        "net_namespace" => Unsupported("run lbd inside the namespace instead"),
        "sorry_server" | "sorry_server_inhibit" | "sorry_server_lvs_method" => {
            Unsupported("with no backend up, new flows follow on_no_backend (drop)")
        }
        "quorum" | "hysteresis" | "quorum_up" | "quorum_down" => {
            Unsupported("lb has no quorum for services")
        }
        "persistence_timeout" | "persistence_granularity" | "persistence_engine" => Unsupported(
            "established flows stay on their backend through the connection table; new connections are spread by Maglev hashing of the 5-tuple",
        ),
        "delay_before_retry" => Unsupported("lb retries a failed check after delay_loop"),
        "warmup" => Unsupported("lb starts every check at once"),
        "alpha" => Unsupported("lb starts every backend up, as keepalived without alpha"),
        "inhibit_on_failure" => {
            Unsupported("a failed backend leaves the pool; its established flows continue")
        }
        "virtualhost" => Unsupported("HTTP checks send the backend's address as Host"),
        "digest" => Unsupported("lb checks the status code only"),
        "notify_up" | "notify_down" | "uthreshold" | "lthreshold" => {
            Unsupported("lb has no per-backend hooks or connection limits")
        }
        _ => return None,
    })
}

// ---------------------------------------------------------------------------
// Where each item of the built configuration came from: for mapping lb's
// validation errors back to keepalived lines.

#[derive(Debug, Default)]
struct Origin {
    /// `vrrp_instance VI_1`, `virtual_server 10.0.0.3 80`, ...
    label: String,
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
    fn field(&mut self, lb: &'static str, n: &Node) {
        self.fields.insert(lb, (n.loc(), n.kw().to_owned()));
    }
}

#[derive(Debug, Default)]
struct SourceMap {
    vrrp_instance: Vec<Origin>,
    vrrp_script: Vec<Origin>,
    service: Vec<Origin>,
    dataplane: Option<Origin>,
}

impl SourceMap {
    /// lb's validation error on the built configuration → the keepalived
    /// line and keyword.
    fn translate(&self, ctx: &Ctx, e: ConfigError) -> ConfigError {
        let (table, index, field) = split_field(&e.field);
        let origin = match table {
            "vrrp_instance" => index.and_then(|i| self.vrrp_instance.get(i)),
            "vrrp_script" => index.and_then(|i| self.vrrp_script.get(i)),
            "service" => self.service.get(index.unwrap_or(0)),
            "dataplane" => self.dataplane.as_ref(),
            _ => None,
        };
        let Some(o) = origin else {
            return ConfigError {
                file: ctx.files[0].clone(),
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
            (Some((_, _, loc, kw)), _) => (*loc, kw.clone()),
            (None, Some((loc, kw))) => (*loc, kw.clone()),
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
            message: format!("{} (lb: {})", e.message, e.field),
        }
    }
}

/// `"vrrp_instance[2].priority"` → `("vrrp_instance", Some(2), "priority")`.
fn split_field(f: &str) -> (&str, Option<usize>, &str) {
    let (head, field) = f.split_once('.').unwrap_or((f, ""));
    match head.split_once('[') {
        Some((table, rest)) => (table, rest.trim_end_matches(']').parse().ok(), field),
        None => (head, None, field),
    }
}

// ---------------------------------------------------------------------------
// The conversion.

/// Instance defaults from `global_defs`.
#[derive(Debug, Default, Clone)]
struct Defaults {
    version: Option<u8>,
    garp_master_delay: Option<Dur>,
    garp_master_repeat: Option<u32>,
    garp_master_refresh: Option<Dur>,
    garp_master_refresh_repeat: Option<u32>,
    garp_interval: Option<Dur>,
    script_user: Option<String>,
}

fn build(ctx: &mut Ctx, text: &str) -> Result<(Config, SourceMap), ConfigError> {
    let mut toks = Vec::new();
    ctx.tokenize(text, 0, 0, &mut toks)?;
    let mut pos = 0;
    let tree = ctx.nodes(&toks, &mut pos, None)?;

    let mut config = Config::default();
    let mut map = SourceMap::default();
    let mut defaults = Defaults::default();
    for n in tree.iter().filter(|n| n.kw() == "global_defs") {
        global_defs(ctx, n, &mut config, &mut defaults)?;
    }
    let mut servers = Vec::new();
    for n in &tree {
        match n.kw() {
            "global_defs" => {}
            "vrrp_script" => {
                let (s, o) = vrrp_script(ctx, n, &defaults)?;
                config.vrrp_script.push(s);
                map.vrrp_script.push(o);
            }
            "vrrp_instance" => {
                let (v, o) = vrrp_instance(ctx, n, &defaults)?;
                config.vrrp_instance.push(v);
                map.vrrp_instance.push(o);
            }
            "virtual_server" => servers.push(n),
            "virtual_server_group" => {
                ctx.warn(
                    n.loc(),
                    "unsupported keyword `virtual_server_group`, ignored: write one virtual_server per VIP and port",
                );
            }
            _ => ctx.ignored(n, "the top level"),
        }
    }
    for n in servers {
        let (s, o) = virtual_server(ctx, n, &defaults)?;
        config.service.push(s);
        map.service.push(o);
    }
    if let Some(first) = config.service.first() {
        let holder = config
            .vrrp_instance
            .iter()
            .position(|v| {
                v.vips()
                    .is_ok_and(|vips| vips.iter().any(|a| a.addr == first.vip))
            })
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
        let mut dp: Dataplane = defaults_of(&format!("interface = {:?}", v.interface));
        dp.interface.clone_from(&v.interface);
        let o = &map.vrrp_instance[i];
        let mut origin = Origin::new(
            format!("{} (the data plane's interface)", o.label),
            o.header,
        );
        if let Some(f) = o.fields.get("interface") {
            origin.header = f.0;
        }
        for (n, s) in config.service.iter().enumerate().skip(1) {
            let other = config.vrrp_instance.iter().find(|v| {
                v.vips()
                    .is_ok_and(|vips| vips.iter().any(|a| a.addr == s.vip))
            });
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
        config.dataplane = Some(dp);
        map.dataplane = Some(origin);
    }
    Ok((config, map))
}

/// A value of type `T` from a TOML table: the schema's own defaults.
fn defaults_of<T: serde::de::DeserializeOwned>(toml_text: &str) -> T {
    toml::from_str(toml_text).expect("the schema's defaults parse")
}

fn global_defs(
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
                d.garp_master_repeat = Some(ctx.int(c, &field, "of at least 0")?)
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

/// The name after `vrrp_script` / `vrrp_instance`.
fn name_of(ctx: &Ctx, n: &Node) -> Result<String, ConfigError> {
    n.args
        .first()
        .map(|t| t.text.clone())
        .ok_or_else(|| ctx.err(n.loc(), n.kw(), format!("`{}` needs a name", n.kw())))
}

fn vrrp_script(ctx: &mut Ctx, n: &Node, d: &Defaults) -> Result<(VrrpScript, Origin), ConfigError> {
    let name = name_of(ctx, n)?;
    let sec = format!("vrrp_script {name}");
    let mut o = Origin::new(sec.clone(), n.loc());
    let mut s = VrrpScript {
        name,
        script: String::new(),
        interval: None,
        timeout: None,
        weight: 0,
        rise: 1,
        fall: 1,
        user: d.script_user.clone(),
        init_fail: false,
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

fn vrrp_instance(
    ctx: &mut Ctx,
    n: &Node,
    d: &Defaults,
) -> Result<(VrrpInstance, Origin), ConfigError> {
    let name = name_of(ctx, n)?;
    let sec = format!("vrrp_instance {name}");
    let mut o = Origin::new(sec.clone(), n.loc());
    let mut v = VrrpInstance {
        name,
        interface: String::new(),
        virtual_router_id: 0,
        priority: 100,
        advert_interval: Dur(Duration::from_secs(1)),
        version: 2,
        preempt: true,
        preempt_delay: None,
        auth_pass: None,
        virtual_ipaddress: Vec::new(),
        unicast_src_ip: None,
        unicast_peer: Vec::new(),
        track_script: Vec::new(),
        track_interface: Vec::new(),
        notify_master: None,
        notify_backup: None,
        notify_fault: None,
        notify_stop: None,
        notify: None,
        garp_master_delay: None,
        garp_master_repeat: None,
        garp_master_refresh: None,
        garp_master_refresh_repeat: None,
        garp_interval: None,
    };
    let mut interface = false;
    let mut vrid = false;
    let mut version: Option<u8> = None;
    let mut auth_type: Option<(String, Loc)> = None;
    let mut auth_pass: Option<(String, Loc)> = None;
    let mut devs: Vec<(String, Loc)> = Vec::new();
    for c in ctx.block(n, &sec)? {
        let field = format!("{sec} {}", c.kw());
        match c.kw() {
            "state" => {
                let s = ctx.value(c, &field)?;
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
                v.interface.clone_from(&ctx.value(c, &field)?.text);
                interface = true;
                o.field("interface", c);
            }
            "virtual_router_id" => {
                v.virtual_router_id = ctx.int(c, &field, "from 1 to 255")?;
                vrid = true;
                o.field("virtual_router_id", c);
            }
            "priority" => {
                v.priority = ctx.int(c, &field, "from 1 to 255")?;
                o.field("priority", c);
            }
            "advert_int" => {
                v.advert_interval = ctx.secs(c, &field)?;
                o.field("advert_interval", c);
            }
            "version" | "vrrp_version" => {
                version = Some(ctx.int(c, &field, "2 or 3")?);
                o.field("version", c);
            }
            "nopreempt" => {
                v.preempt = false;
                o.field("preempt", c);
            }
            "preempt" => v.preempt = true,
            "preempt_delay" => {
                v.preempt_delay = Some(ctx.secs(c, &field)?);
                o.field("preempt_delay", c);
            }
            "authentication" => {
                for a in ctx.block(c, &field)? {
                    let f = format!("{field} {}", a.kw());
                    match a.kw() {
                        "auth_type" => {
                            auth_type = Some((ctx.value(a, &f)?.text.clone(), a.loc()));
                        }
                        "auth_pass" => {
                            auth_pass = Some((ctx.value(a, &f)?.text.clone(), a.loc()));
                            o.field("auth_pass", a);
                        }
                        _ => ctx.ignored(a, &format!("{sec} authentication")),
                    }
                }
            }
            "virtual_ipaddress" => {
                o.field("virtual_ipaddress", c);
                for a in ctx.block(c, &field)? {
                    v.virtual_ipaddress.push(a.kw().to_owned());
                    o.items.push((
                        "virtual_ipaddress",
                        a.kw().to_owned(),
                        a.loc(),
                        "virtual_ipaddress".into(),
                    ));
                    let mut rest = a.args.iter();
                    let mut ignored = Vec::new();
                    while let Some(w) = rest.next() {
                        if w.is("dev") {
                            if let Some(dev) = rest.next() {
                                devs.push((dev.text.clone(), a.loc()));
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
            }
            "unicast_src_ip" | "mcast_src_ip" => {
                v.unicast_src_ip = Some(ctx.ip(c, &field)?);
                o.field("unicast_src_ip", c);
            }
            "unicast_peer" => {
                o.field("unicast_peer", c);
                for a in ctx.block(c, &field)? {
                    let ip: IpAddr = a.kw().parse().map_err(|_| {
                        ctx.err(
                            a.loc(),
                            &field,
                            format!("{:?} is not an IP address", a.kw()),
                        )
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
                    v.unicast_peer.push(ip);
                    o.items.push((
                        "unicast_peer",
                        ip.to_string(),
                        a.loc(),
                        "unicast_peer".into(),
                    ));
                }
            }
            "track_script" => {
                o.field("track_script", c);
                for a in ctx.block(c, &field)? {
                    let weight = track_weight(ctx, a, &field)?;
                    v.track_script.push(TrackScript {
                        name: a.kw().to_owned(),
                        weight,
                    });
                    o.items.push((
                        "track_script",
                        a.kw().to_owned(),
                        a.loc(),
                        "track_script".into(),
                    ));
                }
            }
            "track_interface" => {
                o.field("track_interface", c);
                for a in ctx.block(c, &field)? {
                    let weight = track_weight(ctx, a, &field)?;
                    v.track_interface.push(TrackInterface {
                        name: a.kw().to_owned(),
                        weight: weight.unwrap_or(0),
                    });
                }
            }
            "notify_master" | "notify_backup" | "notify_fault" | "notify_stop" | "notify" => {
                let Some(first) = c.args.first() else {
                    return Err(ctx.err(c.loc(), field, format!("`{}` needs a script", c.kw())));
                };
                let cmd = ctx.command(c, std::slice::from_ref(first));
                if c.args.len() > 1 {
                    ctx.warn(
                        c.loc(),
                        format!(
                            "the user `{}` of `{}` is ignored: lb runs notify scripts as its own user",
                            c.args[1..].iter().map(|t| t.text.as_str()).collect::<Vec<_>>().join(" "),
                            c.kw()
                        ),
                    );
                }
                let slot = match c.kw() {
                    "notify_master" => &mut v.notify_master,
                    "notify_backup" => &mut v.notify_backup,
                    "notify_fault" => &mut v.notify_fault,
                    "notify_stop" => &mut v.notify_stop,
                    _ => &mut v.notify,
                };
                *slot = Some(cmd);
            }
            "garp_master_delay" => v.garp_master_delay = Some(ctx.secs(c, &field)?),
            "garp_master_repeat" => {
                v.garp_master_repeat = Some(ctx.int(c, &field, "of at least 0")?)
            }
            "garp_master_refresh" => v.garp_master_refresh = Some(ctx.secs(c, &field)?),
            "garp_master_refresh_repeat" => {
                v.garp_master_refresh_repeat = Some(ctx.int(c, &field, "of at least 0")?);
            }
            "garp_interval" => v.garp_interval = Some(ctx.secs(c, &field)?),
            _ => ctx.ignored(c, &sec),
        }
    }
    if !interface {
        return Err(ctx.err(
            n.loc(),
            format!("{sec} interface"),
            "`interface` is required",
        ));
    }
    if !vrid {
        return Err(ctx.err(
            n.loc(),
            format!("{sec} virtual_router_id"),
            "`virtual_router_id` is required",
        ));
    }
    for (dev, loc) in devs {
        if dev != v.interface {
            ctx.warn(
                loc,
                format!(
                    "`dev {dev}` ignored: lb adds all of {sec}'s addresses on its interface {}",
                    v.interface
                ),
            );
        }
    }
    // keepalived: the instance's version; else 3 for IPv6 addresses; else
    // global_defs' vrrp_version; else 2.
    let v6 = v.virtual_ipaddress.first().is_some_and(|a| {
        a.split('/')
            .next()
            .and_then(|a| a.parse::<IpAddr>().ok())
            .is_some_and(|a| a.is_ipv6())
    });
    v.version = version
        .or(if v6 { Some(3) } else { None })
        .or(d.version)
        .unwrap_or(2);
    match (auth_type, auth_pass) {
        (None, None) => {}
        (None, Some((_, loc))) => ctx.warn(
            loc,
            "`auth_pass` without `auth_type PASS`: no authentication (as keepalived)",
        ),
        (Some((t, loc)), pass) => match t.as_str() {
            "PASS" if v.version == 3 => ctx.warn(
                loc,
                format!("authentication in {sec} ignored: VRRP version 3 has none (keepalived ignores it too)"),
            ),
            "PASS" => v.auth_pass = Some(pass.map(|p| p.0).unwrap_or_default()),
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
    v.garp_master_delay = v.garp_master_delay.or(d.garp_master_delay);
    v.garp_master_repeat = v.garp_master_repeat.or(d.garp_master_repeat);
    v.garp_master_refresh = v.garp_master_refresh.or(d.garp_master_refresh);
    v.garp_master_refresh_repeat = v
        .garp_master_refresh_repeat
        .or(d.garp_master_refresh_repeat);
    v.garp_interval = v.garp_interval.or(d.garp_interval);
    Ok((v, o))
}

/// `NAME [weight N]` of track_script / track_interface.
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

/// Check parameters a virtual server passes to its real servers and they to
/// their checkers.
#[derive(Debug, Clone, Default)]
struct Inherit {
    delay_loop: Option<Dur>,
    retry: Option<u32>,
    connect_timeout: Option<Dur>,
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
            "delay_before_retry" | "warmup" | "alpha" | "inhibit_on_failure" | "virtualhost"
            | "smtp_alert" => ctx.ignored(n, sec),
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

fn virtual_server(ctx: &mut Ctx, n: &Node, d: &Defaults) -> Result<(Service, Origin), ConfigError> {
    let header = n.words();
    let field0 = header.clone();
    let (vip, port) = match n.args.as_slice() {
        [kind, ..] if kind.is("fwmark") || kind.is("group") => {
            return Err(ctx.err(
                n.loc(),
                field0,
                format!(
                    "`virtual_server {} ...` is not supported: lb balances VIP PORT services, write one virtual_server per VIP and port",
                    kind.text
                ),
            ));
        }
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
            (vip, port)
        }
        _ => {
            return Err(ctx.err(n.loc(), field0, "write `virtual_server IP PORT { ... }`"));
        }
    };
    let sec = format!("virtual_server {vip} {port}");
    let mut o = Origin::new(sec.clone(), n.loc());
    let mut svc: Service = defaults_of(&format!("vip = \"{vip}\"\nport = {port}\nbackend = []"));
    let mut inherit = Inherit::default();
    let mut mode: Option<(Mode, Loc)> = None;
    let mut servers = Vec::new();
    for c in ctx.block(n, &sec)? {
        let field = format!("{sec} {}", c.kw());
        if inherit.take(ctx, c, &sec)? {
            continue;
        }
        match c.kw() {
            "lb_algo" | "lvs_sched" => {
                let s = ctx.value(c, &field)?.text.clone();
                o.field("scheduler", c);
                if s != "mh" {
                    ctx.warn(
                        c.loc(),
                        format!(
                            "notice: `{} {s}`: lb balances with Maglev consistent hashing of the flow (weighted), which {}",
                            c.kw(),
                            match s.as_str() {
                                "sh" | "dh" => "hashes the whole 5-tuple, not only the source or destination address",
                                "rr" | "wrr" => "spreads flows by hash, not in turn",
                                "lc" | "wlc" | "lblc" | "lblcr" | "sed" | "nq" => "does not count connections",
                                _ => "may differ from this scheduler",
                            }
                        ),
                    );
                }
            }
            "lb_kind" | "lvs_method" => {
                let m = lvs_method(ctx, c, &field)?;
                o.field("mode", c);
                mode = Some((m, c.loc()));
            }
            "protocol" => {
                let p = ctx.value(c, &field)?;
                svc.protocol = match p.text.to_ascii_uppercase().as_str() {
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
                o.field("protocol", c);
            }
            "real_server" => servers.push(c),
            _ => ctx.ignored(c, &sec),
        }
    }
    let mut checks: Vec<(Option<RsCheck>, String, Loc)> = Vec::new();
    for rs in servers {
        let (backend, check, rs_mode) = real_server(ctx, rs, &sec, port, &inherit, d)?;
        if let Some((m, loc)) = rs_mode {
            match &mode {
                Some((vm, _)) if *vm != m => {
                    return Err(ctx.err(
                        loc,
                        format!("{sec} real_server lvs_method"),
                        "lb forwards to all backends of a service the same way: use the virtual server's lb_kind",
                    ));
                }
                Some(_) => {}
                None => mode = Some((m, loc)),
            }
        }
        let label = format!(
            "real_server {} {}",
            backend.address,
            backend.port.unwrap_or(port)
        );
        if svc.backend.iter().any(|b| b.address == backend.address) {
            // "listed twice": point at the second one.
            o.items.retain(|i| i.1 != backend.address.to_string());
        }
        o.items.push((
            "backend",
            backend.address.to_string(),
            rs.loc(),
            label.clone(),
        ));
        svc.backend.push(BackendConfig {
            port: backend.port.filter(|&p| p != port),
            ..backend
        });
        checks.push((check, label, rs.loc()));
    }
    svc.mode = match mode {
        Some((m, _)) => m,
        None => {
            return Err(ctx.err(
                n.loc(),
                format!("{sec} lb_kind"),
                "no lb_kind: keepalived's default is NAT, which is not implemented: add `lb_kind DR` or `lb_kind TUN`",
            ));
        }
    };
    svc.scheduler = Scheduler::Maglev;
    // One health check for the service: every real server's must agree.
    let first = checks.first().cloned();
    if let Some((first_check, first_label, _)) = &first {
        for (check, label, loc) in &checks[1..] {
            let same = match (first_check, check) {
                (None, None) => true,
                (Some(a), Some(b)) => a.health == b.health,
                _ => false,
            };
            if !same {
                let what = |c: &Option<RsCheck>| {
                    c.as_ref()
                        .map_or_else(|| "no checker".to_owned(), |c| c.checker.clone())
                };
                let detail = match (first_check, check) {
                    (Some(a), Some(b)) if a.checker == b.checker => format!(
                        "{label}'s {} differs from {first_label}'s in {}",
                        b.checker,
                        health_diff(&a.health, &b.health)
                    ),
                    _ => format!(
                        "{label} has {}, {first_label} has {}",
                        what(check),
                        what(first_check)
                    ),
                };
                return Err(ctx.err(
                    check.as_ref().map_or(*loc, |c| c.loc),
                    format!("{sec} {label}"),
                    format!("lb checks all backends of a service the same way: {detail}"),
                ));
            }
        }
    }
    match first.and_then(|f| f.0) {
        Some(c) => {
            o.fields.insert("health", (c.loc, c.checker.clone()));
            svc.health = c.health;
        }
        None => {
            svc.health = Health {
                kind: HealthKind::None,
                interval: inherit.delay_loop.unwrap_or(Dur(Duration::from_secs(60))),
                ..Health::default()
            };
        }
    }
    Ok((svc, o))
}

fn lvs_method(ctx: &mut Ctx, c: &Node, field: &str) -> Result<Mode, ConfigError> {
    let m = ctx.value(c, field)?;
    match m.text.to_ascii_uppercase().as_str() {
        "DR" => Ok(Mode::Dsr),
        "TUN" => Ok(Mode::Ipip),
        "NAT" => Err(ctx.err(c.loc(), field, "NAT is not implemented: use DR or TUN")),
        _ => Err(ctx.err(
            c.loc(),
            field,
            format!(
                "{:?} is not a forwarding method: DR or TUN (NAT is not implemented)",
                m.text
            ),
        )),
    }
}

type RealServer = (BackendConfig, Option<RsCheck>, Option<(Mode, Loc)>);

fn real_server(
    ctx: &mut Ctx,
    n: &Node,
    vs: &str,
    vs_port: u16,
    inherit: &Inherit,
    d: &Defaults,
) -> Result<RealServer, ConfigError> {
    let field0 = format!("{vs} {}", n.words());
    let (address, port) = match n.args.as_slice() {
        [ip, rest @ ..] => {
            let address: IpAddr = ip.text.parse().map_err(|_| {
                ctx.err(
                    n.loc(),
                    &field0,
                    format!("{:?} is not an IP address", ip.text),
                )
            })?;
            let port = match rest.first() {
                Some(p) => Some(p.text.parse::<u16>().map_err(|_| {
                    ctx.err(n.loc(), &field0, format!("{:?} is not a port", p.text))
                })?),
                None => None,
            };
            (address, port)
        }
        [] => return Err(ctx.err(n.loc(), field0, "write `real_server IP PORT { ... }`")),
    };
    let sec = format!("{vs} {}", n.words());
    let mut backend = BackendConfig {
        address,
        port,
        weight: 1,
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
            "lvs_method" | "lb_kind" => mode = Some((lvs_method(ctx, c, &field)?, c.loc())),
            "TCP_CHECK" | "HTTP_GET" | "MISC_CHECK" => checkers.push(c),
            "SSL_GET" | "SMTP_CHECK" | "DNS_CHECK" | "BFD_CHECK" | "PING_CHECK" | "UDP_CHECK"
            | "FILE_CHECK" => ctx.warn(
                c.loc(),
                format!(
                    "unsupported checker `{}` in {sec}, ignored: lb checks with TCP_CHECK, HTTP_GET or MISC_CHECK",
                    c.kw()
                ),
            ),
            _ => ctx.ignored(c, &sec),
        }
    }
    if checkers.len() > 1 {
        return Err(ctx.err(
            checkers[1].loc(),
            format!("{sec} {}", checkers[1].kw()),
            format!(
                "lb runs one health check per backend: keep one of {}",
                checkers
                    .iter()
                    .map(|c| c.kw())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    let check = match checkers.first() {
        Some(c) => Some(checker(
            ctx,
            c,
            &sec,
            &inherit,
            address,
            port.unwrap_or(vs_port),
            d,
        )?),
        None => None,
    };
    Ok((backend, check, mode))
}

fn checker(
    ctx: &mut Ctx,
    n: &Node,
    rs: &str,
    inherit: &Inherit,
    address: IpAddr,
    rs_port: u16,
    d: &Defaults,
) -> Result<RsCheck, ConfigError> {
    let kind = n.kw().to_owned();
    let sec = format!("{rs} {kind}");
    let mut inherit = inherit.clone();
    let mut h = Health {
        kind: match kind.as_str() {
            "TCP_CHECK" => HealthKind::Tcp,
            "HTTP_GET" => HealthKind::Http,
            _ => HealthKind::Exec,
        },
        ..Health::default()
    };
    let mut connect_port = None;
    let mut misc_timeout = None;
    let mut url = false;
    let mut status = false;
    let mut user = d.script_user.clone();
    for c in n.block.as_deref().unwrap_or_default() {
        let field = format!("{sec} {}", c.kw());
        if inherit.take(ctx, c, &sec)? {
            continue;
        }
        match (kind.as_str(), c.kw()) {
            ("TCP_CHECK" | "HTTP_GET", "connect_port") => {
                connect_port = Some(ctx.int::<u16>(c, &field, "from 1 to 65535")?);
            }
            ("HTTP_GET", "url") => {
                if url {
                    ctx.warn(
                        c.loc(),
                        "this `url` is not checked: lb checks the first url of an HTTP_GET only",
                    );
                    continue;
                }
                url = true;
                for u in ctx.block(c, &field)? {
                    let f = format!("{field} {}", u.kw());
                    match u.kw() {
                        "path" => h.path.clone_from(&ctx.value(u, &f)?.text),
                        "status_code" => {
                            h.expect_status = ctx.int(u, &f, "(lb expects one status code)")?;
                            status = true;
                        }
                        _ => ctx.ignored(u, &format!("{sec} url")),
                    }
                }
                if !status {
                    ctx.warn(
                        c.loc(),
                        "notice: no status_code: keepalived accepts any 2xx, lb expects 200",
                    );
                }
            }
            ("MISC_CHECK", "misc_path") => {
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
                h.command = Some(with_backend);
            }
            ("MISC_CHECK", "misc_timeout") => misc_timeout = Some(ctx.secs(c, &field)?),
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
    h.interval = inherit.delay_loop.unwrap_or(Dur(Duration::from_secs(60)));
    h.timeout = if exec {
        misc_timeout.unwrap_or(h.interval)
    } else {
        inherit
            .connect_timeout
            .unwrap_or(Dur(Duration::from_secs(5)))
    };
    h.rise = 1;
    h.fall = inherit
        .retry
        .unwrap_or(if exec { 0 } else { 1 })
        .saturating_add(1);
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

/// Names of the fields where two checks differ (in keepalived terms).
fn health_diff(a: &Health, b: &Health) -> String {
    let mut d = Vec::new();
    if a.interval != b.interval {
        d.push("delay_loop");
    }
    if a.timeout != b.timeout {
        d.push("timeout");
    }
    if a.fall != b.fall {
        d.push("retry");
    }
    if a.path != b.path {
        d.push("url path");
    }
    if a.expect_status != b.expect_status {
        d.push("status_code");
    }
    if a.command != b.command {
        d.push("misc_path");
    }
    if a.user != b.user {
        d.push("user");
    }
    if a.port != b.port {
        d.push("connect_port");
    }
    d.join(", ")
}

/// `text` with `addr` replaced by `with` where it stands alone (not part
/// of a longer address or number).
fn replace_address(text: &str, addr: &str, with: &str) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

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
            .filter(|n| n.ends_with(".conf"))
            .collect();
        names.sort();
        assert!(names.len() >= 7, "{names:?}");
        for name in names {
            let path = Path::new(FIXTURES).join(&name);
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(looks_like_keepalived(&text), "{name}");
            let (c, w) = fixture(&name);
            if name.starts_with("seed_") {
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
            (h.kind, h.path.as_str(), h.expect_status),
            (HealthKind::Http, "/healthz", 204)
        );
        assert_eq!(
            h.interval.0,
            Duration::from_secs(60),
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

    #[test]
    fn checkers_must_agree() {
        let text = format!(
            "{VRRP}
virtual_server 198.18.0.100 80 {{
  lb_kind DR
  real_server 198.18.1.11 80 {{
    TCP_CHECK {{
    }}
  }}
  real_server 198.18.1.12 80 {{
    HTTP_GET {{
      url {{
        path /
        status_code 200
      }}
    }}
  }}
}}
"
        );
        let e = conv(&text).unwrap_err();
        assert!(
            e.starts_with("keepalived.conf:21: virtual_server 198.18.0.100 80 real_server 198.18.1.12 80: lb checks all backends of a service the same way"),
            "{e}"
        );
    }

    #[test]
    fn nat_is_an_error_with_its_line() {
        let text = format!(
            "{VRRP}
virtual_server 198.18.0.100 80 {{
  lb_kind NAT
  real_server 198.18.1.11 80 {{
  }}
}}
"
        );
        assert_eq!(
            conv(&text).unwrap_err(),
            "keepalived.conf:15: virtual_server 198.18.0.100 80 lb_kind: NAT is not implemented: use DR or TUN"
        );
        let text = format!("{VRRP}\nvirtual_server 198.18.0.100 80 {{\n}}\n");
        let e = conv(&text).unwrap_err();
        assert!(e.starts_with("keepalived.conf:14: "), "{e}");
        assert!(e.contains("keepalived's default is NAT"), "{e}");
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
                "keepalived.conf:15: virtual_server 198.18.0.100 80 lb_kind: \"FOO\" is not a forwarding method: DR or TUN (NAT is not implemented)",
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
            e.starts_with("keepalived.conf:9: vrrp_instance VI_1 advert_int: 500ms is not allowed: whole seconds"),
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
        let (c, w) =
            conv(&VRRP.replace("  priority 150\n", &format!("  version 3\n{auth}"))).unwrap();
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
}
