//! AutoIt v3 scripts compiled into Windows executables, and `.a3x` files,
//! extracted as ClamAV extracts them (`libclamav/autoit.c`:
//! `cli_scanautoit`, `ea05`, `ea06`), so that signatures written against
//! ClamAV's output match here too.
//!
//! After a 24-byte header (a 16-byte magic, `AU3!EA05` or `AU3!EA06`) come
//! the script and the files it installs (`FileInstall`), each a header (a
//! magic, its encrypted tag and original file name, its sizes) and its
//! data, encrypted (EA05: a Mersenne twister keyed by the sum of the 16
//! bytes after the header; EA06: the generator ClamAV calls `LAME`) and
//! mostly compressed with AutoIt's LZ scheme. An EA06 script, tagged
//! `>>>AUTOIT SCRIPT<<<`, is compiled to tokens: it is decompiled back to
//! text as ClamAV decompiles it (upper case, a space after each token). The
//! files are members named as ClamAV names them: `autoit.001`, `autoit.002`...
//!
//! ClamAV looks for the header in executables (`scanraw` takes
//! `CL_TYPE_AUTOIT` there only when the file is `CL_TYPE_MSEXE`; here
//! [`pe::carve`](super::pe::carve)), and opens a file that starts with it
//! (an `.a3x`, which its file typing calls `CL_TYPE_AUTOIT`).
//!
//! Bounded: every file (compressed, decompressed, decompiled) is at most
//! the walk's member size and [`MAX_FILE`], and a declared size past that
//! or past the ratio limit is a limit, not a silent skip. Every read, index
//! and copy is checked. Where ClamAV reads memory it never wrote (a
//! compressed file shorter than 8 bytes; a match copied from distance 0),
//! this reads nothing (the file is corrupt) or zeros.

use super::read_at_full;
use crate::walk::{Member, Step, Walker};
use crate::{Limits, WalkError};
use moat_core::Blob;
use std::io;

/// The header's first 23 bytes; the 24th is the version, `5` or `6`.
pub(crate) const MAGIC: &[u8; 23] =
    b"\xa3\x48\x4b\xbe\x98\x6c\x4a\xa9\x99\x4c\x53\x0a\x86\xd6\x48\x7dAU3!EA0";
/// The largest file (compressed, decompressed or decompiled) held in memory.
const MAX_FILE: u64 = 128 << 20;
/// Most file headers read from one script's data (empty files included).
const MAX_ENTRIES: usize = 1 << 16;
/// What precedes the first file: the header, then 16 bytes (EA05's key).
const FIRST_FILE: u64 = 24 + 16;

/// Content that starts with an AutoIt header ClamAV extracts (`EA05` or `EA06`).
pub(crate) fn is_autoit(head: &[u8]) -> bool {
    head.starts_with(MAGIC) && matches!(head.get(23), Some(b'5' | b'6'))
}

