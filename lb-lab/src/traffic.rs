//! Traffic that keeps flowing through a failure, and the server it talks
//! to.
//!
//! The project's rule for failure tests: keep connections exchanging data
//! and new ones arriving while you kill, restart, reload or fail over, and
//! count what was kept, broken or moved. [`Traffic`] is that load, run from
//! a client namespace against one address (a VIP, or a server directly);
//! [`EchoServer`] is the server, in a backend namespace: every line it
//! receives comes back as `"<server name> <the line>"`, so each reply says
//! who answered.
//!
//! - Long-lived connections (40 by default) each send a numbered line
//!   every 100 ms and wait for its reply. One is *kept* if every reply came
//!   from the server that answered first, *moved* if replies kept coming
//!   but from another server, *broken* at the first error, EOF, reset, or
//!   reply that did not come within `reply_timeout`; a broken connection
//!   stops there.
//! - New connections arrive at a steady rate (20/s by default), one line
//!   each, and are recorded ok (with the server that answered) or failed
//!   (when, and why).
//!
//! Plain threads and blocking sockets with timeouts: one thread per
//! long-lived connection, one per new connection while it lasts, one per
//! server connection. Sockets are created inside the namespaces (a socket
//! keeps its namespace), so the threads serving them can run anywhere.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::{Duration, Instant};
//! use lb_lab::{netns::Lan, traffic::{EchoServer, Options, Traffic}};
//!
//! let mut lan = Lan::new()?;
//! lan.add_host("client", "198.18.0.1/24", "2001:db8::1/64")?;
//! lan.add_host("s1", "198.18.0.11/24", "2001:db8::11/64")?;
//! let mut server = EchoServer::start(&lan.host("s1").ns, "s1", 9000)?;
//! let target = "198.18.0.11:9000".parse()?;
//! let traffic = Traffic::start(&lan.host("client").ns, target, Options::default())?;
//! traffic.wait_lines(3, Duration::from_secs(5))?;
//! let failed_at = Instant::now();
//! server.stop(); // the failure
//! std::thread::sleep(Duration::from_millis(500));
//! let report = traffic.stop();
//! println!("{report}"); // long-lived 40: 0 kept, 0 moved, 40 broken; new ...
//! assert_eq!(report.broken(), 40);
//! assert!(report.failures_between(report.start, failed_at).is_empty());
//! # Ok(())
//! # }
//! ```

