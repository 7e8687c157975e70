//! Reading a CAR response while it arrives: each block is re-hashed as soon as its
//! frame is complete, so verification overlaps the transfer instead of following it.
//!
//! [`BodyReader`] turns a reqwest body into an `AsyncRead` that enforces the byte cap
//! (the body is dropped as soon as it passes it) and the stall timeout (no chunk for
//! that long fails the read), recording *why* it failed so the caller gets a typed
//! [`FailureCause`] rather than iroh-car's stringly parse error. [`read_car`] then
//! drives iroh-car over it and applies the same rules as [`Car::decode_expecting`]:
//! one root equal to the requested CID (checked before any block is read), every
//! block verified within the block cap, at most the block-count cap, and the DAG
//! complete with nothing extra.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use cid::Cid;
use futures::Stream;
use iroh_car::CarReader;
use tokio::io::{AsyncRead, ReadBuf};

use super::block::VerifiedBlock;
use super::car::{Car, CarLimits};
use super::error::{CarError, FailureCause};

/// Where a [`BodyReader`] leaves the cause of its failure.
type FailureCell = Arc<Mutex<Option<FailureCause>>>;

/// A response body (a stream of byte chunks `B`) as `AsyncRead`, with a byte cap
/// and a stall timeout.
struct BodyReader<S, B> {
    chunks: Pin<Box<S>>,
    pending: Option<B>,
    pos: usize,
    read: u64,
    limit: u64,
    stall: Duration,
    timer: Pin<Box<tokio::time::Sleep>>,
    failure: FailureCell,
}

impl<S, B> BodyReader<S, B> {
    fn fail(&self, cause: FailureCause) -> Poll<io::Result<()>> {
        let text = cause.to_string();
        if let Ok(mut slot) = self.failure.lock() {
            *slot = Some(cause);
        }
        Poll::Ready(Err(io::Error::other(text)))
    }
}

impl<S, B> AsyncRead for BodyReader<S, B>
where
    S: Stream<Item = reqwest::Result<B>>,
    B: AsRef<[u8]> + Unpin,
{
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if let Some(chunk) = &this.pending {
                let rest = chunk.as_ref().get(this.pos..).unwrap_or_default();
                if !rest.is_empty() {
                    let n = buf.remaining().min(rest.len());
                    buf.put_slice(rest.get(..n).unwrap_or_default());
                    this.pos = this.pos.saturating_add(n);
                    return Poll::Ready(Ok(()));
                }
                this.pending = None;
            }
            match this.chunks.as_mut().poll_next(cx) {
                Poll::Ready(Some(Ok(chunk))) => {
                    this.read = this.read.saturating_add(chunk.as_ref().len() as u64);
                    if this.read > this.limit {
                        return this.fail(FailureCause::TooLarge { limit: this.limit });
                    }
                    let next = tokio::time::Instant::now() + this.stall;
                    this.timer.as_mut().reset(next);
                    this.pending = Some(chunk);
                    this.pos = 0;
                }
                Poll::Ready(Some(Err(e))) => {
                    return this.fail(FailureCause::Network(super::client::error_chain(&e)));
                }
                Poll::Ready(None) => return Poll::Ready(Ok(())),
                Poll::Pending => {
                    if this.timer.as_mut().poll(cx).is_ready() {
                        return this.fail(FailureCause::Stalled(this.stall));
                    }
                    return Poll::Pending;
                }
            }
        }
    }
}

/// Reads and verifies the CAR in `resp` (already checked for status, encoding and
/// Content-Length) rooted at `want`.
pub(crate) async fn read_car(
    resp: reqwest::Response,
    want: &Cid,
    limits: &CarLimits,
    stall: Duration,
) -> Result<Car, FailureCause> {
    let failure: FailureCell = Arc::default();
    let reader = BodyReader {
        chunks: Box::pin(resp.bytes_stream()),
        pending: None,
        pos: 0,
        read: 0,
        limit: limits.max_bytes(),
        stall,
        timer: Box::pin(tokio::time::sleep(stall)),
        failure: failure.clone(),
    };
    // The reader's own failure (cap, stall, network) wins over iroh-car's report of it.
    let cause = |e: iroh_car::Error| -> FailureCause {
        failure
            .lock()
            .ok()
            .and_then(|mut f| f.take())
            .unwrap_or_else(|| FailureCause::Tampered(CarError::Malformed(e.to_string())))
    };
    let mut car = CarReader::new(tokio::io::BufReader::with_capacity(64 * 1024, reader))
        .await
        .map_err(cause)?;
    if car.header().version() != 1 {
        return Err(FailureCause::Tampered(CarError::UnsupportedVersion(
            car.header().version(),
        )));
    }
    let root = match car.header().roots() {
        [root] => *root,
        roots => return Err(FailureCause::Tampered(CarError::RootCount(roots.len()))),
    };
    if root != *want {
        return Err(FailureCause::Tampered(CarError::WrongRoot {
            want: *want,
            got: root,
        }));
    }
    let mut blocks = Vec::new();
    while let Some((cid, data)) = car.next_block().await.map_err(cause)? {
        if blocks.len() >= limits.max_blocks() {
            return Err(FailureCause::Tampered(CarError::TooManyBlocks {
                limit: limits.max_blocks(),
            }));
        }
        let block = VerifiedBlock::with_limit(cid, data, limits.max_block_bytes())
            .map_err(|e| FailureCause::Tampered(CarError::Block(e)))?;
        blocks.push(block);
    }
    Car::from_blocks(root, blocks, limits).map_err(FailureCause::Tampered)
}
