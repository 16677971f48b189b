//! Walker tests over archives built here with the format crates.

use crate::*;
use std::io::{Cursor, Write};
use zip::write::SimpleFileOptions;

const EICAR: &[u8] = br"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";

/// What the visitor saw: (location, depth, content).
pub(crate) type Seen = Vec<(String, u32, Vec<u8>)>;

pub(crate) fn run(data: Vec<u8>, name: &str, limits: &Limits) -> (WalkReport, Seen) {
    run_blob(&Blob::from_vec(data), name, limits)
}

fn run_blob(blob: &Blob, name: &str, limits: &Limits) -> (WalkReport, Seen) {
    let mut seen = Seen::new();
    let report = walk::<std::convert::Infallible>(blob, name, limits, &mut |e| {
        let mut content = vec![0u8; e.data.len() as usize];
        e.data.read_at(0, &mut content).unwrap();
        seen.push((e.location.to_string(), e.depth, content));
        Ok(())
    })
    .unwrap();
    (report, seen)
}

fn locations(seen: &Seen) -> Vec<&str> {
    seen.iter().map(|(l, _, _)| l.as_str()).collect()
}

fn zip_of(members: &[(&str, &[u8])]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    for (name, data) in members {
        w.start_file(*name, SimpleFileOptions::default()).unwrap();
        w.write_all(data).unwrap();
    }
    w.finish().unwrap().into_inner()
}

fn stored_zip_of(members: &[(&str, &[u8])]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let opts = SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (name, data) in members {
        w.start_file(*name, opts).unwrap();
        w.write_all(data).unwrap();
    }
    w.finish().unwrap().into_inner()
}

/// A tar whose names are written raw (the builder would refuse `..`).
fn tar_of(members: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in members {
        let mut h = tar::Header::new_ustar();
        let raw = name.as_bytes();
        h.as_old_mut().name[..raw.len()].copy_from_slice(raw);
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_cksum();
        b.append(&h, *data).unwrap();
    }
    b.into_inner().unwrap()
}

fn gz(data: &[u8], fname: Option<&str>) -> Vec<u8> {
    let mut b = flate2::GzBuilder::new();
    if let Some(f) = fname {
        b = b.filename(f);
    }
    let mut e = b.write(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn bz2(data: &[u8]) -> Vec<u8> {
    let mut e = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn xz(data: &[u8]) -> Vec<u8> {
    let mut e =
        lzma_rust2::XzWriter::new(Vec::new(), lzma_rust2::XzOptions::with_preset(1)).unwrap();
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn zst(data: &[u8]) -> Vec<u8> {
    zstd::stream::encode_all(data, 1).unwrap()
}

fn small_tmp_limits(dir: &std::path::Path) -> Limits {
    Limits {
        spool_threshold: 0,
        tmp_dir: dir.to_path_buf(),
        ..Limits::default()
    }
}

pub(crate) fn limit_whats(r: &WalkReport) -> Vec<&str> {
    r.problems
        .iter()
        .filter_map(|p| match p {
            Problem::LimitsExceeded { what, .. } => Some(what.as_str()),
            _ => None,
        })
        .collect()
}

#[test]
fn zip_members_are_visited_with_locations() {
    let z = zip_of(&[("a.txt", b"alpha"), ("dir/", b""), ("dir/b.bin", EICAR)]);
    let (r, seen) = run(z, "up.zip", &Limits::default());
    assert!(r.problems.is_empty(), "{:?}", r.problems);
    assert_eq!(locations(&seen), ["up.zip>a.txt", "up.zip>dir/b.bin"]);
    assert_eq!(seen[1].1, 1);
    assert_eq!(seen[1].2, EICAR);
    assert_eq!(r.members, 2);
    assert_eq!(r.expanded_bytes, 5 + EICAR.len() as u64);
}

#[test]
fn entry_sha256_matches_content() {
    let z = zip_of(&[("a", b"abc")]);
    let mut digest = None;
    walk::<()>(&Blob::from_vec(z), "z", &Limits::default(), &mut |e| {
        digest = Some(e.sha256);
        Ok(())
    })
    .unwrap();
    assert_eq!(
        digest.map(|d| d[..4].to_vec()),
        Some(vec![0xba, 0x78, 0x16, 0xbf])
    );
}

#[test]
fn tar_regular_files_only() {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Directory);
    h.set_size(0);
    b.append_data(&mut h, "d/", &[][..]).unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    b.append_link(&mut h, "d/link", "/etc/passwd").unwrap();
    let long = format!("{}/x.txt", "deep".repeat(60));
    let mut h = tar::Header::new_gnu();
    h.set_size(3);
    b.append_data(&mut h, &long, &b"abc"[..]).unwrap();
    let t = b.into_inner().unwrap();
    let (r, seen) = run(t, "a.tar", &Limits::default());
    assert!(r.problems.is_empty(), "{:?}", r.problems);
    assert_eq!(locations(&seen), [format!("a.tar>{long}").as_str()]);
    assert_eq!(seen[0].2, b"abc");
}

#[test]
fn gzip_uses_fname_or_derived_name() {
    let (r, seen) = run(gz(b"hello", Some("orig.txt")), "x.gz", &Limits::default());
    assert!(r.problems.is_empty());
    assert_eq!(locations(&seen), ["x.gz>orig.txt"]);
    assert_eq!(seen[0].2, b"hello");
    let (_, seen) = run(gz(b"hello", None), "notes.txt.gz", &Limits::default());
    assert_eq!(locations(&seen), ["notes.txt.gz>notes.txt"]);
    let (_, seen) = run(gz(b"hello", None), "upload", &Limits::default());
    assert_eq!(locations(&seen), ["upload>data"]);
}

#[test]
fn multi_member_gzip_is_read_fully() {
    let mut data = gz(b"first ", None);
    data.extend(gz(b"second", None));
    let (r, seen) = run(data, "m.gz", &Limits::default());
    assert!(r.problems.is_empty(), "{:?}", r.problems);
    assert_eq!(seen[0].2, b"first second");
}

#[test]
fn bzip2_xz_zstd() {
    for (data, name, inner) in [
        (bz2(EICAR), "e.bz2", "e.bz2>e"),
        (xz(EICAR), "e.xz", "e.xz>e"),
        (zst(EICAR), "e.zst", "e.zst>e"),
    ] {
        let (r, seen) = run(data, name, &Limits::default());
        assert!(r.problems.is_empty(), "{name}: {:?}", r.problems);
        assert_eq!(locations(&seen), [inner]);
        assert_eq!(seen[0].2, EICAR);
    }
}

#[test]
fn nested_zip_in_zip_and_tar_gz_in_zip() {
    let inner_tar = tar_of(&[("bin/payload", EICAR)]);
    let tgz = gz(&inner_tar, None);
    let inner_zip = zip_of(&[("deep.txt", b"deep")]);
    let outer = zip_of(&[("inner.zip", &inner_zip), ("pkg.tar.gz", &tgz)]);
    let (r, seen) = run(outer, "outer.zip", &Limits::default());
    assert!(r.problems.is_empty(), "{:?}", r.problems);
    assert_eq!(
        locations(&seen),
        [
            "outer.zip>inner.zip",
            "outer.zip>inner.zip>deep.txt",
            "outer.zip>pkg.tar.gz",
            "outer.zip>pkg.tar.gz>pkg.tar",
            "outer.zip>pkg.tar.gz>pkg.tar>bin/payload",
        ]
    );
    let depths: Vec<u32> = seen.iter().map(|s| s.1).collect();
    assert_eq!(depths, [1, 2, 1, 2, 3]);
    assert_eq!(seen[4].2, EICAR);
}

#[test]
fn gz_of_tar() {
    let t = tar_of(&[("a", b"1"), ("b", b"2")]);
    let (r, seen) = run(gz(&t, None), "x.tgz", &Limits::default());
    assert!(r.problems.is_empty(), "{:?}", r.problems);
    assert_eq!(
        locations(&seen),
        ["x.tgz>x.tar", "x.tgz>x.tar>a", "x.tgz>x.tar>b"]
    );
}

/// 300 MiB of zeros deflated into a ~300 KiB zip, spooled to disk: the walk
/// gives up at the ratio limit, having inflated only a few MiB.
#[test]
fn zip_bomb_is_stopped_by_ratio() {
    let dir = tempfile::tempdir().unwrap();
    let file = tempfile::tempfile_in(dir.path()).unwrap();
    let mut w = zip::ZipWriter::new(file);
    let opts = SimpleFileOptions::default()
        .compression_level(Some(1))
        .large_file(true);
    w.start_file("zeros.bin", opts).unwrap();
    let chunk = vec![0u8; 1 << 20];
    for _ in 0..300 {
        w.write_all(&chunk).unwrap();
    }
    w.start_file("after.txt", SimpleFileOptions::default())
        .unwrap();
    w.write_all(b"after the bomb").unwrap();
    let file = w.finish().unwrap();
    let len = file.metadata().unwrap().len();
    assert!(len < 4 << 20, "bomb is small: {len}");
    let blob = Blob::File {
        file: std::sync::Arc::new(file),
        len,
    };
    let limits = small_tmp_limits(dir.path());
    let (r, seen) = run_blob(&blob, "bomb.zip", &limits);
    assert_eq!(limit_whats(&r), ["ratio"]);
    assert_eq!(r.problems[0].location(), "bomb.zip>zeros.bin");
    // Never inflated past the ratio cap (plus one chunk).
    assert!(
        r.expanded_bytes <= len * limits.max_ratio + (64 << 10),
        "{}",
        r.expanded_bytes
    );
    assert!(r.expanded_bytes < 300 << 20);
    // The bomb was not visited; the member after it was.
    assert_eq!(locations(&seen), ["bomb.zip>after.txt"]);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn gzip_bomb_is_stopped_by_ratio() {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let chunk = vec![0u8; 1 << 20];
    for _ in 0..64 {
        e.write_all(&chunk).unwrap();
    }
    let g = e.finish().unwrap();
    let (r, seen) = run(g.clone(), "z.gz", &Limits::default());
    assert_eq!(limit_whats(&r), ["ratio"]);
    assert!(seen.is_empty());
    assert!(r.expanded_bytes <= (g.len() as u64 * 200).max(1 << 20) + (64 << 10));
}

/// Many members that each pass the ratio check still stop at the walk-wide
/// expanded-bytes budget, and the walk stops there.
#[test]
fn expanded_bytes_budget_stops_the_walk() {
    let data = vec![7u8; 4 << 20];
    let members: Vec<(String, &[u8])> = (0..10).map(|i| (format!("m{i}"), &data[..])).collect();
    let refs: Vec<(&str, &[u8])> = members.iter().map(|(n, d)| (n.as_str(), *d)).collect();
    let z = zip_of(&refs);
    let limits = Limits {
        max_expanded_bytes: 10 << 20,
        max_ratio: u64::MAX,
        ..Limits::default()
    };
    let (r, seen) = run(z, "big.zip", &limits);
    assert_eq!(limit_whats(&r), ["expanded_bytes"]);
    assert_eq!(seen.len(), 2);
    assert!(r.expanded_bytes <= 10 << 20);
}

#[test]
fn member_size_limit_skips_member_only() {
    let big = vec![1u8; 3 << 20];
    let z = stored_zip_of(&[("big", &big), ("small", b"s")]);
    let limits = Limits {
        max_member_size: 1 << 20,
        ..Limits::default()
    };
    let (r, seen) = run(z, "z.zip", &limits);
    assert_eq!(limit_whats(&r), ["member_size"]);
    assert_eq!(locations(&seen), ["z.zip>small"]);
}

fn eicar_zip_encrypted(method: u16) -> Vec<u8> {
    let mut z = stored_zip_of(&[("eicar.com", EICAR), ("readme.txt", b"plain")]);
    // Set the "encrypted" flag (bit 0) and the method in the first local
    // header and the first central-directory header.
    let local = 0;
    let central = z.windows(4).position(|w| w == b"PK\x01\x02").unwrap();
    for (hdr, flag_at) in [(local, 6), (central, 8)] {
        z[hdr + flag_at] |= 1;
        z[hdr + flag_at + 2..hdr + flag_at + 4].copy_from_slice(&method.to_le_bytes());
    }
    z
}

#[test]
fn encrypted_member_is_reported_and_skipped() {
    for method in [0u16 /* ZipCrypto over stored */, 99 /* AES */] {
        let (r, seen) = run(eicar_zip_encrypted(method), "enc.zip", &Limits::default());
        assert_eq!(
            r.problems,
            [Problem::Encrypted {
                location: "enc.zip>eicar.com".into()
            }],
            "method {method}"
        );
        assert_eq!(r.problems[0].reason(), moat_core::Reason::Encrypted);
        assert_eq!(locations(&seen), ["enc.zip>readme.txt"]);
    }
}

fn assert_corrupt(r: &WalkReport) {
    assert!(
        r.problems
            .iter()
            .any(|p| matches!(p, Problem::Corrupt { .. })),
        "{:?}",
        r.problems
    );
}

#[test]
fn truncated_zip_is_corrupt_and_earlier_members_seen() {
    let z = stored_zip_of(&[("first", b"first member"), ("second", &[9u8; 4000])]);
    let cut = z.len() / 2;
    let (r, seen) = run(z[..cut].to_vec(), "t.zip", &Limits::default());
    assert_corrupt(&r);
    assert_eq!(seen[0].0, "t.zip>first");
    assert_eq!(seen[0].2, b"first member");
    // Every prefix that still has the magic: no panic, never a clean report.
    let z = zip_of(&[("a", EICAR), ("b", &[3u8; 3000])]);
    for cut in 4..z.len() {
        let (r, _) = run(z[..cut].to_vec(), "t.zip", &Limits::default());
        assert!(!r.problems.is_empty(), "cut at {cut}");
    }
}

#[test]
fn truncated_gzip_is_corrupt_and_partial_content_visited() {
    let data: Vec<u8> = (0..200_000u32).flat_map(|i| i.to_le_bytes()).collect();
    let g = gz(&data, Some("d"));
    for cut in [11, 100, g.len() / 2, g.len() - 4] {
        let (r, _) = run(g[..cut].to_vec(), "t.gz", &Limits::default());
        assert_corrupt(&r);
    }
    let (_, seen) = run(g[..g.len() / 2].to_vec(), "t.gz", &Limits::default());
    assert!(!seen[0].2.is_empty() && data.starts_with(&seen[0].2));
}

#[test]
fn truncated_tar_is_corrupt() {
    let t = tar_of(&[("a", b"alpha"), ("b", &[5u8; 5000])]);
    for cut in [300, 512 + 100, 1024 + 512 + 100, 1024 + 700] {
        let (r, _) = run(t[..cut].to_vec(), "t.tar", &Limits::default());
        assert_corrupt(&r);
    }
}

#[test]
fn corrupt_streams_never_panic() {
    let mut garbage = vec![0x1f, 0x8b, 8, 0];
    garbage.extend([0xffu8; 64]);
    let mut xz_bad = b"\xfd7zXZ\x00".to_vec();
    xz_bad.extend([0x55u8; 64]);
    let mut zstd_bad = vec![0x28, 0xb5, 0x2f, 0xfd];
    zstd_bad.extend([0xaau8; 64]);
    let mut bz_bad = b"BZh91AY&SY".to_vec();
    bz_bad.extend([0x11u8; 64]);
    for data in [
        garbage,
        xz_bad,
        zstd_bad,
        bz_bad,
        b"PK\x03\x04junk".to_vec(),
    ] {
        let (r, _) = run(data, "bad", &Limits::default());
        assert_corrupt(&r);
    }
}

#[test]
fn hostile_names_never_touch_the_filesystem() {
    let dir = tempfile::tempdir().unwrap();
    let limits = small_tmp_limits(dir.path());
    let names = [
        "../../etc/passwd",
        "/etc/passwd",
        "..\\..\\boot.ini",
        "a/../../b",
    ];
    let members: Vec<(&str, &[u8])> = names.iter().map(|n| (*n, &b"x"[..])).collect();
    let before = std::env::current_dir().unwrap().read_dir().unwrap().count();
    for (data, root) in [(zip_of(&members), "n.zip"), (tar_of(&members), "n.tar")] {
        let (r, seen) = run(data, root, &limits);
        assert!(r.problems.is_empty(), "{:?}", r.problems);
        let expected: Vec<String> = names.iter().map(|n| format!("{root}>{n}")).collect();
        assert_eq!(locations(&seen), expected);
    }
    // Every member was spooled to an anonymous file: nothing is left, nothing named.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    assert_eq!(
        std::env::current_dir().unwrap().read_dir().unwrap().count(),
        before
    );
}

fn nested_zips(levels: usize) -> Vec<u8> {
    let mut data = zip_of(&[("core.txt", b"core")]);
    for i in 0..levels {
        data = zip_of(&[(&format!("l{i}.zip"), &data)]);
    }
    data
}

#[test]
fn depth_limit_stops_descent() {
    let limits = Limits {
        max_depth: 3,
        ..Limits::default()
    };
    let (r, seen) = run(nested_zips(5), "n.zip", &limits);
    assert_eq!(limit_whats(&r), ["depth"]);
    assert_eq!(seen.iter().map(|s| s.1).max(), Some(3));
    assert_eq!(seen.len(), 3);
    let (r, seen) = run(nested_zips(5), "n.zip", &Limits::default());
    assert!(r.problems.is_empty());
    assert_eq!(seen.len(), 6);
    assert_eq!(seen[5].1, 6);
}

#[test]
fn member_count_limit_stops_the_walk() {
    let names: Vec<String> = (0..20).map(|i| format!("f{i}")).collect();
    let members: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), &b"x"[..])).collect();
    let limits = Limits {
        max_members: 5,
        ..Limits::default()
    };
    let (r, seen) = run(tar_of(&members), "many.tar", &limits);
    assert_eq!(limit_whats(&r), ["members"]);
    assert_eq!(seen.len(), 5);
    assert_eq!(r.members, 5);
}

