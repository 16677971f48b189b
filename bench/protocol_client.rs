//! Load client for bench/protocol_bench.py (issue 14): std only, no crates.
//!
//! Built by the script with `rustc -O --edition 2021 -o <tmp>/protocol_client
//! bench/protocol_client.rs`; not a workspace member.
//!
//! Usage: protocol_client clamd|icap ADDR CONC [--service NAME] [FILELIST]
//!
//! Reads one path per line from FILELIST (or stdin). CONC worker threads take
//! the files in list order; each file gets its own connection, exactly the
//! requests the script's Python client sends:
//!   clamd: `zINSTREAM\0`, then 64 KiB chunks each as one write of a 4-byte
//!          big-endian length and the data, then a zero length; reads the
//!          reply to EOF.
//!   icap:  `REQMOD icap://ADDR/SERVICE` with Allow: 204, Connection: close,
//!          no Preview, a POST request head and the file as a chunked body in
//!          64 KiB chunks; reads the ICAP head and, for a 200 with a body, the
//!          body up to its terminating zero chunk.
//! After the run it prints one JSON line per file, in list order:
//!   {"path":..,"us":LATENCY_US,"reply":RAW}                      (clamd)
//!   {"path":..,"us":..,"status":N,"xif":..,"xvid":..,"body":..}  (icap)
//!   {"path":..,"us":..,"error":MSG}                              (either)
//! and a last line {"wall_us":N} for the whole run (first connect to last
//! reply). Byte strings (reply, body) are written one char per byte
//! (U+0000..U+00FF) so `s.encode("latin-1")` gives the bytes back.

use std::fs::File;
use std::io::{self, BufRead, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const CHUNK: usize = 65536;
const TIMEOUT: Duration = Duration::from_secs(600);

#[derive(Clone, Copy, PartialEq)]
enum Proto {
    Clamd,
    Icap,
}

/// One file's latency in microseconds and its outcome, filled in by a worker.
type Slot = Option<(u128, Outcome)>;

enum Outcome {
    Clamd(Vec<u8>),
    Icap {
        status: u32,
        xif: String,
        xvid: String,
        body: Vec<u8>,
    },
    Error(String),
}

/// Fills `buf` as far as the file allows (a short count only at EOF), like
/// Python's `f.read(65536)`.
fn read_full(f: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

fn connect(addr: &str) -> io::Result<TcpStream> {
    let s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(TIMEOUT))?;
    s.set_write_timeout(Some(TIMEOUT))?;
    Ok(s)
}

fn read_to_eof(s: &mut TcpStream) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; CHUNK];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return Ok(out),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

fn instream(addr: &str, path: &str) -> io::Result<Vec<u8>> {
    let mut f = File::open(path)?;
    let mut s = connect(addr)?;
    s.write_all(b"zINSTREAM\0")?;
    let mut buf = vec![0u8; 4 + CHUNK];
    loop {
        let n = read_full(&mut f, &mut buf[4..])?;
        if n == 0 {
            break;
        }
        buf[..4].copy_from_slice(&(n as u32).to_be_bytes());
        s.write_all(&buf[..4 + n])?;
    }
    s.write_all(&0u32.to_be_bytes())?;
    read_to_eof(&mut s)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn icap_reqmod(addr: &str, service: &str, path: &str) -> io::Result<Outcome> {
    let mut f = File::open(path)?;
    let size = f.metadata()?.len();
    let http = format!(
        "POST /upload HTTP/1.1\r\nHost: upstream.test\r\nContent-Type: application/octet-stream\r\n\
         Content-Length: {size}\r\n\r\n"
    );
    let icap = format!(
        "REQMOD icap://{addr}/{service} ICAP/1.0\r\nHost: {addr}\r\n\
         Allow: 204\r\nConnection: close\r\nEncapsulated: req-hdr=0, req-body={}\r\n\r\n",
        http.len()
    );
    let mut s = connect(addr)?;
    let mut head = icap.into_bytes();
    head.extend_from_slice(http.as_bytes());
    s.write_all(&head)?;
    // Room for "%x\r\n" (at most 4 hex digits + CRLF for 64 KiB) and a CRLF.
    const PRE: usize = 8;
    let mut buf = vec![0u8; PRE + CHUNK + 2];
    loop {
        let n = read_full(&mut f, &mut buf[PRE..PRE + CHUNK])?;
        if n == 0 {
            break;
        }
        let size_line = format!("{n:x}\r\n");
        let start = PRE - size_line.len();
        buf[start..PRE].copy_from_slice(size_line.as_bytes());
        buf[PRE + n..PRE + n + 2].copy_from_slice(b"\r\n");
        s.write_all(&buf[start..PRE + n + 2])?;
    }
    s.write_all(b"0\r\n\r\n")?;

    // Same reading as the script's read_icap_response.
    let mut got: Vec<u8> = Vec::new();
    let mut rbuf = vec![0u8; CHUNK];
    let head_end = loop {
        if let Some(i) = find(&got, b"\r\n\r\n") {
            break i;
        }
        let n = s.read(&mut rbuf)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed before the ICAP head",
            ));
        }
        got.extend_from_slice(&rbuf[..n]);
    };
    let head = String::from_utf8_lossy(&got[..head_end]).into_owned();
    let mut rest = got[head_end + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let status: u32 = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "bad ICAP status line"))?;
    let (mut xif, mut xvid, mut enc) = (String::new(), String::new(), String::new());
    for l in lines {
        let (k, v) = l.split_once(':').unwrap_or((l, ""));
        let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_string());
        match k.as_str() {
            "x-infection-found" => xif = v,
            "x-virus-id" => xvid = v,
            "encapsulated" => enc = v,
            _ => {}
        }
    }
    if status == 200 && enc.contains("body=") && !enc.contains("null-body") {
        while !rest.ends_with(b"0\r\n\r\n") {
            let n = s.read(&mut rbuf)?;
            if n == 0 {
                break;
            }
            rest.extend_from_slice(&rbuf[..n]);
        }
    }
    Ok(Outcome::Icap {
        status,
        xif,
        xvid,
        body: rest,
    })
}

