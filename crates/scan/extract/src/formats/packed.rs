//! Packed executables, unpacked in the order ClamAV's `cli_scanpe` tries
//! its unpackers ([`mew`](super::mew), [`upack`](super::upack),
//! [`fsg`](super::fsg), [`upx`](super::upx), [`petite`](super::petite), [`spin`](super::spin),
//! [`yc`](super::yc), [`wwpack`](super::wwpack), [`aspack`](super::aspack),
//! [`nspack`](super::nspack)); the unpacked program becomes the member
//! named after its packer (`mew`, `upack`, `fsg`, `upx`, `petite`,
//! `pespin`, `yc`, `wwpack`, `aspack`, `nspack`),
//! which the walk
//! opens as the executable it is (so its embedded objects, and a packer
//! inside, are found in turn). A file no unpacker takes is scanned as it is.
//!
//! The unpacked image is rebuilt in memory (the decompressors copy from
//! anywhere earlier in it, and the headers are rewritten at the end), so
//! it is bounded by [`MAX_UNPACKED`] and the walk's member size limit; a
//! recognised packer whose image would be larger is a limit, never a clean
//! file.

use super::{aspack, fsg, mew, nspack, petite, read_at_full, spin, upack, upx, wwpack, yc};
use crate::WalkError;
use crate::walk::{Member, Step, Walker};
use moat_core::Blob;
use moat_exe::{ExeInfo, PeMode, Src};
use std::io;

/// Largest unpacked image held in memory.
pub(crate) const MAX_UNPACKED: u64 = 128 << 20;

/// What one unpacker made of a file.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// Not this packer, or its data did not decode: try the next one.
    NotPacked,
    /// Where ClamAV stops looking at the file (a UPX layout whose sizes
    /// make no sense): no further unpacker is tried.
    Declined,
    /// A recognised packer whose image would exceed the limit.
    TooLarge(u64),
    /// The unpacked, rebuilt executable, and the size of the packed data.
    Unpacked { image: Vec<u8>, packed: u64 },
}

/// Unpack `blob`, a PE at `location`, if a packer ClamAV unpacks made it.
pub(crate) fn walk<E>(
    w: &mut Walker<'_, E>,
    blob: &Blob,
    location: &str,
    depth: u32,
) -> Result<Step, WalkError<E>> {
    let max = w.limits.max_member_size.min(MAX_UNPACKED);
    let (name, outcome) = unpack(blob, max).map_err(WalkError::Io)?;
    match outcome {
        Outcome::NotPacked | Outcome::Declined => Ok(Step::Next),
        Outcome::TooLarge(size) => {
            tracing::debug!(location, size, name, "unpacked image over the limit");
            w.limit(&format!("{location}>{name}"), "member_size");
            Ok(Step::Next)
        }
        Outcome::Unpacked { image, packed } => {
            let len = image.len() as u64;
            let mut reader = io::Cursor::new(image);
            w.member(
                Member {
                    reader: &mut reader,
                    name,
                    stored_size: packed,
                    declared_size: Some(len),
                },
                location,
                depth + 1,
            )
        }
    }
}

/// One unpacker, ready to run on the file at hand.
type Unpacker<'a> = dyn Fn() -> io::Result<Outcome> + 'a;

/// What `cli_scanpe` has read when it tries the unpackers: the executable's
/// layout, up to 4 KiB at its entry point (what the file lacks reads as
/// zeros, as in ClamAV) and how many of them the file holds, and
/// `e_lfanew`.
pub(crate) struct AtEntry {
    pub(crate) info: ExeInfo,
    pub(crate) epbuff: [u8; 4096],
    pub(crate) epsize: usize,
    pub(crate) e_lfanew: u32,
}