#[test]
fn empty_archives() {
    let (r, seen) = run(zip_of(&[]), "e.zip", &Limits::default());
    assert_eq!((r.problems.len(), r.members, seen.len()), (0, 0, 0));
    let (r, seen) = run(gz(&tar_of(&[]), None), "e.tar.gz", &Limits::default());
    assert!(r.problems.is_empty());
    assert_eq!(locations(&seen), ["e.tar.gz>e.tar"]);
    let (r, seen) = run(gz(b"", None), "e.gz", &Limits::default());
    assert!(r.problems.is_empty());
    assert_eq!(seen[0].2, b"");
}

#[test]
fn non_container_root_and_unsupported_members() {
    let (r, seen) = run(b"just text".to_vec(), "t.txt", &Limits::default());
    assert_eq!(r, WalkReport::default());
    assert!(seen.is_empty());
    let rar = b"Rar!\x1a\x07\x00rest".to_vec();
    let (r, _) = run(rar.clone(), "a.rar", &Limits::default());
    assert!(matches!(&r.problems[..], [Problem::Unsupported { .. }]));
    let (r, seen) = run(zip_of(&[("x.rar", &rar)]), "o.zip", &Limits::default());
    assert_eq!(
        r.problems,
        [Problem::Unsupported {
            location: "o.zip>x.rar".into(),
            what: "rar archive".into()
        }]
    );
    assert_eq!(seen.len(), 1, "the rar member itself is still visited");
}

/// A 7z archive of `members` made by the `7z` tool with `args`
/// (apt p7zip-full, see scripts/test-deps.sh).
fn seven_z(members: &[(&str, &[u8])], args: &[&str]) -> Vec<u8> {
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("src");
    for (name, data) in members {
        let p = src.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data).unwrap();
    }
    let out = d.path().join("a.7z");
    let status = std::process::Command::new("7z")
        .args(["a", "-t7z", "-bso0", "-bsp0"])
        .args(args)
        .arg(&out)
        .arg(".")
        .current_dir(&src)
        .status()
        .expect("7z is installed (scripts/test-deps.sh)");
    assert!(status.success());
    #[allow(clippy::disallowed_methods)] // a small archive made by the test
    std::fs::read(out).unwrap()
}

#[test]
fn sevenz_members_solid_and_nested() {
    let big = vec![b'z'; 300_000];
    let a = seven_z(
        &[("dir/eicar.com", EICAR), ("big.bin", &big), ("empty", b"")],
        &["-ms=on"],
    );
    let (r, seen) = run(a.clone(), "a.7z", &Limits::default());
    assert!(r.problems.is_empty(), "{:?}", r.problems);
    let mut got: Vec<(&str, usize)> = seen.iter().map(|(l, _, c)| (l.as_str(), c.len())).collect();
    got.sort();
    assert_eq!(
        got,
        vec![
            ("a.7z>big.bin", 300_000),
            ("a.7z>dir/eicar.com", EICAR.len()),
            ("a.7z>empty", 0)
        ]
    );
    assert!(seen.iter().any(|(_, d, c)| *d == 1 && c == EICAR));
    // A 7z inside a zip is opened too.
    let (r, seen) = run(zip_of(&[("in.7z", &a)]), "o.zip", &Limits::default());
    assert!(r.problems.is_empty(), "{:?}", r.problems);
    assert!(
        seen.iter()
            .any(|(l, d, c)| l == "o.zip>in.7z>dir/eicar.com" && *d == 2 && c == EICAR)
    );
}

#[test]
fn sevenz_limits_apply() {
    let big = vec![0u8; 4 << 20];
    let a = seven_z(&[("zeros.bin", &big), ("eicar.com", EICAR)], &["-ms=off"]);
    let limits = Limits {
        max_member_size: 1 << 20,
        ..Limits::default()
    };
    let (r, seen) = run(a, "a.7z", &limits);
    assert!(
        r.problems
            .iter()
            .any(|p| matches!(p, Problem::LimitsExceeded { location, .. } if location == "a.7z>zeros.bin")),
        "{:?}",
        r.problems
    );
    assert!(
        seen.iter().any(|(_, _, c)| c == EICAR),
        "the next member is still read"
    );
}

#[test]
fn encrypted_sevenz_is_encrypted_with_or_without_encrypted_headers() {
    for args in [&["-psecret"][..], &["-psecret", "-mhe=on"][..]] {
        let a = seven_z(&[("eicar.com", EICAR)], args);
        let (r, seen) = run(a, "e.7z", &Limits::default());
        assert!(
            matches!(&r.problems[..], [Problem::Encrypted { .. }]),
            "{args:?}: {:?}",
            r.problems
        );
        assert!(seen.is_empty());
        assert_eq!(r.problems[0].reason(), moat_core::Reason::Encrypted);
    }
}

#[test]
fn truncated_sevenz_is_corrupt_not_clean() {
    let a = seven_z(&[("eicar.com", EICAR)], &[]);
    let (r, _) = run(a[..a.len() / 2].to_vec(), "t.7z", &Limits::default());
    assert!(!r.problems.is_empty());
    let (r, _) = run(
        b"7z\xbc\xaf\x27\x1c\x00\x04rest".to_vec(),
        "x.7z",
        &Limits::default(),
    );
    assert!(
        matches!(&r.problems[..], [Problem::Corrupt { .. }]),
        "{:?}",
        r.problems
    );
}

#[test]
fn visitor_error_aborts() {
    let z = zip_of(&[("a", b"1"), ("b", b"2")]);
    let mut calls = 0;
    let res = walk(&Blob::from_vec(z), "z", &Limits::default(), &mut |_| {
        calls += 1;
        Err("stop")
    });
    assert!(matches!(res, Err(WalkError::Visit("stop"))));
    assert_eq!(calls, 1);
}

fn b64_lines(data: &[u8]) -> String {
    use base64::Engine;
    let text = base64::engine::general_purpose::STANDARD.encode(data);
    let mut out = String::new();
    for chunk in text.as_bytes().chunks(76) {
        out.push_str(std::str::from_utf8(chunk).unwrap());
        out.push_str("\r\n");
    }
    out
}

fn uu_lines(data: &[u8]) -> String {
    let enc = |v: u32| char::from(if v == 0 { b'`' } else { v as u8 + b' ' });
    let mut out = String::new();
    for line in data.chunks(45) {
        out.push(enc(line.len() as u32));
        for g in line.chunks(3) {
            let b = |i: usize| u32::from(g.get(i).copied().unwrap_or(0));
            let x = b(0) << 16 | b(1) << 8 | b(2);
            for s in [18, 12, 6, 0] {
                out.push(enc((x >> s) & 63));
            }
        }
        out.push('\n');
    }
    out.push_str("`\nend\n");
    out
}

/// A message with a text part, a base64 attachment, a quoted-printable part
/// and a base64 zip, in nested multiparts, plus an attached message.
fn sample_mail() -> Vec<u8> {
    let zip = zip_of(&[("inner.com", EICAR)]);
    format!(
        "Received: from mx.example.com by x\r\n\
         From: a@example.com\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed;\r\n boundary=\"outer\"\r\n\
         \r\n\
         preamble\r\n\
         --outer\r\n\
         Content-Type: multipart/alternative; boundary=inner\r\n\
         \r\n\
         --inner\r\n\
         Content-Type: text/plain\r\n\
         \r\n\
         hello\r\n\
         world\r\n\
         --inner\r\n\
         Content-Type: text/html\r\n\
         Content-Transfer-Encoding: quoted-printable\r\n\
         \r\n\
         <p>caf=C3=A9 is a soft=\r\n\
         break</p>\r\n\
         --inner--\r\n\
         --outer\r\n\
         Content-Type: application/octet-stream; name=\"wrong.bin\"\r\n\
         Content-Disposition: attachment; filename=\"eicar.com\"\r\n\
         Content-Transfer-Encoding: BASE64\r\n\
         \r\n\
         {}\
         --outer\r\n\
         Content-Type: application/zip\r\n\
         Content-Disposition: attachment; filename*=utf-8''a.zip\r\n\
         Content-Transfer-Encoding: base64\r\n\
         \r\n\
         {}\
         --outer\r\n\
         Content-Type: message/rfc822\r\n\
         \r\n\
         From: b@example.com\r\n\
         Content-Type: text/plain\r\n\
         Content-Transfer-Encoding: base64\r\n\
         Content-Disposition: attachment; filename=forwarded.txt\r\n\
         \r\n\
         {}\
         --outer--\r\n\
         epilogue\r\n",
        b64_lines(EICAR),
        b64_lines(&zip),
        b64_lines(b"forwarded body"),
    )
    .into_bytes()
}

