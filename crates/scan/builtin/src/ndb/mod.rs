//! Body signatures (`.ndb`, `.ndu`): parsing, anchors, the automaton and the verifier.
//!
//! * [`parse`]: the line syntax;
//! * [`anchor`]: picking the literal each signature is found by;
//! * [`pool`]: the elements around every anchor, in flat arrays;
//! * [`matcher`]: verifying a whole signature around an anchor hit.
//!
//! [`NdbSet`] holds every loaded signature: a [`prefilter::GramIndex`] over
//! the distinct anchors, and for each anchor the signatures (and the rest of
//! each signature around it, spans of its [`pool::Pool`]) to verify when it
//! is found.

pub mod anchor;
pub mod matcher;
pub mod parse;
pub mod pool;
pub mod prefilter;

pub use matcher::Cursor;
pub use parse::{
    Bound, ByteM, Edges, Elem, Layout, NdbLineError, NdbSignature, Offset, Target, parse_ndb_bytes,
    parse_ndb_line,
};

use moat_core::EngineError;
use pool::{PElem, Pool, Span};
use prefilter::{GramIndex, Pattern};
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::time::Instant;

/// A signature ready to go into an [`NdbSet`].
#[derive(Debug, Clone)]
pub struct CompiledSig {
    /// Name id (index into the name arena, or any id the caller chooses).
    pub name: u32,
    pub target: Target,
    pub offset: Offset,
    /// The elements of the signature's first part (the whole signature
    /// unless it has unbounded gaps, `*` or `{n-}`).
    pub elems: Vec<Elem>,
    /// Anchors of the first part, by position in `elems`.
    pub pieces: Vec<anchor::Piece>,
    /// The parts after each unbounded gap, in order, each found by anchors
    /// of its own and matched in order (as ClamAV splits at `*`), so that a
    /// hit of one part never walks to the end of the object looking for the
    /// next.
    pub rest: Vec<LaterPart>,
    /// Report every match to [`NdbScan::hits`] (logical-signature
    /// subsignatures) instead of the first one to [`NdbScan::found`].
    pub all_matches: bool,
    /// Zero-width `(B)`/`(L)`/`(W)` checks at the match's ends.
    pub edges: Edges,
}

/// A part of a signature after an unbounded gap.
#[derive(Debug, Clone)]
pub struct LaterPart {
    /// The gap's minimum: the part starts at least this far after the
    /// previous part's end.
    pub min_gap: u64,
    pub elems: Vec<Elem>,
    pub pieces: Vec<anchor::Piece>,
}

/// A signature's first part: its elements and their anchors.
type FirstPart = (Vec<Elem>, Vec<anchor::Piece>);

/// Most parts a signature is split into; further unbounded gaps stay
/// inside the last part (walked by the verifier).
const MAX_PARTS: usize = 64;

/// Split `elems` at unbounded gaps into parts that each have an anchor: a
/// part without one is joined to its neighbour (the gap then walked by the
/// verifier). The elements back when no part has an anchor.
fn split_parts(elems: Vec<Elem>) -> Result<(FirstPart, Vec<LaterPart>), Vec<Elem>> {
    if !elems
        .iter()
        .any(|e| matches!(e, Elem::Gap { max: None, .. }))
    {
        // One part (most signatures): anchored in place, nothing copied.
        return match anchor::choose(&elems) {
            Some(pieces) => Ok(((elems, pieces), Vec::new())),
            None => Err(elems),
        };
    }
    split_groups(&elems).ok_or(elems)
}

/// [`split_parts`] for elements with unbounded gaps: each part copied out
/// and anchored on its own.
fn split_groups(elems: &[Elem]) -> Option<(FirstPart, Vec<LaterPart>)> {
    let mut groups: Vec<(u64, Vec<Elem>)> = vec![(0, Vec::new())];
    for e in elems {
        match e {
            Elem::Gap { min, max: None } if groups.len() < MAX_PARTS => {
                groups.push((*min, Vec::new()))
            }
            _ => {
                if let Some(g) = groups.last_mut() {
                    g.1.push(e.clone());
                }
            }
        }
    }
    let mut out: Vec<(u64, Vec<Elem>, Vec<anchor::Piece>)> = Vec::new();
    let mut pending: Option<(u64, Vec<Elem>)> = None;
    for (gap, part) in groups {
        let (gap, part) = match pending.take() {
            Some((pg, mut pe)) => {
                pe.push(Elem::Gap {
                    min: gap,
                    max: None,
                });
                pe.extend(part);
                (pg, pe)
            }
            None => (gap, part),
        };
        match anchor::choose(&part) {
            Some(p) => out.push((gap, part, p)),
            None => match out.last_mut() {
                Some(last) => {
                    last.1.push(Elem::Gap {
                        min: gap,
                        max: None,
                    });
                    last.1.extend(part);
                    last.2 = anchor::choose(&last.1)?;
                }
                None => pending = Some((gap, part)),
            },
        }
    }
    if pending.is_some() {
        return None;
    }
    let mut parts = out.into_iter();
    let (_, first_elems, first) = parts.next()?;
    let rest = parts
        .map(|(min_gap, elems, pieces)| LaterPart {
            min_gap,
            elems,
            pieces,
        })
        .collect();
    Some(((first_elems, first), rest))
}

/// Pattern `pid`'s anchor bytes: `pat_bytes` holds every pattern's bytes
/// one after another, `pat_ends` where each ends.
fn pattern_bytes<'a>(pat_bytes: &'a [u8], pat_ends: &[u32], pid: u32) -> &'a [u8] {
    let p = pid as usize;
    let start = match p.checked_sub(1) {
        Some(prev) => pat_ends[prev] as usize,
        None => 0,
    };
    let end = pat_ends.get(p).map_or(start, |&e| e as usize);
    pat_bytes.get(start..end).unwrap_or(&[])
}

/// The bytes a signature has right after its anchor (its `suffix`), as far
/// as their positions are fixed: up to eight (value, mask) pairs, mask 0
/// where any byte matches. On the reversed prefix (`prefix_rev`): the
/// bytes right before the anchor, nearest first.
fn after_bytes(pool: &Pool, suffix: &[PElem]) -> ([u8; 8], [u8; 8]) {
    let (mut v, mut m) = ([0u8; 8], [0u8; 8]);
    let mut k = 0usize;
    for e in suffix {
        match *e {
            PElem::Seq(s) => {
                for b in pool.seq(s) {
                    if k >= 8 {
                        return (v, m);
                    }
                    v[k] = b.val & b.mask;
                    m[k] = b.mask;
                    k += 1;
                }
            }
            PElem::Gap(g) => match pool.gap(g) {
                (n, Some(max)) if n == max => {
                    k = k.saturating_add(usize::try_from(n).unwrap_or(usize::MAX));
                }
                _ => break,
            },
            _ => break,
        }
        if k >= 8 {
            break;
        }
    }
    (v, m)
}

