//! Objects embedded in a Windows executable, found by their magic at an
//! offset, as ClamAV's embedded type recognition finds them (`scanraw` in
//! `libclamav/scanners.c`): self-extracting archives (zip, 7z or cab data
//! inside or after the program), installers' payloads (NSIS, InstallShield),
//! AutoIt scripts compiled into their interpreter, and executables inside
//! executables (droppers). [`carve`] also serves
//! OLE2 files, in whose raw bytes ClamAV looks for executables and SFX
//! archives too ([`OLE2_FINDS`]). Each one is a member named `embedded@OFFSET`: the file from
//! that offset to its end (a cab only as far as its header says), which the
//! walker then opens by its magic like any member.
//!
//! As in ClamAV, an embedded object is not searched for embedded objects
//! itself, and an embedded PE is taken only when its headers are sound and
//! what follows it is at most [`MAX_EMBEDDED_PE`] (ClamAV's `MaxEmbeddedPE`).
//! At most [`MAX_EMBEDDED`] objects and [`MAX_EMBEDDED_BYTES`] are taken
//! from one file; the file itself is always scanned whole.
//! Each candidate is checked before it is taken (a zip local header with a
//! known method, a 7z start header with a good CRC, a cab header of format
//! 1.3, a PE header). Corrupt data inside an object found this way is not a
//! problem (chance bytes of the program, which was scanned whole, or data
//! after an archive's end); an encrypted or unsupported member, or a limit,
//! is the file's problem, as in any container.

use super::{find_all, read_at_full};
use crate::walk::{Member, Step, Walker};
use crate::{Problem, WalkError};
use moat_core::Blob;
use std::io::{Read, Seek, SeekFrom};

/// ClamAV's default `MaxEmbeddedPE`: an embedded PE followed by more than
/// this is not scanned as one.
pub(crate) const MAX_EMBEDDED_PE: u64 = 40 << 20;
/// Most embedded objects taken from one file.
const MAX_EMBEDDED: usize = 16;
/// Most bytes of embedded objects taken from one file (each is the rest of
/// the file from its offset, so many near the start of a large file would
/// otherwise copy it many times over).
const MAX_EMBEDDED_BYTES: u64 = 4 * MAX_EMBEDDED_PE;
/// Most candidates of each magic looked at.
const MAX_CANDIDATES: usize = 4096;

const ZIP: &[u8] = b"PK\x03\x04";
const SEVEN_Z: &[u8] = b"7z\xbc\xaf\x27\x1c";
const CAB: &[u8] = b"MSCF\0\0\0\0";
const MZ: &[u8] = b"MZ";
const NSIS: &[u8] = &super::nsis::MAGIC;
const ISHIELD: &[u8] = super::ishield::MAGIC;
const AUTOIT: &[u8] = super::autoit::MAGIC;

/// Each kind and the magic it is found by.
const MAGICS: [(Kind, &[u8]); 7] = [
    (Kind::Zip, ZIP),
    (Kind::SevenZ, SEVEN_Z),
    (Kind::Cab, CAB),
    (Kind::Pe, MZ),
    (Kind::Nsis, NSIS),
    (Kind::InstallShield, ISHIELD),
    (Kind::AutoIt, AUTOIT),
];

