//! SIS extraction against ClamAV's (apt `clamav`): the MD5 of every file
//! moat extracts from a Symbian package becomes an `.hdb` signature, and
//! clamscan must find it in that package, which it can only do if its own
//! extraction (`libclamav/sis.c`) produced exactly the same bytes (ClamAV
//! scans each extracted file as a file of its own). The files: Debian's
//! `clamav-testfiles` `clam.sis` (clam.exe, compressed), and packages built
//! here with the writer below (the EPOC format as ClamAV reads it; clamscan
//! is the judge): compressed and stored files, several files and languages,
//! every record type, ClamAV's quirks (a language-file record skips one
//! byte per language, the inflate buffer is 3 times the compressed size or
//! the original size), broken and cut-short records, and a record table
//! larger than ClamAV's read buffer. Packages ClamAV does not extract
//! yield nothing here either, and clamscan must not find their files: a
//! Symbian 9 package, and a stored one whose first kilobyte holds an
//! executable (typed an executable, not SIS). `SIS_KEEP=DIR` keeps the files and moat's extractions there,
//! to compare with what `clamscan --debug --leave-temps` leaves.

mod common;

use common::{clamscan, md5_hex, noise, read, walked};
use moat_extract::Problem;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

const CLAM_SIS: &str = "/usr/share/clamav-testfiles/clam.sis";
const CLAM_EXE: &str = "/usr/share/clamav-testfiles/clam.exe";

/// The files moat extracts from the package `file` (its direct members,
/// `f>sisNN`), in order, and the walk's problems.
fn extracted(file: &[u8]) -> (Vec<Problem>, Vec<(String, Vec<u8>)>) {
    let (problems, seen) = walked(file);
    let members = seen
        .into_iter()
        .filter(|(l, _)| {
            l.strip_prefix("f>")
                .is_some_and(|n| n.starts_with("sis") && !n.contains('>'))
        })
        .collect();
    (problems, members)
}

