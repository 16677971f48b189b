//! AutoIt script extraction against ClamAV's (apt `clamav`): the MD5 of
//! every file moat extracts from an AutoIt executable becomes an `.hdb`
//! signature, and clamscan must find it in that executable, which it can
//! only do if its own extraction (`libclamav/autoit.c`) produced exactly the
//! same bytes (ClamAV scans each extracted file as a file of its own). The
//! files: Debian's `clamav-testfiles` `clam.ea05.exe` and `clam.ea06.exe`
//! (made by AutoIt 3.2.4.9 and 3.2.8.1: a script that drops clam.exe), and
//! files built here with the encoders below (written from the decoders'
//! definition; clamscan is the judge): EA06 scripts with every token
//! ClamAV decompiles (all keywords and functions, integers, doubles, every
//! kind of name and string), EA05 and EA06 files compressed and stored,
//! cut-short compressed data (whose partial output ClamAV scans too), in a
//! PE and as an `.a3x` file on its own. `AUTOIT_KEEP=DIR` keeps the files
//! and moat's extractions there, to compare with what `clamscan --debug
//! --leave-temps` leaves.

mod common;

use common::{clamscan, md5_hex, read, walked};
use std::collections::BTreeMap;
use std::path::Path;

const CLAM_EA05: &str = "/usr/share/clamav-testfiles/clam.ea05.exe";
const CLAM_EA06: &str = "/usr/share/clamav-testfiles/clam.ea06.exe";
const CLAM_EXE: &str = "/usr/share/clamav-testfiles/clam.exe";

/// The AutoIt files moat extracts from `file`, in order.
fn extracted(file: &[u8]) -> Vec<(String, Vec<u8>)> {
    let (problems, seen) = walked(file);
    assert!(problems.is_empty(), "{problems:?}");
    seen.into_iter()
        .filter(|(l, _)| {
            l.rsplit('>')
                .next()
                .is_some_and(|n| n.starts_with("autoit."))
        })
        .collect()
}

// ---- the ciphers (ClamAV's MT_decrypt and LAME_decrypt are XOR streams) ----

fn mt_stream(buf: &mut [u8], seed: u32) {
    let mut mt = [0u32; 624];
    mt[0] = seed;
    for i in 1..624 {
        mt[i] = (i as u32).wrapping_add(0x6c07_8965u32.wrapping_mul((mt[i - 1] >> 30) ^ mt[i - 1]));
    }
    let f = |a: u32, b: u32| {
        ((((a ^ b) & 0x7fff_fffe) ^ a) >> 1) ^ (0u32.wrapping_sub(b & 1) & 0x9908_b0df)
    };
    let mut next = 624;
    for b in buf {
        if next == 624 {
            for i in 0..623 {
                let other = if i < 227 { mt[i + 397] } else { mt[i - 227] };
                mt[i] = f(mt[i], mt[i + 1]) ^ other;
            }
            mt[623] = f(mt[623], mt[0]) ^ mt[396];
            next = 0;
        }
        let mut r = mt[next];
        next += 1;
        r ^= r >> 11;
        r ^= (r & 0xff3a_58ad) << 7;
        r ^= (r & 0xffff_df8c) << 15;
        r ^= r >> 18;
        *b ^= (r >> 1) as u8;
    }
}

fn lame_stream(buf: &mut [u8], seed: u16) {
    let mut g = [0u32; 17];
    let mut s = u32::from(seed);
    for x in &mut g {
        s = 1u32.wrapping_sub(s.wrapping_mul(0x53a9_b4fb));
        *x = s;
    }
    let (mut c0, mut c1) = (0usize, 10usize);
    let mut step = || {
        let r = g[c0].rotate_left(9).wrapping_add(g[c1].rotate_left(13));
        g[c0] = r;
        c0 = if c0 == 0 { 16 } else { c0 - 1 };
        c1 = if c1 == 0 { 16 } else { c1 - 1 };
        f64::from_bits(u64::from(0x3ff0_0000 | r >> 12) << 32 | u64::from(r << 20)) - 1.0
    };
    for _ in 0..9 {
        step();
    }
    for b in buf {
        step();
        *b ^= (step() * 256.0) as u8;
    }
}

