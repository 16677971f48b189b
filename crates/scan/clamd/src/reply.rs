//! clamd replies: bounded reading up to the `\0` terminator, and parsing.
//!
//! With the `z` command prefix clamd ends every reply with `\0`. Inside an
//! IDSESSION each reply starts with the request's number: `3: stream: OK`.
//!
//! INSTREAM answers, and what they become:
//! * `stream: OK` → clean;
//! * `stream: NAME FOUND` → a hit (NAME may contain spaces and colons);
//!   `Heuristics.Encrypted.*` → unscannable/encrypted and
//!   `Heuristics.Limits.Exceeded.*` → unscannable/limits_exceeded (or timeout for
//!   `MaxScanTime`): clamd reports these with `AlertEncrypted yes` /
//!   `AlertExceedsMax yes`, and they mean the content was *not* fully scanned;
//!   other `Heuristics.*` and `PUA.*` names are suspicious hits;
//! * `INSTREAM size limit exceeded. ERROR` → unscannable/too_large;
//! * anything else ending in `ERROR` → an engine (protocol) error.

use crate::stream::Stream;
use moat_core::{EngineError, EngineScan, Hit, Reason};
use std::io::{self, Read};
use std::time::Instant;

/// Longest reply accepted; real ones are under 1 KiB.
pub(crate) const MAX_REPLY: usize = 64 * 1024;

/// One reply as read from the socket.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum RawReply {
    /// Text before the `\0` (or before EOF, when clamd closed without one).
    /// `extra` is set when bytes followed the terminator.
    Message { text: String, extra: bool },
    /// The connection was closed before any byte of a reply.
    Closed,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum ReadError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("reply longer than {MAX_REPLY} bytes")]
    TooLong,
    #[error("deadline passed")]
    Deadline,
}

/// Reads one reply, never past [`MAX_REPLY`] bytes nor past `deadline`.
pub(crate) fn read_reply(s: &mut Stream, deadline: Instant) -> Result<RawReply, ReadError> {
    let mut got: Vec<u8> = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ReadError::Deadline);
        }
        s.set_read_timeout(left)?;
        let n = match s.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        };
        if n == 0 {
            if got.is_empty() {
                return Ok(RawReply::Closed);
            }
            return Ok(message(&got, false));
        }
        if let Some(end) = buf[..n].iter().position(|&b| b == 0) {
            if got.len() + end > MAX_REPLY {
                return Err(ReadError::TooLong);
            }
            got.extend_from_slice(&buf[..end]);
            return Ok(message(&got, end + 1 < n));
        }
        if got.len() + n > MAX_REPLY {
            return Err(ReadError::TooLong);
        }
        got.extend_from_slice(&buf[..n]);
    }
}

fn message(bytes: &[u8], extra: bool) -> RawReply {
    RawReply::Message {
        text: String::from_utf8_lossy(bytes).trim_end().to_string(),
        extra,
    }
}

/// Removes the `N: ` prefix of a reply inside an IDSESSION, checking that N is
/// the request's number. Replies without a number (clamd's own errors about the
/// session) are returned whole.
pub(crate) fn strip_session_id(text: &str, id: u64) -> Result<&str, String> {
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    match text[digits..].strip_prefix(": ") {
        Some(rest) if digits > 0 => match text[..digits].parse::<u64>() {
            Ok(n) if n == id => Ok(rest),
            _ => Err(format!(
                "reply for request {} while waiting for {id}: {text:?}",
                &text[..digits]
            )),
        },
        _ => Ok(text),
    }
}

/// An INSTREAM answer, with the session number already removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StreamReply {
    Clean,
    Found(String),
    SizeLimit(String),
    Error(String),
}

impl StreamReply {
    pub(crate) fn parse(text: &str) -> Result<StreamReply, String> {
        let text = text.trim();
        if text.ends_with("ERROR") {
            if text.contains("size limit exceeded") {
                return Ok(StreamReply::SizeLimit(text.to_string()));
            }
            return Ok(StreamReply::Error(text.to_string()));
        }
        let body = text
            .strip_prefix("stream: ")
            .ok_or_else(|| unexpected(text))?;
        if body == "OK" {
            return Ok(StreamReply::Clean);
        }
        match body.strip_suffix(" FOUND").map(str::trim) {
            Some(name) if !name.is_empty() => Ok(StreamReply::Found(name.to_string())),
            _ => Err(unexpected(text)),
        }
    }

    /// What the engine answers for this reply. Never clean unless clamd said `OK`.
    pub(crate) fn into_result(self) -> Result<EngineScan, EngineError> {
        match self {
            StreamReply::Clean => Ok(EngineScan::default()),
            StreamReply::Found(name) => found(name),
            StreamReply::SizeLimit(text) => Err(EngineError::Unscannable {
                reason: Reason::TooLarge,
                detail: format!("clamd: {text} (raise StreamMaxLength to scan larger files)"),
            }),
            StreamReply::Error(text) => Err(EngineError::Protocol(format!("clamd: {text}"))),
        }
    }
}

fn unexpected(text: &str) -> String {
    let shown: String = text.chars().take(200).collect();
    format!("unexpected clamd reply {shown:?}")
}

