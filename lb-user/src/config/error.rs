//! config's errors: [`ConfigError`] (a file's: where and what) and
//! [`ValueError`] (a value's: what is wrong with it and what is allowed,
//! the message a [`ConfigError`] carries).

use std::fmt;
use std::net::AddrParseError;
use std::num::{ParseFloatError, ParseIntError};
use std::path::{Path, PathBuf};
use std::time::TryFromFloatSecsError;

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

impl ConfigError {
    /// `path` cannot be read.
    pub(crate) fn unreadable(path: &Path, e: &std::io::Error) -> Self {
        Self {
            file: path.to_owned(),
            line: None,
            field: String::new(),
            message: format!("cannot read: {e}"),
        }
    }
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

/// A value that does not parse or is not allowed: the error of config's
/// value parsers (durations, `ADDR/PREFIX`, VIP lists, keyword spellings,
/// flow-table sizes) and of keepalived's reader. The text says what is
/// wrong and what is allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    /// [`super::parse_cidr`]: not an address.
    #[error("{input:?} is not ADDRESS/PREFIX")]
    NotCidr {
        /// The text.
        input: String,
        /// Why the address does not parse.
        #[source]
        source: AddrParseError,
    },
    /// A prefix length too long for the address's family (or not a
    /// number).
    #[error("{input:?}: prefix length must be 0..={max}")]
    PrefixLength {
        /// The `ADDR/PREFIX` text.
        input: String,
        /// 32 or 128.
        max: u8,
    },
    /// [`super::check_flow_entries`]: too few.
    #[error("{entries} is too small: at least {min}")]
    TooFewFlows {
        /// The size asked for.
        entries: u32,
        /// The smallest allowed.
        min: u32,
    },
    /// [`super::check_flow_entries`]: too many.
    #[error("{entries} is too large: at most {max} (72 bytes per flow)")]
    TooManyFlows {
        /// The size asked for.
        entries: u32,
        /// The largest allowed.
        max: u32,
    },
    /// [`super::check_backend_pairs`]: out of range.
    #[error("{pairs} is out of range: {min} to {max} (48 bytes each, plus 48 per CPU)")]
    BackendPairs {
        /// The number asked for.
        pairs: u32,
        /// The smallest allowed.
        min: u32,
        /// The largest allowed.
        max: u32,
    },
    /// [`super::parse_duration`]: no unit, or one it does not know.
    #[error(
        "invalid duration {input:?}: write a number with a unit: ms, s, m or h (\"1s\", \"100ms\")"
    )]
    DurationUnit {
        /// The text.
        input: String,
    },
    /// [`super::parse_duration`]: the number before the unit.
    #[error("invalid duration {input:?}: {number:?} is not a number")]
    DurationNumber {
        /// The text.
        input: String,
        /// Its number part.
        number: String,
        /// Why it does not parse.
        #[source]
        source: ParseFloatError,
    },
    /// [`super::parse_duration`]: too long for a duration.
    #[error("invalid duration {input:?}")]
    DurationRange {
        /// The text.
        input: String,
        /// Why it is not a duration.
        #[source]
        source: TryFromFloatSecsError,
    },
    /// [`super::VrrpInstance::vips`]: not an address.
    #[error("{input:?} is not an address: write \"198.18.0.100/24\" or \"2001:db8::100/64\"")]
    NotAVip {
        /// The entry.
        input: String,
        /// Why the address does not parse.
        #[source]
        source: AddrParseError,
    },
    /// [`super::VrrpInstance::vips`]: IPv4 and IPv6 in one instance.
    #[error("{input:?}: an instance's addresses must all be IPv4 or all IPv6 (use two instances)")]
    MixedVipFamilies {
        /// The first entry of the other family.
        input: String,
    },
    /// [`super::VrrpInstance::vips`]: an address twice.
    #[error("{input:?} is listed twice")]
    VipTwice {
        /// The second entry.
        input: String,
    },
    /// A keyword field's value that is not one of its words.
    #[error("{value:?} is not a {what}: {}", one_of(allowed))]
    NotA {
        /// The value.
        value: String,
        /// What the field names (`protocol`, `mode`, ...).
        what: &'static str,
        /// The words allowed.
        allowed: &'static [&'static str],
    },
    /// `on_no_backend`'s value that is not one of its words.
    #[error("{value:?}: {}", one_of(allowed))]
    NotOneOf {
        /// The value.
        value: String,
        /// The words allowed.
        allowed: &'static [&'static str],
    },
    /// A health check `kind` that is not one of its words.
    #[error("kind {value:?}: {}", one_of(allowed))]
    NotAHealthKind {
        /// The value.
        value: String,
        /// The words allowed.
        allowed: &'static [&'static str],
    },
    /// keepalived: a time that is not seconds.
    #[error("{input:?} is not a time in seconds (\"1\", \"0.5\")")]
    NotSeconds {
        /// The text.
        input: String,
        /// Why its whole seconds do not parse, when they are digits.
        #[source]
        source: Option<ParseIntError>,
    },
    /// keepalived: a `"` not closed on its line.
    #[error("unterminated quoted string: add the closing \"")]
    UnterminatedQuote,
    /// [`super::Config::to_toml`]: `toml` refused (a bug).
    #[error("cannot write the configuration as TOML: {source}")]
    ToToml {
        /// `toml`'s error.
        #[source]
        source: toml::ser::Error,
    },
}

/// `a`, `a or b`, `a, b or c`.
fn one_of(words: &[&str]) -> String {
    match words {
        [] => String::new(),
        [one] => (*one).to_owned(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}
