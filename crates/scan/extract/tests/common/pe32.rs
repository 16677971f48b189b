//! A minimal PE32 for the packed executables built at test time (shared by
//! `fsg.rs` and `nspack.rs`): the headers `cli_scanpe` reads and the
//! sections at their file offsets.
#![allow(dead_code)]

pub const BASE: u32 = 0x40_0000;

pub fn put32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

pub fn put16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_le_bytes());
}

/// One section: address, virtual size, file offset and data.
pub struct Sect {
    pub rva: u32,
    pub vsz: u32,
    pub raw: u32,
    pub data: Vec<u8>,
}

/// A PE32 with `sections` (named `{prefix}0`, `{prefix}1`...), entry point
/// `ep`, and `extra` bytes written at their file offsets (e.g. FSG's
/// support table in the headers' padding).
pub fn pe(prefix: &str, sections: &[Sect], ep: u32, extra: &[(usize, Vec<u8>)]) -> Vec<u8> {
    let end = sections
        .iter()
        .map(|s| s.raw as usize + s.data.len())
        .chain(extra.iter().map(|(at, b)| at + b.len()))
        .max()
        .unwrap_or(0)
        .max(0x200);
    let mut f = vec![0u8; end];
    f[..2].copy_from_slice(b"MZ");
    put32(&mut f, 0x3c, 0x40);
    f[0x40..0x44].copy_from_slice(b"PE\0\0");
    put16(&mut f, 0x44, 0x14c);
    put16(&mut f, 0x46, sections.len() as u16);
    put16(&mut f, 0x54, 0xe0);
    put16(&mut f, 0x56, 0x010f);
    let o = 0x58;
    put16(&mut f, o, 0x10b);
    put32(&mut f, o + 16, ep);
    put32(&mut f, o + 28, BASE);
    put32(&mut f, o + 32, 0x1000);
    put32(&mut f, o + 36, 0x200);
    put16(&mut f, o + 40, 4);
    put16(&mut f, o + 48, 4);
    let top = sections.iter().map(|s| s.rva + s.vsz).max().unwrap_or(0);
    put32(&mut f, o + 56, top.next_multiple_of(0x1000));
    put32(&mut f, o + 60, 0x200);
    put16(&mut f, o + 68, 2);
    put32(&mut f, o + 92, 16);
    for (n, s) in sections.iter().enumerate() {
        let h = o + 0xe0 + 40 * n;
        let name = format!("{prefix}{n}");
        f[h..h + name.len()].copy_from_slice(name.as_bytes());
        put32(&mut f, h + 8, s.vsz);
        put32(&mut f, h + 12, s.rva);
        put32(&mut f, h + 16, s.data.len() as u32);
        put32(&mut f, h + 20, if s.data.is_empty() { 0 } else { s.raw });
        put32(&mut f, h + 36, 0xe000_0060);
        let at = s.raw as usize;
        f[at..at + s.data.len()].copy_from_slice(&s.data);
    }
    for (at, b) in extra {
        f[*at..*at + b.len()].copy_from_slice(b);
    }
    f
}
