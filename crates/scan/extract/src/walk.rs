//! The recursive, depth-first walk and the bounded materialisation of members.
//!
//! Limit handling (fail closed, never inflate a bomb fully):
//! * `members` and `expanded_bytes` are budgets of the whole walk: once one is
//!   exhausted the problem is recorded and the **whole walk stops**.
//! * `member_size` and `ratio` are checked while a member is decompressed,
//!   before each chunk is stored: the member is abandoned (not visited), its
//!   problem recorded, and the walk **goes on with the next member**. The bytes
//!   inflated before stopping still count against `expanded_bytes`, so a
//!   container full of bombs is bounded by that budget.
//! * `depth`: a container at depth `max_depth` is visited but not opened.
//!
//! A member whose data ends early or fails to decode is recorded as
//! [`Problem::Corrupt`]; the bytes that could be read are still visited (and
//! opened, if they form a container), since that can only add findings.

use crate::detect::{HEAD_LEN, detect, detect_unsupported_archive};
use crate::formats::stream::Compressor;
use crate::{ContainerKind, Entry, Limits, Problem, WalkError, WalkReport, formats};
use moat_core::{Blob, Spool};
use std::io::{self, Read, Write};

/// Size of the copy buffer, and so the granularity of the limit checks.
const CHUNK: usize = 64 * 1024;
/// Longest member name kept for a location (in chars).
const MAX_NAME_CHARS: usize = 1024;

/// What a format reader does after handing over one member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// Go on with the next member.
    Next,
    /// Reading the member failed (already recorded); a streaming format
    /// cannot go on, a random-access one can.
    ReadFailed,
    /// A walk-wide budget is exhausted: stop everything.
    Stop,
}

/// One member as a format reader sees it.
pub(crate) struct Member<'r> {
    pub reader: &'r mut dyn Read,
    /// Raw name, made displayable here.
    pub name: &'r str,
    /// Bytes the member occupies in its container, for the ratio check.
    pub stored_size: u64,
    /// Size the container declares, when it does: fewer bytes is corruption.
    pub declared_size: Option<u64>,
}

pub(crate) struct Walker<'a, E> {
    pub limits: &'a Limits,
    pub visit: &'a mut dyn FnMut(&Entry<'_>) -> Result<(), E>,
    pub report: WalkReport,
    pub stopped: bool,
    /// Set just before [`Walker::member`] for an object found embedded at
    /// an offset (`formats::pe`): that member is not searched for embedded
    /// objects in turn.
    pub embedded_member: bool,
}

enum Fill {
    Done,
    ReadError(io::Error),
    Limit(&'static str),
}

impl<E> Walker<'_, E> {
    pub fn problem(&mut self, p: Problem) {
        tracing::debug!(problem = %p, "archive problem");
        self.report.problems.push(p);
    }

    pub fn corrupt(&mut self, location: &str, detail: impl std::fmt::Display) {
        self.problem(Problem::Corrupt {
            location: location.to_string(),
            detail: detail.to_string(),
        });
    }

    /// Record that `what` (a [`Limits`] field's name) stopped the walk at `location`.
    pub fn limit(&mut self, location: &str, what: &str) {
        self.problem(Problem::LimitsExceeded {
            location: location.to_string(),
            what: what.to_string(),
        });
    }