fn zlib(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn put32(v: &mut Vec<u8>, x: u32) {
    v.extend(x.to_le_bytes());
}

/// One language's version of a file: `data` (as stored: compressed or
/// not) placed after the records, or an absolute `ptr`; the length and
/// original length the record declares.
struct Ver {
    data: Option<Vec<u8>>,
    ptr: u32,
    len: u32,
    olen: u32,
}

/// A version of `plain` compressed, its original length declared.
fn packed(plain: &[u8]) -> Ver {
    let z = zlib(plain);
    Ver {
        len: z.len() as u32,
        olen: plain.len() as u32,
        data: Some(z),
        ptr: 0,
    }
}

/// A version stored as it is.
fn stored(plain: &[u8]) -> Ver {
    Ver {
        len: plain.len() as u32,
        olen: plain.len() as u32,
        data: Some(plain.to_vec()),
        ptr: 0,
    }
}

/// An EPOC SIS file (ER6 layout) as ClamAV reads it: UIDs, the 68-byte
/// header, the language list, the records, then the files' data.
struct Sis {
    langs: u16,
    flags: u16,
    records: u16,
    /// The record count the header declares, when not `records`.
    declared: Option<u16>,
    recs: Vec<u8>,
    data: Vec<u8>,
    /// Where in `recs` an offset into `data` is to be made absolute.
    fixups: Vec<usize>,
    /// The data before the records rather than after them.
    data_first: bool,
}

impl Sis {
    fn new(langs: u16, stored: bool) -> Sis {
        Sis {
            langs,
            flags: if stored { 8 } else { 0 },
            records: 0,
            declared: None,
            recs: Vec::new(),
            data: Vec::new(),
            fixups: Vec::new(),
            data_first: false,
        }
    }

    /// A file record (`PKGfile`) of type `ftype` with one version per language.
    fn file(&mut self, ftype: u32, vers: Vec<Ver>) -> &mut Self {
        assert_eq!(vers.len(), usize::from(self.langs));
        self.records += 1;
        for w in [0, ftype, 0, 0, 0, 0, 0] {
            put32(&mut self.recs, w);
        }
        let mut ptrs = Vec::new();
        for v in &vers {
            put32(&mut self.recs, v.len);
        }
        for v in &vers {
            match &v.data {
                Some(d) => {
                    self.fixups.push(self.recs.len());
                    ptrs.push(self.data.len() as u32);
                    self.data.extend(d);
                }
                None => ptrs.push(v.ptr),
            }
            put32(&mut self.recs, *ptrs.last().unwrap());
        }
        for v in &vers {
            put32(&mut self.recs, v.olen);
        }
        // The MIME type's length and offset, which ClamAV skips.
        self.recs.extend([0u8; 8]);
        self
    }

    /// A record of other words (and bytes): a language file, an option, a
    /// condition.
    fn record(&mut self, words: &[u32], bytes: &[u8]) -> &mut Self {
        self.records += 1;
        for &w in words {
            put32(&mut self.recs, w);
        }
        self.recs.extend(bytes);
        self
    }

    fn bytes(&self) -> Vec<u8> {
        let plangs = 84u32;
        let (pfiles, pdata) = if self.data_first {
            let pdata = plangs + 2 * u32::from(self.langs);
            (pdata + self.data.len() as u32, pdata)
        } else {
            let pfiles = plangs + 2 * u32::from(self.langs);
            (pfiles, pfiles + self.recs.len() as u32)
        };
        let mut v = Vec::new();
        for uid in [0x1000_0001u32, 0x1000_3a12, 0x1000_0419, 0x1234_5678] {
            put32(&mut v, uid);
        }
        let files = self.declared.unwrap_or(self.records);
        for h in [0u16, self.langs, files, 0, 0, 0, 0, 0] {
            v.extend(h.to_le_bytes());
        }
        put32(&mut v, 200);
        for h in [self.flags, 0, 1, 0] {
            v.extend(h.to_le_bytes());
        }
        for w in [0, plangs, pfiles, 0, 0, 0, 0, 0, 0, 0] {
            put32(&mut v, w);
        }
        assert_eq!(v.len(), 84);
        for l in 0..self.langs {
            v.extend((l + 1).to_le_bytes());
        }
        let mut recs = self.recs.clone();
        for &at in &self.fixups {
            let rel = u32::from_le_bytes(recs[at..at + 4].try_into().unwrap());
            recs[at..at + 4].copy_from_slice(&(pdata + rel).to_le_bytes());
        }
        if self.data_first {
            v.extend(&self.data);
            v.extend(recs);
        } else {
            v.extend(recs);
            v.extend(&self.data);
        }
        v
    }
}

/// Text that compresses well but not absurdly, distinct per `seed`.
fn text(seed: u32, lines: usize) -> Vec<u8> {
    (0..lines)
        .map(|i| format!("moat sis test {seed}: line {i} of {lines}\r\n"))
        .collect::<String>()
        .into_bytes()
}

/// The packages built here: (name, bytes, members moat must extract,
/// whether the walk must report a problem).
fn built() -> Vec<(&'static str, Vec<u8>, usize, bool)> {
    let clam = read(Path::new(CLAM_EXE));
    let mut cases = Vec::new();

    // Several compressed files, one language.
    let mut s = Sis::new(1, false);
    s.file(0, vec![packed(&clam)])
        .file(1, vec![packed(&text(1, 40))])
        .file(3, vec![packed(&noise(3000, 7))]);
    cases.push(("compressed.sis", s.bytes(), 3, false));

    // Stored files (clam.exe past the first 1024 bytes, which ClamAV's
    // file typing reads: an executable there makes the package an
    // executable to it, below).
    let mut s = Sis::new(1, true);
    s.file(0, vec![stored(&text(2, 40))])
        .file(0, vec![stored(&clam)])
        .file(0, vec![stored(b"a stored file")]);
    cases.push(("stored.sis", s.bytes(), 3, false));
    let mut s = Sis::new(1, true);
    s.file(0, vec![stored(&clam)])
        .file(0, vec![stored(b"a stored file")]);
    cases.push(("stored-exe-first.sis", s.bytes(), 0, false));

    // The inflate buffer: 3 times the compressed length when the original
    // length fits in it (a wrong original length does not matter then),
    // else the original length (which must then be large enough).
    let zeros = vec![0u8; 100_000];
    let mut s = Sis::new(1, false);
    // Noise: stored deflate blocks, smaller than 3 times their size.
    let mut wrong = packed(&noise(800, 5));
    wrong.olen = 0;
    let mut exact = packed(&zeros);
    exact.olen = zeros.len() as u32;
    let mut short = packed(&zeros);
    short.olen = 10;
    let mut one_less = packed(&[&zeros[..], b"x"].concat());
    one_less.olen = zeros.len() as u32;
    s.file(0, vec![wrong])
        .file(0, vec![exact])
        .file(0, vec![short])
        .file(0, vec![one_less])
        .file(0, vec![packed(&text(4, 5))]);
    cases.push(("buffer.sis", s.bytes(), 3, true));

    // Three languages; every kind of record.
    let mut s = Sis::new(3, false);
    let empty = Ver {
        data: None,
        ptr: 0,
        len: 0,
        olen: 0,
    };
    s.file(0, vec![packed(&text(10, 9)), empty, packed(&text(11, 9))])
        // Not installed files (FTnull) are not extracted.
        .file(
            4,
            vec![
                packed(&text(12, 9)),
                packed(&text(13, 9)),
                packed(&text(14, 9)),
            ],
        )
        // A language-file record: ClamAV skips 3 bytes (one per language).
        .record(&[1], b"xyz")
        // An option record: 2 options, 2 * 3 * 8 bytes.
        .record(&[2, 2], &[0x55; 48])
        // #if and #elsif skip their size, #else and #endif and unknown
        // types nothing.
        .record(&[3, 6], b"cond:1")
        .record(&[4, 0], b"")
        .record(&[5], b"")
        .record(&[6], b"")
        .record(&[77], b"")
        .file(
            2,
            vec![packed(&text(15, 9)), packed(&noise(500, 3)), packed(&clam)],
        );
    cases.push(("langs.sis", s.bytes(), 5, false));

    // Broken versions are skipped and later ones still extracted.
    let mut s = Sis::new(1, false);
    let good = zlib(&text(20, 30));
    let mut bad_sum = good.clone();
    let n = bad_sum.len();
    bad_sum[n - 1] ^= 1;
    let cut = good[..good.len() - 6].to_vec();
    let ver = |d: Vec<u8>, olen: usize| Ver {
        len: d.len() as u32,
        olen: olen as u32,
        data: Some(d),
        ptr: 0,
    };
    s.file(
        0,
        vec![Ver {
            data: None,
            ptr: 10,
            len: 50,
            olen: 0,
        }],
    )
    .file(
        0,
        vec![Ver {
            data: None,
            ptr: 100_000,
            len: 50,
            olen: 0,
        }],
    )
    .file(0, vec![ver(bad_sum, 0)])
    .file(0, vec![ver(cut, 0)])
    .file(0, vec![ver(b"not zlib at all".to_vec(), 0)])
    .file(0, vec![packed(&text(21, 30))])
    // What follows the zlib stream is ignored.
    .file(
        0,
        vec![ver(
            [&zlib(&text(22, 30))[..], b"trailing"].concat(),
            text(22, 30).len(),
        )],
    );
    cases.push(("broken.sis", s.bytes(), 2, true));

    // The header declares more records than there are: ClamAV reads the
    // data after them as records (text: words of unknown types) to the end.
    let mut s = Sis::new(1, true);
    s.file(0, vec![stored(&text(30, 12))])
        .file(0, vec![stored(&text(31, 12))]);
    s.declared = Some(1000);
    cases.push(("cut.sis", s.bytes(), 2, true));
    // The file cut in the middle of its second record (the data first).
    let mut s = Sis::new(1, false);
    s.data_first = true;
    s.file(0, vec![packed(&text(32, 3))])
        .file(0, vec![packed(&text(33, 3))]);
    let whole = s.bytes();
    cases.push((
        "cut-records.sis",
        whole[..whole.len() - 20].to_vec(),
        1,
        true,
    ));

    // A record table far larger than ClamAV's 8 KiB read buffer, and a
    // condition that skips across it.
    let mut s = Sis::new(2, false);
    for i in 0..300 {
        s.file(
            0,
            vec![packed(&text(100 + i, 2)), packed(&text(1000 + i, 2))],
        );
        if i == 150 {
            s.record(&[3, 20_000], &noise(20_000, 9));
        }
    }
    cases.push(("many.sis", s.bytes(), 600, false));

    cases
}

/// A Symbian 9 package (first UID 0x10201a7a) holding clam.exe compressed
/// in the structure ClamAV's `real_scansis9x` walks (Contents,
/// ControllerChecksum, DataChecksum, Compressed controller, Data, arrays of
/// DataUnits and FileData, Compressed), with `0x10000419` at offset 12 so
/// that ClamAV's file typing calls it SIS (its type signature looks at
/// offsets 8 to 20) while its third UID is not the EPOC one.
fn sis9x(clam: &[u8]) -> Vec<u8> {
    fn field(t: u32, body: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        put32(&mut v, t);
        put32(&mut v, body.len() as u32);
        v.extend(body);
        while v.len() % 4 != 0 {
            v.push(0);
        }
        v
    }
    fn array(t: u32, items: &[Vec<u8>]) -> Vec<u8> {
        let mut body = Vec::new();
        put32(&mut body, t);
        for it in items {
            // Array elements are fields without their type.
            body.extend(&it[4..]);
        }
        field(2, &body)
    }
    let z = zlib(clam);
    let mut comp = Vec::new();
    put32(&mut comp, 1);
    comp.extend((clam.len() as u64).to_le_bytes());
    comp.extend(&z);
    let file_data = field(32, &field(3, &comp));
    let data_unit = field(31, &array(32, &[file_data]));
    let data = field(30, &array(31, &[data_unit]));
    let mut controller = Vec::new();
    put32(&mut controller, 0);
    controller.extend(0u64.to_le_bytes());
    let contents = [
        field(34, &[0; 4]),
        field(35, &[0; 4]),
        field(3, &controller),
        data,
    ]
    .concat();
    let mut v = Vec::new();
    for uid in [0x1020_1a7au32, 0, 0x1000_0001, 0x1000_0419] {
        put32(&mut v, uid);
    }
    v.extend(field(12, &contents));
    v
}

#[test]
fn sis_files_extract_to_the_bytes_clamscan_extracts() {
    let dir = tempfile::tempdir().unwrap();
    let clam = read(Path::new(CLAM_EXE));
    let mut cases = vec![("clam.sis", read(Path::new(CLAM_SIS)), 1, false)];
    cases.extend(built());

    let mut sigs: BTreeMap<String, String> = BTreeMap::new();
    let mut hdb = String::new();
    let mut files = Vec::new();
    let mut expect = Vec::new();
    for (name, content, count, broken) in &cases {
        let (problems, out) = extracted(content);
        assert_eq!(
            out.len(),
            *count,
            "{name}: {:?}",
            out.iter().map(|(l, _)| l).collect::<Vec<_>>()
        );
        assert_eq!(!problems.is_empty(), *broken, "{name}: {problems:?}");
        for (i, (location, bytes)) in out.iter().enumerate() {
            assert_eq!(location, &format!("f>sis{i:02}"), "{name}");
            let md5 = md5_hex(bytes);
            let sig = sigs
                .entry(md5.clone())
                .or_insert_with(|| {
                    let sig = format!("Moat.Sis.{}.{i}", name.replace(['.', '-'], "_"));
                    hdb.push_str(&format!("{md5}:{}:{sig}\n", bytes.len()));
                    sig
                })
                .clone();
            expect.push((name.to_string(), sig, location.clone()));
        }
        if name == &"clam.sis" {
            assert_eq!(out[0].1, clam, "clam.sis holds clam.exe");
        }
        let path = dir.path().join(name);
        std::fs::write(&path, content).unwrap();
        if let Ok(keep) = std::env::var("SIS_KEEP") {
            std::fs::write(Path::new(&keep).join(name), content).unwrap();
            for (i, (_, bytes)) in out.iter().enumerate() {
                std::fs::write(Path::new(&keep).join(format!("{name}.moat.{i}")), bytes).unwrap();
            }
        }
        files.push(path);
    }

    // Symbian 9: nothing, here as in ClamAV.
    let nine = sis9x(&clam);
    let (problems, out) = extracted(&nine);
    assert!(
        out.is_empty() && problems.is_empty(),
        "{out:?} {problems:?}"
    );
    let nine_path = dir.path().join("nine.sis");
    std::fs::write(&nine_path, &nine).unwrap();
    if let Ok(keep) = std::env::var("SIS_KEEP") {
        std::fs::write(Path::new(&keep).join("nine.sis"), &nine).unwrap();
    }
    files.push(nine_path);

    let found = clamscan(&hdb, &files);
    for (name, sig, location) in &expect {
        assert!(
            found.contains(&(name.clone(), sig.clone())),
            "clamscan's {location} of {name} differs from moat's (found in it: {:?})",
            found.iter().filter(|(f, _)| f == name).collect::<Vec<_>>()
        );
    }
    // Each package's detections are those of the files moat extracts.
    for (file, sig) in &found {
        assert!(
            expect.iter().any(|(n, s, _)| n == file && s == sig),
            "clamscan found {sig} in {file}, which moat does not extract"
        );
    }
}