// ---- AutoIt's LZ scheme, encoded: greedy matches up to 4 KiB back ----

struct BitWriter {
    out: Vec<u8>,
    word: u16,
    used: u32,
}

impl BitWriter {
    fn put(&mut self, v: u32, bits: u32) {
        for i in (0..bits).rev() {
            self.word = self.word << 1 | (v >> i & 1) as u16;
            self.used += 1;
            if self.used == 16 {
                self.out.extend(self.word.to_be_bytes());
                (self.word, self.used) = (0, 0);
            }
        }
    }
}

/// `EA05`/`EA06`, the size, then the bits (EA05 flags a match with 1, EA06
/// with 0); `cut` drops that many bytes of the bits at the end.
fn lz_compress(data: &[u8], ea06: bool, cut: usize) -> Vec<u8> {
    let mut w = BitWriter {
        out: Vec::new(),
        word: 0,
        used: 0,
    };
    let (lit, mat) = if ea06 { (1, 0) } else { (0, 1) };
    let mut pos = 0;
    while pos < data.len() {
        let (mut len, mut dist) = (0, 0);
        for d in 1..=pos.min(4096) {
            let mut l = 0;
            while pos + l < data.len() && data[pos + l] == data[pos + l - d] {
                l += 1;
            }
            if l > len {
                (len, dist) = (l, d);
            }
        }
        if len < 3 {
            w.put(lit, 1);
            w.put(u32::from(data[pos]), 8);
            pos += 1;
            continue;
        }
        w.put(mat, 1);
        w.put(dist as u32, 15);
        let mut l = (len - 3) as u32;
        for (bits, max) in [(2, 3), (3, 7), (5, 31)] {
            if l < max {
                w.put(l, bits);
                l = u32::MAX;
                break;
            }
            w.put(max, bits);
            l -= max;
        }
        if l != u32::MAX {
            while l >= 255 {
                w.put(255, 8);
                l -= 255;
            }
            w.put(l, 8);
        }
        pos += len;
    }
    w.put(0, 15);
    let mut bits = w.out;
    bits.truncate(bits.len() - cut);
    let magic: &[u8] = if ea06 { b"EA06" } else { b"EA05" };
    [magic, &(data.len() as u32).to_be_bytes(), &bits].concat()
}

// ---- AutoIt headers ----

const MAGIC: &[u8] = b"\xa3\x48\x4b\xbe\x98\x6c\x4a\xa9\x99\x4c\x53\x0a\x86\xd6\x48\x7dAU3!EA0";
/// The 16 bytes after the header (EA05's key).
const KEY: &[u8; 16] = b"moat-autoit-key!";

fn put32(v: &mut Vec<u8>, x: u32) {
    v.extend(x.to_le_bytes());
}

fn utf16(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(u16::to_le_bytes).collect()
}

/// One file: its tag (`>>>AUTOIT SCRIPT<<<` for EA06's script), name, and
/// data, compressed (cut short by `cut` bytes) or stored.
struct File<'a> {
    tag: &'a str,
    data: Vec<u8>,
    compressed: bool,
    cut: usize,
}

