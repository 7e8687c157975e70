//! The sync node: a libp2p swarm owned by one task (the event loop), driven through a
//! cloneable [`Node`] handle.
//!
//! * **Live path.** Every entry this device commits is published on the wallet's
//!   gossipsub topic (anonymous messages, compact entries; see [`super::wire`]),
//!   batched when several commit together. Received gossip goes through the ingest
//!   pipeline; only once the store has applied it is it reported to gossipsub as
//!   `Accept` (forwarded) or `Reject` (penalised, not forwarded).
//! * **Ingest pipeline.** Two tasks joined by bounded channels: the first restores and
//!   verifies each batch (`Store::verify_batch`, in parallel), the second applies it
//!   (`Store::apply_verified`), in order. The event loop only hands batches over and
//!   reads the results, so it keeps serving the network while entries are verified.
//! * **Catch-up.** With every device that joins the wallet topic, when an entry
//!   arrives before its predecessor, and every anti-entropy period (jittered), the
//!   node sends its version vector and ingests the pages of entries it lacks; the next
//!   page is requested as soon as the previous one arrives. Pending entries wait
//!   in SQLite, so a restarted node resumes where it stopped. A peer that pruned what
//!   we lack says so, and we fetch its sealed snapshot instead, then the entries after.
//! * **Peers.** Explicit and remembered addresses are dialled at start and redialled
//!   with exponential backoff; peers this node connects to are remembered in the peer
//!   book; a peer that sends invalid data collects strikes and is banned.
//!
//! The loop is a `biased` select: commands first, then local changes, then pipeline
//! results, then swarm events, then the housekeeping tick. Everything it holds is bounded.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use futures::StreamExt;
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::swarm::dial_opts::DialOpts;
use libp2p::swarm::{ConnectionId, NetworkBehaviour, SwarmEvent};
use libp2p::{
    Multiaddr, PeerId, Swarm, gossipsub, identify, identity::Keypair, mdns, noise,
    request_response, tcp, yamux,
};
use serde_bytes::ByteBuf;
use sha2::{Digest, Sha256};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::task::JoinHandle;

use super::config::{BAN_TIME, CATCHUP_TIMEOUT, REDIAL_MAX, REDIAL_MIN, SyncConfig};
use super::error::SyncError;
use super::peers::PeerBook;
use super::status::{PeerStatus, SyncEvent, SyncStatus, addr_with_peer};
use super::wire::{
    CATCHUP_PROTOCOL, CatchupCodec, CatchupRequest, CatchupResponse, EntryCompactor, Gossip,
    MAX_GOSSIP_BYTES, MAX_GOSSIP_ENTRIES, MAX_RESPONSE_BYTES, MAX_SNAPSHOT_TRANSFER_BYTES,
    SNAPSHOT_PROTOCOL, SnapshotCodec, SnapshotRequest, SnapshotResponse, WIRE_VERSION,
    compact_position,
};
use crate::oplog::{
    Change, IngestReport, MAX_INGEST, Origin, Rejected, Snapshot, Store, StoreError, Verified,
    VersionVector,
};

/// Capacity of the command channel to the event loop.
pub const COMMAND_CAP: usize = 64;
/// Capacity of the [`SyncEvent`] broadcast.
pub const EVENT_CAP: usize = 1024;
/// Housekeeping period: redials, bans, anti-entropy deadline.
const TICK: Duration = Duration::from_millis(250);
/// Framing overhead budgeted per entry in a response page.
const PER_ENTRY_OVERHEAD: usize = 8;
/// How long `start` waits for its listeners to come up.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(10);
/// Batches queued for verification (the event loop waits when it is full).
pub const VERIFY_QUEUE: usize = 4;
/// Verified batches queued for the store (verification of the next batch overlaps
/// the store applying this one).
pub const APPLY_QUEUE: usize = 2;
/// Capacity of the channel from the ingest pipeline back to the event loop: larger
/// than the two messages each batch can have in flight, so the pipeline never waits
/// on the loop.
const DONE_CAP: usize = 4 * (VERIFY_QUEUE + APPLY_QUEUE + 2);
/// Catch-up pages of one round in the ingest pipeline at once: while one is applied
/// and the next verified, a third is on its way.
pub const PAGES_IN_FLIGHT: usize = 3;
/// Shortest time between two snapshot requests to one peer.
pub const SNAPSHOT_RETRY: Duration = Duration::from_secs(60);
/// Domain separator of the gossip topic derivation.
const TOPIC_DOMAIN: &[u8] = b"sphere-sync-topic-v2\0";

/// The gossipsub topic string for a wallet: `sp/` ‖ 16 hex characters of
/// SHA-256(domain ‖ the wallet's OpLog topic), which is itself derived from the
/// wallet secret (`docs/formats.md` §6). Short because it travels in every message.
pub fn gossip_topic(wallet_topic: &str) -> String {
    let mut h = Sha256::new();
    h.update(TOPIC_DOMAIN);
    h.update(wallet_topic.as_bytes());
    let digest = h.finalize();
    format!("sp/{}", hex::encode(digest.get(..8).unwrap_or_default()))
}

#[derive(NetworkBehaviour)]
struct Behaviour {
    gossip: gossipsub::Behaviour,
    catchup: request_response::Behaviour<CatchupCodec>,
    snapshot: request_response::Behaviour<SnapshotCodec>,
    identify: identify::Behaviour,
    mdns: Toggle<mdns::tokio::Behaviour>,
}

enum Command {
    Status(oneshot::Sender<SyncStatus>),
    #[cfg(any(test, feature = "test-utils"))]
    PublishRaw(Vec<u8>, oneshot::Sender<bool>),
    Dial(Multiaddr, oneshot::Sender<Result<(), SyncError>>),
    CatchUp(oneshot::Sender<usize>),
    Shutdown(oneshot::Sender<()>),
}

