//! 7z (sevenz-rust2, LZMA/LZMA2/copy and the filters it always has; bzip2,
//! deflate, PPMd, zstd and others are reported unsupported): members in archive order, decoded block by block
//! (a solid block is decoded once, its members handed over as they come).
//! Encrypted archives or members (AES, with or without encrypted headers)
//! are reported [`Problem::Encrypted`]; a method the crate cannot decode is
//! unsupported; anything else that stops the decoder is corruption, and the
//! members read before it are still visited.

use crate::walk::{Member, Step, Walker};
use crate::{Problem, WalkError};
use moat_core::Blob;
use sevenz_rust2::{ArchiveReader, Error, Password};
use std::io::BufReader;

use super::INPUT_BUFFER;

pub(crate) fn walk<E>(
    w: &mut Walker<'_, E>,
    blob: &Blob,
    location: &str,
    depth: u32,
) -> Result<(), WalkError<E>> {
    let input = BufReader::with_capacity(INPUT_BUFFER, blob.reader());
    let mut archive = match ArchiveReader::new(input, Password::empty()) {
        Ok(a) => a,
        Err(e) => {
            problem(w, location.to_string(), e);
            return Ok(());
        }
    };
    // Blocks are decoded whole and their sizes are in the header: the
    // stored size of a member is its share of the archive, for the ratio.
    let packed: u64 = archive
        .archive()
        .pack_sizes()
        .iter()
        .sum::<u64>()
        .min(blob.len());
    let unpacked: u64 = archive
        .archive()
        .files
        .iter()
        .map(|f| f.size)
        .sum::<u64>()
        .max(1);
    let mut failed: Option<WalkError<E>> = None;
    let mut current = String::new();
    let res = archive.for_each_entries(|entry, reader| {
        if w.stopped {
            return Ok(false);
        }
        // Empty files (no stream) are visited too: a hash can name them.
        if entry.is_directory || entry.is_anti_item {
            return Ok(true);
        }
        current = format!("{location}>{}", entry.name);
        // Share of the packed bytes, at least one byte.
        let stored =
            ((u128::from(packed) * u128::from(entry.size)) / u128::from(unpacked)).max(1) as u64;
        match w.member(
            Member {
                reader,
                name: &entry.name,
                stored_size: stored,
                declared_size: Some(entry.size),
            },
            location,
            depth + 1,
        ) {
            Ok(Step::Next) => Ok(true),
            Ok(Step::ReadFailed) | Ok(Step::Stop) => Ok(false),
            Err(e) => {
                failed = Some(e);
                Ok(false)
            }
        }
    });
    if let Some(e) = failed {
        return Err(e);
    }
    if let Err(e) = res {
        let at = if current.is_empty() {
            location.to_string()
        } else {
            current
        };
        problem(w, at, e);
    }
    Ok(())
}

/// Record why (part of) a 7z archive could not be read.
fn problem<E>(w: &mut Walker<'_, E>, location: String, e: Error) {
    match e {
        Error::PasswordRequired | Error::MaybeBadPassword(_) => {
            w.problem(Problem::Encrypted { location })
        }
        Error::UnsupportedCompressionMethod(m) => w.problem(Problem::Unsupported {
            location,
            what: format!("7z compression method {m}"),
        }),
        other => w.corrupt(&location, format!("7z: {other}")),
    }
}
