//! FSG-packed executables made at test time (shared by `formats::fsg`'s
//! unit tests and the clamscan oracle): an encoder for `cli_unfsg`'s
//! aPLib-like format, written from the decoder, and the three layouts
//! `cli_scanpe` recognises (FSG 2.0, 1.33, 1.31), with just the stub bytes
//! ClamAV reads (the rest of each stub is `nop`s: nothing runs them).
#![allow(dead_code, unused_imports)]

/// The empty section's address (the image's first section).
pub const IMG_RVA: u32 = 0x1000;

// Included by both builders, which a test crate may both include.
#[allow(clippy::duplicate_mod)]
#[path = "pe32.rs"]
mod pe32;
use pe32::put32;
pub use pe32::{BASE, Sect};

/// Tag bits, eight to a byte, most significant first, each tag byte placed
/// where the decoder fetches it; data bytes in between.
struct Enc {
    out: Vec<u8>,
    tag: usize,
    left: u32,
}

impl Enc {
    fn bit(&mut self, b: bool) {
        if self.left == 0 {
            self.tag = self.out.len();
            self.out.push(0);
            self.left = 8;
        }
        self.left -= 1;
        if b {
            self.out[self.tag] |= 1 << self.left;
        }
    }

    fn bits(&mut self, v: u32, n: u32) {
        for i in (0..n).rev() {
            self.bit(v >> i & 1 == 1);
        }
    }

    /// `v = 1; do { v = 2v + bit } while (bit)`, for `v >= 2`.
    fn gamma(&mut self, v: u32) {
        let top = 31 - v.leading_zeros();
        for i in (0..top).rev() {
            self.bit(v >> i & 1 == 1);
            self.bit(i != 0);
        }
    }
}

/// What `cli_unfsg` adds to a match's length for its distance.
fn adjust(dist: usize) -> usize {
    usize::from(dist >= 0x7d00) + usize::from(dist >= 0x500) + 2 * usize::from(dist <= 0x7f)
}

/// Greedy LZ77 in `cli_unfsg`'s grammar, using every kind of code
/// (literal, the 4-bit short distance and zero byte, the 7-bit distance,
/// the gamma-coded distance and the repeated one), ended by its marker.
pub fn compress(data: &[u8]) -> Vec<u8> {
    let mut e = Enc {
        out: vec![data[0]],
        tag: 0,
        left: 0,
    };
    let (mut lostbit, mut oldback) = (true, 0usize);
    let mut pos = 1;
    while pos < data.len() {
        let len_at = |dist: usize| {
            let mut l = 0;
            while pos + l < data.len() && l < 255 && data[pos + l] == data[pos + l - dist] {
                l += 1;
            }
            l
        };
        let (mut best, mut dist) = (0, 0);
        for d in 1..=pos.min(0x2000) {
            let l = len_at(d);
            if l > best {
                (best, dist) = (l, d);
            }
        }
        let rep = if lostbit && oldback != 0 && oldback <= pos {
            len_at(oldback)
        } else {
            0
        };
        if rep >= 2 && rep + 1 >= best {
            // 10, gamma 2 (with `lostbit`: the last distance), length.
            e.bit(true);
            e.bit(false);
            e.gamma(2);
            e.gamma(rep as u32);
            lostbit = false;
            pos += rep;
        } else if best >= 2 && dist <= 0x7f && best <= 3 {
            e.bits(0b110, 3);
            e.out.push((dist << 1 | (best - 2)) as u8);
            (oldback, lostbit) = (dist, false);
            pos += best;
        } else if best >= 2 + adjust(dist) && best >= 4 {
            e.bit(true);
            e.bit(false);
            e.gamma((dist >> 8) as u32 + 2 + u32::from(lostbit));
            e.out.push(dist as u8);
            e.gamma((best - adjust(dist)) as u32);
            (oldback, lostbit) = (dist, false);
            pos += best;
        } else if let Some(d) = (0..16).find(|&d| {
            if d == 0 {
                data[pos] == 0
            } else {
                d <= pos && data[pos - d] == data[pos]
            }
        }) {
            e.bits(0b111, 3);
            e.bits(d as u32, 4);
            lostbit = true;
            pos += 1;
        } else {
            e.bit(false);
            e.out.push(data[pos]);
            lostbit = true;
            pos += 1;
        }
    }
    e.bits(0b110, 3);
    e.out.push(0);
    e.out
}

fn padded(mut v: Vec<u8>) -> Vec<u8> {
    v.resize(v.len().next_multiple_of(0x200), 0);
    v
}

/// FSG 2.0: `image` in one block; `dsize` the empty section's size.
/// The packed section: the stack `popad` loads, the function table (its
/// fourth entry the original entry point), the pointer `xchg esp` reads,
/// the data at 0x100, the stub after it.
pub fn v200(image: &[u8], dsize: u32, oldep: u32) -> Vec<u8> {
    let packed = compress(image);
    let s1 = IMG_RVA + dsize;
    let mut d = vec![0u8; 0x100];
    put32(&mut d, 0, BASE + IMG_RVA);
    put32(&mut d, 4, BASE + s1 + 0x100);
    put32(&mut d, 16, BASE + s1 + 0x40);
    put32(&mut d, 0x40 + 12, BASE + oldep);
    put32(&mut d, 0x60, BASE + s1);
    d.extend(&packed);
    d.resize(d.len().next_multiple_of(16), 0);
    let stub_at = d.len() as u32;
    let mut stub = vec![0x90u8; 0x100];
    stub[..2].copy_from_slice(&[0x87, 0x25]);
    put32(&mut stub, 2, BASE + s1 + 0x60);
    d.extend(stub);
    let d = padded(d);
    let vsz = (d.len() as u32).next_multiple_of(0x1000);
    pe32::pe(
        ".fsg",
        &[
            Sect {
                rva: IMG_RVA,
                vsz: dsize,
                raw: 0,
                data: Vec::new(),
            },
            Sect {
                rva: s1,
                vsz,
                raw: 0x200,
                data: d,
            },
        ],
        s1 + stub_at,
        &[],
    )
}