#[test]
fn mail_parts_are_decoded_members_and_attachments_are_opened() {
    let (r, seen) = run(sample_mail(), "m.eml", &Limits::default());
    assert!(r.problems.is_empty(), "{:?}", r.problems);
    assert_eq!(
        locations(&seen),
        [
            "m.eml>part1",
            "m.eml>part2",
            "m.eml>eicar.com",
            "m.eml>a.zip",
            "m.eml>a.zip>inner.com",
            "m.eml>forwarded.txt",
        ]
    );
    assert_eq!(seen[0].2, b"hello\r\nworld");
    assert_eq!(seen[1].2, "<p>café is a softbreak</p>".as_bytes());
    assert_eq!(seen[2].2, EICAR);
    assert_eq!((seen[4].1, seen[4].2.as_slice()), (2, EICAR));
    assert_eq!(seen[5].2, b"forwarded body");
}

#[test]
fn mbox_messages_are_each_read_and_uuencoded_blocks_are_members() {
    let mbox = format!(
        "From a@example.com  Thu Jul 31 13:49:50 2008\n\
         From: a@example.com\n\
         Message-ID: <1@x>\n\
         \n\
         see the attachment\n\
         begin 644 eicar.com\n\
         {}\
         thanks\n\
         \n\
         From b@example.com  Thu Jul 31 13:51:21 2008\n\
         From: b@example.com\n\
         MIME-Version: 1.0\n\
         Content-Type: application/octet-stream; name=\"second.com\"\n\
         Content-Transfer-Encoding: x-uuencode\n\
         \n\
         begin 644 second.com\n\
         {}",
        uu_lines(EICAR),
        uu_lines(b"second"),
    );
    let (r, seen) = run(mbox.into_bytes(), "inbox", &Limits::default());
    assert!(r.problems.is_empty(), "{:?}", r.problems);
    assert_eq!(
        locations(&seen),
        [
            "inbox>part1",
            "inbox>eicar.com",
            "inbox>part3",
            "inbox>second.com"
        ]
    );
    assert_eq!(seen[0].2, b"see the attachment");
    assert_eq!(seen[1].2, EICAR);
    assert_eq!(seen[2].2, b"thanks\n");
    assert_eq!(seen[3].2, b"second");
}

#[test]
fn a_mail_cut_short_is_read_as_far_as_it_goes_without_a_problem() {
    let full = sample_mail();
    // Cut in the zip attachment's headers: no closing boundary, no epilogue.
    let at = full
        .windows(29)
        .position(|w| w == b"Content-Type: application/zip")
        .unwrap();
    let (r, seen) = run(full[..at + 10].to_vec(), "m.eml", &Limits::default());
    assert!(r.problems.is_empty(), "{:?}", r.problems);
    // The cut header line is not a header: it is the last part's body.
    assert_eq!(
        locations(&seen),
        [
            "m.eml>part1",
            "m.eml>part2",
            "m.eml>eicar.com",
            "m.eml>part4"
        ]
    );
    assert_eq!(seen[2].2, EICAR);
    assert_eq!(seen[3].2, b"Content-Ty");
    // Every prefix: never a panic, never more members than the whole.
    for n in (0..full.len()).step_by(7) {
        let (_, s) = run(full[..n].to_vec(), "m.eml", &Limits::default());
        assert!(s.len() <= 6, "{n}: {}", s.len());
    }
}

#[test]
fn a_mail_part_over_the_member_limit_is_reported_and_the_rest_is_read() {
    let big = vec![b'x'; 4096];
    let msg = format!(
        "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n\
         --b\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\
         --b\r\nContent-Disposition: attachment; filename=e.com\r\n\r\n{}\r\n--b--\r\n",
        b64_lines(&big),
        std::str::from_utf8(EICAR).unwrap()
    );
    let limits = Limits {
        max_member_size: 1000,
        ..Limits::default()
    };
    let (r, seen) = run(msg.into_bytes(), "m.eml", &limits);
    assert_eq!(limit_whats(&r), ["member_size"]);
    assert_eq!(locations(&seen), ["m.eml>e.com"]);
    assert_eq!(seen[0].2, EICAR);
}

#[test]
fn deeply_nested_multiparts_stay_bounded() {
    let mut msg = String::from("Message-ID: <1@x>\r\n");
    for i in 0..200 {
        msg.push_str(&format!(
            "Content-Type: multipart/mixed; boundary=b{i}\r\n\r\n--b{i}\r\n"
        ));
    }
    msg.push_str("Content-Type: text/plain\r\n\r\ndeep\r\n");
    let (r, seen) = run(msg.into_bytes(), "m.eml", &Limits::default());
    assert!(r.problems.is_empty(), "{:?}", r.problems);
    assert_eq!(seen.len(), 1);
    // Past the nesting bound the rest is one member, as it is.
    assert!(
        seen[0].2.ends_with(b"deep\r\n"),
        "{:?}",
        String::from_utf8_lossy(&seen[0].2)
    );
}