/// [`AtEntry`] of `blob`; `None` when it is no PE with an entry point.
pub(crate) fn at_entry(blob: &Blob) -> io::Result<Option<AtEntry>> {
    let mut head = [0u8; 4096];
    let n = read_at_full(blob, 0, &mut head)?;
    let info = match moat_exe::pe::parse(&Src::new(blob, &head[..n]), PeMode::Scan) {
        Ok(i) => i,
        Err(moat_exe::ExeError::Io(e)) => return Err(e),
        Err(_) => return Ok(None),
    };
    let Some(ep) = info.ep else {
        return Ok(None);
    };
    let mut epbuff = [0u8; 4096];
    let epsize = read_at_full(blob, ep, &mut epbuff)?;
    let e_lfanew = moat_exe::le32(&head[..n], 60);
    Ok(Some(AtEntry {
        info,
        epbuff,
        epsize,
        e_lfanew,
    }))
}

/// Each unpacker in ClamAV's order; the name of the one that decided.
fn unpack(blob: &Blob, max: u64) -> io::Result<(&'static str, Outcome)> {
    let Some(AtEntry {
        info,
        epbuff,
        epsize,
        e_lfanew,
    }) = at_entry(blob)?
    else {
        return Ok(("pe", Outcome::NotPacked));
    };
    let info = &info;
    let epbuff = &epbuff;
    // ClamAV tries MEW with 16 bytes at the entry point, nothing else with
    // less than 168, and only Upack and UPX with less than 200.
    let min_ep = |bytes: usize| epsize >= bytes;
    let unpackers: [(&'static str, usize, &Unpacker<'_>); 10] = [
        ("mew", 16, &|| mew::unpack(blob, info, epbuff, epsize, max)),
        ("upack", 168, &|| {
            upack::unpack(blob, info, epbuff, e_lfanew, max)
        }),
        // FSG 2.0, 1.33, 1.31; when one of them gives up, UPX gets the file.
        ("fsg", 168, &|| fsg::unpack(blob, info, epbuff, max)),
        ("upx", 168, &|| upx::unpack(blob, info, epbuff, max)),
        ("petite", 200, &|| with_petite(blob, info, epbuff, max)),
        ("pespin", 200, &|| with_spin(blob, info, epbuff, max)),
        ("yc", 200, &|| with_yc(blob, info, epbuff, e_lfanew, max)),
        ("wwpack", 200, &|| {
            with_wwpack(blob, info, epbuff, e_lfanew, max)
        }),
        ("aspack", 200, &|| {
            with_aspack(blob, info, epbuff, epsize, max)
        }),
        // Tried last.
        ("nspack", 200, &|| nspack::unpack(blob, info, epbuff, max)),
    ];
    for (name, needs, unpacker) in unpackers {
        if !min_ep(needs) {
            break;
        }
        match unpacker()? {
            Outcome::NotPacked => {}
            o => return Ok((name, o)),
        }
    }
    Ok(("pe", Outcome::NotPacked))
}

/// What an unpacker's result means for the walk.
fn outcome(image: Option<Vec<u8>>, blob: &Blob) -> Outcome {
    match image {
        Some(image) => Outcome::Unpacked {
            image,
            packed: blob.len(),
        },
        None => Outcome::NotPacked,
    }
}

/// The whole file in memory (the unpackers that decrypt it in place), or
/// the outcome that stops them.
fn whole_file(blob: &Blob, max: u64) -> io::Result<Result<Vec<u8>, Outcome>> {
    if blob.len() > max {
        return Ok(Err(Outcome::TooLarge(blob.len())));
    }
    let mut file = vec![0u8; blob.len() as usize];
    if read_at_full(blob, 0, &mut file)? < file.len() {
        return Ok(Err(Outcome::Declined));
    }
    Ok(Ok(file))
}

/// Copy each of `sections` that has raw data to its address in `image`, as
/// `cli_scanpe` lays them out; `false` when one does not fit or read.
fn at_addresses(blob: &Blob, sections: &[moat_exe::Section], image: &mut [u8]) -> io::Result<bool> {
    for s in sections.iter().filter(|s| s.rsz != 0) {
        let (at, len) = (s.rva as usize, s.rsz as usize);
        let Some(dst) = image.get_mut(at..at.saturating_add(len)) else {
            return Ok(false);
        };
        if read_at_full(blob, u64::from(s.raw), dst)? < len {
            return Ok(false);
        }
    }
    Ok(true)
}

