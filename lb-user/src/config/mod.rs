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
//! Files: `model` (the serde types, with constructors that give serde's
//! defaults, and the value syntaxes, re-exported here), `validate` (the
//! checks serde cannot do), `spans` (the lines of errors, from the TOML
//! parser's spans), `error` ([`ConfigError`] and [`ValueError`]); here:
//! reading a file, and writing one ([`Config::to_toml`]).

mod error;
pub mod keepalived;
mod model;
mod spans;
#[cfg(test)]
mod tests;
mod validate;

use std::path::Path;

pub use error::{ConfigError, ValueError};
pub use model::{
    Announce, BackendConfig, BackendsFrom, Bgp, Config, Dataplane, Dur, Global, Health, HealthKind,
    Mode, Nat, NoBackend, ParamMatch, Protocol, Quorum, Scheduler, Service, SorryServer, Speaker,
    Statuses, Sync, TrackInterface, TrackScript, Url, VrrpInstance, VrrpScript, VrrpSyncGroup,
    VrrpTrackFile, VrrpTrackProcess, XdpMode, check_backend_pairs, check_flow_entries,
    format_duration, parse_cidr, parse_duration, parse_port_range,
};
use spans::{Spans, line_of};
pub(crate) use validate::Invalid;
pub use validate::etcd_url_problem;

impl Config {
    /// The file's JSON Schema (draft 2020-12), from the serde types and
    /// their doc comments: what `lbd config-schema` prints, for editors
    /// (taplo's `#:schema` directive, VS Code's Even Better TOML), and
    /// what lb.toml(5) is made from. It describes the syntax; the checks
    /// serde cannot express (`validate`) are `lbd check-config`'s.
    #[must_use]
    pub fn schema() -> schemars::Schema {
        schemars::schema_for!(Config)
    }

    /// Read and validate `path`.
    ///
    /// # Errors
    /// The file cannot be read, is not valid TOML for this schema, or fails
    /// validation.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::unreadable(path, &e))?;
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
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::unreadable(path, &e))?;
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
            let pos = e.span().map(|s| s.start);
            ConfigError {
                file: path.to_owned(),
                line: pos.map(|pos| line_of(text, pos)),
                field: pos
                    .and_then(|pos| Spans::parse(text)?.keyword_field_at(pos))
                    .map(|f| f.to_string())
                    .unwrap_or_default(),
                message: e.message().trim().to_owned(),
            }
        })?;
        config.validate().map_err(|e| {
            let line = Spans::parse(text).and_then(|s| s.line(&e.at));
            e.into_error(path, line)
        })?;
        Ok(config)
    }

    /// The configuration as lb's TOML, which reads back as the same value:
    /// [`keepalived::to_toml`], the writer of `lbctl convert`.
    ///
    /// # Errors
    /// [`ValueError::ToToml`] (a bug).
    pub fn to_toml(&self) -> Result<String, ValueError> {
        keepalived::to_toml(self)
    }
}
