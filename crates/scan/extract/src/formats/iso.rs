//! ISO 9660 disk images, read as ClamAV 1.4 reads them
//! (`libclamav/iso9660.c`: `cli_scaniso`, `iso_parse_dir`), so that
//! signatures written against ClamAV's output match here too. Every file
//! the directory tree reaches is a member, named by its path in the image
//! (`DIR/CLAM.EXE`; ClamAV's own names are not visible to signatures).
//!
//! ClamAV recognises an image by its file-type signature
//! `014344303031{2043-2443}4344303031`: a primary volume descriptor
//! (`\x01CD001`) and, 2049 to 2449 bytes after it, the next descriptor's
//! `CD001`; the distance gives the raw sector size, which must leave room
//! for the 16 system sectors before the descriptor. The signature may match
//! anywhere in any file its raw scan types embedded objects in; here it is
//! looked for where an image starts at the file's start: at 32768 (2048-byte
//! sectors) and at the descriptors of raw 2352-byte CD sectors (after their
//! 16-byte mode 1 or 24-byte mode 2 headers).
//!
//! What it does, reproduced (the oracle is clamscan):
//! * The logical block size is the primary descriptor's (512, 1024 or 2048,
//!   else not an image); a block is read whole, from its place in its
//!   sector, and only if the sector count of the image reaches it
//!   (`needblock`).
//! * The tree is walked depth-first from the primary descriptor's root;
//!   then, when a Joliet supplementary descriptor (escape `%/@`, `%/C` or
//!   `%/E`, root not interleaved) is among descriptors 16 to 31, its tree is
//!   walked again: ClamAV scans the files of both trees. A file both trees
//!   (or two entries) point at is handed over once here: the same bytes.
//! * A directory of fewer than 34 bytes is skipped; a directory block
//!   already walked (in this tree) is skipped, which ends directory loops;
//!   more than 1024 directory blocks in a tree end the whole image.
//!   Records: a length of 0 ends the block, a record running past the block
//!   ends the directory, one shorter than 34 bytes is skipped, `.` and `..`
//!   are skipped, an interleaved one (file unit or gap size) is skipped.
//!   Extent = location + extended attribute length; Rock Ridge and
//!   El Torito are not read (names are the ISO 9660 or Joliet ones, `;1`
//!   cut).
//! * A file whose blocks are not all in the image (a truncated image) is
//!   not scanned by ClamAV and ends the walk of that tree; here the bytes
//!   that are there are handed over, reported as corrupt, and the tree's
//!   walk ends too. A file over the size limit is skipped by ClamAV (its
//!   `maxfilesize`); the walker's member size limit reports it here.
//! * ClamAV goes on with the raw scan of the image (archives embedded in
//!   it): so does the walker, outside the files already handed over.
//!
//! Not reproduced: images found at other offsets (inside other data), and
//! ClamAV's 32-bit offset arithmetic on images over 4 GiB (offsets here
//! are 64-bit). Content ClamAV skips (interleaved files, directories
//! outside the image, records past their block) is reported as a problem.

use super::read_at_full;
use crate::WalkError;
use crate::walk::{Member, Step, Walker};
use moat_core::Blob;
use moat_exe::le32;
use std::collections::HashSet;
use std::io::{self, Read};

/// Where the primary volume descriptor is looked for: 16 sectors of 2048
/// bytes, or of raw 2352-byte sectors after a mode 1 or mode 2 header.
const PVD_OFFSETS: [u64; 3] = [16 * 2048, 16 * 2352 + 16, 16 * 2352 + 24];
/// What ClamAV reads of the descriptor: up to the next one's `CD001`.
const PVD_READ: usize = 2448 + 6;
/// A directory record's fixed part.
const RECORD: usize = 33;
/// ClamAV's cap on the directory blocks of one tree.
const MAX_DIR_BLOCKS: usize = 1024;
/// Longest path kept for a member name (in bytes), so that deep trees do
/// not pile up long strings.
const MAX_PATH: usize = 1024;

/// The start of the primary volume descriptor of the image `blob` is, if
/// it is one ClamAV recognises there.
pub(crate) fn find(blob: &Blob) -> io::Result<Option<u64>> {
    for at in PVD_OFFSETS {
        if blob.len() < at + PVD_READ as u64 {
            break;
        }
        let mut magic = [0u8; 6];
        if read_at_full(blob, at, &mut magic)? == 6 && &magic == b"\x01CD001" {
            return Ok(Some(at));
        }
    }
    Ok(None)
}