/// A cpio archive in `format` ("odc", "newc", "bin-le", "bin-be") of
/// `(name, mode, data)` entries and the trailer.
fn cpio_of(format: &str, entries: &[(&str, u32, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    let pad = |out: &mut Vec<u8>, a: usize| {
        while !out.len().is_multiple_of(a) {
            out.push(0);
        }
    };
    let trailer: (&str, u32, &[u8]) = ("TRAILER!!!", 0, b"");
    for (name, mode, data) in entries.iter().chain([&trailer]) {
        let namesize = name.len() + 1;
        match format {
            "odc" => out.extend_from_slice(
                format!(
                    "070707{:06o}{:06o}{:06o}{:06o}{:06o}{:06o}{:06o}{:011o}{:06o}{:011o}",
                    0, 1, mode, 0, 0, 1, 0, 0, namesize, data.len()
                )
                .as_bytes(),
            ),
            "newc" => out.extend_from_slice(
                format!(
                    "070701{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}",
                    1, mode, 0, 0, 1, 0, data.len(), 0, 0, 0, 0, namesize, 0
                )
                .as_bytes(),
            ),
            _ => {
                let size = data.len() as u32;
                let words = [
                    0o070707,
                    0,
                    1,
                    *mode as u16,
                    0,
                    0,
                    1,
                    0,
                    0,
                    0,
                    namesize as u16,
                    (size >> 16) as u16,
                    size as u16,
                ];
                for w in words {
                    out.extend_from_slice(&if format == "bin-le" {
                        w.to_le_bytes()
                    } else {
                        w.to_be_bytes()
                    });
                }
            }
        }
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        let align = match format {
            "odc" => 1,
            "newc" => 4,
            _ => 2,
        };
        pad(&mut out, align);
        out.extend_from_slice(data);
        pad(&mut out, align);
    }
    out
}

#[test]
fn cpio_regular_files_are_members_in_every_format() {
    let gz_member = gz(EICAR, None);
    for format in ["odc", "newc", "bin-le", "bin-be"] {
        let archive = cpio_of(
            format,
            &[
                ("dir", 0o040755, b""),
                ("dir/link", 0o120777, b"target"),
                ("dir/eicar.com", 0o100644, EICAR),
                ("odd", 0o100600, b"abc"),
                ("x.gz", 0o100644, &gz_member),
            ],
        );
        assert_eq!(detect(&archive), Some(ContainerKind::Cpio), "{format}");
        let (r, seen) = run(archive.clone(), "a.cpio", &Limits::default());
        assert!(r.problems.is_empty(), "{format}: {:?}", r.problems);
        assert_eq!(
            locations(&seen),
            [
                "a.cpio>dir/eicar.com",
                "a.cpio>odd",
                "a.cpio>x.gz",
                "a.cpio>x.gz>x"
            ],
            "{format}"
        );
        assert_eq!(seen[0].2, EICAR);
        assert_eq!(seen[1].2, b"abc");
        assert_eq!(seen[3].2, EICAR);
        // Cut anywhere after the first header: corrupt, never a panic.
        let (r, _) = run(
            archive[..archive.len() - 40].to_vec(),
            "a.cpio",
            &Limits::default(),
        );
        assert!(!r.problems.is_empty(), "{format}");
    }
}

/// A TNEF file: a message-level attribute, then per attachment its
/// rendering data, title and data.
fn tnef_of(attachments: &[(&str, &[u8])]) -> Vec<u8> {
    let attr = |out: &mut Vec<u8>, level: u8, id: u32, data: &[u8]| {
        out.push(level);
        out.extend_from_slice(&id.to_le_bytes());
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out.extend_from_slice(data);
        let sum = data.iter().fold(0u16, |s, &b| s.wrapping_add(u16::from(b)));
        out.extend_from_slice(&sum.to_le_bytes());
    };
    let mut out = vec![0x78, 0x9f, 0x3e, 0x22, 0x01, 0x00];
    attr(&mut out, 1, 0x0008_9006, b"\x01\x00\x00\x00");
    for (title, data) in attachments {
        attr(&mut out, 2, 0x0006_9002, &[0; 14]);
        if !title.is_empty() {
            attr(
                &mut out,
                2,
                0x0001_8010,
                &[title.as_bytes(), b"\0"].concat(),
            );
        }
        attr(&mut out, 2, 0x0006_800f, data);
    }
    out
}

#[test]
fn tnef_attachments_are_members_named_by_their_titles() {
    let t = tnef_of(&[("eicar.com", EICAR), ("", b"second")]);
    assert_eq!(detect(&t), Some(ContainerKind::Tnef));
    let (r, seen) = run(t.clone(), "winmail.dat", &Limits::default());
    assert!(r.problems.is_empty(), "{:?}", r.problems);
    assert_eq!(
        locations(&seen),
        ["winmail.dat>eicar.com", "winmail.dat>attachment2"]
    );
    assert_eq!(seen[0].2, EICAR);
    assert_eq!(seen[1].2, b"second");
    let (r, seen) = run(t[..t.len() - 5].to_vec(), "winmail.dat", &Limits::default());
    assert!(!r.problems.is_empty());
    assert_eq!(seen[0].2, EICAR);
    // A stray byte after the last attribute is not an attribute.
    let (r, seen) = run([&t[..], b"\0"].concat(), "winmail.dat", &Limits::default());
    assert!(r.problems.is_empty(), "{:?}", r.problems);
    assert_eq!(seen.len(), 2);
}

/// An OLE1 embedded object of `class` whose native data is `native`.
fn ole1_of(class: &str, native: &[u8]) -> Vec<u8> {
    let mut o = vec![0x01, 0x05, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00];
    let cls = [class.as_bytes(), b"\0"].concat();
    o.extend_from_slice(&(cls.len() as u32).to_le_bytes());
    o.extend_from_slice(&cls);
    o.extend_from_slice(&[0; 8]); // empty topic and item
    o.extend_from_slice(&(native.len() as u32).to_le_bytes());
    o.extend_from_slice(native);
    o
}

/// A `Package` native data wrapping `data` labelled `label`.
fn package_of(label: &str, data: &[u8]) -> Vec<u8> {
    let path = format!("C:\\Users\\a\\{label}");
    let mut p = vec![0x02, 0x00];
    for s in [label, path.as_str()] {
        p.extend_from_slice(s.as_bytes());
        p.push(0);
    }
    p.extend_from_slice(&[0x00, 0x00, 0x03, 0x00]);
    p.extend_from_slice(&((path.len() + 1) as u32).to_le_bytes());
    p.extend_from_slice(path.as_bytes());
    p.push(0);
    p.extend_from_slice(&(data.len() as u32).to_le_bytes());
    p.extend_from_slice(data);
    p
}

/// An RTF document with `objects` as `\objdata` groups, hex written in
/// lines with a control word and a comment group inside, as writers do.
fn rtf_of(objects: &[Vec<u8>]) -> Vec<u8> {
    let mut doc =
        String::from("{\\rtf1\\ansi{\\fonttbl{\\f0 Times;}}\\pard Hello \\'e9t\\'e9.\\par\n");
    for o in objects {
        doc.push_str("{\\object\\objemb{\\*\\objclass Package}{\\*\\objdata ");
        let hex: String = o.iter().map(|b| format!("{b:02x}")).collect();
        for (i, line) in hex.as_bytes().chunks(64).enumerate() {
            doc.push_str(std::str::from_utf8(line).unwrap());
            doc.push_str(if i == 1 {
                "{\\*\\hidden 4142}\\par\r\n"
            } else {
                "\r\n"
            });
        }
        doc.push_str("}{\\result {\\pict 0102}}}\n");
    }
    doc.push_str("}\n");
    doc.into_bytes()
}

#[test]
fn rtf_embedded_objects_are_decoded_and_packages_unwrapped() {
    let zip = zip_of(&[("inner.com", EICAR)]);
    let objects = [
        ole1_of("Package", &package_of("eicar.com", EICAR)),
        ole1_of("Equation.3", &zip),
    ];
    let doc = rtf_of(&objects);
    assert_eq!(detect(&doc), Some(ContainerKind::Rtf));
    let (r, seen) = run(doc, "d.rtf", &Limits::default());
    assert!(r.problems.is_empty(), "{:?}", r.problems);
    assert_eq!(
        locations(&seen),
        [
            "d.rtf>objdata1",
            "d.rtf>objdata1>eicar.com",
            "d.rtf>objdata2",
            "d.rtf>objdata2>native",
            "d.rtf>objdata2>native>inner.com",
        ]
    );
    assert_eq!(seen[0].2, objects[0]);
    assert_eq!(seen[1].2, EICAR);
    assert_eq!(seen[2].2, objects[1]);
    assert_eq!(seen[4].2, EICAR);
}

#[test]
fn an_ole1_package_whose_header_does_not_parse_is_its_native_data_as_it_is() {
    let native = b"\x02\x00a label with no end".to_vec();
    let (r, seen) = run(ole1_of("Package", &native), "o.bin", &Limits::default());
    assert!(r.problems.is_empty(), "{:?}", r.problems);
    assert_eq!(locations(&seen), ["o.bin>native"]);
    assert_eq!(seen[0].2, native);
}

#[test]
fn a_cut_rtf_object_is_corrupt_where_its_package_is_short() {
    let doc = rtf_of(&[ole1_of("Package", &package_of("eicar.com", EICAR))]);
    let cut = doc.len() - 120;
    let (r, _) = run(doc[..cut].to_vec(), "d.rtf", &Limits::default());
    assert!(
        r.problems
            .iter()
            .any(|p| matches!(p, Problem::Corrupt { location, .. } if location.starts_with("d.rtf>objdata1"))),
        "{:?}",
        r.problems
    );
    // Every prefix: never a panic.
    for n in (0..doc.len()).step_by(11) {
        run(doc[..n].to_vec(), "d.rtf", &Limits::default());
    }
}

#[test]
fn mutated_mail_rtf_ole1_tnef_cpio_szdd_binhex_and_pdf_never_panic_or_pass_their_limits() {
    let samples = [
        sample_mail(),
        rtf_of(&[ole1_of("Package", &package_of("eicar.com", EICAR))]),
        ole1_of("Package", &package_of("eicar.com", EICAR)),
        tnef_of(&[("eicar.com", EICAR)]),
        cpio_of("newc", &[("a", 0o100644, EICAR)]),
        cpio_of("bin-be", &[("a", 0o100644, EICAR)]),
        szdd_of(EICAR),
        binhex_of("a.com", EICAR),
        sample_pdf(),
        ENCRYPTED_PDFS[1].1.to_vec(),
        ENCRYPTED_PDFS[2].1.to_vec(),
        include_bytes!("../tests/data/cab/mszip.cab").to_vec(),
        cab_of(&[("a", 0, 4, 0), ("b", 2, 8, 0)], b"abcdefghij", 0),
        [
            pe_of(b"stub"),
            zip_of(&[("eicar.com", EICAR)]),
            pe_of(b"dropped"),
        ]
        .concat(),
    ];
    let limits = Limits {
        max_members: 32,
        max_member_size: 1 << 16,
        max_expanded_bytes: 1 << 20,
        ..Limits::default()
    };
    // A fixed xorshift, so a failure is reproducible.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut rand = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for sample in &samples {
        for _ in 0..300 {
            let mut data = sample.clone();
            for _ in 0..1 + rand() % 8 {
                let i = (rand() % data.len() as u64) as usize;
                data[i] = rand() as u8;
            }
            let (r, seen) = run(data, "m", &limits);
            assert!(r.members <= limits.max_members);
            assert!(
                seen.iter()
                    .all(|(_, _, c)| c.len() as u64 <= limits.max_member_size)
            );
        }
    }
}

#[test]
fn sloppy_base64_is_decoded_character_by_character() {
    use base64::Engine;
    let text = base64::engine::general_purpose::STANDARD.encode(EICAR);
    // Split oddly, with stray characters and white space, padding dropped.
    let (a, b) = text.split_at(10);
    let msg = format!(
        "MIME-Version: 1.0\r\nContent-Transfer-Encoding: base64\r\n\r\n{a}\r\n {} !\r\n",
        b.trim_end_matches('=')
    );
    let (r, seen) = run(msg.into_bytes(), "m.eml", &Limits::default());
    assert!(r.problems.is_empty(), "{:?}", r.problems);
    assert_eq!(seen[0].2, EICAR);
}

/// An OLE2 compound file, written with the `cfb` crate, of `(path, data)` streams.
fn ole2_of(streams: &[(&str, &[u8])]) -> Vec<u8> {
    let mut cf = cfb::CompoundFile::create(Cursor::new(Vec::new())).unwrap();
    for (path, data) in streams {
        let p = std::path::Path::new(path);
        if let Some(parent) = p.parent().filter(|d| *d != std::path::Path::new("/")) {
            cf.create_storage_all(parent).unwrap();
        }
        cf.create_stream(p).unwrap().write_all(data).unwrap();
    }
    cf.flush().unwrap();
    cf.into_inner().into_inner()
}

#[test]
fn ole2_streams_are_members_and_embedded_packages_are_unwrapped() {
    let package = package_of("eicar.com", EICAR);
    let native = [&(package.len() as u32).to_le_bytes()[..], &package].concat();
    let zip = zip_of(&[("inner.com", EICAR)]);
    let doc = ole2_of(&[
        ("/WordDocument", b"text of the document"),
        ("/ObjectPool/_1/\u{1}Ole10Native", &native),
        (
            "/ObjectPool/_2/\u{1}Ole10Native",
            b"\x04\0\0\0not a package",
        ),
        ("/Data", &zip),
    ]);
    assert_eq!(detect(&doc), Some(ContainerKind::Ole2));
    let (r, seen) = run(doc.clone(), "d.doc", &Limits::default());
    assert!(r.problems.is_empty(), "{:?}", r.problems);
    // ClamAV also finds the zip in the document's raw bytes (as it would an
    // executable): found by its magic, it is walked a second time.
    let carved: Vec<&str> = locations(&seen)
        .into_iter()
        .filter(|l| l.contains("embedded@"))
        .collect();
    assert_eq!(carved.len(), 2, "{carved:?}");
    assert!(carved[1].ends_with(">inner.com"), "{carved:?}");
    let mut got: Vec<(&str, &[u8])> = seen
        .iter()
        .filter(|(l, _, _)| !l.contains("embedded@"))
        .map(|(l, _, c)| (l.as_str(), c.as_slice()))
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            ("d.doc>Data", zip.as_slice()),
            ("d.doc>Data>inner.com", EICAR),
            (
                "d.doc>ObjectPool/_2/\u{fffd}Ole10Native",
                &b"\x04\0\0\0not a package"[..]
            ),
            ("d.doc>WordDocument", &b"text of the document"[..]),
            ("d.doc>eicar.com", EICAR),
        ]
    );
    // Cut or damaged: corrupt, never a panic out of the walk.
    let (r, _) = run(doc[..1000].to_vec(), "d.doc", &Limits::default());
    assert_corrupt(&r);
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    for _ in 0..200 {
        let mut data = doc.clone();
        for _ in 0..4 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let i = (x % data.len() as u64) as usize;
            data[i] = (x >> 32) as u8;
        }
        run(data, "d.doc", &Limits::default());
    }
}

/// SZDD of `data` with literals only (what a compressor may always emit),
/// plus one back-reference to the window's initial spaces.
fn szdd_of(data: &[u8]) -> Vec<u8> {
    let mut out = b"SZDD\x88\xf0\x27\x33A\x00".to_vec();
    out.extend_from_slice(&(data.len() as u32 + 5).to_le_bytes());
    // First item: a match of 5 spaces from position 0 (spaces at start).
    let mut items: Vec<Vec<u8>> = vec![vec![0x00, 0x02]];
    items.extend(data.iter().map(|&b| vec![b]));
    for group in items.chunks(8) {
        let mut flags = 0u8;
        for (i, item) in group.iter().enumerate() {
            if item.len() == 1 {
                flags |= 1 << i;
            }
        }
        out.push(flags);
        for item in group {
            out.extend_from_slice(item);
        }
    }
    out
}

#[test]
fn szdd_is_expanded_and_a_short_stream_is_corrupt() {
    let f = szdd_of(EICAR);
    assert_eq!(detect(&f), Some(ContainerKind::Szdd));
    let (r, seen) = run(f.clone(), "eicar.co_", &Limits::default());
    assert!(r.problems.is_empty(), "{:?}", r.problems);
    assert_eq!(locations(&seen), ["eicar.co_>data"]);
    assert_eq!(seen[0].2, [b"     ", EICAR].concat());
    let (r, _) = run(f[..f.len() - 3].to_vec(), "eicar.co_", &Limits::default());
    assert_corrupt(&r);
}

/// BinHex 4.0 of a file `name` with `data` as its data fork and an empty
/// resource fork (CRCs left zero: they are not checked).
fn binhex_of(name: &str, data: &[u8]) -> Vec<u8> {
    let mut raw = vec![name.len() as u8];
    raw.extend_from_slice(name.as_bytes());
    raw.push(0);
    raw.extend_from_slice(b"TEXTmoat\0\0");
    raw.extend_from_slice(&(data.len() as u32).to_be_bytes());
    raw.extend_from_slice(&0u32.to_be_bytes());
    raw.extend_from_slice(&[0, 0]);
    raw.extend_from_slice(data);
    raw.extend_from_slice(&[0, 0, 0, 0]);
    // Run-length: a literal 0x90 is 0x90 0x00; runs of 4 or more are
    // written as the byte, 0x90 and the count.
    let mut rle = Vec::new();
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        let run = raw[i..].iter().take(255).take_while(|&&c| c == b).count();
        if b == 0x90 {
            rle.extend_from_slice(&[0x90, 0x00]);
            i += 1;
        } else if run >= 4 {
            rle.extend_from_slice(&[b, 0x90, run as u8]);
            i += run;
        } else {
            rle.push(b);
            i += 1;
        }
    }
    const ALPHABET: &[u8; 64] =
        b"!\"#$%&'()*+,-012345689@ABCDEFGHIJKLMNPQRSTUVXYZ[`abcdefhijklmpqr";
    let mut text = String::new();
    for g in rle.chunks(3) {
        let b = |i: usize| u32::from(g.get(i).copied().unwrap_or(0));
        let x = b(0) << 16 | b(1) << 8 | b(2);
        let chars = [18, 12, 6, 0].map(|s| char::from(ALPHABET[((x >> s) & 63) as usize]));
        text.extend(&chars[..g.len() + 1]);
    }
    let lines: Vec<&str> = text
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "(This file must be converted with BinHex 4.0)\r\n:{}:\r\n",
        lines.join("\r\n")
    )
    .into_bytes()
}

#[test]
fn binhex_data_fork_is_decoded_with_its_runs() {
    let data = [
        EICAR,
        &[0x90, b'z', b'z', b'z', b'z', b'z', b'z'],
        &[0u8; 300],
    ]
    .concat();
    let f = binhex_of("report.com", &data);
    assert_eq!(detect(&f), Some(ContainerKind::BinHex));
    let (r, seen) = run(f.clone(), "r.hqx", &Limits::default());
    assert!(r.problems.is_empty(), "{:?}", r.problems);
    assert_eq!(locations(&seen), ["r.hqx>report.com"]);
    assert_eq!(seen[0].2, data);
    // A character outside the alphabet ends the data: what is left is short.
    let mut bad = f.clone();
    let at = bad.len() / 2;
    bad[at] = b'~';
    let (r, _) = run(bad, "r.hqx", &Limits::default());
    assert_corrupt(&r);
}

#[test]
fn an_attached_message_sent_base64_encoded_is_decoded_and_read_as_mail() {
    let inner = format!(
        "From: b@example.com\r\nMessage-ID: <2@x>\r\nContent-Type: application/octet-stream; name=e.com\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n{}",
        b64_lines(EICAR)
    );
    let msg = format!(
        "Message-ID: <1@x>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n\
         --b\r\nContent-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\n{}--b--\r\n",
        b64_lines(inner.as_bytes())
    );
    let (r, seen) = run(msg.into_bytes(), "m.eml", &Limits::default());
    assert!(r.problems.is_empty(), "{:?}", r.problems);
    assert_eq!(locations(&seen), ["m.eml>part1", "m.eml>part1>e.com"]);
    assert_eq!(seen[1].2, EICAR);
}

