//! `lbd --config FILE`: the TOML configuration, and [`keepalived`]'s
//! keepalived.conf reader that produces the same [`Config`].
//!
//! Field names follow keepalived's keywords where one exists;
//! `examples/lb.toml` documents every field with its default and
//! unit. Unknown fields are errors. Every error names the file, the line
//! and the field, and says what is allowed.
//!
//! Durations are strings with a unit: `"1s"`, `"100ms"`, `"1.5s"`, `"2m"`.
//!
//! Fields that take one of a few words are enums, read once here
//! ([`Protocol`], [`Mode`], [`Scheduler`], [`NoBackend`], [`HealthKind`],
//! [`XdpMode`]); the data plane's own types come from them by total
//! `From` conversions. A word not allowed is refused while the file is
//! read, naming the file, line and field like every validation error.
//!
//! Files: `model` (the serde types and value syntaxes, re-exported here),
//! `validate` (the checks serde cannot do); here: reading a file, and
//! [`ConfigError`].

pub mod keepalived;
mod model;
#[cfg(test)]
mod tests;
mod validate;

use std::fmt;
use std::path::{Path, PathBuf};

pub use model::{
    BackendConfig, Config, Dataplane, Dur, Global, Health, HealthKind, Mode, NoBackend, Protocol,
    Scheduler, Service, TrackInterface, TrackScript, VrrpInstance, VrrpScript, XdpMode,
    check_flow_entries, format_duration, parse_cidr, parse_duration,
};
pub(crate) use validate::Invalid;

/// A configuration error: where and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file.
    pub file: PathBuf,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// Dotted path of the field (`vrrp_instance[0].priority`).
    pub field: String,
    /// What is wrong and what is allowed.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if self.field.is_empty() {
            write!(f, ": {}", self.message)
        } else {
            write!(f, ": {}: {}", self.field, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Read and validate `path`.
    ///
    /// # Errors
    /// The file cannot be read, is not valid TOML for this schema, or fails
    /// validation.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.to_owned(),
            line: None,
            field: String::new(),
            message: format!("cannot read: {e}"),
        })?;
        Self::parse(&text, path)
    }

    /// Read and validate `path`, either lb's TOML or a keepalived.conf
    /// (told apart by [`crate::config::keepalived::looks_like_keepalived`]); the
    /// second value is the keepalived conversion's warnings (`FILE:LINE:
    /// message`), none for TOML.
    ///
    /// # Errors
    /// As [`Config::load`] and [`crate::config::keepalived::parse`].
    pub fn load_any(path: &Path) -> Result<(Config, Vec<String>), ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.to_owned(),
            line: None,
            field: String::new(),
            message: format!("cannot read: {e}"),
        })?;
        if crate::config::keepalived::looks_like_keepalived(&text) {
            let (config, warnings) = crate::config::keepalived::parse(&text, path)?;
            Ok((config, warnings.iter().map(ToString::to_string).collect()))
        } else {
            Ok((Self::parse(&text, path)?, Vec::new()))
        }
    }

    /// Parse and validate `text` (from `path`, for messages).
    ///
    /// # Errors
    /// Not valid TOML for this schema, or fails validation.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| line_of(text, s.start));
            ConfigError {
                file: path.to_owned(),
                line,
                field: e
                    .span()
                    .and_then(|s| keyword_field_at(text, s.start))
                    .unwrap_or_default(),
                message: e.message().trim().to_owned(),
            }
        })?;
        config.validate().map_err(|e| {
            let line = locate(text, e.at.table, e.at.index.unwrap_or(0), e.at.field);
            e.into_error(path, line)
        })?;
        Ok(config)
    }
}

/// 1-based line of byte offset `pos`.
fn line_of(text: &str, pos: usize) -> usize {
    text[..pos.min(text.len())].matches('\n').count() + 1
}

/// The keyword field (a [`Protocol`], [`Mode`], [`Scheduler`],
/// [`NoBackend`], [`HealthKind`] or [`XdpMode`]) whose value starts at byte
/// `pos` of `text`, named as validation names fields: `service[1].mode`,
/// `service[0].health` (for its `kind`), `dataplane.xdp_mode`. `None` for
/// any other position: other deserialization errors keep naming only the
/// line.
fn keyword_field_at(text: &str, pos: usize) -> Option<String> {
    let pos = pos.min(text.len());
    // `KEY = ` right before the value, on its line.
    let before = text[..pos].trim_end_matches([' ', '\t']);
    let before = before.strip_suffix('=')?.trim_end_matches([' ', '\t']);
    let key_start = before
        .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
        .map_or(0, |i| i + 1);
    let key = &before[key_start..];
    // The table the value is in, and how many `[[service]]`s precede it.
    let mut table = "";
    let mut services = 0usize;
    for line in text[..pos].lines() {
        let t = line.trim();
        if !t.starts_with('[') {
            continue;
        }
        let array = t.starts_with("[[");
        let name = t.trim_start_matches('[');
        let name = name.split(']').next().unwrap_or_default().trim();
        if array && name == "service" {
            services += 1;
        }
        table = name;
    }
    let service = services.checked_sub(1);
    match (table, key) {
        ("service", "protocol" | "mode" | "scheduler" | "on_no_backend") => {
            Some(format!("service[{}].{key}", service?))
        }
        ("service" | "service.health", "kind") => Some(format!("service[{}].health", service?)),
        ("dataplane", "xdp_mode") => Some("dataplane.xdp_mode".into()),
        _ => None,
    }
}

/// Best-effort line of `field` in the `index`-th `[[table]]` (or `[table]`)
/// of `text`: the table's header line when the field is not written there
/// (a default that fails validation).
fn locate(text: &str, table: &str, index: usize, field: &str) -> Option<usize> {
    let array = format!("[[{table}]]");
    let single = format!("[{table}]");
    let mut seen = 0;
    let mut in_table = false;
    let mut header = None;
    for (n, line) in text.lines().enumerate() {
        let t = line.trim();
        if t.starts_with('[') {
            if in_table {
                return header;
            }
            if t == array || t == single {
                if seen == index {
                    in_table = true;
                    header = Some(n + 1);
                }
                seen += 1;
            }
            continue;
        }
        if in_table
            && let Some((key, _)) = t.split_once('=')
            && key.trim() == field
        {
            return Some(n + 1);
        }
    }
    header
}