/// Where 1.33 and 1.31 keep their table (an address inside the headers)
/// and the packed section's data (the table ends there).
pub const SUPPORT: u32 = 0x200;
const PACKED_RAW: u32 = 0x400;

/// The blocks of 1.33 and 1.31: each section's data compressed, in order
/// (the first at [`IMG_RVA`]).
fn blocks(sections: &[(u32, &[u8])]) -> Vec<u8> {
    sections.iter().flat_map(|(_, d)| compress(d)).collect()
}

/// FSG 1.33: `sections` (address, data), the first at [`IMG_RVA`]; the
/// table lists the others' addresses (+1) in the given order.
pub fn v133(sections: &[(u32, &[u8])], dsize: u32, oldep: u32) -> Vec<u8> {
    let s1 = IMG_RVA + dsize;
    let mut sup = vec![0u8; 12];
    put32(&mut sup, 4, BASE + IMG_RVA);
    put32(&mut sup, 8, BASE + s1);
    for (rva, _) in &sections[1..] {
        sup.extend((BASE + rva + 1).to_le_bytes());
    }
    sup.extend([0; 4]);
    let mut d = blocks(sections);
    d.resize(d.len().next_multiple_of(16), 0);
    let stub_at = d.len() as u32;
    let ep = s1 + stub_at;
    let mut stub = vec![0x90u8; 0x100];
    stub[0] = 0xbe;
    put32(&mut stub, 1, BASE + SUPPORT);
    put32(&mut stub, 163, oldep.wrapping_sub(ep + 167));
    d.extend(stub);
    let d = padded(d);
    let vsz = (d.len() as u32).next_multiple_of(0x1000);
    pe32::pe(
        ".fsg",
        &[
            Sect {
                rva: IMG_RVA,
                vsz: dsize,
                raw: 0,
                data: Vec::new(),
            },
            Sect {
                rva: s1,
                vsz,
                raw: PACKED_RAW,
                data: d,
            },
        ],
        ep,
        &[(SUPPORT as usize, sup)],
    )
}

/// FSG 1.31: as 1.33, the table as page numbers (+2) ended by 1, and the
/// entry point in a third section as far from the packed one as ClamAV's
/// test wants, laid out in the file as in memory (ClamAV reads the stub's
/// jump through the packed section's data). `call`: the stub starts with
/// a call, its jump 6 bytes further.
pub fn v131(sections: &[(u32, &[u8])], dsize: u32, oldep: u32, call: bool) -> Vec<u8> {
    let s1 = IMG_RVA + dsize;
    let s2 = (2 * s1).next_multiple_of(0x1000);
    let mut sup = Vec::new();
    for (rva, _) in &sections[1..] {
        sup.extend((((BASE + rva) >> 12) as u16 + 2).to_le_bytes());
    }
    sup.extend([1, 0, 0, 0, 0, 0, 2, 0, 0, 0]);
    let d = padded(blocks(sections));
    let mut stub = vec![0x90u8; 0x200];
    stub[0] = 0xbb;
    put32(&mut stub, 1, BASE + SUPPORT);
    stub[5] = 0xbf;
    put32(&mut stub, 6, BASE + IMG_RVA);
    stub[10] = 0xbe;
    put32(&mut stub, 11, BASE + s1);
    if call {
        stub[16] = 0xe8;
    }
    let g = if call { 0xe0 } else { 0xda };
    stub[g..g + 2].copy_from_slice(&[0x0f, 0x84]);
    put32(&mut stub, g + 2, oldep.wrapping_sub(s2 + g as u32 + 6));
    pe32::pe(
        ".fsg",
        &[
            Sect {
                rva: IMG_RVA,
                vsz: dsize,
                raw: 0,
                data: Vec::new(),
            },
            Sect {
                rva: s1,
                vsz: s2 - s1,
                raw: PACKED_RAW,
                data: d,
            },
            Sect {
                rva: s2,
                vsz: 0x1000,
                raw: PACKED_RAW + (s2 - s1),
                data: stub,
            },
        ],
        s2,
        &[(SUPPORT as usize, sup)],
    )
}

/// Text with repeats near and far, runs of zeros and of one byte, around
/// a marker.
pub fn text(marker: &str, len: usize) -> Vec<u8> {
    let words = [
        "scan", "moat", "gateway", "verdict", "fsg", "packed", "clamd",
    ];
    let mut x: u32 = 11;
    let mut t = Vec::new();
    while t.len() < 1400 {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
        t.extend_from_slice(words[(x >> 16) as usize % words.len()].as_bytes());
        t.push(if x >> 8 & 7 == 0 { b'\n' } else { b' ' });
    }
    let mut d = t.clone();
    d.extend_from_slice(marker.as_bytes());
    d.extend([0u8; 24]);
    d.extend_from_slice(&t[200..700]);
    d.extend([b'q'; 30]);
    for (n, c) in b"ABCDEFGHIJ".iter().enumerate() {
        d.extend_from_slice(b"0123456789");
        d.push(*c);
        d.push(n as u8);
    }
    d.extend_from_slice(&t[..900]);
    while d.len() < len {
        let k = d.len();
        d.push((k * 7 % 251) as u8);
        d.push(d[k / 2]);
    }
    d.truncate(len);
    d
}
