//! The sync task: drains the XDP program's new-flow ring buffer, sends
//! the flows to the peers in batches, writes the peers' flows into this
//! node's connection table, and runs bulk sync (a node that starts asks
//! for its peers' whole tables; until they are in, or `bulk_timeout`
//! passes, its VRRP instances hold back from preempting).
//!
//! NAT flows travel the same way as NAT records (both entries' worth:
//! translation, TCP state, the client's MAC) and are written into the NAT
//! table, marked as copies (`nat_flags::SYNCED`, which the program clears
//! on the copy's first packet). A copy sees no packets on the node that
//! holds it, so every live NAT flow of this node is sent again once a
//! minute (a thirtieth every 2 s): copies then never time out while the
//! flow lives, and stop being refreshed once it has ended here. A copy
//! never overwrites a flow the receiving node uses itself.
//!
//! A flow whose backend is not in this node's pool (down here, e.g. while
//! this node's interface towards the servers is down) waits up to a
//! minute for it ([`super::parked`]) and is written when the pools change.
//!
//! Client templates of persistent services (`lb_common::persist`) are not
//! sent: each flow written here also writes its client's template (the
//! client goes to that flow's backend), so a client keeps its backend when
//! this node takes over.
//!
//! One task on lbd's runtime. The connection table is written through its
//! memory mapping (`flows` is `BPF_F_MMAPABLE`), as the XDP program writes
//! it (`super::table`). Answers to bulk requests run as their own tasks,
//! a chunk of the table at a time, so a large table never stalls VRRP.

use std::{
    net::{IpAddr, SocketAddr},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU32, Ordering},
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use aya::maps::{HashMap as BpfHashMap, MapData, RingBuf};
use lb_common::{
    flow::{FLOW_EVENTS_MAP, FlowEvent, FlowKey, FlowSet},
    nat::{NAT_MAP, NatEntry, NatEvent},
    persist::{PERSIST_MAP, PersistKey, Persisted},
};
use serde::{Deserialize, Serialize};
use tokio::{io::unix::AsyncFd, net::UdpSocket, sync::watch};
use tracing::{info, warn};

use super::parked::Parked;
use super::wire::{
    Datagram, FlowRecord, Kind, MAX_DATAGRAM, MAX_NAT_RECORDS, MAX_RECORDS, NatRecord, WireError,
};
use crate::dataplane::{
    bpfmem::ArrayMemory,
    flows::{self as table, Translation, Unapplied},
    nat::{self, NotWritten},
};

/// The NAT table, shared by the task and its bulk answers and refreshes
/// (never across an await).
type NatMap = Arc<Mutex<BpfHashMap<MapData, FlowKey, NatEntry>>>;

/// The client templates of persistent services.
type Templates = Mutex<BpfHashMap<MapData, PersistKey, Persisted>>;

/// How often a slice of this node's live NAT flows is sent again, and in
/// how many slices: every live flow reaches the peers once a minute, so
/// their copies (which see no packets there) never time out while the
/// flow lives here.
const REFRESH_PASS: Duration = Duration::from_secs(2);
const REFRESH_SLICES: u32 = 30;

/// Sets of the table a bulk answer reads between yields.
const BULK_CHUNK_SETS: usize = 2048;
/// How often a node still waiting re-asks for a bulk sync.
const BULK_RETRY: Duration = Duration::from_secs(1);
/// Events drained per turn: then the task yields, so the datagrams it
/// receives and the daemon's other tasks (VRRP adverts every 100 ms) are
/// not held up by a flood of new flows.
const DRAIN_PER_TURN: usize = 4096;
/// Receive buffer asked for: bursts of a bulk sync land here.
const RECV_BUFFER: usize = 8 << 20;

/// What the sync task needs, resolved from `[sync]`.
#[derive(Clone, Debug)]
pub struct SyncSpec {
    /// The peers.
    pub peers: Vec<IpAddr>,
    /// UDP port, on every node.
    pub port: u16,
    /// Local address; `None`: any.
    pub listen: Option<IpAddr>,
    /// The shared secret.
    pub secret: Vec<u8>,
    /// How long to wait for bulk sync before allowing preemption anyway.
    pub bulk_timeout: Duration,
}

