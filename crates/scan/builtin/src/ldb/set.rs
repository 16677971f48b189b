//! [`LdbSet`]: every loaded logical signature, evaluated per object from the
//! body-subsignature matches the [`crate::ndb::NdbSet`] reported.

use super::bytecmp::{ByteCmp, CLAMAV_FIRST_BUFFER};
use super::expr::{Expr, MAX_SUBSIGS};
use super::pcre::{self, PcreSub};
use super::tdb::{Placement, Tdb};
use super::{BodyVariant, CompiledLdb};
use crate::exe::ExeInfo;
use crate::ndb::{CompiledSig, NdbScan, Target};
use moat_core::{Blob, EngineError};
use std::borrow::Cow;
use std::time::Instant;

/// Most PCRE match starts recorded per subsignature and object.
const MAX_PCRE_MATCHES: usize = 4096;

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Lsig {
    name: u32,
    tdb: Tdb,
    expr: Expr,
    pcres: Vec<(u8, PcreSub)>,
    bytecmps: Vec<(u8, ByteCmp)>,
    /// (subsignature, NdbSet signature) of byte-compare references.
    references: Vec<(u8, u32)>,
}

#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
struct BodyRef {
    lsig: u32,
    sub: u8,
    fullword: bool,
    wide: bool,
}

/// Every loaded logical signature.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct LdbSet {
    sigs: Vec<Lsig>,
    /// Body variant `i` is signature `base + i` of the engine's `NdbSet`.
    body: Vec<BodyRef>,
    base: u32,
    /// Signatures to evaluate even without a body match (their expression
    /// or a PCRE trigger holds with every count at zero).
    always: Vec<u32>,
    needs_exe: bool,
    /// (NdbSet signature, most distinct matches worth recording, whether
    /// the last match must still be tracked for a byte compare).
    caps: Vec<(u32, u32, bool)>,
}

impl LdbSet {
    /// Build the set; the body variants are appended to `ndb_sigs` (to be
    /// indexed with the plain body signatures, reporting every match).
    pub fn build(ldbs: Vec<CompiledLdb>, ndb_sigs: &mut Vec<CompiledSig>) -> LdbSet {
        let base = ndb_sigs.len() as u32;
        let zeros = [0u32; MAX_SUBSIGS];
        let mut set = LdbSet {
            base,
            ..LdbSet::default()
        };
        for (li, l) in ldbs.into_iter().enumerate() {
            let li = li as u32;
            if l.expr.matches(&zeros) || l.pcres.iter().any(|(_, p)| p.trigger.matches(&zeros)) {
                set.always.push(li);
            }
            // Counts above every compared number change nothing; a byte
            // compare needs the last match of its reference, which the
            // NdbSet keeps tracking past the cap.
            let cap = l
                .pcres
                .iter()
                .map(|(_, p)| p.trigger.max_count())
                .fold(l.expr.max_count(), u32::max)
                .saturating_add(1);
            let referenced: Vec<u8> = l.bytecmps.iter().map(|(_, b)| b.reference).collect();
            let mut references = Vec::new();
            for BodyVariant {
                sub,
                fullword,
                wide,
                mut sig,
            } in l.body
            {
                sig.all_matches = true;
                let track_last = referenced.contains(&sub);
                if track_last {
                    references.push((sub, ndb_sigs.len() as u32));
                }
                set.caps.push((ndb_sigs.len() as u32, cap, track_last));
                ndb_sigs.push(sig);
                set.body.push(BodyRef {
                    lsig: li,
                    sub,
                    fullword,
                    wide,
                });
            }
            set.needs_exe |= l.tdb.entry_point.is_some() || l.tdb.sections.is_some();
            set.sigs.push(Lsig {
                name: l.name,
                tdb: l.tdb,
                expr: l.expr,
                pcres: l.pcres,
                bytecmps: l.bytecmps,
                references,
            });
        }
        set
    }

    pub fn len(&self) -> usize {
        self.sigs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sigs.is_empty()
    }

    /// Per-object match limits for the body variants in the engine's
    /// `NdbSet` (see [`crate::ndb::NdbSet::limit_hits`]).
    pub fn hit_caps(&self) -> &[(u32, u32, bool)] {
        &self.caps
    }