use std::{
    collections::{BTreeMap, HashMap},
    fmt,
    io::{self, BufRead as _, BufReader, Write as _},
    net::{Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream},
    ops::Range,
    sync::{
        Arc, Condvar, Mutex, MutexGuard, PoisonError,
        atomic::{AtomicBool, Ordering},
    },
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use crate::netns::{Netns, NetnsError};

/// Error from starting an [`EchoServer`] or [`Traffic`].
#[derive(Debug, thiserror::Error)]
pub enum TrafficError {
    /// The namespace could not be entered.
    #[error(transparent)]
    Netns(#[from] NetnsError),
    /// The server's listening socket could not be set up.
    #[error("echo server {name}: cannot listen on port {port}: {source}")]
    Listen {
        /// The server's name.
        name: String,
        /// The port.
        port: u16,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A thread could not be started.
    #[error("cannot start a thread: {0}")]
    Thread(#[source] io::Error),
    /// The options make no sense (a zero timeout or interval).
    #[error("traffic options: {0}")]
    Options(String),
    /// Not every long-lived connection could be established (connected
    /// and one line exchanged) within the start timeout.
    #[error(
        "{established} of {wanted} long-lived connections to {target} established \
         within {timeout:?}; {first}"
    )]
    Start {
        /// How many were.
        established: usize,
        /// How many were asked for.
        wanted: usize,
        /// The target.
        target: SocketAddr,
        /// How long start waited.
        timeout: Duration,
        /// The first connection's failure that gave up, if one did.
        first: String,
    },
    /// [`Traffic::wait_lines`] timed out.
    #[error(
        "within {timeout:?}, {lagging} of {alive} live long-lived connections did not \
         exchange {lines} more lines"
    )]
    Stalled {
        /// Connections (not broken) that had not got there.
        lagging: usize,
        /// Connections not broken.
        alive: usize,
        /// The lines waited for.
        lines: u64,
        /// How long.
        timeout: Duration,
    },
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A worker that panicked holding the lock left consistent records:
    // every update is a single assignment or push.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

// ---------------------------------------------------------------------------
// EchoServer

/// A TCP server answering every line `L` it receives with one line
/// `"<name> L"`; for a backend's namespace. Listens on all addresses of
/// the namespace (IPv4 and IPv6), so it also answers for a VIP on `lo`
/// (see [`Netns::dsr_backend`]). One thread per connection.
///
/// [`EchoServer::stop`] (or drop) closes the listener, so new connections
/// are refused, and shuts every open connection down (its client reads
/// EOF, or a reset if it sends more), then joins all its threads.
#[derive(Debug)]
pub struct EchoServer {
    name: String,
    addr: SocketAddr,
    stopping: Arc<AtomicBool>,
    /// A handle on the listening socket to shut it down (which wakes the
    /// accepting thread).
    listener: Option<TcpListener>,
    /// The accepting thread; returns the connections' threads.
    accept: Option<JoinHandle<Vec<JoinHandle<()>>>>,
    /// Open connections (a second handle each, to shut them down).
    conns: Arc<Mutex<HashMap<u64, TcpStream>>>,
}

impl EchoServer {
    /// Start server `name` on `port` (all addresses) in namespace `ns`.
    ///
    /// # Errors
    /// [`TrafficError::Netns`] if the namespace cannot be entered,
    /// [`TrafficError::Listen`] if the port cannot be bound,
    /// [`TrafficError::Thread`] if the accepting thread cannot start.
    pub fn start(ns: &Netns, name: &str, port: u16) -> Result<Self, TrafficError> {
        ns.run(|| Self::bind(name, port))?
    }

    /// Start server `name` on `port` (all addresses) in the calling
    /// thread's network namespace (a process started inside the namespace,
    /// as the lab's `lb-lab echo` is).
    ///
    /// # Errors
    /// [`TrafficError::Listen`] if the port cannot be bound,
    /// [`TrafficError::Thread`] if the accepting thread cannot start.
    pub fn bind(name: &str, port: u16) -> Result<Self, TrafficError> {
        let listen_err = |source| TrafficError::Listen {
            name: name.to_owned(),
            port,
            source,
        };
        let listener = listen_any(port).map_err(listen_err)?;
        let addr = listener.local_addr().map_err(listen_err)?;
        let handle = listener.try_clone().map_err(listen_err)?;
        let stopping = Arc::new(AtomicBool::new(false));
        let conns = Arc::new(Mutex::new(HashMap::new()));
        let accept = {
            let (stopping, conns) = (Arc::clone(&stopping), Arc::clone(&conns));
            let name: Arc<str> = name.into();
            thread::Builder::new()
                .name(format!("echo-{name}"))
                .spawn(move || accept_loop(&listener, &name, &stopping, &conns))
                .map_err(TrafficError::Thread)?
        };
        Ok(Self {
            name: name.to_owned(),
            addr,
            stopping,
            listener: Some(handle),
            accept: Some(accept),
            conns,
        })
    }

    /// The name it answers with.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The address it listens on (`[::]:port`, or `0.0.0.0:port` where the
    /// namespace has no IPv6).
    #[must_use]
    pub const fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connections open now.
    #[must_use]
    pub fn open_connections(&self) -> usize {
        lock(&self.conns).len()
    }

    /// Stop: refuse new connections, shut the open ones down, join every
    /// thread. Does nothing the second time.
    pub fn stop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        if let Some(listener) = self.listener.take() {
            // Shutting a listening socket down wakes the blocked accept(2)
            // (EINVAL) on Linux; the socket closes when both handles drop.
            let _not_listening = socket2::SockRef::from(&listener).shutdown(Shutdown::Both);
        }
        let handles = self
            .accept
            .take()
            .map(|h| h.join().unwrap_or_default())
            .unwrap_or_default();
        // The accepting thread has exited: every connection is registered.
        for (_, stream) in lock(&self.conns).drain() {
            let _closed_already = stream.shutdown(Shutdown::Both);
        }
        for h in handles {
            let _panicked = h.join();
        }
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A listening socket on `port` of every address: IPv6 accepting IPv4 too,
/// or IPv4 only where IPv6 is off.
fn listen_any(port: u16) -> io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let v6 = Socket::new(Domain::IPV6, Type::STREAM, Some(Protocol::TCP))
        .and_then(|s| s.set_only_v6(false).map(|()| s));
    let (socket, addr) = match v6 {
        Ok(s) => (s, SocketAddr::from((Ipv6Addr::UNSPECIFIED, port))),
        Err(_) => (
            Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?,
            SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)),
        ),
    };
    // A server restarted on the same port must not wait for TIME_WAIT.
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

fn accept_loop(
    listener: &TcpListener,
    name: &Arc<str>,
    stopping: &AtomicBool,
    conns: &Arc<Mutex<HashMap<u64, TcpStream>>>,
) -> Vec<JoinHandle<()>> {
    let mut handles: Vec<JoinHandle<()>> = Vec::new();
    let mut next_id = 0u64;
    loop {
        let accepted = listener.accept();
        if stopping.load(Ordering::SeqCst) {
            break;
        }
        let Ok((stream, _)) = accepted else {
            // Out of descriptors or an aborted handshake: try again soon.
            thread::sleep(Duration::from_millis(10));
            continue;
        };
        // Finished threads need no join.
        handles.retain(|h| !h.is_finished());
        let Ok(second) = stream.try_clone() else {
            continue;
        };
        let id = next_id;
        next_id += 1;
        lock(conns).insert(id, second);
        let (server, registry) = (Arc::clone(name), Arc::clone(conns));
        let spawned = thread::Builder::new()
            .name(format!("echo-{name}-{id}"))
            .spawn(move || {
                serve(stream, &server);
                lock(&registry).remove(&id);
            });
        match spawned {
            Ok(h) => handles.push(h),
            // Dropping both handles closes the connection.
            Err(_) => drop(lock(conns).remove(&id)),
        }
    }
    handles
}

/// Answer each line with `"<name> <line>\n"` until EOF or an error.
fn serve(stream: TcpStream, name: &str) {
    let _ = stream.set_nodelay(true);
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let body = line.strip_suffix(b"\n").unwrap_or(&line);
        let body = body.strip_suffix(b"\r").unwrap_or(body);
        let mut reply = Vec::with_capacity(name.len() + body.len() + 2);
        reply.extend_from_slice(name.as_bytes());
        reply.push(b' ');
        reply.extend_from_slice(body);
        reply.push(b'\n');
        if writer.write_all(&reply).is_err() {
            return;
        }
    }
}

