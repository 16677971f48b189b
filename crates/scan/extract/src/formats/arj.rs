//! ARJ archives: every file is a member, stored (method 0), compressed with
//! ARJ's LZ77 and static Huffman blocks (methods 1 to 3, one decoder: the
//! LHarc scheme with a 26,624-byte window) or with its "fastest" method 4
//! (Elias-gamma-like lengths and positions). Decoded against the CRC-32 in
//! each header: a mismatch is corruption. Garbled (password) files are
//! `encrypted`; a file continued in the next volume is `unsupported`.
//! No crate reads ARJ; this follows the format's technical notes.

use super::read_full;
use crate::walk::{Member, Step, Walker};
use crate::{Problem, WalkError};
use moat_core::Blob;
use std::io::{self, BufReader, Read, Seek, SeekFrom};

const ID: [u8; 2] = [0x60, 0xea];
/// Largest basic header ARJ writes.
const MAX_HEADER: usize = 2600;
const FLAG_GARBLED: u8 = 0x01;
const FLAG_VOLUME: u8 = 0x04;
/// Most headers walked (files, directories, labels) in one archive.
const MAX_ENTRIES: usize = 1 << 20;

/// The header ID and a main header (file type 2) of sane size.
pub(crate) fn is_arj(head: &[u8]) -> bool {
    if head.len() < 12 || head[..2] != ID {
        return false;
    }
    let size = usize::from(u16::from_le_bytes([head[2], head[3]]));
    (30..=MAX_HEADER).contains(&size) && head[4] as usize <= size && head[10] == 2
}

struct Header {
    first: Vec<u8>,
    name: String,
}

/// The next header at the reader's position, `None` at the end marker.
fn header(r: &mut impl Read) -> io::Result<Option<Header>> {
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_string());
    let mut id = [0u8; 4];
    r.read_exact(&mut id)?;
    if id[..2] != ID {
        return Err(bad("arj header id missing"));
    }
    let size = usize::from(u16::from_le_bytes([id[2], id[3]]));
    if size == 0 {
        return Ok(None);
    }
    if size > MAX_HEADER {
        return Err(bad("arj header too large"));
    }
    let mut basic = vec![0u8; size];
    r.read_exact(&mut basic)?;
    let mut crc = [0u8; 4];
    r.read_exact(&mut crc)?;
    if crc32fast::hash(&basic) != u32::from_le_bytes(crc) {
        return Err(bad("arj header crc"));
    }
    // Extended headers: a size, the data and its CRC, until a zero size.
    loop {
        let mut ext = [0u8; 2];
        r.read_exact(&mut ext)?;
        let n = u16::from_le_bytes(ext);
        if n == 0 {
            break;
        }
        super::skip(r, u64::from(n) + 4)?;
    }
    let first = usize::from(basic[0]);
    if !(30..=size).contains(&first) {
        return Err(bad("arj first header size"));
    }
    let name_end = basic[first..]
        .iter()
        .position(|&b| b == 0)
        .map_or(size, |i| first + i);
    let name = String::from_utf8_lossy(&basic[first..name_end]).into_owned();
    basic.truncate(first);
    Ok(Some(Header { first: basic, name }))
}

fn le32(b: &[u8], i: usize) -> u32 {
    u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}