/// Choose anchors for a parsed signature; `Unsupported("ndb_no_anchor")`
/// when it has no fixed run of two bytes nor expandable alternatives.
pub fn compile(sig: NdbSignature<'_>, name: u32) -> Result<CompiledSig, NdbLineError> {
    compile_or_elems(sig, name).map_err(|_| NdbLineError::Unsupported("ndb_no_anchor"))
}

/// [`compile`], handing the signature's elements back when it has no
/// anchor (for anchors of another kind, as case-insensitive logical
/// subsignatures have).
pub(crate) fn compile_or_elems(sig: NdbSignature<'_>, name: u32) -> Result<CompiledSig, Vec<Elem>> {
    let ((elems, pieces), rest) = split_parts(sig.elems)?;
    Ok(CompiledSig {
        name,
        target: sig.target,
        offset: sig.offset,
        elems,
        pieces,
        rest,
        all_matches: false,
        edges: sig.edges,
    })
}

/// A signature an anchor finds, and the element lists (in the set's
/// [`Pool`]) to verify around it.
#[derive(Debug, Clone, Copy, Default)]
struct AnchorRef {
    sig: u32,
    /// Which part of the signature this anchor finds.
    part: u16,
    prefix_rev: Span,
    suffix: Span,
}

impl crate::cache::codec::Word for AnchorRef {
    const SIZE: usize = 4 + 2 + 2 * <Span as crate::cache::codec::Word>::SIZE;
    fn put(self, out: &mut [u8]) {
        let mut f = crate::cache::codec::FieldsMut(out);
        f.set(0, self.sig);
        f.set(4, self.part);
        f.set(6, self.prefix_rev);
        f.set(14, self.suffix);
    }
    fn get(b: &[u8]) -> AnchorRef {
        let f = crate::cache::codec::Fields(b);
        AnchorRef {
            sig: f.at(0),
            part: f.at(4),
            prefix_rev: f.at(6),
            suffix: f.at(14),
        }
    }
}

#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
struct SigMeta {
    name: u32,
    target: Target,
    offset: Offset,
    all_matches: bool,
    edges: Edges,
    /// All-matches signatures: distinct match starts recorded at most
    /// (see [`NdbSet::limit_hits`]).
    cap: u32,
    /// Past the cap, keep verifying to know the last match start.
    track_last: bool,
    /// Number of parts (1 unless split at unbounded gaps).
    parts: u16,
    /// Multi-part signatures: index into [`NdbScan::progress`] and of the
    /// minimum gap before part 1 in [`NdbSet::gaps`].
    prog: u32,
    gap0: u32,
}

/// How far a multi-part signature has matched in the current object.
#[derive(Debug, Clone, Copy, Default)]
struct Progress {
    /// The part to find next.
    next: u16,
    /// Where it may start at the earliest.
    min_start: u64,
    /// Where part 0 matched.
    first_start: u64,
}

/// One match of an all-matches signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct SigHit {
    /// Index of the signature in the `Vec` given to [`NdbSet::build`].
    pub sig: u32,
    /// Where the match starts in the object.
    pub start: u64,
    /// Where it ends (exclusive).
    pub end: u64,
}

/// Most [`SigHit`]s kept per object; past it [`NdbScan::hits_truncated`] is set.
pub const MAX_HITS: usize = 1 << 20;

/// Per-object state: which signatures already matched.
#[derive(Debug)]
pub struct NdbScan {
    matched: Vec<u64>,
    /// Patterns that can find nothing more in this object (every signature
    /// they find matched already, or does not apply to it): skipped before
    /// any lookup. Grown on demand.
    dead: Vec<u64>,
    /// The prefilter's short-anchor prefixes still worth looking up in this
    /// object (`None`: all of them).
    short_live: prefilter::ShortLive,
    /// Name ids of the first-match signatures found, in order.
    pub found: Vec<u32>,
    /// Matches of all-matches signatures, in the order found (by anchor
    /// position, not sorted by start; the same match can be reported twice
    /// when a signature has several anchors).
    pub hits: Vec<SigHit>,
    /// More than [`MAX_HITS`] matches: later ones were not recorded.
    pub hits_truncated: bool,
    /// First-match mode (see [`NdbSet::set_first_match`]): stop at the
    /// first name found.
    first_match: bool,
    /// A first-match scan found its name: nothing more is looked for.
    pub done: bool,
    /// Per capped all-matches signature: (distinct starts recorded, last
    /// start, last start of a match ending within ClamAV's first scan
    /// buffer or `u64::MAX`).
    capped: HashMap<u32, (u32, u64, u64)>,
    progress: Vec<Progress>,
    /// Bit per [`Target`] accepted by this object's first bytes.
    targets: u16,
    /// The object's executable layout, for `EOF-n`, `EP±n`, `Sx+n`,
    /// `SEx` and `SL+n` offsets (set by the caller when
    /// [`NdbSet::needs_layout`]).
    pub layout: Layout,
}

impl NdbScan {
    #[inline]
    fn is_dead(&self, pid: u32) -> bool {
        let p = pid as usize;
        self.dead
            .get(p / 64)
            .is_some_and(|w| w & (1 << (p % 64)) != 0)
    }

    fn mark_dead(&mut self, pid: u32) {
        let p = pid as usize;
        if self.dead.len() <= p / 64 {
            self.dead.resize(p / 64 + 1, 0);
        }
        self.dead[p / 64] |= 1 << (p % 64);
    }

    /// Report every match in this scan, whatever the set's first-match
    /// setting (a per-request all-match, clamd's ALLMATCHSCAN).
    pub fn report_all(&mut self) {
        self.first_match = false;
    }

    /// Also apply signatures of target `t` (e.g. mail for an object typed as mail).
    pub fn enable(&mut self, t: Target) {
        self.targets |= target_bit(t);
    }
}

/// Every loaded body signature.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct NdbSet {
    index: GramIndex,
    /// Anchor bytes of pattern `p`: `pat_bytes[pat_ends[p - 1]..pat_ends[p]]`.
    #[serde(with = "crate::cache::codec::bytes")]
    pat_bytes: Vec<u8>,
    pat_ends: Vec<u32>,
    /// Refs of pattern `p` are `refs[pat_start[p]..pat_start[p + 1]]`.
    pat_start: Vec<u32>,
    /// Cached as record segments of their own after the rest (see
    /// [`NdbSet::write_cache`]), as is the pool.
    #[serde(skip)]
    refs: Vec<AnchorRef>,
    /// The element lists the refs verify.
    #[serde(skip)]
    pool: Pool,
    sigs: Vec<SigMeta>,
    /// Some signature's offset needs the object's executable layout.
    needs_layout: bool,
    /// Minimum gaps before the later parts of multi-part signatures.
    gaps: Vec<u64>,
    /// Number of multi-part signatures.
    multi: u32,
    /// Scans stop at the first first-match signature found.
    first_match: bool,
}

/// Why the candidate loop stopped early.
enum Halt {
    /// A first-match scan found its name.
    Done,
    Err(EngineError),
}

impl From<EngineError> for Halt {
    fn from(e: EngineError) -> Halt {
        Halt::Err(e)
    }
}

