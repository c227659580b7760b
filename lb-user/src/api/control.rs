//! The control API: JSON over a root-only Unix socket.
//!
//! One request per connection: the client writes one JSON object and a
//! newline, lbd answers with one JSON object and closes. The socket file is
//! mode 0600 in a 0700 directory (default `/run/lb/lbd.sock`); there is no
//! network listener.
//!
//! Clients cannot stall or flood lbd ([`Limits`]): at most 64 connections
//! are served at once (the next is told so and closed), a request must
//! arrive whole within 5 s and be at most 64 KiB, an answer must be taken
//! within 10 s; every malformed, oversized, late or surplus request gets
//! an error answer when the client is still there to read it. Each
//! connection is its own task: lbd's event loop only ever sees whole,
//! parsed requests.
//!
//! ```text
//! {"command":"status"}
//! {"command":"drain","service":"198.18.0.100:80","backend":"198.18.0.11"}
//! -> {"ok":true,"data":...}   or   {"ok":false,"error":"no service ..."}
//! ```

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};
use tracing::warn;

use crate::dataplane::balancer::{Protocol, ServiceKey};
use crate::dataplane::stats::FlowTableUsage;
pub use crate::services::controller::{BackendStatus, ServiceStatus, ServiceTraffic, Traffic};
pub use crate::vrrp::driver::InstanceStatus;

/// Default socket path.
pub const DEFAULT_SOCKET: &str = "/run/lb/lbd.sock";

/// A request to lbd.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum Request {
    /// Daemon overview.
    Status,
    /// Services with their state.
    Services,
    /// Backends of every service.
    Backends,
    /// VRRP instances.
    Vrrp,
    /// Traffic counters.
    Stats,
    /// Drain a backend: no new flows, established ones continue.
    Drain {
        /// `VIP:PORT[/udp]`.
        service: String,
        /// Backend address.
        backend: String,
    },
    /// Undo a drain.
    Enable {
        /// `VIP:PORT[/udp]`.
        service: String,
        /// Backend address.
        backend: String,
    },
    /// Re-read the configuration file and apply the difference.
    Reload,
    /// Connection-table entries (`crate::dataplane::flows::FlowsReply`).
    Flows {
        /// `VIP:PORT[/udp]`; none: every service.
        #[serde(default)]
        service: Option<String>,
        /// At most this many, most recently seen first; 0: all.
        #[serde(default)]
        limit: usize,
    },
}

/// lbd's answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Response {
    /// Whether the request succeeded.
    pub ok: bool,
    /// The result, when `ok`: JSON text, encoded straight from the reply
    /// (a `serde_json::Value` tree of 1,000 services' backends took tens
    /// of MB per `lbctl services`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Box<serde_json::value::RawValue>>,
    /// What went wrong, when not `ok`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Response {
    /// A success carrying `data`.
    #[must_use]
    pub fn data(data: impl Serialize) -> Self {
        match serde_json::value::to_raw_value(&data) {
            Ok(v) => Self {
                ok: true,
                data: Some(v),
                error: None,
            },
            Err(e) => Self::error(format!("encoding the answer: {e}")),
        }
    }

    /// A failure.
    #[must_use]
    pub fn error(message: impl Into<String>) -> Self {
        Self {
            ok: false,
            data: None,
            error: Some(message.into()),
        }
    }
}

/// Why [`Response::decode`] has no data to give.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// lbd refused the request (`"ok": false`); the message is lbd's, or
    /// `request failed` when it sent none.
    #[error("{message}")]
    Refused {
        /// lbd's message.
        message: String,
    },
    /// lbd answered, but the data is not of the type the request's reply
    /// has (an lbd of another version). Printed with its source:
    /// `lbd's answer is not what this lbctl expects: <serde error>`.
    #[error("lbd's answer is not what this lbctl expects")]
    Unexpected {
        /// Why the data does not decode.
        #[source]
        source: serde_json::Error,
    },
}