    /// Open `blob` (of format `kind`, found at `location`, itself at `depth`)
    /// and walk its members, which are at `depth + 1`. `embedded`: the blob
    /// was itself found embedded at an offset.
    pub fn container(
        &mut self,
        blob: &Blob,
        location: &str,
        kind: ContainerKind,
        depth: u32,
        embedded: bool,
    ) -> Result<(), WalkError<E>> {
        if depth >= self.limits.max_depth {
            self.limit(location, "depth");
            return Ok(());
        }
        tracing::trace!(location, kind = kind.as_str(), depth, "opening container");
        match kind {
            ContainerKind::Zip => formats::zip::walk(self, blob, location, depth),
            ContainerKind::Tar => formats::tar::walk(self, blob, location, depth),
            ContainerKind::SevenZ => formats::sevenz::walk(self, blob, location, depth),
            ContainerKind::Mail => formats::mail::walk(self, blob, location, depth),
            ContainerKind::Cpio => formats::cpio::walk(self, blob, location, depth),
            ContainerKind::Tnef => formats::tnef::walk(self, blob, location, depth),
            ContainerKind::Rtf => formats::rtf::walk(self, blob, location, depth),
            ContainerKind::Ole1 => formats::ole1::walk(self, blob, location, depth),
            ContainerKind::Ole2 => {
                formats::ole2::walk(self, blob, location, depth)?;
                // ClamAV also finds executables and SFX archives in the raw
                // bytes of an OLE2 file (an MSI package's programs).
                if embedded || self.stopped {
                    return Ok(());
                }
                formats::pe::carve(self, blob, location, depth, formats::pe::OLE2_FINDS, &[])
            }
            ContainerKind::Szdd => formats::szdd::walk(self, blob, location, depth),
            ContainerKind::BinHex => formats::binhex::walk(self, blob, location, depth),
            ContainerKind::Pdf => formats::pdf::walk(self, blob, location, depth),
            ContainerKind::Cab => formats::cab::walk(self, blob, location, depth),
            ContainerKind::Pe => formats::pe::walk(self, blob, location, depth, embedded),
            ContainerKind::Nsis => formats::nsis::walk(self, blob, location, depth),
            ContainerKind::AutoIt => formats::autoit::walk(self, blob, location, depth),
            ContainerKind::Sis => {
                formats::sis::walk(self, blob, location, depth)?;
                // ClamAV's raw scan of the package then finds archives
                // embedded in it, as in any file.
                if embedded {
                    return Ok(());
                }
                self.embedded_archives(blob, location, depth)
            }
            ContainerKind::Arj => formats::arj::walk(self, blob, location, depth),
            ContainerKind::Chm => formats::chm::walk(self, blob, location, depth),
            ContainerKind::Html => formats::html::walk(self, blob, location, depth),
            ContainerKind::InstallShield => formats::ishield::walk(self, blob, location, depth),
            ContainerKind::Gzip => {
                formats::stream::walk(self, blob, location, Compressor::Gzip, depth)
            }
            ContainerKind::Bzip2 => {
                formats::stream::walk(self, blob, location, Compressor::Bzip2, depth)
            }
            ContainerKind::Xz => formats::stream::walk(self, blob, location, Compressor::Xz, depth),
            ContainerKind::Zstd => {
                formats::stream::walk(self, blob, location, Compressor::Zstd, depth)
            }
        }
    }

    /// Archives embedded in a file that is not a container (`blob`, at
    /// `depth`), found by their magic as ClamAV's embedded type recognition
    /// finds them in any file; nothing below the depth limit.
    pub fn embedded_archives(
        &mut self,
        blob: &Blob,
        location: &str,
        depth: u32,
    ) -> Result<(), WalkError<E>> {
        if depth >= self.limits.max_depth || self.stopped {
            return Ok(());
        }
        // ISO 9660 images are found the same way (their signature is 32 KiB
        // in): their files are the members, then the rest is carved.
        if let Some(pvd) = formats::iso::find(blob).map_err(WalkError::Io)? {
            return formats::iso::walk(self, blob, location, depth, pvd);
        }
        formats::pe::carve(self, blob, location, depth, formats::pe::ANY_FINDS, &[])
    }