fn le32(b: &[u8], at: usize) -> Option<u32> {
    let b = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// `N` bytes at `at`, if the blob has them.
fn bytes<const N: usize>(blob: &Blob, at: u64) -> io::Result<Option<[u8; N]>> {
    let mut b = [0u8; N];
    Ok((read_at_full(blob, at, &mut b)? == N).then_some(b))
}

/// The largest a file stored in `stored` bytes may become here, and the
/// limit that says so.
fn bound(l: &Limits, stored: u64) -> (u64, &'static str) {
    let size = l.max_member_size.min(MAX_FILE);
    let ratio = stored
        .max(1)
        .saturating_mul(l.max_ratio)
        .max(l.ratio_min_size);
    if ratio < size {
        (ratio, "ratio")
    } else {
        (size, "member_size")
    }
}

/// One file's header, as `ea05`/`ea06` read it.
enum Next {
    /// No further file (its magic is not there, as after the trailer).
    End,
    /// A header cut short or with a negative size, where ClamAV stops.
    Broken(&'static str),
    File {
        /// EA06's compiled script (its tag is `>>>AUTOIT SCRIPT<<<`).
        script: bool,
        /// 1: compressed.
        comp: u8,
        /// The size of its data, which follows.
        csize: u32,
    },
}

/// The size of a name field: EA05 counts bytes, EA06 UTF-16 units (ClamAV
/// doubles them in 32 bits); ClamAV stops at a negative one.
fn name_len(s: u32, ea06: bool) -> Option<u64> {
    let len = if ea06 { s.wrapping_mul(2) } else { s };
    ((len as i32) >= 0).then_some(u64::from(len))
}

/// Reads the header of the file at `*at` and moves `*at` to its data.
fn header(blob: &Blob, at: &mut u64, ea06: bool) -> io::Result<Next> {
    let (file_magic, tag_key, path_key, size_key) = if ea06 {
        (0x52ca_436b, 0xadbc, 0xf820, 0x87bc)
    } else {
        (0xceb0_6dff, 0x29bc, 0x29ac, 0x45aa)
    };
    // The last file is followed by a trailer (`AU3!EA05`, `AU3!EA06`): data
    // that ends where a header should be was cut short (ClamAV just stops).
    let Some(h) = bytes::<8>(blob, *at)? else {
        return Ok(Next::Broken("data cut short"));
    };
    if le32(&h, 0) != Some(file_magic) {
        return Ok(Next::End);
    }
    let s = le32(&h, 4).unwrap_or(0) ^ tag_key;
    let Some(len) = name_len(s, ea06) else {
        return Ok(Next::Broken("tag size"));
    };
    *at += 8;
    // EA06 tells the script from the files by its tag (ClamAV decrypts tags
    // of fewer than 300 units; EA05's only for its debug output).
    let mut script = false;
    if ea06 && s < 300 {
        let mut tag = vec![0u8; len as usize];
        if read_at_full(blob, *at, &mut tag)? < tag.len() {
            return Ok(Next::Broken("file header cut short"));
        }
        lame_decrypt(&mut tag, (s + 0xb33f) as u16);
        u2a(&mut tag);
        script = s == 19 && tag.starts_with(b">>>AUTOIT SCRIPT<<<");
    }
    *at += len;
    let Some(h) = bytes::<4>(blob, *at)? else {
        return Ok(Next::Broken("file header cut short"));
    };
    let Some(len) = name_len(le32(&h, 0).unwrap_or(0) ^ path_key, ea06) else {
        return Ok(Next::Broken("file name size"));
    };
    *at += 4 + len;
    let Some(h) = bytes::<13>(blob, *at)? else {
        return Ok(Next::Broken("file header cut short"));
    };
    let csize = le32(&h, 1).unwrap_or(0) ^ size_key;
    if (csize as i32) < 0 {
        return Ok(Next::Broken("file size"));
    }
    // Then the declared size, a checksum, and 16 bytes ClamAV skips.
    *at += 13 + 16;
    Ok(Next::File {
        script,
        comp: h[0],
        csize,
    })
}

pub(crate) fn walk<E>(
    w: &mut Walker<'_, E>,
    blob: &Blob,
    location: &str,
    depth: u32,
) -> Result<(), WalkError<E>> {
    let mut head = [0u8; FIRST_FILE as usize];
    let n = read_at_full(blob, 0, &mut head).map_err(WalkError::Io)?;
    let ea06 = match head.get(23) {
        Some(b'5') => false,
        Some(b'6') => true,
        _ => return Ok(()),
    };
    // EA05's data is keyed by the sum of the 16 bytes after the header (which
    // ClamAV needs); EA06 skips them unread.
    if !ea06 && n < head.len() {
        w.corrupt(location, "autoit: data cut short");
        return Ok(());
    }
    let m4sum = head[24..].iter().map(|&b| u32::from(b)).sum::<u32>();
    let mut files = 0u32;
    let mut at = FIRST_FILE;
    for _ in 0..MAX_ENTRIES {
        if w.stopped {
            return Ok(());
        }
        let (script, comp, csize) = match header(blob, &mut at, ea06).map_err(WalkError::Io)? {
            Next::End => return Ok(()),
            Next::Broken(what) => {
                w.corrupt(location, format!("autoit: {what}"));
                return Ok(());
            }
            Next::File {
                script,
                comp,
                csize,
            } => (script, comp, csize),
        };
        if csize == 0 {
            continue;
        }
        let stored = u64::from(csize);
        if stored > w.limits.max_member_size.min(MAX_FILE) {
            // ClamAV skips a file over its size limit and goes on.
            limit(w, location, files + 1, "member_size");
            at += stored;
            continue;
        }
        // ClamAV does not skip this one's data: it is read as the next header.
        if comp == 1 && csize < 4 {
            continue;
        }
        // EA06 numbers every file it reads, EA05 those it extracts.
        if ea06 {
            files += 1;
        }
        if at + stored > blob.len() {
            w.corrupt(location, "autoit: file data cut short");
            return Ok(());
        }
        let mut data = vec![0u8; csize as usize];
        if read_at_full(blob, at, &mut data).map_err(WalkError::Io)? < data.len() {
            w.corrupt(location, "autoit: file data cut short");
            return Ok(());
        }
        at += stored;
        if ea06 {
            lame_decrypt(&mut data, 0x2477);
        } else {
            mt_decrypt(&mut data, m4sum.wrapping_add(0x22af));
        }
        let number = if ea06 { files } else { files + 1 };
        let mut broken = None;
        let mut out = if comp == 1 {
            let magic: &[u8] = if ea06 { b"EA06" } else { b"EA05" };
            if !data.starts_with(magic) {
                // "bad magic or unsupported version": ClamAV goes on.
                w.corrupt(
                    &format!("{location}>autoit.{number:03}"),
                    "autoit: not AutoIt's compression",
                );
                continue;
            }
            // (ClamAV reads past a buffer shorter than 8 bytes here.)
            let Some(declared) = data.get(4..8) else {
                w.corrupt(
                    &format!("{location}>autoit.{number:03}"),
                    "autoit: compressed data cut short",
                );
                continue;
            };
            let declared = u32::from_be_bytes([declared[0], declared[1], declared[2], declared[3]]);
            let size = if declared == 0 { csize } else { declared };
            let (max, what) = bound(w.limits, stored);
            if u64::from(size) > max {
                limit(w, location, number, what);
                continue;
            }
            let (out, complete) = decompress(&data, size as usize, ea06);
            if !complete {
                broken = Some("autoit: decompression failed, partial file");
            }
            out
        } else {
            data
        };
        if out.len() < 4 {
            continue;
        }
        if !ea06 {
            files += 1;
        }
        if script {
            let (max, what) = bound(w.limits, stored);
            match decompile(&mut out, max) {
                Some((text, complete)) => {
                    if !complete {
                        broken = Some("autoit: decompilation failed, partial script");
                    }
                    out = text;
                }
                None => {
                    limit(w, location, files, what);
                    continue;
                }
            }
        }
        let name = format!("autoit.{files:03}");
        if let Some(what) = broken {
            w.corrupt(&format!("{location}>{name}"), what);
        }
        let mut reader = io::Cursor::new(out);
        let step = w.member(
            Member {
                reader: &mut reader,
                name: &name,
                stored_size: stored,
                declared_size: None,
            },
            location,
            depth + 1,
        )?;
        if step == Step::Stop {
            return Ok(());
        }
    }
    w.limit(location, "members");
    Ok(())
}

fn limit<E>(w: &mut Walker<'_, E>, location: &str, number: u32, what: &str) {
    w.limit(&format!("{location}>autoit.{number:03}"), what);
}

/// ClamAV's `u2a`: UTF-16LE text (after a byte order mark, or when at least
/// a quarter of its first 10 units are ASCII) made 8-bit in place by
/// keeping every other byte; anything else is left as it is. The new length.
fn u2a(buf: &mut [u8]) -> usize {
    let len = buf.len();
    if len < 2 {
        return len;
    }
    let (start, len) = if len > 4 && buf[0] == 0xff && buf[1] == 0xfe && buf[2] != 0 {
        (2, len - 2)
    } else {
        let j = len.min(20) & !1;
        let ascii = buf[..j]
            .chunks_exact(2)
            .filter(|u| u[0] != 0 && u[1] == 0)
            .count();
        if ascii * 4 < j {
            return len;
        }
        (0, len)
    };
    for (k, i) in (0..len).step_by(2).enumerate() {
        if let Some(&b) = buf.get(start + i)
            && let Some(d) = buf.get_mut(k)
        {
            *d = b;
        }
    }
    len / 2
}

/// EA05's cipher: the bytes of ClamAV's Mersenne twister (`MT_decrypt`,
/// with its own tempering masks) XORed in.
pub(crate) fn mt_decrypt(buf: &mut [u8], seed: u32) {
    let mut mt = [0u32; 624];
    mt[0] = seed;
    for i in 1..624 {
        let prev = mt[i - 1];
        mt[i] = (i as u32).wrapping_add(0x6c07_8965u32.wrapping_mul((prev >> 30) ^ prev));
    }
    let twist = |a: u32, b: u32| {
        ((((a ^ b) & 0x7fff_fffe) ^ a) >> 1) ^ (0u32.wrapping_sub(b & 1) & 0x9908_b0df)
    };
    let mut next = mt.len();
    for byte in buf {
        if next == mt.len() {
            for i in 0..227 {
                mt[i] = twist(mt[i], mt[i + 1]) ^ mt[i + 397];
            }
            for i in 227..623 {
                mt[i] = twist(mt[i], mt[i + 1]) ^ mt[i - 227];
            }
            mt[623] = twist(mt[623], mt[0]) ^ mt[396];
            next = 0;
        }
        let mut r = mt[next];
        next += 1;
        r ^= r >> 11;
        r ^= (r & 0xff3a_58ad) << 7;
        r ^= (r & 0xffff_df8c) << 15;
        r ^= r >> 18;
        *byte ^= (r >> 1) as u8;
    }
}

/// ClamAV's `LAME` generator (EA06's cipher): a lagged Fibonacci generator
/// whose words become doubles in [0, 1), each byte the integer part of one
/// such double times 256. The arithmetic is exact in `f64`.
struct Lame {
    c0: usize,
    c1: usize,
    grp1: [u32; 17],
}

impl Lame {
    fn new(mut seed: u32) -> Lame {
        let mut grp1 = [0u32; 17];
        for g in &mut grp1 {
            seed = 1u32.wrapping_sub(seed.wrapping_mul(0x53a9_b4fb));
            *g = seed;
        }
        let mut l = Lame {
            c0: 0,
            c1: 10,
            grp1,
        };
        for _ in 0..9 {
            l.fpusht();
        }
        l
    }

    fn fpusht(&mut self) -> f64 {
        let rolled = self.grp1[self.c0]
            .rotate_left(9)
            .wrapping_add(self.grp1[self.c1].rotate_left(13));
        self.grp1[self.c0] = rolled;
        self.c0 = self.c0.checked_sub(1).unwrap_or(16);
        self.c1 = self.c1.checked_sub(1).unwrap_or(16);
        let hi = 0x3ff0_0000 | (rolled >> 12);
        let lo = rolled << 20;
        f64::from_bits(u64::from(hi) << 32 | u64::from(lo)) - 1.0
    }

    fn next_byte(&mut self) -> u8 {
        self.fpusht();
        let x = self.fpusht() * 256.0;
        if (x as i32) < 256 { x as u8 } else { 0xff }
    }
}

/// EA06's cipher (an XOR stream: it encrypts too).
pub(crate) fn lame_decrypt(buf: &mut [u8], seed: u16) {
    let mut l = Lame::new(u32::from(seed));
    for b in buf {
        *b ^= l.next_byte();
    }
}

/// ClamAV's `getbits` over a compressed file: big-endian 16-bit words
/// from byte 8 on, read most significant bit first.
struct Bits<'a> {
    input: &'a [u8],
    at: usize,
    avail: u32,
    map: u32,
    error: bool,
}

impl Bits<'_> {
    fn get(&mut self, size: u32) -> u32 {
        self.map &= 0xffff;
        if size > self.avail {
            let need = ((size - self.avail - 1) / 16 + 1) as usize * 2;
            if need > self.input.len().saturating_sub(self.at) {
                self.error = true;
                return 0;
            }
        }
        for _ in 0..size {
            if self.avail == 0 {
                let (Some(&hi), Some(&lo)) = (self.input.get(self.at), self.input.get(self.at + 1))
                else {
                    self.error = true;
                    return 0;
                };
                let low = (self.map as u16) | u16::from(hi) << 8 | u16::from(lo);
                self.map = (self.map & 0xffff_0000) | u32::from(low);
                self.at += 2;
                self.avail = 16;
            }
            self.map <<= 1;
            self.avail -= 1;
        }
        self.map >> 16
    }
}