impl Response {
    /// The answer's data as the type the request's reply has (see
    /// [`Request`]: `status` → [`StatusReply`], `services`/`backends` →
    /// `Vec<`[`ServiceStatus`]`>`, `vrrp` → `Vec<`[`InstanceStatus`]`>`,
    /// `stats` → `Vec<`[`ServiceTraffic`]`>`, the others a string).
    ///
    /// # Errors
    /// [`DecodeError::Refused`]: lbd refused the request (its message);
    /// [`DecodeError::Unexpected`]: the data is not a `T` (an lbd of
    /// another version).
    pub fn decode<T: serde::de::DeserializeOwned>(self) -> Result<T, DecodeError> {
        match self {
            Self {
                ok: true,
                data: Some(data),
                ..
            } => serde_json::from_str(data.get())
                .map_err(|source| DecodeError::Unexpected { source }),
            Self { error, .. } => Err(DecodeError::Refused {
                message: error.unwrap_or_else(|| "request failed".into()),
            }),
        }
    }
}

/// The answer to [`Request::Status`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReply {
    /// `router_id`, or `lbd`.
    pub router_id: String,
    /// lbd's process id.
    pub pid: u32,
    /// The data plane, when lbd runs one.
    pub data_plane: Option<DataPlaneStatus>,
    /// Services configured.
    pub services: usize,
    /// Services forwarding here now.
    pub services_active: usize,
    /// Backends whose health check passes.
    pub backends_healthy: usize,
    /// Backends of all services.
    pub backends: usize,
    /// Each VRRP instance's state.
    pub vrrp: Vec<VrrpBrief>,
    /// Connection sync, with `[sync]`.
    #[serde(default)]
    pub sync: Option<crate::sync::node::SyncStatus>,
    /// BGP announcement, with `[bgp]`.
    #[serde(default)]
    pub bgp: Option<crate::bgp::BgpStatus>,
}

/// The data plane in [`StatusReply`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataPlaneStatus {
    /// The interface the program is attached to.
    pub interface: String,
    /// `native` or `generic`.
    pub mode: String,
    /// The second interface it runs on, where backends sit
    /// (`backend_interface`), and its mode.
    #[serde(default)]
    pub backend_interface: Option<(String, String)>,
    /// Where its maps are pinned.
    pub pin_path: std::path::PathBuf,
    /// How full the connection table is (absent if it cannot be read).
    pub connection_table: Option<FlowTableUsage>,
    /// The NAT table's flows by state, as the last expiry pass counted
    /// them, and its size in flows.
    #[serde(default)]
    pub nat_table: Option<(crate::dataplane::nat::Census, u32)>,
}

/// One VRRP instance in [`StatusReply`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VrrpBrief {
    /// Instance name.
    pub name: String,
    /// `INIT`, `BACKUP`, `MASTER` or `FAULT`.
    pub state: String,
}

/// A request waiting for lbd's main loop to answer it.
pub type Pending = (Request, oneshot::Sender<Response>);

/// A service or backend argument of `lbctl drain` / `lbctl enable` (or of
/// the control socket's `drain` / `enable` requests) that does not parse.
/// Each message says what is expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The service has a `/PROTO` suffix other than `/tcp` or `/udp`.
    #[error("{service:?}: protocol {protocol:?} is not tcp or udp")]
    Protocol {
        /// The service as given.
        service: String,
        /// The suffix after the last `/`.
        protocol: String,
    },
    /// The service (without its `/PROTO` suffix) is not `VIP:PORT` or
    /// `[V6]:PORT`.
    #[error("{service:?} is not VIP:PORT (e.g. 198.18.0.100:80 or [2001:db8::100]:80/udp)")]
    Service {
        /// The service as given.
        service: String,
        /// Why the address does not parse.
        #[source]
        source: std::net::AddrParseError,
    },
    /// The backend is not an IPv4 or IPv6 address.
    #[error("{backend:?} is not a backend address (e.g. 198.18.0.11)")]
    Backend {
        /// The backend as given.
        backend: String,
        /// Why the address does not parse.
        #[source]
        source: std::net::AddrParseError,
    },
}

/// Parse `VIP:PORT`, `[V6]:PORT`, optionally followed by `/tcp` or `/udp`.
///
/// # Errors
/// [`ParseError::Protocol`] for another suffix than `/tcp` or `/udp`,
/// [`ParseError::Service`] when the rest is not `VIP:PORT`.
pub fn parse_service(s: &str) -> Result<ServiceKey, ParseError> {
    let (addr, proto) = match s.rsplit_once('/') {
        Some((a, "tcp")) => (a, Protocol::Tcp),
        Some((a, "udp")) => (a, Protocol::Udp),
        Some((_, p)) => {
            return Err(ParseError::Protocol {
                service: s.to_owned(),
                protocol: p.to_owned(),
            });
        }
        None => (s, Protocol::Tcp),
    };
    let sa: SocketAddr = addr.parse().map_err(|source| ParseError::Service {
        service: s.to_owned(),
        source,
    })?;
    Ok(ServiceKey {
        vip: sa.ip(),
        port: sa.port(),
        proto,
    })
}

