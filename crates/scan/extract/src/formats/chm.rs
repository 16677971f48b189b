//! Compiled HTML Help (`.chm`, the ITSF format): every file of the help
//! file is a member (its pages and scripts, and whatever else was compiled
//! in). Files live in an uncompressed section or in the LZX-compressed
//! "MSCompressed" section, whose 32 KiB frames are found through the reset
//! table and decoded once, in order, with the decoder reset where the
//! control data says; files are cut from that stream in offset order, as
//! cabinet folders are. The storage's own streams (`::DataSpace/...`) are
//! not members: their content is what the members are.

use super::{Cut, Framed, Frames, cut_members, read_at_full};
use crate::WalkError;
use crate::walk::{Member, Step, Walker};
use moat_core::Blob;
use std::io::{self, Read};

const ITSF_HEADER: usize = 0x60;
const FRAME: u64 = 0x8000;
/// Most directory chunks and entries read.
const MAX_CHUNKS: u64 = 1 << 16;
const MAX_ENTRIES: usize = 1 << 20;
/// Largest compressed frame accepted (a 32 KiB frame that did not compress
/// is a little over 32 KiB).
const MAX_FRAME_IN: u64 = 1 << 20;
const CONTENT: &str = "::DataSpace/Storage/MSCompressed/Content";
const CONTROL: &str = "::DataSpace/Storage/MSCompressed/ControlData";
const RESET_TABLE: &str = "::DataSpace/Storage/MSCompressed/Transform/{7FC28940-9D31-11D0-9B27-00A0C91E9C7C}/InstanceData/ResetTable";

/// `ITSF`, version 2 or 3.
pub(crate) fn is_chm(head: &[u8]) -> bool {
    head.len() >= 0x58
        && head.starts_with(b"ITSF")
        && matches!(head[4], 2 | 3)
        && head[5..8] == [0; 3]
}

struct Entry {
    name: String,
    section: u64,
    offset: u64,
    length: u64,
}

fn u32_at(b: &[u8], i: usize) -> u32 {
    u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}

fn u64_at(b: &[u8], i: usize) -> u64 {
    u64::from_le_bytes([
        b[i],
        b[i + 1],
        b[i + 2],
        b[i + 3],
        b[i + 4],
        b[i + 5],
        b[i + 6],
        b[i + 7],
    ])
}

fn bad(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("chm: {what}"))
}

