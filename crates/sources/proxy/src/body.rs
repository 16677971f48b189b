//! Request bodies: spooling with limits and timeouts, streaming a spooled
//! [`Blob`] back out, multipart parts and aws-chunked decoding for scanning.

use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use moat_core::{Blob, Spool};
use std::io::{self, BufRead, Read, Write};
use std::path::Path;
use std::time::Duration;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type Body = http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>;

const CHUNK: usize = 256 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("the body is larger than {0} bytes")]
    TooLarge(u64),
    #[error("the client sent no data for {0:?}")]
    Timeout(Duration),
    #[error("reading the request body: {0}")]
    Client(String),
    #[error("spooling the body: {0}")]
    Io(#[from] io::Error),
    #[error("malformed {0}")]
    Malformed(String),
}

pub fn empty() -> Body {
    http_body_util::Empty::new()
        .map_err(|e| match e {})
        .boxed_unsync()
}

pub fn full(b: impl Into<Bytes>) -> Body {
    http_body_util::Full::new(b.into())
        .map_err(|e| match e {})
        .boxed_unsync()
}

/// Read a whole body into a spool: memory up to `threshold`, then an
/// anonymous 0600 file in `dir`. `idle` bounds the wait for each frame.
/// The SHA-256 is computed only when `hash` is set (a body that is scanned
/// whole); multipart and aws-chunked bodies are hashed part by part instead.
pub async fn spool<B>(
    mut body: B,
    threshold: usize,
    limit: u64,
    dir: &Path,
    idle: Duration,
    hash: bool,
) -> Result<(Blob, Option<[u8; 32]>), BodyError>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    let mut sp = Spool::new(threshold, limit, dir);
    if let Some(n) = body.size_hint().exact() {
        sp = sp.reserve(n);
    }
    if !hash {
        sp = sp.unhashed();
    }
    loop {
        let frame = match tokio::time::timeout(idle, body.frame()).await {
            Err(_) => return Err(BodyError::Timeout(idle)),
            Ok(None) => break,
            Ok(Some(Err(e))) => return Err(BodyError::Client(e.to_string())),
            Ok(Some(Ok(f))) => f,
        };
        if let Ok(data) = frame.into_data()
            && let Err(e) = sp.write_all(&data)
        {
            return Err(if sp.is_over_limit() {
                BodyError::TooLarge(limit)
            } else {
                BodyError::Io(e)
            });
        }
    }
    if hash {
        let (blob, sha) = sp.finish()?;
        Ok((blob, Some(sha)))
    } else {
        Ok((sp.finish_blob()?, None))
    }
}

/// `Bytes` sharing a memory blob's buffer (no copy).
struct Shared(std::sync::Arc<Vec<u8>>);

impl AsRef<[u8]> for Shared {
    fn as_ref(&self) -> &[u8] {
        self.0.as_slice()
    }
}

/// Stream a blob's bytes in chunks, exactly as stored.
pub fn blob_stream(
    blob: Blob,
) -> impl futures_util::Stream<Item = Result<Bytes, io::Error>> + Send + 'static {
    let first: Option<Bytes> = match &blob {
        Blob::Memory(v) => Some(Bytes::from_owner(Shared(v.clone()))),
        Blob::File { .. } => None,
    };
    let len = blob.len();
    futures_util::stream::unfold(
        (blob, 0u64, first),
        move |(blob, off, mut first)| async move {
            if let Some(b) = first.take() {
                if b.is_empty() {
                    return None;
                }
                let n = b.len() as u64;
                return Some((Ok(b), (blob, n, None)));
            }
            if off >= len {
                return None;
            }
            let n = (len - off).min(CHUNK as u64) as usize;
            let mut buf = vec![0u8; n];
            match blob.read_at(off, &mut buf) {
                Ok(0) => Some((
                    Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "spooled body shrank",
                    )),
                    (blob, len, None),
                )),
                Ok(k) => {
                    buf.truncate(k);
                    Some((Ok(Bytes::from(buf)), (blob, off + k as u64, None)))
                }
                Err(e) => Some((Err(e), (blob, len, None))),
            }
        },
    )
}

pub fn blob_body(blob: Blob) -> Body {
    StreamBody::new(blob_stream(blob).map(|r| r.map(Frame::data).map_err(BoxError::from)))
        .boxed_unsync()
}

