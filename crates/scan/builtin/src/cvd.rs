//! `.cvd` / `.cld` containers: a 512-byte ASCII header
//! (`ClamAV-VDB:time:version:sigs:flevel:md5:dsig:builder:stime`, space
//! padded) followed by a tar archive, gzip-compressed for `.cvd` (a `.cld`
//! may be either: sniffed by the gzip magic).
//!
//! Members are streamed from the archive in memory: a member name is only
//! used to pick its kind (by extension), never as a file-system path.
//!
//! Verification ([`verify`]) does what ClamAV's `cli_cvdload` does:
//! * a `.cvd`: the MD5 of everything after the header must be the header's,
//!   and the header's digital signature must sign it (a `.cld` is a `.cvd`
//!   updated in place, whose header no longer matches its body: ClamAV does
//!   not check these two for a `.cld`, nor do we);
//! * both: the `.info` member must carry a valid digital signature (`DSIG:`
//!   line), repeat the header's version, signature count, functionality
//!   level and build time, and list the size and SHA-256 of every database
//!   member, which must match.

use crate::dsig;
use md5::Md5;
use moat_core::{Blob, Spool};
use sha2::{Digest, Sha256};
use std::io::{BufReader, Read};

/// Length of the header block.
pub const HEADER_LEN: usize = 512;
/// Largest member read into memory.
pub const MAX_MEMBER: u64 = 2 << 30;
/// Members up to this size are kept in memory; larger ones are spooled to
/// an anonymous temporary file in the system's temporary directory.
pub const MEMBER_IN_MEMORY: usize = 8 << 20;
/// Largest `.info` member kept for verification.
const MAX_INFO: u64 = 4 << 20;

/// Member extensions ClamAV treats as databases (`CLI_DBEXT`): each must be
/// listed in the `.info` member.
const DB_EXTS: &[&str] = &[
    "db", "hdb", "hdu", "fp", "mdb", "mdu", "hsb", "hsu", "sfp", "msb", "msu", "ndb", "ndu", "ldb",
    "ldu", "sdb", "zmd", "rmd", "pdb", "gdb", "wdb", "cbc", "ftm", "cfg", "cvd", "cld", "cud",
    "cdb", "cat", "crb", "idb", "ioc", "yar", "yara", "pwdb", "ign", "ign2", "imp",
];

/// The fields of a cvd/cld header that matter here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CvdHeader {
    pub build_time: String,
    pub version: u64,
    pub signatures: u64,
    pub flevel: u64,
    /// MD5 of the archive after the header (hex), as the header states it.
    pub md5: String,
    /// The digital signature of `md5`.
    pub dsig: String,
    /// Build time in Unix seconds (0 when absent).
    pub stime: u64,
}

/// Why a container could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CvdError {
    #[error("not a ClamAV database: the header does not start with \"ClamAV-VDB:\"")]
    BadMagic,
    #[error("bad header field {field}: {value:?}")]
    BadField { field: &'static str, value: String },
    #[error("truncated header ({0} bytes)")]
    Short(usize),
    #[error("archive error: {0}")]
    Archive(#[from] std::io::Error),
}

/// Why a container failed verification.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("the MD5 of the archive ({actual}) is not the header's ({expected})")]
    Md5Mismatch { expected: String, actual: String },
    #[error("the header's digital signature does not verify with the public key")]
    BadHeaderSignature,
    #[error("no .info member")]
    NoInfo,
    #[error("the .info member is malformed: {0}")]
    BadInfo(String),
    #[error("the .info member has no digital signature")]
    UnsignedInfo,
    #[error("the .info member's digital signature does not verify with the public key")]
    BadInfoSignature,
    #[error("the .info member describes another database version than the header")]
    InfoHeaderMismatch,
    #[error("member {0} is not listed in the .info member")]
    Unlisted(String),
    #[error("member {0} does not match the size and SHA-256 listed in the .info member")]
    MemberMismatch(String),
}