// ---------------------------------------------------------------------------
// Records

/// Why a connection failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FailKind {
    /// The SYN was answered with a reset: nothing listens there.
    Refused,
    /// No answer to the SYN within `connect_timeout`.
    ConnectTimeout,
    /// No route, or the neighbour did not answer.
    Unreachable,
    /// Reset by the peer (RST), or a write to a connection it had reset.
    Reset,
    /// Closed by the peer (EOF) while a reply was awaited.
    Closed,
    /// No reply within `reply_timeout`.
    ReplyTimeout,
    /// A reply that was not the line sent, echoed.
    BadReply,
    /// Any other error.
    Other,
}

impl fmt::Display for FailKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Refused => "refused",
            Self::ConnectTimeout => "connect timeout",
            Self::Unreachable => "unreachable",
            Self::Reset => "reset",
            Self::Closed => "closed",
            Self::ReplyTimeout => "reply timeout",
            Self::BadReply => "bad reply",
            Self::Other => "error",
        })
    }
}

/// Where in a connection's life an error happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Connect,
    Send,
    Receive,
}

impl Stage {
    const fn name(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::Send => "send",
            Self::Receive => "receive",
        }
    }
}

/// One failure: of a new connection, or the one that broke a long-lived
/// connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// When the attempt that failed began (the connect of a new
    /// connection, the line sent on a long-lived one).
    pub started: Instant,
    /// When the failure was seen.
    pub at: Instant,
    /// What kind of failure.
    pub kind: FailKind,
    /// The error, with the step it happened in (`connect: Connection
    /// refused (os error 111)`).
    pub detail: String,
}

impl Failure {
    fn new(started: Instant, kind: FailKind, detail: String) -> Self {
        Self {
            started,
            at: Instant::now(),
            kind,
            detail,
        }
    }

    fn io(started: Instant, stage: Stage, e: &io::Error) -> Self {
        use io::ErrorKind as K;
        let kind = match e.kind() {
            K::ConnectionRefused => FailKind::Refused,
            K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe => FailKind::Reset,
            K::HostUnreachable | K::NetworkUnreachable => FailKind::Unreachable,
            // A socket timeout reads as WouldBlock on Linux.
            K::TimedOut | K::WouldBlock if stage == Stage::Connect => FailKind::ConnectTimeout,
            K::TimedOut | K::WouldBlock => FailKind::ReplyTimeout,
            K::UnexpectedEof => FailKind::Closed,
            K::InvalidData => FailKind::BadReply,
            _ => FailKind::Other,
        };
        Self::new(started, kind, format!("{}: {e}", stage.name()))
    }

    /// Whether the attempt was under way at some moment of `[t0, t1]`:
    /// it began no later than `t1` and failed no earlier than `t0`.
    #[must_use]
    pub fn overlaps(&self, t0: Instant, t1: Instant) -> bool {
        self.started <= t1 && self.at >= t0
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.kind, self.detail)
    }
}

/// What became of a long-lived connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every reply came, all from the server that answered first.
    Kept,
    /// Replies kept coming, but from another server from some point on.
    Moved {
        /// The server that answered first.
        from: String,
        /// The first other server that answered.
        to: String,
    },
    /// An error, EOF, reset or a reply that did not come ended it.
    Broken(Failure),
}

/// One long-lived connection's record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LongLived {
    /// Its number (0, 1, ...); its lines are `L<id> <seq>`.
    pub id: usize,
    /// The server that answered its first line.
    pub first_server: String,
    /// Every server that answered it, in order of first answer.
    pub servers: Vec<String>,
    /// Lines exchanged (sent and answered), the first included.
    pub lines: u64,
    /// When the last reply came.
    pub last_reply: Instant,
    /// Kept, moved or broken (so far, in a snapshot).
    pub outcome: Outcome,
}

impl LongLived {
    /// A connection whose first line `first_server` answered at `at`.
    #[must_use]
    pub fn new(id: usize, first_server: &str, at: Instant) -> Self {
        Self {
            id,
            first_server: first_server.to_owned(),
            servers: vec![first_server.to_owned()],
            lines: 1,
            last_reply: at,
            outcome: Outcome::Kept,
        }
    }

    /// Count a reply from `server` at `at`: a server other than the first
    /// makes a kept connection moved. A broken connection stays broken.
    pub fn reply(&mut self, server: &str, at: Instant) {
        if self.is_broken() {
            return;
        }
        self.lines += 1;
        self.last_reply = at;
        if !self.servers.iter().any(|s| s == server) {
            self.servers.push(server.to_owned());
        }
        if self.outcome == Outcome::Kept && server != self.first_server {
            self.outcome = Outcome::Moved {
                from: self.first_server.clone(),
                to: server.to_owned(),
            };
        }
    }

    /// Count a failure: the connection is broken (a moved one too; its
    /// servers still show where it had gone). The first failure stays.
    pub fn fail(&mut self, failure: Failure) {
        if !self.is_broken() {
            self.outcome = Outcome::Broken(failure);
        }
    }

    /// Whether it broke.
    #[must_use]
    pub const fn is_broken(&self) -> bool {
        matches!(self.outcome, Outcome::Broken(_))
    }

