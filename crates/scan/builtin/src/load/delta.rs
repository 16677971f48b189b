//! Parsing a changed hash source against what the previous load parsed
//! from it, so that a reload after an update holds the unchanged lines
//! once.
//!
//! A line of the new text that the previous part holds too (same digest,
//! size and name) claims that entry instead of making a new one; entries
//! that no line claimed are marked dead in their block's [`Mask`](crate::hashdb::Mask), and only
//! the lines the previous part lacks become new entries. The new part is
//! the previous blocks, shared, each with its mask, followed by the blocks
//! of the new parse, which hold only the added lines (and the new text's
//! errors and counts). While the old engine serves, a reload then holds
//! the masks and the added lines on top of it, not a second copy of the
//! file's tables.
//!
//! Dead entries still take their memory, and each delta adds blocks that
//! every lookup searches; a part that has collected too many of either is
//! parsed afresh ([`Delta::worth_it`]). A text that shares too few lines
//! with the previous one to gain anything is parsed afresh too: the parse
//! notices early ([`Delta::gave_up`]) and stops claiming.

use super::{Blob, FileKind, FilePart, IgnSet, Parsed, PartBlock, block_size, parse_blocks_with};
use crate::hashdb::{HashEntry, HashFile, HashKind, ParsedHash, equal_range, is_dead};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

/// Lines parsed before the share of new lines is judged.
const JUDGE_AFTER: u64 = 4096;

/// A changed hash source being parsed against its previous part.
pub(super) struct Delta<'p> {
    prev: &'p FilePart,
    /// Per previous block, by block-local name id: entries a line of the
    /// new text has claimed.
    kept: Vec<Vec<AtomicU64>>,
    lines: AtomicU64,
    misses: AtomicU64,
    gave_up: AtomicBool,
}

/// One parsing thread's view of a [`Delta`]: the block where its last
/// line was found, where the next line most likely is too (a changed file
/// keeps its order).
pub(super) struct Cursor<'d, 'p> {
    delta: &'d Delta<'p>,
    hint: usize,
}

impl<'p> Delta<'p> {
    /// Whether a delta against `prev` can pay off: a part that already
    /// carries many dead entries or many blocks beyond what a fresh parse
    /// of a file of `len` bytes makes is parsed afresh instead, which
    /// drops both.
    pub(super) fn worth_it(prev: &FilePart, len: u64, block: u64) -> bool {
        let entries: u64 = prev.blocks.iter().map(|b| b.names.len() as u64).sum();
        let live: u64 = prev.blocks.iter().map(|b| b.loaded).sum();
        let fresh_blocks = len.div_ceil(block).max(1);
        entries > 0
            && (entries - live.min(entries)) * 4 <= entries
            && (prev.blocks.len() as u64) <= 2 * fresh_blocks + 8
    }

    pub(super) fn new(prev: &'p FilePart) -> Delta<'p> {
        Delta {
            prev,
            kept: prev
                .blocks
                .iter()
                .map(|b| {
                    (0..b.names.len().div_ceil(64))
                        .map(|_| AtomicU64::new(0))
                        .collect()
                })
                .collect(),
            lines: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            gave_up: AtomicBool::new(false),
        }
    }

    /// Whether the parse found the new text too different from the old
    /// one (more than half of its first lines new) and stopped claiming:
    /// its result is then incomplete and must be thrown away.
    pub(super) fn gave_up(&self) -> bool {
        self.gave_up.load(Relaxed)
    }

    pub(super) fn cursor<'d>(&'d self) -> Cursor<'d, 'p> {
        Cursor {
            delta: self,
            hint: 0,
        }
    }