/// Parse a backend address.
///
/// # Errors
/// [`ParseError::Backend`] when `s` is not an IPv4 or IPv6 address.
pub fn parse_backend(s: &str) -> Result<IpAddr, ParseError> {
    s.parse().map_err(|source| ParseError::Backend {
        backend: s.to_owned(),
        source,
    })
}

/// What one client may take of the control socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections served at once; the next is answered "too many" and
    /// closed.
    pub connections: usize,
    /// Largest request, bytes.
    pub request_bytes: u64,
    /// Time for a request to arrive whole (its newline).
    pub request_time: std::time::Duration,
    /// Time for the client to take the answer.
    pub answer_time: std::time::Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            connections: 64,
            request_bytes: 64 * 1024,
            request_time: std::time::Duration::from_secs(5),
            answer_time: std::time::Duration::from_secs(10),
        }
    }
}

/// Listen on `path` (creating its directory 0700, the socket 0600, and
/// replacing a stale socket left by a crashed lbd) and hand requests to
/// `tx`, within the default [`Limits`].
///
/// # Errors
/// The socket cannot be created, or another lbd answers on it.
pub async fn serve(
    path: &Path,
    tx: mpsc::Sender<Pending>,
) -> io::Result<tokio::task::JoinHandle<()>> {
    serve_with(path, tx, Limits::default()).await
}

/// [`serve`] within `limits`.
///
/// # Errors
/// The socket cannot be created, or another lbd answers on it.
pub async fn serve_with(
    path: &Path,
    tx: mpsc::Sender<Pending>,
    limits: Limits,
) -> io::Result<tokio::task::JoinHandle<()>> {
    if let Some(dir) = path.parent()
        && !dir.exists()
    {
        std::fs::create_dir_all(dir)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    if path.exists() {
        if UnixStream::connect(path).await.is_ok() {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("{} is in use: another lbd runs", path.display()),
            ));
        }
        std::fs::remove_file(path)?;
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(limits.connections));
    Ok(tokio::spawn(async move {
        // Said once per burst, not per refused client.
        let mut full_warned = false;
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    warn!("control socket: accept failed: {e}");
                    // EMFILE and the like: give the clients time to go.
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Ok(slot) = std::sync::Arc::clone(&slots).try_acquire_owned() else {
                if !full_warned {
                    warn!(
                        "control socket: {} connections open, refusing more until some close",
                        limits.connections
                    );
                    full_warned = true;
                }
                let message = format!(
                    "too many control connections open ({}): try again",
                    limits.connections
                );
                tokio::spawn(refuse(stream, message, limits));
                continue;
            };
            full_warned = false;
            let tx = tx.clone();
            tokio::spawn(async move {
                if let Err(e) = handle(stream, tx, limits).await {
                    warn!("control socket: {e}");
                }
                drop(slot);
            });
        }
    }))
}

/// Answer `message` as an error and close, giving the client
/// `answer_time` to take it.
async fn refuse(stream: UnixStream, message: String, limits: Limits) {
    let (mut read, mut write) = stream.into_split();
    drain(&mut read).await;
    let _ = answer(&mut write, &Response::error(message), limits).await;
}

/// Read and drop what the client sent and lbd will not read (at most
/// 1 MiB, for 100 ms): a socket closed with unread input resets the
/// connection, and the client would lose its (error) answer.
async fn drain(read: &mut tokio::net::unix::OwnedReadHalf) {
    let rest = tokio::io::AsyncReadExt::take(read, 1 << 20);
    let _ = tokio::time::timeout(
        std::time::Duration::from_millis(100),
        tokio::io::copy(&mut BufReader::new(rest), &mut tokio::io::sink()),
    )
    .await;
}

