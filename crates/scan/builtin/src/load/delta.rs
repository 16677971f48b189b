//! Parsing a changed hash source against what the previous load parsed
//! from it, so that a reload after an update holds the unchanged lines
//! once.
//!
//! A line of the new text that the previous part holds too (same digest,
//! size and name) claims that entry instead of making a new one; entries
//! that no line claimed are marked dead in their block's
//! [`Mask`](crate::hashdb::Mask), and only the lines the previous part
//! lacks become new entries. The new part is
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
use crate::hashdb::{HashEntry, HashFile, HashKind, ParsedHash, Run, equal_range, is_dead};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};

/// Lines parsed before the share of new lines is judged.
const JUDGE_AFTER: u64 = 4096;
/// Lines a cursor counts before it adds them to the shared counters.
const FLUSH_EVERY: u64 = 1024;
/// No entry for this name id (`Delta::order`).
const NO_ENTRY: u32 = u32::MAX;

/// A changed hash source being parsed against its previous part.
pub(super) struct Delta<'p> {
    prev: &'p FilePart,
    /// Per previous block, by block-local name id: entries a line of the
    /// new text has claimed.
    kept: Vec<Vec<AtomicU64>>,
    /// Per previous block, by block-local name id: which run holds its
    /// entry (the digest type, top 4 bits) and where; built when a cursor
    /// first looks for a line by its position.
    order: Vec<OnceLock<Vec<u32>>>,
    lines: AtomicU64,
    misses: AtomicU64,
    gave_up: AtomicBool,
}