    /// Whether some signature needs the executable layout (`EntryPoint`,
    /// `NumberOfSections`).
    pub fn needs_exe(&self) -> bool {
        self.needs_exe
    }

    /// Evaluate every signature that can match this object; returns the
    /// name ids of those that do. `hits` are the all-matches hits of the
    /// object's body scan (other signatures' hits are ignored).
    pub fn evaluate(
        &self,
        st: &NdbScan,
        obj: &ObjectView<'_>,
        deadline: Option<Instant>,
    ) -> Result<Vec<u32>, EngineError> {
        let mut found = Vec::new();
        if self.sigs.is_empty() {
            return Ok(found);
        }
        // (lsig, sub, start) of every body match that passes its fullword check.
        let mut subs: Vec<(u32, u8, u64)> = Vec::with_capacity(st.hits.len());
        // The same for the matches that end within ClamAV's first scan
        // buffer, which byte compares read after (see below).
        let mut early: Vec<(u32, u8, u64)> = Vec::new();
        for h in &st.hits {
            let Some(r) = h
                .sig
                .checked_sub(self.base)
                .and_then(|i| self.body.get(i as usize))
            else {
                continue;
            };
            if r.fullword && !obj.fullword(h.start, h.end, r.wide)? {
                continue;
            }
            subs.push((r.lsig, r.sub, h.start));
            if h.end <= CLAMAV_FIRST_BUFFER {
                early.push((r.lsig, r.sub, h.start));
            }
        }
        early.sort_unstable();
        subs.sort_unstable();
        subs.dedup();
        let mut active: Vec<u32> = subs.iter().map(|s| s.0).collect();
        active.extend_from_slice(&self.always);
        active.sort_unstable();
        active.dedup();
        let mut whole: Option<Cow<'_, [u8]>> = None;
        let mut at = 0usize;
        for (n, li) in active.into_iter().enumerate() {
            let Some(l) = self.sigs.get(li as usize) else {
                continue;
            };
            let mut counts = [0u32; MAX_SUBSIGS];
            let mut last: [Option<u64>; MAX_SUBSIGS] = [None; MAX_SUBSIGS];
            while at < subs.len() && subs[at].0 < li {
                at += 1;
            }
            while at < subs.len() && subs[at].0 == li {
                let (_, sub, start) = subs[at];
                let s = sub as usize % MAX_SUBSIGS;
                counts[s] += 1;
                last[s] = Some(start);
                at += 1;
            }
            if !(l.tdb.target.accepts(obj.head) || obj.extra_target == Some(l.tdb.target)) {
                continue;
            }
            if n % 16 == 0 && deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(EngineError::Timeout);
            }
            for (i, bc) in &l.bytecmps {
                let r = bc.reference as usize % MAX_SUBSIGS;
                if counts[r] == 0 {
                    continue;
                }
                // ClamAV evaluates byte compares after each scan buffer
                // with the last match found so far, reading the field from
                // that buffer (`cli_bcomp_scanbuf` in `cli_scan_buff`):
                // only the first buffer's evaluation reads the right bytes
                // (later ones read their own buffer at the file offset), so
                // the base is the last match ending within the first
                // buffer, also past the recorded ones.
                // `early` is sorted: the key's last entry has its last start.
                let key = (li, bc.reference);
                let end = early.partition_point(|&(lsig, sub, _)| (lsig, sub) <= key);
                let recorded = early[..end]
                    .last()
                    .filter(|&&(lsig, sub, _)| (lsig, sub) == key)
                    .map(|&(_, _, start)| start);
                let tracked = l
                    .references
                    .iter()
                    .filter(|(s, _)| *s == bc.reference)
                    .filter_map(|&(_, sig)| st.last_start_in_first_buffer(sig))
                    .max();
                let Some(base) = recorded.max(tracked) else {
                    continue;
                };
                if let Some((pos, len)) = bc.field(base, obj.len()) {
                    let field = obj.read(pos, len)?;
                    if bc.check_field(&field) {
                        counts[*i as usize % MAX_SUBSIGS] += 1;
                    }
                }
            }
            for (i, p) in &l.pcres {
                if !p.trigger.matches(&counts) || obj.len() > pcre::MAX_FILESIZE {
                    continue;
                }
                if whole.is_none() {
                    whole = Some(obj.whole()?);
                }
                let data = whole.as_deref().unwrap_or(&[]);
                let i = *i as usize % MAX_SUBSIGS;
                for s in p.matches(data, MAX_PCRE_MATCHES) {
                    if last[i].is_none_or(|l| s > l) {
                        counts[i] += 1;
                        last[i] = Some(s);
                    }
                }
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    return Err(EngineError::Timeout);
                }
            }
            if l.expr.matches(&counts) && l.tdb.accepts(obj.len(), obj.exe, obj.place) {
                found.push(l.name);
            }
        }
        Ok(found)
    }
}