pub(crate) fn walk<E>(
    w: &mut Walker<'_, E>,
    blob: &Blob,
    location: &str,
    depth: u32,
) -> Result<(), WalkError<E>> {
    let mut r = BufReader::new(blob.reader());
    // The main header (the archive's own name and comment).
    if let Err(e) = header(&mut r) {
        w.corrupt(location, format!("arj main header: {e}"));
        return Ok(());
    }
    for _ in 0..MAX_ENTRIES {
        if w.stopped {
            return Ok(());
        }
        let h = match header(&mut r) {
            Ok(Some(h)) => h,
            Ok(None) => return Ok(()),
            Err(e) => {
                w.corrupt(location, format!("arj header: {e}"));
                return Ok(());
            }
        };
        let (flags, method, kind) = (h.first[4], h.first[5], h.first[6]);
        let (packed, size, crc) = (
            u64::from(le32(&h.first, 12)),
            u64::from(le32(&h.first, 16)),
            le32(&h.first, 20),
        );
        let data_at = r.stream_position().map_err(WalkError::Io)?;
        if data_at + packed > blob.len() {
            w.corrupt(location, format!("arj {}: data past the end", h.name));
            return Ok(());
        }
        r.seek(SeekFrom::Start(data_at + packed))
            .map_err(WalkError::Io)?;
        // Binary and text files; directories and volume labels have no data.
        if kind > 1 {
            continue;
        }
        let member = format!("{location}>{}", h.name);
        if flags & FLAG_GARBLED != 0 {
            w.problem(Problem::Encrypted { location: member });
            continue;
        }
        if flags & FLAG_VOLUME != 0 {
            w.problem(Problem::Unsupported {
                location: member,
                what: "arj file continued in the next volume".into(),
            });
            continue;
        }
        let mut raw = blob.reader();
        raw.seek(SeekFrom::Start(data_at)).map_err(WalkError::Io)?;
        let input = BufReader::new(raw.take(packed));
        let mut reader: Box<dyn Read> = match method {
            0 => Box::new(input),
            1..=3 => Box::new(Lzh::new(input, size)),
            4 => Box::new(Fastest::new(input, size)),
            m => {
                w.problem(Problem::Unsupported {
                    location: member,
                    what: format!("arj method {m}"),
                });
                continue;
            }
        };
        let mut checked = Crc {
            inner: &mut reader,
            hasher: crc32fast::Hasher::new(),
            want: crc,
            left: size,
        };
        let step = w.member(
            Member {
                reader: &mut checked,
                name: &h.name,
                stored_size: packed,
                declared_size: Some(size),
            },
            location,
            depth + 1,
        )?;
        if step == Step::Stop {
            return Ok(());
        }
    }
    Ok(())
}

/// Passes `size` bytes through and checks their CRC-32 at the end.
struct Crc<'a> {
    inner: &'a mut dyn Read,
    hasher: crc32fast::Hasher,
    want: u32,
    left: u64,
}

impl Read for Crc<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let cap = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..cap])?;
        self.hasher.update(&buf[..n]);
        self.left -= n as u64;
        if self.left == 0 && self.hasher.clone().finalize() != self.want {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "arj crc mismatch",
            ));
        }
        Ok(n)
    }
}

/// ARJ's bit reader: most significant bit first, a 16-bit window.
struct Bits<R> {
    input: R,
    buf: u16,
    sub: u8,
    count: u32,
}

impl<R: Read> Bits<R> {
    fn new(input: R) -> Self {
        let mut b = Bits {
            input,
            buf: 0,
            sub: 0,
            count: 0,
        };
        b.fill(16);
        b
    }

    fn byte(&mut self) -> u8 {
        let mut one = [0u8; 1];
        // Past the end (or on a read error) the input reads as zeros; the
        // CRC and the declared size catch what that breaks.
        match read_full(&mut self.input, &mut one) {
            Ok(1) => one[0],
            _ => 0,
        }
    }

    /// Shifts `n` (at most 16) new bits into the window.
    fn fill(&mut self, n: u32) {
        let mut n = n;
        self.buf = ((u32::from(self.buf) << n) & 0xffff) as u16;
        while n > self.count {
            n -= self.count;
            self.buf |= ((u32::from(self.sub) << n) & 0xffff) as u16;
            self.sub = self.byte();
            self.count = 8;
        }
        self.count -= n;
        self.buf |= u16::from(self.sub) >> self.count;
    }

    fn get(&mut self, n: u32) -> u16 {
        if n == 0 {
            return 0;
        }
        let x = self.buf >> (16 - n);
        self.fill(n);
        x
    }
}

const WINDOW: usize = 26_624;
const THRESHOLD: usize = 3;
const NC: usize = 255 + 256 + 2 - THRESHOLD;
const NP: usize = 17;
const NT: usize = 19;
const NPT: usize = NT;
const CBIT: u32 = 9;
const PBIT: u32 = 5;
const TBIT: u32 = 5;

