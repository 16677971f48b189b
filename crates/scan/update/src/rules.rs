//! YARA rule archives from extra URLs: a `.tar.gz`/`.tgz` or `.zip` of a
//! rule collection, unpacked into a staging directory with limits.
//!
//! Only regular files named `*.yar`/`*.yara` are kept, under their own
//! relative paths (so `include` directives between them keep working); every
//! path component must be a plain name (no `..`, no absolute paths, nothing
//! hidden), links and devices are skipped, and the entry count, each file's
//! size and the total unpacked size are bounded, so a hostile archive can
//! neither escape the directory nor fill the disk. What was skipped is
//! counted, never fatal: one odd entry does not refuse a whole collection.

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};

/// Entries looked at, at most (kept or skipped).
pub const MAX_ENTRIES: usize = 20_000;
/// Largest rule file kept (the yara engine reads at most 64 MiB per file).
pub const MAX_FILE: u64 = 64 << 20;
/// Total bytes written, at most.
pub const MAX_TOTAL: u64 = 512 << 20;
/// Deepest directory nesting kept.
const MAX_DEPTH: usize = 16;

/// The kinds of archive an extra URL may name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    TarGz,
    Zip,
}

/// The archive kind of a file name (`rules.tar.gz`, `rules.tgz`, `rules.zip`),
/// and the directory name its rules are installed under (`rules.yara.d`).
pub fn archive(name: &str) -> Option<(Kind, String)> {
    let lower = name.to_ascii_lowercase();
    let (kind, stem_len) = if lower.ends_with(".tar.gz") {
        (Kind::TarGz, name.len() - 7)
    } else if lower.ends_with(".tgz") {
        (Kind::TarGz, name.len() - 4)
    } else if lower.ends_with(".zip") {
        (Kind::Zip, name.len() - 4)
    } else {
        return None;
    };
    let stem = &name[..stem_len];
    (!stem.is_empty()).then(|| (kind, format!("{stem}.yara.d")))
}

