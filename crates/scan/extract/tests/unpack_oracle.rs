//! The unpackers against ClamAV's (apt `clamav`): for each packed file,
//! the MD5 of the image moat unpacks becomes an `.hdb` signature, and
//! clamscan must find it in the packed file, which it can only do if its
//! own unpacker produced exactly the same bytes. The files: Debian's
//! `clamav-testfiles` `clam-upx.exe` (made by UPX itself, NRV2B) and
//! `clam-aspack.exe` (ASPack 2.12), `clam-wwpack.exe` (WWPack32),
//! `clam-yc.exe` (yoda's Crypter), `clam-petite.exe` (Petite 2.2),
//! `clam-pespin.exe` (PESpin 1.1), `clam-mew.exe` (MEW 11) and
//! `clam-upack.exe` (Upack 0.39), and
//! executables packed here with each of the formats ClamAV unpacks (NRV2B,
//! NRV2D, NRV2E, LZMA), both with the program's own PE header in the image
//! (rebuilt at its sections) and without one (wrapped in ClamAV's minimal
//! PE). UPX is not packaged in Debian, so the NRV encoders below are
//! written from the decoders' definition; clamscan is the judge of both.
//! FSG likewise: Debian's `clam-fsg.exe` is not FSG-packed (no empty
//! section; ClamAV finds only the clam.exe embedded in it), so FSG 2.0,
//! 1.33 and 1.31 files are made here (`common/fsg.rs`: an encoder for
//! `cli_unfsg`'s format and the stub layouts `cli_scanpe` reads).
//! NsPack has no test file at all: its files are made here too
//! (`common/nspack.rs`: LZMA streams from `lzma-rust2`, in the sections
//! and stub bytes `cli_scanpe` reads).

mod common;
#[path = "common/fsg.rs"]
mod fsg_build;
#[path = "common/nspack.rs"]
mod nspack_build;

use common::{clamscan, md5_hex, read, walked};
use moat_core::Blob;
use moat_extract::{Limits, walk};
use std::path::Path;

const CLAM_UPX: &str = "/usr/share/clamav-testfiles/clam-upx.exe";
const CLAM_ASPACK: &str = "/usr/share/clamav-testfiles/clam-aspack.exe";
const CLAM_WWPACK: &str = "/usr/share/clamav-testfiles/clam-wwpack.exe";
const CLAM_YC: &str = "/usr/share/clamav-testfiles/clam-yc.exe";
const CLAM_PETITE: &str = "/usr/share/clamav-testfiles/clam-petite.exe";
const CLAM_PESPIN: &str = "/usr/share/clamav-testfiles/clam-pespin.exe";
const CLAM_MEW: &str = "/usr/share/clamav-testfiles/clam-mew.exe";
const CLAM_UPACK: &str = "/usr/share/clamav-testfiles/clam-upack.exe";
const CLAM_EXE: &str = "/usr/share/clamav-testfiles/clam.exe";
const CLAM_FSG: &str = "/usr/share/clamav-testfiles/clam-fsg.exe";

/// The members moat finds in `file`: (location, bytes).
fn members(file: &[u8]) -> Vec<(String, Vec<u8>)> {
    let (problems, out) = walked(file);
    assert!(problems.is_empty(), "{problems:?}");
    out
}

fn unpacked(file: &[u8]) -> Vec<u8> {
    unpacked_by(file, "upx")
}

fn unpacked_by(file: &[u8], packer: &str) -> Vec<u8> {
    let seen = members(file);
    let at = format!("f>{packer}");
    seen.iter()
        .find(|(l, _)| *l == at)
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| {
            panic!(
                "moat unpacks the file ({packer}): {:?}",
                seen.iter().map(|(l, _)| l).collect::<Vec<_>>()
            )
        })
}

// ---- NRV encoders: the inverse of the decoders' bit grammar ----

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Nrv {
    B,
    D,
    E,
}