fn corrupt(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("arj: {what}"))
}

/// Methods 1 to 3: blocks of static Huffman codes for literals and lengths
/// (`c`) and for positions (`p`), the code lengths themselves coded (`t`).
struct Lzh<R> {
    bits: Bits<R>,
    left: u64,
    block: u16,
    c_len: [u8; NC],
    c_table: Vec<u16>,
    pt_len: [u8; NPT],
    pt_table: [u16; 256],
    tree_left: Vec<u16>,
    tree_right: Vec<u16>,
    window: Window,
}

impl<R: Read> Lzh<R> {
    fn new(input: R, size: u64) -> Self {
        Lzh {
            bits: Bits::new(input),
            left: size,
            block: 0,
            c_len: [0; NC],
            c_table: vec![0; 4096],
            pt_len: [0; NPT],
            pt_table: [0; 256],
            tree_left: vec![0; 2 * NC - 1],
            tree_right: vec![0; 2 * NC - 1],
            window: Window::new(),
        }
    }

    /// Walks the tree below a table entry: `mask` is the first bit after the table's.
    fn descend(&self, mut j: usize, limit: usize, mut mask: u16) -> io::Result<usize> {
        let mut steps = 0;
        while j >= limit {
            j = usize::from(if self.bits.buf & mask != 0 {
                self.tree_right[j]
            } else {
                self.tree_left[j]
            });
            mask >>= 1;
            steps += 1;
            if steps > 16 || mask == 0 && j >= limit {
                return Err(corrupt("bad huffman code"));
            }
        }
        Ok(j)
    }

    fn read_pt_len(&mut self, nn: usize, nbit: u32, special: Option<usize>) -> io::Result<()> {
        let n = usize::from(self.bits.get(nbit));
        if n == 0 {
            let c = self.bits.get(nbit);
            self.pt_len[..nn].fill(0);
            self.pt_table.fill(c);
            return Ok(());
        }
        if n > nn {
            return Err(corrupt("too many code lengths"));
        }
        let mut i = 0;
        while i < n {
            let mut c = usize::from(self.bits.buf >> 13);
            if c == 7 {
                let mut mask = 1u16 << 12;
                while mask != 0 && self.bits.buf & mask != 0 {
                    mask >>= 1;
                    c += 1;
                }
                if c > 16 {
                    return Err(corrupt("code length over 16"));
                }
            }
            self.bits.fill(if c < 7 { 3 } else { c as u32 - 3 });
            self.pt_len[i] = c as u8;
            i += 1;
            if Some(i) == special {
                let zeros = usize::from(self.bits.get(2));
                if i + zeros > nn {
                    return Err(corrupt("too many code lengths"));
                }
                self.pt_len[i..i + zeros].fill(0);
                i += zeros;
            }
        }
        self.pt_len[i..nn].fill(0);
        let (len, table) = (self.pt_len, &mut self.pt_table);
        make_table(
            &len[..nn],
            8,
            table,
            &mut self.tree_left,
            &mut self.tree_right,
        )
    }

    fn read_c_len(&mut self) -> io::Result<()> {
        let n = usize::from(self.bits.get(CBIT));
        if n == 0 {
            let c = self.bits.get(CBIT);
            self.c_len.fill(0);
            self.c_table.fill(c);
            return Ok(());
        }
        if n > NC {
            return Err(corrupt("too many literal code lengths"));
        }
        let mut i = 0;
        while i < n {
            let c = self.descend(
                usize::from(self.pt_table[usize::from(self.bits.buf >> 8)]),
                NT,
                1 << 7,
            )?;
            self.bits.fill(u32::from(self.pt_len[c]));
            if c <= 2 {
                let zeros = match c {
                    0 => 1,
                    1 => usize::from(self.bits.get(4)) + 3,
                    _ => usize::from(self.bits.get(CBIT)) + 20,
                };
                if i + zeros > NC {
                    return Err(corrupt("too many literal code lengths"));
                }
                self.c_len[i..i + zeros].fill(0);
                i += zeros;
            } else {
                self.c_len[i] = (c - 2) as u8;
                i += 1;
            }
        }
        self.c_len[i..].fill(0);
        let len = self.c_len;
        make_table(
            &len,
            12,
            &mut self.c_table,
            &mut self.tree_left,
            &mut self.tree_right,
        )
    }

