//! Test helpers (feature `testing`): sign and build `.cvd` and `.cdiff`
//! files with the committed test key (`testdata/`), and a small local HTTP
//! mirror (Range, ETag/If-None-Match, scripted 429 + Retry-After, a request
//! log). Nothing here is used by the product.

use moat_builtin::dsig::{self, PublicKey};
use num_bigint::BigUint;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The public half of the test key, PEM.
pub const TEST_PUBLIC_KEY_PEM: &str = include_str!("../testdata/test-key.pub.pem");
/// The same, in ClamAV's N/E form.
pub const TEST_PUBLIC_KEY_NE: &str = include_str!("../testdata/test-key.public.txt");
const TEST_PRIVATE_KEY: &str = include_str!("../testdata/test-key.private.txt");

/// An RSA private key that signs as ClamAV's signing server does.
pub struct Signer {
    n: BigUint,
    d: BigUint,
    public: PublicKey,
}

impl Signer {
    /// The committed test key.
    pub fn test_key() -> Signer {
        Signer::from_text(TEST_PRIVATE_KEY)
    }

    /// Another key (for "wrongly signed" cases): the test key's modulus with
    /// a different private exponent does not verify.
    pub fn wrong_key() -> Signer {
        let mut s = Signer::test_key();
        s.d += 2u32;
        s
    }

    fn from_text(text: &str) -> Signer {
        let mut f: HashMap<&str, BigUint> = HashMap::new();
        for l in text.lines().filter(|l| !l.starts_with('#')) {
            if let Some((k, v)) = l.split_once('=') {
                f.insert(
                    k.trim(),
                    BigUint::parse_bytes(v.trim().as_bytes(), 10).expect("decimal"),
                );
            }
        }
        let (n, e, d) = (f["N"].clone(), f["E"].clone(), f["D"].clone());
        let public = PublicKey::from_be_bytes(&n.to_bytes_be(), &e.to_bytes_be()).expect("key");
        Signer { n, d, public }
    }

    pub fn public(&self) -> &PublicKey {
        &self.public
    }

    /// `cli_versig` signature of an MD5 (the first byte must not be 0).
    pub fn sign_md5(&self, md5: &[u8; 16]) -> String {
        assert_ne!(md5[0], 0, "ClamAV cannot verify an MD5 starting with 00");
        let m = BigUint::from_bytes_be(md5);
        dsig::encode_sig(&m.modpow(&self.d, &self.n))
    }

    /// `cli_versig2` signature of a SHA-256.
    pub fn sign_sha256(&self, sha256: &[u8; 32]) -> String {
        let k = self.n.bits().div_ceil(8) as usize;
        let blk = k - 32 - 1;
        for attempt in 0u32.. {
            let salt: [u8; 32] = Sha256::new()
                .chain_update(sha256)
                .chain_update(attempt.to_be_bytes())
                .finalize()
                .into();
            let h = dsig::pss_digest(sha256, &salt);
            let mut db = vec![0u8; blk];
            db[blk - 33] = 0x01;
            db[blk - 32..].copy_from_slice(&salt);
            let mask = dsig::mgf1(&h, blk);
            for (d, m) in db.iter_mut().zip(&mask) {
                *d ^= m;
            }
            db[0] &= 0x7f;
            // The verifier lays the number's bytes from the start of the
            // buffer, so the first must not be 0.
            if db[0] == 0 {
                continue;
            }
            let mut em = db;
            em.extend_from_slice(&h);
            em.push(0xbc);
            let m = BigUint::from_bytes_be(&em);
            return dsig::encode_sig(&m.modpow(&self.d, &self.n));
        }
        unreachable!()
    }
}