/// What the evaluator needs to know about the object (or one of its
/// normalised layers, as ClamAV evaluates logical signatures per layer).
pub struct ObjectView<'a> {
    pub blob: &'a Blob,
    /// The first bytes (for target types); empty for a normalised layer.
    pub head: &'a [u8],
    /// A target type accepted besides those `head` implies (a normalised
    /// layer's target, or the extra target of a raw text/mail object).
    pub extra_target: Option<Target>,
    pub exe: Option<&'a ExeInfo>,
    pub place: Placement,
}

impl ObjectView<'_> {
    fn len(&self) -> u64 {
        self.blob.len()
    }

    fn read(&self, pos: u64, len: usize) -> Result<Vec<u8>, EngineError> {
        if let Some(d) = self.blob.as_slice() {
            let s = usize::try_from(pos).unwrap_or(usize::MAX);
            return Ok(d
                .get(s..s.saturating_add(len).min(d.len()))
                .unwrap_or(&[])
                .to_vec());
        }
        let mut buf = vec![0u8; len];
        let mut got = 0;
        while got < len {
            let n = self.blob.read_at(pos + got as u64, &mut buf[got..])?;
            if n == 0 {
                break;
            }
            got += n;
        }
        buf.truncate(got);
        Ok(buf)
    }

    fn byte(&self, pos: Option<u64>) -> Result<Option<u8>, EngineError> {
        match pos {
            Some(p) if p < self.len() => Ok(self.read(p, 1)?.first().copied()),
            _ => Ok(None),
        }
    }

    /// The whole object (PCREs search it all, as ClamAV does).
    fn whole(&self) -> Result<Cow<'_, [u8]>, EngineError> {
        if let Some(d) = self.blob.as_slice() {
            return Ok(Cow::Borrowed(d));
        }
        let len = usize::try_from(self.len()).map_err(|_| {
            EngineError::Other("object too large to search with PCRE subsignatures".into())
        })?;
        let v = self.read(0, len)?;
        if v.len() != len {
            return Err(EngineError::Io(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("content ended at {} of {len} bytes", v.len()),
            )));
        }
        Ok(Cow::Owned(v))
    }

    /// ClamAV's `(W)` markers around a fullword (`::f`) match `start..end`:
    /// no alphanumeric byte (wide: no alphanumeric followed by a zero byte)
    /// directly before or after.
    fn fullword(&self, start: u64, end: u64, wide: bool) -> Result<bool, EngineError> {
        let left_ok = if start == 0 {
            true
        } else if wide {
            if start == 1 {
                true
            } else {
                let a = self.byte(start.checked_sub(2))?;
                let b = self.byte(start.checked_sub(1))?;
                !(a.is_some_and(|c| c.is_ascii_alphanumeric()) && b == Some(0))
            }
        } else {
            !self
                .byte(start.checked_sub(1))?
                .is_some_and(|c| c.is_ascii_alphanumeric())
        };
        if !left_ok {
            return Ok(false);
        }
        if end >= self.len() {
            return Ok(true);
        }
        if wide && end + 1 < self.len() {
            let a = self.byte(Some(end))?;
            let b = self.byte(Some(end + 1))?;
            return Ok(!(a.is_some_and(|c| c.is_ascii_alphanumeric()) && b == Some(0)));
        }
        Ok(!self
            .byte(Some(end))?
            .is_some_and(|c| c.is_ascii_alphanumeric()))
    }
}
