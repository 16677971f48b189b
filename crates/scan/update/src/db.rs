//! Local databases: find the current `NAME.cvd`/`NAME.cld`, verify and
//! unpack one into a directory (for cdiffs), and build a `.cld` from an
//! unpacked directory as freshclam's `buildcld` does.

use moat_builtin::cvd::{self, CvdHeader};
use moat_builtin::dsig::Keys;
use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("{path}: {msg}")]
    Bad { path: PathBuf, msg: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DbError + '_ {
    move |source| DbError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn bad(path: &Path, msg: impl Into<String>) -> DbError {
    DbError::Bad {
        path: path.to_path_buf(),
        msg: msg.into(),
    }
}

/// The 512-byte header of a container file.
pub fn read_header(path: &Path) -> Result<CvdHeader, DbError> {
    let f = File::open(path).map_err(io(path))?;
    let mut h = Vec::with_capacity(cvd::HEADER_LEN);
    #[allow(clippy::disallowed_methods)] // bounded by take()
    f.take(cvd::HEADER_LEN as u64)
        .read_to_end(&mut h)
        .map_err(io(path))?;
    cvd::parse_header(&h).map_err(|e| bad(path, e.to_string()))
}

/// The local copy of database `name` in `dir`: of `name.cvd` and
/// `name.cld`, the one with the higher version (as the loader picks).
pub fn current(dir: &Path, name: &str) -> Option<(PathBuf, CvdHeader)> {
    ["cvd", "cld"]
        .iter()
        .filter_map(|ext| {
            let p = dir.join(format!("{name}.{ext}"));
            let h = read_header(&p).ok()?;
            Some((p, h))
        })
        .max_by_key(|(_, h)| h.version)
}

/// Read a container completely, verifying it (MD5 and signature of a
/// `.cvd` header, the signed `.info` and every member's size and SHA-256);
/// with `unpack_to`, members are written there. Returns the header.
pub fn verify(path: &Path, keys: &Keys, unpack_to: Option<&Path>) -> Result<CvdHeader, DbError> {
    let f = File::open(path).map_err(io(path))?;
    let is_cld = path.extension().is_some_and(|e| e == "cld");
    let mut write_err: Option<DbError> = None;
    let (hdr, integrity) = cvd::read_container(
        BufReader::new(f),
        true,
        |_| unpack_to.is_some(),
        |m| {
            let (Some(dir), Some(data)) = (unpack_to, m.data) else {
                return;
            };
            if write_err.is_some() {
                return;
            }
            if !crate::valid_name(&m.name) {
                write_err = Some(bad(path, format!("member name {:?} refused", m.name)));
                return;
            }
            let p = dir.join(&m.name);
            let written = File::create(&p)
                .and_then(|mut f| std::io::copy(&mut data.reader(), &mut f).map(drop));
            if let Err(e) = written {
                write_err = Some(DbError::Io { path: p, source: e });
            }
        },
    )
    .map_err(|e| bad(path, e.to_string()))?;
    if let Some(e) = write_err {
        return Err(e);
    }
    let integrity = integrity.ok_or_else(|| bad(path, "no integrity data"))?;
    cvd::verify_with(&hdr, is_cld, &integrity, keys).map_err(|e| bad(path, e.to_string()))?;
    Ok(hdr)
}

/// Build `out` (a `.cld`) from the unpacked database `name` in `dir`: the
/// header is the first line of `name.info` padded to 512 bytes, then a
/// gzip-compressed tar of `COPYING`, `name.info`, `name.cfg` and every other
/// file, as freshclam's `buildcld` writes it.
pub fn build_cld(dir: &Path, name: &str, out: &Path) -> Result<CvdHeader, DbError> {
    let info_path = dir.join(format!("{name}.info"));
    let mut first = Vec::new();
    {
        let f = File::open(&info_path).map_err(io(&info_path))?;
        let mut r = BufReader::new(f.take(cvd::HEADER_LEN as u64 + 1));
        std::io::BufRead::read_until(&mut r, b'\n', &mut first).map_err(io(&info_path))?;
    }
    if first.last() != Some(&b'\n') || first.len() > cvd::HEADER_LEN {
        return Err(bad(&info_path, "the first line is not a database header"));
    }
    first.pop();
    let mut header = first;
    header.resize(cvd::HEADER_LEN, b' ');
    let hdr = cvd::parse_header(&header).map_err(|e| bad(&info_path, e.to_string()))?;

    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map_err(io(dir))?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect();
    names.sort();
    let info = format!("{name}.info");
    let cfg = format!("{name}.cfg");
    let first_ones = ["COPYING", info.as_str(), cfg.as_str()];
    let mut order: Vec<&str> = first_ones
        .iter()
        .copied()
        .filter(|n| names.iter().any(|m| m == n))
        .collect();
    order.extend(
        names
            .iter()
            .map(String::as_str)
            .filter(|n| !first_ones.contains(n)),
    );

    let mut f = File::create(out).map_err(io(out))?;
    f.write_all(&header).map_err(io(out))?;
    let gz = flate2::write::GzEncoder::new(f, flate2::Compression::new(6));
    let mut tar = tar::Builder::new(gz);
    tar.mode(tar::HeaderMode::Deterministic);
    for n in order {
        let p = dir.join(n);
        let mut src = File::open(&p).map_err(io(&p))?;
        tar.append_file(n, &mut src).map_err(io(&p))?;
    }
    let gz = tar.into_inner().map_err(io(out))?;
    let f = gz.finish().map_err(io(out))?;
    f.sync_all().map_err(io(out))?;
    Ok(hdr)
}