/// Why sync could not start.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// A map of the data plane is missing or not what it should be.
    #[error("opening map {map}")]
    Map {
        /// Its name.
        map: &'static str,
        /// Why.
        #[source]
        source: aya::maps::MapError,
    },
    /// The connection table could not be mapped.
    #[error("the connection table")]
    Table(#[source] crate::dataplane::stats::StatsError),
    /// The ring buffer could not be polled, or the socket opened.
    #[error("{what}")]
    Io {
        /// What was being done.
        what: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// One peer as this node sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerStatus {
    /// Its address.
    pub address: String,
    /// Milliseconds since its last datagram; `None`: never heard.
    pub heard_ms_ago: Option<u64>,
    /// Whether its answer to our bulk request is complete.
    pub bulk_done: bool,
    /// Flows its bulk answer carried.
    pub bulk_flows: u64,
    /// When its last datagram came.
    #[serde(skip)]
    pub heard_at: Option<Instant>,
}

/// Sync's state and counters (`lbctl sync`, metrics).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncStatus {
    /// The peers.
    pub peers: Vec<PeerStatus>,
    /// Bulk sync: "waiting", "done" or "timed out".
    pub bulk: String,
    /// Flows sent (new flows as they happen).
    pub flows_sent: u64,
    /// Flows sent in answers to bulk requests.
    pub bulk_flows_sent: u64,
    /// Datagrams sent.
    pub datagrams_sent: u64,
    /// Sends that failed.
    pub send_errors: u64,
    /// New-flow events of a service or slot that had changed meanwhile.
    pub events_stale: u64,
    /// Flows received (new and bulk).
    pub flows_received: u64,
    /// Flows written into the connection table.
    pub flows_applied: u64,
    /// Flows for a service this node does not run (or not now).
    pub dropped_no_service: u64,
    /// Flows dropped for want of their backend here: it did not join this
    /// node's pool within a minute of the flow's arrival (or too many
    /// were waiting).
    pub dropped_no_backend: u64,
    /// Flows waiting for their backend to join this node's pool, written
    /// when it does (into `flows_applied`).
    pub waiting_for_backend: u64,
    /// NAT flows not written: this node uses the flow itself, its reply
    /// tuple is another flow's, or the table is full.
    pub nat_not_written: u64,
    /// Client templates of persistent services written from synced flows.
    pub templates_written: u64,
    /// Datagrams whose authentication failed.
    pub auth_failures: u64,
    /// Datagrams that were not valid sync datagrams.
    pub malformed: u64,
    /// Datagrams from addresses that are not peers.
    pub from_strangers: u64,
    /// Datagrams missing in the peers' sequences (lost on the way).
    pub datagrams_lost: u64,
    /// Lag of the last datagram received: its send time to now, in
    /// microseconds (clocks of different nodes must agree: NTP).
    pub lag_last_us: u64,
    /// The largest lag seen.
    pub lag_max_us: u64,
}