/// One parsing thread's view of a [`Delta`]: where its last line was
/// found (block and name id). A changed file keeps its order, so the next
/// line is most likely the entry with the next name id of that block,
/// checked without a search.
pub(super) struct Cursor<'d, 'p> {
    delta: &'d Delta<'p>,
    hint: usize,
    next: u32,
    /// Lines and misses not yet added to the shared counters.
    lines: u64,
    misses: u64,
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
            order: prev.blocks.iter().map(|_| OnceLock::new()).collect(),
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
            next: 0,
            lines: 0,
            misses: 0,
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
            // The same runs and names (shared); the counts and errors
            // are the new text's, reported by the new blocks.
            blocks.push(PartBlock {
                line_starts: 0,
                loaded: live,
                unsupported: Default::default(),
                ignored: 0,
                errors: Vec::new(),
                error_total: 0,
                dead: (live < n as u64).then(|| Arc::new(mask)),
                ..b.clone()
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
        // (Once the parse gave up, `parse_block` stops before the next line.)
        let d = self.delta;
        let n = d.prev.blocks.len();
        let found = d
            .claim_at(self.hint, self.next, file, p)
            .map(|id| (self.hint, id))
            .or_else(|| {
                (0..n)
                    .map(|k| (self.hint + k) % n)
                    .find_map(|i| d.claim_in(i, file, p).map(|id| (i, id)))
            });
        self.lines += 1;
        if let Some((i, id)) = found {
            (self.hint, self.next) = (i, id + 1);
        } else {
            self.misses += 1;
        }
        if self.lines == FLUSH_EVERY {
            let lines = d.lines.fetch_add(self.lines, Relaxed) + self.lines;
            let misses = d.misses.fetch_add(self.misses, Relaxed) + self.misses;
            (self.lines, self.misses) = (0, 0);
            if lines >= JUDGE_AFTER && misses * 2 > lines {
                d.gave_up.store(true, Relaxed);
            }
        }
        found.is_some()
    }
}

/// The runs of a previous block that lines of `file` go to.
fn runs_of(b: &PartBlock, file: HashFile) -> (&Run<16>, &Run<20>, &Run<32>) {
    match file {
        HashFile::Mdb => (&b.mdb.md5, &b.mdb.sha1, &b.mdb.sha256),
        HashFile::Imp => (&b.imp.md5, &b.imp.sha1, &b.imp.sha256),
        HashFile::Hdb | HashFile::Hsb => (&b.md5, &b.sha1, &b.sha256),
    }
}

/// For each name id of `b`, the digest type (top 4 bits: 0 MD5, 1 SHA-1,
/// 2 SHA-256) and index of its entry; [`NO_ENTRY`] for none.
fn order_of(b: &PartBlock) -> Vec<u32> {
    fn mark<const N: usize>(order: &mut [u32], run: &[HashEntry<N>], tag: u32) {
        for (i, e) in run.iter().enumerate() {
            if let (Some(slot), Ok(i)) = (order.get_mut(e.name_id() as usize), u32::try_from(i))
                && i < 1 << 28
            {
                *slot = (tag << 28) | i;
            }
        }
    }
    let mut order = vec![NO_ENTRY; b.names.len()];
    for (md5, sha1, sha256) in [
        (&b.md5, &b.sha1, &b.sha256),
        (&b.mdb.md5, &b.mdb.sha1, &b.mdb.sha256),
        (&b.imp.md5, &b.imp.sha1, &b.imp.sha256),
    ] {
        mark(&mut order, md5, 0);
        mark(&mut order, sha1, 1);
        mark(&mut order, sha256, 2);
    }
    order
}

/// Whether entry `at` of `run` has the line's digest and size.
fn same_at<const N: usize>(run: &[HashEntry<N>], at: usize, p: &ParsedHash<'_>) -> bool {
    run.get(at)
        .is_some_and(|e| e.key_is(&p.digest[..N]) && e.has_size(p.size))
}

impl Delta<'_> {
    /// Claim the entry with name id `id` of block `i` if it equals the
    /// line's (found by position, without a search).
    fn claim_at(&self, i: usize, id: u32, file: HashFile, p: &ParsedHash<'_>) -> Option<u32> {
        let b = self.prev.blocks.get(i)?;
        if id as usize >= b.names.len() || b.names.get(id) != p.name {
            return None;
        }
        let order = self.order.get(i)?.get_or_init(|| order_of(b));
        let slot = *order.get(id as usize)?;
        if slot == NO_ENTRY {
            return None;
        }
        let at = (slot & ((1 << 28) - 1)) as usize;
        let (md5, sha1, sha256) = runs_of(b, file);
        let equal = match (p.kind, slot >> 28) {
            (HashKind::Md5, 0) => same_at(md5, at, p),
            (HashKind::Sha1, 1) => same_at(sha1, at, p),
            (HashKind::Sha256, 2) => same_at(sha256, at, p),
            _ => false,
        };
        (equal && self.take(i, b, id)).then_some(id)
    }

    /// Claim an entry of block `i` equal to the line's, by digest search.
    fn claim_in(&self, i: usize, file: HashFile, p: &ParsedHash<'_>) -> Option<u32> {
        let b = &self.prev.blocks[i];
        let (md5, sha1, sha256) = runs_of(b, file);
        match p.kind {
            HashKind::Md5 => self.claim_run(i, md5, p),
            HashKind::Sha1 => self.claim_run(i, sha1, p),
            HashKind::Sha256 => self.claim_run(i, sha256, p),
        }
    }

    fn claim_run<const N: usize>(
        &self,
        i: usize,
        run: &[HashEntry<N>],
        p: &ParsedHash<'_>,
    ) -> Option<u32> {
        let b = &self.prev.blocks[i];
        equal_range(run, &p.digest[..N])
            .iter()
            .filter(|e| e.has_size(p.size))
            .map(HashEntry::name_id)
            .find(|&id| b.names.get(id) == p.name && self.take(i, b, id))
    }

    /// Mark entry `id` of block `i` kept, unless it is dead or another
    /// line has it already.
    fn take(&self, i: usize, b: &PartBlock, id: u32) -> bool {
        if is_dead(b.dead.as_ref(), id) {
            return false;
        }
        let Some(w) = self.kept.get(i).and_then(|k| k.get((id / 64) as usize)) else {
            return false;
        };
        let bit = 1u64 << (id % 64);
        w.fetch_or(bit, Relaxed) & bit == 0
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
