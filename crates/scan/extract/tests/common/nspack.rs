//! NsPack-packed executables made at test time (shared by
//! `formats::nspack`'s unit tests and the clamscan oracle): the program is
//! compressed with `lzma-rust2`'s raw LZMA encoder (NsPack's format is
//! LZMA, the properties byte in the block's header), and laid out as
//! `cli_scanpe` reads it: the first section as large as the program, the
//! block and the stub in the second, with just the stub bytes ClamAV reads
//! (the rest is `nop`s: nothing runs them).
#![allow(dead_code, unused_imports)]

// Included by both builders, which a test crate may both include.
#[allow(clippy::duplicate_mod)]
#[path = "pe32.rs"]
mod pe32;
use pe32::put32;
pub use pe32::{BASE, Sect};

/// What varies between the files built.
#[derive(Clone, Debug)]
pub struct Layout {
    /// LZMA's literal context, literal position and position bits.
    pub lc: u32,
    pub lp: u32,
    pub pb: u32,
    /// The entry point is a `jmp rel32` to the stub ("bitched headers").
    pub jump: bool,
    /// A zero dword before the block (which ClamAV skips).
    pub zero: bool,
    /// The first section has file data (NsPack's own has none).
    pub first_data: bool,
    /// The first section's address (above 0x1000, `cli_rebuildpe` adds
    /// its `empty` section in front).
    pub first_rva: u32,
    /// A third section after the packer's (NsPack's imports).
    pub third: bool,
    /// Only the program compressed, ended by LZMA's end marker (the rest
    /// of the buffer left unwritten).
    pub end_marker: bool,
    /// Bytes compressed beyond the unpacked size (zeros): the last match
    /// runs past the end of ClamAV's buffer.
    pub overrun: usize,
}

impl Default for Layout {
    fn default() -> Layout {
        Layout {
            lc: 3,
            lp: 0,
            pb: 2,
            jump: false,
            zero: false,
            first_data: false,
            first_rva: 0x1000,
            third: false,
            end_marker: false,
            overrun: 0,
        }
    }
}

/// A raw LZMA stream of `data` (no header).
pub fn compress(data: &[u8], l: &Layout) -> Vec<u8> {
    use std::io::Write;
    let mut opts = lzma_rust2::LzmaOptions::with_preset(6);
    opts.dict_size = 1 << 16;
    (opts.lc, opts.lp, opts.pb) = (l.lc, l.lp, l.pb);
    let mut w = lzma_rust2::LzmaWriter::new_no_header(Vec::new(), &opts, l.end_marker).unwrap();
    w.write_all(data).unwrap();
    w.finish().unwrap()
}

/// The block: the properties byte, the dictionary size (not read by
/// ClamAV), its size with this header, the unpacked size, the stream.
pub fn block(image: &[u8], dsize: u32, l: &Layout) -> Vec<u8> {
    let stream = if l.end_marker {
        compress(image, l)
    } else {
        let mut full = image.to_vec();
        full.resize(dsize as usize + l.overrun, 0);
        compress(&full, l)
    };
    let mut b = vec![0u8; 13];
    b[0] = ((l.pb * 5 + l.lp) * 9 + l.lc) as u8;
    put32(&mut b, 1, 1 << 16);
    put32(&mut b, 5, 13 + stream.len() as u32);
    put32(&mut b, 9, dsize);
    b.extend(stream);
    b
}

/// How far before the stub the pointer to the block lies (NsPack 3.x's
/// `lea esi, [ebp-0x207]` gives 0x54 + 0x207).
pub const NOWINLDR: u32 = 0x25b;

/// An NsPack-packed program: `image` (at most `dsize` bytes) unpacked at
/// the first section, its entry point `oep`.
pub fn nspack(image: &[u8], dsize: u32, oep: u32, l: &Layout) -> Vec<u8> {
    let mut d = Vec::new();
    if l.zero {
        d.extend([0u8; 4]);
    }
    d.extend(block(image, dsize, l));
    d.resize(d.len().next_multiple_of(16), 0);
    let stub_at = d.len() + NOWINLDR as usize + 0x15;
    d.resize(stub_at, 0);
    let mut stub = vec![0x90u8; 0x300];
    stub[..13].copy_from_slice(b"\x9c\x60\xe8\x00\x00\x00\x00\x5d\xb8\x07\x00\x00\x00");
    stub[13..17].copy_from_slice(&[0x2b, 0xe8, 0x8d, 0xb5]);
    put32(&mut stub, 17, 0x54u32.wrapping_sub(NOWINLDR));
    d.extend(stub);
    // Section addresses and file offsets.
    let first_raw = 0x200u32;
    let packer_raw = if l.first_data { 0x400 } else { 0x200 };
    let s1 = l.first_rva + dsize;
    let stub_rva = s1 + stub_at as u32;
    // The pointer, from the stub to the block (a file offset distance).
    put32(
        &mut d,
        stub_at - NOWINLDR as usize,
        0u32.wrapping_sub(stub_at as u32),
    );
    // The stub's jump to the program.
    let j = stub_at + 0x27a;
    d[j] = 0xe9;
    put32(&mut d, j + 1, oep.wrapping_sub(stub_rva + 0x27a + 5));
    let mut ep = stub_rva;
    if l.jump {
        let at = d.len();
        d.push(0xe9);
        d.extend(stub_rva.wrapping_sub(s1 + at as u32 + 5).to_le_bytes());
        d.extend([0x90u8; 0xfb]);
        ep = s1 + at as u32;
    }
    d.resize(d.len().next_multiple_of(0x200), 0);
    let vsz = (d.len() as u32).next_multiple_of(0x1000);
    let mut sections = vec![
        Sect {
            rva: l.first_rva,
            vsz: dsize,
            raw: first_raw,
            data: if l.first_data {
                vec![0xccu8; 0x200]
            } else {
                Vec::new()
            },
        },
        Sect {
            rva: s1,
            vsz,
            raw: packer_raw,
            data: d,
        },
    ];
    if l.third {
        let raw = packer_raw + sections[1].data.len() as u32;
        sections.push(Sect {
            rva: s1 + vsz,
            vsz: 0x1000,
            raw,
            data: b"KERNEL32.DLL\0LoadLibraryA\0GetProcAddress\0"
                .iter()
                .copied()
                .chain(std::iter::repeat_n(0, 0x200 - 41))
                .collect(),
        });
    }
    pe32::pe("nsp", &sections, ep, &[])
}

/// Text with repeats near and far, runs of zeros and of one byte, around
/// a marker; the same marker-bearing program for every layout.
pub fn text(marker: &str, len: usize) -> Vec<u8> {
    let words = [
        "scan", "moat", "gateway", "verdict", "nspack", "packed", "clamd",
    ];
    let mut x: u32 = 7;
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
    d.extend([b'q'; 300]);
    for (n, c) in b"ABCDEFGHIJ".iter().enumerate() {
        d.extend_from_slice(b"0123456789");
        d.push(*c);
        d.push(n as u8);
    }
    d.extend_from_slice(&t[..900]);
    while d.len() < len {
        let k = d.len();
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
        d.push((x >> 16) as u8);
        d.push(d[k / 2]);
    }
    d.truncate(len);
    d
}
