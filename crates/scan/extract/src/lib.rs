//! Archive extraction with limits: zip, gzip, tar, bzip2, xz, zstd, 7z,
//! cpio, PDF streams, SZDD (`COMPRESS.EXE`), BinHex, TNEF (`winmail.dat`), OLE2 compound files
//! (Office 97–2003, MSI; embedded packages unwrapped), RTF's embedded
//! objects (OLE1) and mail (RFC 5322 messages and mbox files, whose MIME
//! parts are the members), nested to any depth within [`Limits`]. It feeds
//! the builtin and yara engines
//! (clamd and ICAP engines extract by themselves).
//!
//! [`walk`] visits every member of a container depth-first, each materialised
//! through a [`moat_core::Spool`] (memory up to [`Limits::spool_threshold`],
//! then an anonymous 0600 temporary file in [`Limits::tmp_dir`]), so memory
//! stays bounded and nothing is left on disk. Member names are only display
//! strings for locations such as `outer.zip>inner.tar>bin/x`: they are never
//! used as file-system paths.
//!
//! Everything that keeps content from being scanned is reported as a
//! [`Problem`] (fail closed: the caller turns any problem into an
//! `unscannable` verdict, an infection still outranks it). See the `walk`
//! module for how each limit stops the walk. rar is recognised
//! ([`detect_unsupported_archive`]) but not opened.
#![forbid(unsafe_code)]

mod detect;
mod formats;
mod limits;
mod problem;
mod walk;

#[cfg(test)]
mod tests;

pub use detect::{ContainerKind, HEAD_LEN, detect, detect_unsupported_archive};
pub use limits::Limits;
pub use problem::Problem;

use moat_core::Blob;

/// One extracted member, handed to the visitor.
#[derive(Debug, Clone, Copy)]
pub struct Entry<'a> {
    /// Full location, e.g. `outer.zip>inner.tar>bin/x`.
    pub location: &'a str,
    /// The member's own name inside its container (lossy UTF-8, control
    /// characters replaced; never a path on disk).
    pub name: &'a str,
    /// 1 for members of the root, 2 for their members, and so on.
    pub depth: u32,
    /// The member's content, fully materialised.
    pub data: &'a Blob,
    /// SHA-256 of `data`, computed while materialising it.
    pub sha256: [u8; 32],
}

/// What a completed walk saw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WalkReport {
    /// Everything that kept content from being scanned; empty means every
    /// member was seen in full.
    pub problems: Vec<Problem>,
    /// Members opened (all levels), including those abandoned at a limit.
    pub members: u64,
    /// Bytes materialised (all levels), including those of members abandoned
    /// at a limit.
    pub expanded_bytes: u64,
}

/// Why a walk ended without a report.
#[derive(Debug, thiserror::Error)]
pub enum WalkError<E> {
    /// The visitor returned an error; the walk stopped there.
    #[error("archive walk aborted by the visitor: {0}")]
    Visit(E),
    /// Local I/O failed (temporary file, reading the root blob), not the archive.
    #[error("I/O error while extracting an archive: {0}")]
    Io(#[source] std::io::Error),
}

/// Walk every member of `root` recursively, depth-first: call `visit` for each
/// member (depth >= 1) with its materialised content, then descend into it if
/// it is itself a container. `root_location` is the display name of the root
/// (e.g. the file name).
///
/// A root that is not a container gives an empty report; a rar root gives a
/// [`Problem::Unsupported`].
pub fn walk<E>(
    root: &Blob,
    root_location: &str,
    limits: &Limits,
    visit: &mut dyn FnMut(&Entry<'_>) -> Result<(), E>,
) -> Result<WalkReport, WalkError<E>> {
    let head = root.head(HEAD_LEN).map_err(WalkError::Io)?;
    let mut walker = walk::Walker {
        limits,
        visit,
        report: WalkReport::default(),
        stopped: false,
        embedded_member: false,
    };
    if let Some(kind) = detect(&head) {
        walker.container(root, root_location, kind, 0, false)?;
    } else if let Some(what) = detect_unsupported_archive(&head) {
        walker.problem(Problem::Unsupported {
            location: root_location.to_string(),
            what: format!("{what} archive"),
        });
    } else {
        walker.embedded_archives(root, root_location, 0)?;
    }
    let report = walker.report;
    tracing::debug!(
        location = root_location,
        members = report.members,
        expanded_bytes = report.expanded_bytes,
        problems = report.problems.len(),
        "archive walked"
    );
    Ok(report)
}
