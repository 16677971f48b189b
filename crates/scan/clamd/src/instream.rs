//! One INSTREAM request on one connection.
//!
//! `zINSTREAM\0`, then chunks (a `u32` big-endian length and that many bytes),
//! then a zero-length chunk; the answer ends with `\0`. Every write and read is
//! bounded by the scan's deadline.
//!
//! When content passes clamd's `StreamMaxLength`, clamd answers `INSTREAM size
//! limit exceeded. ERROR` and closes the connection while we may still be
//! writing: a broken pipe or reset during the write phase is therefore not an
//! error by itself. The reply is still read, and only if there is none is the
//! connection considered lost.

use crate::pool::Conn;
use crate::reply::{RawReply, ReadError, StreamReply, read_reply, strip_session_id};
use moat_core::pool::{is_disconnect, is_timeout};
use moat_core::{Blob, EngineError};
use std::io::{self, Write};
use std::time::Instant;

/// Why a request failed.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The connection was closed before any reply: worth one retry when the
    /// connection came from the pool.
    Lost(String),
    Engine(EngineError),
}

impl From<EngineError> for Failure {
    fn from(e: EngineError) -> Self {
        Failure::Engine(e)
    }
}

/// The parsed answer, and whether the connection may be reused.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) reply: StreamReply,
    pub(crate) reusable: bool,
}

/// Streams `blob` to clamd on `conn` and reads the answer.
pub(crate) fn instream(
    conn: &mut Conn,
    blob: &Blob,
    chunk_size: usize,
    deadline: Instant,
) -> Result<Answer, Failure> {
    let write_err = match send(conn, blob, chunk_size, deadline) {
        Ok(()) => None,
        Err(SendError::Closed(e)) => Some(e),
        Err(SendError::Failed(f)) => return Err(f),
    };
    let (text, extra) = match read_reply(&mut conn.stream, deadline) {
        Ok(RawReply::Message { text, extra }) => (text, extra),
        Ok(RawReply::Closed) => return Err(Failure::Lost(lost("closed", write_err.as_ref()))),
        Err(ReadError::Deadline) => return Err(EngineError::Timeout.into()),
        Err(ReadError::Io(e)) if is_timeout(&e) => return Err(EngineError::Timeout.into()),
        Err(ReadError::Io(e)) if is_disconnect(&e) => {
            return Err(Failure::Lost(lost(&e.to_string(), write_err.as_ref())));
        }
        Err(ReadError::Io(e)) => {
            return Err(EngineError::Unavailable(format!("reading clamd's reply: {e}")).into());
        }
        Err(e @ ReadError::TooLong) => return Err(EngineError::Protocol(e.to_string()).into()),
    };
    let body = match conn.next_id {
        Some(id) => {
            conn.next_id = Some(id + 1);
            strip_session_id(&text, id).map_err(EngineError::Protocol)?
        }
        None => text.as_str(),
    };
    let reply = StreamReply::parse(body).map_err(EngineError::Protocol)?;
    let reusable = conn.next_id.is_some()
        && write_err.is_none()
        && !extra
        && matches!(reply, StreamReply::Clean | StreamReply::Found(_));
    if let Some(e) = write_err {
        tracing::debug!(error = %e, reply = %body, "clamd closed the stream early");
    }
    Ok(Answer { reply, reusable })
}

fn lost(what: &str, write_err: Option<&io::Error>) -> String {
    match write_err {
        Some(w) => {
            format!("clamd closed the connection without a reply ({what}; while sending: {w})")
        }
        None => format!("clamd closed the connection without a reply ({what})"),
    }
}

enum SendError {
    /// The peer closed or reset the connection: read what it said.
    Closed(io::Error),
    Failed(Failure),
}

fn send(
    conn: &mut Conn,
    blob: &Blob,
    chunk_size: usize,
    deadline: Instant,
) -> Result<(), SendError> {
    // One buffer: 4 bytes of length, then the chunk, written with one call.
    let mut buf = vec![0u8; 4 + chunk_size];
    write(conn, b"zINSTREAM\0", deadline)?;
    let mut offset = 0u64;
    loop {
        let n = blob
            .read_at(offset, &mut buf[4..])
            .map_err(|e| SendError::Failed(EngineError::Io(e).into()))?;
        if n == 0 {
            break;
        }
        // n <= chunk_size <= MAX_CHUNK_SIZE, which fits in a u32.
        let len = u32::try_from(n).map_err(|_| {
            SendError::Failed(EngineError::Other("chunk larger than 4 GiB".into()).into())
        })?;
        buf[..4].copy_from_slice(&len.to_be_bytes());
        write(conn, &buf[..4 + n], deadline)?;
        offset += n as u64;
    }
    write(conn, &[0u8; 4], deadline)
}

fn write(conn: &mut Conn, bytes: &[u8], deadline: Instant) -> Result<(), SendError> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(SendError::Failed(EngineError::Timeout.into()));
    }
    let res = conn
        .stream
        .set_write_timeout(left)
        .and_then(|()| conn.stream.write_all(bytes));
    match res {
        Ok(()) => Ok(()),
        Err(e) if is_timeout(&e) => Err(SendError::Failed(EngineError::Timeout.into())),
        Err(e) if is_disconnect(&e) => Err(SendError::Closed(e)),
        Err(e) => Err(SendError::Failed(
            EngineError::Unavailable(format!("sending to clamd: {e}")).into(),
        )),
    }
}
