//! The running SHA-256 of an upload's plaintext, on a core of its own.
//!
//! Sealing (AES-256-GCM) and the plaintext digest are independent, and on
//! one core the digest is the larger half of an upload's CPU. A [`Digest`]
//! hashes the first [`OFFLOAD_AFTER`] bytes it is given inline (small
//! uploads never pay for a thread), then hands the chunks (`Bytes`: shared,
//! not copied) in batches to a task on tokio's blocking pool through a
//! bounded channel, so at most [`QUEUE`] batches of [`BATCH`] bytes wait
//! there and a fast body cannot outrun it by more than that.
//!
//! Fail-safe: when the task is gone (it panicked, or the runtime is
//! shutting down) the digest becomes unknown ([`Digest::finish`] returns
//! `None`) and the caller recomputes it from the stored ciphertext; it is
//! never a digest of some of the bytes. Dropping a `Digest` (an aborted
//! upload) closes the channel: the task hashes what is queued, at most
//! `QUEUE × BATCH` bytes, and ends.
use bytes::Bytes;
use sha2::{Digest as _, Sha256};
use std::sync::{Arc, Weak};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Bytes hashed inline before the digest moves to the blocking pool.
pub(crate) const OFFLOAD_AFTER: u64 = 1 << 20;
/// Bytes per batch sent to the hashing task.
pub(crate) const BATCH: usize = 256 << 10;
/// Batches queued at most.
pub(crate) const QUEUE: usize = 8;

pub(crate) struct Digest {
    state: State,
    /// Bytes given to this `Digest` (not counting the state it started from).
    seen: u64,
}

enum State {
    Inline(Sha256),
    Offloaded(Worker),
    /// The hashing task is gone: the digest is unknown.
    Lost,
}

struct Worker {
    tx: mpsc::Sender<Vec<Bytes>>,
    batch: Vec<Bytes>,
    batch_len: usize,
    task: JoinHandle<Sha256>,
    /// Alive exactly as long as the task runs.
    #[cfg_attr(not(test), allow(dead_code))]
    alive: Weak<()>,
}

impl Digest {
    /// Continue from `state` (a fresh `Sha256::new()` or an earlier
    /// request's running digest).
    pub(crate) fn new(state: Sha256) -> Digest {
        Digest {
            state: State::Inline(state),
            seen: 0,
        }
    }

    pub(crate) async fn update(&mut self, chunk: &Bytes) {
        if chunk.is_empty() {
            return;
        }
        self.seen += chunk.len() as u64;
        match &mut self.state {
            State::Inline(h) if self.seen <= OFFLOAD_AFTER => h.update(chunk),
            State::Inline(_) => {
                let State::Inline(h) = std::mem::replace(&mut self.state, State::Lost) else {
                    return;
                };
                let mut w = Worker::spawn(h);
                w.push(chunk.clone()).await;
                if !w.lost() {
                    self.state = State::Offloaded(w);
                }
            }
            State::Offloaded(w) => {
                w.push(chunk.clone()).await;
                if w.lost() {
                    self.state = State::Lost;
                }
            }
            State::Lost => {}
        }
    }

    /// The running state after every byte given, `None` when it is unknown.
    pub(crate) async fn finish(self) -> Option<Sha256> {
        match self.state {
            State::Inline(h) => Some(h),
            State::Offloaded(w) => w.join().await,
            State::Lost => None,
        }
    }

    /// While a hashing task runs: a handle that dies with it (tests).
    #[cfg(test)]
    pub(crate) fn task_alive(&self) -> Option<Weak<()>> {
        match &self.state {
            State::Offloaded(w) => Some(w.alive.clone()),
            _ => None,
        }
    }
}

impl Worker {
    fn spawn(mut h: Sha256) -> Worker {
        let (tx, mut rx) = mpsc::channel::<Vec<Bytes>>(QUEUE);
        let marker = Arc::new(());
        let alive = Arc::downgrade(&marker);
        let task = tokio::task::spawn_blocking(move || {
            let _marker = marker;
            while let Some(batch) = rx.blocking_recv() {
                for b in batch {
                    h.update(&b);
                }
            }
            h
        });
        Worker {
            tx,
            batch: Vec::with_capacity(64),
            batch_len: 0,
            task,
            alive,
        }
    }

    fn lost(&self) -> bool {
        self.tx.is_closed()
    }

    async fn push(&mut self, chunk: Bytes) {
        self.batch_len += chunk.len();
        self.batch.push(chunk);
        if self.batch_len >= BATCH {
            self.send().await;
        }
    }

    async fn send(&mut self) {
        let batch = std::mem::replace(&mut self.batch, Vec::with_capacity(64));
        self.batch_len = 0;
        if self.tx.send(batch).await.is_err() {
            tracing::warn!("upload digest task ended early; the digest will be recomputed");
        }
    }

    async fn join(mut self) -> Option<Sha256> {
        if !self.batch.is_empty() {
            self.send().await;
        }
        let Worker { tx, task, .. } = self;
        drop(tx);
        match task.await {
            Ok(h) => Some(h),
            Err(e) => {
                tracing::warn!(error = %e, "upload digest task failed; the digest will be recomputed");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn data(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 31 % 253) as u8).collect()
    }

    async fn feed(d: &mut Digest, data: &[u8], piece: usize) {
        for c in data.chunks(piece) {
            d.update(&Bytes::copy_from_slice(c)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_multi_chunk_digest_on_the_blocking_pool_equals_sha256_of_the_plaintext() {
        let n = 5 * OFFLOAD_AFTER as usize + 12_345;
        let plain = data(n);
        for piece in [1000, 16 * 1024 + 3, 300_000] {
            let mut d = Digest::new(Sha256::new());
            feed(&mut d, &plain, piece).await;
            assert!(d.task_alive().is_some(), "{piece}: hashing moved to a task");
            let h = d.finish().await.expect("digest known");
            assert_eq!(h.finalize(), Sha256::digest(&plain), "{piece}");
        }
        // Continued from an earlier request's state, across the switch.
        let mut first = Digest::new(Sha256::new());
        feed(&mut first, &plain[..700_000], 70_000).await;
        let mut second = Digest::new(first.finish().await.unwrap());
        feed(&mut second, &plain[700_000..], 65_536).await;
        assert_eq!(
            second.finish().await.unwrap().finalize(),
            Sha256::digest(&plain)
        );
    }

    #[tokio::test]
    async fn a_small_body_is_hashed_inline_without_a_task() {
        let plain = data(OFFLOAD_AFTER as usize);
        let mut d = Digest::new(Sha256::new());
        feed(&mut d, &plain, 4096).await;
        assert!(d.task_alive().is_none());
        assert_eq!(d.finish().await.unwrap().finalize(), Sha256::digest(&plain));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_dropped_digest_ends_its_hashing_task() {
        let plain = data(3 * OFFLOAD_AFTER as usize);
        let mut d = Digest::new(Sha256::new());
        feed(&mut d, &plain, 64 * 1024).await;
        let alive = d.task_alive().expect("a hashing task");
        drop(d);
        let t = Instant::now();
        while alive.upgrade().is_some() {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "the hashing task outlived its upload"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}