/// Bits in 32-bit little-endian words, most significant first, each word
/// placed in the byte stream where the decoder will need its first bit.
struct Bits {
    out: Vec<u8>,
    slot: usize,
    used: u32,
}

impl Bits {
    fn new() -> Bits {
        Bits {
            out: Vec::new(),
            slot: 0,
            used: 32,
        }
    }

    fn bit(&mut self, b: bool) {
        if self.used == 32 {
            self.slot = self.out.len();
            self.out.extend([0; 4]);
            self.used = 0;
        }
        if b {
            let s = &mut self.out[self.slot..self.slot + 4];
            let w = u32::from_le_bytes([s[0], s[1], s[2], s[3]]) | 1 << (31 - self.used);
            s.copy_from_slice(&w.to_le_bytes());
        }
        self.used += 1;
    }

    fn byte(&mut self, b: u8) {
        self.out.push(b);
    }

    /// NRV2B's gamma code (also every variant's length code): the bits of
    /// `v` (>= 2) below its leading one, each followed by "last?".
    fn gamma(&mut self, v: u32) {
        let top = 31 - v.leading_zeros();
        for i in (0..top).rev() {
            self.bit(v >> i & 1 == 1);
            self.bit(i == 0);
        }
    }

    /// NRV2D/2E's offset code: `v = 1; loop { v = 2v + b; if b' break;
    /// v = 2(v - 1) + b'' }`, run backwards.
    fn gamma2d(&mut self, v: u32) {
        let mut steps = Vec::new();
        let mut u = v >> 1;
        while u != 1 {
            steps.push((u + 2) & 3);
            u = (u + 2) >> 2;
        }
        for r in steps.iter().rev() {
            self.bit(r >> 1 == 1);
            self.bit(false);
            self.bit(r & 1 == 1);
        }
        self.bit(v & 1 == 1);
        self.bit(true);
    }

    fn offset(&mut self, kind: Nrv, v: u32) {
        if kind == Nrv::B {
            self.gamma(v)
        } else {
            self.gamma2d(v)
        }
    }
}

/// Greedy LZ77 over `data` in `kind`'s bit grammar, with the end marker.
fn nrv_encode(kind: Nrv, data: &[u8]) -> Vec<u8> {
    let mut b = Bits::new();
    let mut last = 1usize;
    let mut pos = 0;
    while pos < data.len() {
        let (mut best_len, mut best_dist) = (0, 0);
        for dist in 1..=pos.min(0x2000) {
            let mut l = 0;
            while pos + l < data.len() && l < 300 && data[pos + l] == data[pos + l - dist] {
                l += 1;
            }
            if l > best_len || l == best_len && dist == last {
                (best_len, best_dist) = (l, dist);
            }
        }
        if best_len < 4 {
            b.bit(true);
            b.byte(data[pos]);
            pos += 1;
            continue;
        }
        let (dist, len) = (best_dist, best_len);
        b.bit(false);
        let far = usize::from(dist > if kind == Nrv::B { 0xd00 } else { 0x500 });
        let x = (len - far - if kind == Nrv::E { 2 } else { 1 }) as u32;
        // The bit of the length carried in the offset (2D, 2E).
        let carry = match kind {
            Nrv::B => 0,
            Nrv::D => u32::from(x <= 3) * (x >> 1),
            Nrv::E => u32::from(x <= 1),
        };
        if dist == last {
            b.offset(kind, 2);
            if kind != Nrv::B {
                b.bit(carry == 1);
            }
        } else {
            let m = (dist - 1) as u32;
            let raw = if kind == Nrv::B {
                m
            } else {
                m << 1 | (1 - carry)
            };
            b.offset(kind, (raw >> 8) + 3);
            b.byte(raw as u8);
        }
        match kind {
            Nrv::B | Nrv::D if x <= 3 => {
                if kind == Nrv::B {
                    b.bit(x >> 1 == 1);
                }
                b.bit(x & 1 == 1);
            }
            Nrv::B | Nrv::D => {
                b.bit(false);
                if kind == Nrv::B {
                    b.bit(false);
                }
                b.gamma(x - 2);
            }
            Nrv::E if x <= 1 => b.bit(x == 1),
            Nrv::E if x <= 3 => {
                b.bit(true);
                b.bit(x == 3);
            }
            Nrv::E => {
                b.bit(false);
                b.gamma(x - 2);
            }
        }
        last = dist;
        pos += len;
    }
    b.bit(false);
    b.offset(kind, 0x0100_0002);
    b.byte(0xff);
    b.out
}