/// Running sync: its status, and where to publish the balancer's ids.
pub struct Sync {
    status: Arc<Mutex<SyncStatus>>,
    translation: watch::Sender<Arc<Translation>>,
    ready: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Sync {
    /// A copy of the status.
    #[must_use]
    pub fn status(&self) -> SyncStatus {
        let mut status = self.status.lock().map(|s| s.clone()).unwrap_or_default();
        for p in &mut status.peers {
            p.heard_ms_ago = p
                .heard_at
                .map(|t| u64::try_from(t.elapsed().as_millis()).unwrap_or(u64::MAX));
        }
        status
    }

    /// This node's ids and slots changed: use these from now on.
    pub fn publish(&self, translation: Translation) {
        self.translation.send_replace(Arc::new(translation));
    }

    /// Every configured service is in the data plane with its pool (no
    /// next-hop lookup pending): the peers' flows now find their services
    /// and backends here, so the task asks for them (bulk sync) and starts
    /// sending its own. Until then events wait in the ring buffer.
    pub fn ready(&self) {
        self.ready.send_replace(true);
    }
}

impl Drop for Sync {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The connection table's memory, shared by the task and its bulk answers
/// (never across an await).
struct Table {
    mem: ArrayMemory,
    sets: usize,
}

impl Table {
    fn sets(&mut self) -> &mut [FlowSet] {
        self.mem.slice_mut::<FlowSet>(self.sets)
    }
}

fn now_unix_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// Start sync over the data plane `ebpf` (loaded with new-flow events on).
/// `hold` is set true until bulk sync completes (VRRP reads it).
///
/// # Errors
/// [`SyncError`]: maps, socket or polling could not be set up.
pub fn start(
    spec: SyncSpec,
    ebpf: &mut aya::Ebpf,
    hold: watch::Sender<bool>,
) -> Result<Sync, SyncError> {
    let ring = open_ring(ebpf)?;
    let table = open_table(ebpf)?;
    let nat_map = open_hash(ebpf, NAT_MAP)?;
    let persist = open_hash(ebpf, PERSIST_MAP)?;
    let bind = SocketAddr::new(
        spec.listen
            .unwrap_or_else(|| std::net::Ipv6Addr::UNSPECIFIED.into()),
        spec.port,
    );
    let socket = bind_socket(bind).map_err(|source| SyncError::Io {
        what: format!("binding the sync socket to {bind}"),
        source,
    })?;
    info!(
        "connection sync on udp {bind}, peers {}; asking them for their tables (bulk sync, up to {:?})",
        spec.peers
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", "),
        spec.bulk_timeout
    );
    let status = Arc::new(Mutex::new(SyncStatus {
        peers: spec
            .peers
            .iter()
            .map(|p| PeerStatus {
                address: p.to_string(),
                ..PeerStatus::default()
            })
            .collect(),
        bulk: "waiting".into(),
        ..SyncStatus::default()
    }));
    hold.send_replace(true);
    let (translation, translation_rx) = watch::channel(Arc::new(Translation::default()));
    let (ready, ready_rx) = watch::channel(false);
    let node = Node {
        peers: spec
            .peers
            .iter()
            .map(|&address| Peer {
                address,
                sender: None,
                last_sequence: None,
                bulk_done: false,
                bulk_flows: 0,
            })
            .collect(),
        spec,
        socket: Arc::new(socket),
        table: Arc::new(Mutex::new(table)),
        translation: translation_rx,
        status: Arc::clone(&status),
        hold,
        out: Arc::new(Out {
            sender: rand_u32(),
            flows_sequence: AtomicU32::new(0),
            other_sequence: AtomicU32::new(0),
        }),
        batch: Vec::with_capacity(MAX_RECORDS),
        nat_batch: Vec::with_capacity(MAX_NAT_RECORDS),
        nat: Arc::new(Mutex::new(nat_map)),
        persist: Mutex::new(persist),
        refresh_pass: 0,
        started: Instant::now(),
        parked: Parked::default(),
        parked_nat: Parked::default(),
    };
    let task = tokio::spawn(node.run(ring, ready_rx));
    Ok(Sync {
        status,
        translation,
        ready,
        task,
    })
}

/// The program's new-flow ring buffer, taken out of `ebpf`, to poll.
fn open_ring(ebpf: &mut aya::Ebpf) -> Result<AsyncFd<RingBuf<MapData>>, SyncError> {
    let ring = ebpf.take_map(FLOW_EVENTS_MAP).ok_or(SyncError::Map {
        map: FLOW_EVENTS_MAP,
        source: aya::maps::MapError::InvalidName {
            name: FLOW_EVENTS_MAP.into(),
        },
    })?;
    let ring = RingBuf::try_from(ring).map_err(|source| SyncError::Map {
        map: FLOW_EVENTS_MAP,
        source,
    })?;
    // SAFETY: the ring buffer owns its map's descriptor, which stays open
    // and the same for as long as the `AsyncFd` holds it.
    let ring = unsafe { AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE) }
        .map_err(|e| SyncError::Io {
            what: "polling the flow_events ring buffer".into(),
            source: e.into_parts().1,
        })?;
    Ok(ring)
}

/// A hash map (the NAT table, the client templates), taken out of `ebpf`
/// (expiry and `lbctl flows` open the NAT table by its pin).
fn open_hash<K: aya::Pod, V: aya::Pod>(
    ebpf: &mut aya::Ebpf,
    name: &'static str,
) -> Result<BpfHashMap<MapData, K, V>, SyncError> {
    let err = |source| SyncError::Map { map: name, source };
    let map = ebpf
        .take_map(name)
        .ok_or_else(|| err(aya::maps::MapError::InvalidName { name: name.into() }))?;
    BpfHashMap::try_from(map).map_err(err)
}

/// The connection table, memory-mapped read-write.
fn open_table(ebpf: &aya::Ebpf) -> Result<Table, SyncError> {
    let (mem, sets) =
        crate::dataplane::stats::map_flow_sets(ebpf, true).map_err(SyncError::Table)?;
    Ok(Table { mem, sets })
}

fn bind_socket(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    let domain = socket2::Domain::for_address(addr);
    let socket = socket2::Socket::new(domain, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))?;
    if addr.is_ipv6() {
        // Any address of both families on one socket.
        socket.set_only_v6(false)?;
    }
    socket.set_reuse_address(true)?;
    // A bulk sync arrives faster than it is applied at times: room for
    // thousands of datagrams. SO_RCVBUFFORCE (lbd has CAP_NET_ADMIN) is not
    // capped by net.core.rmem_max (4 MiB on Debian, where SO_RCVBUF stops);
    // without the capability, the capped size is what we get.
    if force_recv_buffer(&socket, RECV_BUFFER).is_err() {
        let _ = socket.set_recv_buffer_size(RECV_BUFFER);
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    UdpSocket::from_std(socket.into())
}

