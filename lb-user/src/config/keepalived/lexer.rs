//! keepalived.conf text → words → a tree of [`Node`]s: comments, quoted
//! strings, `include` (with `*` and `?` in file names), and the `@ID` /
//! `$NAME=` lines that are reported and skipped.

use std::path::{Path, PathBuf};

use super::{Ctx, Includes};
use crate::config::{ConfigError, ValueError};

/// Where a token is: file index (into `Ctx::files`) and 1-based line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) struct Loc {
    pub(super) file: usize,
    pub(super) line: usize,
}

/// A word of the file.
#[derive(Debug, Clone)]
pub(super) struct Tok {
    pub(super) text: String,
    /// Written in double quotes (so never a keyword or brace).
    pub(super) quoted: bool,
    pub(super) loc: Loc,
    /// First word of its line.
    first: bool,
}

impl Tok {
    /// The unquoted word `s`.
    pub(super) fn is(&self, s: &str) -> bool {
        !self.quoted && self.text == s
    }
}

/// `KEYWORD ARGS... [{ CHILDREN }]`.
#[derive(Debug)]
pub(super) struct Node {
    pub(super) key: Tok,
    pub(super) args: Vec<Tok>,
    pub(super) block: Option<Vec<Node>>,
}

impl Node {
    /// The keyword.
    pub(super) fn kw(&self) -> &str {
        &self.key.text
    }
    /// Where the keyword is.
    pub(super) fn loc(&self) -> Loc {
        self.key.loc
    }
    /// The keyword and its arguments, as written (for messages).
    pub(super) fn words(&self) -> String {
        std::iter::once(&self.key)
            .chain(&self.args)
            .map(|t| t.text.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Split one line into words: `(text, quoted)`.
pub(super) fn split_line(line: &str) -> Result<Vec<(String, bool)>, ValueError> {
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
                    return Err(ValueError::UnterminatedQuote);
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
pub(super) fn wildcard(pattern: &[char], name: &[char]) -> bool {
    match pattern.split_first() {
        None => name.is_empty(),
        Some(('*', rest)) => (0..=name.len()).any(|i| wildcard(rest, &name[i..])),
        Some(('?', rest)) => !name.is_empty() && wildcard(rest, &name[1..]),
        Some((c, rest)) => name.first() == Some(c) && wildcard(rest, &name[1..]),
    }
}

const MAX_INCLUDE_DEPTH: usize = 16;

impl Includes {
    /// The text of the file `path`.
    fn read(&self, path: &Path) -> std::io::Result<String> {
        match self {
            Self::Disk => std::fs::read_to_string(path),
            Self::Memory(files) => files
                .iter()
                .find(|(p, _)| p == path)
                .map(|(_, text)| text.clone())
                .ok_or_else(|| std::io::ErrorKind::NotFound.into()),
        }
    }

    /// The files (not directories) in `dir`; none when it cannot be read.
    fn files_in(&self, dir: &Path) -> Vec<PathBuf> {
        match self {
            Self::Disk => std::fs::read_dir(dir)
                .map(|rd| {
                    rd.filter_map(Result::ok)
                        .map(|e| e.path())
                        .filter(|p| p.is_file())
                        .collect()
                })
                .unwrap_or_default(),
            Self::Memory(files) => files
                .iter()
                .filter(|(p, _)| p.parent() == Some(dir))
                .map(|(p, _)| p.clone())
                .collect(),
        }
    }
}

impl Ctx {
    /// The tree of the file `text` (the main one, `ctx.files[0]`), with
    /// `include`s expanded in place.
    pub(super) fn parse_tree(&mut self, text: &str) -> Result<Vec<Node>, ConfigError> {
        let mut toks = Vec::new();
        self.tokenize(text, 0, 0, &mut toks)?;
        let mut pos = 0;
        self.nodes(&toks, &mut pos, None)
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
            let words = split_line(raw).map_err(|e| self.err(loc, "", e.to_string()))?;
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

    /// `include PATTERN` (`words`, at `loc`): the files' words in place.
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
        for p in self.include_paths(pattern, loc) {
            let text = self.includes.read(&p).map_err(|e| {
                self.err(loc, "include", format!("cannot read {}: {e}", p.display()))
            })?;
            self.files.push(p);
            let idx = self.files.len() - 1;
            self.tokenize(&text, idx, depth + 1, out)?;
        }
        Ok(())
    }

    /// The files `include PATTERN` (at `loc`) names, relative to the
    /// including file; a warning for patterns not supported or matching
    /// nothing.
    fn include_paths(&mut self, pattern: &str, loc: Loc) -> Vec<PathBuf> {
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
        if special(&dir.to_string_lossy()) || name.contains(['[', '{']) {
            self.warn(
                loc,
                format!(
                    "include `{pattern}`: only `*` and `?` in the file name are supported, ignored"
                ),
            );
            Vec::new()
        } else if special(&name) {
            let pat: Vec<char> = name.chars().collect();
            let mut found: Vec<PathBuf> = self
                .includes
                .files_in(&dir)
                .into_iter()
                .filter(|p| {
                    let n: Vec<char> = p
                        .file_name()
                        .map(|n| n.to_string_lossy().chars().collect())
                        .unwrap_or_default();
                    wildcard(&pat, &n)
                })
                .collect();
            found.sort();
            if found.is_empty() {
                self.warn(loc, format!("include `{pattern}` matches no file"));
            }
            found
        } else {
            vec![full]
        }
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
}