    /// The previous blocks with their new masks (entries no line claimed
    /// are dead), without those left with no live entry, followed by the
    /// new parse's blocks, which hold only the added lines.
    pub(super) fn finish(self, parsed: Vec<Parsed>) -> FilePart {
        let mut blocks: Vec<PartBlock> = Vec::with_capacity(self.prev.blocks.len() + parsed.len());
        for (b, kept) in self.prev.blocks.iter().zip(&self.kept) {
            let n = b.names.len();
            let mut live = 0u64;
            let mask: Vec<u64> = kept
                .iter()
                .enumerate()
                .map(|(i, w)| {
                    let k = w.load(Relaxed);
                    live += u64::from(k.count_ones());
                    // Bits past the last name are neither kept nor names.
                    let valid = if (i + 1) * 64 <= n {
                        u64::MAX
                    } else {
                        (1u64 << (n % 64)) - 1
                    };
                    !k & valid
                })
                .collect();
            if live == 0 {
                continue;
            }
            blocks.push(PartBlock {
                line_starts: 0,
                names: b.names.clone(),
                md5: Arc::clone(&b.md5),
                sha1: Arc::clone(&b.sha1),
                sha256: Arc::clone(&b.sha256),
                mdb: b.mdb.clone(),
                imp: b.imp.clone(),
                fp: b.fp.clone(),
                loaded: live,
                unsupported: Default::default(),
                ignored: 0,
                errors: Vec::new(),
                error_total: 0,
                dead: (live < n as u64).then(|| Arc::new(mask)),
            });
        }
        // New blocks that added nothing and report nothing are dropped;
        // their lines still count for the numbering of later errors.
        let mut carry = 0u64;
        for p in parsed {
            let mut b = p.part;
            let empty = b.names.len() == 0
                && b.error_total == 0
                && b.ignored == 0
                && b.unsupported.is_empty();
            if empty {
                carry += b.line_starts;
                continue;
            }
            for (line, _) in &mut b.errors {
                *line += carry;
            }
            b.line_starts += carry;
            carry = 0;
            blocks.push(b);
        }
        FilePart { blocks }
    }
}

impl Cursor<'_, '_> {
    /// Whether the parse this cursor belongs to gave up ([`Delta::gave_up`]).
    pub(super) fn gave_up(&self) -> bool {
        self.delta.gave_up()
    }

    /// Claim an entry of the previous part equal to this line's (digest,
    /// size and name), not dead and not claimed yet; true if one was.
    pub(super) fn claim(&mut self, file: HashFile, p: &ParsedHash<'_>) -> bool {
        let d = self.delta;
        if d.gave_up.load(Relaxed) {
            return false;
        }
        let n = d.prev.blocks.len();
        let found = (0..n)
            .map(|k| (self.hint + k) % n)
            .find(|&i| d.claim_in(i, file, p));
        let lines = d.lines.fetch_add(1, Relaxed) + 1;
        match found {
            Some(i) => {
                self.hint = i;
                true
            }
            None => {
                let misses = d.misses.fetch_add(1, Relaxed) + 1;
                if lines >= JUDGE_AFTER && misses * 2 > lines {
                    d.gave_up.store(true, Relaxed);
                }
                false
            }
        }
    }
}

impl Delta<'_> {
    fn claim_in(&self, i: usize, file: HashFile, p: &ParsedHash<'_>) -> bool {
        let b = &self.prev.blocks[i];
        let runs = match file {
            HashFile::Mdb => Some(&b.mdb),
            HashFile::Imp => Some(&b.imp),
            HashFile::Hdb | HashFile::Hsb => None,
        };
        match p.kind {
            HashKind::Md5 => self.claim_run(i, runs.map_or(&b.md5, |r| &r.md5), p),
            HashKind::Sha1 => self.claim_run(i, runs.map_or(&b.sha1, |r| &r.sha1), p),
            HashKind::Sha256 => self.claim_run(i, runs.map_or(&b.sha256, |r| &r.sha256), p),
        }
    }

    fn claim_run<const N: usize>(
        &self,
        i: usize,
        run: &[HashEntry<N>],
        p: &ParsedHash<'_>,
    ) -> bool {
        let b = &self.prev.blocks[i];
        for e in equal_range(run, &p.digest[..N]) {
            let id = e.name_id();
            if !e.has_size(p.size) || is_dead(b.dead.as_ref(), id) || b.names.get(id) != p.name {
                continue;
            }
            let Some(w) = self.kept[i].get((id / 64) as usize) else {
                continue;
            };
            let bit = 1u64 << (id % 64);
            if w.fetch_or(bit, Relaxed) & bit == 0 {
                return true;
            }
        }
        false
    }
}

/// Parse `blob` (a changed version of the source `prev` was parsed from)
/// against `prev`; `None` when the texts share too little for a delta to
/// pay off (the caller parses afresh).
pub(super) fn parse_against(
    blob: &Blob,
    fk: FileKind,
    ign: &IgnSet,
    prev: &FilePart,
) -> std::io::Result<Option<FilePart>> {
    if !Delta::worth_it(prev, blob.len(), block_size(fk)) {
        return Ok(None);
    }
    let delta = Delta::new(prev);
    let parsed = parse_blocks_with(blob, fk, ign, Some(&delta))?;
    if delta.gave_up() {
        return Ok(None);
    }
    Ok(Some(delta.finish(parsed)))
}