/// A test database: `NAME.info` listing `files` and signed, inside a
/// `.cvd` whose header is signed too.
pub fn build_cvd(signer: &Signer, name: &str, version: u64, files: &[(&str, &[u8])]) -> Vec<u8> {
    let stime = 1_700_000_000 + version;
    let sigs: usize = files
        .iter()
        .map(|(_, d)| d.split(|&b| b == b'\n').filter(|l| !l.is_empty()).count())
        .sum();
    let time = "30 Nov 2026 10-00 +0000";
    let info = info_file(signer, name, version, sigs as u64, stime, time, files);
    for salt in 0u64.. {
        let mut tar = tar::Builder::new(Vec::new());
        let mut add = |n: &str, d: &[u8]| {
            let mut h = tar::Header::new_gnu();
            h.set_size(d.len() as u64);
            h.set_mode(0o644);
            h.set_mtime(stime + salt);
            h.set_cksum();
            tar.append_data(&mut h, n, d).expect("tar");
        };
        add("COPYING", b"test database\n");
        add(&format!("{name}.info"), &info);
        for (n, d) in files {
            add(n, d);
        }
        let tar = tar.into_inner().expect("tar");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar).expect("gz");
        let body = gz.finish().expect("gz");
        let md5: [u8; 16] = md5::Md5::digest(&body).into();
        if md5[0] == 0 {
            continue;
        }
        let mut header = format!(
            "ClamAV-VDB:{time}:{version}:{sigs}:90:{}:{}:moat-test:{stime}",
            hex::encode(md5),
            signer.sign_md5(&md5)
        )
        .into_bytes();
        assert!(header.len() <= 512);
        header.resize(512, b' ');
        return [header, body].concat();
    }
    unreachable!()
}

/// The `.info` member: header line, `name:size:sha256` per file, `DSIG:`.
pub fn info_file(
    signer: &Signer,
    name: &str,
    version: u64,
    sigs: u64,
    stime: u64,
    time: &str,
    files: &[(&str, &[u8])],
) -> Vec<u8> {
    let _ = name;
    let mut info = format!("ClamAV-VDB:{time}:{version}:{sigs}:90:X:X:moat-test:{stime}\n");
    for (n, d) in files {
        info.push_str(&format!(
            "{n}:{}:{}\n",
            d.len(),
            hex::encode(Sha256::digest(d))
        ));
    }
    let digest: [u8; 32] = Sha256::digest(info.as_bytes()).into();
    info.push_str(&format!("DSIG:{}\n", signer.sign_sha256(&digest)));
    info.into_bytes()
}

/// The unpacked contents of a test `.cvd` built by [`build_cvd`] (what
/// [`diff_script`] compares).
pub fn unpack(cvd: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    moat_builtin::cvd::read_container(
        cvd,
        false,
        |_| true,
        |m| {
            let data = m.data.map(|b| b.head(b.len() as usize).expect("member"));
            out.push((m.name, data.unwrap_or_default()));
        },
    )
    .expect("container");
    out
}

/// A cdiff script turning the unpacked `old` database into `new` (positional:
/// changed lines are exchanged, extra old lines deleted, extra new lines
/// added; files only in `old` unlinked).
pub fn diff_script(old: &[(String, Vec<u8>)], new: &[(String, Vec<u8>)]) -> String {
    let lines = |d: &[u8]| -> Vec<String> {
        String::from_utf8_lossy(d)
            .lines()
            .map(str::to_string)
            .collect()
    };
    let mut s = String::new();
    for (name, data) in new {
        let o = old.iter().find(|(n, _)| n == name);
        if o.is_some_and(|(_, od)| od == data) {
            continue;
        }
        s.push_str(&format!("OPEN {name}\n"));
        let nl = lines(data);
        let ol = o.map(|(_, d)| lines(d)).unwrap_or_default();
        let mut adds = Vec::new();
        for (i, l) in nl.iter().enumerate() {
            match ol.get(i) {
                Some(x) if x == l => {}
                Some(x) => {
                    let prefix: String = x.chars().take(16).take_while(|c| *c != ' ').collect();
                    s.push_str(&format!("XCHG {} {prefix} {l}\n", i + 1));
                }
                None => adds.push(l),
            }
        }
        for (i, x) in ol.iter().enumerate().skip(nl.len()) {
            let prefix: String = x.chars().take(16).take_while(|c| *c != ' ').collect();
            s.push_str(&format!("DEL {} {prefix}\n", i + 1));
        }
        for l in adds {
            s.push_str(&format!("ADD {l}\n"));
        }
        s.push_str("CLOSE\n");
    }
    for (name, _) in old {
        if !new.iter().any(|(n, _)| n == name) {
            s.push_str(&format!("UNLINK {name}\n"));
        }
    }
    s
}

/// A signed `.cdiff` for `version` carrying `script`.
pub fn build_cdiff(signer: &Signer, version: u64, script: &str) -> Vec<u8> {
    let mut out = format!("ClamAV-Diff:{version}:{}:", script.len()).into_bytes();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(script.as_bytes()).expect("gz");
    out.extend(gz.finish().expect("gz"));
    let digest: [u8; 32] = Sha256::digest(&out).into();
    out.push(b':');
    out.extend(signer.sign_sha256(&digest).as_bytes());
    out
}