/// A handle to a running sync node. Cheap to clone; every method is cancel-safe
/// (dropping its future loses at most that command's reply).
#[derive(Clone, Debug)]
pub struct Node {
    tx: mpsc::Sender<Command>,
    events: broadcast::Sender<SyncEvent>,
    peer_id: PeerId,
    listen: Vec<Multiaddr>,
}

impl Node {
    /// Starts a node for `store` of the wallet whose OpLog topic is `topic`
    /// (`OplogKeys::topic`; the gossip topic is [`gossip_topic`] of it), identified by
    /// the device key `identity`. Returns once every listen address is up; the event loop
    /// runs on the current tokio runtime until [`Node::shutdown`] or until every
    /// handle is dropped.
    pub async fn start(
        store: Store,
        topic: &str,
        identity: Keypair,
        config: SyncConfig,
    ) -> Result<(Self, JoinHandle<()>), SyncError> {
        let config = config.build()?;
        let peer_id = identity.public().to_peer_id();
        let mut swarm = build_swarm(identity, &config)?;
        let topic = gossipsub::IdentTopic::new(gossip_topic(topic));
        swarm
            .behaviour_mut()
            .gossip
            .subscribe(&topic)
            .map_err(|e| SyncError::Build(e.to_string()))?;
        for addr in &config.listen {
            swarm
                .listen_on(addr.clone())
                .map_err(|e| SyncError::Listen {
                    addr: addr.to_string(),
                    reason: error_chain(&e),
                })?;
        }
        let listen = wait_for_listeners(&mut swarm, config.listen.len()).await?;
        let (tx, commands) = mpsc::channel(COMMAND_CAP);
        let (events, _) = broadcast::channel(EVENT_CAP);
        let book = config.peer_book.as_deref().map(PeerBook::load);
        let mut targets: Vec<DialTarget> =
            config.peers.iter().cloned().map(DialTarget::new).collect();
        if let Some(book) = &book {
            for addr in book.peers() {
                if !targets.iter().any(|t| &t.addr == addr) {
                    targets.push(DialTarget::new(addr.clone()));
                }
            }
        }
        let log_id = *store.keys().log_id();
        let compactor = EntryCompactor::new(log_id, *store.keys().public_key());
        let changes = store.subscribe();
        let (jobs, job_rx) = mpsc::channel(VERIFY_QUEUE);
        let (apply_tx, apply_rx) = mpsc::channel(APPLY_QUEUE);
        let (done_tx, done) = mpsc::channel(DONE_CAP);
        let stages = vec![
            tokio::spawn(verify_stage(
                store.clone(),
                compactor.clone(),
                job_rx,
                apply_tx,
            )),
            tokio::spawn(apply_stage(store.clone(), apply_rx, done_tx)),
        ];
        let anti_entropy = config.anti_entropy;
        let mut event_loop = EventLoop {
            swarm,
            store,
            topic,
            log_id,
            compactor,
            jobs,
            done,
            stages,
            snapshot_asked: HashMap::new(),
            config,
            commands,
            changes,
            events: events.clone(),
            wallet_peers: HashSet::new(),
            rounds: HashMap::new(),
            last_catchup: HashMap::new(),
            strikes: HashMap::new(),
            banned: HashMap::new(),
            targets,
            dialing: HashMap::new(),
            book,
            counters: SyncStatus {
                peer_id: peer_id.to_string(),
                ..SyncStatus::default()
            },
            next_anti_entropy: Instant::now() + jittered(anti_entropy),
        };
        for addr in &listen {
            let _ = events.send(SyncEvent::Listening {
                addr: addr_with_peer(addr, &peer_id),
            });
        }
        event_loop.counters.listen = listen.iter().map(|a| addr_with_peer(a, &peer_id)).collect();
        let task = tokio::spawn(async move { event_loop.run().await });
        Ok((
            Self {
                tx,
                events,
                peer_id,
                listen,
            },
            task,
        ))
    }

    /// This device's peer id.
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// The addresses the node listens on (without the `/p2p` suffix).
    pub fn listen_addrs(&self) -> &[Multiaddr] {
        &self.listen
    }

    /// Subscribes to what the node does.
    pub fn events(&self) -> broadcast::Receiver<SyncEvent> {
        self.events.subscribe()
    }

    async fn call<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, SyncError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(make(reply))
            .await
            .map_err(|_| SyncError::Stopped)?;
        rx.await.map_err(|_| SyncError::Stopped)
    }

    /// The node's current status.
    pub async fn status(&self) -> Result<SyncStatus, SyncError> {
        self.call(Command::Status).await
    }

    /// Dials `addr` now and keeps redialling it with backoff when it drops.
    pub async fn dial(&self, addr: Multiaddr) -> Result<(), SyncError> {
        self.call(|r| Command::Dial(addr, r)).await?
    }

    /// Starts a catch-up round with every connected device; returns how many.
    pub async fn catch_up(&self) -> Result<usize, SyncError> {
        self.call(Command::CatchUp).await
    }

    /// Test hook: publishes `data` as is on the wallet topic (to show that peers
    /// survive and ban garbage). Returns whether gossipsub accepted it for sending.
    #[cfg(any(test, feature = "test-utils"))]
    pub async fn publish_raw(&self, data: Vec<u8>) -> Result<bool, SyncError> {
        self.call(|r| Command::PublishRaw(data, r)).await
    }

    /// Stops the event loop (the store stays open).
    pub async fn shutdown(&self) -> Result<(), SyncError> {
        self.call(Command::Shutdown).await
    }
}