fn zlib(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// A PDF with an inflating stream, a plain embedded file with an indirect
/// length, a stream that claims FlateDecode but does not inflate, and a
/// wrong direct length.
fn sample_pdf() -> Vec<u8> {
    let flate = zlib(EICAR);
    let mut p = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\n".to_vec();
    p.extend_from_slice(
        format!(
            "4 0 obj\n<< /Length {} /Filter [/FlateDecode] >>\nstream\r\n",
            flate.len()
        )
        .as_bytes(),
    );
    p.extend_from_slice(&flate);
    p.extend_from_slice(b"\r\nendstream\nendobj\n");
    p.extend_from_slice(b"5 0 obj\n<</Type/EmbeddedFile/Length 9 0 R>>stream\n");
    p.extend_from_slice(b"plain embedded file");
    p.extend_from_slice(b"\nendstream\nendobj\n6 0 obj\n<< /Filter /FlateDecode /Length 7 >>\nstream\nnotzlib\nendstream\nendobj\n");
    p.extend_from_slice(
        b"7 0 obj\n<< /Length 3 >>\nstream\nlonger than three\nendstream\nendobj\n",
    );
    p.extend_from_slice(b"trailer\n<< /Root 1 0 R >>\n%%EOF\n");
    p
}

#[test]
fn pdf_streams_are_members_inflated_when_flate_and_damage_is_not_a_problem() {
    let pdf = sample_pdf();
    assert_eq!(detect(&pdf), Some(ContainerKind::Pdf));
    let (r, seen) = run(pdf, "d.pdf", &Limits::default());
    assert!(r.problems.is_empty(), "{:?}", r.problems);
    assert_eq!(
        locations(&seen),
        [
            "d.pdf>obj4.0",
            "d.pdf>obj5.0",
            "d.pdf>obj6.0",
            "d.pdf>obj7.0"
        ]
    );
    assert_eq!(seen[0].2, EICAR);
    assert_eq!(seen[1].2, b"plain embedded file");
    assert!(seen[2].2.is_empty());
    // A direct length that does not end at `endstream` is not trusted.
    assert_eq!(seen[3].2, b"longer than three");
    // Cut anywhere: never a panic, never a problem.
    let pdf = sample_pdf();
    for n in (0..pdf.len()).step_by(5) {
        let (r, _) = run(pdf[..n].to_vec(), "d.pdf", &Limits::default());
        assert!(r.problems.is_empty(), "{n}: {:?}", r.problems);
    }
}

#[test]
fn powerpoint_embedded_objects_are_inflated_and_opened() {
    let package = package_of("eicar.com", EICAR);
    let native = [&(package.len() as u32).to_le_bytes()[..], &package].concat();
    let object = ole2_of(&[("/\u{1}Ole10Native", &native)]);
    let record = |ver_instance: u16, rec_type: u16, body: &[u8]| {
        let mut r = ver_instance.to_le_bytes().to_vec();
        r.extend_from_slice(&rec_type.to_le_bytes());
        r.extend_from_slice(&(body.len() as u32).to_le_bytes());
        r.extend_from_slice(body);
        r
    };
    let compressed = [&(object.len() as u32).to_le_bytes()[..], &zlib(&object)].concat();
    let inner = [
        record(0x0000, 0x03e9, b"atom"),
        record(0x0010, 0x1011, &compressed),
        record(0x0000, 0x1011, b"raw object"),
    ]
    .concat();
    let stream = record(0x000f, 0x03e8, &inner);
    let ppt = ole2_of(&[("/PowerPoint Document", &stream)]);
    let (r, seen) = run(ppt, "p.ppt", &Limits::default());
    assert!(r.problems.is_empty(), "{:?}", r.problems);
    assert_eq!(
        locations(&seen),
        [
            "p.ppt>PowerPoint Document",
            "p.ppt>PowerPoint object 1",
            "p.ppt>PowerPoint object 1>eicar.com",
            "p.ppt>PowerPoint object 2",
        ]
    );
    assert_eq!(seen[1].2, object);
    assert_eq!(seen[2].2, EICAR);
    assert_eq!(seen[3].2, b"raw object");
}

/// A PDF of one stream object per `(filter, data)`, each with a direct length.
fn pdf_of(streams: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut pdf = b"%PDF-1.7\n".to_vec();
    for (i, (filter, data)) in streams.iter().enumerate() {
        pdf.extend_from_slice(
            format!(
                "{} 0 obj\n<< /Length {} /Filter {filter} >>\nstream\n",
                i + 1,
                data.len()
            )
            .as_bytes(),
        );
        pdf.extend_from_slice(data);
        pdf.extend_from_slice(b"\nendstream\nendobj\n");
    }
    pdf
}

#[test]
fn pdf_filter_chains_of_hex_ascii85_and_flate_are_undone_in_order() {
    // Written by Python's base64.a85encode / bytes.hex, as encoders do.
    let a85 = |data: &[u8]| -> Vec<u8> {
        let out = std::process::Command::new("python3")
            .args([
                "-c",
                "import base64,sys; sys.stdout.buffer.write(base64.a85encode(sys.stdin.buffer.read(), wrapcol=60) + b'~>')",
            ])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                c.stdin.take().unwrap().write_all(data)?;
                c.wait_with_output()
            })
            .unwrap();
        out.stdout
    };
    let hex = |data: &[u8]| -> Vec<u8> {
        let mut h: Vec<u8> = data
            .iter()
            .flat_map(|b| format!("{b:02X} ").into_bytes())
            .collect();
        h.extend_from_slice(b"\n>");
        h
    };
    let zero_run = [EICAR, &[0u8; 12][..], b"x"].concat();
    let streams: Vec<(&str, Vec<u8>)> = vec![
        ("/ASCIIHexDecode", hex(EICAR)),
        ("[/A85]", a85(&zero_run)),
        ("[/ASCII85Decode /FlateDecode]", a85(&zlib(EICAR))),
        ("[/AHx /Fl /DCTDecode]", hex(&zlib(b"jpeg bytes"))),
        ("[/Crypt /FlateDecode]", zlib(b"identity crypt filter")),
        ("[/JBIG2Decode]", b"raw data".to_vec()),
    ];
    let pdf = pdf_of(&streams);
    let (r, seen) = run(pdf, "f.pdf", &Limits::default());
    assert!(r.problems.is_empty(), "{:?}", r.problems);
    let got: Vec<&[u8]> = seen.iter().map(|(_, _, c)| c.as_slice()).collect();
    assert_eq!(
        got,
        [
            EICAR,
            &zero_run[..],
            EICAR,
            b"jpeg bytes",
            b"identity crypt filter",
            b"raw data"
        ]
    );
}

#[test]
fn pdf_lzw_and_run_length_streams_are_decoded() {
    // The example of the PDF Reference (3.3.3): "-----A---B".
    let lzw = [0x80, 0x0b, 0x60, 0x50, 0x22, 0x0c, 0x0c, 0x85, 0x01];
    // Run length: 3 literals, 5 x 'z', end.
    let rl = [2, b'a', b'b', b'c', 252, b'z', 128, b'!'];
    let pdf = pdf_of(&[
        ("/LZWDecode", lzw.to_vec()),
        ("/RunLengthDecode", rl.to_vec()),
    ]);
    let (r, seen) = run(pdf, "l.pdf", &Limits::default());
    assert!(r.problems.is_empty(), "{:?}", r.problems);
    assert_eq!(seen[0].2, b"-----A---B");
    assert_eq!(seen[1].2, b"abczzzzz");
}

#[test]
fn pdf_keywords_across_the_search_chunks_are_found_once() {
    // Put `stream` and `endstream` on every position around the first
    // 64 KiB chunk boundary of the keyword search (white space after the
    // header moves them), with a direct length and with an indirect one
    // (the end then found through `endstream`).
    let data = vec![b'x'; 100];
    let direct = pdf_of(&[("/Crypt", data.clone())]);
    let indirect = String::from_utf8(direct.clone())
        .unwrap()
        .replace("/Length 100", "/Length 9 0 R")
        .into_bytes();
    for (obj, keyword) in [(&direct, &b"stream"[..]), (&indirect, &b"endstream"[..])] {
        let at = obj
            .windows(keyword.len())
            .position(|w| w == keyword)
            .unwrap();
        for shift in 0..16 {
            let pad = 64 * 1024 - 10 + shift - at;
            let pdf = [&obj[..9], &vec![b' '; pad][..], &obj[9..]].concat();
            let (r, seen) = run(pdf, "p.pdf", &Limits::default());
            assert!(r.problems.is_empty(), "{shift}: {:?}", r.problems);
            assert_eq!(locations(&seen), ["p.pdf>obj1.0"], "{shift}");
            assert_eq!(seen[0].2, data, "{shift}");
        }
    }
}

/// qpdf's encryptions of one PDF whose embedded file is EICAR, all with the
/// empty user password (`tests/data/pdf/make.sh` makes them).
const ENCRYPTED_PDFS: [(&str, &[u8]); 5] = [
    ("rc4-40", include_bytes!("../tests/data/pdf/rc4-40.pdf")),
    ("rc4-128", include_bytes!("../tests/data/pdf/rc4-128.pdf")),
    ("aes-128", include_bytes!("../tests/data/pdf/aes-128.pdf")),
    (
        "aes-256-r5",
        include_bytes!("../tests/data/pdf/aes-256-r5.pdf"),
    ),
    (
        "aes-256-objstm",
        include_bytes!("../tests/data/pdf/aes-256-objstm.pdf"),
    ),
];

#[test]
fn pdfs_encrypted_without_a_user_password_give_their_streams_decrypted() {
    for (name, pdf) in ENCRYPTED_PDFS {
        assert!(
            memchr::memmem::find(pdf, b"EICAR").is_none(),
            "{name} holds its payload in clear"
        );
        let (r, seen) = run(pdf.to_vec(), name, &Limits::default());
        assert!(r.problems.is_empty(), "{name}: {:?}", r.problems);
        assert!(
            seen.iter().any(|(_, _, c)| c == EICAR),
            "{name}: {:?}",
            locations(&seen)
        );
        // Cut anywhere: never a panic.
        for n in (0..pdf.len()).step_by(37) {
            run(pdf[..n].to_vec(), name, &Limits::default());
        }
    }
    // The object stream of the AES-256 file is decrypted and inflated too;
    // its cross-reference stream is not encrypted and still inflates.
    let (_, seen) = run(ENCRYPTED_PDFS[4].1.to_vec(), "o.pdf", &Limits::default());
    assert!(
        seen.iter()
            .any(|(_, _, c)| memchr::memmem::find(c, b"/Type /Filespec").is_some()),
        "{:?}",
        seen.iter()
            .map(|(_, _, c)| String::from_utf8_lossy(c))
            .collect::<Vec<_>>()
    );
    assert!(seen.len() >= 3, "{:?}", locations(&seen));
}

#[test]
fn pdfs_that_need_a_password_are_encrypted_not_clean() {
    for (name, pdf) in [
        (
            "password-rc4.pdf",
            &include_bytes!("../tests/data/pdf/password-rc4.pdf")[..],
        ),
        (
            "password-aes-256.pdf",
            &include_bytes!("../tests/data/pdf/password-aes-256.pdf")[..],
        ),
    ] {
        let (r, seen) = run(pdf.to_vec(), name, &Limits::default());
        assert_eq!(
            r.problems,
            [Problem::Encrypted {
                location: name.to_string()
            }],
            "{name}"
        );
        assert_eq!(r.problems[0].reason(), moat_core::Reason::Encrypted);
        assert!(seen.is_empty(), "{name}: {:?}", locations(&seen));
    }
}

#[test]
fn encryption_keys_in_plain_stream_text_do_not_make_a_pdf_encrypted() {
    let pdf = pdf_of(&[
        (
            "/ASCIIHexDecode",
            b"2f456e637279707420392030205220".to_vec(),
        ),
        (
            "/Crypt",
            b"/Encrypt 9 0 R /EncryptMetadata false /ID [<00>]".to_vec(),
        ),
    ]);
    let (r, seen) = run(pdf, "p.pdf", &Limits::default());
    assert!(r.problems.is_empty(), "{:?}", r.problems);
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].2, b"/Encrypt 9 0 R ");
}

/// The 70 KB text of `tests/data/cab/mszip.cab` (its `make.sh` writes the same).
fn cab_text() -> Vec<u8> {
    (0..2000)
        .flat_map(|i| format!("line {i} of the moat cabinet fixture\n").into_bytes())
        .collect()
}