fn lzma_encode(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut opts = lzma_rust2::LzmaOptions::with_preset(6);
    opts.dict_size = 1 << 16;
    let mut w = lzma_rust2::LzmaWriter::new_no_header(Vec::new(), &opts, false).unwrap();
    w.write_all(data).unwrap();
    // UPX's own two bytes come before the LZMA data.
    let mut out = vec![0u8; 2];
    out.extend(w.finish().unwrap());
    out
}

// ---- test executables ----

const IMAGE_BASE: u32 = 0x40_0000;
/// UPX0's virtual size: room for the unpacked image.
const UPX0_SIZE: u32 = 0x4000;

fn put32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn put16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_le_bytes());
}

/// A PE laid out as UPX lays one out: `UPX0` (no data, the image's room),
/// `UPX1` (the packed data, then the stub at the entry point).
fn packed_pe(packed: &[u8], stub: &[u8]) -> Vec<u8> {
    packed_pe_sized(packed, stub, UPX0_SIZE)
}

fn packed_pe_sized(packed: &[u8], stub: &[u8], upx0_size: u32) -> Vec<u8> {
    let stub_at = packed.len().next_multiple_of(16);
    let raw_len = (stub_at + stub.len()).next_multiple_of(0x200);
    let upx1_rva = 0x1000 + upx0_size;
    let upx1_vsz = (raw_len as u32).next_multiple_of(0x1000);
    let mut f = vec![0u8; 0x200 + raw_len];
    f[..2].copy_from_slice(b"MZ");
    put32(&mut f, 0x3c, 0x40);
    f[0x40..0x44].copy_from_slice(b"PE\0\0");
    put16(&mut f, 0x44, 0x14c);
    put16(&mut f, 0x46, 2);
    put16(&mut f, 0x54, 0xe0);
    put16(&mut f, 0x56, 0x010f);
    let o = 0x58;
    put16(&mut f, o, 0x10b);
    put32(&mut f, o + 16, upx1_rva + stub_at as u32);
    put32(&mut f, o + 28, IMAGE_BASE);
    put32(&mut f, o + 32, 0x1000);
    put32(&mut f, o + 36, 0x200);
    put16(&mut f, o + 40, 4);
    put16(&mut f, o + 48, 4);
    put32(&mut f, o + 56, upx1_rva + upx1_vsz);
    put32(&mut f, o + 60, 0x200);
    put16(&mut f, o + 68, 2);
    put32(&mut f, o + 92, 16);
    let s = o + 0xe0;
    f[s..s + 4].copy_from_slice(b"UPX0");
    put32(&mut f, s + 8, upx0_size);
    put32(&mut f, s + 12, 0x1000);
    put32(&mut f, s + 20, 0x200);
    put32(&mut f, s + 36, 0xe000_0080);
    let s = s + 40;
    f[s..s + 4].copy_from_slice(b"UPX1");
    put32(&mut f, s + 8, upx1_vsz);
    put32(&mut f, s + 12, upx1_rva);
    put32(&mut f, s + 16, raw_len as u32);
    put32(&mut f, s + 20, 0x200);
    put32(&mut f, s + 36, 0xe000_0040);
    f[0x200..0x200 + packed.len()].copy_from_slice(packed);
    f[0x200 + stub_at..0x200 + stub_at + stub.len()].copy_from_slice(stub);
    f
}