fn found(name: String) -> Result<EngineScan, EngineError> {
    let unscannable = |reason| {
        Err(EngineError::Unscannable {
            reason,
            detail: format!("clamd reported {name}"),
        })
    };
    if name.starts_with("Heuristics.Encrypted.") {
        return unscannable(Reason::Encrypted);
    }
    if name.starts_with("Heuristics.Limits.Exceeded") {
        if name.contains("MaxScanTime") {
            return unscannable(Reason::Timeout);
        }
        return unscannable(Reason::LimitsExceeded);
    }
    let suspicious = name.starts_with("Heuristics.") || name.starts_with("PUA.");
    Ok(EngineScan {
        hits: vec![Hit {
            signature: name,
            suspicious,
        }],
        trusted: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::net::UnixStream;
    use std::time::Duration;

    fn parse(s: &str) -> StreamReply {
        StreamReply::parse(s).unwrap()
    }

    #[test]
    fn parses_instream_replies() {
        assert_eq!(parse("stream: OK"), StreamReply::Clean);
        assert_eq!(parse("stream: OK\n"), StreamReply::Clean);
        assert_eq!(
            parse("stream: Win.Test.EICAR_HDB-1 FOUND"),
            StreamReply::Found("Win.Test.EICAR_HDB-1".into())
        );
        // Names with spaces, colons and even "stream: " in them.
        assert_eq!(
            parse("stream: Odd: name stream: x FOUND FOUND"),
            StreamReply::Found("Odd: name stream: x FOUND".into())
        );
        assert!(matches!(
            parse("INSTREAM size limit exceeded. ERROR"),
            StreamReply::SizeLimit(_)
        ));
        assert!(matches!(
            parse("stream: Can't allocate memory ERROR"),
            StreamReply::Error(_)
        ));
        assert!(matches!(
            parse("UNKNOWN COMMAND ERROR"),
            StreamReply::Error(_)
        ));
        for bad in [
            "",
            "OK",
            "stream:",
            "stream: ",
            "stream:  FOUND",
            "PONG",
            "stream: maybe",
        ] {
            assert!(StreamReply::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn strips_session_ids() {
        assert_eq!(strip_session_id("1: stream: OK", 1).unwrap(), "stream: OK");
        assert_eq!(strip_session_id("12: PONG", 12).unwrap(), "PONG");
        assert!(strip_session_id("2: stream: OK", 1).is_err());
        // No number: clamd's own error about the session, returned whole.
        assert_eq!(
            strip_session_id("COMMAND READ TIMED OUT", 3).unwrap(),
            "COMMAND READ TIMED OUT"
        );
        assert_eq!(strip_session_id("stream: OK", 3).unwrap(), "stream: OK");
        let r = strip_session_id("4: INSTREAM size limit exceeded. ERROR", 4).unwrap();
        assert!(matches!(parse(r), StreamReply::SizeLimit(_)));
    }

    #[test]
    fn maps_replies_fail_closed() {
        assert_eq!(parse("stream: OK").into_result().unwrap().hits.len(), 0);
        let hit = parse("stream: Eicar-Signature FOUND")
            .into_result()
            .unwrap();
        assert_eq!(
            hit.hits,
            vec![Hit {
                signature: "Eicar-Signature".into(),
                suspicious: false
            }]
        );
        let h = parse("stream: Heuristics.Phishing.Email.SpoofedDomain FOUND");
        assert!(h.into_result().unwrap().hits[0].suspicious);
        let reason = |s: &str| parse(s).into_result().unwrap_err().unscannable_reason();
        assert_eq!(
            reason("INSTREAM size limit exceeded. ERROR"),
            Some(Reason::TooLarge)
        );
        assert_eq!(
            reason("stream: Heuristics.Encrypted.Zip FOUND"),
            Some(Reason::Encrypted)
        );
        assert_eq!(
            reason("stream: Heuristics.Limits.Exceeded.MaxFiles FOUND"),
            Some(Reason::LimitsExceeded)
        );
        assert_eq!(
            reason("stream: Heuristics.Limits.Exceeded.MaxScanTime FOUND"),
            Some(Reason::Timeout)
        );
        let e = parse("stream: lstat() failed ERROR")
            .into_result()
            .unwrap_err();
        assert!(matches!(e, EngineError::Protocol(_)), "{e:?}");
    }

    fn pair() -> (Stream, UnixStream) {
        let (a, b) = UnixStream::pair().unwrap();
        (Stream::Unix(a), b)
    }

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(5)
    }

    #[test]
    fn reads_up_to_the_terminator() {
        let (mut a, mut b) = pair();
        b.write_all(b"1: stream: OK\0").unwrap();
        let want = RawReply::Message {
            text: "1: stream: OK".into(),
            extra: false,
        };
        assert_eq!(read_reply(&mut a, soon()).unwrap(), want);
        b.write_all(b"PONG\0junk").unwrap();
        let want = RawReply::Message {
            text: "PONG".into(),
            extra: true,
        };
        assert_eq!(read_reply(&mut a, soon()).unwrap(), want);
        drop(b);
        assert_eq!(read_reply(&mut a, soon()).unwrap(), RawReply::Closed);
    }

    #[test]
    fn reads_an_unterminated_reply_until_eof() {
        let (mut a, mut b) = pair();
        b.write_all(b"stream: OK").unwrap();
        drop(b);
        let want = RawReply::Message {
            text: "stream: OK".into(),
            extra: false,
        };
        assert_eq!(read_reply(&mut a, soon()).unwrap(), want);
    }

    #[test]
    fn bounds_reply_size_and_time() {
        let (mut a, mut b) = pair();
        let t = std::thread::spawn(move || {
            let _ = b.write_all(&vec![b'x'; MAX_REPLY + 10]);
            b
        });
        assert!(matches!(
            read_reply(&mut a, soon()),
            Err(ReadError::TooLong)
        ));
        drop(t.join().unwrap());
        let (mut a, _b) = pair();
        let start = Instant::now();
        let r = read_reply(&mut a, Instant::now() + Duration::from_millis(50));
        assert!(
            matches!(&r, Err(ReadError::Deadline) | Err(ReadError::Io(_))),
            "{r:?}"
        );
        assert!(start.elapsed() < Duration::from_secs(2));
    }
}