/// Where the image's blocks are.
#[derive(Clone, Copy)]
struct Geometry {
    base: u64,
    sectsz: u64,
    blocksz: u64,
    len: u64,
}

impl Geometry {
    /// The offset of block `block`, if ClamAV's `needblock` gives it: within
    /// the image's whole sectors (`>`, as ClamAV compares: one block past
    /// them passes if the file holds it), and whole in the file.
    fn block(&self, block: u32) -> Option<u64> {
        let per_sect = 2048 / self.blocksz;
        let sectors = (self.len - self.base) / self.sectsz;
        if u64::from(block) > sectors * per_sect {
            return None;
        }
        let off = self.base
            + (u64::from(block) / per_sect) * self.sectsz
            + (u64::from(block) % per_sect) * self.blocksz;
        (off + self.blocksz <= self.len).then_some(off)
    }

    /// How many of a file's `len` bytes from block `start` are in whole
    /// blocks ClamAV can read (the blocks present form a prefix).
    fn readable(&self, start: u32, len: u64) -> u64 {
        let blocks = len.div_ceil(self.blocksz);
        let (mut lo, mut hi) = (0u64, blocks);
        // The first block missing, by bisection.
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let present = u32::try_from(u64::from(start) + mid)
                .ok()
                .and_then(|b| self.block(b))
                .is_some();
            if present {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        len.min(lo * self.blocksz)
    }
}

/// A file's bytes, block after block.
struct FileReader<'b> {
    blob: &'b Blob,
    geo: Geometry,
    start: u32,
    pos: u64,
    end: u64,
}

impl Read for FileReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos >= self.end || buf.is_empty() {
            return Ok(0);
        }
        let bs = self.geo.blocksz;
        let block = u64::from(self.start) + self.pos / bs;
        let within = self.pos % bs;
        let Some(off) = u32::try_from(block).ok().and_then(|b| self.geo.block(b)) else {
            return Ok(0);
        };
        // Blocks follow each other in the file when sectors are 2048 bytes;
        // else only up to the end of their sector.
        let run = if self.geo.sectsz == 2048 {
            self.end - self.pos
        } else {
            let per_sect = 2048 / bs;
            (per_sect - block % per_sect) * bs - within
        };
        let want = usize::try_from(run.min(self.end - self.pos))
            .unwrap_or(usize::MAX)
            .min(buf.len());
        let n = self.blob.read_at(off + within, &mut buf[..want])?;
        self.pos += n as u64;
        Ok(n)
    }
}

/// How a tree's walk ended.
enum Flow {
    /// Walked (or a file cut short ended it): go on with the next tree.
    Done,
    /// ClamAV's `CL_BREAK` (too many directory blocks), or the walker
    /// stopped: no more trees.
    Stop,
}

/// One directory being read.
struct Dir {
    block: u32,
    len: u32,
    path: String,
    /// The block being read, where in it, how much of the directory is left in it.
    data: Option<Vec<u8>>,
    pos: usize,
    left: usize,
}

impl Dir {
    fn new(block: u32, len: u32, path: String) -> Dir {
        Dir {
            block,
            len,
            path,
            data: None,
            pos: 0,
            left: 0,
        }
    }

    /// On to the next block of the directory.
    fn next_block(&mut self, blocksz: u64) {
        self.data = None;
        self.block = self.block.wrapping_add(1);
        self.len -= u32::try_from(blocksz).map_or(self.len, |b| b.min(self.len));
    }
}

/// The walk of one image.
struct Image<'b> {
    blob: &'b Blob,
    geo: Geometry,
    /// (extent, size) of the files handed over, in either tree.
    done: HashSet<(u32, u32)>,
    /// Byte ranges of the files handed over, for the raw scan.
    taken: Vec<(String, u64, u64)>,
}