/// The entry point code ClamAV recognises: `pushad; mov esi, UPX1` and the
/// decompressor's bytes where the stub has them.
fn stub(kind: Option<Nrv>, lzma_size: u32) -> Vec<u8> {
    let mut s = vec![0x90u8; 0x100];
    s[0] = 0x60;
    s[1] = 0xbe;
    // `mov esi, UPX1` (with the default UPX0 size; a skew is not needed).
    put32(&mut s, 2, IMAGE_BASE + 0x1000 + UPX0_SIZE);
    let sig: &[u8] = match kind {
        Some(Nrv::B) => b"\x11\xdb\x11\xc9\x01\xdb\x75\x07\x8b\x1e\x83\xee\xfc\x11\xdb\x11\xc9\x11\xc9\x75\x20\x41\x01\xdb",
        Some(Nrv::D) => b"\x83\xf0\xff\x74\x78\xd1\xf8\x89\xc5\xeb\x0b\x01\xdb\x75\x07\x8b\x1e\x83\xee\xfc\x11\xdb\x11\xc9",
        Some(Nrv::E) => b"\xeb\x52\x31\xc9\x83\xe8\x03\x72\x11\xc1\xe0\x08\x8a\x06\x46\x83\xf0\xff\x74\x75\xd1\xf8\x89\xc5",
        None => {
            put32(&mut s, 0x21, lzma_size);
            s[0x2f..0x2f + 20].copy_from_slice(
                b"\x56\x83\xc3\x04\x53\x50\xc7\x03\x03\x00\x02\x00\x90\x90\x90\x90\x90\x55\x57\x56",
            );
            return s;
        }
    };
    s[0x69..0x69 + 24].copy_from_slice(sig);
    s
}

/// Text with repeats near and far (past 0x500 and 0xd00 bytes back), runs,
/// and a repeated distance, around a marker.
fn image_text(marker: &str, len: usize) -> Vec<u8> {
    let words = [
        "scan", "moat", "gateway", "verdict", "engine", "packed", "upx", "clamd",
    ];
    let mut x: u32 = 7;
    let mut words_text = |n: usize| {
        let mut t = Vec::new();
        while t.len() < n {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            t.extend_from_slice(words[(x >> 16) as usize % words.len()].as_bytes());
            t.push(if x >> 8 & 7 == 0 { b'\n' } else { b' ' });
        }
        t
    };
    let a = words_text(1500);
    let mut d = a.clone();
    d.extend_from_slice(marker.as_bytes());
    d.extend_from_slice(&a[100..900]);
    d.extend(words_text(2200));
    d.extend_from_slice(&a[..600]);
    d.extend([b'z'; 40]);
    for c in b"ABCDEFGH" {
        d.extend_from_slice(b"0123456789");
        d.push(*c);
    }
    d.truncate(len);
    d
}

/// `image_text`, then a PE header whose one section is the text, as the
/// packed program's own header sits after its data.
fn image_with_header(marker: &str) -> Vec<u8> {
    let mut d = image_text(marker, 0x1000);
    d.resize(0x1000, 0);
    let mut h = vec![0u8; 0xf8 + 0x28];
    h[..4].copy_from_slice(b"PE\0\0");
    put16(&mut h, 4, 0x14c);
    put16(&mut h, 6, 1);
    put16(&mut h, 0x14, 0xe0);
    put16(&mut h, 0x18, 0x10b);
    put32(&mut h, 0x18 + 32, 0x1000);
    put32(&mut h, 0x18 + 36, 0x200);
    h[0xf8..0xf8 + 5].copy_from_slice(b".text");
    put32(&mut h, 0xf8 + 8, 0x1000);
    put32(&mut h, 0xf8 + 12, 0x1000);
    d.extend(h);
    d
}