/// AutoIt's LZ decompression (ClamAV's loop in `ea05`/`ea06`; EA06 flags a
/// literal with 1, EA05 with 0) into `size` bytes; whether it completed.
/// On a failure the bytes made so far are the file, as in ClamAV.
fn decompress(input: &[u8], size: usize, ea06: bool) -> (Vec<u8>, bool) {
    let mut out = vec![0u8; size];
    let mut cur = 0usize;
    let mut bits = Bits {
        input,
        at: 8,
        avail: 0,
        map: 0,
        error: false,
    };
    while !bits.error && cur < size {
        let flag = bits.get(1);
        if (flag == 0) != ea06 {
            let Some(slot) = out.get_mut(cur) else { break };
            *slot = bits.get(8) as u8;
            cur += 1;
            continue;
        }
        let bb = bits.get(15) as usize;
        let mut addme = 0u32;
        let mut bs = bits.get(2);
        if bs == 3 {
            addme = 3;
            bs = bits.get(3);
            if bs == 7 {
                addme = 10;
                bs = bits.get(5);
                if bs == 31 {
                    addme = 41;
                    bs = bits.get(8);
                    if bs == 255 {
                        addme = 296;
                        loop {
                            bs = bits.get(8);
                            if bs != 255 {
                                break;
                            }
                            addme = addme.wrapping_add(255);
                        }
                    }
                }
            }
        }
        let bs = bs.wrapping_add(3u32.wrapping_add(addme)) as usize;
        if bits.error {
            break;
        }
        // CLI_ISCONTAINED of the target and of the source `bb` bytes back.
        let fits = cur.checked_add(bs).is_some_and(|end| end <= size);
        if bs == 0 || !fits || bb > cur {
            bits.error = true;
            break;
        }
        for _ in 0..bs {
            // From distance 0, ClamAV copies a byte it never wrote: zero here.
            let b = out.get(cur - bb).copied().unwrap_or(0);
            if let Some(slot) = out.get_mut(cur) {
                *slot = b;
            }
            cur += 1;
        }
    }
    out.truncate(cur);
    (out, !bits.error)
}

