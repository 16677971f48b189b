//! tar (ustar, GNU, pax): regular files only; directories, links and devices
//! are skipped. Long names (GNU or pax) are handled by the `tar` crate.

use super::INPUT_BUFFER;
use crate::WalkError;
use crate::walk::{Member, Step, Walker};
use moat_core::Blob;
use std::io::BufReader;
use tar::EntryType;

pub(crate) fn walk<E>(
    w: &mut Walker<'_, E>,
    blob: &Blob,
    location: &str,
    depth: u32,
) -> Result<(), WalkError<E>> {
    let mut archive = tar::Archive::new(BufReader::with_capacity(INPUT_BUFFER, blob.reader()));
    let entries = match archive.entries() {
        Ok(e) => e,
        Err(e) => {
            w.corrupt(location, format!("tar: {e}"));
            return Ok(());
        }
    };
    for entry in entries {
        if w.stopped {
            break;
        }
        let mut entry = match entry {
            Ok(e) => e,
            Err(e) => {
                w.corrupt(location, format!("tar header: {e}"));
                break;
            }
        };
        let kind = entry.header().entry_type();
        if !matches!(
            kind,
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse
        ) {
            continue;
        }
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let declared = entry.size();
        let stored = entry.header().entry_size().unwrap_or(declared);
        let step = w.member(
            Member {
                reader: &mut entry,
                name: &name,
                stored_size: stored,
                declared_size: Some(declared),
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