#[test]
fn packed_programs_unpack_to_the_bytes_clamscan_unpacks() {
    let dir = tempfile::tempdir().unwrap();
    let mut hdb = String::new();
    let mut files = Vec::new();
    let mut expect = Vec::new();
    let mut add = |name: &str, file: Vec<u8>, must_hold: &[u8]| {
        let packer = [
            "aspack", "wwpack", "yc", "petite", "pespin", "mew", "upack", "fsg",
        ]
        .into_iter()
        .find(|p| name.contains(p))
        .unwrap_or("upx");
        let image = unpacked_by(&file, packer);
        // FSG's bare buffer, when `cli_rebuildpe` refuses its sections.
        if !name.contains("bare") {
            assert!(image.starts_with(b"MZ"), "{name}: rebuilt as a PE");
        }
        assert!(
            image.windows(must_hold.len()).any(|w| w == must_hold),
            "{name}: the unpacked image holds the program"
        );
        let sig = format!("Moat.Unpacked.{}", name.replace(['.', '-'], "_"));
        hdb.push_str(&format!("{}:{}:{sig}\n", md5_hex(&image), image.len()));
        let path = dir.path().join(name);
        std::fs::write(&path, &file).unwrap();
        files.push(path);
        expect.push((name.to_string(), sig));
    };
    // Made by UPX: the unpacked program carries clam.exe.
    add(
        "clam-upx.exe",
        read(Path::new(CLAM_UPX)),
        &read(Path::new(CLAM_EXE)),
    );
    add(
        "clam-aspack.exe",
        read(Path::new(CLAM_ASPACK)),
        &read(Path::new(CLAM_EXE)),
    );
    // Its program carries clam.exe in a zip.
    add(
        "clam-wwpack.exe",
        read(Path::new(CLAM_WWPACK)),
        b"PK\x03\x04",
    );
    // Its decrypted program is packed again, with UPX.
    add("clam-yc.exe", read(Path::new(CLAM_YC)), b"UPX0");
    add(
        "clam-petite.exe",
        read(Path::new(CLAM_PETITE)),
        b"PK\x03\x04",
    );
    // Its program carries clam.exe as an embedded executable.
    add(
        "clam-pespin.exe",
        read(Path::new(CLAM_PESPIN)),
        &read(Path::new(CLAM_EXE)),
    );
    // MEW 11 (aPLib-like blocks): its program carries clam.exe in a zip.
    add("clam-mew.exe", read(Path::new(CLAM_MEW)), b"PK\x03\x04");
    // Upack 0.39, three sections: the same program.
    add("clam-upack.exe", read(Path::new(CLAM_UPACK)), b"PK\x03\x04");
    for kind in [Nrv::B, Nrv::D, Nrv::E] {
        let marker = format!("moat-upx-marker-{kind:?}-own-header");
        let image = image_with_header(&marker);
        let file = packed_pe(&nrv_encode(kind, &image), &stub(Some(kind), 0));
        add(
            &format!("nrv2{kind:?}-rebuilt.exe"),
            file,
            marker.as_bytes(),
        );
        let marker = format!("moat-upx-marker-{kind:?}-wrapped");
        let image = image_text(&marker, 0x2400);
        let file = packed_pe(&nrv_encode(kind, &image), &stub(Some(kind), 0));
        add(
            &format!("nrv2{kind:?}-wrapped.exe"),
            file,
            marker.as_bytes(),
        );
    }
    let marker = "moat-upx-marker-lzma-own-header";
    let image = image_with_header(marker);
    let file = packed_pe(&lzma_encode(&image), &stub(None, image.len() as u32));
    add("lzma-rebuilt.exe", file, marker.as_bytes());
    let marker = "moat-upx-marker-lzma-wrapped";
    let image = image_text(marker, 0x2400);
    let file = packed_pe(&lzma_encode(&image), &stub(None, image.len() as u32));
    add("lzma-wrapped.exe", file, marker.as_bytes());

    // FSG 2.0: one block.
    let marker = "moat-fsg-marker-2.0";
    let image = fsg_build::text(marker, 0x2400);
    add(
        "fsg20.exe",
        fsg_build::v200(&image, 0x4000, 0x1234),
        marker.as_bytes(),
    );
    // FSG 1.33: three sections, listed out of order (ClamAV sorts them).
    let (a, b, c) = (
        fsg_build::text("moat-fsg-marker-1.33", 0x900),
        fsg_build::text("second", 0x300),
        fsg_build::text("third", 0x500),
    );
    add(
        "fsg133.exe",
        fsg_build::v133(&[(0x1000, &a), (0x3000, &c), (0x2000, &b)], 0x4000, 0x1010),
        b"moat-fsg-marker-1.33",
    );
    // FSG 1.31, both stubs.
    for call in [false, true] {
        let marker = format!("moat-fsg-marker-1.31-{call}");
        let a = fsg_build::text(&marker, 0x700);
        add(
            &format!("fsg131-{call}.exe"),
            fsg_build::v131(&[(0x1000, &a), (0x3000, &b)], 0x4000, 0x1020, call),
            marker.as_bytes(),
        );
    }
    // FSG 1.33 with 100 sections: more than `cli_rebuildpe` writes, so
    // ClamAV scans the decompressed buffer as it is.
    let data: Vec<Vec<u8>> = (0..100u32)
        .map(|n| fsg_build::text(&format!("moat-fsg-bare-{n:03}"), 0x40 + n as usize))
        .collect();
    let secs: Vec<(u32, &[u8])> = data
        .iter()
        .enumerate()
        .map(|(n, d)| (0x1000 + 0x40 * n as u32, &d[..]))
        .collect();
    add(
        "fsg133-bare.exe",
        fsg_build::v133(&secs, 0x6000, 0x1000),
        &data[7],
    );
    // FSG 2.0's `xchg esp` at the entry point of a UPX file, pointing
    // nowhere: FSG gives up ("xchg out of bounds") and UPX takes the file.
    let marker = "moat-upx-marker-after-fsg";
    let image = image_text(marker, 0x2400);
    let mut xchg = stub(Some(Nrv::B), 0);
    xchg[..6].copy_from_slice(&[0x87, 0x25, 0, 0, 0, 0]);
    add(
        "nrv2b-xchg.exe",
        packed_pe(&nrv_encode(Nrv::B, &image), &xchg),
        marker.as_bytes(),
    );

    let found = clamscan(&hdb, &files);
    for (name, sig) in &expect {
        assert!(
            found.contains(&(name.clone(), sig.clone())),
            "clamscan's unpacked {name} differs from moat's (found: {found:?})"
        );
    }
}

