//! Verifying a body signature around an anchor hit.
//!
//! The verifier reads through a [`Cursor`]: the bytes of the current chunk
//! (or the whole object when it lives in memory) plus, for long signatures,
//! jumps and `*`, positional reads from the [`Blob`] into a small cache. It
//! walks the suffix forwards from the anchor's end and the reversed prefix
//! backwards from its start; the match start must satisfy the signature's
//! offset. Work is counted so that a pathological signature cannot outlive
//! the scan deadline.

use super::parse::ByteM;
use super::pool::{PElem, Pool};
use moat_core::{Blob, EngineError};
use std::time::Instant;

/// Size of a cache refill for reads outside the current window.
const CACHE: usize = 64 * 1024;
/// Check the deadline every this many steps.
const TICK_MASK: u64 = (1 << 16) - 1;

/// Byte access for the verifier.
pub struct Cursor<'a> {
    window: &'a [u8],
    win_base: u64,
    len: u64,
    blob: Option<&'a Blob>,
    cache: Vec<u8>,
    cache_base: u64,
    steps: u64,
    deadline: Option<Instant>,
}

impl<'a> Cursor<'a> {
    /// The whole object is `data`.
    pub fn whole(data: &'a [u8], deadline: Option<Instant>) -> Cursor<'a> {
        Cursor {
            window: data,
            win_base: 0,
            len: data.len() as u64,
            blob: None,
            cache: Vec::new(),
            cache_base: 0,
            steps: 0,
            deadline,
        }
    }

    /// `window` holds bytes `win_base..` of `blob`; others are read on demand.
    pub fn windowed(
        blob: &'a Blob,
        window: &'a [u8],
        win_base: u64,
        deadline: Option<Instant>,
    ) -> Cursor<'a> {
        Cursor {
            window,
            win_base,
            len: blob.len(),
            blob: Some(blob),
            cache: Vec::new(),
            cache_base: 0,
            steps: 0,
            deadline,
        }
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Where the window starts in the object.
    pub fn base(&self) -> u64 {
        self.win_base
    }

    #[inline]
    fn tick(&mut self) -> Result<(), EngineError> {
        self.steps += 1;
        if self.steps & TICK_MASK == 0 && self.deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(EngineError::Timeout);
        }
        Ok(())
    }

    /// The byte at `pos`, `None` past the end.
    #[inline]
    pub fn at(&mut self, pos: u64) -> Result<Option<u8>, EngineError> {
        if pos >= self.len {
            return Ok(None);
        }
        if let Some(b) = pos
            .checked_sub(self.win_base)
            .and_then(|i| usize::try_from(i).ok())
            .and_then(|i| self.window.get(i))
        {
            return Ok(Some(*b));
        }
        if let Some(b) = pos
            .checked_sub(self.cache_base)
            .and_then(|i| usize::try_from(i).ok())
            .and_then(|i| self.cache.get(i))
        {
            return Ok(Some(*b));
        }
        let Some(blob) = self.blob else {
            return Ok(None);
        };
        // Centre the refill on pos: verification goes both ways.
        self.cache_base = pos.saturating_sub(CACHE as u64 / 2);
        self.cache.resize(CACHE, 0);
        let n = blob.read_at(self.cache_base, &mut self.cache)?;
        self.cache.truncate(n);
        Ok(pos
            .checked_sub(self.cache_base)
            .and_then(|i| usize::try_from(i).ok())
            .and_then(|i| self.cache.get(i))
            .copied())
    }
}

/// Which way the verifier walks from its origin.
#[derive(Debug, Clone, Copy)]
struct Dir {
    origin: u64,
    backward: bool,
    /// How many bytes exist in this direction.
    avail: u64,
    /// Allowed final step counts `lo..=hi` (backwards: start = origin - k).
    lo: u64,
    hi: u64,
}

impl Dir {
    #[inline]
    fn pos(&self, k: u64) -> Option<u64> {
        if k >= self.avail {
            None
        } else if self.backward {
            Some(self.origin - 1 - k)
        } else {
            Some(self.origin + k)
        }
    }
}

fn byte(cur: &mut Cursor<'_>, dir: &Dir, k: u64) -> Result<Option<u8>, EngineError> {
    match dir.pos(k) {
        Some(p) => cur.at(p),
        None => Ok(None),
    }
}