/// EA06's operators, tokens 0x40 to 0x58.
const OPERATORS: [&str; 25] = [
    ",", "=", ">", "<", "<>", ">=", "<=", "(", ")", "+", "-", "/", "*", "&", "[", "]", "==", "^",
    "+=", "-=", "/=", "*=", "&=", "?", ":",
];
/// What precedes a name token (0x30 to 0x37): `@` a macro, `$` a
/// variable, `.` an object's member, `"` a string.
const PREFIXES: [u8; 8] = [0, 0, b'@', b'$', 0, b'.', b'"', 0];

/// ClamAV's decompiler of an EA06 script (`data`, decompressed: a line
/// count, then tokens), byte for byte; `None` when the text would pass
/// `max` bytes. The text, and whether the tokens ran to their end.
fn decompile(data: &mut [u8], max: u64) -> Option<(Vec<u8>, bool)> {
    let n = data.len();
    let mut lines = le32(data, 0).unwrap_or(0);
    let mut at = 4usize;
    let mut out: Vec<u8> = Vec::with_capacity(n.min(1 << 20));
    // ClamAV's bounds checks, `at >= usize - k`, in that form.
    let short = |at: usize, k: usize| n < k || at >= n - k;
    let mut error = false;
    while !error && lines != 0 && at < n {
        let Some(&op) = data.get(at) else { break };
        at += 1;
        match op {
            0x00 | 0x01 => {
                let table: &[&str] = if op == 0 { &KEYWORDS } else { &FUNCTIONS };
                let word = le32(data, at).and_then(|id| table.get(id as usize));
                match word {
                    Some(word) if !short(at, 4) => {
                        at += 4;
                        out.extend_from_slice(word.as_bytes());
                        out.push(b' ');
                    }
                    _ => error = true,
                }
            }
            0x05 => match le32(data, at) {
                Some(v) if !short(at, 4) => {
                    out.extend_from_slice(format!("0x{v:08x} ").as_bytes());
                    at += 4;
                }
                _ => error = true,
            },
            0x10 | 0x20 => match (le32(data, at), le32(data, at + 4)) {
                (Some(lo), Some(hi)) if !short(at, 8) => {
                    let text = if op == 0x10 {
                        // ClamAV adds the low half as a signed 32-bit value
                        // (`cli_readint32`), sign-extended.
                        let v = (u64::from(hi) << 32).wrapping_add(lo as i32 as u64);
                        format!("0x{v:016x} ")
                    } else {
                        let v = u64::from(hi) << 32 | u64::from(lo);
                        format!("{} ", printf_g(f64::from_bits(v)))
                    };
                    out.extend_from_slice(text.as_bytes());
                    at += 8;
                }
                _ => error = true,
            },
            0x30..=0x37 => {
                let Some(chars) = le32(data, at).filter(|_| !short(at, 4)) else {
                    error = true;
                    continue;
                };
                at += 4;
                let dchars = chars.wrapping_mul(2) as usize;
                // (A count whose double overflows ClamAV's 32 bits makes it
                // grow its buffer past what it allocates: an error there too.)
                if short(at, dchars) || chars >= 0x8000_0000 {
                    error = true;
                    continue;
                }
                let prefix = PREFIXES[usize::from(op - 0x30)];
                if prefix != 0 {
                    out.push(prefix);
                }
                if chars != 0 {
                    let Some(s) = data.get_mut(at..at + dchars) else {
                        error = true;
                        continue;
                    };
                    for unit in s.chunks_exact_mut(2) {
                        unit[0] ^= chars as u8;
                        unit[1] ^= (chars >> 8) as u8;
                    }
                    u2a(s);
                    out.extend_from_slice(&s[..chars as usize]);
                    at += dchars;
                }
                if op == 0x36 {
                    out.push(b'"');
                }
                if op != 0x34 {
                    out.push(b' ');
                }
            }
            0x40..=0x58 => {
                out.extend_from_slice(OPERATORS[usize::from(op - 0x40)].as_bytes());
                out.push(b' ');
            }
            0x7f => {
                lines -= 1;
                out.push(b'\n');
            }
            _ => error = true,
        }
        if out.len() as u64 > max {
            return None;
        }
    }
    Some((out, !error))
}