/// Write `response` and a newline, within `answer_time`, and close.
async fn answer(
    write: &mut tokio::net::unix::OwnedWriteHalf,
    response: &Response,
    limits: Limits,
) -> io::Result<usize> {
    let mut out = serde_json::to_vec(response).map_err(io::Error::other)?;
    out.push(b'\n');
    let sent = async {
        write.write_all(&out).await?;
        write.shutdown().await
    };
    tokio::time::timeout(limits.answer_time, sent)
        .await
        .map_err(|_| {
            io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "a client did not take its answer within {:?}: closed",
                    limits.answer_time
                ),
            )
        })??;
    Ok(out.len())
}

/// Read one request (whole, within the limits) from `read`.
async fn read_request(
    read: &mut tokio::net::unix::OwnedReadHalf,
    limits: Limits,
) -> Result<Request, String> {
    let mut line = Vec::new();
    let mut reader = BufReader::new(tokio::io::AsyncReadExt::take(read, limits.request_bytes));
    match tokio::time::timeout(limits.request_time, reader.read_until(b'\n', &mut line)).await {
        Err(_) => {
            return Err(format!(
                "no complete request within {:?} (one JSON object and a newline)",
                limits.request_time
            ));
        }
        Ok(Err(e)) => return Err(format!("reading the request: {e}")),
        Ok(Ok(_)) => {}
    }
    decode_request(&line, limits)
}

/// The request in `line`, what [`serve`] read of a connection: up to and
/// including the first newline, at most `limits.request_bytes`. Apart from
/// the socket so that the fuzz target `control_request` (`fuzz/`) decodes
/// exactly as lbd does.
///
/// # Errors
/// The answer's message: a line that filled the limit without its
/// newline, bytes that are not UTF-8, or text that is not one [`Request`].
pub fn decode_request(line: &[u8], limits: Limits) -> Result<Request, String> {
    if line.last() != Some(&b'\n') && line.len() as u64 >= limits.request_bytes {
        return Err(format!(
            "request larger than {} bytes: refused",
            limits.request_bytes
        ));
    }
    let text = std::str::from_utf8(line).map_err(|_| "bad request: not UTF-8".to_owned())?;
    serde_json::from_str::<Request>(text).map_err(|e| format!("bad request: {e}"))
}

async fn handle(stream: UnixStream, tx: mpsc::Sender<Pending>, limits: Limits) -> io::Result<()> {
    let (mut read, mut write) = stream.into_split();
    let request = read_request(&mut read, limits).await;
    if request.is_err() {
        drain(&mut read).await;
    }
    let response = match request {
        Ok(request) => {
            let (reply, answer) = oneshot::channel();
            if tx.send((request, reply)).await.is_err() {
                Response::error("lbd is shutting down")
            } else {
                answer
                    .await
                    .unwrap_or_else(|_| Response::error("lbd dropped the request"))
            }
        }
        Err(e) => Response::error(e),
    };
    let sent = answer(&mut write, &response, limits).await;
    drop(response);
    // A large answer (every backend of 1,000 services is ~16 MB) would
    // otherwise stay in lbd's resident memory.
    if sent.as_ref().is_ok_and(|n| *n > 1 << 20) {
        crate::sys::trim_heap();
    }
    sent.map(|_| ())
}

/// Send one request to the lbd listening on `path` and wait for the answer.
///
/// # Errors
/// lbd is not running (or not reachable), or answered garbage.
pub async fn request(path: &Path, request: &Request) -> io::Result<Response> {
    let stream = UnixStream::connect(path).await.map_err(|e| {
        io::Error::new(
            e.kind(),
            format!(
                "cannot reach lbd at {}: {e} (is lbd running? are you root?)",
                path.display()
            ),
        )
    })?;
    let (read, mut write) = stream.into_split();
    let mut out = serde_json::to_vec(request).map_err(io::Error::other)?;
    out.push(b'\n');
    write.write_all(&out).await?;
    let mut line = String::new();
    BufReader::new(read).read_line(&mut line).await?;
    serde_json::from_str(&line).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("bad answer from lbd: {e}"),
        )
    })
}