    fn decode_c(&mut self) -> io::Result<usize> {
        if self.block == 0 {
            self.block = self.bits.get(16);
            self.read_pt_len(NT, TBIT, Some(3))?;
            self.read_c_len()?;
            self.read_pt_len(NP, PBIT, None)?;
        }
        self.block = self.block.wrapping_sub(1);
        let j = self.descend(
            usize::from(self.c_table[usize::from(self.bits.buf >> 4)]),
            NC,
            1 << 3,
        )?;
        self.bits.fill(u32::from(self.c_len[j]));
        Ok(j)
    }

    fn decode_p(&mut self) -> io::Result<usize> {
        let j = self.descend(
            usize::from(self.pt_table[usize::from(self.bits.buf >> 8)]),
            NP,
            1 << 7,
        )?;
        self.bits.fill(u32::from(self.pt_len[j]));
        Ok(if j == 0 {
            0
        } else {
            let k = (j - 1) as u32;
            (1usize << k) + usize::from(self.bits.get(k))
        })
    }
}

impl<R: Read> Read for Lzh<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut n = 0;
        while n < buf.len() && self.left > 0 {
            let b = match self.window.copied() {
                Some(b) => b,
                None => {
                    let c = self.decode_c()?;
                    if c > 255 {
                        let len = c - (256 - THRESHOLD);
                        let back = self.decode_p()?;
                        self.window.start_copy(back, len)?;
                        continue;
                    }
                    self.window.put(c as u8);
                    c as u8
                }
            };
            buf[n] = b;
            n += 1;
            self.left -= 1;
        }
        Ok(n)
    }
}

/// The sliding window both decoders copy matches from.
struct Window {
    buf: Vec<u8>,
    pos: usize,
    /// Bytes of a match still to copy, and where from.
    copy: usize,
    from: usize,
}

impl Window {
    fn new() -> Self {
        Window {
            buf: vec![0; WINDOW],
            pos: 0,
            copy: 0,
            from: 0,
        }
    }

    fn put(&mut self, b: u8) {
        self.buf[self.pos] = b;
        self.pos = (self.pos + 1) % WINDOW;
    }

    /// The next byte of the match being copied (also put into the window).
    fn copied(&mut self) -> Option<u8> {
        if self.copy == 0 {
            return None;
        }
        self.copy -= 1;
        let b = self.buf[self.from];
        self.from = (self.from + 1) % WINDOW;
        self.put(b);
        Some(b)
    }

    /// A match of `len` bytes from `back + 1` bytes behind.
    fn start_copy(&mut self, back: usize, len: usize) -> io::Result<()> {
        if back >= WINDOW {
            return Err(corrupt("match before the window"));
        }
        self.from = (self.pos + WINDOW - back - 1) % WINDOW;
        self.copy = len;
        Ok(())
    }
}