/// C's `printf("%g", v)` as glibc prints it: six significant digits,
/// trailing zeros dropped, an exponent (at least two digits) below 1e-4 or
/// from 1e6 on. (Rust's formatting rounds exact ties to even, as glibc does.)
pub(crate) fn printf_g(v: f64) -> String {
    let sign = if v.is_sign_negative() { "-" } else { "" };
    if v.is_nan() {
        return format!("{sign}nan");
    }
    if v.is_infinite() {
        return format!("{sign}inf");
    }
    let e = format!("{v:.5e}");
    let (mantissa, exp) = e.split_once('e').unwrap_or((&e, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let trim = |s: &str| -> String {
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s.to_string()
        }
    };
    if (-4..6).contains(&exp) {
        trim(&format!("{v:.*}", (5 - exp) as usize))
    } else {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{}e{sign}{:02}", trim(mantissa), exp.unsigned_abs())
    }
}

/// ClamAV's `autoit_keywords`, by ID.
const KEYWORDS: [&str; 45] = [
    "UNKNOWN_0",
    "AND",
    "OR",
    "NOT",
    "IF",
    "THEN",
    "ELSE",
    "ELSEIF",
    "ENDIF",
    "WHILE",
    "WEND",
    "DO",
    "UNTIL",
    "FOR",
    "NEXT",
    "TO",
    "STEP",
    "IN",
    "EXITLOOP",
    "CONTINUELOOP",
    "SELECT",
    "CASE",
    "ENDSELECT",
    "SWITCH",
    "ENDSWITCH",
    "CONTINUECASE",
    "DIM",
    "REDIM",
    "LOCAL",
    "GLOBAL",
    "CONST",
    "STATIC",
    "FUNC",
    "ENDFUNC",
    "RETURN",
    "EXIT",
    "BYREF",
    "WITH",
    "ENDWITH",
    "TRUE",
    "FALSE",
    "DEFAULT",
    "NULL",
    "VOLATILE",
    "ENUM",
];

/// ClamAV's `autoit_functions`, by ID.
const FUNCTIONS: [&str; 406] = [
    "ABS",
    "ACOS",
    "ADLIBREGISTER",
    "ADLIBUNREGISTER",
    "ASC",
    "ASCW",
    "ASIN",
    "ASSIGN",
    "ATAN",
    "AUTOITSETOPTION",
    "AUTOITWINGETTITLE",
    "AUTOITWINSETTITLE",
    "BEEP",
    "BINARY",
    "BINARYLEN",
    "BINARYMID",
    "BINARYTOSTRING",
    "BITAND",
    "BITNOT",
    "BITOR",
    "BITROTATE",
    "BITSHIFT",
    "BITXOR",
    "BLOCKINPUT",
    "BREAK",
    "CALL",
    "CDTRAY",
    "CEILING",
    "CHR",
    "CHRW",
    "CLIPGET",
    "CLIPPUT",
    "CONSOLEREAD",
    "CONSOLEWRITE",
    "CONSOLEWRITEERROR",
    "CONTROLCLICK",
    "CONTROLCOMMAND",
    "CONTROLDISABLE",
    "CONTROLENABLE",
    "CONTROLFOCUS",
    "CONTROLGETFOCUS",
    "CONTROLGETHANDLE",
    "CONTROLGETPOS",
    "CONTROLGETTEXT",
    "CONTROLHIDE",
    "CONTROLLISTVIEW",
    "CONTROLMOVE",
    "CONTROLSEND",
    "CONTROLSETTEXT",
    "CONTROLSHOW",
    "CONTROLTREEVIEW",
    "COS",
    "DEC",
    "DIRCOPY",
    "DIRCREATE",
    "DIRGETSIZE",
    "DIRMOVE",
    "DIRREMOVE",
    "DLLCALL",
    "DLLCALLADDRESS",
    "DLLCALLBACKFREE",
    "DLLCALLBACKGETPTR",
    "DLLCALLBACKREGISTER",
    "DLLCLOSE",
    "DLLOPEN",
    "DLLSTRUCTCREATE",
    "DLLSTRUCTGETDATA",
    "DLLSTRUCTGETPTR",
    "DLLSTRUCTGETSIZE",
    "DLLSTRUCTSETDATA",
    "DRIVEGETDRIVE",
    "DRIVEGETFILESYSTEM",
    "DRIVEGETLABEL",
    "DRIVEGETSERIAL",
    "DRIVEGETTYPE",
    "DRIVEMAPADD",
    "DRIVEMAPDEL",
    "DRIVEMAPGET",
    "DRIVESETLABEL",
    "DRIVESPACEFREE",
    "DRIVESPACETOTAL",
    "DRIVESTATUS",
    "DUMMYSPEEDTEST",
    "ENVGET",
    "ENVSET",
    "ENVUPDATE",
    "EVAL",
    "EXECUTE",
    "EXP",
    "FILECHANGEDIR",
    "FILECLOSE",
    "FILECOPY",
    "FILECREATENTFSLINK",
    "FILECREATESHORTCUT",
    "FILEDELETE",
    "FILEEXISTS",
    "FILEFINDFIRSTFILE",
    "FILEFINDNEXTFILE",
    "FILEFLUSH",
    "FILEGETATTRIB",
    "FILEGETENCODING",
    "FILEGETLONGNAME",
    "FILEGETPOS",
    "FILEGETSHORTCUT",
    "FILEGETSHORTNAME",
    "FILEGETSIZE",
    "FILEGETTIME",
    "FILEGETVERSION",
    "FILEINSTALL",
    "FILEMOVE",
    "FILEOPEN",
    "FILEOPENDIALOG",
    "FILEREAD",
    "FILEREADLINE",
    "FILEREADTOARRAY",
    "FILERECYCLE",
    "FILERECYCLEEMPTY",
    "FILESAVEDIALOG",
    "FILESELECTFOLDER",
    "FILESETATTRIB",
    "FILESETEND",
    "FILESETPOS",
    "FILESETTIME",
    "FILEWRITE",
    "FILEWRITELINE",
    "FLOOR",
    "FTPSETPROXY",
    "FUNCNAME",
    "GUICREATE",
    "GUICTRLCREATEAVI",
    "GUICTRLCREATEBUTTON",
    "GUICTRLCREATECHECKBOX",
    "GUICTRLCREATECOMBO",
    "GUICTRLCREATECONTEXTMENU",
    "GUICTRLCREATEDATE",
    "GUICTRLCREATEDUMMY",
    "GUICTRLCREATEEDIT",
    "GUICTRLCREATEGRAPHIC",
    "GUICTRLCREATEGROUP",
    "GUICTRLCREATEICON",
    "GUICTRLCREATEINPUT",
    "GUICTRLCREATELABEL",
    "GUICTRLCREATELIST",
    "GUICTRLCREATELISTVIEW",
    "GUICTRLCREATELISTVIEWITEM",
    "GUICTRLCREATEMENU",
    "GUICTRLCREATEMENUITEM",
    "GUICTRLCREATEMONTHCAL",
    "GUICTRLCREATEOBJ",
    "GUICTRLCREATEPIC",
    "GUICTRLCREATEPROGRESS",
    "GUICTRLCREATERADIO",
    "GUICTRLCREATESLIDER",
    "GUICTRLCREATETAB",
    "GUICTRLCREATETABITEM",
    "GUICTRLCREATETREEVIEW",
    "GUICTRLCREATETREEVIEWITEM",
    "GUICTRLCREATEUPDOWN",
    "GUICTRLDELETE",
    "GUICTRLGETHANDLE",
    "GUICTRLGETSTATE",
    "GUICTRLREAD",
    "GUICTRLRECVMSG",
    "GUICTRLREGISTERLISTVIEWSORT",
    "GUICTRLSENDMSG",
    "GUICTRLSENDTODUMMY",
    "GUICTRLSETBKCOLOR",
    "GUICTRLSETCOLOR",
    "GUICTRLSETCURSOR",
    "GUICTRLSETDATA",
    "GUICTRLSETDEFBKCOLOR",
    "GUICTRLSETDEFCOLOR",
    "GUICTRLSETFONT",
    "GUICTRLSETGRAPHIC",
    "GUICTRLSETIMAGE",
    "GUICTRLSETLIMIT",
    "GUICTRLSETONEVENT",
    "GUICTRLSETPOS",
    "GUICTRLSETRESIZING",
    "GUICTRLSETSTATE",
    "GUICTRLSETSTYLE",
    "GUICTRLSETTIP",
    "GUIDELETE",
    "GUIGETCURSORINFO",
    "GUIGETMSG",
    "GUIGETSTYLE",
    "GUIREGISTERMSG",
    "GUISETACCELERATORS",
    "GUISETBKCOLOR",
    "GUISETCOORD",
    "GUISETCURSOR",
    "GUISETFONT",
    "GUISETHELP",
    "GUISETICON",
    "GUISETONEVENT",
    "GUISETSTATE",
    "GUISETSTYLE",
    "GUISTARTGROUP",
    "GUISWITCH",
    "HEX",
    "HOTKEYSET",
    "HTTPSETPROXY",
    "HTTPSETUSERAGENT",
    "HWND",
    "INETCLOSE",
    "INETGET",
    "INETGETINFO",
    "INETGETSIZE",
    "INETREAD",
    "INIDELETE",
    "INIREAD",
    "INIREADSECTION",
    "INIREADSECTIONNAMES",
    "INIRENAMESECTION",
    "INIWRITE",
    "INIWRITESECTION",
    "INPUTBOX",
    "INT",
    "ISADMIN",
    "ISARRAY",
    "ISBINARY",
    "ISBOOL",
    "ISDECLARED",
    "ISDLLSTRUCT",
    "ISFLOAT",
    "ISFUNC",
    "ISHWND",
    "ISINT",
    "ISKEYWORD",
    "ISMAP",
    "ISNUMBER",
    "ISOBJ",
    "ISPTR",
    "ISSTRING",
    "LOG",
    "MAPAPPEND",
    "MAPEXISTS",
    "MAPKEYS",
    "MAPREMOVE",
    "MEMGETSTATS",
    "MOD",
    "MOUSECLICK",
    "MOUSECLICKDRAG",
    "MOUSEDOWN",
    "MOUSEGETCURSOR",
    "MOUSEGETPOS",
    "MOUSEMOVE",
    "MOUSEUP",
    "MOUSEWHEEL",
    "MSGBOX",
    "NUMBER",
    "OBJCREATE",
    "OBJCREATEINTERFACE",
    "OBJEVENT",
    "OBJGET",
    "OBJNAME",
    "ONAUTOITEXITREGISTER",
    "ONAUTOITEXITUNREGISTER",
    "OPT",
    "PING",
    "PIXELCHECKSUM",
    "PIXELGETCOLOR",
    "PIXELSEARCH",
    "PROCESSCLOSE",
    "PROCESSEXISTS",
    "PROCESSGETSTATS",
    "PROCESSLIST",
    "PROCESSSETPRIORITY",
    "PROCESSWAIT",
    "PROCESSWAITCLOSE",
    "PROGRESSOFF",
    "PROGRESSON",
    "PROGRESSSET",
    "PTR",
    "RANDOM",
    "REGDELETE",
    "REGENUMKEY",
    "REGENUMVAL",
    "REGREAD",
    "REGWRITE",
    "ROUND",
    "RUN",
    "RUNAS",
    "RUNASWAIT",
    "RUNWAIT",
    "SEND",
    "SENDKEEPACTIVE",
    "SETERROR",
    "SETEXTENDED",
    "SHELLEXECUTE",
    "SHELLEXECUTEWAIT",
    "SHUTDOWN",
    "SIN",
    "SLEEP",
    "SOUNDPLAY",
    "SOUNDSETWAVEVOLUME",
    "SPLASHIMAGEON",
    "SPLASHOFF",
    "SPLASHTEXTON",
    "SQRT",
    "SRANDOM",
    "STATUSBARGETTEXT",
    "STDERRREAD",
    "STDINWRITE",
    "STDIOCLOSE",
    "STDOUTREAD",
    "STRING",
    "STRINGADDCR",
    "STRINGCOMPARE",
    "STRINGFORMAT",
    "STRINGFROMASCIIARRAY",
    "STRINGINSTR",
    "STRINGISALNUM",
    "STRINGISALPHA",
    "STRINGISASCII",
    "STRINGISDIGIT",
    "STRINGISFLOAT",
    "STRINGISINT",
    "STRINGISLOWER",
    "STRINGISSPACE",
    "STRINGISUPPER",
    "STRINGISXDIGIT",
    "STRINGLEFT",
    "STRINGLEN",
    "STRINGLOWER",
    "STRINGMID",
    "STRINGREGEXP",
    "STRINGREGEXPREPLACE",
    "STRINGREPLACE",
    "STRINGREVERSE",
    "STRINGRIGHT",
    "STRINGSPLIT",
    "STRINGSTRIPCR",
    "STRINGSTRIPWS",
    "STRINGTOASCIIARRAY",
    "STRINGTOBINARY",
    "STRINGTRIMLEFT",
    "STRINGTRIMRIGHT",
    "STRINGUPPER",
    "TAN",
    "TCPACCEPT",
    "TCPCLOSESOCKET",
    "TCPCONNECT",
    "TCPLISTEN",
    "TCPNAMETOIP",
    "TCPRECV",
    "TCPSEND",
    "TCPSHUTDOWN",
    "TCPSTARTUP",
    "TIMERDIFF",
    "TIMERINIT",
    "TOOLTIP",
    "TRAYCREATEITEM",
    "TRAYCREATEMENU",
    "TRAYGETMSG",
    "TRAYITEMDELETE",
    "TRAYITEMGETHANDLE",
    "TRAYITEMGETSTATE",
    "TRAYITEMGETTEXT",
    "TRAYITEMSETONEVENT",
    "TRAYITEMSETSTATE",
    "TRAYITEMSETTEXT",
    "TRAYSETCLICK",
    "TRAYSETICON",
    "TRAYSETONEVENT",
    "TRAYSETPAUSEICON",
    "TRAYSETSTATE",
    "TRAYSETTOOLTIP",
    "TRAYTIP",
    "UBOUND",
    "UDPBIND",
    "UDPCLOSESOCKET",
    "UDPOPEN",
    "UDPRECV",
    "UDPSEND",
    "UDPSHUTDOWN",
    "UDPSTARTUP",
    "VARGETTYPE",
    "WINACTIVATE",
    "WINACTIVE",
    "WINCLOSE",
    "WINEXISTS",
    "WINFLASH",
    "WINGETCARETPOS",
    "WINGETCLASSLIST",
    "WINGETCLIENTSIZE",
    "WINGETHANDLE",
    "WINGETPOS",
    "WINGETPROCESS",
    "WINGETSTATE",
    "WINGETTEXT",
    "WINGETTITLE",
    "WINKILL",
    "WINLIST",
    "WINMENUSELECTITEM",
    "WINMINIMIZEALL",
    "WINMINIMIZEALLUNDO",
    "WINMOVE",
    "WINSETONTOP",
    "WINSETSTATE",
    "WINSETTITLE",
    "WINSETTRANS",
    "WINWAIT",
    "WINWAITACTIVE",
    "WINWAITCLOSE",
    "WINWAITNOTACTIVE",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_print_as_glibc_prints_them_with_percent_g() {
        // printf("%g") of glibc 2.41 for each.
        let cases: &[(f64, &str)] = &[
            (0.0, "0"),
            (-0.0, "-0"),
            (1.0, "1"),
            (0.1, "0.1"),
            (2.5, "2.5"),
            (0.125, "0.125"),
            (1e-4, "0.0001"),
            (9.99995e-5, "9.99995e-05"),
            (1e-5, "1e-05"),
            (0.0001234565, "0.000123457"),
            (123456.0, "123456"),
            (999999.5, "1e+06"),
            (1234565.0, "1.23456e+06"),
            (9999995.0, "1e+07"),
            (1e100, "1e+100"),
            (-2.5e-300, "-2.5e-300"),
            (f64::MAX, "1.79769e+308"),
            (5e-324, "4.94066e-324"),
            (f64::NAN, "nan"),
            (-f64::NAN, "-nan"),
            (f64::INFINITY, "inf"),
            (f64::NEG_INFINITY, "-inf"),
            (100.0, "100"),
            (0.000999999, "0.000999999"),
            (1.0 / 3.0, "0.333333"),
            (123456789012.0, "1.23457e+11"),
        ];
        for &(v, want) in cases {
            assert_eq!(printf_g(v), want, "{v:e}");
        }
    }

    #[test]
    fn u2a_narrows_only_what_looks_like_utf16() {
        let mut b = b"a\0b\0c\0".to_vec();
        assert_eq!(u2a(&mut b), 3);
        assert_eq!(&b[..3], b"abc");
        // A byte order mark is dropped.
        let mut b = b"\xff\xfea\0b\0c\0".to_vec();
        assert_eq!(u2a(&mut b), 3);
        assert_eq!(&b[..3], b"abc");
        // Fewer than a quarter ASCII units: left as it is.
        let mut b = "Привет"
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect::<Vec<_>>();
        let before = b.clone();
        assert_eq!(u2a(&mut b), before.len());
        assert_eq!(b, before);
        let mut b = vec![7u8];
        assert_eq!(u2a(&mut b), 1);
    }

    #[test]
    fn lz_matches_outside_the_output_fail_and_keep_what_was_made() {
        // EA05: a literal 'A' (flag 0), then a match 2 back at offset 1.
        let mut bits = Vec::new();
        let mut push = |v: u32, n: u32| {
            for i in (0..n).rev() {
                bits.push(v >> i & 1);
            }
        };
        push(0, 1);
        push(u32::from(b'A'), 8);
        push(1, 1);
        push(2, 15);
        push(0, 2);
        push(0, 5);
        let mut input = b"EA05\0\0\0\x10".to_vec();
        for word in bits.chunks(16) {
            let w = word.iter().fold(0u16, |w, &b| w << 1 | b as u16) << (16 - word.len());
            input.extend(w.to_be_bytes());
        }
        let (out, complete) = decompress(&input, 16, false);
        assert_eq!((out.as_slice(), complete), (&b"A"[..], false));
        // A distance of 0 copies bytes never written: zeros.
        let input = [b"EA05\0\0\0\x04".as_slice(), &[0x80, 0x00, 0x00, 0x00]].concat();
        let (out, complete) = decompress(&input, 3, false);
        assert_eq!((out.as_slice(), complete), (&[0u8; 3][..], true));
    }

    #[test]
    fn decompiling_stops_at_a_bad_token_and_at_the_size_bound() {
        // Two lines: `IF`, then an unknown function.
        let mut d = 2u32.to_le_bytes().to_vec();
        d.extend([0, 4, 0, 0, 0, 0x7f, 1, 0xff, 0xff, 0, 0, 0x7f]);
        let (text, complete) = decompile(&mut d.clone(), 1 << 20).unwrap();
        assert_eq!((text.as_slice(), complete), (&b"IF \n"[..], false));
        assert!(decompile(&mut d, 2).is_none());
        // A string whose size doubles past 32 bits, and one past the end.
        for chars in [0x8000_0001u32, 50] {
            let mut d = 1u32.to_le_bytes().to_vec();
            d.push(0x36);
            d.extend(chars.to_le_bytes());
            d.extend([0u8; 8]);
            assert_eq!(decompile(&mut d, 1 << 20), Some((Vec::new(), false)));
        }
    }
}
