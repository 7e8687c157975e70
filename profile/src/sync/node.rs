//! The sync node: a libp2p swarm owned by one task (the event loop), driven through a
//! cloneable [`Node`] handle.
//!
//! * **Live path.** Every entry this device commits is published on the wallet's
//!   gossipsub topic, batched when several commit together. Received gossip is
//!   decoded, verified and applied by [`Store::ingest`]; only then is it reported
//!   to gossipsub as `Accept` (forwarded) or `Reject` (penalised, not forwarded).
//! * **Catch-up.** With every device that joins the wallet topic, when an entry
//!   arrives before its predecessor, and every anti-entropy period (jittered), the
//!   node sends its version vector and ingests the pages of entries it lacks. Pending
//!   entries wait in SQLite, so a restarted node resumes where it stopped.
//! * **Peers.** Explicit and remembered addresses are dialled at start and redialled
//!   with exponential backoff; peers this node connects to are remembered in the peer
//!   book; a peer that sends invalid data collects strikes and is banned.
//!
//! The loop is a `biased` select: commands first, then local changes, then swarm
//! events, then the housekeeping tick. Everything it holds is bounded.

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
    CATCHUP_PROTOCOL, CatchupCodec, CatchupRequest, CatchupResponse, Gossip, MAX_GOSSIP_BYTES,
    MAX_GOSSIP_ENTRIES, MAX_RESPONSE_BYTES, WIRE_VERSION,
};
use crate::oplog::{Change, IngestReport, MAX_INGEST, Origin, Rejected, Store, VersionVector};

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

#[derive(NetworkBehaviour)]
struct Behaviour {
    gossip: gossipsub::Behaviour,
    catchup: request_response::Behaviour<CatchupCodec>,
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
    /// Starts a node for `store` on the wallet's gossip `topic`, identified by the
    /// device key `identity`. Returns once every listen address is up; the event loop
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
        let topic = gossipsub::IdentTopic::new(topic);
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
                    reason: e.to_string(),
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
        let changes = store.subscribe();
        let anti_entropy = config.anti_entropy;
        let mut event_loop = EventLoop {
            swarm,
            store,
            topic,
            log_id,
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
                .validation_mode(gossipsub::ValidationMode::Strict)
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
            let gossip = gossipsub::Behaviour::new(
                gossipsub::MessageAuthenticity::Signed(key.clone()),
                gossip_config,
            )
            .map_err(|e| Box::<dyn std::error::Error + Send + Sync>::from(e.to_owned()))?;
            let catchup = request_response::Behaviour::with_codec(
                CatchupCodec,
                [(CATCHUP_PROTOCOL, request_response::ProtocolSupport::Full)],
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
                    return Err(SyncError::Listen { addr: "?".into(), reason: error.to_string() });
                }
                _ => {}
            },
            () = &mut deadline => return Err(SyncError::Listen { addr: "?".into(), reason: "timed out".into() }),
        }
    }
    Ok(addrs)
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

struct Round {
    applied: usize,
    again: bool,
}

