//! `.cvd` / `.cld` containers: a 512-byte ASCII header
//! (`ClamAV-VDB:time:version:sigs:flevel:md5:dsig:builder:stime`, space
//! padded) followed by a tar archive, gzip-compressed for `.cvd` (a `.cld`
//! may be either: sniffed by the gzip magic).
//!
//! Members are streamed from the archive in memory: a member name is only
//! used to pick its kind (by extension), never as a file-system path. The
//! header's digital signature is not checked.

use std::io::{BufReader, Read};

/// Length of the header block.
pub const HEADER_LEN: usize = 512;
/// Largest member read into memory.
pub const MAX_MEMBER: u64 = 2 << 30;

/// The fields of a cvd/cld header that matter here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CvdHeader {
    pub build_time: String,
    pub version: u64,
    pub signatures: u64,
    pub flevel: u64,
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

/// Parse the 512-byte header.
pub fn parse_header(h: &[u8]) -> Result<CvdHeader, CvdError> {
    if h.len() < HEADER_LEN {
        return Err(CvdError::Short(h.len()));
    }
    let h = &h[..HEADER_LEN];
    if !h.starts_with(b"ClamAV-VDB:") {
        return Err(CvdError::BadMagic);
    }
    let text = String::from_utf8_lossy(h);
    let fields: Vec<&str> = text.trim_end_matches([' ', '\0']).split(':').collect();
    let num = |i: usize, field: &'static str| -> Result<u64, CvdError> {
        let v = fields.get(i).map_or("", |s| s.trim());
        v.parse().map_err(|_| CvdError::BadField {
            field,
            value: v.to_string(),
        })
    };
    Ok(CvdHeader {
        build_time: fields.get(1).map_or("", |s| s.trim()).to_string(),
        version: num(2, "version")?,
        signatures: num(3, "signature count")?,
        flevel: num(4, "functionality level")?,
    })
}

/// One archive member: its base name, its lowercase extension and (for
/// members the caller wants) its bytes.
#[derive(Debug)]
pub struct Member {
    pub name: String,
    pub ext: String,
    pub data: Option<Vec<u8>>,
    /// Non-empty lines, counted when the data is not kept.
    pub lines: u64,
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
fn count_lines(r: &mut impl Read) -> std::io::Result<u64> {
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

/// Read a container from `r` (positioned at its start). For each member,
/// `keep(ext)` decides whether its bytes are returned (`Some`) or only its
/// lines counted; `on_member` gets each member as it is read, so only one
/// member's bytes are held at a time.
pub fn read_container(
    r: impl Read,
    mut keep: impl FnMut(&str) -> bool,
    mut on_member: impl FnMut(Member),
) -> Result<CvdHeader, CvdError> {
    let mut r = BufReader::with_capacity(256 * 1024, r);
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
    // Sniff gzip vs plain tar.
    let mut magic = [0u8; 2];
    let mut m = 0;
    while m < 2 {
        let n = r.read(&mut magic[m..])?;
        if n == 0 {
            break;
        }
        m += n;
    }
    let rest = std::io::Cursor::new(magic[..m].to_vec()).chain(r);
    if magic[..m] == [0x1f, 0x8b] {
        read_tar(
            flate2::read::GzDecoder::new(rest),
            &mut keep,
            &mut on_member,
        )?;
    } else {
        read_tar(rest, &mut keep, &mut on_member)?;
    }
    Ok(hdr)
}

fn read_tar(
    r: impl Read,
    keep: &mut impl FnMut(&str) -> bool,
    on_member: &mut impl FnMut(Member),
) -> Result<(), CvdError> {
    let mut ar = tar::Archive::new(r);
    for entry in ar.entries()? {
        let mut entry = entry?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let (name, ext) = split_name(&entry.path_bytes());
        if keep(&ext) {
            let size = entry.header().size().unwrap_or(0);
            let mut data = Vec::with_capacity(size.min(MAX_MEMBER) as usize);
            #[allow(clippy::disallowed_methods)] // bounded by MAX_MEMBER
            let n = (&mut entry).take(MAX_MEMBER).read_to_end(&mut data)?;
            if n as u64 >= MAX_MEMBER {
                return Err(CvdError::Archive(std::io::Error::other(format!(
                    "member {name} is larger than {MAX_MEMBER} bytes"
                ))));
            }
            on_member(Member {
                name,
                ext,
                data: Some(data),
                lines: 0,
            });
        } else {
            let lines = count_lines(&mut entry)?;
            on_member(Member {
                name,
                ext,
                data: None,
                lines,
            });
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
            let h = read_container(&c[..], |ext| ext == "hdb", |m| got.push(m)).unwrap();
            assert_eq!(h.version, 5);
            assert_eq!(got.len(), 3);
            assert_eq!(got[0].ext, "hdb");
            assert_eq!(got[0].data.as_deref(), Some(&b"aa\n"[..]));
            assert_eq!(
                (got[1].name.as_str(), got[1].ext.as_str(), got[1].lines),
                ("x.ldb", "ldb", 3)
            );
            assert_eq!(got[2].ext, "");
        }
    }

    #[test]
    fn truncated_archive_is_an_error() {
        let c = make_container(5, &[("x.hdb", &[b'a'; 10_000])], true);
        let r = read_container(&c[..c.len() - 100], |_| true, |_| {});
        assert!(matches!(r, Err(CvdError::Archive(_))), "{r:?}");
    }
}