fn build_swarm(identity: Keypair, config: &SyncConfig) -> Result<Swarm<Behaviour>, SyncError> {
    let build = |e: &dyn std::fmt::Display| SyncError::Build(e.to_string());
    let mdns_on = config.mdns;
    let swarm = libp2p::SwarmBuilder::with_existing_identity(identity)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .map_err(|e| build(&e))?
        .with_behaviour(|key| {
            let gossip_config = gossipsub::ConfigBuilder::default()
                // Entries carry the wallet's signature: gossipsub's own envelope
                // (author, sequence number, signature) would only add bytes.
                .validation_mode(gossipsub::ValidationMode::Anonymous)
                .validate_messages()
                .max_transmit_size(MAX_GOSSIP_BYTES)
                .message_id_fn(|m: &gossipsub::Message| {
                    gossipsub::MessageId::from(Sha256::digest(&m.data).to_vec())
                })
                // A wallet has a handful of devices: keep a small mesh and flood our own.
                .mesh_n_low(1)
                .mesh_n(3)
                .mesh_outbound_min(0)
                .mesh_n_high(6)
                .flood_publish(true)
                .heartbeat_interval(Duration::from_millis(500))
                .build()
                .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)?;
            let gossip =
                gossipsub::Behaviour::new(gossipsub::MessageAuthenticity::Anonymous, gossip_config)
                    .map_err(|e| Box::<dyn std::error::Error + Send + Sync>::from(e.to_owned()))?;
            let catchup = request_response::Behaviour::with_codec(
                CatchupCodec::default(),
                [(CATCHUP_PROTOCOL, request_response::ProtocolSupport::Full)],
                request_response::Config::default().with_request_timeout(CATCHUP_TIMEOUT),
            );
            let snapshot = request_response::Behaviour::with_codec(
                SnapshotCodec::default(),
                [(SNAPSHOT_PROTOCOL, request_response::ProtocolSupport::Full)],
                request_response::Config::default().with_request_timeout(CATCHUP_TIMEOUT),
            );
            let identify = identify::Behaviour::new(identify::Config::new(
                "/sphere-profile/id/1".into(),
                key.public(),
            ));
            let mdns = if mdns_on {
                Some(mdns::tokio::Behaviour::new(
                    mdns::Config::default(),
                    key.public().to_peer_id(),
                )?)
            } else {
                None
            };
            Ok(Behaviour {
                gossip,
                catchup,
                snapshot,
                identify,
                mdns: Toggle::from(mdns),
            })
        })
        .map_err(|e| build(&e))?
        // Devices stay connected while idle: live writes must not wait for a redial.
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(3600)))
        .build();
    Ok(swarm)
}

async fn wait_for_listeners(
    swarm: &mut Swarm<Behaviour>,
    count: usize,
) -> Result<Vec<Multiaddr>, SyncError> {
    let mut addrs = Vec::new();
    let deadline = tokio::time::sleep(LISTEN_TIMEOUT);
    tokio::pin!(deadline);
    while addrs.len() < count {
        tokio::select! {
            event = swarm.select_next_some() => match event {
                SwarmEvent::NewListenAddr { address, .. } => addrs.push(address),
                SwarmEvent::ListenerError { error, .. } | SwarmEvent::ListenerClosed { reason: Err(error), .. } => {
                    return Err(SyncError::Listen { addr: "?".into(), reason: error_chain(&error) });
                }
                _ => {}
            },
            () = &mut deadline => return Err(SyncError::Listen { addr: "?".into(), reason: "timed out".into() }),
        }
    }
    Ok(addrs)
}

/// An error and its sources on one line. libp2p's `TransportError::Other` (e.g. a
/// port in use) displays as nothing and keeps the cause in `source()`.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(e);
    while let Some(err) = next {
        let text = err.to_string();
        if !text.is_empty() && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = err.source();
    }
    if parts.is_empty() {
        "no reason given".to_owned()
    } else {
        parts.join(": ")
    }
}

/// A period with ±20 % jitter, so devices do not reconcile in lockstep.
fn jittered(period: Duration) -> Duration {
    let factor = 0.8 + 0.4 * rand::random::<f64>();
    period.mul_f64(factor)
}

struct DialTarget {
    addr: Multiaddr,
    connected: Option<PeerId>,
    backoff: Duration,
    next: Option<Instant>,
}

impl DialTarget {
    fn new(addr: Multiaddr) -> Self {
        Self {
            addr,
            connected: None,
            backoff: REDIAL_MIN,
            next: Some(Instant::now()),
        }
    }
}

/// One catch-up round with a peer: pages are requested one after the other, each
/// as soon as the previous one arrives (at most [`PAGES_IN_FLIGHT`] in the ingest
/// pipeline), so the network, verification and the store work at the same time.
struct Round {
    applied: usize,
    again: bool,
    /// The version vector of the last request, advanced by each page's positions.
    have: VersionVector,
    /// A request is out, or a page is being verified before the next request.
    requesting: bool,
    /// Pages handed to the ingest pipeline and not yet applied.
    in_flight: usize,
    /// The next request waits until fewer than [`PAGES_IN_FLIGHT`] pages are in the
    /// pipeline.
    deferred: bool,
    /// A snapshot was asked for and has not arrived.
    snapshot: bool,
}

/// What a batch handed to the ingest pipeline is.
enum JobKind {
    /// A gossip message, validated once its entries are applied.
    Gossip { id: gossipsub::MessageId },
    /// A catch-up page.
    Page,
}

/// A batch of compact entries from `peer` for the ingest pipeline.
struct Job {
    peer: PeerId,
    entries: Vec<ByteBuf>,
    kind: JobKind,
}

/// What the ingest pipeline reports to the event loop.
enum Done {
    /// A batch went through the store (`report` is `None` if the store failed).
    Ingested {
        peer: PeerId,
        kind: JobKind,
        report: Option<IngestReport>,
        /// Entries whose compact form was malformed.
        wire_errors: usize,
    },
}

/// A verified job on its way to the store.
struct Applying {
    peer: PeerId,
    kind: JobKind,
    batches: Vec<Verified>,
    wire_errors: usize,
    failed: bool,
}