/// Whether a body is known to be empty without reading it.
pub fn is_empty_body<B: hyper::body::Body>(b: &B) -> bool {
    b.is_end_stream() || b.size_hint().exact() == Some(0)
}

/// One file part of a multipart body, spooled on its own.
pub struct Part {
    pub name: String,
    pub blob: Blob,
    pub sha256: [u8; 32],
}

/// The boundary of a `multipart/form-data` content type, if it is one.
pub fn multipart_boundary(content_type: &str) -> Option<Result<String, BodyError>> {
    let lower = content_type.to_ascii_lowercase();
    if !lower.trim_start().starts_with("multipart/form-data") {
        return None;
    }
    Some(
        multer::parse_boundary(content_type)
            .map_err(|e| BodyError::Malformed(format!("multipart content type: {e}"))),
    )
}

/// Parse a spooled multipart body as a stream and spool each file part
/// separately (memory up to `threshold`, then a 0600 temp file). Fields
/// without a filename are not scanned.
pub async fn multipart_parts(
    blob: &Blob,
    boundary: &str,
    threshold: usize,
    limit: u64,
    dir: &Path,
) -> Result<Vec<Part>, BodyError> {
    let mut mp = multer::Multipart::new(blob_stream(blob.clone()), boundary);
    let mut parts = Vec::new();
    let mut index = 0usize;
    loop {
        let field = match mp.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => return Err(BodyError::Malformed(format!("multipart body: {e}"))),
        };
        index += 1;
        let Some(file_name) = field.file_name().map(str::to_string) else {
            continue;
        };
        let name = if file_name.is_empty() {
            format!("part-{index}")
        } else {
            file_name
        };
        let mut field = field;
        let mut sp = Spool::new(threshold, limit, dir);
        loop {
            match field.chunk().await {
                Ok(Some(c)) => {
                    if let Err(e) = sp.write_all(&c) {
                        return Err(if sp.is_over_limit() {
                            BodyError::TooLarge(limit)
                        } else {
                            BodyError::Io(e)
                        });
                    }
                }
                Ok(None) => break,
                Err(e) => return Err(BodyError::Malformed(format!("multipart body: {e}"))),
            }
        }
        let (blob, sha256) = sp.finish()?;
        parts.push(Part { name, blob, sha256 });
    }
    Ok(parts)
}

/// Whether a request body is in S3's `aws-chunked` framing.
pub fn is_aws_chunked(headers: &hyper::HeaderMap) -> bool {
    let enc = headers
        .get_all(hyper::header::CONTENT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| {
            v.split(',')
                .any(|e| e.trim().eq_ignore_ascii_case("aws-chunked"))
        });
    let streaming = headers
        .get("x-amz-content-sha256")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("STREAMING-"));
    enc || streaming
}

