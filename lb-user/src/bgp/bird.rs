//! bird2's control socket (what `birdc` speaks): lbd checks at start that
//! the speaker answers and has BGP sessions, and then polls their states.
//!
//! The protocol: bird greets with `0001 BIRD 2.0.12 ready.`; each
//! command's reply is lines that begin with a four-digit code and a `-`
//! (more follows) or a space (the reply's last line); a line beginning
//! with a space continues the previous code. Codes from 8000 are errors.

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::UnixStream;

/// How long a connect or a command may take.
const TIMEOUT: Duration = Duration::from_secs(2);

/// Why bird could not be asked.
#[derive(Debug, thiserror::Error)]
pub enum BirdError {
    /// The socket could not be opened.
    #[error("cannot connect to bird's control socket {path}: {source}")]
    Connect {
        /// The socket.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Reading or writing failed.
    #[error("bird's control socket: {0}")]
    Io(#[from] std::io::Error),
    /// No answer in time.
    #[error("bird did not answer within {TIMEOUT:?}")]
    Timeout,
    /// Something else than bird answered.
    #[error("not bird's control socket: it greeted with {0:?}")]
    NotBird(String),
    /// bird refused the command.
    #[error("bird refused {command:?}: {reply}")]
    Refused {
        /// The command.
        command: String,
        /// bird's error line.
        reply: String,
    },
}

/// A BGP session as `show protocols` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// The protocol's name in bird's configuration.
    pub name: String,
    /// `up`, `start`, `down`, ...
    pub state: String,
    /// BGP state and last error: `Established`, `Active Socket: ...`.
    pub info: String,
}

impl Session {
    /// The session is up: bird exports routes over it.
    #[must_use]
    pub fn established(&self) -> bool {
        self.state == "up"
    }
}

/// A connection to bird's control socket.
#[derive(Debug)]
pub struct Bird {
    stream: BufReader<UnixStream>,
    /// `BIRD 2.0.12`, from the greeting.
    pub version: String,
}

impl Bird {
    /// Connect to the socket at `path` and read bird's greeting.
    ///
    /// # Errors
    /// [`BirdError`]: no socket, no answer, or not bird.
    pub async fn connect(path: &Path) -> Result<Self, BirdError> {
        let stream = tokio::time::timeout(TIMEOUT, UnixStream::connect(path))
            .await
            .map_err(|_| BirdError::Timeout)?
            .map_err(|source| BirdError::Connect {
                path: path.display().to_string(),
                source,
            })?;
        let mut stream = BufReader::new(stream);
        let mut greeting = String::new();
        tokio::time::timeout(TIMEOUT, stream.read_line(&mut greeting))
            .await
            .map_err(|_| BirdError::Timeout)??;
        let version = parse_greeting(&greeting)
            .ok_or_else(|| BirdError::NotBird(greeting.trim_end().to_owned()))?;
        Ok(Self { stream, version })
    }

    /// Send `command`, return its reply's lines (codes kept).
    ///
    /// # Errors
    /// [`BirdError`]: the socket failed, bird was silent, or refused.
    pub async fn command(&mut self, command: &str) -> Result<Vec<String>, BirdError> {
        tokio::time::timeout(TIMEOUT, self.exchange(command))
            .await
            .map_err(|_| BirdError::Timeout)?
    }

    async fn exchange(&mut self, command: &str) -> Result<Vec<String>, BirdError> {
        let stream = self.stream.get_mut();
        stream.write_all(format!("{command}\n").as_bytes()).await?;
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            if self.stream.read_line(&mut line).await? == 0 {
                return Err(BirdError::Io(std::io::ErrorKind::UnexpectedEof.into()));
            }
            let line = line.trim_end_matches('\n').to_owned();
            let last = is_last(&line);
            lines.push(line);
            if last {
                break;
            }
        }
        let end = lines.last().map(String::as_str).unwrap_or_default();
        if end
            .get(..4)
            .and_then(|c| c.parse::<u16>().ok())
            .is_some_and(|c| c >= 8000)
        {
            return Err(BirdError::Refused {
                command: command.to_owned(),
                reply: end.to_owned(),
            });
        }
        Ok(lines)
    }

    /// The BGP sessions `show protocols` lists.
    ///
    /// # Errors
    /// [`BirdError`].
    pub async fn sessions(&mut self) -> Result<Vec<Session>, BirdError> {
        Ok(parse_sessions(&self.command("show protocols").await?))
    }
}

/// `BIRD 2.0.12` from `0001 BIRD 2.0.12 ready.`.
fn parse_greeting(line: &str) -> Option<String> {
    let rest = line.trim_end().strip_prefix("0001 ")?;
    let version = rest.strip_suffix(" ready.")?;
    version.starts_with("BIRD").then(|| version.to_owned())
}

/// A reply's last line: a code and a space.
fn is_last(line: &str) -> bool {
    let b = line.as_bytes();
    b.len() >= 5 && b[..4].iter().all(u8::is_ascii_digit) && b[4] == b' '
}

/// The BGP protocols of a `show protocols` reply: rows of name, protocol,
/// table, state, since, info (the rest of the line).
fn parse_sessions(lines: &[String]) -> Vec<Session> {
    lines
        .iter()
        .filter_map(|line| {
            // A row is code 1002 (first) or a continuation (a space).
            let row = line
                .strip_prefix("1002-")
                .or_else(|| line.strip_prefix(' '))?;
            let mut cols = row.split_whitespace();
            let name = cols.next()?;
            if cols.next()? != "BGP" {
                return None;
            }
            let _table = cols.next()?;
            let state = cols.next()?;
            let _since = cols.next();
            Some(Session {
                name: name.to_owned(),
                state: state.to_owned(),
                info: cols.collect::<Vec<_>>().join(" "),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> Vec<String> {
        text.lines().map(str::to_owned).collect()
    }

    #[test]
    fn greeting_names_the_version() {
        assert_eq!(
            parse_greeting("0001 BIRD 2.0.12 ready.\n").as_deref(),
            Some("BIRD 2.0.12")
        );
        assert_eq!(parse_greeting("220 smtp ready\n"), None);
        assert_eq!(parse_greeting("0001 BIRD 2.0.12"), None);
    }

    #[test]
    fn the_last_line_has_a_code_and_a_space() {
        assert!(is_last("0000 "));
        assert!(is_last("0013 Daemon is up and running"));
        assert!(!is_last("1002-device1    Device"));
        assert!(!is_last(" uplink     BGP"));
        assert!(!is_last("0000"));
    }

    /// Text captured from bird 2.0.12.
    #[test]
    fn sessions_are_the_bgp_rows() {
        let reply = lines(concat!(
            "2002-Name       Proto      Table      State  Since         Info\n",
            "1002-device1    Device     ---        up     14:55:12.309  \n",
            " kvips      Kernel     vips       up     14:55:12.309  \n",
            " uplink     BGP        ---        up     14:55:14.001  Established   \n",
            " backup     BGP        ---        start  2026-12-01    Active        Socket: Connection refused\n",
            "0000 \n",
        ));
        assert_eq!(
            parse_sessions(&reply),
            [
                Session {
                    name: "uplink".into(),
                    state: "up".into(),
                    info: "Established".into()
                },
                Session {
                    name: "backup".into(),
                    state: "start".into(),
                    info: "Active Socket: Connection refused".into()
                },
            ]
        );
        assert!(parse_sessions(&reply)[0].established());
        assert!(!parse_sessions(&reply)[1].established());
    }
}