fn ea05(files: &[File<'_>]) -> Vec<u8> {
    let m4sum = KEY.iter().map(|&b| u32::from(b)).sum::<u32>();
    let mut v = [MAGIC, b"5", KEY].concat();
    for f in files {
        put32(&mut v, 0xceb0_6dff);
        let mut tag = f.tag.as_bytes().to_vec();
        let seed = tag.len() as u32 + 0xa25e;
        mt_stream(&mut tag, seed);
        put32(&mut v, tag.len() as u32 ^ 0x29bc);
        v.extend(tag);
        let mut name = b"C:\\moat.bin".to_vec();
        let seed = name.len() as u32 + 0xf25e;
        mt_stream(&mut name, seed);
        put32(&mut v, name.len() as u32 ^ 0x29ac);
        v.extend(name);
        let mut data = if f.compressed {
            lz_compress(&f.data, false, f.cut)
        } else {
            f.data.clone()
        };
        v.push(u8::from(f.compressed));
        put32(&mut v, data.len() as u32 ^ 0x45aa);
        put32(&mut v, f.data.len() as u32 ^ 0x45aa);
        put32(&mut v, 0x1234_5678 ^ 0xc3d2);
        v.extend([0u8; 16]);
        mt_stream(&mut data, 0x22af + m4sum);
        v.extend(data);
    }
    v.extend(b"AU3!EA05");
    v
}

fn ea06(files: &[File<'_>]) -> Vec<u8> {
    let mut v = [MAGIC, b"6", KEY].concat();
    for f in files {
        put32(&mut v, 0x52ca_436b);
        let mut tag = utf16(f.tag);
        let units = tag.len() as u32 / 2;
        lame_stream(&mut tag, (units + 0xb33f) as u16);
        put32(&mut v, units ^ 0xadbc);
        v.extend(tag);
        let mut name = utf16("C:\\moat.bin");
        let units = name.len() as u32 / 2;
        lame_stream(&mut name, (units + 0xf479) as u16);
        put32(&mut v, units ^ 0xf820);
        v.extend(name);
        let mut data = if f.compressed {
            lz_compress(&f.data, true, f.cut)
        } else {
            f.data.clone()
        };
        v.push(u8::from(f.compressed));
        put32(&mut v, data.len() as u32 ^ 0x87bc);
        put32(&mut v, f.data.len() as u32 ^ 0x87bc);
        put32(&mut v, 0x1234_5678 ^ 0xa685);
        v.extend([0u8; 16]);
        lame_stream(&mut data, 0x2477);
        v.extend(data);
    }
    v.extend(b"AU3!EA06");
    v
}

/// A PE that is only headers (one section), then `body`: AutoIt's
/// interpreter with its script appended.
fn pe_of(body: &[u8]) -> Vec<u8> {
    let mut pe = vec![0u8; 64 + 24];
    pe[..2].copy_from_slice(b"MZ");
    pe[60..64].copy_from_slice(&64u32.to_le_bytes());
    pe[64..68].copy_from_slice(b"PE\0\0");
    pe[64 + 6..64 + 8].copy_from_slice(&1u16.to_le_bytes());
    pe[64 + 20..64 + 22].copy_from_slice(&224u16.to_le_bytes());
    pe.extend_from_slice(&[0u8; 224 + 40]);
    pe.extend_from_slice(b"interpreter code and data");
    pe.extend_from_slice(body);
    pe
}

// ---- EA06 script tokens ----

struct Script {
    lines: u32,
    t: Vec<u8>,
}

impl Script {
    fn new() -> Script {
        Script {
            lines: 0,
            t: Vec::new(),
        }
    }
    fn id(&mut self, op: u8, id: u32) -> &mut Self {
        self.t.push(op);
        put32(&mut self.t, id);
        self
    }
    fn int(&mut self, v: u32) -> &mut Self {
        self.id(5, v)
    }
    fn int64(&mut self, v: u64) -> &mut Self {
        self.t.push(0x10);
        self.t.extend(v.to_le_bytes());
        self
    }
    fn double(&mut self, v: f64) -> &mut Self {
        self.t.push(0x20);
        self.t.extend(v.to_le_bytes());
        self
    }
    /// A name or string token of `units` UTF-16 units, XORed with their count.
    fn units(&mut self, op: u8, units: &[u16]) -> &mut Self {
        let n = units.len() as u32;
        self.t.push(op);
        put32(&mut self.t, n);
        for u in units {
            self.t.extend((u ^ n as u16).to_le_bytes());
        }
        self
    }
    fn text(&mut self, op: u8, s: &str) -> &mut Self {
        self.units(op, &s.encode_utf16().collect::<Vec<_>>())
    }
    fn op(&mut self, op: u8) -> &mut Self {
        self.t.push(op);
        self
    }
    fn eol(&mut self) -> &mut Self {
        self.lines += 1;
        self.op(0x7f)
    }
    fn bytes(&self) -> Vec<u8> {
        [&self.lines.to_le_bytes()[..], &self.t].concat()
    }
}

/// Doubles whose `%g` text is worth checking: rounding at six digits,
/// both notations and where they switch, signed zeros, NaNs, infinities,
/// subnormals, and pseudo-random bit patterns.
fn doubles() -> Vec<f64> {
    let mut v = vec![
        0.0,
        -0.0,
        1.0,
        -1.5,
        0.1,
        0.5,
        2.5,
        0.125,
        1e-4,
        9.99995e-5,
        1e-5,
        0.0001234565,
        123456.0,
        999999.0,
        999999.5,
        1234565.0,
        1e6,
        9999995.0,
        1e100,
        -2.5e-300,
        f64::MAX,
        f64::MIN_POSITIVE,
        5e-324,
        f64::NAN,
        -f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        std::f64::consts::PI,
        1.0 / 3.0,
        100.0,
        0.000999999,
    ];
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    for _ in 0..200 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.push(f64::from_bits(x));
        // And values of everyday magnitudes.
        v.push((x >> 11) as f64 / (1u64 << (x % 60)) as f64);
    }
    v
}

/// An EA06 script with every token ClamAV decompiles.
fn every_token() -> Vec<u8> {
    let mut s = Script::new();
    for id in 0..45 {
        s.id(0, id);
    }
    s.eol();
    for id in 0..406 {
        s.id(1, id).op(0x47).op(0x48);
        if id % 8 == 7 {
            s.eol();
        }
    }
    s.eol();
    for v in [0, 1, 0x7fff_ffff, 0x8000_0000, 0xffff_ffff, 0xdead_beef] {
        s.int(v).op(0x40);
    }
    s.eol();
    for v in [0, 1, u64::MAX, 0x0123_4567_89ab_cdef] {
        s.int64(v).op(0x40);
    }
    s.eol();
    for (i, v) in doubles().into_iter().enumerate() {
        s.double(v);
        if i % 10 == 9 {
            s.eol();
        }
    }
    s.eol();
    for op in 0x40..=0x58 {
        s.op(op);
    }
    s.eol();
    // Each kind of name and string (0x30..0x37), empty ones too.
    for op in 0x30..=0x37 {
        s.text(op, "Name_1").text(op, "").eol();
    }
    s.text(0x34, "_MyFunc")
        .op(0x47)
        .text(0x33, "sPath")
        .op(0x48)
        .eol();
    s.text(0x36, "C:\\Program Files\\moat \"quoted\" ")
        .op(0x4d)
        .text(0x36, "Привет, мир")
        .text(0x36, "mixed ÄÖÜ ascii text")
        .text(0x36, "ab")
        .text(0x36, "a")
        .eol();
    // A byte order mark, and a long run (matches with long lengths).
    s.units(0x36, &[0xfeff, 0x41, 0x42, 0x43]).eol();
    s.text(0x36, &"A".repeat(1000))
        .text(0x36, &"xyz".repeat(400));
    s.eol();
    s.bytes()
}

#[test]
fn autoit_files_extract_to_the_bytes_clamscan_extracts() {
    let dir = tempfile::tempdir().unwrap();
    let clam = read(Path::new(CLAM_EXE));
    let script = every_token();
    let mut cases: Vec<(&str, Vec<u8>, usize)> = vec![
        ("clam.ea05.exe", read(Path::new(CLAM_EA05)), 2),
        ("clam.ea06.exe", read(Path::new(CLAM_EA06)), 2),
    ];
    let tag = ">>>AUTOIT SCRIPT<<<";
    let file = |tag, data: &[u8], compressed, cut| File {
        tag,
        data: data.to_vec(),
        compressed,
        cut,
    };
    let ea06_files = ea06(&[
        file(tag, &script, true, 0),
        file(tag, &script, false, 0),
        file(">>>AUTOIT NO CMDEXECUTE<<<", b"#NoTrayIcon", true, 0),
        file("C:\\clam.exe", &clam, true, 0),
        file("C:\\clam.exe", &clam, false, 0),
        file("C:\\empty.txt", b"", false, 0),
        file(
            "C:\\runs.bin",
            &[vec![0u8; 3000], b"x".repeat(700)].concat(),
            true,
            0,
        ),
    ]);
    cases.push(("ea06.exe", pe_of(&ea06_files), 6));
    cases.push(("ea06.a3x", ea06_files, 6));
    let text = b"#include <File.au3>\r\nMsgBox(0, \"moat\", \"AutoIt v3\")\r\n".repeat(30);
    let ea05_files = ea05(&[
        file(">AUTOIT UNICODE SCRIPT<", &text, true, 0),
        file(">AUTOIT SCRIPT<", &text, false, 0),
        file("C:\\clam.exe", &clam, true, 0),
        file("C:\\empty.txt", b"", false, 0),
        file(
            "C:\\runs.bin",
            &[vec![0u8; 3000], b"x".repeat(700)].concat(),
            true,
            0,
        ),
    ]);
    cases.push(("ea05.exe", pe_of(&ea05_files), 4));
    cases.push(("ea05.a3x", ea05_files, 4));
    // Cut short: the partial output is the file, in ClamAV as here (EA05's
    // decoder also writes the zero a failed literal read gives).
    // Noise is all literals: a cut one is where EA05 writes that zero.
    let mut x: u32 = 0x9e37_79b9;
    let noise: Vec<u8> = (0..2000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect();
    let name = "C:\\noise.bin";
    for (cut, names) in [
        (
            1,
            [
                "ea05-cut1.exe",
                "ea06-cut1.exe",
                "ea05-noise1.exe",
                "ea06-noise1.exe",
            ],
        ),
        (
            7,
            [
                "ea05-cut7.exe",
                "ea06-cut7.exe",
                "ea05-noise7.exe",
                "ea06-noise7.exe",
            ],
        ),
    ] {
        let [a, b, c, d] = names;
        cases.push((a, pe_of(&ea05(&[file(tag, &text, true, cut)])), 1));
        cases.push((b, pe_of(&ea06(&[file(tag, &script, true, cut)])), 1));
        cases.push((c, pe_of(&ea05(&[file(name, &noise, true, cut)])), 1));
        cases.push((d, pe_of(&ea06(&[file(name, &noise, true, cut)])), 1));
    }

    let mut sigs: BTreeMap<String, String> = BTreeMap::new();
    let mut hdb = String::new();
    let mut files = Vec::new();
    let mut expect = Vec::new();
    for (name, content, count) in &cases {
        let out = extracted(content);
        assert_eq!(
            out.len(),
            *count,
            "{name}: {:?}",
            out.iter().map(|(l, _)| l).collect::<Vec<_>>()
        );
        for (i, (location, bytes)) in out.iter().enumerate() {
            let md5 = md5_hex(bytes);
            let sig = sigs
                .entry(md5.clone())
                .or_insert_with(|| {
                    let sig = format!("Moat.AutoIt.{}.{i}", name.replace(['.', '-'], "_"));
                    hdb.push_str(&format!("{md5}:{}:{sig}\n", bytes.len()));
                    sig
                })
                .clone();
            expect.push((name.to_string(), sig, location.clone()));
        }
        let path = dir.path().join(name);
        std::fs::write(&path, content).unwrap();
        if let Ok(keep) = std::env::var("AUTOIT_KEEP") {
            std::fs::write(Path::new(&keep).join(name), content).unwrap();
            for (i, (_, bytes)) in out.iter().enumerate() {
                std::fs::write(Path::new(&keep).join(format!("{name}.moat.{i}")), bytes).unwrap();
            }
        }
        files.push(path);
    }
    let found = clamscan(&hdb, &files);
    for (name, sig, location) in &expect {
        assert!(
            found.contains(&(name.clone(), sig.clone())),
            "clamscan's {location} of {name} differs from moat's (found: {found:?})"
        );
    }
}