const TARGETS: [Target; 11] = [
    Target::Any,
    Target::Pe,
    Target::Ole2,
    Target::Graphics,
    Target::Elf,
    Target::MachO,
    Target::Pdf,
    Target::Java,
    Target::Html,
    Target::Mail,
    Target::Ascii,
];

fn target_bit(t: Target) -> u16 {
    1 << TARGETS.iter().position(|&x| x == t).unwrap_or(0)
}

impl NdbScan {
    /// The last match start seen of a capped all-matches signature (see
    /// [`NdbSet::limit_hits`]) among its matches that end within ClamAV's
    /// first scan buffer ([`crate::ldb::bytecmp::CLAMAV_FIRST_BUFFER`]),
    /// also past its cap when it tracks it.
    pub fn last_start_in_first_buffer(&self, sig: u32) -> Option<u64> {
        self.capped
            .get(&sig)
            .and_then(|&(_, _, early)| (early != u64::MAX).then_some(early))
    }
}

impl NdbSet {
    /// Index the anchors of `sigs`.
    pub fn build(sigs: Vec<CompiledSig>) -> NdbSet {
        /// Each part of `s`: its number, elements and anchors.
        fn parts(s: &CompiledSig) -> impl Iterator<Item = (u16, &Vec<Elem>, &Vec<anchor::Piece>)> {
            std::iter::once((0u16, &s.elems, &s.pieces)).chain(
                s.rest
                    .iter()
                    .enumerate()
                    .map(|(k, lp)| (k as u16 + 1, &lp.elems, &lp.pieces)),
            )
        }
        // A pattern is an anchor and the bytes known around it: signatures
        // sharing an anchor but not what surrounds it are told apart by the
        // index, not by verification.
        type Around = ([u8; 8], [u8; 8], [u8; 8], [u8; 8]);
        // Sizes up front: each part's elements go into the pool about once
        // (the pieces of one part share their sides).
        let (mut pieces, mut pool_elems, mut pool_bytes) = (0usize, 0usize, 0usize);
        for s in &sigs {
            for (_, elems, ps) in parts(s) {
                pieces += ps.len();
                pool_elems += elems.len() + 1;
                pool_bytes += elems
                    .iter()
                    .map(|e| match e {
                        Elem::Seq(v) => v.len(),
                        Elem::Alt(a) => a.iter().map(Vec::len).sum(),
                        Elem::NotAlt(a) => a.iter().map(Vec::len).sum(),
                        Elem::Gap { .. } => 0,
                    })
                    .sum::<usize>();
            }
        }
        // Pattern ids, found by the bytes and surroundings they stand for
        // (in `pat_bytes` and `pat_around`): four bytes a slot, where a map
        // keyed by copies took 64 and its first touches were a third of
        // building the set.
        let mut pattern_ids: hashbrown::HashTable<u32> =
            hashbrown::HashTable::with_capacity(pieces);
        let state = foldhash::fast::RandomState::default();
        let hash = |bytes: &[u8], around: &Around| state.hash_one((bytes, around));
        let mut pat_around: Vec<Around> = Vec::with_capacity(pieces);
        let mut pat_bytes: Vec<u8> = Vec::with_capacity(pieces * anchor::MAX_RUN);
        let mut pat_ends: Vec<u32> = Vec::with_capacity(pieces);
        let mut by_pattern: Vec<(u32, AnchorRef)> = Vec::with_capacity(pieces);
        let mut pool = Pool::with_capacity(pool_elems, pool_bytes);
        let mut metas = Vec::with_capacity(sigs.len());
        let mut gaps = Vec::new();
        let mut multi = 0u32;
        for (si, s) in sigs.into_iter().enumerate() {
            let si = si as u32;
            let (prog, gap0) = if s.rest.is_empty() {
                (u32::MAX, 0)
            } else {
                multi += 1;
                (multi - 1, gaps.len() as u32)
            };
            metas.push(SigMeta {
                name: s.name,
                target: s.target,
                offset: s.offset,
                all_matches: s.all_matches,
                edges: s.edges,
                cap: u32::MAX,
                track_last: false,
                parts: 1 + s.rest.len() as u16,
                prog,
                gap0,
            });
            gaps.extend(s.rest.iter().map(|lp| lp.min_gap));
            for (part, elems, ps) in parts(&s) {
                // The pieces of an alternative group share both sides.
                type Sides = ((usize, usize), (usize, usize), Span, Span, Around);
                let mut last: Option<Sides> = None;
                for p in ps {
                    let (prefix_rev, suffix, around) = match last {
                        Some((l, r, pre, suf, around)) if l == p.left && r == p.right => {
                            (pre, suf, around)
                        }
                        _ => {
                            let pre = pool.push_prefix_rev(elems, p.left.0, p.left.1);
                            let suf = pool.push_suffix(elems, p.right.0, p.right.1);
                            let (after, after_mask) = after_bytes(&pool, pool.elems(suf));
                            // The reversed prefix reads backwards from the anchor.
                            let (before, before_mask) = after_bytes(&pool, pool.elems(pre));
                            let around = (after, after_mask, before, before_mask);
                            last = Some((p.left, p.right, pre, suf, around));
                            (pre, suf, around)
                        }
                    };
                    let bytes = p.bytes();
                    let next = pat_ends.len() as u32;
                    let pattern = |pid: u32| {
                        (
                            pattern_bytes(&pat_bytes, &pat_ends, pid),
                            &pat_around[pid as usize],
                        )
                    };
                    let entry = pattern_ids.entry(
                        hash(bytes, &around),
                        |&pid| pattern(pid) == (bytes, &around),
                        |&pid| {
                            let (b, a) = pattern(pid);
                            hash(b, a)
                        },
                    );
                    let pid = match entry {
                        hashbrown::hash_table::Entry::Occupied(o) => *o.get(),
                        hashbrown::hash_table::Entry::Vacant(v) => {
                            v.insert(next);
                            pat_bytes.extend_from_slice(bytes);
                            pat_ends.push(pat_bytes.len() as u32);
                            pat_around.push(around);
                            next
                        }
                    };
                    by_pattern.push((
                        pid,
                        AnchorRef {
                            sig: si,
                            part,
                            prefix_rev,
                            suffix,
                        },
                    ));
                }
            }
        }
        drop(pattern_ids);
        // Group the references by pattern, in signature order within one
        // (a counting sort: pattern ids are dense).
        let mut pat_start = vec![0u32; pat_ends.len() + 1];
        for (pid, _) in &by_pattern {
            pat_start[*pid as usize + 1] += 1;
        }
        for i in 1..pat_start.len() {
            pat_start[i] += pat_start[i - 1];
        }
        let mut refs = vec![AnchorRef::default(); by_pattern.len()];
        let mut next_slot = pat_start.clone();
        for (pid, r) in by_pattern {
            let at = &mut next_slot[pid as usize];
            refs[*at as usize] = r;
            *at += 1;
        }
        drop(next_slot);
        let patterns: Vec<Pattern<'_>> = (0..pat_ends.len() as u32)
            .zip(&pat_around)
            .map(|(pid, &(after, after_mask, before, before_mask))| Pattern {
                anchor: pattern_bytes(&pat_bytes, &pat_ends, pid),
                after,
                after_mask,
                before,
                before_mask,
            })
            .collect();
        let index = GramIndex::build_with(&patterns);
        drop(patterns);
        let needs_layout = metas
            .iter()
            .any(|s| !matches!(s.offset, Offset::Any | Offset::Abs { .. }));
        NdbSet {
            index,
            pat_bytes,
            pat_ends,
            pat_start,
            refs,
            pool,
            sigs: metas,
            needs_layout,
            gaps,
            multi,
            first_match: false,
        }
    }