/// Walk the image `blob` (its primary descriptor at `pvd`), then the
/// archives embedded in it outside its files.
pub(crate) fn walk<E>(
    w: &mut Walker<'_, E>,
    blob: &Blob,
    location: &str,
    depth: u32,
    pvd: u64,
) -> Result<(), WalkError<E>> {
    let mut privol = vec![0u8; PVD_READ];
    if read_at_full(blob, pvd, &mut privol).map_err(WalkError::Io)? < PVD_READ {
        return Ok(());
    }
    let Some(next) = memchr::memmem::find(&privol[2049..], b"CD001") else {
        // Not ClamAV's type signature: not an image.
        return Ok(());
    };
    let sectsz = (2049 + next - 1) as u64;
    if sectsz * 16 > pvd {
        return Ok(());
    }
    let blocksz = u64::from(le32(&privol, 128) & 0xffff);
    if ![512, 1024, 2048].contains(&blocksz) {
        // "Likely not a cdrom image".
        return Ok(());
    }
    let geo = Geometry {
        base: pvd - sectsz * 16,
        sectsz,
        blocksz,
        len: blob.len(),
    };
    let joliet = find_joliet(blob, geo).map_err(WalkError::Io)?;
    let mut image = Image {
        blob,
        geo,
        done: HashSet::new(),
        taken: Vec::new(),
    };
    for (desc, is_joliet) in std::iter::once((privol, false)).chain(joliet.map(|d| (d, true))) {
        if desc[156 + 26] != 0 || desc[156 + 27] != 0 {
            // ClamAV gives up on the image here, Joliet tree or not.
            w.problem(crate::Problem::Unsupported {
                location: location.to_string(),
                what: "iso9660: interleaved root directory".to_string(),
            });
            break;
        }
        let root = le32(&desc, 156 + 2).wrapping_add(u32::from(desc[156 + 1]));
        let root_len = le32(&desc, 156 + 10);
        match tree(w, &mut image, location, depth, root, root_len, is_joliet)? {
            Flow::Done => {}
            Flow::Stop => break,
        }
    }
    if w.stopped {
        return Ok(());
    }
    super::pe::carve(w, blob, location, depth, super::pe::ANY_FINDS, &image.taken)
}

/// The first Joliet supplementary descriptor among descriptors 16 to 31,
/// as ClamAV looks for it (2048 bytes of it).
fn find_joliet(blob: &Blob, geo: Geometry) -> io::Result<Option<Vec<u8>>> {
    for i in 16..32u64 {
        let mut d = vec![0u8; 2048];
        if read_at_full(blob, geo.base + i * geo.sectsz, &mut d)? < d.len() {
            break; // out of disk
        }
        if d[0] == 0xff || &d[1..6] != b"CD001" {
            break; // not a volume descriptor
        }
        if d[0] != 2 || d[88] != 0x25 || d[89] != 0x2f {
            continue;
        }
        if d[156 + 26] != 0 || d[156 + 27] != 0 {
            continue; // interleaved root: the primary tree only
        }
        if matches!(d[90], 0x40 | 0x43 | 0x45) {
            return Ok(Some(d));
        }
    }
    Ok(None)
}

/// An entry's name: the bytes (UTF-16BE in a Joliet tree, at most 258
/// bytes of it as ClamAV's buffer takes), cut at `;`.
fn entry_name(raw: &[u8], joliet: bool) -> String {
    let name = if joliet {
        let raw = &raw[..raw.len().min(258)];
        char::decode_utf16(
            raw.chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]])),
        )
        .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
        .take_while(|&c| c != '\0')
        .collect::<String>()
    } else {
        let raw = raw.split(|&b| b == 0).next().unwrap_or(&[]);
        String::from_utf8_lossy(raw).into_owned()
    };
    match name.split_once(';') {
        Some((n, _)) => n.to_string(),
        None => name,
    }
}

fn join(parent: &str, name: &str) -> String {
    let mut p = if parent.is_empty() {
        name.to_string()
    } else {
        format!("{parent}/{name}")
    };
    if p.len() > MAX_PATH {
        let mut cut = MAX_PATH;
        while !p.is_char_boundary(cut) {
            cut -= 1;
        }
        p.truncate(cut);
        p.push('…');
    }
    p
}