/// A 7-bits-per-byte number, most significant group first.
fn encint(b: &[u8], i: &mut usize) -> io::Result<u64> {
    let mut v = 0u64;
    for _ in 0..9 {
        let c = *b.get(*i).ok_or_else(|| bad("entry past its chunk"))?;
        *i += 1;
        v = v << 7 | u64::from(c & 0x7f);
        if c & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(bad("number too long"))
}

/// The directory's entries and where section 0's content starts.
fn directory(blob: &Blob) -> io::Result<(Vec<Entry>, u64)> {
    let mut h = [0u8; ITSF_HEADER];
    let n = read_at_full(blob, 0, &mut h)?;
    if n < 0x58 {
        return Err(bad("header truncated"));
    }
    let header_len = u32_at(&h, 8) as usize;
    let (dir_at, dir_len) = (u64_at(&h, 0x48), u64_at(&h, 0x50));
    let content = if u32_at(&h, 4) >= 3 && header_len >= ITSF_HEADER && n >= ITSF_HEADER {
        u64_at(&h, 0x58)
    } else {
        dir_at.saturating_add(dir_len)
    };
    let mut itsp = [0u8; 0x54];
    if read_at_full(blob, dir_at, &mut itsp)? < itsp.len() || !itsp.starts_with(b"ITSP") {
        return Err(bad("directory header"));
    }
    let itsp_len = u64::from(u32_at(&itsp, 8));
    let chunk = u64::from(u32_at(&itsp, 16));
    let chunks = u64::from(u32_at(&itsp, 44));
    if !(64..=1 << 16).contains(&chunk) || chunks > MAX_CHUNKS {
        return Err(bad("directory chunk size"));
    }
    let mut entries = Vec::new();
    let mut buf = vec![0u8; chunk as usize];
    for c in 0..chunks {
        let at = dir_at.saturating_add(itsp_len).saturating_add(c * chunk);
        if read_at_full(blob, at, &mut buf)? < buf.len() {
            return Err(bad("directory truncated"));
        }
        // Index chunks (PMGI) only point into listing chunks (PMGL).
        if !buf.starts_with(b"PMGL") {
            continue;
        }
        let free = u64::from(u32_at(&buf, 4));
        let end = chunk.saturating_sub(free) as usize;
        let mut i = 20;
        while i < end {
            let len = encint(&buf, &mut i)? as usize;
            let name = buf
                .get(i..i.saturating_add(len))
                .ok_or_else(|| bad("entry name past its chunk"))?;
            let name = String::from_utf8_lossy(name).into_owned();
            i += len;
            let section = encint(&buf, &mut i)?;
            let offset = encint(&buf, &mut i)?;
            let length = encint(&buf, &mut i)?;
            entries.push(Entry {
                name,
                section,
                offset,
                length,
            });
            if entries.len() > MAX_ENTRIES {
                return Err(bad("too many entries"));
            }
        }
    }
    Ok((entries, content))
}

fn small(blob: &Blob, content: u64, e: &Entry, max: u64) -> io::Result<Vec<u8>> {
    if e.section != 0 || e.length > max {
        return Err(bad("storage stream"));
    }
    let mut v = vec![0u8; e.length as usize];
    if read_at_full(blob, content.saturating_add(e.offset), &mut v)? < v.len() {
        return Err(bad("storage stream truncated"));
    }
    Ok(v)
}

pub(crate) fn walk<E>(
    w: &mut Walker<'_, E>,
    blob: &Blob,
    location: &str,
    depth: u32,
) -> Result<(), WalkError<E>> {
    let (entries, content) = match directory(blob) {
        Ok(d) => d,
        Err(e) => {
            w.corrupt(location, e);
            return Ok(());
        }
    };
    let files = |section: u64| {
        let mut v: Vec<&Entry> = entries
            .iter()
            .filter(|e| e.section == section && e.length > 0)
            .filter(|e| !e.name.starts_with("::") && !e.name.ends_with('/'))
            .collect();
        v.sort_by_key(|e| e.offset);
        v
    };
    for e in files(0) {
        if w.stopped {
            return Ok(());
        }
        let at = content.saturating_add(e.offset);
        if at.saturating_add(e.length) > blob.len() {
            w.corrupt(
                &format!("{location}>{}", e.name),
                "past the end of the file",
            );
            continue;
        }
        let mut r = blob.reader();
        io::Seek::seek(&mut r, io::SeekFrom::Start(at)).map_err(WalkError::Io)?;
        let mut member = r.take(e.length);
        let step = w.member(
            Member {
                reader: &mut member,
                name: member_name(e),
                stored_size: e.length,
                declared_size: Some(e.length),
            },
            location,
            depth + 1,
        )?;
        if step == Step::Stop {
            return Ok(());
        }
    }
    let cuts: Vec<Cut<'_>> = files(1)
        .into_iter()
        .map(|e| Cut {
            offset: e.offset,
            length: e.length,
            name: member_name(e),
        })
        .collect();
    let open = || Section1::open(blob, content, &entries);
    let mut skipped = 0;
    cut_members(w, location, depth, &cuts, &mut skipped, open, |r| {
        r.src.stored
    })?;
    Ok(())
}

/// The member name of an entry: its path without the leading `/`.
fn member_name(e: &Entry) -> &str {
    e.name.strip_prefix('/').unwrap_or(&e.name)
}

/// The LZX-compressed section, frame by frame.
struct Section1 {
    blob: Blob,
    /// Where the compressed stream starts in the file, and its length.
    at: u64,
    len: u64,
    /// Compressed offset of each frame.
    frames: Vec<u64>,
    uncompressed: u64,
    frames_per_reset: u64,
    window_bits: u32,
    lzx: Option<Box<lzxd::Lzxd>>,
    next: usize,
    data: Vec<u8>,
    /// The compressed size, for the ratio check.
    stored: u64,
}

impl Section1 {
    fn open(blob: &Blob, content: u64, entries: &[Entry]) -> io::Result<Framed<Section1>> {
        let find = |name: &str| {
            entries
                .iter()
                .find(|e| e.name == name)
                .ok_or_else(|| bad("compressed section storage missing"))
        };
        let stream = find(CONTENT)?;
        let control = small(blob, content, find(CONTROL)?, 64)?;
        let table = small(blob, content, find(RESET_TABLE)?, 1 << 24)?;
        if control.len() < 24 || &control[4..8] != b"LZXC" || table.len() < 0x28 {
            return Err(bad("compressed section control data"));
        }
        let version = u32_at(&control, 8);
        let (mut reset, mut window) = (
            u64::from(u32_at(&control, 12)),
            u64::from(u32_at(&control, 16)),
        );
        if version == 2 {
            reset = reset.saturating_mul(FRAME);
            window = window.saturating_mul(FRAME);
        }
        if !window.is_power_of_two() || reset == 0 || !reset.is_multiple_of(FRAME) {
            return Err(bad("compressed section window or reset interval"));
        }
        let window_bits = window.trailing_zeros();
        let count = u64::from(u32_at(&table, 4));
        let entry = u64::from(u32_at(&table, 8));
        let table_at = u64::from(u32_at(&table, 12));
        let uncompressed = u64_at(&table, 16);
        let block = u64_at(&table, 32);
        if block != FRAME
            || entry != 8
            || table_at.saturating_add(count.saturating_mul(8)) > table.len() as u64
        {
            return Err(bad("reset table"));
        }
        let frames: Vec<u64> = (0..count)
            .map(|i| u64_at(&table, (table_at + i * 8) as usize))
            .collect();
        let at = content.saturating_add(stream.offset);
        if at.saturating_add(stream.length) > blob.len() {
            return Err(bad("compressed section past the end of the file"));
        }
        Ok(Framed::new(Section1 {
            blob: blob.clone(),
            at,
            len: stream.length,
            frames,
            uncompressed,
            frames_per_reset: reset / FRAME,
            window_bits,
            lzx: None,
            next: 0,
            data: Vec::new(),
            stored: stream.length,
        }))
    }
}

impl Frames for Section1 {
    fn next_frame(&mut self, out: &mut Vec<u8>) -> io::Result<bool> {
        let i = self.next as u64;
        if i * FRAME >= self.uncompressed || self.next >= self.frames.len() {
            return Ok(false);
        }
        let start = self.frames[self.next];
        let end = self.frames.get(self.next + 1).copied().unwrap_or(self.len);
        if end < start || end > self.len || end - start > MAX_FRAME_IN {
            return Err(bad("frame offsets"));
        }
        if i.is_multiple_of(self.frames_per_reset) || self.lzx.is_none() {
            self.lzx =
                Some(super::lzx::decoder(self.window_bits).ok_or_else(|| bad("window size"))?);
        }
        self.data.resize((end - start) as usize, 0);
        if read_at_full(&self.blob, self.at + start, &mut self.data)? < self.data.len() {
            return Err(bad("compressed section truncated"));
        }
        let size = (self.uncompressed - i * FRAME).min(FRAME) as usize;
        let Some(lzx) = self.lzx.as_mut() else {
            return Ok(false);
        };
        super::lzx::frame(lzx, &self.data, FRAME as usize, out)?;
        out.truncate(size);
        self.next += 1;
        Ok(true)
    }
}