    fn pattern(&self, pid: u32) -> &[u8] {
        pattern_bytes(&self.pat_bytes, &self.pat_ends, pid)
    }

    /// A set with no signatures.
    pub fn empty() -> NdbSet {
        NdbSet {
            index: GramIndex::build(&[]),
            pat_bytes: Vec::new(),
            pat_ends: Vec::new(),
            pat_start: vec![0],
            refs: Vec::new(),
            pool: Pool::default(),
            sigs: Vec::new(),
            needs_layout: false,
            gaps: Vec::new(),
            multi: 0,
            first_match: false,
        }
    }

    /// Record at most `cap` distinct match starts (at least 1) of the
    /// all-matches signature `sig` per object: enough when the caller only
    /// compares counts with numbers below `cap`. With `track_last`, matches
    /// past the cap are still verified so that
    /// [`NdbScan::last_start_in_first_buffer`] knows the last one.
    pub fn limit_hits(&mut self, sig: u32, cap: u32, track_last: bool) {
        if let Some(m) = self.sigs.get_mut(sig as usize) {
            m.cap = cap.max(1);
            m.track_last = track_last;
        }
    }

    /// First-match mode, as clamscan without `--allmatch`: a scan stops at
    /// the first (first-match) signature found ([`NdbScan::done`]), and
    /// [`NdbScan::found`] then holds that one name. All-matches signatures
    /// (logical subsignatures) found before it are in [`NdbScan::hits`] as
    /// usual, but the object is not scanned further.
    pub fn set_first_match(&mut self, on: bool) {
        self.first_match = on;
    }

    /// Number of signatures.
    pub fn len(&self) -> usize {
        self.sigs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sigs.is_empty()
    }

    /// Whether some signature's offset depends on the object's executable
    /// layout (`EOF-n` too: it does not resolve on a broken PE or ELF).
    pub fn needs_layout(&self) -> bool {
        self.needs_layout
    }

    /// Whether any signature applies to target `t` (lets the scan skip
    /// normalised layers no signature can match).
    pub fn has_target(&self, t: Target) -> bool {
        self.sigs.iter().any(|m| m.target == t)
    }

    /// Write the set to the compiled-set cache: the small fields and the
    /// index, then the largest arrays as record segments (no counting
    /// pass, no whole copy).
    pub(crate) fn write_cache(&self, w: &mut crate::cache::SegWriter<'_>) -> std::io::Result<()> {
        w.put(self)?;
        self.index.write_records(w)?;
        w.put_records(&self.refs)?;
        self.pool.write_cache(w)
    }

    /// A set [`NdbSet::write_cache`] wrote, checked before use: every ref
    /// names a signature and spans of the pool, every pool span lies
    /// inside its array.
    pub(crate) fn read_cache(r: &mut crate::cache::SegReader<'_>) -> Result<NdbSet, String> {
        let mut set = r.get::<NdbSet>()?;
        set.index.read_records(r)?;
        set.refs = r.get_records()?;
        set.pool = Pool::read_cache(r)?;
        if set.pat_start.last().copied() != Some(set.refs.len() as u32) {
            return Err("body signatures: anchor refs do not match the patterns".into());
        }
        let ok = |r: &AnchorRef| {
            (r.sig as usize) < set.sigs.len()
                && set.pool.has_elems(r.prefix_rev)
                && set.pool.has_elems(r.suffix)
        };
        if !set.refs.iter().all(ok) {
            return Err("body signatures: an anchor ref points outside the set".into());
        }
        Ok(set)
    }

    /// Heap bytes used by the candidate index.
    pub fn index_bytes(&self) -> usize {
        self.index.memory_bytes()
    }

    /// Windows overlap by this many bytes: a position is tested once its
    /// first four bytes are available.
    pub const OVERLAP: usize = 3;

    /// Fresh per-object state; `head` is the object's first bytes
    /// (up to [`parse::TARGET_HEAD`]).
    pub fn start(&self, head: &[u8]) -> NdbScan {
        let mut targets = 0;
        for t in TARGETS {
            if t.accepts(head) {
                targets |= target_bit(t);
            }
        }
        NdbScan {
            matched: vec![0; self.sigs.len().div_ceil(64)],
            dead: Vec::new(),
            short_live: None,
            found: Vec::new(),
            hits: Vec::new(),
            hits_truncated: false,
            capped: HashMap::new(),
            progress: vec![Progress::default(); self.multi as usize],
            targets,
            layout: Layout::NotExe,
            first_match: self.first_match,
            done: false,
        }
    }

    /// Fresh per-object state for a normalised layer: only target 0 and
    /// `targets` apply, whatever the layer's first bytes are (ClamAV scans
    /// a layer with the targets of the type it gives it).
    pub fn start_layer(&self, targets: &[Target]) -> NdbScan {
        let mut st = self.start(&[]);
        st.targets = target_bit(Target::Any);
        for &t in targets {
            st.enable(t);
        }
        st
    }

    /// Scan a whole normalised layer (see [`Self::start_layer`]); returns
    /// the name ids found (each once).
    pub fn scan_layer(
        &self,
        data: &[u8],
        targets: &[Target],
        deadline: Option<Instant>,
        all_match: bool,
    ) -> Result<Vec<u32>, EngineError> {
        Ok(self
            .scan_layer_state(data, targets, deadline, all_match)?
            .found)
    }

    /// [`Self::scan_layer`] returning the whole per-layer state (with the
    /// all-matches hits, for logical signatures).
    pub fn scan_layer_state(
        &self,
        data: &[u8],
        targets: &[Target],
        deadline: Option<Instant>,
        all_match: bool,
    ) -> Result<NdbScan, EngineError> {
        let mut st = self.start_layer(targets);
        if all_match {
            st.report_all();
        }
        let mut cur = Cursor::whole(data, deadline);
        self.scan_window(data, 0, true, &mut cur, &mut st)?;
        Ok(st)
    }