/// Pipeline stage 1: restores and verifies each job's entries (in parallel, off the
/// event loop), reports a page's positions at once, and passes it on.
async fn verify_stage(
    store: Store,
    compactor: EntryCompactor,
    mut jobs: mpsc::Receiver<Job>,
    apply: mpsc::Sender<Applying>,
) {
    while let Some(job) = jobs.recv().await {
        tracing::trace!(peer = %job.peer, entries = job.entries.len(), "verifying a batch");
        let mut wire_errors = 0usize;
        let mut full = Vec::with_capacity(job.entries.len());
        for c in &job.entries {
            match compactor.expand(c) {
                Ok(f) => full.push(f),
                Err(e) => {
                    tracing::debug!(peer = %job.peer, error = %e, "malformed compact entry");
                    wire_errors += 1;
                }
            }
        }
        drop(job.entries);
        let mut batches = Vec::new();
        let mut failed = false;
        let mut rest = full;
        while !rest.is_empty() {
            let tail = rest.split_off(rest.len().min(MAX_INGEST));
            let chunk = std::mem::replace(&mut rest, tail);
            match store.verify_batch(chunk).await {
                Ok(v) => batches.push(v),
                Err(e) => {
                    tracing::error!(error = %e, "entry verification failed");
                    failed = true;
                    break;
                }
            }
        }
        tracing::trace!(peer = %job.peer, batches = batches.len(), wire_errors, "batch verified");
        let next = Applying {
            peer: job.peer,
            kind: job.kind,
            batches,
            wire_errors,
            failed,
        };
        if apply.send(next).await.is_err() {
            return;
        }
    }
}

/// Pipeline stage 2: applies verified batches in order on the store.
async fn apply_stage(store: Store, mut rx: mpsc::Receiver<Applying>, done: mpsc::Sender<Done>) {
    while let Some(job) = rx.recv().await {
        tracing::trace!(peer = %job.peer, "applying a batch");
        let mut report = IngestReport::default();
        let mut ok = !job.failed;
        for batch in job.batches {
            if !ok {
                break;
            }
            match store.apply_verified(batch).await {
                Ok(r) => {
                    report.applied.extend(r.applied);
                    report.pending.extend(r.pending);
                    report.duplicates.extend(r.duplicates);
                    report.rejected.extend(r.rejected);
                }
                Err(e) => {
                    tracing::error!(error = %e, "the store refused an ingest");
                    ok = false;
                }
            }
        }
        let msg = Done::Ingested {
            peer: job.peer,
            kind: job.kind,
            report: ok.then_some(report),
            wire_errors: job.wire_errors,
        };
        if done.send(msg).await.is_err() {
            return;
        }
    }
}

struct EventLoop {
    swarm: Swarm<Behaviour>,
    store: Store,
    topic: gossipsub::IdentTopic,
    log_id: [u8; 32],
    compactor: EntryCompactor,
    jobs: mpsc::Sender<Job>,
    done: mpsc::Receiver<Done>,
    /// The ingest pipeline's tasks (they hold store handles until they end).
    stages: Vec<JoinHandle<()>>,
    snapshot_asked: HashMap<PeerId, Instant>,
    config: SyncConfig,
    commands: mpsc::Receiver<Command>,
    changes: broadcast::Receiver<Change>,
    events: broadcast::Sender<SyncEvent>,
    wallet_peers: HashSet<PeerId>,
    rounds: HashMap<PeerId, Round>,
    last_catchup: HashMap<PeerId, u64>,
    strikes: HashMap<PeerId, u32>,
    banned: HashMap<PeerId, Instant>,
    targets: Vec<DialTarget>,
    dialing: HashMap<ConnectionId, usize>,
    book: Option<PeerBook>,
    counters: SyncStatus,
    next_anti_entropy: Instant,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// A short, stable label for a rejection reason (status counters, events).
fn reason_label(r: &Rejected) -> &'static str {
    match r {
        Rejected::Malformed(_) => "malformed",
        Rejected::TooLarge { .. } => "too_large",
        Rejected::ForeignLog { .. } => "foreign_log",
        Rejected::BadSignature { .. } => "bad_signature",
        Rejected::WrongKey { .. } => "wrong_key",
        Rejected::BadBody { .. } => "bad_body",
        Rejected::Fork(_) => "fork",
        Rejected::BelowFloor { .. } => "below_floor",
        Rejected::ClockNotIncreasing { .. } => "clock_not_increasing",
        Rejected::PendingFull { .. } => "pending_full",
    }
}

/// Whether a rejection shows the sender is faulty or hostile (a strike), as opposed
/// to a condition of our own store.
fn is_strike(r: &Rejected) -> bool {
    !matches!(
        r,
        Rejected::BelowFloor { .. } | Rejected::PendingFull { .. }
    )
}