/// `SO_RCVBUFFORCE` of `bytes` on `socket`.
///
/// # Errors
/// The call fails (no `CAP_NET_ADMIN`).
fn force_recv_buffer(socket: &socket2::Socket, bytes: usize) -> std::io::Result<()> {
    use std::os::fd::AsRawFd as _;
    let size = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    // SAFETY: an int option of its size on a socket we own.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&raw const size).cast(),
            libc::socklen_t::try_from(std::mem::size_of::<libc::c_int>()).unwrap_or(4),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn rand_u32() -> u32 {
    let mut b = [0u8; 4];
    // SAFETY: getrandom writes at most `b.len()` bytes into `b`.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    if n == 4 {
        u32::from_ne_bytes(b)
    } else {
        // Unique enough: a process id and the time.
        std::process::id() ^ (now_unix_ns() as u32)
    }
}

/// What every datagram this node sends carries.
struct Out {
    sender: u32,
    /// Numbers the new-flow datagrams, which every peer gets: a peer
    /// counts the gaps as lost datagrams.
    flows_sequence: AtomicU32,
    /// Numbers the rest (bulk requests and answers go to one peer each).
    other_sequence: AtomicU32,
}

impl Out {
    fn datagram(&self, kind: Kind, flows: Vec<FlowRecord>, total: u64) -> Datagram {
        let counter = if matches!(kind, Kind::Flows | Kind::NatFlows) {
            &self.flows_sequence
        } else {
            &self.other_sequence
        };
        Datagram {
            kind,
            sender: self.sender,
            sequence: counter.fetch_add(1, Ordering::Relaxed),
            sent_ns: now_unix_ns(),
            flows,
            nat: Vec::new(),
            total,
        }
    }

    fn nat_datagram(&self, kind: Kind, nat: Vec<NatRecord>) -> Datagram {
        Datagram {
            nat,
            ..self.datagram(kind, Vec::new(), 0)
        }
    }
}

struct Peer {
    address: IpAddr,
    sender: Option<u32>,
    /// The last new-flow datagram's number from `sender`.
    last_sequence: Option<u32>,
    bulk_done: bool,
    bulk_flows: u64,
}

struct Node {
    peers: Vec<Peer>,
    spec: SyncSpec,
    socket: Arc<UdpSocket>,
    table: Arc<Mutex<Table>>,
    translation: watch::Receiver<Arc<Translation>>,
    status: Arc<Mutex<SyncStatus>>,
    hold: watch::Sender<bool>,
    out: Arc<Out>,
    batch: Vec<FlowRecord>,
    nat_batch: Vec<NatRecord>,
    nat: NatMap,
    persist: Templates,
    /// Refresh passes run (which slice is next).
    refresh_pass: u32,
    started: Instant,
    /// Peers' flows whose backend is not in a pool here yet.
    parked: Parked<FlowRecord>,
    parked_nat: Parked<NatRecord>,
}

/// An IPv4 peer as the dual-stack socket reports it.
fn unmapped(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
        v4 @ IpAddr::V4(_) => v4,
    }
}

impl Node {
    fn stat(&self, f: impl FnOnce(&mut SyncStatus)) {
        if let Ok(mut s) = self.status.lock() {
            f(&mut s);
        }
    }