/// A cabinet with one folder of one data block holding `data` (stored,
/// unless `compression` says otherwise); each file is `(name, offset in
/// the folder, size, folder index)`.
fn cab_of(files: &[(&str, u32, u32, u16)], data: &[u8], compression: u16) -> Vec<u8> {
    let names: usize = files.iter().map(|f| 16 + f.0.len() + 1).sum();
    let data_at = 36 + 8 + names;
    let total = data_at + 8 + data.len();
    let mut c = b"MSCF".to_vec();
    c.extend_from_slice(&0u32.to_le_bytes());
    c.extend_from_slice(&(total as u32).to_le_bytes());
    c.extend_from_slice(&0u32.to_le_bytes());
    c.extend_from_slice(&44u32.to_le_bytes());
    c.extend_from_slice(&0u32.to_le_bytes());
    c.extend_from_slice(&[3, 1]);
    c.extend_from_slice(&1u16.to_le_bytes());
    c.extend_from_slice(&(files.len() as u16).to_le_bytes());
    c.extend_from_slice(&[0; 6]);
    c.extend_from_slice(&(data_at as u32).to_le_bytes());
    c.extend_from_slice(&1u16.to_le_bytes());
    c.extend_from_slice(&compression.to_le_bytes());
    for (name, offset, size, folder) in files {
        c.extend_from_slice(&size.to_le_bytes());
        c.extend_from_slice(&offset.to_le_bytes());
        c.extend_from_slice(&folder.to_le_bytes());
        c.extend_from_slice(&[0; 6]);
        c.extend_from_slice(name.as_bytes());
        c.push(0);
    }
    assert_eq!(c.len(), data_at);
    c.extend_from_slice(&0u32.to_le_bytes());
    c.extend_from_slice(&(data.len() as u16).to_le_bytes());
    c.extend_from_slice(&(data.len() as u16).to_le_bytes());
    c.extend_from_slice(data);
    c
}

#[test]
fn cab_files_of_an_mszip_folder_are_members_across_blocks() {
    let cab = include_bytes!("../tests/data/cab/mszip.cab").to_vec();
    assert_eq!(detect(&cab), Some(ContainerKind::Cab));
    let (r, seen) = run(cab.clone(), "m.cab", &Limits::default());
    assert!(r.problems.is_empty(), "{:?}", r.problems);
    assert_eq!(locations(&seen), ["m.cab>eicar.com", "m.cab>text.txt"]);
    assert_eq!(seen[0].2, EICAR);
    assert_eq!(seen[1].2, cab_text());
    // Cut anywhere: never a panic; a cut inside the data is corruption.
    for n in (0..cab.len()).step_by(23) {
        let (r, _) = run(cab[..n].to_vec(), "m.cab", &Limits::default());
        assert!(
            r.problems
                .iter()
                .all(|p| matches!(p, Problem::Corrupt { .. })),
            "{n}: {:?}",
            r.problems
        );
    }
}

#[test]
fn cab_lzx_folders_are_decompressed() {
    // The LZX cabinet of the `cab` crate's own tests (MIT licence;
    // github.com/mdsteele/rust-cab, src/cabinet.rs), made by makecab: a
    // 2^19-byte window, two files.
    let cab: &[u8] = b"\x4d\x53\x43\x46\x00\x00\x00\x00\x97\x00\x00\x00\x00\x00\x00\
        \x00\x2c\x00\x00\x00\x00\x00\x00\x00\x03\x01\x01\x00\x02\x00\
        \x00\x00\x2d\x05\x00\x00\x5b\x00\x00\x00\x01\x00\x03\x13\x0f\
        \x00\x00\x00\x00\x00\x00\x00\x00\x00\x21\x53\x0d\xb2\x20\x00\
        \x68\x69\x2e\x74\x78\x74\x00\x10\x00\x00\x00\x0f\x00\x00\x00\
        \x00\x00\x21\x53\x0b\xb2\x20\x00\x62\x79\x65\x2e\x74\x78\x74\
        \x00\x5c\xef\x2a\xc7\x34\x00\x1f\x00\x5b\x80\x80\x8d\x00\x30\
        \xf0\x01\x10\x00\x00\x00\x01\x00\x00\x00\x01\x00\x00\x00\x48\
        \x65\x6c\x6c\x6f\x2c\x20\x77\x6f\x72\x6c\x64\x21\x0d\x0a\x53\
        \x65\x65\x20\x79\x6f\x75\x20\x6c\x61\x74\x65\x72\x21\x0d\x0a\
        \x00";
    let (r, seen) = run(cab.to_vec(), "l.cab", &Limits::default());
    assert!(r.problems.is_empty(), "{:?}", r.problems);
    assert_eq!(locations(&seen), ["l.cab>hi.txt", "l.cab>bye.txt"]);
    assert_eq!(seen[0].2, b"Hello, world!\r\n");
    assert_eq!(seen[1].2, b"See you later!\r\n");
    // Mutated anywhere: never a panic (the decoder runs in catch_unwind).
    for i in 36..cab.len() {
        for b in [0u8, 0xff, 0x55] {
            let mut m = cab.to_vec();
            m[i] = b;
            run(m, "l.cab", &Limits::default());
        }
    }
}

#[test]
fn cab_files_out_of_order_and_overlapping_are_all_read() {
    let data = b"0123456789abcdefghij";
    let cab = cab_of(
        &[
            ("late", 10, 10, 0),
            ("early", 0, 10, 0),
            ("again", 5, 10, 0),
            ("empty", 20, 0, 0),
        ],
        data,
        0,
    );
    let (r, seen) = run(cab, "o.cab", &Limits::default());
    assert!(r.problems.is_empty(), "{:?}", r.problems);
    let got: std::collections::BTreeMap<&str, &[u8]> = seen
        .iter()
        .map(|(l, _, c)| (l.as_str(), c.as_slice()))
        .collect();
    assert_eq!(got["o.cab>early"], b"0123456789");
    assert_eq!(got["o.cab>late"], b"abcdefghij");
    assert_eq!(got["o.cab>again"], b"56789abcde");
    assert_eq!(got["o.cab>empty"], b"");
}

#[test]
fn cab_quantum_folders_and_files_of_other_cabinets_are_unsupported_not_clean() {
    let quantum = cab_of(&[("q", 0, 4, 0)], b"data", 0x0002);
    let (r, _) = run(quantum, "q.cab", &Limits::default());
    assert!(
        matches!(&r.problems[..], [Problem::Unsupported { what, .. }] if what.contains("compression")),
        "{:?}",
        r.problems
    );
    let continued = cab_of(&[("a", 0, 2, 0), ("b", 0, 4, 0xfffd)], b"data", 0);
    let (r, seen) = run(continued, "c.cab", &Limits::default());
    assert_eq!(locations(&seen), ["c.cab>a"]);
    assert!(
        matches!(&r.problems[..], [Problem::Unsupported { what, .. }] if what.contains("another cabinet")),
        "{:?}",
        r.problems
    );
    assert_eq!(r.problems[0].reason(), moat_core::Reason::Unsupported);
    // A file longer than its folder is truncated, which is corruption.
    let short = cab_of(&[("long", 0, 9, 0)], b"data", 0);
    let (r, _) = run(short, "s.cab", &Limits::default());
    assert!(
        matches!(&r.problems[..], [Problem::Corrupt { .. }]),
        "{:?}",
        r.problems
    );
}

/// The headers a PE needs to be taken as one (DOS header, `PE\0\0`, a file
/// header with one section and a PE32 optional header size), then `body`.
fn pe_of(body: &[u8]) -> Vec<u8> {
    let mut pe = vec![0u8; 64 + 24];
    pe[..2].copy_from_slice(b"MZ");
    pe[60..64].copy_from_slice(&64u32.to_le_bytes());
    pe[64..68].copy_from_slice(b"PE\0\0");
    pe[64 + 6..64 + 8].copy_from_slice(&1u16.to_le_bytes());
    pe[64 + 20..64 + 22].copy_from_slice(&224u16.to_le_bytes());
    pe.extend_from_slice(&[0u8; 224 + 40]);
    pe.extend_from_slice(body);
    pe
}

#[test]
fn self_extracting_archives_in_executables_are_opened() {
    let zip = zip_of(&[("eicar.com", EICAR)]);
    let cab = include_bytes!("../tests/data/cab/mszip.cab");
    let sz = seven_z(&[("a/eicar.com", EICAR)], &[]);
    for (kind, archive, inner) in [
        ("zip", zip.as_slice(), "eicar.com"),
        ("cab", cab.as_slice(), "eicar.com"),
        ("7z", sz.as_slice(), "a/eicar.com"),
    ] {
        let stub = pe_of(b"program code and data");
        let at = stub.len();
        // A cab is taken as long as its header says: what follows is not its.
        let sfx = [&stub[..], archive, b"trailing overlay"].concat();
        assert_eq!(detect(&sfx), Some(ContainerKind::Pe));
        let (r, seen) = run(sfx, "setup.exe", &Limits::default());
        assert!(r.problems.is_empty(), "{kind}: {:?}", r.problems);
        let want = format!("setup.exe>embedded@{at}>{inner}");
        let member = seen.iter().find(|(l, _, _)| *l == want);
        assert_eq!(
            member.map(|m| m.2.as_slice()),
            Some(EICAR),
            "{kind}: {:?}",
            locations(&seen)
        );
    }
}

#[test]
fn executables_in_executables_are_members_and_not_searched_twice() {
    let innermost = pe_of(b"innermost");
    let inner = pe_of(&[&b"inner "[..], &innermost].concat());
    let outer = pe_of(&[&b"dropper "[..], &inner].concat());
    let at_inner = outer.len() - inner.len();
    let at_innermost = outer.len() - innermost.len();
    let (r, seen) = run(outer, "d.exe", &Limits::default());
    assert!(r.problems.is_empty(), "{:?}", r.problems);
    // Both are found in the outer file; the inner one is not searched
    // again (which would give the innermost a second time).
    assert_eq!(
        locations(&seen),
        [
            format!("d.exe>embedded@{at_inner}"),
            format!("d.exe>embedded@{at_innermost}")
        ]
    );
    assert_eq!(seen[0].2, inner);
    assert_eq!(seen[1].2, innermost);
}

#[test]
fn chance_magic_bytes_in_executables_are_not_problems() {
    // A zip local header that leads nowhere, `MZ` without a PE header, a
    // 7z signature with a wrong CRC, a cab header of another version.
    let mut body = b"PK\x03\x04\x14\x00\x00\x00\x08\x00".to_vec();
    body.extend_from_slice(&[0u8; 16]);
    body.extend_from_slice(&5u16.to_le_bytes());
    body.extend_from_slice(&[0u8; 2]);
    body.extend_from_slice(b"a.txt and then MZ and 7z\xbc\xaf\x27\x1c\x00\x04 then MSCF\0\0\0\0");
    body.extend_from_slice(&[0u8; 40]);
    let (r, seen) = run(pe_of(&body), "p.exe", &Limits::default());
    assert!(r.problems.is_empty(), "{:?}", r.problems);
    // The zip header passed its check and was visited, and so was what its
    // local header promised; its deflate data is not: corrupt, not a problem.
    assert_eq!(seen.len(), 2, "{:?}", locations(&seen));
    // A real archive's problems are the file's: an encrypted member.
    let sfx = [pe_of(b"stub"), eicar_zip_encrypted(99)].concat();
    let (r, _) = run(sfx, "e.exe", &Limits::default());
    assert!(
        matches!(&r.problems[..], [Problem::Encrypted { location }] if location.ends_with(">eicar.com")),
        "{:?}",
        r.problems
    );
}

/// An NSIS installer of EICAR and `extra`, made by `makensis` (apt nsis,
/// see scripts/test-deps.sh) with `SetCompressor [/SOLID] compressor`.
fn nsis_installer(compressor: &str, solid: bool, extra: &[u8]) -> Vec<u8> {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("eicar.com"), EICAR).unwrap();
    std::fs::write(d.path().join("extra.bin"), extra).unwrap();
    let script = format!(
        "OutFile \"setup.exe\"\nSetCompressor {} {compressor}\nRequestExecutionLevel user\n\
         Section\n  SetOutPath $TEMP\n  File \"eicar.com\"\n  File \"extra.bin\"\nSectionEnd\n",
        if solid { "/SOLID" } else { "" }
    );
    std::fs::write(d.path().join("setup.nsi"), script).unwrap();
    let status = std::process::Command::new("makensis")
        .args(["-V1", "setup.nsi"])
        .current_dir(d.path())
        .status()
        .expect("makensis is installed (scripts/test-deps.sh)");
    assert!(status.success());
    #[allow(clippy::disallowed_methods)] // a small installer made by the test
    std::fs::read(d.path().join("setup.exe")).unwrap()
}