fn with_petite(blob: &Blob, info: &ExeInfo, epbuff: &[u8; 4096], max: u64) -> io::Result<Outcome> {
    let Some(version) = petite::recognised(info, epbuff) else {
        return Ok(Outcome::NotPacked);
    };
    let Some((min, top)) = petite::extent(info) else {
        return Ok(Outcome::NotPacked);
    };
    let size = top.wrapping_sub(min);
    if u64::from(size) > max {
        return Ok(Outcome::TooLarge(size.into()));
    }
    let mut read = |at: u64, buf: &mut [u8]| read_at_full(blob, at, buf);
    let Some(image) = petite::layout(info, min, size, &mut read)? else {
        return Ok(Outcome::Declined);
    };
    Ok(outcome(
        petite::unpack(info, version, image, min, max),
        blob,
    ))
}

fn with_spin(blob: &Blob, info: &ExeInfo, epbuff: &[u8; 4096], max: u64) -> io::Result<Outcome> {
    if !spin::recognised(info, epbuff) {
        return Ok(Outcome::NotPacked);
    }
    let file = match whole_file(blob, max)? {
        Ok(f) => f,
        Err(o) => return Ok(o),
    };
    Ok(match spin::unpack(info, file, max) {
        Ok(image) => outcome(image, blob),
        Err(size) => Outcome::TooLarge(size),
    })
}

fn with_yc(
    blob: &Blob,
    info: &ExeInfo,
    epbuff: &[u8; 4096],
    e_lfanew: u32,
    max: u64,
) -> io::Result<Outcome> {
    let Some((ecx, offset)) = yc::recognised(info, epbuff, blob.len()) else {
        return Ok(Outcome::NotPacked);
    };
    let file = match whole_file(blob, max)? {
        Ok(f) => f,
        Err(o) => return Ok(o),
    };
    Ok(outcome(yc::unpack(info, file, e_lfanew, ecx, offset), blob))
}

fn with_wwpack(
    blob: &Blob,
    info: &ExeInfo,
    epbuff: &[u8; 4096],
    e_lfanew: u32,
    max: u64,
) -> io::Result<Outcome> {
    if !wwpack::recognised(info, epbuff) {
        return Ok(Outcome::NotPacked);
    }
    let Some((size, headers)) = wwpack::layout(info) else {
        return Ok(Outcome::NotPacked);
    };
    if u64::from(size) > max {
        return Ok(Outcome::TooLarge(size.into()));
    }
    // The headers, then every section but the packer's at its address.
    let mut image = vec![0u8; size as usize];
    if read_at_full(blob, 0, &mut image[..headers as usize])? < headers as usize {
        return Ok(Outcome::Declined);
    }
    let Some((last, rest)) = info.sections.split_last() else {
        return Ok(Outcome::NotPacked);
    };
    if !at_addresses(blob, rest, &mut image)? {
        return Ok(Outcome::NotPacked);
    }
    let mut packer = vec![0u8; last.rsz as usize];
    if packer.is_empty() || read_at_full(blob, u64::from(last.raw), &mut packer)? < packer.len() {
        return Ok(Outcome::Declined);
    }
    Ok(outcome(
        wwpack::unpack(info, image, &packer, e_lfanew),
        blob,
    ))
}

fn with_aspack(
    blob: &Blob,
    info: &ExeInfo,
    epbuff: &[u8; 4096],
    epsize: usize,
    max: u64,
) -> io::Result<Outcome> {
    if !aspack::recognised(info, blob.len(), epbuff, epsize) {
        return Ok(Outcome::NotPacked);
    }
    let size = aspack::image_size(info);
    if size == 0 {
        return Ok(Outcome::NotPacked);
    }
    if size > max {
        return Ok(Outcome::TooLarge(size));
    }
    let mut image = vec![0u8; size as usize];
    if !at_addresses(blob, &info.sections, &mut image)? {
        return Ok(Outcome::NotPacked);
    }
    Ok(outcome(
        aspack::unpack(info, blob.len(), epbuff, epsize, image, max),
        blob,
    ))
}
