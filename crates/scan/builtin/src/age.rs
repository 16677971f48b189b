//! How old a signature set is: the newest build time among the files loaded.
//!
//! A `.cvd`/`.cld` header carries the Unix time its database was built (the
//! ninth header field); a plain signature file only has its modification
//! time. Files the loader would not read (`freshclam.dat`, `mirrors.dat`,
//! which freshclam touches on every attempt) are ignored, so a failing
//! updater does not make a stale database look fresh.

use crate::cvd::HEADER_LEN;
use crate::load::is_signature_file;
use std::io::Read;
use std::path::Path;
use std::time::UNIX_EPOCH;

/// The build time in a cvd/cld header (`ClamAV-VDB:time:version:sigs:flevel:md5:dsig:builder:stime`).
pub fn header_build_time(header: &[u8]) -> Option<u64> {
    let h = header.get(..HEADER_LEN.min(header.len()))?;
    if !h.starts_with(b"ClamAV-VDB:") {
        return None;
    }
    let text = std::str::from_utf8(h).ok()?;
    let field = text.trim_end_matches([' ', '\0']).split(':').nth(8)?;
    field.trim().parse().ok()
}

fn file_built_at(path: &Path) -> Option<u64> {
    let name = path.file_name()?.to_str()?;
    if !is_signature_file(name) {
        return None;
    }
    let lower = name.to_ascii_lowercase();
    if lower.ends_with(".cvd") || lower.ends_with(".cld") {
        let mut head = Vec::with_capacity(HEADER_LEN);
        let f = std::fs::File::open(path).ok()?;
        #[allow(clippy::disallowed_methods)] // bounded: the 512-byte header
        f.take(HEADER_LEN as u64).read_to_end(&mut head).ok()?;
        if let Some(t) = header_build_time(&head) {
            return Some(t);
        }
    }
    let m = std::fs::metadata(path).ok()?.modified().ok()?;
    m.duration_since(UNIX_EPOCH).ok().map(|d| d.as_secs())
}

/// The newest build time of the signature files under `paths` (files, or
/// directories read non-recursively, as the loader reads them).
pub fn newest_build_time(paths: &[impl AsRef<Path>]) -> Option<u64> {
    let mut newest: Option<u64> = None;
    let mut see = |t: Option<u64>| {
        if let Some(t) = t {
            newest = Some(newest.map_or(t, |n| n.max(t)));
        }
    };
    for p in paths {
        let p = p.as_ref();
        if p.is_dir() {
            let Ok(rd) = std::fs::read_dir(p) else {
                continue;
            };
            for e in rd.flatten() {
                if e.file_type().is_ok_and(|t| t.is_file()) {
                    see(file_built_at(&e.path()));
                }
            }
        } else {
            see(file_built_at(p));
        }
    }
    newest
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(stime: &str) -> Vec<u8> {
        let mut h = format!(
            "ClamAV-VDB:26 Nov 2026 09-52 -0500:27470:2078212:90:0123456789abcdef0123456789abcdef:sig:builder:{stime}"
        )
        .into_bytes();
        h.resize(HEADER_LEN, b' ');
        h
    }

    #[test]
    fn cvd_header_build_time_is_the_ninth_field() {
        assert_eq!(
            header_build_time(&header("1795700000")),
            Some(1_795_700_000)
        );
        assert_eq!(header_build_time(&header("soon")), None);
        assert_eq!(header_build_time(b"not a header"), None);
    }

    #[test]
    fn newest_build_time_prefers_cvd_headers_and_ignores_updater_state() {
        let dir = tempfile::tempdir().unwrap();
        let mut cvd = header("1000");
        cvd.extend_from_slice(b"tar data");
        std::fs::write(dir.path().join("main.cvd"), &cvd).unwrap();
        // freshclam.dat is rewritten on every update attempt: not a signature file.
        std::fs::write(dir.path().join("freshclam.dat"), b"x").unwrap();
        assert_eq!(newest_build_time(&[dir.path()]), Some(1000));
        // A plain signature file counts by its modification time (now).
        std::fs::write(dir.path().join("local.hdb"), b"").unwrap();
        let t = newest_build_time(&[dir.path()]).unwrap();
        assert!(t > 1_700_000_000, "{t}");
        let empty = tempfile::tempdir().unwrap();
        assert_eq!(newest_build_time(&[empty.path()]), None);
    }
}