#[test]
fn the_encoders_round_trip_through_moat_for_every_variant() {
    // Without clamscan: the unpacked image holds the text exactly.
    for kind in [Nrv::B, Nrv::D, Nrv::E] {
        let text = image_text("round-trip", 0x2400);
        let image = unpacked(&packed_pe(&nrv_encode(kind, &text), &stub(Some(kind), 0)));
        assert_eq!(&image[0x200..0x200 + text.len()], &text[..], "{kind:?}");
    }
}

#[test]
fn a_upx_image_over_the_limit_is_a_limit_not_a_clean_file() {
    let text = image_text("too-large", 0x2400);
    let file = packed_pe_sized(
        &nrv_encode(Nrv::B, &text),
        &stub(Some(Nrv::B), 0),
        200 << 20,
    );
    let limits = Limits::default();
    let report =
        walk::<std::convert::Infallible>(&Blob::from_vec(file), "f", &limits, &mut |_| Ok(()))
            .unwrap();
    assert!(
        report.problems.iter().any(|p| matches!(p,
            moat_extract::Problem::LimitsExceeded { location, what } if location == "f>upx" && what == "member_size")),
        "{:?}",
        report.problems
    );
}

#[test]
fn programs_with_an_uninitialised_section_are_not_taken_for_upx() {
    // MinGW puts .bss (no file data) before .idata: the layout UPX has, but
    // no UPX stub and nothing that decompresses.
    let Some(pe) = moat_exe::testbin::mingw_pe() else {
        return;
    };
    let seen = members(&pe);
    assert!(
        seen.iter().all(|(l, _)| !l.ends_with(">upx")),
        "{:?}",
        seen.iter().map(|(l, _)| l).collect::<Vec<_>>()
    );
}