/// Walk one directory tree from its root (`iso_parse_dir`, its recursion
/// kept on a stack here).
fn tree<E>(
    w: &mut Walker<'_, E>,
    image: &mut Image<'_>,
    location: &str,
    depth: u32,
    root: u32,
    root_len: u32,
    joliet: bool,
) -> Result<Flow, WalkError<E>> {
    let geo = image.geo;
    let mut seen: HashSet<u32> = HashSet::new();
    let mut stack: Vec<Dir> = Vec::new();
    if root_len as usize > RECORD {
        stack.push(Dir::new(root, root_len, String::new()));
    }
    while let Some(dir) = stack.last_mut() {
        if w.stopped {
            return Ok(Flow::Stop);
        }
        let Some(data) = dir.data.as_deref() else {
            if dir.len == 0 {
                stack.pop();
                continue;
            }
            if seen.len() > MAX_DIR_BLOCKS {
                w.corrupt(
                    location,
                    "iso9660: over 1024 directory blocks (ClamAV stops there)",
                );
                return Ok(Flow::Stop);
            }
            if !seen.insert(dir.block) {
                // Walked already: a loop, or blocks shared.
                dir.next_block(geo.blocksz);
                continue;
            }
            let Some(off) = geo.block(dir.block) else {
                w.corrupt(location, "iso9660: directory outside the image");
                stack.pop();
                continue;
            };
            let mut block = vec![0u8; geo.blocksz as usize];
            if read_at_full(image.blob, off, &mut block).map_err(WalkError::Io)? < block.len() {
                stack.pop();
                continue;
            }
            dir.pos = 0;
            dir.left = block.len().min(dir.len as usize);
            dir.data = Some(block);
            continue;
        };
        let size = if dir.left == 0 {
            0
        } else {
            data.get(dir.pos).map_or(0, |&b| usize::from(b))
        };
        if size == 0 {
            // The rest of the block is padding: on to the next one.
            dir.next_block(geo.blocksz);
            continue;
        }
        if size > dir.left {
            // A record across the block's end: ClamAV ends the directory.
            w.corrupt(location, "iso9660: directory record past its block");
            dir.len = 0;
            dir.data = None;
            continue;
        }
        let start = dir.pos;
        let left = dir.left;
        dir.pos += size;
        dir.left -= size;
        if size <= RECORD {
            // Too short: ClamAV skips it.
            continue;
        }
        let mut rec = [0u8; RECORD + 1];
        rec.copy_from_slice(&data[start..start + RECORD + 1]);
        let name_len = usize::from(rec[32]);
        if name_len == 1 && (rec[33] == 0 || rec[33] == 1) {
            continue; // "." and ".."
        }
        // ClamAV clamps the name to the block, not to the record.
        let name_len = name_len.min(left - RECORD);
        let name = entry_name(&data[start + RECORD..start + RECORD + name_len], joliet);
        let extent = le32(&rec, 2).wrapping_add(u32::from(rec[1]));
        let len = le32(&rec, 10);
        let flags = rec[25];
        let interleaved = rec[26] != 0 || rec[27] != 0;
        let path = join(&dir.path, &name);
        if interleaved {
            w.problem(crate::Problem::Unsupported {
                location: format!("{location}>{path}"),
                what: "iso9660: interleaved file".to_string(),
            });
            continue;
        }
        if flags & 2 != 0 {
            if len as usize > RECORD {
                stack.push(Dir::new(extent, len, path));
            }
            continue;
        }
        if !image.done.insert((extent, len)) {
            continue; // handed over already
        }
        let readable = geo.readable(extent, u64::from(len));
        if geo.sectsz == 2048
            && let Some(at) = geo.block(extent)
        {
            image.taken.push((path.clone(), at, readable));
        }
        let mut reader = FileReader {
            blob: image.blob,
            geo,
            start: extent,
            pos: 0,
            end: readable,
        };
        let step = w.member(
            Member {
                reader: &mut reader,
                name: &path,
                stored_size: u64::from(len),
                declared_size: Some(u64::from(len)),
            },
            location,
            depth + 1,
        )?;
        match step {
            Step::Next => {}
            // A file cut short ends the tree, as ClamAV's CL_EFORMAT does.
            Step::ReadFailed => return Ok(Flow::Done),
            Step::Stop => return Ok(Flow::Stop),
        }
    }
    Ok(Flow::Done)
}

#[cfg(test)]
mod tests {
    use crate::{Limits, Problem, WalkReport};

    const S: usize = 2048;

    /// A directory record: extent, size, directory or not, name.
    fn record(extent: u32, size: u32, dir: bool, name: &[u8]) -> Vec<u8> {
        let len = 33 + name.len() + (name.len() + 1) % 2;
        let mut r = vec![0u8; len];
        r[0] = len as u8;
        r[2..6].copy_from_slice(&extent.to_le_bytes());
        r[6..10].copy_from_slice(&extent.to_be_bytes());
        r[10..14].copy_from_slice(&size.to_le_bytes());
        r[14..18].copy_from_slice(&size.to_be_bytes());
        r[25] = if dir { 2 } else { 0 };
        r[32] = name.len() as u8;
        r[33..33 + name.len()].copy_from_slice(name);
        r
    }

