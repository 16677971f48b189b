//! OLE1 embedded objects (MS-OLEDS 2.2.4 `EmbeddedObject`), as RTF's
//! `\objdata` holds them: a class name, then the object's native data. The
//! native data is the member; for the `Package` class (a file dragged into
//! a document) it is unwrapped to the packaged file itself, named by its
//! label, as ClamAV does.

use crate::WalkError;
use crate::walk::{Member, Walker};
use moat_core::Blob;
use std::io::{self, BufReader, Read, Seek, SeekFrom};

/// `OLEVersion` 0x0501 and `FormatID` 2 (embedded; linked objects carry no data).
const MAGIC: [u8; 8] = [0x01, 0x05, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00];
/// Longest class name, topic or item string accepted.
const MAX_STRING: u32 = 64 * 1024;
/// Longest label or path of a package accepted.
const MAX_PATH: usize = 4096;

/// The magic, then a class name length and a NUL-terminated class name.
pub(crate) fn is_ole1(head: &[u8]) -> bool {
    if !head.starts_with(&MAGIC) {
        return false;
    }
    let Some(len) = head
        .get(8..12)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    else {
        return false;
    };
    let len = len as usize;
    (2..=256).contains(&len)
        && head.get(12..12 + len).is_some_and(|name| {
            name[len - 1] == 0 && name[..len - 1].iter().all(u8::is_ascii_graphic)
        })
}

pub(crate) fn walk<E>(
    w: &mut Walker<'_, E>,
    blob: &Blob,
    location: &str,
    depth: u32,
) -> Result<(), WalkError<E>> {
    let mut r = BufReader::new(blob.reader());
    let header = (|| -> io::Result<(Vec<u8>, u32, u64)> {
        let mut magic = [0u8; 8];
        r.read_exact(&mut magic)?;
        let class = string(&mut r)?;
        let topic = string(&mut r)?;
        let item = string(&mut r)?;
        let len = u32_le(&mut r)?;
        let start = 8 + 4 * 4 + (class.len() + topic.len() + item.len()) as u64;
        Ok((class, len, start))
    })();
    let (class, native_len, native_start) = match header {
        Ok(h) => h,
        Err(e) => {
            w.corrupt(location, format!("ole1 object header: {e}"));
            return Ok(());
        }
    };
    if class.starts_with(b"Package\0") {
        let mut native = (&mut r).take(u64::from(native_len));
        match package_header(&mut native) {
            Ok((label, size)) => {
                let name = if label.is_empty() {
                    "package".into()
                } else {
                    label
                };
                let mut data = native.take(u64::from(size));
                w.member(
                    Member {
                        reader: &mut data,
                        name: &name,
                        stored_size: u64::from(size),
                        declared_size: Some(u64::from(size)),
                    },
                    location,
                    depth + 1,
                )?;
                return Ok(());
            }
            // Not the package layout after all: the native data as it is,
            // read again from its start.
            Err(e) => {
                tracing::debug!(location, error = %e, "ole1 package header not understood");
                r.seek(SeekFrom::Start(native_start))
                    .map_err(WalkError::Io)?;
            }
        }
    }
    let mut native = r.take(u64::from(native_len));
    w.member(
        Member {
            reader: &mut native,
            name: "native",
            stored_size: u64::from(native_len),
            declared_size: Some(u64::from(native_len)),
        },
        location,
        depth + 1,
    )?;
    Ok(())
}

fn u32_le(r: &mut impl Read) -> io::Result<u32> {
    let mut b = [0u8; 4];
    r.read_exact(&mut b)?;
    Ok(u32::from_le_bytes(b))
}

/// A length-prefixed string (length includes its NUL).
fn string(r: &mut impl Read) -> io::Result<Vec<u8>> {
    let len = u32_le(r)?;
    if len > MAX_STRING {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("string of {len} bytes"),
        ));
    }
    let mut s = vec![0u8; len as usize];
    r.read_exact(&mut s)?;
    Ok(s)
}

/// A NUL-terminated string of at most [`MAX_PATH`] bytes.
fn c_string(r: &mut impl Read) -> io::Result<Vec<u8>> {
    let mut s = Vec::new();
    let mut b = [0u8; 1];
    loop {
        r.read_exact(&mut b)?;
        if b[0] == 0 {
            return Ok(s);
        }
        if s.len() >= MAX_PATH {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "path too long"));
        }
        s.push(b[0]);
    }
}

/// The `Package` native data's header (a signature, the label, the source
/// path, a reserved word, the temporary path): the label and the size of
/// the file that follows.
pub(crate) fn package_header(r: &mut impl Read) -> io::Result<(String, u32)> {
    let mut sig = [0u8; 2];
    r.read_exact(&mut sig)?;
    let label = c_string(r)?;
    let _source = c_string(r)?;
    let _reserved = u32_le(r)?;
    let temp_len = u32_le(r)?;
    if temp_len as usize > MAX_PATH {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "temporary path too long",
        ));
    }
    let mut temp = vec![0u8; temp_len as usize];
    r.read_exact(&mut temp)?;
    let size = u32_le(r)?;
    Ok((String::from_utf8_lossy(&label).into_owned(), size))
}