/// JSON string of UTF-8 text.
fn json_str(out: &mut String, s: &str) {
    json_chars(out, s.chars());
}

/// JSON string of bytes, one char per byte (latin-1).
fn json_bytes(out: &mut String, b: &[u8]) {
    json_chars(out, b.iter().map(|&c| c as char));
}

fn json_chars(out: &mut String, it: impl Iterator<Item = char>) {
    out.push('"');
    for c in it {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || (0x7f..=0xff).contains(&(c as u32)) => {
                out.push_str(&format!("\\u{:04x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn usage() -> ! {
    eprintln!("usage: protocol_client clamd|icap ADDR CONC [--service NAME] [FILELIST]");
    std::process::exit(2)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let proto = match args.next().as_deref() {
        Some("clamd") => Proto::Clamd,
        Some("icap") => Proto::Icap,
        _ => usage(),
    };
    let addr = args.next().unwrap_or_else(|| usage());
    let conc: usize = args
        .next()
        .and_then(|c| c.parse().ok())
        .filter(|&c| c > 0)
        .unwrap_or_else(|| usage());
    let mut service = "avscan".to_string();
    let mut list: Option<String> = None;
    while let Some(a) = args.next() {
        if a == "--service" {
            service = args.next().unwrap_or_else(|| usage());
        } else {
            list = Some(a);
        }
    }
    let reader: Box<dyn BufRead> = match &list {
        Some(p) if p != "-" => match File::open(p) {
            Ok(f) => Box::new(io::BufReader::new(f)),
            Err(e) => {
                eprintln!("protocol_client: {p}: {e}");
                std::process::exit(1)
            }
        },
        _ => Box::new(io::BufReader::new(io::stdin())),
    };
    let mut files = Vec::new();
    for line in reader.lines() {
        match line {
            Ok(l) if !l.is_empty() => files.push(l),
            Ok(_) => {}
            Err(e) => {
                eprintln!("protocol_client: reading the file list: {e}");
                std::process::exit(1)
            }
        }
    }
    let files = Arc::new(files);
    let results: Arc<Mutex<Vec<Slot>>> =
        Arc::new(Mutex::new((0..files.len()).map(|_| None).collect()));
    let next = Arc::new(AtomicUsize::new(0));
    let addr = Arc::new(addr);
    let service = Arc::new(service);

    let t0 = Instant::now();
    let workers: Vec<_> = (0..conc)
        .map(|_| {
            let (files, results, next, addr, service) = (
                files.clone(),
                results.clone(),
                next.clone(),
                addr.clone(),
                service.clone(),
            );
            std::thread::spawn(move || loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(path) = files.get(i) else { break };
                let t = Instant::now();
                let out = match proto {
                    Proto::Clamd => instream(&addr, path).map(Outcome::Clamd),
                    Proto::Icap => icap_reqmod(&addr, &service, path),
                }
                .unwrap_or_else(|e| Outcome::Error(e.to_string()));
                let us = t.elapsed().as_micros();
                if let Ok(mut r) = results.lock() {
                    r[i] = Some((us, out));
                }
            })
        })
        .collect();
    for w in workers {
        if w.join().is_err() {
            eprintln!("protocol_client: a worker panicked");
            std::process::exit(1)
        }
    }
    let wall = t0.elapsed().as_micros();

    let results = match results.lock() {
        Ok(mut r) => std::mem::take(&mut *r),
        Err(_) => std::process::exit(1),
    };
    let stdout = io::stdout();
    let mut w = io::BufWriter::new(stdout.lock());
    for (path, r) in files.iter().zip(results) {
        let mut line = String::from("{\"path\":");
        json_str(&mut line, path);
        let (us, out) = r.unwrap_or((0, Outcome::Error("not run".into())));
        line.push_str(&format!(",\"us\":{us}"));
        match out {
            Outcome::Clamd(reply) => {
                line.push_str(",\"reply\":");
                json_bytes(&mut line, &reply);
            }
            Outcome::Icap {
                status,
                xif,
                xvid,
                body,
            } => {
                line.push_str(&format!(",\"status\":{status},\"xif\":"));
                json_str(&mut line, &xif);
                line.push_str(",\"xvid\":");
                json_str(&mut line, &xvid);
                line.push_str(",\"body\":");
                json_bytes(&mut line, &body);
            }
            Outcome::Error(e) => {
                line.push_str(",\"error\":");
                json_str(&mut line, &e);
            }
        }
        line.push_str("}\n");
        if w.write_all(line.as_bytes()).is_err() {
            std::process::exit(1)
        }
    }
    let _ = writeln!(w, "{{\"wall_us\":{wall}}}");
    let _ = w.flush();
}