struct EventLoop {
    swarm: Swarm<Behaviour>,
    store: Store,
    topic: gossipsub::IdentTopic,
    log_id: [u8; 32],
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
                event = self.swarm.select_next_some() => self.on_swarm_event(event).await,
                _ = tick.tick() => self.on_tick().await,
            }
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
                    if batch.len() == MAX_GOSSIP_ENTRIES
                        || bytes + e.bytes.len() + PER_ENTRY_OVERHEAD > MAX_GOSSIP_BYTES - 64
                    {
                        self.publish(std::mem::take(&mut batch));
                        bytes = 0;
                    }
                    bytes += e.bytes.len() + PER_ENTRY_OVERHEAD;
                    batch.push(e.bytes.clone());
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

    /// Ingests entries from `peer` in store-sized chunks; strikes for hostile
    /// rejections. Returns the combined report, or `None` when the store failed.
    async fn ingest(&mut self, peer: PeerId, entries: Vec<Vec<u8>>) -> Option<IngestReport> {
        let mut report = IngestReport::default();
        let mut rest = entries;
        while !rest.is_empty() {
            let tail = rest.split_off(rest.len().min(MAX_INGEST));
            let chunk = std::mem::replace(&mut rest, tail);
            match self.store.ingest(chunk).await {
                Ok(r) => {
                    report.applied.extend(r.applied);
                    report.pending.extend(r.pending);
                    report.duplicates.extend(r.duplicates);
                    report.rejected.extend(r.rejected);
                }
                Err(e) => {
                    tracing::error!(error = %e, "the store refused an ingest");
                    return None;
                }
            }
        }
        self.counters.entries_in += report.applied.len() as u64;
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
        Some(report)
    }

    // ---- gossip in -----------------------------------------------------------------

    async fn on_gossip(&mut self, event: gossipsub::Event) {
        match event {
            gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            } => {
                let acceptance = self.on_gossip_message(propagation_source, &message).await;
                let _ = self
                    .swarm
                    .behaviour_mut()
                    .gossip
                    .report_message_validation_result(&message_id, &propagation_source, acceptance);
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

    async fn on_gossip_message(
        &mut self,
        source: PeerId,
        message: &gossipsub::Message,
    ) -> gossipsub::MessageAcceptance {
        if message.topic != self.topic.hash() {
            return gossipsub::MessageAcceptance::Ignore;
        }
        if self.config.gossip_drop_rate > 0.0
            && rand::random::<f64>() < self.config.gossip_drop_rate
        {
            return gossipsub::MessageAcceptance::Ignore;
        }
        let gossip = match Gossip::decode(&message.data) {
            Ok(g) => g,
            Err(e) => {
                tracing::debug!(%source, error = %e, "malformed gossip");
                self.strike(source, "wire");
                return gossipsub::MessageAcceptance::Reject;
            }
        };
        let entries = gossip.entries.into_iter().map(ByteBuf::into_vec).collect();
        let Some(report) = self.ingest(source, entries).await else {
            return gossipsub::MessageAcceptance::Ignore;
        };
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
        if report.rejected.iter().any(|(_, r)| is_strike(r)) {
            gossipsub::MessageAcceptance::Reject
        } else {
            gossipsub::MessageAcceptance::Accept
        }
    }

    // ---- catch-up ------------------------------------------------------------------

    async fn start_catchup(&mut self, peer: PeerId) {
        if let Some(round) = self.rounds.get_mut(&peer) {
            round.again = true;
            return;
        }
        if self.request_page(peer).await {
            self.rounds.insert(
                peer,
                Round {
                    applied: 0,
                    again: false,
                },
            );
        }
    }

    /// Sends one catch-up request with our current version vector.
    async fn request_page(&mut self, peer: PeerId) -> bool {
        let vector = match self.store.version_vector().await {
            Ok(v) => v,
            Err(e) => {
                tracing::error!(error = %e, "reading the version vector failed");
                return false;
            }
        };
        let request = CatchupRequest {
            v: WIRE_VERSION,
            log: ByteBuf::from(self.log_id.to_vec()),
            have: vector
                .iter()
                .map(|(d, s)| (ByteBuf::from(d.to_vec()), *s))
                .collect(),
            max: self.config.page as u64,
        };
        self.swarm
            .behaviour_mut()
            .catchup
            .send_request(&peer, request);
        true
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
                if let request_response::OutboundFailure::Io(e) = &error
                    && e.kind() == std::io::ErrorKind::InvalidData
                {
                    self.strike(peer, "wire");
                }
                self.rounds.remove(&peer);
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                if let request_response::InboundFailure::Io(e) = &error
                    && e.kind() == std::io::ErrorKind::InvalidData
                {
                    self.strike(peer, "wire");
                }
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    /// Answers a catch-up request with the entries the requester lacks.
    async fn serve(&mut self, peer: PeerId, request: CatchupRequest) -> CatchupResponse {
        let empty = CatchupResponse {
            v: WIRE_VERSION,
            more: false,
            entries: Vec::new(),
        };
        if request.log.as_slice() != self.log_id.as_slice() {
            // Another wallet's device: it learns nothing from us.
            *self
                .counters
                .rejected
                .entry("foreign_log_request".into())
                .or_insert(0) += 1;
            return empty;
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
            Err(e) => {
                tracing::warn!(%peer, error = %e, "cannot serve catch-up");
                return empty;
            }
        };
        let mut entries = Vec::with_capacity(page.entries.len());
        let mut bytes = 64usize;
        let mut more = page.more;
        for entry in page.entries {
            if bytes + entry.len() + PER_ENTRY_OVERHEAD > MAX_RESPONSE_BYTES {
                more = true;
                break;
            }
            bytes += entry.len() + PER_ENTRY_OVERHEAD;
            entries.push(ByteBuf::from(entry));
        }
        self.counters.entries_served += entries.len() as u64;
        CatchupResponse {
            v: WIRE_VERSION,
            more,
            entries,
        }
    }

    async fn on_page(&mut self, peer: PeerId, response: CatchupResponse) {
        let count = response.entries.len();
        let entries = response
            .entries
            .into_iter()
            .map(ByteBuf::into_vec)
            .collect();
        let report = self.ingest(peer, entries).await;
        let applied = report.as_ref().map_or(0, |r| r.applied.len());
        let progressed = report
            .as_ref()
            .is_some_and(|r| !r.applied.is_empty() || !r.pending.is_empty());
        if applied > 0 {
            self.emit(SyncEvent::Applied {
                peer: peer.to_string(),
                entries: applied,
                via: "catchup",
            });
        }
        let Some(round) = self.rounds.get_mut(&peer) else {
            return;
        };
        round.applied += applied;
        let again = std::mem::take(&mut round.again);
        // Ask for the next page while the peer has more and we keep learning; one more
        // round if something asked for one meanwhile.
        if (response.more && progressed && count > 0) || again {
            if !self.request_page(peer).await {
                self.rounds.remove(&peer);
            }
            return;
        }
        let total = round.applied;
        self.rounds.remove(&peer);
        self.last_catchup.insert(peer, now_ms());
        self.emit(SyncEvent::CaughtUp {
            peer: peer.to_string(),
            entries: total,
        });
    }
}