fn seq_matches(cur: &mut Cursor<'_>, dir: &Dir, v: &[ByteM], k: u64) -> Result<bool, EngineError> {
    for (i, m) in v.iter().enumerate() {
        match byte(cur, dir, k + i as u64)? {
            Some(b) if m.matches(b) => {}
            _ => return Ok(false),
        }
    }
    Ok(true)
}

/// Walk `elems` from step `k`; the final step count of the first way found
/// that ends inside `dir.lo..=dir.hi`.
fn walk(
    cur: &mut Cursor<'_>,
    dir: &Dir,
    pool: &Pool,
    elems: &[PElem],
    k: u64,
) -> Result<Option<u64>, EngineError> {
    cur.tick()?;
    let Some((first, rest)) = elems.split_first() else {
        return Ok((k >= dir.lo && k <= dir.hi).then_some(k));
    };
    match *first {
        PElem::Seq(s) => {
            let v = pool.seq(s);
            if !seq_matches(cur, dir, v, k)? {
                return Ok(None);
            }
            walk(cur, dir, pool, rest, k + v.len() as u64)
        }
        PElem::Alt(alts) => {
            for a in pool.alts(alts) {
                if seq_matches(cur, dir, a, k)?
                    && let Some(e) = walk(cur, dir, pool, rest, k + a.len() as u64)?
                {
                    return Ok(Some(e));
                }
            }
            Ok(None)
        }
        PElem::NotAlt(alts) => {
            let n = pool.alts(alts).next().map_or(1, <[ByteM]>::len) as u64;
            if k + n > dir.avail {
                return Ok(None);
            }
            for a in pool.alts(alts) {
                let mut eq = true;
                for (i, want) in a.iter().enumerate() {
                    if byte(cur, dir, k + i as u64)? != Some(want.val) {
                        eq = false;
                        break;
                    }
                }
                if eq {
                    return Ok(None);
                }
            }
            walk(cur, dir, pool, rest, k + n)
        }
        PElem::Gap(g) => {
            let (min, max) = pool.gap(g);
            let from = k.saturating_add(min);
            let to = max.map_or(dir.avail, |m| k.saturating_add(m).min(dir.avail));
            if from > to {
                return Ok(None);
            }
            if rest.is_empty() {
                // Any skip in from..=to ends the pattern: intersect with lo..=hi.
                let first = from.max(dir.lo);
                return Ok((first <= to.min(dir.hi)).then_some(first));
            }
            let lead = match rest.first() {
                Some(&PElem::Seq(s)) => pool.seq(s).first().filter(|b| b.is_exact()).map(|b| b.val),
                _ => None,
            };
            let mut j = from;
            while j <= to {
                cur.tick()?;
                if let Some(l) = lead {
                    match byte(cur, dir, j)? {
                        None => return Ok(None),
                        Some(b) if b != l => {
                            j += 1;
                            continue;
                        }
                        Some(_) => {}
                    }
                }
                if let Some(e) = walk(cur, dir, pool, rest, j)? {
                    return Ok(Some(e));
                }
                j += 1;
            }
            Ok(None)
        }
    }
}

/// Where the signature matches with its anchor at `start..start+anchor_len`
/// and its match start inside `start_lo..=start_hi`: `(match start, match
/// end)` (end exclusive) of the first way found, `None` when it does not.
#[allow(clippy::too_many_arguments)] // the anchor hit, its two sides and the start range
pub fn verify(
    cur: &mut Cursor<'_>,
    start: u64,
    anchor_len: u64,
    pool: &Pool,
    prefix_rev: &[PElem],
    suffix: &[PElem],
    start_lo: u64,
    start_hi: u64,
) -> Result<Option<(u64, u64)>, EngineError> {
    if start_lo > start || start_lo > start_hi {
        return Ok(None);
    }
    // Backwards from the anchor start: k bytes back means the match starts at start - k.
    let back = Dir {
        origin: start,
        backward: true,
        avail: start,
        lo: start.saturating_sub(start_hi),
        hi: start - start_lo,
    };
    let Some(kb) = walk(cur, &back, pool, prefix_rev, 0)? else {
        return Ok(None);
    };
    let end = start + anchor_len;
    let fwd = Dir {
        origin: end,
        backward: false,
        avail: cur.len().saturating_sub(end),
        lo: 0,
        hi: u64::MAX,
    };
    Ok(walk(cur, &fwd, pool, suffix, 0)?.map(|kf| (start - kb, end + kf)))
}