/// What unpacking kept and skipped.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Unpacked {
    pub files: usize,
    pub bytes: u64,
    /// Entries not kept: not a `.yar`/`.yara` regular file, an unsafe path,
    /// too large, or past the limits.
    pub skipped: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("not a readable {kind} archive: {msg}")]
    Format { kind: &'static str, msg: String },
    #[error("more than {MAX_TOTAL} bytes of rules unpacked")]
    TooLarge,
    #[error("writing the rules: {0}")]
    Io(#[from] std::io::Error),
}

/// Unpack the rule files of `archive` into the (empty) directory `dest`.
pub fn unpack(kind: Kind, archive: &Path, dest: &Path) -> Result<Unpacked, UnpackError> {
    match kind {
        Kind::TarGz => unpack_tar_gz(archive, dest),
        Kind::Zip => unpack_zip(archive, dest),
    }
}

/// The relative path an entry is written to, or `None` when it is not a
/// rule file with a safe path.
fn safe_path(name: &str) -> Option<PathBuf> {
    let p = Path::new(name);
    let mut out = PathBuf::new();
    let mut depth = 0;
    for c in p.components() {
        match c {
            Component::Normal(s) => {
                let s = s.to_str()?;
                if s.starts_with('.') || s.chars().any(|ch| ch.is_control() || ch == '\\') {
                    return None;
                }
                depth += 1;
                out.push(s);
            }
            Component::CurDir => {}
            _ => return None,
        }
    }
    if depth == 0 || depth > MAX_DEPTH {
        return None;
    }
    let ext = out.extension()?.to_str()?;
    (ext.eq_ignore_ascii_case("yar") || ext.eq_ignore_ascii_case("yara")).then_some(out)
}

/// Copy at most [`MAX_FILE`] bytes of `r` to a new 0600 file at
/// `dest/rel`. `Ok(None)`: the entry was larger than [`MAX_FILE`] (the
/// partial file is removed) or its name is taken.
fn write_entry(
    dest: &Path,
    rel: &Path,
    r: &mut dyn Read,
    total: &mut u64,
) -> Result<Option<u64>, UnpackError> {
    let path = dest.join(rel);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut f = match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let mut limited = r.take(MAX_FILE + 1);
    let mut buf = [0u8; 64 << 10];
    let mut n: u64 = 0;
    loop {
        let k = limited.read(&mut buf)?;
        if k == 0 {
            break;
        }
        n += k as u64;
        if n > MAX_FILE {
            drop(f);
            std::fs::remove_file(&path)?;
            return Ok(None);
        }
        *total += k as u64;
        if *total > MAX_TOTAL {
            return Err(UnpackError::TooLarge);
        }
        f.write_all(&buf[..k])?;
    }
    f.sync_all()?;
    Ok(Some(n))
}

fn unpack_tar_gz(archive: &Path, dest: &Path) -> Result<Unpacked, UnpackError> {
    let fmt = |e: std::io::Error| UnpackError::Format {
        kind: "tar.gz",
        msg: e.to_string(),
    };
    let gz = flate2::read::GzDecoder::new(std::io::BufReader::new(File::open(archive)?));
    let mut tar = tar::Archive::new(gz);
    let mut out = Unpacked::default();
    let mut seen = 0usize;
    for entry in tar.entries().map_err(fmt)? {
        let mut entry = entry.map_err(fmt)?;
        seen += 1;
        if seen > MAX_ENTRIES {
            out.skipped += 1;
            break;
        }
        let regular = entry.header().entry_type().is_file();
        let name = entry.path().map_err(fmt)?.to_string_lossy().into_owned();
        let Some(rel) = safe_path(&name).filter(|_| regular) else {
            out.skipped += 1;
            continue;
        };
        match write_entry(dest, &rel, &mut entry, &mut out.bytes)? {
            Some(_) => out.files += 1,
            None => out.skipped += 1,
        }
    }
    Ok(out)
}

fn unpack_zip(archive: &Path, dest: &Path) -> Result<Unpacked, UnpackError> {
    let fmt = |e: zip::result::ZipError| UnpackError::Format {
        kind: "zip",
        msg: e.to_string(),
    };
    let mut zip =
        zip::ZipArchive::new(std::io::BufReader::new(File::open(archive)?)).map_err(fmt)?;
    let mut out = Unpacked::default();
    for i in 0..zip.len() {
        if i >= MAX_ENTRIES {
            out.skipped += zip.len() - i;
            break;
        }
        let mut entry = match zip.by_index(i) {
            Ok(e) => e,
            // Encrypted or an unsupported method: that entry only.
            Err(_) => {
                out.skipped += 1;
                continue;
            }
        };
        let regular = entry.is_file() && !entry.is_symlink();
        let name = entry.name().map(|n| n.into_owned()).unwrap_or_default();
        let Some(rel) = safe_path(&name).filter(|_| regular) else {
            out.skipped += 1;
            continue;
        };
        if entry.size() > MAX_FILE {
            out.skipped += 1;
            continue;
        }
        match write_entry(dest, &rel, &mut entry, &mut out.bytes) {
            Ok(Some(_)) => out.files += 1,
            Ok(None) => out.skipped += 1,
            Err(UnpackError::Io(e)) if e.kind() == std::io::ErrorKind::InvalidData => {
                // A corrupt member (bad CRC, truncated): skip what was written.
                let _ = std::fs::remove_file(dest.join(&rel));
                out.skipped += 1;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_gz(entries: &[(&str, &[u8])], links: &[(&str, &str)]) -> Vec<u8> {
        let mut b = tar::Builder::new(flate2::write::GzEncoder::new(
            Vec::new(),
            flate2::Compression::fast(),
        ));
        for (name, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            // Written raw so that hostile names ("../x") reach the archive.
            let raw = &mut h.as_old_mut().name;
            raw[..name.len()].copy_from_slice(name.as_bytes());
            h.set_cksum();
            b.append(&h, *data).unwrap();
        }
        for (name, target) in links {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_size(0);
            b.append_link(&mut h, name, target).unwrap();
        }
        b.into_inner().unwrap().finish().unwrap()
    }

    fn files_under(dir: &Path) -> Vec<String> {
        let mut v = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap().flatten() {
                if e.file_type().unwrap().is_dir() {
                    stack.push(e.path());
                } else {
                    v.push(
                        e.path()
                            .strip_prefix(dir)
                            .unwrap()
                            .to_string_lossy()
                            .into_owned(),
                    );
                }
            }
        }
        v.sort();
        v
    }

    #[test]
    fn archive_names_map_to_their_rule_directory() {
        assert_eq!(
            archive("rules.tar.gz"),
            Some((Kind::TarGz, "rules.yara.d".into()))
        );
        assert_eq!(
            archive("Sig-Base.TGZ"),
            Some((Kind::TarGz, "Sig-Base.yara.d".into()))
        );
        assert_eq!(archive("r.zip"), Some((Kind::Zip, "r.yara.d".into())));
        assert_eq!(archive(".zip"), None);
        assert_eq!(archive("rules.yara"), None);
    }

    #[test]
    fn only_rule_files_with_safe_paths_are_unpacked_from_a_tar_gz() {
        let tmp = tempfile::tempdir().unwrap();
        let a = tmp.path().join("r.tar.gz");
        std::fs::write(
            &a,
            tar_gz(
                &[
                    ("coll/a.yar", b"rule a { condition: true }"),
                    ("coll/sub/b.YARA", b"rule b { condition: true }"),
                    ("coll/README.md", b"readme"),
                    ("../escape.yar", b"rule e { condition: true }"),
                    ("/abs.yar", b"rule f { condition: true }"),
                    ("coll/.hidden.yar", b"rule h { condition: true }"),
                ],
                &[("coll/link.yar", "/etc/passwd")],
            ),
        )
        .unwrap();
        let dest = tmp.path().join("out");
        std::fs::create_dir(&dest).unwrap();
        let u = unpack(Kind::TarGz, &a, &dest).unwrap();
        assert_eq!(u.files, 2);
        assert_eq!(u.skipped, 5);
        assert_eq!(files_under(&dest), vec!["coll/a.yar", "coll/sub/b.YARA"]);
        assert!(!tmp.path().join("escape.yar").exists());
        let meta = std::fs::metadata(dest.join("coll/a.yar")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    }

    #[test]
    fn a_zip_is_unpacked_with_the_same_rules() {
        let tmp = tempfile::tempdir().unwrap();
        let a = tmp.path().join("r.zip");
        let mut z = zip::ZipWriter::new(File::create(&a).unwrap());
        let o = zip::write::SimpleFileOptions::default();
        z.start_file("x/one.yar", o).unwrap();
        z.write_all(b"rule one { condition: true }").unwrap();
        z.start_file("x/notes.txt", o).unwrap();
        z.write_all(b"n").unwrap();
        z.start_file("../../two.yar", o).unwrap();
        z.write_all(b"rule two { condition: true }").unwrap();
        z.finish().unwrap();
        let dest = tmp.path().join("out");
        std::fs::create_dir(&dest).unwrap();
        let u = unpack(Kind::Zip, &a, &dest).unwrap();
        assert_eq!((u.files, u.skipped), (1, 2));
        assert_eq!(files_under(&dest), vec!["x/one.yar"]);
    }

    #[test]
    fn garbage_is_a_format_error_not_a_panic() {
        let tmp = tempfile::tempdir().unwrap();
        let a = tmp.path().join("r.tar.gz");
        std::fs::write(&a, b"\x1f\x8b\x08\x00garbage that is not gzip at all").unwrap();
        let dest = tmp.path().join("out");
        std::fs::create_dir(&dest).unwrap();
        assert!(matches!(
            unpack(Kind::TarGz, &a, &dest),
            Err(UnpackError::Format { .. })
        ));
        std::fs::write(&a, b"PK\x03\x04 not a zip").unwrap();
        assert!(matches!(
            unpack(Kind::Zip, &a, &dest),
            Err(UnpackError::Format { .. })
        ));
    }
}