    /// Materialise one member of the container at `parent` (depth `depth - 1`),
    /// visit it, then open it if it is itself a container.
    pub fn member(
        &mut self,
        m: Member<'_>,
        parent: &str,
        depth: u32,
    ) -> Result<Step, WalkError<E>> {
        let embedded = std::mem::take(&mut self.embedded_member);
        if self.stopped {
            return Ok(Step::Stop);
        }
        let name = display_name(m.name);
        let location = format!("{parent}>{name}");
        if self.report.members >= self.limits.max_members {
            self.limit(&location, "members");
            self.stopped = true;
            return Ok(Step::Stop);
        }
        self.report.members += 1;

        let mut spool = Spool::new(
            self.limits.spool_threshold,
            self.limits.max_member_size,
            &self.limits.tmp_dir,
        );
        let mut step = Step::Next;
        match self.fill(m.reader, &mut spool, m.stored_size)? {
            Fill::Done => {}
            Fill::Limit(what) => {
                self.limit(&location, what);
                if matches!(what, "expanded_bytes") {
                    self.stopped = true;
                    return Ok(Step::Stop);
                }
                return Ok(Step::Next);
            }
            Fill::ReadError(e) => {
                self.corrupt(&location, e);
                step = Step::ReadFailed;
            }
        }
        if step == Step::Next
            && let Some(declared) = m.declared_size.filter(|d| spool.len() < *d)
        {
            self.corrupt(
                &location,
                format!("member truncated: {} of {declared} bytes", spool.len()),
            );
            step = Step::ReadFailed;
        }
        let (blob, sha256) = spool.finish().map_err(WalkError::Io)?;
        (self.visit)(&Entry {
            location: &location,
            name: &name,
            depth,
            data: &blob,
            sha256,
        })
        .map_err(WalkError::Visit)?;

        let head = blob.head(HEAD_LEN).map_err(WalkError::Io)?;
        if let Some(kind) = detect(&head) {
            self.container(&blob, &location, kind, depth, embedded)?;
        } else if let Some(what) = detect_unsupported_archive(&head) {
            self.problem(Problem::Unsupported {
                location: location.clone(),
                what: format!("{what} archive"),
            });
        } else if !embedded {
            self.embedded_archives(&blob, &location, depth)?;
        }
        Ok(if self.stopped { Step::Stop } else { step })
    }

    /// Copy `reader` into `spool` chunk by chunk, checking every limit before
    /// a chunk is stored. I/O errors of the spool are the caller's (disk full),
    /// read errors are the archive's.
    fn fill(
        &mut self,
        reader: &mut dyn Read,
        spool: &mut Spool,
        stored_size: u64,
    ) -> Result<Fill, WalkError<E>> {
        let l = self.limits;
        let ratio_cap = stored_size.max(1).saturating_mul(l.max_ratio);
        let mut buf = vec![0u8; CHUNK];
        let mut total: u64 = 0;
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => return Ok(Fill::Done),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Ok(Fill::ReadError(e)),
            };
            let next = total + n as u64;
            if next > l.max_member_size {
                return Ok(Fill::Limit("member_size"));
            }
            if next > l.ratio_min_size && next > ratio_cap {
                return Ok(Fill::Limit("ratio"));
            }
            if self.report.expanded_bytes + n as u64 > l.max_expanded_bytes {
                return Ok(Fill::Limit("expanded_bytes"));
            }
            spool.write_all(&buf[..n]).map_err(WalkError::Io)?;
            total = next;
            self.report.expanded_bytes += n as u64;
        }
    }
}

/// A member name made safe for display: lossy UTF-8 already, control
/// characters replaced, length capped. Never used as a path.
fn display_name(raw: &str) -> String {
    let mut out: String = raw
        .chars()
        .take(MAX_NAME_CHARS)
        .map(|c| if c.is_control() { '\u{fffd}' } else { c })
        .collect();
    if raw.chars().nth(MAX_NAME_CHARS).is_some() {
        out.push('…');
    }
    if out.is_empty() {
        out.push_str("data");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_sanitised() {
        assert_eq!(display_name("a\nb"), "a\u{fffd}b");
        assert_eq!(display_name(""), "data");
        let long = "x".repeat(5000);
        assert_eq!(display_name(&long).chars().count(), MAX_NAME_CHARS + 1);
    }
}