    fn put(img: &mut Vec<u8>, sector: usize, bytes: &[u8]) {
        let at = sector * S;
        if img.len() < at + bytes.len() {
            img.resize((at + bytes.len()).div_ceil(S) * S, 0);
        }
        img[at..at + bytes.len()].copy_from_slice(bytes);
    }

    /// A directory block: `.`, `..`, then `entries`.
    fn dir(own: u32, parent: u32, entries: &[Vec<u8>]) -> Vec<u8> {
        let mut d = record(own, S as u32, true, b"\0");
        d.extend(record(parent, S as u32, true, b"\x01"));
        for e in entries {
            d.extend(e);
        }
        d
    }

    /// An image: root (sector 18) holds `A.TXT;1`, `B.EXE;1` and `SUB`
    /// (sector 19), which holds `C.DAT;1` and an entry `LOOP` back to the
    /// root; file data from sector 20 on.
    fn image() -> Vec<u8> {
        let mut img = vec![0u8; 16 * S];
        let mut pvd = vec![0u8; S];
        pvd[0] = 1;
        pvd[1..6].copy_from_slice(b"CD001");
        pvd[6] = 1;
        pvd[128..130].copy_from_slice(&2048u16.to_le_bytes());
        pvd[130..132].copy_from_slice(&2048u16.to_be_bytes());
        pvd[156..156 + 34].copy_from_slice(&record(18, S as u32, true, b"\0"));
        put(&mut img, 16, &pvd);
        put(&mut img, 17, b"\xffCD001\x01");
        let root = dir(
            18,
            18,
            &[
                record(20, 5, false, b"A.TXT;1"),
                record(21, 3000, false, b"B.EXE;1"),
                record(19, S as u32, true, b"SUB"),
            ],
        );
        put(&mut img, 18, &root);
        let sub = dir(
            19,
            18,
            &[
                record(23, 4, false, b"C.DAT;1"),
                record(18, S as u32, true, b"LOOP"),
            ],
        );
        put(&mut img, 19, &sub);
        put(&mut img, 20, b"hello");
        put(&mut img, 21, &vec![b'x'; 3000]);
        put(&mut img, 23, b"cdat");
        img
    }

    /// The walk's report and (location, content) of what it handed over.
    fn run(data: Vec<u8>, limits: &Limits) -> (WalkReport, Vec<(String, Vec<u8>)>) {
        let (report, seen) = crate::tests::run(data, "i.iso", limits);
        (report, seen.into_iter().map(|(l, _, c)| (l, c)).collect())
    }

    #[test]
    fn files_are_members_named_by_path_and_loops_end() {
        let (r, seen) = run(image(), &Limits::default());
        assert!(r.problems.is_empty(), "{:?}", r.problems);
        let want: Vec<(String, Vec<u8>)> = vec![
            ("i.iso>A.TXT".into(), b"hello".to_vec()),
            ("i.iso>B.EXE".into(), vec![b'x'; 3000]),
            ("i.iso>SUB/C.DAT".into(), b"cdat".to_vec()),
        ];
        assert_eq!(seen, want);
    }

    #[test]
    fn joliet_tree_is_walked_too_its_new_files_only() {
        let mut img = image();
        // A Joliet descriptor in sector 17 (no terminator: the search
        // ends at sector 18, the root directory, not a descriptor).
        let mut svd = vec![0u8; S];
        svd[0] = 2;
        svd[1..6].copy_from_slice(b"CD001");
        svd[88..91].copy_from_slice(b"%/E");
        svd[156..156 + 34].copy_from_slice(&record(24, S as u32, true, b"\0"));
        put(&mut img, 17, &svd);
        let name: Vec<u8> = "só.txt;1"
            .encode_utf16()
            .flat_map(|c| c.to_be_bytes())
            .collect();
        let jroot = dir(
            24,
            24,
            &[
                record(20, 5, false, &name),
                record(
                    25,
                    6,
                    false,
                    &"j.bin"
                        .encode_utf16()
                        .flat_map(|c| c.to_be_bytes())
                        .collect::<Vec<_>>(),
                ),
            ],
        );
        put(&mut img, 24, &jroot);
        put(&mut img, 25, b"joliet");
        let (r, seen) = run(img, &Limits::default());
        assert!(r.problems.is_empty(), "{:?}", r.problems);
        let names: Vec<&str> = seen.iter().map(|(l, _)| l.as_str()).collect();
        assert_eq!(
            names,
            [
                "i.iso>A.TXT",
                "i.iso>B.EXE",
                "i.iso>SUB/C.DAT",
                "i.iso>j.bin"
            ]
        );
    }