/// The next number of a fixed xorshift sequence, so failures reproduce.
fn xorshift(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

/// Walks `data` cut at about `cuts` points within `region`, and `mutations`
/// copies with `flips` bytes of `region` overwritten (a fixed sequence from
/// `seed`): never a panic (`run` unwraps the walk).
fn survives_damage(
    data: &[u8],
    region: std::ops::Range<usize>,
    cuts: usize,
    mutations: usize,
    flips: usize,
    seed: u64,
) {
    let span = region.end - region.start;
    for n in (region.start..data.len()).step_by(((data.len() - region.start) / cuts).max(1)) {
        run(data[..n].to_vec(), "cut", &Limits::default());
    }
    let mut x = seed;
    for _ in 0..mutations {
        let mut m = data.to_vec();
        for _ in 0..flips {
            let r = xorshift(&mut x);
            m[region.start + (r as usize) % span] = (r >> 40) as u8;
        }
        run(m, "m", &Limits::default());
    }
}

/// Pseudo-random bytes, so that compression cannot shrink them.
pub(crate) fn noise_bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n).map(|_| xorshift(&mut x) as u8).collect()
}

#[test]
fn nsis_installers_give_the_files_they_install() {
    let extra = [noise_bytes(100_000, 3), b"text ".repeat(20_000)].concat();
    for compressor in ["zlib", "lzma"] {
        for solid in [false, true] {
            let setup = nsis_installer(compressor, solid, &extra);
            let (r, seen) = run(setup.clone(), "setup.exe", &Limits::default());
            let what = format!("{compressor} solid={solid}");
            assert!(r.problems.is_empty(), "{what}: {:?}", r.problems);
            let nsis: Vec<&str> = locations(&seen)
                .into_iter()
                .filter(|l| {
                    l.contains("embedded@") && l.contains('>') && l.matches('>').count() == 2
                })
                .collect();
            assert_eq!(nsis.len(), 3, "{what}: {:?}", locations(&seen));
            assert!(nsis[0].ends_with(">headers"), "{what}: {nsis:?}");
            let contents: Vec<&[u8]> = seen
                .iter()
                .filter(|(l, _, _)| l.contains(">content."))
                .map(|(_, _, c)| c.as_slice())
                .collect();
            assert_eq!(contents, [EICAR, &extra[..]], "{what}");
            // Cut or damaged anywhere in its data: never a panic.
            let start = memchr::memmem::find(&setup, &formats::nsis::MAGIC).unwrap() - 4;
            survives_damage(
                &setup,
                start..setup.len().min(start + 4096),
                40,
                60,
                3,
                0x1234_5678_9abc_def1,
            );
        }
    }
    // NSIS's own bzip2 variant is not read: unsupported, not clean.
    let setup = nsis_installer("bzip2", true, b"x");
    let (r, _) = run(setup, "b.exe", &Limits::default());
    assert!(
        matches!(&r.problems[..], [Problem::Unsupported { what, .. }] if what.contains("bzip2")),
        "{:?}",
        r.problems
    );
}

/// An ARJ archive of `members` made by the `arj` tool (apt arj, see
/// scripts/test-deps.sh) with `-m<method>` and `extra` arguments.
fn arj_of(members: &[(&str, &[u8])], method: u8, extra: &[&str]) -> Vec<u8> {
    let d = tempfile::tempdir().unwrap();
    for (name, data) in members {
        std::fs::write(d.path().join(name), data).unwrap();
    }
    let status = std::process::Command::new("arj")
        .arg("a")
        .arg(format!("-m{method}"))
        .args(["-y", "-i"])
        .args(extra)
        .arg("a.arj")
        .args(members.iter().map(|(n, _)| *n))
        .current_dir(d.path())
        .stdout(std::process::Stdio::null())
        .status()
        .expect("arj is installed (scripts/test-deps.sh)");
    assert!(status.success());
    #[allow(clippy::disallowed_methods)] // a small archive made by the test
    std::fs::read(d.path().join("a.arj")).unwrap()
}

#[test]
fn arj_archives_of_every_method_give_their_files() {
    let text: Vec<u8> = (0..6000)
        .flat_map(|i| format!("line {i}: the quick brown fox {}\n", i % 7).into_bytes())
        .collect();
    let wrapped = [&text[..], EICAR, &text[..5000]].concat();
    let noise = noise_bytes(40_000, 9);
    for method in 0..=4u8 {
        let arj = arj_of(
            &[
                ("wrapped.txt", &wrapped),
                ("noise.bin", &noise),
                ("eicar.com", EICAR),
            ],
            method,
            &[],
        );
        assert_eq!(detect(&arj), Some(ContainerKind::Arj), "method {method}");
        let (r, seen) = run(arj.clone(), "a.arj", &Limits::default());
        assert!(r.problems.is_empty(), "method {method}: {:?}", r.problems);
        assert_eq!(
            locations(&seen),
            ["a.arj>wrapped.txt", "a.arj>noise.bin", "a.arj>eicar.com"],
            "method {method}"
        );
        assert_eq!(seen[0].2, wrapped, "method {method}");
        assert_eq!(seen[1].2, noise, "method {method}");
        assert_eq!(seen[2].2, EICAR, "method {method}");
        // A changed byte in compressed data fails the CRC: corrupt.
        if method > 0 {
            let mut bad = arj.clone();
            let at = memchr::memmem::find(&bad, b"wrapped.txt").unwrap() + 200;
            bad[at] ^= 0x40;
            let (r, _) = run(bad, "b.arj", &Limits::default());
            assert!(
                r.problems
                    .iter()
                    .any(|p| matches!(p, Problem::Corrupt { location, .. } if location == "b.arj>wrapped.txt")),
                "method {method}: {:?}",
                r.problems
            );
        }
        // Cut or damaged anywhere: never a panic.
        survives_damage(
            &arj,
            0..arj.len(),
            50,
            80,
            4,
            0x2545_f491_4f6c_dd1d ^ u64::from(method),
        );
    }
}

#[test]
fn garbled_arj_files_are_encrypted_not_clean() {
    let arj = arj_of(&[("eicar.com", EICAR)], 1, &["-gsecret"]);
    let (r, seen) = run(arj, "g.arj", &Limits::default());
    assert_eq!(
        r.problems,
        [Problem::Encrypted {
            location: "g.arj>eicar.com".into()
        }]
    );
    assert!(seen.is_empty());
}

/// A CHM file of `files` (name, content) made by Free Pascal's `chmcmd`
/// (apt fp-utils, see scripts/test-deps.sh).
fn chm_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    let d = tempfile::tempdir().unwrap();
    let mut project = "[OPTIONS]\nCompatibility=1.1 or later\nCompiled file=out.chm\n\
                       Default topic=index.html\nTitle=moat\n\n[FILES]\nindex.html\n"
        .to_string();
    std::fs::write(
        d.path().join("index.html"),
        "<html><body>moat</body></html>",
    )
    .unwrap();
    for (name, data) in files {
        std::fs::write(d.path().join(name), data).unwrap();
        project.push_str(name);
        project.push('\n');
    }
    std::fs::write(d.path().join("p.hhp"), project).unwrap();
    let status = std::process::Command::new("chmcmd")
        .arg("p.hhp")
        .current_dir(d.path())
        .stdout(std::process::Stdio::null())
        .status()
        .expect("chmcmd is installed (scripts/test-deps.sh)");
    assert!(status.success());
    #[allow(clippy::disallowed_methods)] // a small help file made by the test
    std::fs::read(d.path().join("out.chm")).unwrap()
}

#[test]
fn chm_files_compressed_across_lzx_frames_and_resets_are_members() {
    // Text that spans many 32 KiB frames (and so decoder resets), random
    // bytes that do not compress, and EICAR between them.
    let text: Vec<u8> = (0..40_000)
        .flat_map(|i| format!("<p>page line {i} of the help file</p>\n").into_bytes())
        .collect();
    let noise = noise_bytes(120_000, 21);
    let chm = chm_of(&[
        ("big.html", &text),
        ("eicar.txt", EICAR),
        ("noise.bin", &noise),
    ]);
    assert_eq!(detect(&chm), Some(ContainerKind::Chm));
    let (r, seen) = run(chm.clone(), "h.chm", &Limits::default());
    assert!(r.problems.is_empty(), "{:?}", r.problems);
    let got: std::collections::BTreeMap<&str, &[u8]> = seen
        .iter()
        .map(|(l, _, c)| (l.as_str(), c.as_slice()))
        .collect();
    assert_eq!(got.get("h.chm>big.html"), Some(&&text[..]));
    assert_eq!(got.get("h.chm>eicar.txt"), Some(&EICAR));
    assert_eq!(got.get("h.chm>noise.bin"), Some(&&noise[..]));
    assert!(
        !got.keys().any(|l| l.contains("::DataSpace")),
        "{:?}",
        got.keys()
    );
    // Cut or damaged anywhere: never a panic.
    survives_damage(&chm, 0..chm.len(), 60, 150, 4, 0x5851_f42d_4c95_7f2d);
}

#[test]
fn html_data_uris_are_decoded_members() {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(EICAR);
    // Wrapped base64 (white space is skipped), single quotes, CSS url(),
    // percent-encoding, and text that only mentions "data:".
    let wrapped: String = b64
        .as_bytes()
        .chunks(20)
        .map(|c| format!("{}\n  ", std::str::from_utf8(c).unwrap()))
        .collect();
    let page = format!(
        "<!DOCTYPE html><html><head><title>t</title></head><body>\n\
         <p>metadata: not a uri, and data:text then space</p>\n\
         <a href=\"data:application/octet-stream;base64,{b64}\" download=\"x.exe\">x</a>\n\
         <a href='DATA:application/x-msdownload;name=a.exe;BASE64,{wrapped}'>y</a>\n\
         <div style=\"background:url(data:text/plain,hello%20world%21)\"></div>\n\
         </body></html>\n"
    );
    let (r, seen) = run(page.into_bytes(), "p.html", &Limits::default());
    assert!(r.problems.is_empty(), "{:?}", r.problems);
    assert_eq!(
        locations(&seen),
        [
            "p.html>data-uri-1",
            "p.html>data-uri-2",
            "p.html>data-uri-3"
        ]
    );
    assert_eq!(seen[0].2, EICAR);
    assert_eq!(seen[1].2, EICAR);
    assert_eq!(seen[2].2, b"hello world!");
    // A large payload crosses the reader's buffers; cut anywhere, no panic.
    let big = noise_bytes(300_000, 5);
    let page = format!(
        "<html><body><a href=\"data:application/zip;base64,{}\">z</a></body></html>",
        base64::engine::general_purpose::STANDARD.encode(&big)
    )
    .into_bytes();
    let (r, seen) = run(page.clone(), "b.html", &Limits::default());
    assert!(r.problems.is_empty(), "{:?}", r.problems);
    assert_eq!(seen[0].2, big);
    for n in (0..page.len()).step_by(page.len() / 30) {
        run(page[..n].to_vec(), "cut.html", &Limits::default());
    }
}

/// An InstallShield file stream as setups append it (see
/// `formats/ishield.rs`): each file zlib-compressed, then masked with its
/// name. Real setups are covered by the clamav-testfiles differential test.
fn ishield_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    const KEY: [u8; 4] = [0xec, 0xca, 0x79, 0xf8];
    let mut s = formats::ishield::MAGIC.to_vec();
    s.extend_from_slice(&(files.len() as u32).to_le_bytes());
    s.extend_from_slice(&[0u8; 0x1c]);
    for (name, data) in files {
        let mut block = vec![0u8; 0x104 + 52];
        block[..name.len()].copy_from_slice(name.as_bytes());
        block[0x104] = 6;
        let packed = zlib(data);
        block[0x104 + 8..0x104 + 16].copy_from_slice(&(packed.len() as u64).to_le_bytes());
        s.extend_from_slice(&block);
        let key: Vec<u8> = name
            .bytes()
            .enumerate()
            .map(|(i, b)| b ^ KEY[i & 3])
            .collect();
        s.extend(
            packed
                .iter()
                .enumerate()
                .map(|(i, b)| (b ^ key[(i & 0x3ff) % key.len()]).rotate_left(4)),
        );
    }
    s
}

#[test]
fn installshield_streams_after_a_setup_program_give_their_files() {
    let big = noise_bytes(5000, 8);
    let stream = ishield_of(&[
        ("setup.ini", b"[Startup]\n"),
        ("eicar.com", EICAR),
        ("big.bin", &big),
    ]);
    let setup = [pe_of(b"setup program"), stream.clone()].concat();
    let at = setup.len() - stream.len();
    let (r, seen) = run(setup.clone(), "setup.exe", &Limits::default());
    assert!(r.problems.is_empty(), "{:?}", r.problems);
    let inner: Vec<(&str, &[u8])> = seen
        .iter()
        .filter(|(l, _, _)| l.matches('>').count() == 2)
        .map(|(l, _, c)| (l.as_str(), c.as_slice()))
        .collect();
    let prefix = format!("setup.exe>embedded@{at}>");
    assert_eq!(
        inner,
        [
            (format!("{prefix}setup.ini").as_str(), &b"[Startup]\n"[..]),
            (format!("{prefix}eicar.com").as_str(), EICAR),
            (format!("{prefix}big.bin").as_str(), &big[..]),
        ]
    );
    for n in (at..setup.len()).step_by(97) {
        run(setup[..n].to_vec(), "cut.exe", &Limits::default());
    }
}

