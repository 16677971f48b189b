//! OLE2 compound files (Word, Excel and PowerPoint 97–2003 documents, MSI
//! packages, Outlook `.msg`): every stream is a member, named by its path in
//! the file. An `\x01Ole10Native` stream (a file embedded in a document) is
//! unwrapped to the packaged file, and PowerPoint's embedded objects (kept
//! in records of its document stream, usually compressed) are members of
//! their own, as ClamAV does. Read with the `cfb`
//! crate (random access through the blob); a panic inside it is caught and
//! reported as corruption, so a hostile file costs a verdict of
//! `unscannable`, never the process.

use crate::WalkError;
use crate::formats::{ole1, read_full};
use crate::walk::{Member, Step, Walker};
use moat_core::Blob;
use moat_core::blob::BlobReader;
use std::io::{BufReader, Read};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;

const MAGIC: [u8; 8] = [0xd0, 0xcf, 0x11, 0xe0, 0xa1, 0xb1, 0x1a, 0xe1];
const OLE10_NATIVE: &str = "\u{1}Ole10Native";
const POWERPOINT: &str = "PowerPoint Document";
/// `RT_ExternalOleObjectStg`: an embedded object's storage, zlib-compressed
/// when the record's instance is 1.
const EX_OLE_OBJ_STG: u16 = 0x1011;

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
        let unwrapped = if path.file_name().is_some_and(|n| n == OLE10_NATIVE) {
            native_package(w, &mut cf, &path, name, location, depth)?
        } else {
            None
        };
        let step = match unwrapped {
            Some(step) => step,
            None => match cf.open_stream(&path) {
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
            },
        };
        if step == Step::Stop {
            return Ok(());
        }
        if step == Step::Next && path.file_name().is_some_and(|n| n == POWERPOINT) {
            let embedded = match cf.open_stream(&path) {
                Ok(s) => powerpoint_objects(w, BufReader::new(s), location, depth),
                Err(e) => Err(PptError::Io(e)),
            };
            match embedded {
                Ok(Step::Stop) => return Ok(()),
                Ok(_) => {}
                Err(PptError::Walk(e)) => return Err(e),
                Err(PptError::Io(e)) => w.corrupt(
                    &format!("{location}>{name}"),
                    format!("powerpoint records: {e}"),
                ),
            }
        }
    }
    Ok(())
}

type Compound = cfb::CompoundFile<BufReader<BlobReader>>;

/// An `\x01Ole10Native` stream holding a packaged file (a size, the
/// package header, the file): the file is the member. `None` for anything
/// else, which is then the stream as it is.
fn native_package<E>(
    w: &mut Walker<'_, E>,
    cf: &mut Compound,
    path: &std::path::Path,
    name: &str,
    location: &str,
    depth: u32,
) -> Result<Option<Step>, WalkError<E>> {
    let opened = cf.open_stream(path).and_then(|mut s| {
        let mut size = [0u8; 4];
        s.read_exact(&mut size)?;
        let (label, len) = ole1::package_header(&mut s)?;
        Ok((s, label, len))
    });
    let (s, label, len) = match opened {
        Ok(o) => o,
        Err(e) => {
            tracing::debug!(location, error = %e, "Ole10Native is not a package; scanned as it is");
            return Ok(None);
        }
    };
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
    .map(Some)
}

enum PptError<E> {
    Walk(WalkError<E>),
    Io(std::io::Error),
}

impl<E> From<std::io::Error> for PptError<E> {
    fn from(e: std::io::Error) -> Self {
        PptError::Io(e)
    }
}

/// The objects embedded in a PowerPoint 97–2003 presentation: its records
/// are read in order (containers entered, atoms passed over), and each
/// `ExOleObjStg` is a member, inflated when compressed. The member is itself
/// a compound file (an embedded document, or a package), opened as usual.
fn powerpoint_objects<E, R: Read>(
    w: &mut Walker<'_, E>,
    mut r: R,
    location: &str,
    depth: u32,
) -> Result<Step, PptError<E>> {
    let mut objects = 0u64;
    loop {
        if w.stopped {
            return Ok(Step::Stop);
        }
        let mut h = [0u8; 8];
        match read_full(&mut r, &mut h)? {
            0 => return Ok(Step::Next),
            8 => {}
            // The stream may end with padding shorter than a header.
            _ => return Ok(Step::Next),
        }
        let ver_instance = u16::from_le_bytes([h[0], h[1]]);
        let rec_type = u16::from_le_bytes([h[2], h[3]]);
        let len = u64::from(u32::from_le_bytes([h[4], h[5], h[6], h[7]]));
        if ver_instance & 0x0f == 0x0f {
            // A container: its records follow.
            continue;
        }
        let mut body = (&mut r).take(len);
        if rec_type == EX_OLE_OBJ_STG {
            objects += 1;
            let name = format!("PowerPoint object {objects}");
            let step = if ver_instance >> 4 == 1 {
                let mut size = [0u8; 4];
                body.read_exact(&mut size)?;
                let mut z = flate2::read::ZlibDecoder::new(&mut body);
                w.member(
                    Member {
                        reader: &mut z,
                        name: &name,
                        stored_size: len,
                        declared_size: Some(u64::from(u32::from_le_bytes(size))),
                    },
                    location,
                    depth + 1,
                )
            } else {
                w.member(
                    Member {
                        reader: &mut body,
                        name: &name,
                        stored_size: len,
                        declared_size: Some(len),
                    },
                    location,
                    depth + 1,
                )
            }
            .map_err(PptError::Walk)?;
            if step == Step::Stop {
                return Ok(step);
            }
        }
        std::io::copy(&mut body, &mut std::io::sink())?;
        if body.limit() > 0 {
            return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
        }
    }
}