    #[test]
    fn not_an_image_without_the_next_descriptor_or_a_block_size() {
        let mut img = image();
        img[17 * S + 1] = b'X';
        let (r, seen) = run(img, &Limits::default());
        assert!(r.problems.is_empty() && seen.is_empty());
        let mut img = image();
        img[16 * S + 128] = 0;
        img[16 * S + 129] = 3;
        let (r, seen) = run(img, &Limits::default());
        assert!(r.problems.is_empty() && seen.is_empty());
    }

    #[test]
    fn truncated_files_end_the_tree_and_are_corrupt() {
        let img = image();
        // B.EXE's second block is missing: its first block is handed over,
        // corrupt; SUB is not walked (ClamAV's CL_EFORMAT ends the tree).
        let (r, seen) = run(img[..22 * S + 100].to_vec(), &Limits::default());
        let names: Vec<&str> = seen.iter().map(|(l, _)| l.as_str()).collect();
        assert_eq!(names, ["i.iso>A.TXT", "i.iso>B.EXE"]);
        assert_eq!(seen[1].1.len(), S);
        assert!(
            matches!(&r.problems[..], [Problem::Corrupt { .. }]),
            "{:?}",
            r.problems
        );
    }

    #[test]
    fn limits_hold() {
        let limits = Limits {
            max_members: 2,
            ..Limits::default()
        };
        let (r, seen) = run(image(), &limits);
        assert_eq!(seen.len(), 2);
        assert!(
            r.problems
                .iter()
                .any(|p| matches!(p, Problem::LimitsExceeded { what, .. } if what == "members"))
        );
        let limits = Limits {
            max_member_size: 1000,
            ..Limits::default()
        };
        let (r, seen) = run(image(), &limits);
        assert_eq!(seen.len(), 2, "B.EXE over the limit, the others walked");
        assert!(
            r.problems.iter().any(
                |p| matches!(p, Problem::LimitsExceeded { what, .. } if what == "member_size")
            )
        );
        let limits = Limits {
            max_depth: 0,
            ..Limits::default()
        };
        let (_, seen) = run(image(), &limits);
        assert!(seen.is_empty());
    }

    #[test]
    fn over_1024_directory_blocks_stop_the_image() {
        let mut img = image();
        // SUB spans 1100 blocks, each empty (a 0 record length ends it).
        let len = 1100 * S as u32;
        let root = dir(
            18,
            18,
            &[
                record(30, len, true, b"BIG"),
                record(20, 5, false, b"Z.TXT;1"),
            ],
        );
        put(&mut img, 18, &root);
        put(&mut img, 30 + 1100, b"end");
        let (r, seen) = run(img, &Limits::default());
        assert!(seen.is_empty(), "{seen:?}");
        assert!(
            matches!(&r.problems[..], [Problem::Corrupt { detail, .. }] if detail.contains("1024")),
            "{:?}",
            r.problems
        );
    }

    #[test]
    fn interleaved_entries_are_skipped_and_reported() {
        let mut img = image();
        // A.TXT's file unit size.
        let at = 18 * S + 34 + 34 + 26;
        img[at] = 1;
        let (r, seen) = run(img, &Limits::default());
        assert_eq!(seen.len(), 2);
        assert!(
            matches!(&r.problems[..], [Problem::Unsupported { .. }]),
            "{:?}",
            r.problems
        );
    }

    #[test]
    fn truncations_and_mutations_never_panic() {
        let img = image();
        for cut in 0..img.len() {
            run(img[..cut].to_vec(), &Limits::default());
        }
        let mut x = 0x9e37_79b9u32;
        let mut rnd = move || {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as usize
        };
        for _ in 0..3000 {
            let mut m = img.clone();
            for _ in 0..1 + rnd() % 8 {
                // Mostly the descriptors and directories.
                let at = 16 * S + rnd() % (4 * S);
                m[at] = rnd() as u8;
            }
            run(m, &Limits::default());
        }
    }
}