/// One request the mirror received.
#[derive(Debug, Clone)]
pub struct Request {
    pub path: String,
    pub headers: Vec<(String, String)>,
    /// Status answered.
    pub status: u16,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct MirrorState {
    /// Answer the next requests with 429 and this Retry-After.
    throttle: Option<(u32, String)>,
    log: Vec<Request>,
}

/// A local HTTP/1.1 mirror serving the files of a directory (one request
/// per connection), with `Range: bytes=a-b`, ETags (the SHA-256 of the
/// file) and `If-None-Match`.
pub struct Mirror {
    pub dir: PathBuf,
    pub addr: SocketAddr,
    state: Arc<Mutex<MirrorState>>,
}

impl Mirror {
    pub fn start(dir: &Path) -> Mirror {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let state = Arc::new(Mutex::new(MirrorState::default()));
        let (st, d) = (state.clone(), dir.to_path_buf());
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let (st, d) = (st.clone(), d.clone());
                std::thread::spawn(move || {
                    let _ = serve(conn, &d, &st);
                });
            }
        });
        Mirror {
            dir: dir.to_path_buf(),
            addr,
            state,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn put(&self, name: &str, data: &[u8]) {
        std::fs::write(self.dir.join(name), data).expect("write");
    }

    /// Answer the next `n` requests with 429 and `Retry-After: retry_after`.
    pub fn throttle(&self, n: u32, retry_after: &str) {
        self.state.lock().expect("lock").throttle = Some((n, retry_after.to_string()));
    }

    pub fn requests(&self) -> Vec<Request> {
        self.state.lock().expect("lock").log.clone()
    }

    pub fn clear_log(&self) {
        self.state.lock().expect("lock").log.clear();
    }
}

fn serve(conn: TcpStream, dir: &Path, st: &Mutex<MirrorState>) -> std::io::Result<()> {
    let mut r = BufReader::new(conn.try_clone()?);
    let mut line = String::new();
    r.read_line(&mut line)?;
    let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if r.read_line(&mut h)? == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let mut req = Request {
        path: path.clone(),
        headers,
        status: 0,
    };
    let mut w = conn;
    let throttled = {
        let mut s = st.lock().expect("lock");
        match s.throttle.as_mut() {
            Some((n, ra)) if *n > 0 => {
                *n -= 1;
                Some(ra.clone())
            }
            _ => None,
        }
    };
    let name = path.trim_start_matches('/');
    let (status, extra, body): (u16, String, Vec<u8>) = if let Some(ra) = throttled {
        (429, format!("Retry-After: {ra}\r\n"), Vec::new())
    } else if name.contains('/') || name.contains("..") || name.is_empty() {
        (404, String::new(), Vec::new())
    } else {
        // The test mirror serves small files the test itself built.
        #[allow(clippy::disallowed_methods)]
        let file = std::fs::read(dir.join(name));
        match file {
            Err(_) => (404, String::new(), Vec::new()),
            Ok(data) => {
                let etag = format!("\"{}\"", hex::encode(Sha256::digest(&data)));
                let range = req
                    .header("Range")
                    .and_then(|v| v.strip_prefix("bytes="))
                    .and_then(|v| v.split_once('-'))
                    .and_then(|(a, b)| Some((a.parse::<usize>().ok()?, b.parse::<usize>().ok()?)));
                if req.header("If-None-Match") == Some(etag.as_str()) {
                    (304, format!("ETag: {etag}\r\n"), Vec::new())
                } else if let Some((a, b)) = range {
                    let end = (b + 1).min(data.len());
                    let a = a.min(end);
                    let extra = format!(
                        "Content-Range: bytes {a}-{}/{}\r\nETag: {etag}\r\n",
                        end.saturating_sub(1),
                        data.len()
                    );
                    (206, extra, data[a..end].to_vec())
                } else {
                    (200, format!("ETag: {etag}\r\n"), data)
                }
            }
        }
    };
    req.status = status;
    st.lock().expect("lock").log.push(req);
    let reason = match status {
        200 => "OK",
        206 => "Partial Content",
        304 => "Not Modified",
        404 => "Not Found",
        429 => "Too Many Requests",
        _ => "Other",
    };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Length: {}\r\nConnection: close\r\n{extra}\r\n",
        body.len()
    );
    w.write_all(head.as_bytes())?;
    w.write_all(&body)
}