/// Parse the 512-byte header.
pub fn parse_header(h: &[u8]) -> Result<CvdHeader, CvdError> {
    if h.len() < HEADER_LEN {
        return Err(CvdError::Short(h.len()));
    }
    parse_header_text(&h[..HEADER_LEN])
}

/// Parse a header line (the 512-byte header, or the first line of `.info`).
fn parse_header_text(h: &[u8]) -> Result<CvdHeader, CvdError> {
    if !h.starts_with(b"ClamAV-VDB:") {
        return Err(CvdError::BadMagic);
    }
    let text = String::from_utf8_lossy(h);
    let fields: Vec<&str> = text
        .trim_end_matches([' ', '\0', '\n', '\r'])
        .split(':')
        .collect();
    let field = |i: usize| fields.get(i).map_or("", |s| s.trim());
    let num = |i: usize, field_name: &'static str| -> Result<u64, CvdError> {
        let v = field(i);
        v.parse().map_err(|_| CvdError::BadField {
            field: field_name,
            value: v.to_string(),
        })
    };
    Ok(CvdHeader {
        build_time: field(1).to_string(),
        version: num(2, "version")?,
        signatures: num(3, "signature count")?,
        flevel: num(4, "functionality level")?,
        md5: field(5).to_string(),
        dsig: field(6).to_string(),
        stime: field(8).parse().unwrap_or(0),
    })
}

/// One archive member: its base name, its lowercase extension and (for
/// members the caller wants) its bytes: in memory up to
/// [`MEMBER_IN_MEMORY`], beyond that in an anonymous 0600 temporary file
/// (removed when the last handle goes), so that a 100 MB `main.hsb` is
/// not held on the heap while it is parsed.
#[derive(Debug)]
pub struct Member {
    pub name: String,
    pub ext: String,
    pub data: Option<Blob>,
    /// Non-empty lines, counted when the data is not kept.
    pub lines: u64,
}

/// What verification needs, gathered while the container is read.
#[derive(Debug, Default)]
pub struct Integrity {
    /// MD5 of everything after the header.
    pub archive_md5: [u8; 16],
    /// Name, size and SHA-256 of every member.
    pub members: Vec<(String, u64, [u8; 32])>,
    /// The bytes of the `.info` member.
    pub info: Option<Vec<u8>>,
}

fn split_name(path: &[u8]) -> (String, String) {
    let base = path.rsplit(|&b| b == b'/').next().unwrap_or(path);
    let name = String::from_utf8_lossy(base).into_owned();
    let ext = match name.rfind('.') {
        Some(i) if i > 0 => name[i + 1..].to_ascii_lowercase(),
        _ => String::new(),
    };
    (name, ext)
}

/// Count non-empty lines of a stream without keeping it.
pub(crate) fn count_lines(r: &mut impl Read) -> std::io::Result<u64> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut n = 0u64;
    let mut line_has_content = false;
    loop {
        let got = r.read(&mut buf)?;
        if got == 0 {
            break;
        }
        for &b in &buf[..got] {
            if b == b'\n' {
                n += u64::from(line_has_content);
                line_has_content = false;
            } else if !b.is_ascii_whitespace() {
                line_has_content = true;
            }
        }
    }
    Ok(n + u64::from(line_has_content))
}

/// A reader that digests what passes through it (when it has a digest).
struct Digesting<R, D> {
    inner: R,
    digest: Option<D>,
    bytes: u64,
}

impl<R: Read, D: Digest> Read for Digesting<R, D> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(d) = self.digest.as_mut() {
            d.update(&buf[..n]);
        }
        self.bytes += n as u64;
        Ok(n)
    }
}

/// Read a container from `r` (positioned at its start). For each member,
/// `keep(ext)` decides whether its bytes are returned (`Some`) or only its
/// lines counted; `on_member` gets each member as it is read, so only one
/// member's bytes are held at a time. With `check`, what [`verify`] needs
/// is gathered on the way (the archive is then read to its end).
pub fn read_container(
    r: impl Read,
    check: bool,
    mut keep: impl FnMut(&str) -> bool,
    on_member: impl FnMut(Member),
) -> Result<(CvdHeader, Option<Integrity>), CvdError> {
    read_container_by_name(r, check, |_, ext| keep(ext), on_member)
}

