//! Single-stream compressors: gzip (multi-member), bzip2 (multi-stream), xz
//! (multi-stream) and zstd (multi-frame). Each yields one member whose
//! compressed size, for the ratio check, is the whole input.

use super::INPUT_BUFFER;
use crate::WalkError;
use crate::walk::{Member, Walker};
use moat_core::Blob;
use std::io::{BufReader, Read};

/// Largest xz dictionary accepted, in KiB (a hostile header could ask for 4 GiB).
const XZ_MEM_LIMIT_KB: u32 = 256 * 1024;
/// Largest zstd window accepted, as a power of two (128 MiB, zstd's own default).
const ZSTD_WINDOW_LOG_MAX: u32 = 27;
/// Longest gzip FNAME read, in bytes.
const MAX_FNAME: usize = 1024;

/// The single-stream formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Compressor {
    Gzip,
    Bzip2,
    Xz,
    Zstd,
}

pub(crate) fn walk<E>(
    w: &mut Walker<'_, E>,
    blob: &Blob,
    location: &str,
    kind: Compressor,
    depth: u32,
) -> Result<(), WalkError<E>> {
    let header_name = match kind {
        Compressor::Gzip => gzip_fname(blob).map_err(WalkError::Io)?,
        _ => None,
    };
    let name = header_name.unwrap_or_else(|| name_from_container(location, kind));
    let input = BufReader::with_capacity(INPUT_BUFFER, blob.reader());
    let mut reader: Box<dyn Read> = match kind {
        Compressor::Gzip => Box::new(flate2::read::MultiGzDecoder::new(input)),
        Compressor::Bzip2 => Box::new(bzip2::read::MultiBzDecoder::new(input)),
        Compressor::Xz => Box::new(lzma_rust2::XzReader::new_mem_limit(
            input,
            true,
            XZ_MEM_LIMIT_KB,
        )),
        Compressor::Zstd => {
            let decoder = zstd::stream::read::Decoder::with_buffer(input)
                .and_then(|mut d| d.window_log_max(ZSTD_WINDOW_LOG_MAX).map(|()| d));
            match decoder {
                Ok(d) => Box::new(d),
                Err(e) => {
                    w.corrupt(location, format!("zstd: {e}"));
                    return Ok(());
                }
            }
        }
    };
    w.member(
        Member {
            reader: &mut reader,
            name: &name,
            stored_size: blob.len(),
            declared_size: None,
        },
        location,
        depth + 1,
    )?;
    Ok(())
}

/// The FNAME field of a gzip header, if present (RFC 1952 §2.3).
fn gzip_fname(blob: &Blob) -> std::io::Result<Option<String>> {
    const FEXTRA: u8 = 0x04;
    const FNAME: u8 = 0x08;
    let head = blob.head(10 + 2 + usize::from(u16::MAX) + MAX_FNAME + 1)?;
    let Some(&flags) = head.get(3) else {
        return Ok(None);
    };
    if flags & FNAME == 0 {
        return Ok(None);
    }
    let mut pos = 10usize;
    if flags & FEXTRA != 0 {
        let Some(len) = head.get(pos..pos + 2) else {
            return Ok(None);
        };
        pos += 2 + usize::from(u16::from_le_bytes([len[0], len[1]]));
    }
    let Some(rest) = head.get(pos..) else {
        return Ok(None);
    };
    let field = &rest[..rest.len().min(MAX_FNAME)];
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    let name = String::from_utf8_lossy(&field[..end]).into_owned();
    Ok((!name.is_empty()).then_some(name))
}

/// `x.tar.gz` → `x.tar`, `x.tgz` → `x.tar`, `x.gz` → `x`; otherwise `data`.
/// Only the container's own name (after the last `>` and `/`) is used.
fn name_from_container(location: &str, kind: Compressor) -> String {
    let own = location.rsplit('>').next().unwrap_or(location);
    let own = own.rsplit('/').next().unwrap_or(own);
    let rules: &[(&str, &str)] = match kind {
        Compressor::Gzip => &[(".tgz", ".tar"), (".taz", ".tar"), (".gz", ""), (".z", "")],
        Compressor::Bzip2 => &[(".tbz2", ".tar"), (".tbz", ".tar"), (".bz2", "")],
        Compressor::Xz => &[(".txz", ".tar"), (".xz", "")],
        Compressor::Zstd => &[(".tzst", ".tar"), (".zstd", ""), (".zst", "")],
    };
    let lower = own.to_ascii_lowercase();
    for (suffix, replacement) in rules {
        if lower.ends_with(suffix) && own.len() > suffix.len() {
            return format!("{}{replacement}", &own[..own.len() - suffix.len()]);
        }
    }
    "data".to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_names() {
        let n = |l, k| name_from_container(l, k);
        assert_eq!(n("a.tar.gz", Compressor::Gzip), "a.tar");
        assert_eq!(n("x.zip>dir/B.TGZ", Compressor::Gzip), "B.tar");
        assert_eq!(n("notes.gz", Compressor::Gzip), "notes");
        assert_eq!(n(".gz", Compressor::Gzip), "data");
        assert_eq!(n("upload", Compressor::Gzip), "data");
        assert_eq!(n("a.tar.bz2", Compressor::Bzip2), "a.tar");
        assert_eq!(n("a.txz", Compressor::Xz), "a.tar");
        assert_eq!(n("a.tar.zst", Compressor::Zstd), "a.tar");
    }

    #[test]
    fn fname_parsing_survives_garbage() {
        assert_eq!(
            gzip_fname(&Blob::from_vec(vec![0x1f, 0x8b, 8])).unwrap(),
            None
        );
        // FNAME and FEXTRA set, header cut short.
        let b = Blob::from_vec(vec![0x1f, 0x8b, 8, 0x0c, 0, 0, 0, 0, 0, 0, 0xff, 0xff]);
        assert_eq!(gzip_fname(&b).unwrap(), None);
        let b = Blob::from_vec(vec![0x1f, 0x8b, 8, 0x08, 0, 0, 0, 0, 0, 0, b'a', b'b']);
        assert_eq!(gzip_fname(&b).unwrap().as_deref(), Some("ab"));
    }
}