/// `json` (compact JSON, as serde_json writes it) indented as
/// `serde_json::to_string_pretty` would, keys in their order: one pass
/// over the text. `lbctl --json` re-reads lbd's answer this way; through a
/// `serde_json::Value` a 100,000-backend listing took seconds.
#[must_use]
pub fn indent_json(json: &str) -> String {
    let mut out = String::with_capacity(json.len() * 2);
    let mut depth = 0usize;
    let (mut in_string, mut escaped) = (false, false);
    let newline = |out: &mut String, depth: usize| {
        out.push('\n');
        for _ in 0..depth {
            out.push_str("  ");
        }
    };
    let mut chars = json.chars().peekable();
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => {
                in_string = true;
                out.push(c);
            }
            '{' | '[' => {
                out.push(c);
                // An empty object or array stays on its line.
                if let Some(&close) = chars.peek()
                    && matches!((c, close), ('{', '}') | ('[', ']'))
                {
                    out.push(close);
                    chars.next();
                } else {
                    depth += 1;
                    newline(&mut out, depth);
                }
            }
            '}' | ']' => {
                depth = depth.saturating_sub(1);
                newline(&mut out, depth);
                out.push(c);
            }
            ',' => {
                out.push(c);
                newline(&mut out, depth);
            }
            ':' => out.push_str(": "),
            c if c.is_whitespace() => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn services_parse() {
        let k = parse_service("198.18.0.100:80").unwrap();
        assert_eq!(
            (k.vip.to_string(), k.port, k.proto),
            ("198.18.0.100".into(), 80, Protocol::Tcp)
        );
        let k = parse_service("[2001:db8::100]:53/udp").unwrap();
        assert_eq!((k.port, k.proto), (53, Protocol::Udp));
        assert!(parse_service("198.18.0.100").is_err());
        assert!(parse_service("198.18.0.100:80/sctp").is_err());
        // lbctl's and the control socket's messages, word for word.
        assert_eq!(
            parse_service("198.18.0.100").unwrap_err().to_string(),
            "\"198.18.0.100\" is not VIP:PORT (e.g. 198.18.0.100:80 or [2001:db8::100]:80/udp)"
        );
        assert_eq!(
            parse_service("198.18.0.100:80/sctp")
                .unwrap_err()
                .to_string(),
            "\"198.18.0.100:80/sctp\": protocol \"sctp\" is not tcp or udp"
        );
        assert_eq!(
            parse_backend("198.18.0").unwrap_err().to_string(),
            "\"198.18.0\" is not a backend address (e.g. 198.18.0.11)"
        );
    }

    #[test]
    fn decode_refusals_and_foreign_answers() {
        let refused = Response::error("no service 198.18.0.100:81/tcp");
        assert_eq!(
            refused.decode::<String>().unwrap_err().to_string(),
            "no service 198.18.0.100:81/tcp"
        );
        let bare = Response {
            ok: false,
            data: None,
            error: None,
        };
        assert_eq!(
            bare.decode::<String>().unwrap_err().to_string(),
            "request failed"
        );
        let foreign = Response::data(42).decode::<String>().unwrap_err();
        assert!(matches!(foreign, DecodeError::Unexpected { .. }));
        assert!(
            crate::dataplane::loader::error_chain(&foreign)
                .starts_with("lbd's answer is not what this lbctl expects: invalid type")
        );
    }

    #[test]
    fn requests_are_tagged_json() {
        let r = Request::Drain {
            service: "198.18.0.100:80".into(),
            backend: "198.18.0.11".into(),
        };
        let text = serde_json::to_string(&r).unwrap();
        assert_eq!(
            text,
            r#"{"command":"drain","service":"198.18.0.100:80","backend":"198.18.0.11"}"#
        );
        assert_eq!(serde_json::from_str::<Request>(&text).unwrap(), r);
        assert_eq!(
            serde_json::from_str::<Request>(r#"{"command":"status"}"#).unwrap(),
            Request::Status
        );
    }

    #[test]
    fn indented_json_is_serde_jsons_pretty_text() {
        let samples = [
            serde_json::json!({"ok": true, "data": [{"a": 1, "b": [1, 2, {}], "c": {"d": null}}]}),
            serde_json::json!([]),
            serde_json::json!({}),
            serde_json::json!({"s": "a \"quoted\" {brace}, [bracket]: colon\\", "e": [], "n": -1.5e3}),
            serde_json::json!([[[]], [{"x": "\u{e9}\n"}], "tail"]),
            serde_json::json!("just a string, {not} [json]"),
        ];
        for v in samples {
            let compact = serde_json::to_string(&v).unwrap();
            assert_eq!(
                indent_json(&compact),
                serde_json::to_string_pretty(&v).unwrap(),
                "{compact}"
            );
        }
        // lbd's order is kept (a Value would sort the keys).
        assert_eq!(
            indent_json(r#"{"b":1,"a":2}"#),
            "{\n  \"b\": 1,\n  \"a\": 2\n}"
        );
    }

    /// Send `bytes` as they are on a new connection; lbd's answer.
    async fn raw(path: &Path, bytes: &[u8]) -> Response {
        use tokio::io::AsyncReadExt as _;
        let mut stream = UnixStream::connect(path).await.unwrap();
        stream.write_all(bytes).await.unwrap();
        let mut text = String::new();
        stream.read_to_string(&mut text).await.unwrap();
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text:?}"))
    }

    fn error_of(r: &Response) -> &str {
        assert!(!r.ok, "an error answer: {r:?}");
        r.error.as_deref().unwrap_or_default()
    }

    /// Malformed, oversized, non-UTF-8, late and surplus clients each get
    /// an error answer; the slots they held free up and a good request is
    /// answered after them.
    #[tokio::test]
    async fn abusive_clients_get_errors_and_others_still_get_answers() {
        let dir = std::env::temp_dir().join(format!("lb-control-abuse-{}", std::process::id()));
        let path = dir.join("lbd.sock");
        let (tx, mut rx) = mpsc::channel::<Pending>(4);
        let limits = Limits {
            connections: 8,
            request_bytes: 1024,
            request_time: std::time::Duration::from_secs(1),
            answer_time: std::time::Duration::from_secs(1),
        };
        let server = serve_with(&path, tx, limits).await.unwrap();
        // lbd's loop, answering every request it is handed.
        let lbd = tokio::spawn(async move {
            let mut handed = 0;
            while let Some((_, reply)) = rx.recv().await {
                handed += 1;
                let _ = reply.send(Response::data("ok"));
            }
            handed
        });
        let r = raw(&path, b"{\"command\":\"reboot\"}\n").await;
        assert!(
            error_of(&r).starts_with("bad request: unknown variant `reboot`"),
            "{r:?}"
        );
        let r = raw(&path, b"\xff\xfe{}\n").await;
        assert_eq!(error_of(&r), "bad request: not UTF-8");
        let r = raw(&path, &[b'{'; 2000]).await;
        assert_eq!(error_of(&r), "request larger than 1024 bytes: refused");
        // Eight silent clients hold every slot: the ninth is turned away.
        let mut idle = Vec::new();
        for _ in 0..8 {
            idle.push(UnixStream::connect(&path).await.unwrap());
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let r = raw(&path, b"{\"command\":\"status\"}\n").await;
        assert_eq!(
            error_of(&r),
            "too many control connections open (8): try again"
        );
        // The silent ones are told after a second, and closed.
        for stream in idle {
            let mut text = String::new();
            BufReader::new(stream).read_line(&mut text).await.unwrap();
            let r: Response = serde_json::from_str(&text).unwrap();
            assert!(
                error_of(&r).starts_with("no complete request within 1s"),
                "{r:?}"
            );
        }
        let r = request(&path, &Request::Status).await.unwrap();
        assert!(r.ok, "{r:?}");
        server.abort();
        let _ = std::fs::remove_dir_all(&dir);
        // Only the good request reached lbd's loop (its channel closes
        // with the server).
        let handed = tokio::time::timeout(std::time::Duration::from_secs(2), lbd)
            .await
            .expect("the server's end of the channel is gone")
            .unwrap();
        assert_eq!(handed, 1);
    }

    #[tokio::test]
    async fn socket_round_trip_is_private() {
        let dir = std::env::temp_dir().join(format!("lb-control-{}", std::process::id()));
        let path = dir.join("lbd.sock");
        let (tx, mut rx) = mpsc::channel::<Pending>(4);
        let server = serve(&path, tx.clone()).await.unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // A second server on the same path is refused.
        assert!(serve(&path, tx).await.is_err());
        let answer = tokio::spawn(async move {
            let (req, reply) = rx.recv().await.unwrap();
            assert_eq!(req, Request::Vrrp);
            reply.send(Response::data(vec!["VI_1"])).unwrap();
        });
        let r = request(&path, &Request::Vrrp).await.unwrap();
        assert_eq!(
            r.data.map(|d| d.get().to_owned()).as_deref(),
            Some(r#"["VI_1"]"#)
        );
        answer.await.unwrap();
        server.abort();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