#[test]
fn mew_and_upack_images_over_the_member_limit_are_limits_not_clean_files() {
    // Both lay out a buffer of about 24 KiB; a member limit below it.
    for (path, packer) in [(CLAM_MEW, "mew"), (CLAM_UPACK, "upack")] {
        let limits = Limits {
            max_member_size: 0x2000,
            ..Limits::default()
        };
        let report = walk::<std::convert::Infallible>(
            &Blob::from_vec(read(Path::new(path))),
            "f",
            &limits,
            &mut |_| Ok(()),
        )
        .unwrap();
        let at = format!("f>{packer}");
        assert!(
            report.problems.iter().any(|p| matches!(p,
                moat_extract::Problem::LimitsExceeded { location, what } if *location == at && what == "member_size")),
            "{packer}: {:?}",
            report.problems
        );
    }
}

#[test]
fn clam_fsg_exe_is_not_fsg_packed_and_its_embedded_clam_exe_is_scanned() {
    // Debian's clam-fsg.exe has no empty section: ClamAV's `cli_scanpe`
    // tries no FSG unpacker on it (`--debug` shows none), and finds only
    // the clam.exe embedded at 6112. So does moat: no `fsg` member, the
    // embedded program a member, and clamscan finds its hash in the file.
    let file = read(Path::new(CLAM_FSG));
    let seen = members(&file);
    let names: Vec<&String> = seen.iter().map(|(l, _)| l).collect();
    assert!(names.iter().all(|l| !l.ends_with(">fsg")), "{names:?}");
    let (_, embedded) = seen
        .iter()
        .find(|(l, _)| l == "f>embedded@6112")
        .unwrap_or_else(|| panic!("{names:?}"));
    assert_eq!(embedded, &read(Path::new(CLAM_EXE)));
    let hdb = format!(
        "{}:{}:Moat.Embedded.clam_fsg\n",
        md5_hex(embedded),
        embedded.len()
    );
    let found = clamscan(&hdb, &[Path::new(CLAM_FSG).to_path_buf()]);
    assert!(
        found.contains(&("clam-fsg.exe".into(), "Moat.Embedded.clam_fsg".into())),
        "{found:?}"
    );
}

#[test]
fn fsg_round_trips_through_moat_for_every_version() {
    // Without clamscan: the unpacked image holds the data exactly.
    let text = fsg_build::text("round-trip", 0x2400);
    let image = unpacked_by(&fsg_build::v200(&text, 0x4000, 0x1000), "fsg");
    assert_eq!(&image[0x200..0x200 + text.len()], &text[..]);
    let image = unpacked_by(&fsg_build::v133(&[(0x1000, &text)], 0x4000, 0x1000), "fsg");
    assert_eq!(&image[0x200..0x200 + text.len()], &text[..]);
    let t2 = fsg_build::text("two", 0x300);
    let image = unpacked_by(
        &fsg_build::v131(&[(0x1000, &text), (0x4000, &t2)], 0x5000, 0x1000, false),
        "fsg",
    );
    assert_eq!(&image[0x400..0x400 + text.len()], &text[..]);
}