/// [`read_container`] where `keep(name, ext)` decides by the member's base
/// name too (a reload keeps only the members it does not share).
pub fn read_container_by_name(
    r: impl Read,
    check: bool,
    mut keep: impl FnMut(&str, &str) -> bool,
    mut on_member: impl FnMut(Member),
) -> Result<(CvdHeader, Option<Integrity>), CvdError> {
    let mut r = r;
    let mut header = vec![0u8; HEADER_LEN];
    let mut got = 0;
    while got < HEADER_LEN {
        let n = r.read(&mut header[got..])?;
        if n == 0 {
            return Err(CvdError::Short(got));
        }
        got += n;
    }
    let hdr = parse_header(&header)?;
    let mut body = BufReader::with_capacity(
        256 * 1024,
        Digesting {
            inner: r,
            digest: check.then(Md5::new),
            bytes: 0,
        },
    );
    // Sniff gzip vs plain tar.
    let mut magic = [0u8; 2];
    let mut m = 0;
    while m < 2 {
        let n = body.read(&mut magic[m..])?;
        if n == 0 {
            break;
        }
        m += n;
    }
    let mut integrity = check.then(Integrity::default);
    {
        let rest = std::io::Cursor::new(magic[..m].to_vec()).chain(&mut body);
        if magic[..m] == [0x1f, 0x8b] {
            read_tar(
                flate2::read::GzDecoder::new(rest),
                &mut keep,
                &mut on_member,
                integrity.as_mut(),
            )?;
        } else {
            read_tar(rest, &mut keep, &mut on_member, integrity.as_mut())?;
        }
    }
    if let Some(i) = integrity.as_mut() {
        // The MD5 covers everything after the header, read or not.
        std::io::copy(&mut body, &mut std::io::sink())?;
        if let Some(d) = body.into_inner().digest {
            i.archive_md5 = d.finalize().into();
        }
    }
    Ok((hdr, integrity))
}

fn read_tar(
    r: impl Read,
    keep: &mut impl FnMut(&str, &str) -> bool,
    on_member: &mut impl FnMut(Member),
    mut integrity: Option<&mut Integrity>,
) -> Result<(), CvdError> {
    let mut ar = tar::Archive::new(r);
    for entry in ar.entries()? {
        let entry = entry?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let (name, ext) = split_name(&entry.path_bytes());
        let size = entry.header().size().unwrap_or(0);
        let mut entry = Digesting {
            inner: entry,
            digest: integrity.is_some().then(Sha256::new),
            bytes: 0,
        };
        let is_info = integrity.is_some() && ext == "info";
        let wanted = keep(&name, &ext);
        let too_large = |limit: u64| {
            CvdError::Archive(std::io::Error::other(format!(
                "member {name} is larger than {limit} bytes"
            )))
        };
        let (data, lines) = if wanted && !is_info {
            let mut spool = Spool::new(MEMBER_IN_MEMORY, MAX_MEMBER, std::env::temp_dir())
                .unhashed()
                .reserve(size);
            if let Err(e) = std::io::copy(&mut entry, &mut spool) {
                return Err(if spool.is_over_limit() {
                    too_large(MAX_MEMBER)
                } else {
                    CvdError::Archive(e)
                });
            }
            (Some(spool.finish_blob()?), 0)
        } else if is_info {
            let mut data = Vec::with_capacity(size.min(MAX_INFO) as usize);
            #[allow(clippy::disallowed_methods)] // bounded by the limit
            let n = (&mut entry).take(MAX_INFO).read_to_end(&mut data)?;
            if n as u64 >= MAX_INFO {
                return Err(too_large(MAX_INFO));
            }
            let info = integrity.as_deref_mut();
            if wanted {
                if let Some(i) = info {
                    i.info = Some(data.clone());
                }
                (Some(Blob::from_vec(data)), 0)
            } else {
                // Read only for the integrity check: counted, then handed over.
                let lines = count_lines(&mut &data[..])?;
                if let Some(i) = info {
                    i.info = Some(data);
                }
                (None, lines)
            }
        } else {
            (None, count_lines(&mut entry)?)
        };
        let member = Member {
            name: name.clone(),
            ext,
            data,
            lines,
        };
        if let (Some(i), Some(d)) = (integrity.as_deref_mut(), entry.digest.take()) {
            i.members.push((name, entry.bytes, d.finalize().into()));
        }
        on_member(member);
    }
    Ok(())
}