/// `MZ` with a PE header where `e_lfanew` points, when the head holds it.
/// Like `cli_peheader`, any non-zero `e_lfanew` will do: packers such as
/// MEW and Upack put the PE header inside the DOS header (at 0x0c, 0x10).
pub(crate) fn is_pe(head: &[u8]) -> bool {
    if !head.starts_with(MZ) || head.len() < 64 {
        return false;
    }
    let at = u32::from_le_bytes([head[60], head[61], head[62], head[63]]) as usize;
    at != 0 && head.get(at..at + 4).is_none_or(|sig| sig == b"PE\0\0")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Kind {
    Zip,
    SevenZ,
    Cab,
    Nsis,
    InstallShield,
    AutoIt,
    Pe,
}

pub(crate) fn walk<E>(
    w: &mut Walker<'_, E>,
    blob: &Blob,
    location: &str,
    depth: u32,
    embedded: bool,
) -> Result<(), WalkError<E>> {
    // A packed program is unpacked wherever it was found, as ClamAV's
    // `cli_scanpe` does for every PE it scans.
    if super::packed::walk(w, blob, location, depth)? == Step::Stop || embedded {
        return Ok(());
    }
    // InstallShield's overlay lists its files; they are members by name, and
    // magics inside them are theirs, not the executable's.
    let entries = overlay_entries(blob).map_err(WalkError::Io)?;
    for (name, at, size) in &entries {
        if w.stopped {
            return Ok(());
        }
        let mut r = blob.reader();
        r.seek(SeekFrom::Start(*at)).map_err(WalkError::Io)?;
        let mut reader = r.take(*size);
        let step = w.member(
            Member {
                reader: &mut reader,
                name,
                stored_size: *size,
                declared_size: Some(*size),
            },
            location,
            depth + 1,
        )?;
        if step == Step::Stop {
            return Ok(());
        }
    }
    // Their data1.hdr and dataN.cab are InstallShield's cabinets.
    if let Some(parts) = super::iscab::Parts::find(&entries) {
        super::iscab::walk(w, blob, location, depth, &parts)?;
    }
    carve(w, blob, location, depth, PE_FINDS, &entries)
}

/// What ClamAV's embedded type recognition looks for in an executable.
const PE_FINDS: &[Kind] = &[
    Kind::Zip,
    Kind::SevenZ,
    Kind::Cab,
    Kind::Pe,
    Kind::Nsis,
    Kind::InstallShield,
    Kind::AutoIt,
];

/// What it looks for in an OLE2 file (Office documents, MSI packages): the
/// SFX archives it looks for in any file, and executables.
pub(crate) const OLE2_FINDS: &[Kind] = &[Kind::Zip, Kind::SevenZ, Kind::Cab, Kind::Pe];

/// What it looks for in any other file that is not itself an archive: SFX
/// archives (a zip appended to an image or a script, the polyglots upload
/// filters miss).
pub(crate) const ANY_FINDS: &[Kind] = &[Kind::Zip, Kind::SevenZ, Kind::Cab];

/// Find the objects of `kinds` embedded in `blob` by their magic, check
/// each, and walk those that pass as members `embedded@OFFSET` (outside
/// the byte ranges `taken` already gave as members).
pub(crate) fn carve<E>(
    w: &mut Walker<'_, E>,
    blob: &Blob,
    location: &str,
    depth: u32,
    kinds: &[Kind],
    taken: &[(String, u64, u64)],
) -> Result<(), WalkError<E>> {
    let found = find_all(
        blob,
        MAGICS.map(|(_, magic)| magic),
        MAGICS.map(|(kind, _)| {
            if kinds.contains(&kind) {
                MAX_CANDIDATES
            } else {
                0
            }
        }),
    )
    .map_err(WalkError::Io)?;
    let mut candidates: Vec<(u64, Kind)> = MAGICS
        .iter()
        .zip(found)
        .flat_map(|(&(kind, _), offsets)| {
            offsets.into_iter().filter_map(move |o| {
                // NSIS's first header starts 4 bytes before its signature.
                let o = if kind == Kind::Nsis {
                    o.checked_sub(4)?
                } else {
                    o
                };
                (o > 0).then_some((o, kind))
            })
        })
        .collect();
    candidates.sort_unstable();
    let covered = |at: u64| {
        taken
            .iter()
            .any(|&(_, start, size)| at >= start && at < start + size)
    };
    let mut taken = 0;
    let mut taken_bytes = 0u64;
    // Archive magics inside an archive already taken are its own members.
    let mut archive_until = 0u64;
    for (at, kind) in candidates {
        if w.stopped || taken == MAX_EMBEDDED {
            break;
        }
        let is_archive = !matches!(kind, Kind::Pe | Kind::AutoIt);
        // An executable is carved even inside a member already given (an
        // InstallShield overlay file), as ClamAV carves it: to the end of
        // the file, so signatures see what follows it too. So is an AutoIt
        // script's data (ClamAV reads it from its header to the end of the
        // file), and nothing after its header is taken for its own.
        if is_archive && (at < archive_until || covered(at)) {
            continue;
        }
        let Some(len) = check(blob, at, kind).map_err(WalkError::Io)? else {
            continue;
        };
        if taken_bytes + len > MAX_EMBEDDED_BYTES {
            tracing::debug!(location, at, "embedded objects' byte budget spent");
            break;
        }
        taken += 1;
        taken_bytes += len;
        if is_archive {
            archive_until = at + len;
        }
        let name = format!("embedded@{at}");
        let mut r = blob.reader();
        r.seek(SeekFrom::Start(at)).map_err(WalkError::Io)?;
        let mut reader = r.take(len);
        let before = w.report.problems.len();
        w.embedded_member = true;
        let step = w.member(
            Member {
                reader: &mut reader,
                name: &name,
                stored_size: len,
                declared_size: None,
            },
            location,
            depth + 1,
        )?;
        // Corrupt data inside an object found by its magic is what carving
        // gives (chance bytes, data after an archive's end), not a problem.
        let own = format!("{location}>{name}");
        let mut i = before;
        while i < w.report.problems.len() {
            let carved = matches!(&w.report.problems[i],
                Problem::Corrupt { location, .. } if location == &own || location.starts_with(&format!("{own}>")));
            if carved {
                w.report.problems.remove(i);
            } else {
                i += 1;
            }
        }
        if step == Step::Stop {
            break;
        }
    }
    Ok(())
}

/// How much of the blob from `at` the candidate takes, if it is one.
fn check(blob: &Blob, at: u64, kind: Kind) -> std::io::Result<Option<u64>> {
    let rest = blob.len() - at;
    // Every check needs at most 64 bytes (a PE's e_lfanew ends there; the
    // PE header is read where it points).
    let mut h = [0u8; 64];
    let n = read_at_full(blob, at, &mut h)?;
    let h = &h[..n];
    let u16_at = |i: usize| u16::from_le_bytes([h[i], h[i + 1]]);
    let u32_at = |i: usize| u32::from_le_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
    Ok(match kind {
        Kind::Zip => {
            // Version needed, a method zip defines, a name of sane length.
            let ok = n >= 30
                && u16_at(4) <= 63
                && matches!(u16_at(8), 0..=9 | 12 | 14 | 93 | 95 | 96 | 97 | 98 | 99)
                && (1..=1024).contains(&u16_at(26));
            ok.then_some(rest)
        }
        Kind::SevenZ => {
            // Major version 0 and the start header's CRC.
            let ok = n >= 32 && h[6] == 0 && crc32fast::hash(&h[12..32]) == u32_at(8);
            ok.then_some(rest)
        }
        Kind::InstallShield => super::ishield::is_ishield(h).then_some(rest),
        Kind::AutoIt => super::autoit::is_autoit(h).then_some(rest),
        Kind::Nsis => super::nsis::declared_size(h)
            .filter(|_| super::nsis::is_nsis(h))
            .map(|size| size.min(rest)),
        Kind::Cab => {
            let size = u64::from(if n >= 12 { u32_at(8) } else { 0 });
            (super::cab::is_cab(h) && size >= 36).then_some(size.min(rest))
        }
        Kind::Pe => {
            if rest > MAX_EMBEDDED_PE || n < 64 {
                return Ok(None);
            }
            let e_lfanew = u64::from(u32_at(60));
            if !(64..=4096).contains(&e_lfanew) {
                return Ok(None);
            }
            let mut fh = [0u8; 24];
            if read_at_full(blob, at + e_lfanew, &mut fh)? < 24 {
                return Ok(None);
            }
            let sections = u16::from_le_bytes([fh[6], fh[7]]);
            let optional = u16::from_le_bytes([fh[20], fh[21]]);
            let ok = fh.starts_with(b"PE\0\0") && (1..=96).contains(&sections) && optional >= 96;
            ok.then_some(rest)
        }
    })
}

/// Where the executable's sections end: the start of its overlay.
fn overlay_start(blob: &Blob) -> std::io::Result<Option<u64>> {
    let mut h = [0u8; 4096];
    let n = read_at_full(blob, 0, &mut h)?;
    let h = &h[..n];
    let u16_at = |i: usize| h.get(i..i + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    let u32_at = |i: usize| {
        h.get(i..i + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let Some(pe) = u32_at(60).map(|v| v as usize) else {
        return Ok(None);
    };
    let (Some(sections), Some(optional)) = (u16_at(pe + 6), u16_at(pe + 20)) else {
        return Ok(None);
    };
    let table = pe + 24 + usize::from(optional);
    let mut end = 0u64;
    for i in 0..usize::from(sections) {
        let s = table + i * 40;
        let (Some(size), Some(at)) = (u32_at(s + 16), u32_at(s + 20)) else {
            return Ok(None);
        };
        end = end.max(u64::from(at) + u64::from(size));
    }
    Ok((end > 0 && end < blob.len()).then_some(end))
}

/// Most files read from an InstallShield overlay, and the longest of its
/// strings (ClamAV's `cli_scanishield` reads at most 2,048 bytes of each).
const MAX_OVERLAY_FILES: usize = 4096;
const MAX_OVERLAY_STRING: usize = 2048;

/// The files of an InstallShield overlay (`libclamav/ishield.c`,
/// `cli_scanishield`): per file a name, a path, a version and a decimal
/// size, each NUL-terminated, then that many bytes. Nothing when the overlay
/// does not start that way; the list ends at the first entry that does not
/// parse.
fn overlay_entries(blob: &Blob) -> std::io::Result<Vec<(String, u64, u64)>> {
    let mut out = Vec::new();
    let Some(mut at) = overlay_start(blob)? else {
        return Ok(out);
    };
    let mut buf = vec![0u8; 4 * MAX_OVERLAY_STRING + 4];
    while out.len() < MAX_OVERLAY_FILES {
        let n = read_at_full(blob, at, &mut buf)?;
        let mut strings = Vec::with_capacity(4);
        let mut pos = 0;
        for _ in 0..4 {
            let rest = &buf[pos..n];
            let Some(len) = rest.iter().take(MAX_OVERLAY_STRING).position(|&b| b == 0) else {
                return Ok(out);
            };
            strings.push(&rest[..len]);
            pos += len + 1;
        }
        let digits = strings[3];
        let size =
            (!digits.is_empty() && digits.len() <= 12 && digits.iter().all(u8::is_ascii_digit))
                .then(|| std::str::from_utf8(digits).ok()?.parse::<u64>().ok())
                .flatten();
        let data = at + pos as u64;
        let (Some(size), false) = (size, strings[0].is_empty()) else {
            return Ok(out);
        };
        if size > blob.len().saturating_sub(data) {
            return Ok(out);
        }
        out.push((String::from_utf8_lossy(strings[0]).into_owned(), data, size));
        at = data + size;
    }
    Ok(out)
}