#[test]
fn nspack_programs_unpack_to_the_bytes_clamscan_unpacks() {
    use nspack_build::Layout;
    let dir = tempfile::tempdir().unwrap();
    let mut hdb = String::new();
    let mut files = Vec::new();
    let mut expect = Vec::new();
    let d = Layout::default();
    let layouts = [
        ("plain", d.clone()),
        // The entry point jumps to the stub.
        (
            "jump",
            Layout {
                jump: true,
                ..d.clone()
            },
        ),
        // A zero dword before the block.
        (
            "zero",
            Layout {
                zero: true,
                ..d.clone()
            },
        ),
        // No empty section (UPX does not look), and NsPack's import section.
        (
            "data-third",
            Layout {
                first_data: true,
                third: true,
                ..d.clone()
            },
        ),
        // `cli_rebuildpe`'s `empty` section in front.
        (
            "ghost",
            Layout {
                first_rva: 0x3000,
                ..d.clone()
            },
        ),
        (
            "lc0lp2pb0",
            Layout {
                lc: 0,
                lp: 2,
                pb: 0,
                jump: true,
                zero: true,
                ..d.clone()
            },
        ),
        (
            "lc8lp4pb4",
            Layout {
                lc: 8,
                lp: 4,
                pb: 4,
                ..d.clone()
            },
        ),
        (
            "lc1lp1pb1",
            Layout {
                lc: 1,
                lp: 1,
                pb: 1,
                third: true,
                ..d
            },
        ),
    ];
    for (name, l) in &layouts {
        let marker = format!("moat-nspack-marker-{name}");
        let text = nspack_build::text(&marker, 0x2345);
        let oep = l.first_rva + 0x123;
        let file = nspack_build::nspack(&text, 0x3000, oep, l);
        let image = unpacked_by(&file, "nspack");
        assert!(image.starts_with(b"MZ"), "{name}: rebuilt as a PE");
        assert!(
            image.windows(marker.len()).any(|w| w == marker.as_bytes()),
            "{name}: the unpacked image holds the program"
        );
        let sig = format!("Moat.Unpacked.nspack_{}", name.replace('-', "_"));
        hdb.push_str(&format!("{}:{}:{sig}\n", md5_hex(&image), image.len()));
        let file_name = format!("nspack-{name}.exe");
        let path = dir.path().join(&file_name);
        std::fs::write(&path, &file).unwrap();
        files.push(path);
        expect.push((file_name, sig));
    }
    let found = clamscan(&hdb, &files);
    for (name, sig) in &expect {
        assert!(
            found.contains(&(name.clone(), sig.clone())),
            "clamscan's unpacked {name} differs from moat's (found: {found:?})"
        );
    }
}

#[test]
fn an_nspack_match_past_the_buffer_fails_in_both() {
    // The stream goes on 0x100 bytes past the unpacked size, inside a run
    // of zeros: LZMA SDK would cut the last match short, ClamAV's decoder
    // fails ("Unpacking failed") and scans the file as it is; so does moat.
    let l = nspack_build::Layout {
        overrun: 0x100,
        ..Default::default()
    };
    let text = nspack_build::text("moat-nspack-overrun", 0x2345);
    let file = nspack_build::nspack(&text, 0x3000, 0x1123, &l);
    let seen = members(&file);
    assert!(
        seen.iter().all(|(l, _)| !l.ends_with(">nspack")),
        "{:?}",
        seen.iter().map(|(l, _)| l).collect::<Vec<_>>()
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nspack-overrun.exe");
    std::fs::write(&path, &file).unwrap();
    let db = dir.path().join("none.hdb");
    std::fs::write(&db, "00000000000000000000000000000000:1:Moat.None\n").unwrap();
    let out = std::process::Command::new("clamscan")
        .args(["--debug", "--no-summary", "-d"])
        .arg(&db)
        .arg(&path)
        .output()
        .expect("clamscan (apt clamav) runs");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains("NsPack: OEP = 00001123"),
        "ClamAV takes the NsPack path"
    );
    assert!(
        log.contains("cli_scanpe: NsPack: Unpacking failed"),
        "{log}"
    );
}