/// Check a container read with `check` (see the module docs) with ClamAV's keys.
pub fn verify(hdr: &CvdHeader, cld: bool, i: &Integrity) -> Result<(), VerifyError> {
    verify_with(hdr, cld, i, dsig::Keys::clamav())
}

/// [`verify`] with the given public keys.
pub fn verify_with(
    hdr: &CvdHeader,
    cld: bool,
    i: &Integrity,
    keys: &dsig::Keys,
) -> Result<(), VerifyError> {
    if !cld {
        let actual = hex::encode(i.archive_md5);
        if !actual.eq_ignore_ascii_case(&hdr.md5) {
            return Err(VerifyError::Md5Mismatch {
                expected: hdr.md5.clone(),
                actual,
            });
        }
        if !dsig::verify_md5_with(&keys.cvd, &actual, &hdr.dsig) {
            return Err(VerifyError::BadHeaderSignature);
        }
    }
    let info = i.info.as_deref().ok_or(VerifyError::NoInfo)?;
    let bad = |m: &str| VerifyError::BadInfo(m.to_string());
    let mut hasher = Sha256::new();
    let mut info_hdr = None;
    let mut listed: Vec<(&[u8], u64, [u8; 32])> = Vec::new();
    let mut signed = false;
    for raw in info.split_inclusive(|&b| b == b'\n') {
        if let Some(sig) = raw.strip_prefix(b"DSIG:") {
            let digest: [u8; 32] = hasher.clone().finalize().into();
            let sig = std::str::from_utf8(sig).map_err(|_| VerifyError::BadInfoSignature)?;
            if !dsig::verify_sha256_with(&keys.info, &digest, sig.trim_end()) {
                return Err(VerifyError::BadInfoSignature);
            }
            signed = true;
            break;
        }
        hasher.update(raw);
        let line = raw.strip_suffix(b"\n").unwrap_or(raw);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.starts_with(b"ClamAV-VDB:") {
            if info_hdr.is_some() {
                return Err(bad("two header lines"));
            }
            info_hdr = Some(parse_header_text(line).map_err(|e| bad(&e.to_string()))?);
            continue;
        }
        if info_hdr.is_none() {
            return Err(bad("no header line first"));
        }
        let f: Vec<&[u8]> = line.split(|&b| b == b':').collect();
        let [name, size, sha] = f.as_slice() else {
            return Err(bad("a line is not name:size:sha256"));
        };
        let size: u64 = std::str::from_utf8(size)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad("bad size"))?;
        let mut d = [0u8; 32];
        if sha.len() != 64 || hex::decode_to_slice(sha, &mut d).is_err() {
            return Err(bad("bad SHA-256"));
        }
        listed.push((name, size, d));
    }
    if !signed {
        return Err(VerifyError::UnsignedInfo);
    }
    let ih = info_hdr.ok_or_else(|| bad("no header line"))?;
    if (ih.version, ih.signatures, ih.flevel, ih.stime)
        != (hdr.version, hdr.signatures, hdr.flevel, hdr.stime)
    {
        return Err(VerifyError::InfoHeaderMismatch);
    }
    for (name, size, sha) in &i.members {
        let (_, ext) = split_name(name.as_bytes());
        if !DB_EXTS.contains(&ext.as_str()) {
            continue;
        }
        match listed.iter().find(|(n, _, _)| *n == name.as_bytes()) {
            None => return Err(VerifyError::Unlisted(name.clone())),
            Some((_, s, d)) if s == size && d == sha => {}
            Some(_) => return Err(VerifyError::MemberMismatch(name.clone())),
        }
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::Write;

    /// Build a container: header, then a tar (gzip-compressed when `gz`).
    pub(crate) fn make_container(version: u64, members: &[(&str, &[u8])], gz: bool) -> Vec<u8> {
        let mut tar = tar::Builder::new(Vec::new());
        for (name, data) in members {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            tar.append_data(&mut h, name, *data).unwrap();
        }
        let tar = tar.into_inner().unwrap();
        let body = if gz {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(&tar).unwrap();
            e.finish().unwrap()
        } else {
            tar
        };
        let mut header = format!(
            "ClamAV-VDB:02 Mar 2024 07-20 -0500:{version}:{}:90:0123456789abcdef0123456789abcdef:sig:builder:1709382000",
            members.len()
        )
        .into_bytes();
        header.resize(HEADER_LEN, b' ');
        [header, body].concat()
    }

    #[test]
    fn header_fields() {
        let c = make_container(27123, &[], true);
        let h = parse_header(&c[..HEADER_LEN]).unwrap();
        assert_eq!(h.version, 27123);
        assert_eq!(h.flevel, 90);
        assert_eq!(h.build_time, "02 Mar 2024 07-20 -0500");
        assert!(matches!(
            parse_header(&[b' '; 512]),
            Err(CvdError::BadMagic)
        ));
        assert!(matches!(
            parse_header(b"ClamAV-VDB:"),
            Err(CvdError::Short(11))
        ));
        let mut bad = b"ClamAV-VDB:t:x:1:2".to_vec();
        bad.resize(512, b' ');
        assert!(matches!(
            parse_header(&bad),
            Err(CvdError::BadField {
                field: "version",
                ..
            })
        ));
    }

    #[test]
    fn reads_gzip_and_plain_members() {
        for gz in [true, false] {
            let c = make_container(
                5,
                &[
                    ("x.hdb", b"aa\n"),
                    ("dir/x.ldb", b"a\n\nb\nc"),
                    ("COPYING", b"text"),
                ],
                gz,
            );
            let mut got = Vec::new();
            let (h, _) =
                read_container(&c[..], false, |ext| ext == "hdb", |m| got.push(m)).unwrap();
            assert_eq!(h.version, 5);
            assert_eq!(got.len(), 3);
            assert_eq!(got[0].ext, "hdb");
            let data = got[0].data.as_ref().map(|b| b.head(100).unwrap());
            assert_eq!(data.as_deref(), Some(&b"aa\n"[..]));
            assert_eq!(
                (got[1].name.as_str(), got[1].ext.as_str(), got[1].lines),
                ("x.ldb", "ldb", 3)
            );
            assert_eq!(got[2].ext, "");
        }
    }

    #[test]
    fn a_member_larger_than_the_memory_limit_is_spooled_to_a_file() {
        let big: Vec<u8> = (0..MEMBER_IN_MEMORY + 1000)
            .map(|i| b"0123456789abcdef\n"[i % 17])
            .collect();
        let c = make_container(5, &[("main.hsb", &big), ("small.hdb", b"x\n")], true);
        let mut got = Vec::new();
        read_container(&c[..], false, |_| true, |m| got.push(m)).unwrap();
        let spooled = got[0].data.as_ref().unwrap();
        assert!(spooled.as_slice().is_none(), "held in memory");
        assert_eq!(spooled.len(), big.len() as u64);
        assert!(spooled.head(big.len()).unwrap() == big);
        let small = got[1].data.as_ref().unwrap();
        assert_eq!(small.as_slice(), Some(&b"x\n"[..]));
    }

    #[test]
    fn truncated_archive_is_an_error() {
        let c = make_container(5, &[("x.hdb", &[b'a'; 10_000])], true);
        let r = read_container(&c[..c.len() - 100], false, |_| true, |_| {});
        assert!(matches!(r, Err(CvdError::Archive(_))), "{r:?}");
    }
}