    /// Test the anchor start positions of `window` (bytes `window_base..`
    /// of the object) and verify the signatures found. Unless `last`, the
    /// final [`Self::OVERLAP`] positions are left for the next window, which
    /// must start at the returned position (relative to `window`).
    pub fn scan_window(
        &self,
        window: &[u8],
        window_base: u64,
        last: bool,
        cur: &mut Cursor<'_>,
        st: &mut NdbScan,
    ) -> Result<usize, EngineError> {
        let limit = if last {
            window.len()
        } else {
            window.len().saturating_sub(Self::OVERLAP)
        };
        if self.sigs.is_empty() || st.done {
            return Ok(limit);
        }
        let mut live = st.short_live.take();
        let r = self.index.scan(window, limit, &mut live, |i, pid, sure| {
            if st.is_dead(pid) {
                return Ok(self.short_exhausted(pid, st));
            }
            let pat = self.pattern(pid);
            let abs = window_base + i as u64;
            match window.get(i..i + pat.len()) {
                _ if sure => {}
                Some(w) => {
                    if w != pat {
                        return Ok(false);
                    }
                }
                None => {
                    for (j, &b) in pat.iter().enumerate() {
                        if cur.at(abs + j as u64)? != Some(b) {
                            return Ok(false);
                        }
                    }
                }
            }
            if self.verify_refs(pid, abs, pat.len() as u64, cur, st)? {
                st.mark_dead(pid);
                return Ok(self.short_exhausted(pid, st));
            }
            if st.done {
                return Err(Halt::Done);
            }
            Ok(false)
        });
        st.short_live = live;
        match r {
            Ok(()) | Err(Halt::Done) => Ok(limit),
            Err(Halt::Err(e)) => Err(e),
        }
    }

    /// Whether `pid` is a short anchor all of whose prefix's patterns are
    /// dead in this object (the prefilter then stops looking the prefix up).
    fn short_exhausted(&self, pid: u32, st: &NdbScan) -> bool {
        let pat = self.pattern(pid);
        if pat.len() >= 4 || pat.len() < 2 {
            return false;
        }
        let s = u16::from_le_bytes([pat[0], pat[1]]);
        self.index.short_pids(s).all(|p| st.is_dead(p))
    }

    /// The left `(B)`/`(L)`/`(W)` check for a match starting at `ms`.
    fn left_edge_ok(edges: &Edges, ms: u64, cur: &mut Cursor<'_>) -> Result<bool, EngineError> {
        if edges.left.is_none() {
            return Ok(true);
        }
        let prev = match ms.checked_sub(1) {
            Some(p) => cur.at(p)?,
            None => None,
        };
        Ok(edges.left_ok(prev))
    }

    /// Where `r`'s signature (part) matches around its anchor at
    /// `start..start + alen`, its start in `lo..=hi` ([`matcher::verify`]
    /// over the ref's two sides in the pool).
    fn verify_ref(
        &self,
        r: &AnchorRef,
        cur: &mut Cursor<'_>,
        start: u64,
        alen: u64,
        (lo, hi): (u64, u64),
    ) -> Result<Option<(u64, u64)>, EngineError> {
        let (before, after) = (self.pool.elems(r.prefix_rev), self.pool.elems(r.suffix));
        matcher::verify(cur, start, alen, &self.pool, before, after, lo, hi)
    }

    /// Verify the signatures found by pattern `pid` at `start`; whether the
    /// pattern can find nothing more in this object (each of its
    /// signatures matched already or does not apply to the object).
    fn verify_refs(
        &self,
        pid: u32,
        start: u64,
        alen: u64,
        cur: &mut Cursor<'_>,
        st: &mut NdbScan,
    ) -> Result<bool, EngineError> {
        let p = pid as usize;
        let (Some(&a), Some(&b)) = (self.pat_start.get(p), self.pat_start.get(p + 1)) else {
            return Ok(true);
        };
        let refs = &self.refs[a as usize..b as usize];
        for r in refs {
            let si = r.sig as usize;
            if st.matched[si / 64] & (1 << (si % 64)) != 0 {
                continue;
            }
            let meta = self.sigs[si];
            if st.targets & target_bit(meta.target) == 0 {
                continue;
            }
            let whole = meta.offset.resolve(cur.len(), &st.layout);
            let (ms, me) = if meta.parts <= 1 {
                let Some((lo, hi)) = whole else { continue };
                match self.verify_ref(r, cur, start, alen, (lo, hi))? {
                    Some(m) => m,
                    None => continue,
                }
            } else {
                // Parts match in order: only the next one is looked for,
                // starting at or after the previous part's end plus the gap.
                let Some(pr) = st.progress.get(meta.prog as usize).copied() else {
                    continue;
                };
                let last = meta.parts - 1;
                // All-matches signatures stay on their last part once complete.
                if r.part != pr.next.min(last) {
                    continue;
                }
                let (lo, hi) = if r.part == 0 {
                    match whole {
                        Some(w) => w,
                        None => continue,
                    }
                } else {
                    (pr.min_start, u64::MAX)
                };
                let Some((ps, pe)) = self.verify_ref(r, cur, start, alen, (lo, hi))? else {
                    continue;
                };
                // A left (B)/(L)/(W) check belongs to where part 0 starts.
                if r.part == 0 && !Self::left_edge_ok(&meta.edges, ps, cur)? {
                    continue;
                }
                let mut np = pr;
                if r.part == 0 {
                    np.first_start = ps;
                }
                np.next = r.part + 1;
                if r.part < last {
                    let gap = self
                        .gaps
                        .get(meta.gap0 as usize + r.part as usize)
                        .copied()
                        .unwrap_or(0);
                    np.min_start = pe.saturating_add(gap);
                }
                if let Some(slot) = st.progress.get_mut(meta.prog as usize) {
                    *slot = np;
                }
                if r.part < last {
                    continue;
                }
                (np.first_start, pe)
            };
            if !meta.edges.is_empty() {
                if meta.parts <= 1 && !Self::left_edge_ok(&meta.edges, ms, cur)? {
                    continue;
                }
                if !meta.edges.right_ok(cur.at(me)?, cur.at(me + 1)?) {
                    continue;
                }
            }
            if meta.all_matches {
                if meta.cap != u32::MAX {
                    let e = st.capped.entry(r.sig).or_insert((0, u64::MAX, u64::MAX));
                    if e.1 == ms {
                        continue;
                    }
                    if me <= crate::ldb::bytecmp::CLAMAV_FIRST_BUFFER {
                        e.2 = ms;
                    }
                    if e.0 >= meta.cap {
                        // Past the cap (only `track_last` signatures get here).
                        e.1 = ms;
                        continue;
                    }
                    (e.0, e.1) = (e.0 + 1, ms);
                    if e.0 >= meta.cap && !meta.track_last {
                        // Enough matches for every count the caller can ask about.
                        st.matched[si / 64] |= 1 << (si % 64);
                    }
                }
                if st.hits.len() < MAX_HITS {
                    st.hits.push(SigHit {
                        sig: r.sig,
                        start: ms,
                        end: me,
                    });
                } else {
                    st.hits_truncated = true;
                }
            } else {
                st.matched[si / 64] |= 1 << (si % 64);
                st.found.push(meta.name);
                if st.first_match {
                    st.done = true;
                    return Ok(false);
                }
            }
        }
        // Nothing left for this pattern in this object: every signature
        // matched (all-matches ones only past their cap), or its target or
        // offset excludes the object (both fixed per object).
        Ok(refs.iter().all(|r| {
            let si = r.sig as usize;
            if st.matched[si / 64] & (1 << (si % 64)) != 0 {
                return true;
            }
            let m = &self.sigs[si];
            st.targets & target_bit(m.target) == 0
                || m.offset.resolve(cur.len(), &st.layout).is_none()
        }))
    }