    /// The failure that broke it.
    #[must_use]
    pub const fn failure(&self) -> Option<&Failure> {
        match &self.outcome {
            Outcome::Broken(f) => Some(f),
            _ => None,
        }
    }
}

/// One new (short) connection: connect, one line, one reply, close.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewConn {
    /// When its connect began.
    pub started: Instant,
    /// The server that answered, or why it failed.
    pub result: Result<String, Failure>,
}

/// What the traffic saw: per long-lived connection its record, every new
/// connection's result. From [`Traffic::stop`] or, while it runs,
/// [`Traffic::snapshot`].
#[derive(Debug, Clone)]
pub struct Report {
    /// The target address.
    pub target: SocketAddr,
    /// When [`Traffic::start`] was called: offsets are from here.
    pub start: Instant,
    /// When the report was taken (after every thread finished, for
    /// [`Traffic::stop`]).
    pub end: Instant,
    /// The long-lived connections, by id.
    pub long_lived: Vec<LongLived>,
    /// The new connections, in the order they started.
    pub new: Vec<NewConn>,
}

impl Report {
    /// Long-lived connections kept.
    #[must_use]
    pub fn kept(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Kept))
    }

    /// Long-lived connections moved to another server.
    #[must_use]
    pub fn moved(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Moved { .. }))
    }

    /// Long-lived connections broken.
    #[must_use]
    pub fn broken(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Broken(_)))
    }

    fn count(&self, f: impl Fn(&Outcome) -> bool) -> usize {
        self.long_lived.iter().filter(|l| f(&l.outcome)).count()
    }

    /// New connections answered.
    #[must_use]
    pub fn new_ok(&self) -> usize {
        self.new.iter().filter(|c| c.result.is_ok()).count()
    }

    /// New connections failed.
    #[must_use]
    pub fn new_failed(&self) -> usize {
        self.new.len() - self.new_ok()
    }

    /// The new connections' failures, in the order the connections started.
    pub fn new_failures(&self) -> impl Iterator<Item = &Failure> {
        self.new.iter().filter_map(|c| c.result.as_ref().err())
    }

    /// New connections' failures whose attempt was under way at some
    /// moment of `[t0, t1]` ([`Failure::overlaps`]).
    #[must_use]
    pub fn failures_between(&self, t0: Instant, t1: Instant) -> Vec<&Failure> {
        self.new_failures().filter(|f| f.overlaps(t0, t1)).collect()
    }

    /// New connections' failures whose attempt lies wholly outside
    /// `window`: for "new connections fail only during the failover".
    #[must_use]
    pub fn failures_outside(&self, window: Range<Instant>) -> Vec<&Failure> {
        self.new_failures()
            .filter(|f| !f.overlaps(window.start, window.end))
            .collect()
    }

    /// New connections answered, per server.
    #[must_use]
    pub fn new_per_server(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for server in self.new.iter().filter_map(|c| c.result.as_ref().ok()) {
            *counts.entry(server.clone()).or_insert(0) += 1;
        }
        counts
    }

    /// Broken long-lived connections, per kind of failure.
    #[must_use]
    pub fn broken_by_kind(&self) -> BTreeMap<FailKind, usize> {
        by_kind(self.long_lived.iter().filter_map(LongLived::failure))
    }

    /// Failed new connections, per kind of failure.
    #[must_use]
    pub fn new_failed_by_kind(&self) -> BTreeMap<FailKind, usize> {
        by_kind(self.new_failures())
    }

    /// Long-lived connections per first server.
    #[must_use]
    pub fn long_lived_per_server(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for l in &self.long_lived {
            *counts.entry(l.first_server.clone()).or_insert(0) += 1;
        }
        counts
    }

    /// Every failure, long-lived (`Some(id)`) and new (`None`), by the time
    /// it was seen.
    #[must_use]
    pub fn all_failures(&self) -> Vec<(Option<usize>, &Failure)> {
        let mut all: Vec<(Option<usize>, &Failure)> = self
            .long_lived
            .iter()
            .filter_map(|l| l.failure().map(|f| (Some(l.id), f)))
            .chain(self.new_failures().map(|f| (None, f)))
            .collect();
        all.sort_by_key(|(_, f)| f.at);
        all
    }

    /// `t` in milliseconds from [`Report::start`] (negative before it).
    #[must_use]
    pub fn ms(&self, t: Instant) -> i64 {
        match t.checked_duration_since(self.start) {
            Some(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
            None => -i64::try_from((self.start - t).as_millis()).unwrap_or(i64::MAX),
        }
    }
}

fn by_kind<'a>(failures: impl Iterator<Item = &'a Failure>) -> BTreeMap<FailKind, usize> {
    let mut counts = BTreeMap::new();
    for f in failures {
        *counts.entry(f.kind).or_insert(0) += 1;
    }
    counts
}

/// Failures listed on the summary's second line.
const SHOWN_FAILURES: usize = 4;