/// Decode aws-chunked framing (`hex-size[;chunk-signature=..]\r\n data \r\n`
/// ... `0[;..]\r\n` trailers `\r\n`) into a spool: the payload to scan.
/// Blocking; run it on a blocking thread.
pub fn decode_aws_chunked(
    blob: &Blob,
    threshold: usize,
    limit: u64,
    dir: &Path,
) -> Result<(Blob, [u8; 32]), BodyError> {
    let bad = |m: &str| BodyError::Malformed(format!("aws-chunked body: {m}"));
    let mut r = io::BufReader::with_capacity(CHUNK, blob.reader());
    let mut sp = Spool::new(threshold, limit, dir);
    let mut line = Vec::new();
    let mut buf = vec![0u8; CHUNK];
    loop {
        line.clear();
        let n = Read::take(&mut r, 4096).read_until(b'\n', &mut line)?;
        if n == 0 || !line.ends_with(b"\r\n") {
            return Err(bad("truncated or over-long chunk header"));
        }
        let head = &line[..line.len() - 2];
        let size_hex = head.split(|b| *b == b';').next().unwrap_or_default();
        let size_str = std::str::from_utf8(size_hex).map_err(|_| bad("chunk size"))?;
        let size =
            u64::from_str_radix(size_str.trim(), 16).map_err(|_| bad("chunk size is not hex"))?;
        if size == 0 {
            // Trailers (e.g. x-amz-checksum-*) until an empty line, or the end.
            loop {
                line.clear();
                let n = Read::take(&mut r, 8192).read_until(b'\n', &mut line)?;
                if n == 0 || line == b"\r\n" {
                    break;
                }
                if !line.ends_with(b"\n") {
                    return Err(bad("over-long trailer"));
                }
            }
            break;
        }
        let mut left = size;
        while left > 0 {
            let want = left.min(buf.len() as u64) as usize;
            let got = io::Read::read(&mut r, &mut buf[..want])?;
            if got == 0 {
                return Err(bad("truncated chunk"));
            }
            if let Err(e) = sp.write_all(&buf[..got]) {
                return Err(if sp.is_over_limit() {
                    BodyError::TooLarge(limit)
                } else {
                    BodyError::Io(e)
                });
            }
            left -= got as u64;
        }
        let mut crlf = [0u8; 2];
        io::Read::read_exact(&mut r, &mut crlf).map_err(|_| bad("truncated chunk"))?;
        if &crlf != b"\r\n" {
            return Err(bad("chunk not followed by CRLF"));
        }
    }
    Ok(sp.finish()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(b: &[u8]) -> Result<Vec<u8>, BodyError> {
        let blob = Blob::from_vec(b.to_vec());
        let (out, _) = decode_aws_chunked(&blob, 1 << 20, 1 << 30, &std::env::temp_dir())?;
        Ok(out.head(1 << 20).unwrap())
    }

    #[test]
    fn aws_chunked_decodes_signed_unsigned_and_trailers() {
        let signed = b"5;chunk-signature=abc\r\nhello\r\n6;chunk-signature=def\r\n world\r\n0;chunk-signature=0\r\n\r\n";
        assert_eq!(decode(signed).unwrap(), b"hello world");
        let trailer = b"3\r\nabc\r\n0\r\nx-amz-checksum-crc32:AAAA\r\n\r\n";
        assert_eq!(decode(trailer).unwrap(), b"abc");
        assert_eq!(decode(b"0\r\n").unwrap(), b"");
        assert!(decode(b"zz\r\nabc\r\n0\r\n\r\n").is_err());
        assert!(decode(b"10\r\nabc").is_err());
        assert!(decode(b"3\r\nabcX\r\n").is_err());
        assert!(decode(b"").is_err());
    }

    #[test]
    fn aws_chunked_detection() {
        let mut h = hyper::HeaderMap::new();
        assert!(!is_aws_chunked(&h));
        h.insert("content-encoding", "gzip, aws-chunked".parse().unwrap());
        assert!(is_aws_chunked(&h));
        let mut h = hyper::HeaderMap::new();
        h.insert(
            "x-amz-content-sha256",
            "STREAMING-UNSIGNED-PAYLOAD-TRAILER".parse().unwrap(),
        );
        assert!(is_aws_chunked(&h));
    }

    #[tokio::test]
    async fn multipart_parts_are_spooled_separately() {
        let body = b"--XX\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nfield\r\n--XX\r\nContent-Disposition: form-data; name=\"f\"; filename=\"one.txt\"\r\n\r\n111\r\n--XX\r\nContent-Disposition: form-data; name=\"g\"; filename=\"two.bin\"\r\nContent-Type: application/octet-stream\r\n\r\n2222\r\n--XX--\r\n";
        let blob = Blob::from_vec(body.to_vec());
        let parts = multipart_parts(&blob, "XX", 2, 1 << 20, &std::env::temp_dir())
            .await
            .unwrap();
        let names: Vec<_> = parts.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["one.txt", "two.bin"]);
        assert_eq!(parts[1].blob.head(100).unwrap(), b"2222");
        let bad = Blob::from_vec(
            b"--XX\r\nContent-Disposition: form-data; name=\"f\"; filename=\"x\"\r\n\r\nabc"
                .to_vec(),
        );
        assert!(matches!(
            multipart_parts(&bad, "XX", 2, 1 << 20, &std::env::temp_dir()).await,
            Err(BodyError::Malformed(_))
        ));
    }

    #[tokio::test]
    async fn blob_streams_back_byte_exact() {
        let data: Vec<u8> = (0..600_000u32).map(|i| (i % 251) as u8).collect();
        let mut sp = Spool::new(1000, 1 << 30, std::env::temp_dir());
        sp.write_all(&data).unwrap();
        let (blob, _) = sp.finish().unwrap();
        let out = blob_body(blob).collect().await.unwrap().to_bytes();
        assert_eq!(out.as_ref(), data.as_slice());
        let out = blob_body(Blob::from_vec(data.clone()))
            .collect()
            .await
            .unwrap()
            .to_bytes();
        assert_eq!(out.as_ref(), data.as_slice());
    }
}
