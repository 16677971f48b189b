//! Sealed segments to a local file: whole blocks handed to tokio's blocking
//! pool by value (no copy into an I/O buffer), one write in flight while the
//! next block is sealed. Two buffers alternate, so an upload holds at most
//! two blocks whatever its size.
//!
//! Sync behind: every [`SYNC_EVERY`] bytes an `fdatasync` starts beside the
//! writes (at most one at a time; its error fails the next write or sync),
//! so the disk works while bytes still arrive and the sync that ends an
//! upload finds little left to write, instead of the whole body (the page
//! cache would otherwise hold gigabytes of dirty pages until then).
use crate::VaultError;
use std::io::Write;
use std::sync::Arc;
use tokio::task::JoinHandle;

/// Bytes per write: 16 sealed segments (about 1 MiB).
pub(crate) const BLOCK: usize = 16 * crate::crypto::SEALED;
/// Bytes written between two syncs behind.
pub(crate) const SYNC_EVERY: u64 = 32 << 20;

type Flight = JoinHandle<std::io::Result<Vec<u8>>>;

pub(crate) struct BlockFile {
    file: Arc<std::fs::File>,
    /// The write in flight; it returns its buffer for reuse.
    flight: Option<Flight>,
    spare: Option<Vec<u8>>,
    /// The sync behind in flight.
    syncing: Option<JoinHandle<std::io::Result<()>>>,
    unsynced: u64,
}

fn joined(
    r: Result<std::io::Result<Vec<u8>>, tokio::task::JoinError>,
) -> Result<Vec<u8>, VaultError> {
    r.map_err(|e| VaultError::Io(std::io::Error::other(e)))?
        .map_err(VaultError::Io)
}

impl BlockFile {
    /// Writes go to `file`'s current position, in order.
    pub(crate) fn new(file: std::fs::File) -> BlockFile {
        BlockFile {
            file: Arc::new(file),
            flight: None,
            spare: None,
            syncing: None,
            unsynced: 0,
        }
    }

    /// An empty buffer of [`BLOCK`] capacity (a returned one when there is one).
    pub(crate) fn buffer(&mut self) -> Vec<u8> {
        match self.spare.take() {
            Some(mut b) => {
                b.clear();
                b
            }
            None => Vec::with_capacity(BLOCK + crate::crypto::SEALED),
        }
    }

    /// Queue `block` behind the write in flight (waiting for that one).
    pub(crate) async fn write(&mut self, block: Vec<u8>) -> Result<(), VaultError> {
        self.settle().await?;
        if block.is_empty() {
            self.spare = Some(block);
            return Ok(());
        }
        self.unsynced += block.len() as u64;
        let file = self.file.clone();
        self.flight = Some(tokio::task::spawn_blocking(move || {
            (&*file).write_all(&block)?;
            Ok(block)
        }));
        if self.unsynced >= SYNC_EVERY {
            self.sync_behind().await?;
        }
        Ok(())
    }

    /// Start a sync unless one is still at work (then the next block tries again).
    async fn sync_behind(&mut self) -> Result<(), VaultError> {
        if let Some(s) = &self.syncing {
            if !s.is_finished() {
                return Ok(());
            }
            self.wait_sync().await?;
        }
        self.unsynced = 0;
        let file = self.file.clone();
        self.syncing = Some(tokio::task::spawn_blocking(move || file.sync_data()));
        Ok(())
    }

    async fn wait_sync(&mut self) -> Result<(), VaultError> {
        if let Some(s) = self.syncing.take() {
            s.await
                .map_err(|e| VaultError::Io(std::io::Error::other(e)))??;
        }
        Ok(())
    }

    /// Wait for the write in flight.
    pub(crate) async fn settle(&mut self) -> Result<(), VaultError> {
        if let Some(f) = self.flight.take() {
            self.spare = Some(joined(f.await)?);
        }
        Ok(())
    }

    /// Every write done and the data (not necessarily the metadata) on disk.
    pub(crate) async fn sync_data(&mut self) -> Result<(), VaultError> {
        self.settle().await?;
        self.wait_sync().await?;
        self.unsynced = 0;
        let file = self.file.clone();
        tokio::task::spawn_blocking(move || file.sync_data())
            .await
            .map_err(|e| VaultError::Io(std::io::Error::other(e)))??;
        Ok(())
    }

    /// The file back, after every write (and errors from them).
    pub(crate) async fn into_file(mut self) -> Result<std::fs::File, VaultError> {
        self.settle().await?;
        self.wait_sync().await?;
        Arc::try_unwrap(self.file)
            .map_err(|_| VaultError::Io(std::io::Error::other("block file still shared")))
    }
}