impl fmt::Display for Report {
    /// `long-lived 40: 40 kept, 0 moved, 0 broken; new 237: 237 ok, 0
    /// failed`, then, if anything failed, a second line with the first
    /// failures (ms from the start).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "long-lived {}: {} kept, {} moved, {} broken; new {}: {} ok, {} failed",
            self.long_lived.len(),
            self.kept(),
            self.moved(),
            self.broken(),
            self.new.len(),
            self.new_ok(),
            self.new_failed()
        )?;
        let all = self.all_failures();
        if all.is_empty() {
            return Ok(());
        }
        let shown: Vec<String> = all
            .iter()
            .take(SHOWN_FAILURES)
            .map(|(id, failure)| {
                let who = id.map_or_else(|| "new".to_owned(), |id| format!("long-lived #{id}"));
                format!("+{} ms {who}: {failure}", self.ms(failure.at))
            })
            .collect();
        write!(f, "\nfailures: {}", shown.join("; "))?;
        if all.len() > SHOWN_FAILURES {
            write!(f, "; and {} more", all.len() - SHOWN_FAILURES)?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Traffic

/// What [`Traffic`] sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Long-lived connections (40).
    pub long_lived: usize,
    /// Time between two lines on a long-lived connection (100 ms).
    pub interval: Duration,
    /// New short connections per second, evenly paced (20; 0 for none).
    pub new_per_sec: u32,
    /// How long a line may wait for its reply before its connection counts
    /// as broken (3 s: a TCP retransmission across a failover can take
    /// about a second).
    pub reply_timeout: Duration,
    /// How long a connect may take (1 s).
    pub connect_timeout: Duration,
    /// How long [`Traffic::start`] keeps trying to establish the
    /// long-lived connections (10 s).
    pub start_timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            long_lived: 40,
            interval: Duration::from_millis(100),
            new_per_sec: 20,
            reply_timeout: Duration::from_secs(3),
            connect_timeout: Duration::from_secs(1),
            start_timeout: Duration::from_secs(10),
        }
    }
}

impl Options {
    fn check(&self) -> Result<(), TrafficError> {
        for (what, d) in [
            ("interval", self.interval),
            ("reply_timeout", self.reply_timeout),
            ("connect_timeout", self.connect_timeout),
        ] {
            if d < Duration::from_millis(1) {
                return Err(TrafficError::Options(format!(
                    "{what} must be at least 1 ms"
                )));
            }
        }
        Ok(())
    }
}

/// How long a long-lived connection waits between attempts to establish.
const RETRY: Duration = Duration::from_millis(100);

#[derive(Debug)]
struct State {
    stopping: bool,
    /// By id; `None` until established.
    long: Vec<Option<LongLived>>,
    /// Long-lived connections that gave up establishing.
    gave_up: Vec<(usize, Failure)>,
    new: Vec<NewConn>,
}

#[derive(Debug)]
struct Shared {
    target: SocketAddr,
    opts: Options,
    start: Instant,
    state: Mutex<State>,
    /// Signalled on every record.
    progress: Condvar,
    /// Signalled on stop.
    stop: Condvar,
}

