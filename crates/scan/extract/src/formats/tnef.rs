//! TNEF (`winmail.dat`, `application/ms-tnef`; MS-OXTNEF): the attachments
//! Outlook wraps into one file when it sends mail. Each `attAttachData`
//! attribute is a member, named by the `attAttachTitle` before it (Outlook
//! often writes the title after the data: then `attachmentN`); every other
//! attribute is passed over. Read front to back from the blob.

use super::{INPUT_BUFFER, read_full};
use crate::WalkError;
use crate::walk::{Member, Step, Walker};
use moat_core::Blob;
use std::io::{self, BufReader, Read};

pub(crate) const SIGNATURE: [u8; 4] = [0x78, 0x9f, 0x3e, 0x22];
const ATT_ATTACH_DATA: u32 = 0x0006_800f;
const ATT_ATTACH_TITLE: u32 = 0x0001_8010;
/// `attAttachRenddata`: the first attribute of each attachment.
const ATT_ATTACH_RENDDATA: u32 = 0x0006_9002;
/// Longest attachment title kept.
const MAX_TITLE: u32 = 1024;

/// The signature, a key, then a first attribute at message or attachment level.
pub(crate) fn is_tnef(head: &[u8]) -> bool {
    head.starts_with(&SIGNATURE) && matches!(head.get(6), Some(1 | 2))
}

pub(crate) fn walk<E>(
    w: &mut Walker<'_, E>,
    blob: &Blob,
    location: &str,
    depth: u32,
) -> Result<(), WalkError<E>> {
    let mut r = BufReader::with_capacity(INPUT_BUFFER, blob.reader());
    let mut start = [0u8; 6];
    if let Err(e) = r.read_exact(&mut start) {
        w.corrupt(location, format!("tnef: {e}"));
        return Ok(());
    }
    let mut title: Option<String> = None;
    let mut attachments = 0u64;
    loop {
        if w.stopped {
            return Ok(());
        }
        let mut h = [0u8; 9];
        match read_full(&mut r, &mut h) {
            Ok(9) => {}
            // The end; writers leave a stray byte or two after the last
            // attribute, too few to hold another one.
            Ok(_) => return Ok(()),
            Err(e) => {
                w.corrupt(location, format!("tnef: {e}"));
                return Ok(());
            }
        }
        let level = h[0];
        let id = u32::from_le_bytes([h[1], h[2], h[3], h[4]]);
        let len = u32::from_le_bytes([h[5], h[6], h[7], h[8]]);
        if !matches!(level, 1 | 2) {
            w.corrupt(location, format!("tnef: attribute level {level}"));
            return Ok(());
        }
        let mut data = (&mut r).take(u64::from(len));
        match id {
            ATT_ATTACH_RENDDATA => title = None,
            ATT_ATTACH_TITLE if len <= MAX_TITLE => {
                let mut raw = vec![0u8; len as usize];
                if data.read_exact(&mut raw).is_ok() {
                    let text = raw.split(|&b| b == 0).next().unwrap_or_default();
                    title = Some(String::from_utf8_lossy(text).into_owned());
                }
            }
            ATT_ATTACH_DATA => {
                attachments += 1;
                let name = title
                    .take()
                    .filter(|t| !t.is_empty())
                    .unwrap_or_else(|| format!("attachment{attachments}"));
                let step = w.member(
                    Member {
                        reader: &mut data,
                        name: &name,
                        stored_size: u64::from(len),
                        declared_size: Some(u64::from(len)),
                    },
                    location,
                    depth + 1,
                )?;
                if step != Step::Next {
                    return Ok(());
                }
            }
            _ => {}
        }
        // The rest of the attribute (all of it when not read above), then
        // its checksum.
        let rest = io::copy(&mut data, &mut io::sink());
        let left = data.limit();
        let mut checksum = [0u8; 2];
        if let Err(e) = rest.and_then(|_| {
            if left > 0 {
                Err(io::ErrorKind::UnexpectedEof.into())
            } else {
                r.read_exact(&mut checksum)
            }
        }) {
            w.corrupt(location, format!("tnef: attribute {id:#010x}: {e}"));
            return Ok(());
        }
    }
}
