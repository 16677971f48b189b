//! OLE2 compound files (Word, Excel and PowerPoint 97–2003 documents, MSI
//! packages, Outlook `.msg`): every stream is a member, named by its path in
//! the file. An `\x01Ole10Native` stream (a file embedded in a document) is
//! unwrapped to the packaged file, as ClamAV does. Read with the `cfb`
//! crate (random access through the blob); a panic inside it is caught and
//! reported as corruption, so a hostile file costs a verdict of
//! `unscannable`, never the process.

use crate::WalkError;
use crate::formats::ole1;
use crate::walk::{Member, Step, Walker};
use moat_core::Blob;
use moat_core::blob::BlobReader;
use std::io::{BufReader, Read};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;

const MAGIC: [u8; 8] = [0xd0, 0xcf, 0x11, 0xe0, 0xa1, 0xb1, 0x1a, 0xe1];
const OLE10_NATIVE: &str = "\u{1}Ole10Native";

pub(crate) fn is_ole2(head: &[u8]) -> bool {
    head.starts_with(&MAGIC)
}

pub(crate) fn walk<E>(
    w: &mut Walker<'_, E>,
    blob: &Blob,
    location: &str,
    depth: u32,
) -> Result<(), WalkError<E>> {
    match catch_unwind(AssertUnwindSafe(|| streams(w, blob, location, depth))) {
        Ok(r) => r,
        Err(_) => {
            w.corrupt(
                location,
                "ole2: the compound file reader failed on this file",
            );
            Ok(())
        }
    }
}

fn streams<E>(
    w: &mut Walker<'_, E>,
    blob: &Blob,
    location: &str,
    depth: u32,
) -> Result<(), WalkError<E>> {
    let mut cf = match cfb::CompoundFile::open(BufReader::new(blob.reader())) {
        Ok(cf) => cf,
        Err(e) => {
            w.corrupt(location, format!("ole2: {e}"));
            return Ok(());
        }
    };
    // One more than the walk may visit, so that the limit is still seen.
    let cap = usize::try_from(w.limits.max_members)
        .unwrap_or(usize::MAX)
        .saturating_add(1);
    let paths: Vec<(PathBuf, u64)> = cf
        .walk()
        .filter(|e| e.is_stream())
        .take(cap)
        .map(|e| (e.path().to_path_buf(), e.len()))
        .collect();
    for (path, len) in paths {
        if w.stopped {
            return Ok(());
        }
        let name = path.to_string_lossy();
        let name = name.trim_start_matches('/');
        let native = path.file_name().is_some_and(|n| n == OLE10_NATIVE);
        let step = if native {
            native_object(w, &mut cf, &path, name, location, depth)?
        } else {
            match cf.open_stream(&path) {
                Ok(mut s) => w.member(
                    Member {
                        reader: &mut s,
                        name,
                        stored_size: len,
                        declared_size: Some(len),
                    },
                    location,
                    depth + 1,
                )?,
                Err(e) => {
                    w.corrupt(&format!("{location}>{name}"), format!("ole2: {e}"));
                    Step::ReadFailed
                }
            }
        };
        if step == Step::Stop {
            return Ok(());
        }
    }
    Ok(())
}

type Compound = cfb::CompoundFile<BufReader<BlobReader>>;

/// An `\x01Ole10Native` stream: a size, then (for a packaged file) the
/// package header and the file, which is the member. Anything else is
/// the stream as it is.
fn native_object<E>(
    w: &mut Walker<'_, E>,
    cf: &mut Compound,
    path: &std::path::Path,
    name: &str,
    location: &str,
    depth: u32,
) -> Result<Step, WalkError<E>> {
    let opened = cf.open_stream(path).and_then(|mut s| {
        let mut size = [0u8; 4];
        s.read_exact(&mut size)?;
        let (label, len) = ole1::package_header(&mut s)?;
        Ok((s, label, len))
    });
    match opened {
        Ok((s, label, len)) => {
            let label = if label.is_empty() {
                name.to_string()
            } else {
                label
            };
            let mut data = s.take(u64::from(len));
            w.member(
                Member {
                    reader: &mut data,
                    name: &label,
                    stored_size: u64::from(len),
                    declared_size: Some(u64::from(len)),
                },
                location,
                depth + 1,
            )
        }
        Err(e) => {
            tracing::debug!(location, error = %e, "Ole10Native is not a package; scanned as it is");
            match cf.open_stream(path) {
                Ok(mut s) => {
                    let len = s.len();
                    w.member(
                        Member {
                            reader: &mut s,
                            name,
                            stored_size: len,
                            declared_size: Some(len),
                        },
                        location,
                        depth + 1,
                    )
                }
                Err(e) => {
                    w.corrupt(&format!("{location}>{name}"), format!("ole2: {e}"));
                    Ok(Step::ReadFailed)
                }
            }
        }
    }
}
