//! zip: members from the central directory; encrypted members are reported
//! and skipped. When the central directory cannot be read (a truncated
//! archive), the archive is reported corrupt and its local headers are then
//! read in order, so members before the damage are still scanned.

use super::INPUT_BUFFER;
use crate::walk::{Member, Step, Walker};
use crate::{Problem, WalkError};
use moat_core::Blob;
use std::io::BufReader;
use zip::ZipArchive;
use zip::result::ZipError;

pub(crate) fn walk<E>(
    w: &mut Walker<'_, E>,
    blob: &Blob,
    location: &str,
    depth: u32,
) -> Result<(), WalkError<E>> {
    let mut archive = match ZipArchive::new(blob.reader()) {
        Ok(a) => a,
        Err(e) => {
            w.corrupt(location, format!("zip central directory: {e}"));
            return stream_fallback(w, blob, location, depth);
        }
    };
    for i in 0..archive.len() {
        if w.stopped {
            break;
        }
        let (name, skip, encrypted, stored) = match archive.by_index_data(i) {
            Ok(e) => (
                e.name()
                    .map(|n| n.into_owned())
                    .unwrap_or_else(|_| String::from_utf8_lossy(e.name_raw()).into_owned()),
                e.is_dir() || e.is_symlink(),
                e.encrypted(),
                e.compressed_size(),
            ),
            Err(e) => {
                w.corrupt(location, format!("zip entry {i}: {e}"));
                continue;
            }
        };
        if skip {
            continue;
        }
        let member_location = format!("{location}>{name}");
        if encrypted {
            w.problem(Problem::Encrypted {
                location: member_location,
            });
            continue;
        }
        let mut file = match archive.by_index(i) {
            Ok(f) => f,
            Err(e) => {
                unreadable(w, member_location, e);
                continue;
            }
        };
        let declared = file.size();
        let step = w.member(
            Member {
                reader: &mut file,
                name: &name,
                stored_size: stored.min(blob.len()),
                declared_size: Some(declared),
            },
            location,
            depth + 1,
        )?;
        if step == Step::Stop {
            break;
        }
    }
    Ok(())
}

/// Record why a member cannot be opened: an unknown method is unsupported,
/// anything else is corruption.
fn unreadable<E>(w: &mut Walker<'_, E>, location: String, e: ZipError) {
    match e {
        ZipError::UnsupportedArchive(what) => w.problem(Problem::Unsupported {
            location,
            what: format!("zip: {what}"),
        }),
        ZipError::CompressionMethodNotSupported(m) => w.problem(Problem::Unsupported {
            location,
            what: format!("zip compression method {m}"),
        }),
        other => w.corrupt(&location, other),
    }
}

/// Read local headers in order after the central directory failed. The
/// corruption is already recorded; this only adds what can still be seen.
fn stream_fallback<E>(
    w: &mut Walker<'_, E>,
    blob: &Blob,
    location: &str,
    depth: u32,
) -> Result<(), WalkError<E>> {
    let mut input = BufReader::with_capacity(INPUT_BUFFER, blob.reader());
    while !w.stopped {
        let mut file = match zip::read::read_zipfile_from_stream(&mut input) {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => {
                tracing::debug!(location, error = %e, "zip local-header scan stopped");
                break;
            }
        };
        if file.is_dir() || file.is_symlink() {
            continue;
        }
        let name = String::from_utf8_lossy(file.name_raw()).into_owned();
        if file.encrypted() {
            w.problem(Problem::Encrypted {
                location: format!("{location}>{name}"),
            });
            continue;
        }
        let stored = file.compressed_size().min(blob.len());
        let declared = file.size();
        let step = w.member(
            Member {
                reader: &mut file,
                name: &name,
                stored_size: stored,
                // Sizes may live in a data descriptor after the data.
                declared_size: (declared > 0).then_some(declared),
            },
            location,
            depth + 1,
        )?;
        if step != Step::Next {
            break;
        }
    }
    Ok(())
}