impl EventLoop {
    async fn run(&mut self) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        self.redial_due();
        loop {
            tokio::select! {
                biased;
                command = self.commands.recv() => match command {
                    Some(Command::Shutdown(reply)) => { let _ = reply.send(()); break; }
                    Some(command) => self.on_command(command).await,
                    None => break,
                },
                change = self.changes.recv() => self.on_change(change),
                Some(done) = self.done.recv() => self.on_done(done).await,
                event = self.swarm.select_next_some() => self.on_swarm_event(event).await,
                _ = tick.tick() => self.on_tick().await,
            }
        }
        // Stop the pipeline and wait for it, so its store handles are gone when the
        // loop's task ends (batches not yet applied are dropped; peers resend them).
        self.jobs = mpsc::channel(1).0;
        self.done.close();
        for stage in std::mem::take(&mut self.stages) {
            let _ = stage.await;
        }
    }

    fn emit(&self, event: SyncEvent) {
        let _ = self.events.send(event);
    }

    async fn on_command(&mut self, command: Command) {
        match command {
            Command::Status(reply) => {
                let _ = reply.send(self.status());
            }
            Command::Dial(addr, reply) => {
                let index = self.targets.len();
                self.targets.push(DialTarget::new(addr.clone()));
                let _ = reply.send(self.dial(index));
            }
            Command::CatchUp(reply) => {
                let peers: Vec<PeerId> = self.wallet_peers.iter().copied().collect();
                for peer in &peers {
                    self.start_catchup(*peer).await;
                }
                let _ = reply.send(peers.len());
            }
            #[cfg(any(test, feature = "test-utils"))]
            Command::PublishRaw(data, reply) => {
                let sent = self
                    .swarm
                    .behaviour_mut()
                    .gossip
                    .publish(self.topic.clone(), data)
                    .is_ok();
                let _ = reply.send(sent);
            }
            Command::Shutdown(_) => {}
        }
    }

    fn status(&self) -> SyncStatus {
        let mut status = self.counters.clone();
        status.peers = self
            .swarm
            .connected_peers()
            .map(|p| PeerStatus {
                peer: p.to_string(),
                wallet_peer: self.wallet_peers.contains(p),
                last_catchup_ms: self.last_catchup.get(p).copied(),
                strikes: self.strikes.get(p).copied().unwrap_or(0),
            })
            .collect();
        status
    }

    // ---- live path: local entries out -------------------------------------------

    fn on_change(&mut self, first: Result<Change, broadcast::error::RecvError>) {
        let mut batch = Vec::new();
        let mut bytes = 0usize;
        let mut next = Some(first);
        while let Some(change) = next.take() {
            match change {
                Ok(Change::Entry(e)) if e.origin == Origin::Local => {
                    let Some(compact) = self.compactor.compact(&e.bytes) else {
                        tracing::error!(
                            seq = e.seq,
                            "a local entry without the wallet's key and log id"
                        );
                        continue;
                    };
                    if batch.len() == MAX_GOSSIP_ENTRIES
                        || bytes + compact.len() + PER_ENTRY_OVERHEAD > MAX_GOSSIP_BYTES - 64
                    {
                        self.publish(std::mem::take(&mut batch));
                        bytes = 0;
                    }
                    bytes += compact.len() + PER_ENTRY_OVERHEAD;
                    batch.push(compact);
                }
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    // Peers fetch what we could not publish on their next catch-up.
                    tracing::warn!(missed, "sync fell behind local writes; peers will catch up");
                }
                Err(broadcast::error::RecvError::Closed) => {}
            }
            // Batch whatever else committed meanwhile.
            if let Ok(more) = self.changes.try_recv() {
                next = Some(Ok(more));
            }
        }
        self.publish(batch);
    }

    fn publish(&mut self, entries: Vec<Vec<u8>>) {
        if entries.is_empty() {
            return;
        }
        let count = entries.len();
        let message = Gossip::new(entries).encode();
        match self
            .swarm
            .behaviour_mut()
            .gossip
            .publish(self.topic.clone(), message)
        {
            Ok(_) => {
                self.counters.entries_out += count as u64;
                self.emit(SyncEvent::Published { entries: count });
            }
            // No device listening yet: each pulls these entries when it joins.
            Err(gossipsub::PublishError::NoPeersSubscribedToTopic)
            | Err(gossipsub::PublishError::Duplicate) => {}
            Err(e) => tracing::warn!(error = %e, "publishing entries failed; peers will catch up"),
        }
    }

    // ---- swarm events ------------------------------------------------------------

    async fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::Behaviour(BehaviourEvent::Gossip(e)) => self.on_gossip(e).await,
            SwarmEvent::Behaviour(BehaviourEvent::Catchup(e)) => self.on_catchup(e).await,
            SwarmEvent::Behaviour(BehaviourEvent::Snapshot(e)) => self.on_snapshot(e).await,
            SwarmEvent::Behaviour(BehaviourEvent::Mdns(mdns::Event::Discovered(found))) => {
                for (peer, addr) in found {
                    if !self.swarm.is_connected(&peer) && !self.banned.contains_key(&peer) {
                        let _ = self.swarm.dial(addr);
                    }
                }
            }
            SwarmEvent::Behaviour(_) => {}
            SwarmEvent::NewListenAddr { address, .. } => {
                let shown = addr_with_peer(&address, self.swarm.local_peer_id());
                self.counters.listen.push(shown.clone());
                self.emit(SyncEvent::Listening { addr: shown });
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                num_established,
                ..
            } => {
                if self.banned.contains_key(&peer_id) {
                    let _ = self.swarm.disconnect_peer_id(peer_id);
                    return;
                }
                if let Some(index) = self.dialing.remove(&connection_id)
                    && let Some(target) = self.targets.get_mut(index)
                {
                    target.connected = Some(peer_id);
                    target.backoff = REDIAL_MIN;
                    target.next = None;
                }
                if endpoint.is_dialer() {
                    self.remember(endpoint.get_remote_address(), &peer_id);
                }
                if num_established.get() == 1 {
                    self.emit(SyncEvent::Connected {
                        peer: peer_id.to_string(),
                    });
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                ..
            } => {
                self.wallet_peers.remove(&peer_id);
                self.rounds.remove(&peer_id);
                self.snapshot_asked.remove(&peer_id);
                for target in self
                    .targets
                    .iter_mut()
                    .filter(|t| t.connected == Some(peer_id))
                {
                    target.connected = None;
                    target.next = Some(Instant::now() + target.backoff);
                }
                self.emit(SyncEvent::Disconnected {
                    peer: peer_id.to_string(),
                });
            }
            SwarmEvent::OutgoingConnectionError {
                connection_id,
                error,
                ..
            } => {
                if let Some(index) = self.dialing.remove(&connection_id)
                    && let Some(target) = self.targets.get_mut(index)
                {
                    tracing::debug!(addr = %target.addr, %error, "dial failed");
                    target.next = Some(Instant::now() + jittered(target.backoff));
                    target.backoff = (target.backoff * 2).min(REDIAL_MAX);
                }
            }
            _ => {}
        }
    }

    fn remember(&mut self, addr: &Multiaddr, peer: &PeerId) {
        let Some(book) = &mut self.book else { return };
        let mut full = addr.clone();
        if !matches!(
            full.iter().last(),
            Some(libp2p::multiaddr::Protocol::P2p(_))
        ) {
            full.push(libp2p::multiaddr::Protocol::P2p(*peer));
        }
        if book.remember(full)
            && let Err(e) = book.save()
        {
            tracing::warn!(error = %e, "saving the peer book failed");
        }
    }

    fn dial(&mut self, index: usize) -> Result<(), SyncError> {
        let Some(target) = self.targets.get_mut(index) else {
            return Ok(());
        };
        let opts = DialOpts::unknown_peer_id()
            .address(target.addr.clone())
            .build();
        let id = opts.connection_id();
        target.next = None;
        let addr = target.addr.to_string();
        self.swarm.dial(opts).map_err(|e| SyncError::Dial {
            addr,
            reason: e.to_string(),
        })?;
        self.dialing.insert(id, index);
        Ok(())
    }

    fn redial_due(&mut self) {
        let now = Instant::now();
        let due: Vec<usize> = self
            .targets
            .iter()
            .enumerate()
            .filter(|(_, t)| t.connected.is_none() && t.next.is_some_and(|n| n <= now))
            .map(|(i, _)| i)
            .collect();
        for index in due {
            if let Err(e) = self.dial(index) {
                tracing::warn!(error = %e, "dial refused");
                if let Some(t) = self.targets.get_mut(index) {
                    t.next = Some(now + REDIAL_MAX);
                }
            }
        }
    }

    async fn on_tick(&mut self) {
        let now = Instant::now();
        self.banned.retain(|_, until| *until > now);
        self.redial_due();
        if now >= self.next_anti_entropy {
            self.next_anti_entropy = now + jittered(self.config.anti_entropy);
            let peers: Vec<PeerId> = self.wallet_peers.iter().copied().collect();
            for peer in peers {
                self.start_catchup(peer).await;
            }
        }
    }

    fn strike(&mut self, peer: PeerId, reason: &str) {
        *self.counters.rejected.entry(reason.to_owned()).or_insert(0) += 1;
        self.emit(SyncEvent::Rejected {
            peer: peer.to_string(),
            reason: reason.to_owned(),
        });
        let strikes = self.strikes.entry(peer).or_insert(0);
        *strikes += 1;
        if *strikes >= self.config.max_strikes {
            tracing::warn!(%peer, "banning a peer that keeps sending invalid data");
            self.banned.insert(peer, Instant::now() + BAN_TIME);
            self.wallet_peers.remove(&peer);
            let _ = self.swarm.disconnect_peer_id(peer);
            self.emit(SyncEvent::Banned {
                peer: peer.to_string(),
            });
        }
    }

    /// Hands a batch of compact entries to the ingest pipeline.
    async fn submit(&mut self, peer: PeerId, entries: Vec<ByteBuf>, kind: JobKind) -> bool {
        self.jobs
            .send(Job {
                peer,
                entries,
                kind,
            })
            .await
            .is_ok()
    }

    /// Counts what the pipeline did with a batch from `peer`; strikes for hostile
    /// rejections and malformed entries.
    fn account(&mut self, peer: PeerId, report: &IngestReport, wire_errors: usize) {
        self.counters.entries_in += report.applied.len() as u64;
        for _ in 0..wire_errors {
            self.strike(peer, "wire");
        }
        for (_, reason) in &report.rejected {
            if is_strike(reason) {
                self.strike(peer, reason_label(reason));
            } else {
                *self
                    .counters
                    .rejected
                    .entry(reason_label(reason).to_owned())
                    .or_insert(0) += 1;
            }
        }
    }

    async fn on_done(&mut self, done: Done) {
        match done {
            Done::Ingested {
                peer,
                kind,
                report,
                wire_errors,
            } => {
                if let Some(r) = &report {
                    self.account(peer, r, wire_errors);
                }
                match kind {
                    JobKind::Gossip { id } => self.on_gossip_ingested(peer, id, report).await,
                    JobKind::Page => self.on_page_ingested(peer, report).await,
                }
            }
        }
    }

    // ---- gossip in -----------------------------------------------------------------

    async fn on_gossip(&mut self, event: gossipsub::Event) {
        match event {
            gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            } => {
                if let Some(acceptance) = self
                    .on_gossip_message(propagation_source, &message_id, message)
                    .await
                {
                    let _ = self
                        .swarm
                        .behaviour_mut()
                        .gossip
                        .report_message_validation_result(
                            &message_id,
                            &propagation_source,
                            acceptance,
                        );
                }
            }
            // A device joined: pull what it has that we lack (it does the same).
            gossipsub::Event::Subscribed { peer_id, topic, .. }
                if topic == self.topic.hash() && self.wallet_peers.insert(peer_id) =>
            {
                self.start_catchup(peer_id).await;
            }
            gossipsub::Event::Unsubscribed { peer_id, topic } if topic == self.topic.hash() => {
                self.wallet_peers.remove(&peer_id);
            }
            _ => {}
        }
    }

    /// Checks a gossip message and hands its entries to the pipeline; the validation
    /// result is reported when they are applied (`None` here) unless it is known now.
    async fn on_gossip_message(
        &mut self,
        source: PeerId,
        id: &gossipsub::MessageId,
        message: gossipsub::Message,
    ) -> Option<gossipsub::MessageAcceptance> {
        if message.topic != self.topic.hash() {
            return Some(gossipsub::MessageAcceptance::Ignore);
        }
        if self.config.gossip_drop_rate > 0.0
            && rand::random::<f64>() < self.config.gossip_drop_rate
        {
            return Some(gossipsub::MessageAcceptance::Ignore);
        }
        let gossip = match Gossip::decode(&message.data) {
            Ok(g) => g,
            Err(e) => {
                tracing::debug!(%source, error = %e, "malformed gossip");
                self.strike(source, "wire");
                return Some(gossipsub::MessageAcceptance::Reject);
            }
        };
        let kind = JobKind::Gossip { id: id.clone() };
        if self.submit(source, gossip.entries, kind).await {
            None
        } else {
            Some(gossipsub::MessageAcceptance::Ignore)
        }
    }

    async fn on_gossip_ingested(
        &mut self,
        source: PeerId,
        id: gossipsub::MessageId,
        report: Option<IngestReport>,
    ) {
        let acceptance = match &report {
            None => gossipsub::MessageAcceptance::Ignore,
            Some(r) if r.rejected.iter().any(|(_, x)| is_strike(x)) => {
                gossipsub::MessageAcceptance::Reject
            }
            Some(_) => gossipsub::MessageAcceptance::Accept,
        };
        let _ = self
            .swarm
            .behaviour_mut()
            .gossip
            .report_message_validation_result(&id, &source, acceptance);
        let Some(report) = report else { return };
        if !report.applied.is_empty() {
            self.emit(SyncEvent::Applied {
                peer: source.to_string(),
                entries: report.applied.len(),
                via: "gossip",
            });
        }
        if !report.pending.is_empty() {
            // A predecessor is missing: fetch the gap from whoever sent this.
            self.start_catchup(source).await;
        }
    }

    // ---- catch-up ------------------------------------------------------------------

    async fn start_catchup(&mut self, peer: PeerId) {
        if let Some(round) = self.rounds.get_mut(&peer) {
            round.again = true;
            return;
        }
        tracing::debug!(%peer, "catch-up round starts");
        let have = match self.store.version_vector().await {
            Ok(v) => v,
            Err(e) => {
                tracing::error!(error = %e, "reading the version vector failed");
                return;
            }
        };
        self.request_page(peer, &have);
        self.rounds.insert(
            peer,
            Round {
                applied: 0,
                again: false,
                have,
                requesting: true,
                in_flight: 0,
                deferred: false,
                snapshot: false,
            },
        );
    }

    /// Sends one catch-up request for what lies beyond `have`.
    fn request_page(&mut self, peer: PeerId, have: &VersionVector) {
        let request = CatchupRequest {
            v: WIRE_VERSION,
            log: ByteBuf::from(self.log_id.to_vec()),
            have: have
                .iter()
                .map(|(d, s)| (ByteBuf::from(d.to_vec()), *s))
                .collect(),
            max: self.config.page as u64,
        };
        self.swarm
            .behaviour_mut()
            .catchup
            .send_request(&peer, request);
    }

    async fn on_catchup(
        &mut self,
        event: request_response::Event<CatchupRequest, CatchupResponse>,
    ) {
        match event {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request {
                    request, channel, ..
                } => {
                    let response = self.serve(peer, request).await;
                    let _ = self
                        .swarm
                        .behaviour_mut()
                        .catchup
                        .send_response(channel, response);
                }
                request_response::Message::Response { response, .. } => {
                    self.on_page(peer, response).await
                }
            },
            request_response::Event::OutboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, %error, "catch-up request failed");
                if let request_response::OutboundFailure::Io(e) = &error {
                    self.strike_malformed(peer, e);
                }
                if let Some(round) = self.rounds.get_mut(&peer) {
                    round.requesting = false;
                }
                self.maybe_finish(peer).await;
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                if let request_response::InboundFailure::Io(e) = &error {
                    self.strike_malformed(peer, e);
                }
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    /// Strikes `peer` when a request-response stream failed because its bytes did not
    /// decode (the codec reports that as `InvalidData`), not for a mere network error.
    fn strike_malformed(&mut self, peer: PeerId, e: &std::io::Error) {
        if e.kind() == std::io::ErrorKind::InvalidData {
            self.strike(peer, "wire");
        }
    }

    /// Whether `request` names our log; counts it if not.
    fn same_log(&mut self, log: &[u8]) -> bool {
        if log == self.log_id.as_slice() {
            return true;
        }
        // Another wallet's device: it learns nothing from us.
        *self
            .counters
            .rejected
            .entry("foreign_log_request".into())
            .or_insert(0) += 1;
        false
    }

    /// Answers a catch-up request with the entries the requester lacks.
    async fn serve(&mut self, peer: PeerId, request: CatchupRequest) -> CatchupResponse {
        tracing::debug!(%peer, "serving a catch-up request");
        let mut response = CatchupResponse {
            v: WIRE_VERSION,
            more: false,
            pruned: false,
            entries: Vec::new(),
        };
        if !self.same_log(&request.log) {
            return response;
        }
        let mut since = VersionVector::default();
        for (device, seq) in &request.have {
            if let Ok(d) = <[u8; 8]>::try_from(device.as_slice()) {
                since.set(d, *seq);
            }
        }
        let limit = usize::try_from(request.max)
            .unwrap_or(usize::MAX)
            .min(self.config.page.max(1));
        let page = match self.store.entries_since(&since, limit).await {
            Ok(p) => p,
            Err(StoreError::Pruned { .. }) => {
                response.pruned = true;
                return response;
            }
            Err(e) => {
                tracing::warn!(%peer, error = %e, "cannot serve catch-up");
                return response;
            }
        };
        let mut bytes = 64usize;
        response.more = page.more;
        for entry in page.entries {
            let Some(compact) = self.compactor.compact(&entry) else {
                continue;
            };
            if bytes + compact.len() + PER_ENTRY_OVERHEAD > MAX_RESPONSE_BYTES {
                response.more = true;
                break;
            }
            bytes += compact.len() + PER_ENTRY_OVERHEAD;
            response.entries.push(ByteBuf::from(compact));
        }
        self.counters.entries_served += response.entries.len() as u64;
        response
    }

    async fn on_page(&mut self, peer: PeerId, response: CatchupResponse) {
        tracing::debug!(%peer, entries = response.entries.len(), more = response.more, pruned = response.pruned, "catch-up page");
        if response.pruned {
            self.ask_snapshot(peer);
        }
        if response.entries.is_empty() {
            if let Some(round) = self.rounds.get_mut(&peer) {
                round.requesting = false;
            }
            self.maybe_finish(peer).await;
            return;
        }
        // Ask for the next page before this one is verified: its vector is the last
        // one advanced by the positions the page claims (read from the compact
        // entries). Only a hint to the responder; what is applied is what verifies,
        // and the next round starts again from the store's own vector.
        if let Some(round) = self.rounds.get_mut(&peer) {
            let mut progressed = false;
            for (device, seq) in response.entries.iter().filter_map(|e| compact_position(e)) {
                if seq == round.have.get(&device).saturating_add(1) {
                    round.have.set(device, seq);
                    progressed = true;
                }
            }
            round.in_flight += 1;
            if response.more && progressed {
                if round.in_flight < PAGES_IN_FLIGHT {
                    let have = round.have.clone();
                    self.request_page(peer, &have);
                } else {
                    round.deferred = true;
                }
            } else {
                round.requesting = false;
            }
        }
        if !self.submit(peer, response.entries, JobKind::Page).await {
            if let Some(round) = self.rounds.get_mut(&peer) {
                round.in_flight = round.in_flight.saturating_sub(1);
                round.requesting = false;
                round.deferred = false;
            }
            self.maybe_finish(peer).await;
        }
    }

    async fn on_page_ingested(&mut self, peer: PeerId, report: Option<IngestReport>) {
        let applied = report.as_ref().map_or(0, |r| r.applied.len());
        tracing::debug!(%peer, applied, "catch-up page applied");
        if applied > 0 {
            self.emit(SyncEvent::Applied {
                peer: peer.to_string(),
                entries: applied,
                via: "catchup",
            });
        }
        if let Some(round) = self.rounds.get_mut(&peer) {
            round.applied += applied;
            round.in_flight = round.in_flight.saturating_sub(1);
            if round.deferred && round.in_flight < PAGES_IN_FLIGHT {
                round.deferred = false;
                let have = round.have.clone();
                self.request_page(peer, &have);
                return;
            }
        }
        self.maybe_finish(peer).await;
    }

    /// Ends the round with `peer` once nothing is outstanding; starts another if
    /// something asked for one meanwhile.
    async fn maybe_finish(&mut self, peer: PeerId) {
        let Some(round) = self.rounds.get(&peer) else {
            return;
        };
        if round.requesting || round.in_flight > 0 || round.snapshot {
            return;
        }
        let (total, again) = (round.applied, round.again);
        tracing::debug!(%peer, total, again, "catch-up round ends");
        self.rounds.remove(&peer);
        if again {
            self.start_catchup(peer).await;
            return;
        }
        self.last_catchup.insert(peer, now_ms());
        self.emit(SyncEvent::CaughtUp {
            peer: peer.to_string(),
            entries: total,
        });
    }

    // ---- snapshots -----------------------------------------------------------------

    /// The peer pruned entries we lack: ask it for its state (at most once per
    /// [`SNAPSHOT_RETRY`]).
    fn ask_snapshot(&mut self, peer: PeerId) {
        let now = Instant::now();
        if self
            .snapshot_asked
            .get(&peer)
            .is_some_and(|at| now.duration_since(*at) < SNAPSHOT_RETRY)
        {
            return;
        }
        self.snapshot_asked.insert(peer, now);
        let request = SnapshotRequest {
            v: WIRE_VERSION,
            log: ByteBuf::from(self.log_id.to_vec()),
        };
        self.swarm
            .behaviour_mut()
            .snapshot
            .send_request(&peer, request);
        if let Some(round) = self.rounds.get_mut(&peer) {
            round.snapshot = true;
        }
    }

    async fn on_snapshot(
        &mut self,
        event: request_response::Event<SnapshotRequest, SnapshotResponse>,
    ) {
        match event {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request {
                    request, channel, ..
                } => {
                    let response = self.serve_snapshot(peer, &request).await;
                    let _ = self
                        .swarm
                        .behaviour_mut()
                        .snapshot
                        .send_response(channel, response);
                }
                request_response::Message::Response { response, .. } => {
                    self.on_snapshot_response(peer, response).await;
                }
            },
            request_response::Event::OutboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, %error, "snapshot request failed");
                if let request_response::OutboundFailure::Io(e) = &error {
                    self.strike_malformed(peer, e);
                }
                if let Some(round) = self.rounds.get_mut(&peer) {
                    round.snapshot = false;
                }
                self.maybe_finish(peer).await;
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                if let request_response::InboundFailure::Io(e) = &error {
                    self.strike_malformed(peer, e);
                }
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    async fn serve_snapshot(
        &mut self,
        peer: PeerId,
        request: &SnapshotRequest,
    ) -> SnapshotResponse {
        let mut response = SnapshotResponse {
            v: WIRE_VERSION,
            snapshot: None,
        };
        if !self.same_log(&request.log) {
            return response;
        }
        let snapshot = match self.store.export_snapshot().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(%peer, error = %e, "cannot export a snapshot");
                return response;
            }
        };
        let sealed = snapshot.seal(self.store.keys());
        // Room for the response map around the snapshot bytes.
        if sealed.len() > MAX_SNAPSHOT_TRANSFER_BYTES - 64 {
            tracing::warn!(%peer, len = sealed.len(), max = MAX_SNAPSHOT_TRANSFER_BYTES, "snapshot too large to send");
            return response;
        }
        self.counters.snapshots_served += 1;
        response.snapshot = Some(ByteBuf::from(sealed));
        response
    }

    async fn on_snapshot_response(&mut self, peer: PeerId, response: SnapshotResponse) {
        if let Some(sealed) = response.snapshot {
            match Snapshot::open(&sealed, self.store.keys()) {
                Ok(snapshot) => match self.store.import_snapshot(snapshot).await {
                    Ok(won) => {
                        self.counters.snapshots_in += 1;
                        self.emit(SyncEvent::Applied {
                            peer: peer.to_string(),
                            entries: won,
                            via: "snapshot",
                        });
                    }
                    Err(e) => tracing::error!(%peer, error = %e, "importing a snapshot failed"),
                },
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "invalid snapshot");
                    self.strike(peer, "snapshot");
                }
            }
        }
        if let Some(round) = self.rounds.get_mut(&peer) {
            round.snapshot = false;
            // Fetch the entries written after the snapshot.
            round.again = true;
        }
        self.maybe_finish(peer).await;
    }
}