    /// Scan a whole in-memory buffer; returns the name ids found (each once).
    pub fn scan_slice(
        &self,
        data: &[u8],
        deadline: Option<Instant>,
    ) -> Result<Vec<u32>, EngineError> {
        Ok(self.scan_slice_state(data, deadline)?.found)
    }

    /// Scan a whole in-memory buffer; the final per-object state (first-match
    /// names in `found`, all-matches signatures' matches in `hits`).
    pub fn scan_slice_state(
        &self,
        data: &[u8],
        deadline: Option<Instant>,
    ) -> Result<NdbScan, EngineError> {
        let mut st = self.start(&data[..data.len().min(parse::TARGET_HEAD)]);
        let mut cur = Cursor::whole(data, deadline);
        self.scan_window(data, 0, true, &mut cur, &mut st)?;
        Ok(st)
    }
}

/// Build a set from ndb lines; name ids are line indexes. Lines that do not
/// load are returned with their error. For tests and fuzzing.
pub fn set_from_lines(lines: &[&str]) -> (NdbSet, Vec<(usize, NdbLineError)>) {
    let mut sigs = Vec::new();
    let mut errs = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        match parse_ndb_line(l).and_then(|s| compile(s, i as u32)) {
            Ok(c) => sigs.push(c),
            Err(e) => errs.push((i, e)),
        }
    }
    (NdbSet::build(sigs), errs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cached_set_whose_refs_point_outside_it_is_refused() {
        use crate::cache::ndb_segment_tests::{read, written};
        let (set, _) = set_from_lines(&["A:0:*:41424344454647??4849", "B:0:*:3132333435363738"]);
        assert!(read(&written(&set)).is_ok());
        let bad_refs: [fn(&mut AnchorRef); 3] = [
            |r| r.sig = 7,
            |r| r.suffix.start = 1000,
            |r| r.prefix_rev.len = 1000,
        ];
        for spoil in bad_refs {
            let (mut set, _) = set_from_lines(&["A:0:*:41424344454647??4849"]);
            spoil(&mut set.refs[0]);
            let err = read(&written(&set)).expect_err("a set pointing outside itself decoded");
            assert!(err.contains("outside"), "{err}");
        }
    }
    use moat_core::Blob;

    fn hits(line: &str, data: &[u8]) -> bool {
        let (set, errs) = set_from_lines(&[line]);
        assert!(errs.is_empty(), "{line}: {errs:?}");
        !set.scan_slice(data, None).unwrap().is_empty()
    }

    #[test]
    fn literal_anywhere() {
        assert!(hits("S:0:*:414243", b"xxABCxx"));
        assert!(!hits("S:0:*:414243", b"xxABxCx"));
        assert!(hits("S:0:*:414243", b"ABC"));
    }

    #[test]
    fn wildcards_and_nibbles_match() {
        let l = "S:0:*:4142??44";
        assert!(hits(l, b"ABzD") && hits(l, b"AB\0D") && !hits(l, b"ABD"));
        let n = "S:0:*:41424?";
        assert!(hits(n, b"ABC") && hits(n, b"ABO") && !hits(n, b"ABP"));
        let lo = "S:0:*:4142?3";
        assert!(hits(lo, b"ABC") && hits(lo, b"ABS") && !hits(lo, b"ABD"));
    }

    #[test]
    fn jumps_match() {
        let exact = "S:0:*:4142{2}4344";
        assert!(hits(exact, b"ABxxCD") && !hits(exact, b"ABxCD") && !hits(exact, b"ABxxxCD"));
        let range = "S:0:*:4142{1-3}4344";
        assert!(!hits(range, b"ABCD") && hits(range, b"ABxCD") && hits(range, b"ABxxxCD"));
        assert!(!hits(range, b"ABxxxxCD"));
        let open = "S:0:*:4142{2-}4344";
        assert!(!hits(open, b"ABxCD") && hits(open, &[b"AB".as_ref(), &[0; 5000], b"CD"].concat()));
        let upto = "S:0:*:4142{-2}4344";
        assert!(hits(upto, b"ABCD") && hits(upto, b"ABxxCD") && !hits(upto, b"ABxxxCD"));
        let brackets = "S:0:*:4142[1-2]4344";
        assert!(hits(brackets, b"ABxCD") && !hits(brackets, b"ABCD"));
        let star = "S:0:*:41424344*45464748";
        assert!(
            hits(star, b"ABCD----EFGH") && hits(star, b"ABCDEFGH") && !hits(star, b"EFGH ABCD")
        );
        // Backwards over a jump: the anchor is the rare run at the end.
        let back = "S:0:*:0000{1-4}5a5b5c5d5e";
        assert!(hits(back, b"\0\0xxZ[\\]^") && !hits(back, b"\0\0xxxxxZ[\\]^"));
    }

    #[test]
    fn alternatives_match() {
        let l = "S:0:*:41424344(45|4647|48)494a";
        assert!(hits(l, b"ABCDEIJ") && hits(l, b"ABCDFGIJ") && hits(l, b"ABCDHIJ"));
        assert!(!hits(l, b"ABCDFIJ") && !hits(l, b"ABCDIJ"));
        let neg = "S:0:*:41424344!(45|46)47";
        assert!(hits(neg, b"ABCDxG") && !hits(neg, b"ABCDEG") && !hits(neg, b"ABCDFG"));
        // Only alternatives and single fixed bytes: anchors come from expansion.
        let exp = "S:0:*:aa(bbcc|ddee)";
        assert!(hits(exp, &[0xaa, 0xdd, 0xee]) && !hits(exp, &[0xaa, 0xdd, 0xef]));
    }

    #[test]
    fn offsets_are_honoured() {
        let at = "S:0:3:41424344";
        assert!(hits(at, b"xxxABCD") && !hits(at, b"xxABCD") && !hits(at, b"xxxxABCD"));
        let span = "S:0:2,2:41424344";
        assert!(!hits(span, b"xABCD") && hits(span, b"xxABCD") && hits(span, b"xxxxABCD"));
        assert!(!hits(span, b"xxxxxABCD"));
        let eof = "S:0:EOF-6:41424344";
        assert!(hits(eof, b"xxxABCDyy") && !hits(eof, b"xxxABCDy") && !hits(eof, b"ABC"));
        let eof_span = "S:0:EOF-6,1:41424344";
        // Start within len-6..=len-5: 1 or 2 bytes after the literal.
        assert!(hits(eof_span, b"ABCDyy") && hits(eof_span, b"xABCDy"));
        assert!(!hits(eof_span, b"ABCDyyy") && !hits(eof_span, b"xxABCD"));
        // The offset is where the whole signature starts, not the anchor.
        let pre = "S:0:1:??{1-2}41424344";
        assert!(hits(pre, b"_xxABCD") && hits(pre, b"_xxxABCD") && !hits(pre, b"xABCD"));
    }

    #[test]
    fn targets_are_honoured() {
        let pe = "S:1:*:41424344";
        assert!(hits(pe, b"MZ..ABCD") && !hits(pe, b"ZM..ABCD"));
        let elf = "S:6:*:41424344";
        assert!(hits(elf, b"\x7fELF ABCD") && !hits(elf, b"MZ ABCD"));
        let pdf = "S:10:*:41424344";
        assert!(hits(pdf, b"%PDF-1.4 ABCD") && !hits(pdf, b"%PS ABCD"));
    }

    #[test]
    fn each_signature_reported_once() {
        let (set, _) = set_from_lines(&["S:0:*:41424344", "T:0:*:4142"]);
        let mut found = set.scan_slice(b"ABCD ABCD ABCD", None).unwrap();
        found.sort();
        assert_eq!(found, vec![0, 1]);
    }

    #[test]
    fn first_match_set_stops_at_the_first_name_in_the_object() {
        let (mut set, _) = set_from_lines(&["S:0:*:41424344", "T:0:*:51525354", "U:0:*:4142"]);
        let data = b"..QRST..ABCD..";
        let mut every = set.scan_slice(data, None).unwrap();
        every.sort();
        assert_eq!(every, vec![0, 1, 2]);
        set.set_first_match(true);
        let st = set.scan_slice_state(data, None).unwrap();
        assert!(st.done);
        assert_eq!(st.found, vec![1]);
        // Nothing found: the whole object is scanned, not done.
        let st = set.scan_slice_state(b"..xyz..", None).unwrap();
        assert!(!st.done && st.found.is_empty());
        // A later window of a done scan looks at nothing.
        let mut st = set.start(b"");
        let mut cur = Cursor::whole(b"QRST ABCD", None);
        set.scan_window(b"QRST ABCD", 0, true, &mut cur, &mut st)
            .unwrap();
        set.scan_window(b"QRST ABCD", 0, true, &mut cur, &mut st)
            .unwrap();
        assert_eq!(st.found, vec![1]);
    }

    #[test]
    fn all_matches_signature_reports_every_match_with_its_extent() {
        let mut sigs: Vec<CompiledSig> = ["S:0:*:41424344", "T:0:*:41{1-2}4243", "U:0:*:4142"]
            .iter()
            .enumerate()
            .map(|(i, l)| compile(parse_ndb_line(l).unwrap(), i as u32).unwrap())
            .collect();
        sigs[1].all_matches = true;
        sigs[2].all_matches = true;
        let set = NdbSet::build(sigs);
        let st = set.scan_slice_state(b"ABCD xAxBC ABCD AAB", None).unwrap();
        // The first-match signature is reported once, by name.
        assert_eq!(st.found, vec![0]);
        let mut hits = st.hits.clone();
        hits.sort();
        hits.dedup();
        let h = |sig, start, end| SigHit { sig, start, end };
        assert_eq!(
            hits,
            vec![h(1, 6, 10), h(2, 0, 2), h(2, 11, 13), h(2, 17, 19)]
        );
        assert!(!st.hits_truncated);
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn limited_all_matches_signature_stops_after_its_cap() {
        let mut c = compile(parse_ndb_line("S:0:*:4142").unwrap(), 0).unwrap();
        c.all_matches = true;
        let mut set = NdbSet::build(vec![c.clone(), c]);
        set.limit_hits(0, 3, false);
        let data = b"AB AB AB AB AB AB";
        let st = set.scan_slice_state(data, None).unwrap();
        let count = |sig| st.hits.iter().filter(|h| h.sig == sig).count();
        assert_eq!((count(0), count(1)), (3, 6));
        assert!(!st.hits_truncated);
        // Tracking the last start: still 3 hits, but the last match is known.
        set.limit_hits(0, 3, true);
        let st = set.scan_slice_state(data, None).unwrap();
        assert_eq!(st.hits.iter().filter(|h| h.sig == 0).count(), 3);
        assert_eq!(st.last_start_in_first_buffer(0), Some(15));
    }

    #[test]
    fn unbounded_gaps_split_into_parts_matched_in_order() {
        let (set, _) = set_from_lines(&["S:0:*:41424344*4546474849"]);
        assert_eq!(set.multi, 1);
        let hit = |d: &[u8]| !set.scan_slice(d, None).unwrap().is_empty();
        assert!(hit(b"ABCDEFGHI") && hit(b"xABCD....EFGHI..ABCD"));
        // Parts must not overlap and must come in order.
        assert!(!hit(b"EFGHI ABCD") && !hit(b"ABCEFGHI") && !hit(b"ABCDEFGH"));
        // {n-}: at least n bytes between the parts.
        let (min, _) = set_from_lines(&["S:0:*:4142434445{3-}464748494a"]);
        let mhit = |d: &[u8]| !min.scan_slice(d, None).unwrap().is_empty();
        assert!(mhit(b"ABCDExxxFGHIJ") && mhit(b"ABCDExxxxxxxFGHIJ"));
        assert!(!mhit(b"ABCDExxFGHIJ") && !mhit(b"ABCDEFGHIJ"));
        // A part without an anchor is joined to the part before it.
        let (three, _) = set_from_lines(&["S:0:*:41424344*45*46474849"]);
        assert_eq!(three.multi, 1);
        let thit = |d: &[u8]| !three.scan_slice(d, None).unwrap().is_empty();
        assert!(thit(b"ABCD.E.FGHI") && thit(b"ABCDEFGHI"));
        assert!(!thit(b"ABCD.FGHI.E") && !thit(b"E.ABCD.FGHI"));
        // A part found by a short (two-byte) anchor before one found by a
        // four-byte gram: candidates come in position order.
        let (short, _) = set_from_lines(&["S:0:*:9cd5*8470d75daf9dac35"]);
        let data = [&[0x9c, 0xd5][..], b"..", &hex("8470d75daf9dac35")].concat();
        assert!(!short.scan_slice(&data, None).unwrap().is_empty());
        // The offset constrains where part 0 starts.
        let (off, _) = set_from_lines(&["S:0:2:41424344*45464748"]);
        let ohit = |d: &[u8]| !off.scan_slice(d, None).unwrap().is_empty();
        assert!(ohit(b"..ABCD....EFGH") && !ohit(b"...ABCD....EFGH"));
    }

    #[test]
    fn all_matches_multi_part_reports_from_first_part_start() {
        let mut c = compile(parse_ndb_line("S:0:*:41424344*45464748").unwrap(), 0).unwrap();
        c.all_matches = true;
        let set = NdbSet::build(vec![c]);
        let st = set.scan_slice_state(b"..ABCD..EFGH..EFGH", None).unwrap();
        let h = |start, end| SigHit { sig: 0, start, end };
        assert_eq!(st.hits, vec![h(2, 12), h(2, 18)]);
    }

    #[test]
    fn all_matches_hits_are_bounded() {
        let mut c = compile(parse_ndb_line("S:0:*:4141").unwrap(), 0).unwrap();
        c.all_matches = true;
        let set = NdbSet::build(vec![c]);
        let data = vec![b'A'; MAX_HITS + 100];
        let st = set.scan_slice_state(&data, None).unwrap();
        assert_eq!(st.hits.len(), MAX_HITS);
        assert!(st.hits_truncated && st.found.is_empty());
    }

    /// xorshift64*: deterministic test data.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    /// A random single-part signature over a small alphabet (so that
    /// signatures share grams and match random data often): fixed bytes,
    /// `??`, nibbles, bounded jumps and alternatives.
    fn random_sig(r: &mut Rng, alphabet: &[u8]) -> String {
        let mut s = String::new();
        let byte = |r: &mut Rng| alphabet[r.below(alphabet.len() as u64) as usize];
        for k in 0..2 + r.below(10) {
            match r.below(12) {
                0 if k > 0 => s.push_str("??"),
                1 if k > 0 => s.push_str(&format!("{:x}?", byte(r) >> 4)),
                2 if k > 0 => s.push_str(&format!("?{:x}", byte(r) & 15)),
                3 if k > 0 => {
                    let a = r.below(3);
                    s.push_str(&format!("{{{a}-{}}}", a + r.below(3)));
                    s.push_str(&format!("{:02x}", byte(r)));
                }
                4 => s.push_str(&format!("({:02x}|{:02x}{:02x})", byte(r), byte(r), byte(r))),
                _ => s.push_str(&format!("{:02x}", byte(r))),
            }
        }
        s
    }

    #[test]
    fn single_part_signatures_anchor_as_the_general_split_does() {
        let mut r = Rng(0x0bad_cafe_f00d_1234);
        let alphabet = [0x00, 0x00, 0xff, 0x48, 0x89, 0xe5, 0x41, 0x0f, 0x61, 0x20];
        let mut compared = 0;
        for _ in 0..2000 {
            let Ok(e) = parse::parse_hex(random_sig(&mut r, &alphabet).as_bytes()) else {
                continue;
            };
            let fast = split_parts(e.clone()).ok().map(|(p, rest)| (p, rest.len()));
            let general = split_groups(&e).map(|(p, rest)| (p, rest.len()));
            assert_eq!(fast, general, "{e:?}");
            compared += usize::from(fast.is_some());
        }
        assert!(compared > 1000, "only {compared} signatures anchored");
    }

    /// Whether `elems` match anywhere in `data`, by trying every start
    /// (no anchor, no prefilter): the reference for the indexed scan.
    fn brute_force(elems: &[Elem], data: &[u8]) -> bool {
        let mut cur = Cursor::whole(data, None);
        let mut pool = Pool::default();
        let all = pool.push_suffix(elems, 0, 0);
        (0..=data.len() as u64).any(|s| {
            matcher::verify(&mut cur, s, 0, &pool, &[], pool.elems(all), 0, u64::MAX)
                .unwrap()
                .is_some()
        })
    }

    #[test]
    fn indexed_scan_finds_what_trying_every_start_finds() {
        let mut r = Rng(0x1234_5678_9abc_def1);
        // Common bytes first: zero and 0xff runs, x86 prologue bytes.
        let alphabet = [0x00, 0x00, 0xff, 0x48, 0x89, 0xe5, 0x41, 0x0f];
        let (mut agree, mut hits) = (0, 0);
        for round in 0..40 {
            let lines: Vec<String> = (0..60)
                .map(|i| format!("S{i}:0:*:{}", random_sig(&mut r, &alphabet)))
                .collect();
            let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
            let (set, errs) = set_from_lines(&refs);
            let loaded: Vec<(u32, Vec<Elem>)> = lines
                .iter()
                .enumerate()
                .filter(|(i, _)| !errs.iter().any(|(e, _)| e == i))
                .map(|(i, l)| (i as u32, parse_ndb_line(l).unwrap().elems))
                .collect();
            let len = 1 + r.below(3000) as usize;
            let data: Vec<u8> = (0..len)
                .map(|_| alphabet[r.below(alphabet.len() as u64) as usize])
                .collect();
            let mut want: Vec<u32> = loaded
                .iter()
                .filter(|(_, e)| brute_force(e, &data))
                .map(|(i, _)| *i)
                .collect();
            want.sort();
            let mut got = set.scan_slice(&data, None).unwrap();
            got.sort();
            assert_eq!(got, want, "round {round}: {lines:?}");
            // The same object scanned in small windows, as from a file.
            let blob = Blob::from_vec(data.clone());
            let chunk = 5 + r.below(60) as usize;
            let mut st = set.start(&data[..data.len().min(parse::TARGET_HEAD)]);
            let mut pos = 0;
            while pos < data.len() {
                let end = (pos + chunk).min(data.len());
                let mut cur = Cursor::windowed(&blob, &data[pos..end], pos as u64, None);
                let last = end == data.len();
                pos += set
                    .scan_window(&data[pos..end], pos as u64, last, &mut cur, &mut st)
                    .unwrap();
                if last {
                    break;
                }
            }
            let mut got_w = st.found.clone();
            got_w.sort();
            assert_eq!(got_w, want, "round {round}, windows of {chunk}");
            agree += loaded.len();
            hits += want.len();
        }
        // The data must exercise both outcomes.
        assert!(hits > 100 && hits < agree, "{hits} of {agree}");
    }

    #[test]
    fn unsupported_kinds_reported() {
        let (_, errs) = set_from_lines(&["A:9:EP+0:41424344", "B:0:*:aa*bb", "C:11:*:4142"]);
        let kinds: Vec<_> = errs.into_iter().map(|(_, e)| e).collect();
        assert_eq!(
            kinds,
            vec![
                NdbLineError::Unsupported("ndb_offset_macho"),
                NdbLineError::Unsupported("ndb_no_anchor"),
                NdbLineError::Unsupported("ndb_target_flash"),
            ]
        );
    }

    #[test]
    fn verifier_reads_outside_the_window() {
        // Signature spans far past the window the automaton saw: the
        // cursor must fetch the rest from the blob.
        let mut data = vec![b'.'; 300_000];
        data[10..18].copy_from_slice(b"ABCDEFGH");
        data[250_000..250_004].copy_from_slice(b"WXYZ");
        let (set, _) = set_from_lines(&["S:0:*:4142434445464748{249000-250000}5758595a"]);
        let blob = Blob::from_vec(data.clone());
        let window = &data[..64];
        let mut cur = Cursor::windowed(&blob, window, 0, None);
        let mut st = set.start(&data[..16]);
        set.scan_window(window, 0, true, &mut cur, &mut st).unwrap();
        assert_eq!(st.found, vec![0]);
    }

    #[test]
    fn deadline_stops_pathological_verification() {
        // Nested bounded jumps over a large zero buffer explode combinatorially.
        let line = "S:0:*:4142{0-5000}00{0-5000}00{0-5000}00{0-5000}ff";
        let mut data = vec![0u8; 30_000];
        data[0..2].copy_from_slice(b"AB");
        let (set, _) = set_from_lines(&[line]);
        let past = Instant::now();
        assert!(matches!(
            set.scan_slice(&data, Some(past)),
            Err(EngineError::Timeout)
        ));
    }
}