    async fn run(mut self, mut ring: AsyncFd<RingBuf<MapData>>, mut ready: watch::Receiver<bool>) {
        let mut buf = vec![0u8; MAX_DATAGRAM + 64];
        // Our services and pools first: a peer's flow for a service we
        // have not written yet would be dropped.
        let settled = tokio::time::timeout(self.spec.bulk_timeout, ready.wait_for(|r| *r))
            .await
            .is_ok_and(|r| r.is_ok());
        if !settled {
            warn!(
                "sync: services not settled after {:?}; syncing anyway",
                self.spec.bulk_timeout
            );
        }
        self.request_bulk().await;
        let mut retry = tokio::time::interval(BULK_RETRY);
        retry.tick().await;
        let mut refresh = tokio::time::interval(REFRESH_PASS);
        refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                ready = ring.readable_mut() => match ready {
                    Ok(mut guard) => {
                        if self.drain(guard.get_inner_mut()).await {
                            // More queued: stay ready, but let the others run.
                            drop(guard);
                            tokio::task::yield_now().await;
                        } else {
                            guard.clear_ready();
                        }
                    }
                    Err(e) => {
                        warn!("sync: polling the ring buffer failed: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                received = self.socket.recv_from(&mut buf) => match received {
                    Ok((len, from)) => self.receive(&buf[..len], from),
                    Err(e) => {
                        warn!("sync: receive failed: {e}");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                },
                _ = retry.tick(), if *self.hold.borrow() => self.bulk_timer().await,
                _ = refresh.tick() => {
                    self.expire_parked();
                    self.refresh().await;
                }
                // A pool changed: a flow waiting for its backend may fit now.
                Ok(()) = self.translation.changed() => self.retry_parked(),
            }
        }
    }

    /// Turn up to [`DRAIN_PER_TURN`] queued events into records and send
    /// them in full datagrams (the rest at the end: new flows are not held
    /// back). Whether events may be left.
    async fn drain(&mut self, ring: &mut RingBuf<MapData>) -> bool {
        let translation = Arc::clone(&self.translation.borrow());
        let mut stale = 0;
        let mut left = true;
        for _ in 0..DRAIN_PER_TURN {
            let event = {
                let Some(item) = ring.next() else {
                    left = false;
                    break;
                };
                // The two kinds of event differ in length.
                if item.len() == size_of::<NatEvent>() {
                    // SAFETY: the program writes whole `NatEvent`s (plain
                    // integers, any bit pattern valid); the length is checked.
                    Err(unsafe { std::ptr::read_unaligned(item.as_ptr().cast::<NatEvent>()) })
                } else if item.len() >= size_of::<FlowEvent>() {
                    // SAFETY: as above, for `FlowEvent`.
                    Ok(unsafe { std::ptr::read_unaligned(item.as_ptr().cast::<FlowEvent>()) })
                } else {
                    continue;
                }
            };
            match event {
                Ok(e) => match translation.record(&e) {
                    Some(r) => self.batch.push(r),
                    None => stale += 1,
                },
                Err(e) => match NatRecord::of_event(&e, &translation) {
                    Some(r) => self.nat_batch.push(r),
                    None => stale += 1,
                },
            }
            if self.batch.len() == MAX_RECORDS {
                self.flush().await;
            }
            if self.nat_batch.len() == MAX_NAT_RECORDS {
                self.flush_nat().await;
            }
        }
        if !self.batch.is_empty() {
            self.flush().await;
        }
        if !self.nat_batch.is_empty() {
            self.flush_nat().await;
        }
        if stale > 0 {
            self.stat(|s| s.events_stale += stale);
        }
        left
    }

    async fn flush(&mut self) {
        let flows = std::mem::take(&mut self.batch);
        let n = flows.len() as u64;
        self.broadcast(self.out.datagram(Kind::Flows, flows, 0), n)
            .await;
    }

    async fn flush_nat(&mut self) {
        let nat = std::mem::take(&mut self.nat_batch);
        self.send_nat(nat).await;
    }

    /// Send NAT records to every peer.
    async fn send_nat(&self, nat: Vec<NatRecord>) {
        let n = nat.len() as u64;
        self.broadcast(self.out.nat_datagram(Kind::NatFlows, nat), n)
            .await;
    }

    /// Send a datagram of `flows` flows to every peer, and count it.
    async fn broadcast(&self, d: Datagram, flows: u64) {
        let bytes = d.emit(&self.spec.secret);
        let (sent, failed) = send_all(&self.socket, &self.spec.peers, self.spec.port, &bytes).await;
        self.stat(|s| {
            s.flows_sent += flows;
            s.datagrams_sent += sent;
            s.send_errors += failed;
        });
    }

    /// Send the next slice of this node's live NAT flows again.
    async fn refresh(&mut self) {
        let slice = self.refresh_pass % REFRESH_SLICES;
        self.refresh_pass = self.refresh_pass.wrapping_add(1);
        let map = Arc::clone(&self.nat);
        let records = tokio::task::spawn_blocking(move || {
            let entries = map.lock().map(|m| nat::snapshot(&m)).unwrap_or_default();
            nat::refresh_slice(&nat::pair(&entries).0, slice, REFRESH_SLICES)
        })
        .await
        .unwrap_or_default();
        for chunk in records.chunks(MAX_NAT_RECORDS) {
            self.send_nat(chunk.to_vec()).await;
        }
    }

    /// Ask the peers whose answer has not begun to arrive for their
    /// tables (a peer already answering is not asked again: a second
    /// answer would only double the burst).
    async fn request_bulk(&self) {
        let waiting: Vec<IpAddr> = self
            .peers
            .iter()
            .filter(|p| !p.bulk_done && p.bulk_flows == 0)
            .map(|p| p.address)
            .collect();
        if waiting.is_empty() {
            return;
        }
        let bytes = self
            .out
            .datagram(Kind::BulkRequest, Vec::new(), 0)
            .emit(&self.spec.secret);
        let (_, failed) = send_all(&self.socket, &waiting, self.spec.port, &bytes).await;
        if failed > 0 {
            self.stat(|s| s.send_errors += failed);
        }
    }

    /// Still waiting for bulk sync: re-ask, or give up after the timeout.
    async fn bulk_timer(&mut self) {
        if self.started.elapsed() >= self.spec.bulk_timeout {
            let missing: Vec<String> = self
                .status
                .lock()
                .map(|s| {
                    s.peers
                        .iter()
                        .filter(|p| !p.bulk_done)
                        .map(|p| p.address.clone())
                        .collect()
                })
                .unwrap_or_default();
            warn!(
                "sync: no complete bulk sync from {} within {:?}; allowing preemption anyway",
                missing.join(", "),
                self.spec.bulk_timeout
            );
            self.stat(|s| s.bulk = "timed out".into());
            self.hold.send_replace(false);
            return;
        }
        self.request_bulk().await;
    }

    fn receive(&mut self, bytes: &[u8], from: SocketAddr) {
        let source = unmapped(from.ip());
        let Some(peer) = self.spec.peers.iter().position(|p| *p == source) else {
            self.stat(|s| s.from_strangers += 1);
            return;
        };
        let d = match Datagram::parse(bytes, &self.spec.secret) {
            Ok(d) => d,
            Err(WireError::Auth) => {
                self.stat(|s| s.auth_failures += 1);
                return;
            }
            Err(_) => {
                self.stat(|s| s.malformed += 1);
                return;
            }
        };
        let lost = self.heard(peer, &d);
        let lag_us = now_unix_ns().saturating_sub(d.sent_ns) / 1000;
        self.stat(|s| {
            s.datagrams_lost += lost;
            s.lag_last_us = lag_us;
            s.lag_max_us = s.lag_max_us.max(lag_us);
        });
        match d.kind {
            Kind::Flows | Kind::BulkFlows => {
                if d.kind == Kind::BulkFlows {
                    let n = d.flows.len() as u64;
                    self.peers[peer].bulk_flows += n;
                    self.peer_status(peer, |p| p.bulk_flows += n);
                }
                self.apply(&d.flows);
            }
            Kind::BulkRequest => {
                info!("sync: {source} asks for our table (bulk sync)");
                tokio::spawn(answer_bulk(
                    Arc::clone(&self.socket),
                    Arc::clone(&self.table),
                    Arc::clone(&self.nat),
                    Arc::clone(&self.translation.borrow()),
                    Arc::clone(&self.out),
                    Arc::clone(&self.status),
                    self.spec.secret.clone(),
                    SocketAddr::new(source, self.spec.port),
                ));
            }
            Kind::NatFlows | Kind::BulkNatFlows => {
                if d.kind == Kind::BulkNatFlows {
                    let n = d.nat.len() as u64;
                    self.peers[peer].bulk_flows += n;
                    self.peer_status(peer, |p| p.bulk_flows += n);
                }
                self.apply_nat(&d.nat);
            }
            Kind::BulkEnd => self.bulk_end(peer, d.total),
        }
    }

    /// Note a datagram from peer `i`; how many of its new-flow datagrams
    /// went missing before this one.
    fn heard(&mut self, i: usize, d: &Datagram) -> u64 {
        let now = Instant::now();
        let mut lost = 0;
        if let Some(p) = self.peers.get_mut(i) {
            if p.sender != Some(d.sender) {
                if p.sender.is_some() {
                    info!("sync: peer {} restarted", p.address);
                }
                p.sender = Some(d.sender);
                p.last_sequence = None;
            }
            if matches!(d.kind, Kind::Flows | Kind::NatFlows) {
                if let Some(last) = p.last_sequence {
                    let gap = d.sequence.wrapping_sub(last);
                    if (2..1 << 31).contains(&gap) {
                        lost = u64::from(gap - 1);
                    }
                }
                p.last_sequence = Some(d.sequence);
            }
        }
        self.peer_status(i, |s| s.heard_at = Some(now));
        lost
    }

    fn peer_status(&self, i: usize, f: impl FnOnce(&mut PeerStatus)) {
        self.stat(|s| {
            if let Some(p) = s.peers.get_mut(i) {
                f(p);
            }
        });
    }

    fn apply(&mut self, flows: &[FlowRecord]) {
        let now = Instant::now();
        self.stat(|s| s.flows_received += flows.len() as u64);
        self.write_flows(flows.iter().map(|r| (*r, now)));
    }

    /// Write peers' flows into the connection table; those whose backend
    /// is not here wait ([`Parked`]) from the time given with each.
    fn write_flows(&mut self, flows: impl Iterator<Item = (FlowRecord, Instant)>) {
        let translation = Arc::clone(&self.translation.borrow());
        let now = crate::dataplane::stats::coarse_now_ns();
        let (mut applied, mut no_service, mut no_backend) = (0u64, 0u64, 0u64);
        let mut written = Vec::new();
        if let Ok(mut table) = self.table.lock() {
            let sets = table.sets();
            for (r, since) in flows {
                match table::apply(sets, &translation, &r, now) {
                    Ok(()) => {
                        applied += 1;
                        written.push(r);
                    }
                    Err(Unapplied::NoService) => no_service += 1,
                    Err(Unapplied::NoBackend) => {
                        if !self.parked.park(table::key_of(&r), r, since) {
                            no_backend += 1;
                        }
                    }
                }
            }
        }
        self.write_templates(&translation, written.into_iter(), now);
        self.count_written(applied, no_service, no_backend, 0);
    }

    /// Write a peer's NAT flows into this node's NAT table.
    fn apply_nat(&mut self, records: &[NatRecord]) {
        let now = Instant::now();
        self.stat(|s| s.flows_received += records.len() as u64);
        self.write_nat(records.iter().map(|r| (*r, now)));
    }

    /// Write peers' NAT flows; those whose backend is not here wait
    /// ([`Parked`]) from the time given with each.
    fn write_nat(&mut self, records: impl Iterator<Item = (NatRecord, Instant)>) {
        let translation = Arc::clone(&self.translation.borrow());
        let now = lb_common::flow::flow_seen(crate::dataplane::stats::coarse_now_ns());
        let (mut applied, mut no_service, mut no_backend, mut kept) = (0u64, 0u64, 0u64, 0u64);
        let mut written = Vec::new();
        if let Ok(mut map) = self.nat.lock() {
            for (r, since) in records {
                match nat::write(&mut map, &r, &translation, now) {
                    Ok(()) => {
                        applied += 1;
                        written.push(r.flow_record());
                    }
                    Err(NotWritten::Unapplied(Unapplied::NoService)) => no_service += 1,
                    Err(NotWritten::Unapplied(Unapplied::NoBackend)) => {
                        let key = table::key_of(&r.flow_record());
                        if !self.parked_nat.park(key, r, since) {
                            no_backend += 1;
                        }
                    }
                    Err(NotWritten::Live | NotWritten::Taken | NotWritten::Full) => {
                        kept += 1;
                        written.push(r.flow_record());
                    }
                }
            }
        }
        let clock = crate::dataplane::stats::coarse_now_ns();
        self.write_templates(&translation, written.into_iter(), clock);
        self.count_written(applied, no_service, no_backend, kept);
    }

    /// Count what one write pass did (`no_backend`: refused by a full
    /// [`Parked`]).
    fn count_written(&self, applied: u64, no_service: u64, no_backend: u64, kept: u64) {
        let waiting = (self.parked.len() + self.parked_nat.len()) as u64;
        self.stat(|s| {
            s.flows_applied += applied;
            s.dropped_no_service += no_service;
            s.dropped_no_backend += no_backend;
            s.nat_not_written += kept;
            s.waiting_for_backend = waiting;
        });
    }

    /// The pools changed: try the waiting flows again.
    fn retry_parked(&mut self) {
        if self.parked.is_empty() && self.parked_nat.is_empty() {
            return;
        }
        let now = Instant::now();
        let (flows, old) = self.parked.take(now);
        let (nat, old_nat) = self.parked_nat.take(now);
        let before = flows.len() + nat.len();
        self.stat(|s| s.dropped_no_backend += (old + old_nat) as u64);
        self.write_flows(flows.into_iter().map(|(_, r, since)| (r, since)));
        self.write_nat(nat.into_iter().map(|(_, r, since)| (r, since)));
        let still = self.parked.len() + self.parked_nat.len();
        if still < before {
            info!(
                "sync: {} peers' flows written now that their backends are in the pool here ({still} still waiting)",
                before - still
            );
        }
    }

    /// Forget waiting flows that waited too long.
    fn expire_parked(&mut self) {
        let now = Instant::now();
        let old = self.parked.expire(now) + self.parked_nat.expire(now);
        let waiting = (self.parked.len() + self.parked_nat.len()) as u64;
        self.stat(|s| {
            s.dropped_no_backend += old as u64;
            s.waiting_for_backend = waiting;
        });
    }

    /// The client templates that synced `flows` imply (persistent
    /// services only), written at `now_ns`: the latest flow of a client
    /// decides, as on the node that balanced it.
    fn write_templates(
        &self,
        translation: &Translation,
        flows: impl Iterator<Item = FlowRecord>,
        now_ns: u64,
    ) {
        let mut written = 0u64;
        if let Ok(mut map) = self.persist.lock() {
            for r in flows {
                if let Some((key, value)) = translation.template(&r, now_ns)
                    && map.insert(key, value, 0).is_ok()
                {
                    written += 1;
                }
            }
        }
        if written > 0 {
            self.stat(|s| s.templates_written += written);
        }
    }

    fn bulk_end(&mut self, i: usize, total: u64) {
        let Some(p) = self.peers.get_mut(i) else {
            return;
        };
        if p.bulk_done {
            return;
        }
        p.bulk_done = true;
        let (address, got) = (p.address, p.bulk_flows);
        if got < total {
            warn!("sync: bulk sync from {address}: {got} of its {total} flows arrived");
        } else {
            info!("sync: bulk sync from {address} complete: {total} flows");
        }
        self.peer_status(i, |s| s.bulk_done = true);
        if self.peers.iter().all(|p| p.bulk_done) && *self.hold.borrow() {
            info!(
                "sync: bulk sync complete in {} ms",
                self.started.elapsed().as_millis()
            );
            self.stat(|s| s.bulk = "done".into());
            self.hold.send_replace(false);
        }
    }
}

/// Send `bytes` to every peer; (datagrams sent, sends failed).
async fn send_all(socket: &UdpSocket, peers: &[IpAddr], port: u16, bytes: &[u8]) -> (u64, u64) {
    let (mut sent, mut failed) = (0, 0);
    for peer in peers {
        match socket.send_to(bytes, SocketAddr::new(*peer, port)).await {
            Ok(_) => sent += 1,
            Err(_) => failed += 1,
        }
    }
    (sent, failed)
}

/// Send one datagram of a bulk answer to `to`, counting it sent or
/// failed; every 64 datagrams a pause, so the peer drains its socket
/// between our bursts.
async fn send_paced(
    socket: &UdpSocket,
    to: SocketAddr,
    bytes: &[u8],
    datagrams: &mut u64,
    failed: &mut u64,
) {
    match socket.send_to(bytes, to).await {
        Ok(_) => *datagrams += 1,
        Err(_) => *failed += 1,
    }
    if datagrams.is_multiple_of(64) {
        tokio::time::sleep(Duration::from_micros(500)).await;
    }
}

/// Send our whole table to `to`, a chunk at a time, then the end marker.
#[allow(
    clippy::too_many_arguments,
    reason = "the task's shared handles, each cloned by the caller"
)]
async fn answer_bulk(
    socket: Arc<UdpSocket>,
    table: Arc<Mutex<Table>>,
    nat_map: NatMap,
    translation: Arc<Translation>,
    out: Arc<Out>,
    status: Arc<Mutex<SyncStatus>>,
    secret: Vec<u8>,
    to: SocketAddr,
) {
    let started = Instant::now();
    let mut total = 0u64;
    let mut next = 0usize;
    let (mut datagrams, mut failed) = (0u64, 0u64);
    loop {
        let records: Vec<FlowRecord> = {
            let Ok(mut table) = table.lock() else { return };
            let sets = table.sets();
            if next >= sets.len() {
                break;
            }
            let end = (next + BULK_CHUNK_SETS).min(sets.len());
            let chunk = table::dump(&sets[next..end], &translation).collect();
            next = end;
            chunk
        };
        for batch in records.chunks(MAX_RECORDS) {
            let d = out.datagram(Kind::BulkFlows, batch.to_vec(), 0);
            send_paced(&socket, to, &d.emit(&secret), &mut datagrams, &mut failed).await;
            total += batch.len() as u64;
        }
        tokio::task::yield_now().await;
    }
    let nat_records = tokio::task::spawn_blocking(move || {
        let entries = nat_map
            .lock()
            .map(|m| nat::snapshot(&m))
            .unwrap_or_default();
        let (flows, _) = nat::pair(&entries);
        flows.iter().map(NatRecord::of_flow).collect::<Vec<_>>()
    })
    .await
    .unwrap_or_default();
    for batch in nat_records.chunks(MAX_NAT_RECORDS) {
        let d = out.nat_datagram(Kind::BulkNatFlows, batch.to_vec());
        send_paced(&socket, to, &d.emit(&secret), &mut datagrams, &mut failed).await;
        total += batch.len() as u64;
    }
    let bytes = out.datagram(Kind::BulkEnd, Vec::new(), total).emit(&secret);
    match socket.send_to(&bytes, to).await {
        Ok(_) => datagrams += 1,
        Err(_) => failed += 1,
    }
    if let Ok(mut s) = status.lock() {
        s.bulk_flows_sent += total;
        s.datagrams_sent += datagrams;
        s.send_errors += failed;
    }
    info!(
        "sync: sent our table to {} ({total} flows in {} ms)",
        to.ip(),
        started.elapsed().as_millis()
    );
}