#[test]
fn installshield_overlay_files_are_members_by_name() {
    // A PE whose one section ends where the overlay starts.
    let body = b"section data".to_vec();
    let mut pe = pe_of(&body);
    let section = 64 + 24 + 224;
    let raw = (pe.len() - body.len()) as u32;
    pe[section + 16..section + 20].copy_from_slice(&(body.len() as u32).to_le_bytes());
    pe[section + 20..section + 24].copy_from_slice(&raw.to_le_bytes());
    let zip = zip_of(&[("inner.com", EICAR)]);
    for (name, data) in [
        ("eicar.com", EICAR),
        ("data.zip", zip.as_slice()),
        ("setup.ini", b"[Startup]\n".as_slice()),
    ] {
        pe.extend_from_slice(
            format!("{name}\0Disk1\\{name}\00.0.0.0\0{}\0", data.len()).as_bytes(),
        );
        pe.extend_from_slice(data);
    }
    // Something that is not an entry ends the list.
    pe.extend_from_slice(b"trailing signature block");
    let (r, seen) = run(pe, "setup.exe", &Limits::default());
    assert!(r.problems.is_empty(), "{:?}", r.problems);
    assert_eq!(
        locations(&seen),
        [
            "setup.exe>eicar.com",
            "setup.exe>data.zip",
            "setup.exe>data.zip>inner.com",
            "setup.exe>setup.ini"
        ]
    );
    assert_eq!(seen[0].2, EICAR);
    assert_eq!(seen[2].2, EICAR);
}

#[test]
fn damaged_packed_programs_never_panic() {
    // clam-upx.exe (UPX's NRV2B), clam-aspack.exe (ASPack 2.12),
    // clam-wwpack.exe, clam-yc.exe, clam-petite.exe and clam-pespin.exe of
    // Debian's clamav-testfiles: cut and
    // overwritten anywhere, headers, packed data and stub alike.
    for (name, packer, seed) in [
        ("clam-upx.exe", "upx", 0x2545_f491_4f6c_dd1d),
        ("clam-aspack.exe", "aspack", 0x9e37_79b9_7f4a_7c15),
        ("clam-wwpack.exe", "wwpack", 0x6c07_8965_d1b3_4f1b),
        ("clam-yc.exe", "yc", 0x1405_7b7e_f767_814f),
        ("clam-petite.exe", "petite", 0x5851_f42d_4c95_7f2d),
        ("clam-pespin.exe", "pespin", 0x1405_7b7e_f767_8141),
    ] {
        let path = format!("/usr/share/clamav-testfiles/{name}");
        let mut file = Vec::new();
        let f = std::fs::File::open(&path)
            .unwrap_or_else(|e| panic!("{path}: {e} (scripts/test-deps.sh installs it)"));
        #[allow(clippy::disallowed_methods)] // bounded by take()
        std::io::Read::read_to_end(&mut std::io::Read::take(f, 1 << 20), &mut file).unwrap();
        let (r, seen) = run(file.clone(), name, &Limits::default());
        assert!(r.problems.is_empty(), "{:?}", r.problems);
        let unpacked = format!("{name}>{packer}");
        assert!(
            locations(&seen).contains(&unpacked.as_str()),
            "{:?}",
            locations(&seen)
        );
        survives_damage(&file, 0..file.len(), 60, 400, 3, seed);
    }
}

#[test]
fn nrv_decoders_reject_noise_without_panicking() {
    for seed in 1..200u64 {
        let noise = noise_bytes(600 + (seed as usize * 37) % 3000, seed);
        for kind in crate::formats::upx::ALL_NRV {
            let mut dst = vec![0u8; 4096];
            // Noise either fails to decode or decodes within the buffer.
            if let Some(n) = crate::formats::upx::nrv_decode(kind, &noise, &mut dst) {
                assert!(n <= dst.len());
            }
        }
    }
}

#[test]
fn archives_appended_to_other_files_are_found_as_clamav_finds_them() {
    // A JPEG with a zip after it (a polyglot): the zip's member is scanned.
    let zip = zip_of(&[("inner.com", EICAR)]);
    let mut jpeg = b"\xff\xd8\xff\xe0\0\x10JFIF\0".to_vec();
    jpeg.extend(noise_bytes(5000, 11));
    let at = jpeg.len();
    jpeg.extend(&zip);
    let (r, seen) = run(jpeg, "photo.jpg", &Limits::default());
    assert!(r.problems.is_empty(), "{:?}", r.problems);
    let expected = format!("photo.jpg>embedded@{at}>inner.com");
    assert!(
        locations(&seen).contains(&expected.as_str()),
        "{:?}",
        locations(&seen)
    );
    // The magic alone, in text, is nothing: no member, no problem.
    let text = b"notes: PK\x03\x04 is how a zip entry starts; MSCF\0\0\0\0 a cab".repeat(50);
    let (r, seen) = run(text, "notes.txt", &Limits::default());
    assert!(r.problems.is_empty(), "{:?}", r.problems);
    assert!(seen.is_empty(), "{:?}", locations(&seen));
    // The archive found is not searched again, but its members are files
    // like any other: a polyglot inside it is found too (as in ClamAV).
    let inner = [b"GIF89a".as_slice(), &zip].concat();
    let outer = zip_of(&[("pic.gif", &inner)]);
    let mut file = noise_bytes(300, 12);
    file.extend(&outer);
    let (_, seen) = run(file, "f.bin", &Limits::default());
    assert_eq!(
        locations(&seen),
        [
            "f.bin>embedded@300",
            "f.bin>embedded@300>pic.gif",
            "f.bin>embedded@300>pic.gif>embedded@6",
            "f.bin>embedded@300>pic.gif>embedded@6>inner.com",
        ]
    );
}

/// An `.a3x` of EA06 `files` (tag, data), stored, as AutoIt writes them.
fn a3x_ea06(files: &[(&str, &[u8], bool)]) -> Vec<u8> {
    let put = |v: &mut Vec<u8>, x: u32| v.extend(x.to_le_bytes());
    let utf16 = |s: &str| -> Vec<u8> { s.encode_utf16().flat_map(u16::to_le_bytes).collect() };
    let mut v = [formats::autoit::MAGIC.as_slice(), b"6", &[0u8; 16]].concat();
    for &(tag, data, compressed) in files {
        put(&mut v, 0x52ca_436b);
        let mut t = utf16(tag);
        let units = t.len() as u32 / 2;
        formats::autoit::lame_decrypt(&mut t, (units + 0xb33f) as u16);
        put(&mut v, units ^ 0xadbc);
        v.extend(t);
        put(&mut v, 0xf820);
        v.push(u8::from(compressed));
        put(&mut v, data.len() as u32 ^ 0x87bc);
        put(&mut v, data.len() as u32 ^ 0x87bc);
        put(&mut v, 0xa685);
        v.extend([0u8; 16]);
        let mut d = data.to_vec();
        formats::autoit::lame_decrypt(&mut d, 0x2477);
        v.extend(d);
    }
    v.extend(b"AU3!EA06");
    v
}

#[allow(clippy::disallowed_methods)] // bounded by take()
fn testfile(name: &str) -> Vec<u8> {
    let path = format!("/usr/share/clamav-testfiles/{name}");
    let f = std::fs::File::open(&path)
        .unwrap_or_else(|e| panic!("{path}: {e} (scripts/test-deps.sh installs it)"));
    let mut v = Vec::new();
    std::io::Read::read_to_end(&mut std::io::Read::take(f, 1 << 20), &mut v).unwrap();
    v
}

fn md5_hex(d: &[u8]) -> String {
    use md5::Digest;
    md5::Md5::digest(d)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn autoit_scripts_are_extracted_from_executables_and_a3x_files_as_clamav_does() {
    let clam = testfile("clam.exe");
    // (file, where its script starts, MD5 of the script ClamAV 1.4.6 extracts)
    for (name, at, script_md5) in [
        ("clam.ea05.exe", 206_848, "144d97bc59d6944c6cf31e3fca78f432"),
        ("clam.ea06.exe", 252_928, "8903cae272bf36a778c2f361ba282d42"),
    ] {
        let file = testfile(name);
        let (r, seen) = run(file.clone(), name, &Limits::default());
        assert!(r.problems.is_empty(), "{name}: {:?}", r.problems);
        let get = |l: String| seen.iter().find(|(x, _, _)| *x == l).map(|m| &m.2);
        let script = get(format!("{name}>embedded@{at}>autoit.001")).unwrap();
        assert_eq!(md5_hex(script), script_md5, "{name}");
        let dropped = get(format!("{name}>embedded@{at}>autoit.002")).unwrap();
        assert_eq!(dropped, &clam, "{name}");
        // The script alone (an .a3x) is opened too; not so at an offset.
        let a3x = file[at..].to_vec();
        assert_eq!(detect(&a3x), Some(ContainerKind::AutoIt));
        let (r, seen) = run(a3x.clone(), "x.a3x", &Limits::default());
        assert!(r.problems.is_empty(), "{name}: {:?}", r.problems);
        assert_eq!(locations(&seen), ["x.a3x>autoit.001", "x.a3x>autoit.002"]);
        assert_eq!(md5_hex(&seen[0].2), script_md5);
        // The same from a member spooled to disk.
        let dir = tempfile::tempdir().unwrap();
        let zip = zip_of(&[("x.a3x", &a3x)]);
        let (r, on_disk) = run(zip, "z.zip", &small_tmp_limits(dir.path()));
        assert!(r.problems.is_empty(), "{name}: {:?}", r.problems);
        assert_eq!(
            locations(&on_disk),
            [
                "z.zip>x.a3x",
                "z.zip>x.a3x>autoit.001",
                "z.zip>x.a3x>autoit.002"
            ]
        );
        assert_eq!(on_disk[1].2, seen[0].2);
        assert_eq!(on_disk[2].2, seen[1].2);
        let (r, seen) = run([b"x".as_slice(), &a3x].concat(), "y", &Limits::default());
        assert!(r.problems.is_empty() && seen.is_empty(), "{name}");
    }
    // EA06's script is decompiled; its other files are as they are.
    let script = [
        &1u32.to_le_bytes()[..],
        &[0, 4, 0, 0, 0, 0x05, 7, 0, 0, 0, 0x7f],
    ]
    .concat();
    let a3x = a3x_ea06(&[(">>>AUTOIT SCRIPT<<<", &script, false), ("x", EICAR, false)]);
    let (r, seen) = run(a3x, "s.a3x", &Limits::default());
    assert!(r.problems.is_empty(), "{:?}", r.problems);
    assert_eq!(seen[0].2, b"IF 0x00000007 \n");
    assert_eq!(seen[1].2, EICAR);
}

#[test]
fn autoit_files_past_a_limit_are_limits_and_the_rest_are_read() {
    let big = vec![b'a'; 4000];
    let a3x = a3x_ea06(&[("big", &big, false), ("x", EICAR, false)]);
    let limits = Limits {
        max_member_size: 1000,
        ..Limits::default()
    };
    let (r, seen) = run(a3x, "l.a3x", &limits);
    assert_eq!(limit_whats(&r), ["member_size"]);
    assert_eq!(r.problems[0].location(), "l.a3x>autoit.001");
    assert_eq!(locations(&seen), ["l.a3x>autoit.001"]);
    assert_eq!(seen[0].2, EICAR);
    // A compressed file that claims 2 GiB from a few bytes: the ratio.
    let bomb = b"EA06\x7f\xff\xff\xff\0\0\0\0";
    let (r, seen) = run(
        a3x_ea06(&[("bomb", bomb, true)]),
        "b.a3x",
        &Limits::default(),
    );
    assert_eq!(limit_whats(&r), ["ratio"]);
    assert!(seen.is_empty());
}

#[test]
fn damaged_autoit_scripts_never_panic_and_a_cut_a3x_is_corrupt() {
    for (name, at, seed) in [
        ("clam.ea05.exe", 206_848, 0x2545_f491_4f6c_dd1du64),
        ("clam.ea06.exe", 252_928, 0x9e37_79b9_7f4a_7c15),
    ] {
        let file = testfile(name);
        // Cut or overwritten anywhere in the script's data, in the
        // executable and as an .a3x.
        survives_damage(&file, at..file.len(), 60, 300, 3, seed);
        let a3x = file[at..].to_vec();
        survives_damage(&a3x, 0..a3x.len(), 60, 300, 3, seed ^ 1);
        // An .a3x cut anywhere before its trailer is corrupt, never clean.
        for n in (24..a3x.len() - 8).step_by(97) {
            let (r, _) = run(a3x[..n].to_vec(), "cut.a3x", &Limits::default());
            assert!(
                r.problems
                    .iter()
                    .any(|p| matches!(p, Problem::Corrupt { .. })),
                "{name} cut at {n}: {:?}",
                r.problems
            );
        }
    }
}