impl Shared {
    /// Sleep until `deadline`; `true` (at once) when stopping.
    fn sleep_until(&self, deadline: Instant) -> bool {
        let mut st = lock(&self.state);
        loop {
            if st.stopping {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            st = self
                .stop
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    fn stopping(&self) -> bool {
        lock(&self.state).stopping
    }

    fn record(&self, f: impl FnOnce(&mut State)) {
        f(&mut lock(&self.state));
        self.progress.notify_all();
    }
}

/// A client connection: lines out, replies in.
struct Conn {
    reader: BufReader<TcpStream>,
}

impl Conn {
    fn open(target: SocketAddr, opts: &Options, started: Instant) -> Result<Self, Failure> {
        let stream = TcpStream::connect_timeout(&target, opts.connect_timeout)
            .map_err(|e| Failure::io(started, Stage::Connect, &e))?;
        let setup = stream
            .set_nodelay(true)
            .and_then(|()| stream.set_read_timeout(Some(opts.reply_timeout)))
            .and_then(|()| stream.set_write_timeout(Some(opts.reply_timeout)));
        setup.map_err(|e| Failure::io(started, Stage::Connect, &e))?;
        Ok(Self {
            reader: BufReader::new(stream),
        })
    }

    /// Send `line`, read its reply: the server that answered.
    fn exchange(&mut self, line: &str, started: Instant) -> Result<String, Failure> {
        self.reader
            .get_mut()
            .write_all(format!("{line}\n").as_bytes())
            .map_err(|e| Failure::io(started, Stage::Send, &e))?;
        let mut reply = String::new();
        match self.reader.read_line(&mut reply) {
            Ok(0) => Err(Failure::new(
                started,
                FailKind::Closed,
                "receive: closed by the peer (EOF)".into(),
            )),
            Ok(_) => parse_reply(&reply, line).map_err(|detail| {
                Failure::new(started, FailKind::BadReply, format!("receive: {detail}"))
            }),
            Err(e) => Err(Failure::io(started, Stage::Receive, &e)),
        }
    }
}

/// The server named in `reply`, if it echoes `sent`.
fn parse_reply(reply: &str, sent: &str) -> Result<String, String> {
    let Some(body) = reply.strip_suffix('\n') else {
        return Err(format!("reply {reply:?} cut short"));
    };
    match body.split_once(' ') {
        Some((server, echo)) if echo == sent && !server.is_empty() => Ok(server.to_owned()),
        _ => Err(format!("reply {body:?} to {sent:?}")),
    }
}

/// Traffic from a client namespace to one address: long-lived connections
/// exchanging a line every `interval`, and new connections arriving at a
/// steady rate. See the [module](self) documentation.
///
/// Stop it with [`Traffic::stop`] for the [`Report`]; dropping it stops it
/// too. Stopping lets each long-lived connection finish the line it is
/// waiting for (at most `reply_timeout`) and each new connection under way
/// finish.
#[derive(Debug)]
pub struct Traffic {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

impl Traffic {
    /// Start traffic from namespace `ns` to `target` (IPv4 or IPv6).
    /// Returns once every long-lived connection is established and has
    /// exchanged its first line; new connections start arriving then.
    ///
    /// # Errors
    /// [`TrafficError::Options`] for a zero interval or timeout,
    /// [`TrafficError::Netns`] if the namespace cannot be entered,
    /// [`TrafficError::Thread`] if a thread cannot start,
    /// [`TrafficError::Start`] if a long-lived connection could not be
    /// established within `start_timeout` (everything started is stopped).
    pub fn start(ns: &Netns, target: SocketAddr, opts: Options) -> Result<Self, TrafficError> {
        opts.check()?;
        let shared = Arc::new(Shared {
            target,
            opts,
            start: Instant::now(),
            state: Mutex::new(State {
                stopping: false,
                long: vec![None; opts.long_lived],
                gave_up: Vec::new(),
                new: Vec::new(),
            }),
            progress: Condvar::new(),
            stop: Condvar::new(),
        });
        let mut traffic = Self {
            shared,
            threads: Vec::new(),
        };
        // Threads started in the namespace stay there: their sockets are
        // the namespace's.
        let (shared, threads) = (&traffic.shared, &mut traffic.threads);
        ns.run(|| {
            for id in 0..opts.long_lived {
                let shared = Arc::clone(shared);
                let h = thread::Builder::new()
                    .name(format!("traffic-l{id}"))
                    .spawn(move || long_lived(&shared, id))?;
                threads.push(h);
            }
            Ok::<(), io::Error>(())
        })?
        .map_err(TrafficError::Thread)?;
        traffic.wait_established()?;
        if opts.new_per_sec > 0 {
            let shared = Arc::clone(&traffic.shared);
            let h = ns
                .run(|| {
                    thread::Builder::new()
                        .name("traffic-new".into())
                        .spawn(move || pace_new(&shared))
                })?
                .map_err(TrafficError::Thread)?;
            traffic.threads.push(h);
        }
        Ok(traffic)
    }

    /// Wait on the traffic's progress until `check` decides: it sees the
    /// state and whether `deadline` has passed, and must decide then.
    fn wait_progress<T>(
        &self,
        deadline: Instant,
        mut check: impl FnMut(&State, bool) -> Option<T>,
    ) -> T {
        let mut st = lock(&self.shared.state);
        loop {
            let now = Instant::now();
            if let Some(decided) = check(&st, now >= deadline) {
                return decided;
            }
            st = self
                .shared
                .progress
                .wait_timeout(st, deadline.saturating_duration_since(now))
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    fn wait_established(&self) -> Result<(), TrafficError> {
        let opts = &self.shared.opts;
        // The last attempt may begin just before start_timeout.
        let timeout = opts.start_timeout + opts.connect_timeout + opts.reply_timeout;
        self.wait_progress(self.shared.start + timeout, |st, expired| {
            let established = st.long.iter().flatten().count();
            if established == opts.long_lived {
                return Some(Ok(()));
            }
            if !st.gave_up.is_empty() || expired {
                let first = st.gave_up.first().map_or_else(
                    || "none gave up yet".to_owned(),
                    |(id, f)| format!("long-lived #{id}: {f}"),
                );
                return Some(Err(TrafficError::Start {
                    established,
                    wanted: opts.long_lived,
                    target: self.shared.target,
                    timeout,
                    first,
                }));
            }
            None
        })
    }

    /// When [`Traffic::start`] was called.
    #[must_use]
    pub fn started(&self) -> Instant {
        self.shared.start
    }

    /// The address the traffic goes to.
    #[must_use]
    pub fn target(&self) -> SocketAddr {
        self.shared.target
    }

    /// Wait until every long-lived connection that is not broken has
    /// exchanged at least `lines` more lines than when called: a progress
    /// marker, e.g. "traffic flows again after the failover". Broken
    /// connections never progress and are not waited for.
    ///
    /// # Errors
    /// [`TrafficError::Stalled`] after `timeout`.
    pub fn wait_lines(&self, lines: u64, timeout: Duration) -> Result<(), TrafficError> {
        let base: Vec<u64> = lock(&self.shared.state)
            .long
            .iter()
            .map(|l| l.as_ref().map_or(0, |l| l.lines))
            .collect();
        self.wait_progress(Instant::now() + timeout, |st, expired| {
            let alive: Vec<(u64, u64)> = st
                .long
                .iter()
                .zip(&base)
                .filter_map(|(l, b)| l.as_ref().filter(|l| !l.is_broken()).map(|l| (l.lines, *b)))
                .collect();
            let lagging = alive.iter().filter(|(n, b)| *n < b + lines).count();
            if lagging == 0 {
                return Some(Ok(()));
            }
            expired.then_some(Err(TrafficError::Stalled {
                lagging,
                alive: alive.len(),
                lines,
                timeout,
            }))
        })
    }

    /// The report so far; the traffic goes on.
    #[must_use]
    pub fn snapshot(&self) -> Report {
        let st = lock(&self.shared.state);
        let mut new = st.new.clone();
        new.sort_by_key(|c| c.started);
        Report {
            target: self.shared.target,
            start: self.shared.start,
            end: Instant::now(),
            long_lived: st.long.iter().flatten().cloned().collect(),
            new,
        }
    }

    /// Stop the traffic and report. Takes up to `reply_timeout` when a
    /// connection is waiting for a reply.
    #[must_use]
    pub fn stop(mut self) -> Report {
        self.halt();
        self.snapshot()
    }

    fn halt(&mut self) {
        lock(&self.shared.state).stopping = true;
        self.shared.stop.notify_all();
        for h in self.threads.drain(..) {
            let _panicked = h.join();
        }
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.halt();
    }
}

/// A long-lived connection: establish (retrying until `start_timeout`),
/// then a line every `interval` until stopped or broken.
fn long_lived(shared: &Shared, id: usize) {
    let opts = &shared.opts;
    let give_up = shared.start + opts.start_timeout;
    let line = |seq: u64| format!("L{id} {seq}");
    let mut conn = loop {
        let started = Instant::now();
        let attempt = Conn::open(shared.target, opts, started)
            .and_then(|mut c| c.exchange(&line(0), started).map(|server| (c, server)));
        match attempt {
            Ok((conn, server)) => {
                let record = LongLived::new(id, &server, Instant::now());
                shared.record(|st| st.long[id] = Some(record));
                break conn;
            }
            Err(failure) if Instant::now() + RETRY >= give_up => {
                shared.record(|st| st.gave_up.push((id, failure)));
                return;
            }
            Err(_) => {
                if shared.sleep_until(Instant::now() + RETRY) {
                    return;
                }
            }
        }
    };
    let mut next = Instant::now() + opts.interval;
    for seq in 1.. {
        if shared.sleep_until(next) {
            return;
        }
        let started = Instant::now();
        let result = conn.exchange(&line(seq), started);
        let broken = result.is_err();
        shared.record(|st| {
            if let Some(record) = st.long[id].as_mut() {
                match result {
                    Ok(server) => record.reply(&server, Instant::now()),
                    Err(failure) => record.fail(failure),
                }
            }
        });
        if broken {
            return;
        }
        // Late after a slow reply: the next line at once, no catching up.
        next = (next + opts.interval).max(Instant::now());
    }
}

/// New connections, `new_per_sec` evenly paced, each on a thread of its
/// own while it lasts; joins them all when stopping.
fn pace_new(shared: &Arc<Shared>) {
    let period = Duration::from_secs(1) / shared.opts.new_per_sec;
    let mut running: Vec<JoinHandle<()>> = Vec::new();
    let mut next = Instant::now();
    for n in 0u64.. {
        if shared.sleep_until(next) {
            break;
        }
        running.retain(|h| !h.is_finished());
        let s = Arc::clone(shared);
        match thread::Builder::new()
            .name(format!("traffic-n{n}"))
            .spawn(move || new_conn(&s, n))
        {
            Ok(h) => running.push(h),
            Err(e) => {
                let failure = Failure::new(
                    Instant::now(),
                    FailKind::Other,
                    format!("cannot start a thread: {e}"),
                );
                shared.record(|st| {
                    st.new.push(NewConn {
                        started: failure.started,
                        result: Err(failure),
                    });
                });
            }
        }
        next += period;
        // Late by more than a period (a stalled machine): resume the pace
        // from now instead of a burst.
        let now = Instant::now();
        if next + period < now {
            next = now;
        }
    }
    for h in running {
        let _panicked = h.join();
    }
}

/// One new connection: connect, one line, one reply, close.
fn new_conn(shared: &Shared, n: u64) {
    if shared.stopping() {
        return;
    }
    let started = Instant::now();
    let result = Conn::open(shared.target, &shared.opts, started)
        .and_then(|mut c| c.exchange(&format!("N{n} 0"), started));
    shared.record(|st| st.new.push(NewConn { started, result }));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(kind: FailKind) -> Failure {
        Failure::new(Instant::now(), kind, "test".into())
    }

    #[test]
    fn same_server_throughout_is_kept() {
        let t = Instant::now();
        let mut c = LongLived::new(0, "s1", t);
        for _ in 0..10 {
            c.reply("s1", t);
        }
        assert_eq!(c.outcome, Outcome::Kept);
        assert_eq!(c.lines, 11);
        assert_eq!(c.servers, ["s1"]);
    }

    #[test]
    fn another_server_answering_is_moved() {
        let t = Instant::now();
        let mut c = LongLived::new(3, "s1", t);
        c.reply("s1", t);
        c.reply("s2", t);
        c.reply("s2", t);
        c.reply("s3", t);
        assert_eq!(
            c.outcome,
            Outcome::Moved {
                from: "s1".into(),
                to: "s2".into()
            }
        );
        assert_eq!(c.servers, ["s1", "s2", "s3"]);
        assert_eq!(c.lines, 5);
        // Back to the first server: still moved (it did move).
        c.reply("s1", t);
        assert!(matches!(c.outcome, Outcome::Moved { .. }));
    }

    #[test]
    fn the_first_failure_breaks_it_for_good() {
        let t = Instant::now();
        let mut c = LongLived::new(1, "s1", t);
        c.reply("s2", t);
        c.fail(failure(FailKind::Reset));
        c.fail(failure(FailKind::Closed));
        c.reply("s1", t);
        assert_eq!(c.failure().map(|f| f.kind), Some(FailKind::Reset));
        assert_eq!(c.lines, 2, "nothing counts after the break");
        assert_eq!(c.servers, ["s1", "s2"], "where it had gone stays visible");
    }

    #[test]
    fn replies_parse_only_when_they_echo() {
        assert_eq!(parse_reply("web1 L3 7\n", "L3 7"), Ok("web1".into()));
        assert!(parse_reply("web1 L3 8\n", "L3 7").is_err());
        assert!(parse_reply("web1 L3 7", "L3 7").is_err(), "cut short");
        assert!(parse_reply(" L3 7\n", "L3 7").is_err(), "no name");
        assert!(parse_reply("HTTP/1.1 400\n", "L3 7").is_err());
    }

    #[test]
    fn io_errors_map_to_kinds_by_stage() {
        use io::ErrorKind as K;
        let t = Instant::now();
        let e = |k| io::Error::from(k);
        let kind = |stage, k| Failure::io(t, stage, &e(k)).kind;
        assert_eq!(
            kind(Stage::Connect, K::ConnectionRefused),
            FailKind::Refused
        );
        assert_eq!(kind(Stage::Connect, K::TimedOut), FailKind::ConnectTimeout);
        assert_eq!(kind(Stage::Receive, K::WouldBlock), FailKind::ReplyTimeout);
        assert_eq!(kind(Stage::Send, K::BrokenPipe), FailKind::Reset);
        assert_eq!(kind(Stage::Receive, K::ConnectionReset), FailKind::Reset);
        assert_eq!(
            kind(Stage::Connect, K::HostUnreachable),
            FailKind::Unreachable
        );
        let f = Failure::io(t, Stage::Connect, &e(K::ConnectionRefused));
        assert!(f.detail.starts_with("connect: "), "{}", f.detail);
    }

    fn report() -> (Report, Instant) {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let fail = |started, failed, kind| Failure {
            started: at(started),
            at: at(failed),
            kind,
            detail: "x".into(),
        };
        let mut kept = LongLived::new(0, "s1", at(1));
        kept.reply("s1", at(100));
        let mut moved = LongLived::new(1, "s1", at(1));
        moved.reply("s2", at(100));
        let mut broken = LongLived::new(2, "s2", at(1));
        broken.fail(fail(1000, 1010, FailKind::Reset));
        let new = vec![
            NewConn {
                started: at(100),
                result: Ok("s1".into()),
            },
            NewConn {
                started: at(150),
                result: Ok("s2".into()),
            },
            NewConn {
                started: at(200),
                result: Ok("s1".into()),
            },
            // Began before the window, failed inside it.
            NewConn {
                started: at(900),
                result: Err(fail(900, 1900, FailKind::ConnectTimeout)),
            },
            NewConn {
                started: at(1100),
                result: Err(fail(1100, 1101, FailKind::Refused)),
            },
            // After the window.
            NewConn {
                started: at(3000),
                result: Err(fail(3000, 3001, FailKind::Refused)),
            },
        ];
        let report = Report {
            target: "198.18.0.11:9000".parse().unwrap(),
            start: t0,
            end: at(4000),
            long_lived: vec![kept, moved, broken],
            new,
        };
        (report, t0)
    }

    #[test]
    fn report_counts_and_windows() {
        let (r, t0) = report();
        let at = |ms| t0 + Duration::from_millis(ms);
        assert_eq!((r.kept(), r.moved(), r.broken()), (1, 1, 1));
        assert_eq!((r.new_ok(), r.new_failed()), (3, 3));
        assert_eq!(r.failures_between(at(1000), at(2000)).len(), 2);
        let outside = r.failures_outside(at(1000)..at(2000));
        assert_eq!(outside.len(), 1);
        assert_eq!(r.ms(outside[0].at), 3001);
        assert_eq!(r.failures_outside(at(0)..at(4000)).len(), 0);
        assert_eq!(
            r.new_per_server(),
            BTreeMap::from([("s1".into(), 2), ("s2".into(), 1)])
        );
        assert_eq!(r.ms(t0.checked_sub(Duration::from_millis(5)).unwrap()), -5);
        assert_eq!(r.broken_by_kind(), BTreeMap::from([(FailKind::Reset, 1)]));
        assert_eq!(
            r.new_failed_by_kind(),
            BTreeMap::from([(FailKind::Refused, 2), (FailKind::ConnectTimeout, 1)])
        );
    }

    #[test]
    fn report_prints_a_summary_and_the_first_failures() {
        let (r, _) = report();
        let text = r.to_string();
        let mut lines = text.lines();
        assert_eq!(
            lines.next(),
            Some("long-lived 3: 1 kept, 1 moved, 1 broken; new 6: 3 ok, 3 failed")
        );
        assert_eq!(
            lines.next(),
            Some(
                "failures: +1010 ms long-lived #2: reset (x); +1101 ms new: refused (x); \
                 +1900 ms new: connect timeout (x); +3001 ms new: refused (x)"
            )
        );
        assert_eq!(lines.next(), None);
        let quiet = Report {
            long_lived: vec![],
            new: vec![],
            ..r
        };
        assert_eq!(
            quiet.to_string(),
            "long-lived 0: 0 kept, 0 moved, 0 broken; new 0: 0 ok, 0 failed"
        );
    }
}