/// The canonical Huffman table of `len` for lookups of `bits` bits, codes
/// longer than that continued in the `left`/`right` tree.
fn make_table(
    len: &[u8],
    bits: u32,
    table: &mut [u16],
    left: &mut [u16],
    right: &mut [u16],
) -> io::Result<()> {
    let mut count = [0u32; 17];
    for &l in len {
        if l > 16 {
            return Err(corrupt("code length over 16"));
        }
        count[usize::from(l)] += 1;
    }
    let mut start = [0u32; 18];
    for i in 1..=16 {
        start[i + 1] = start[i] + (count[i] << (16 - i));
    }
    if start[17] != 1 << 16 {
        return Err(corrupt("bad huffman table"));
    }
    let jut = 16 - bits;
    let mut weight = [0u32; 17];
    for i in 1..=16usize {
        if i as u32 <= bits {
            start[i] >>= jut;
            weight[i] = 1 << (bits - i as u32);
        } else {
            weight[i] = 1 << (16 - i);
        }
    }
    let size = 1usize << bits;
    let filled = (start[bits as usize + 1] >> jut) as usize;
    if filled < size {
        table[filled..size].fill(0);
    }
    let mut avail = len.len();
    let mask = 1u32 << (15 - bits);
    for (ch, &l) in len.iter().enumerate() {
        let l = usize::from(l);
        if l == 0 {
            continue;
        }
        let next = start[l] + weight[l];
        if l as u32 <= bits {
            let (a, b) = (start[l] as usize, next as usize);
            if b > size {
                return Err(corrupt("bad huffman table"));
            }
            table[a..b].fill(ch as u16);
        } else {
            let mut k = start[l];
            // Where the code continues: a table slot, then tree nodes.
            let mut slot = Slot::Table((k >> jut) as usize);
            for _ in 0..l - bits as usize {
                let node = match slot {
                    Slot::Table(i) => table.get_mut(i),
                    Slot::Left(i) => left.get_mut(i),
                    Slot::Right(i) => right.get_mut(i),
                }
                .ok_or_else(|| corrupt("bad huffman table"))?;
                if *node == 0 {
                    if avail >= left.len() {
                        return Err(corrupt("bad huffman table"));
                    }
                    left[avail] = 0;
                    right[avail] = 0;
                    let fresh = avail as u16;
                    // Re-borrow: the node may be in `left` or `right` itself.
                    match slot {
                        Slot::Table(i) => table[i] = fresh,
                        Slot::Left(i) => left[i] = fresh,
                        Slot::Right(i) => right[i] = fresh,
                    }
                    avail += 1;
                }
                let at = usize::from(match slot {
                    Slot::Table(i) => table[i],
                    Slot::Left(i) => left[i],
                    Slot::Right(i) => right[i],
                });
                slot = if k & mask != 0 {
                    Slot::Right(at)
                } else {
                    Slot::Left(at)
                };
                k <<= 1;
            }
            match slot {
                Slot::Table(i) => table[i] = ch as u16,
                Slot::Left(i) => left[i] = ch as u16,
                Slot::Right(i) => right[i] = ch as u16,
            }
        }
        start[l] = next;
    }
    Ok(())
}

#[derive(Clone, Copy)]
enum Slot {
    Table(usize),
    Left(usize),
    Right(usize),
}

/// Method 4: a literal flag and length, or a length and a position, each
/// a unary prefix choosing the width of what follows.
struct Fastest<R> {
    bits: Bits<R>,
    left: u64,
    window: Window,
}

impl<R: Read> Fastest<R> {
    fn new(input: R, size: u64) -> Self {
        Fastest {
            bits: Bits::new(input),
            left: size,
            window: Window::new(),
        }
    }

    /// `start`-bit wide steps up to `stop`: the unary prefix picks the
    /// width, the sum of the skipped ranges is added.
    fn number(&mut self, start: u32, stop: u32) -> usize {
        let mut plus = 0usize;
        let mut pwr = 1usize << start;
        let mut width = start;
        while width < stop {
            if self.bits.get(1) == 0 {
                break;
            }
            plus += pwr;
            pwr <<= 1;
            width += 1;
        }
        plus + usize::from(self.bits.get(width))
    }
}

impl<R: Read> Read for Fastest<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut n = 0;
        while n < buf.len() && self.left > 0 {
            let b = match self.window.copied() {
                Some(b) => b,
                None => {
                    let len = self.number(0, 7);
                    if len > 0 {
                        let back = self.number(9, 13);
                        self.window.start_copy(back, len - 1 + THRESHOLD)?;
                        continue;
                    }
                    let b = self.bits.get(8) as u8;
                    self.window.put(b);
                    b
                }
            };
            buf[n] = b;
            n += 1;
            self.left -= 1;
        }
        Ok(n)
    }
}
