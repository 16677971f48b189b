//! Engine tests with rule files written to temporary directories.

use crate::YaraEngine;
use moat_core::{Blob, Engine, EngineError, Object, ScanContext, Spool};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, text).unwrap();
    p
}

fn ctx() -> ScanContext {
    ScanContext {
        deadline: Instant::now() + Duration::from_secs(30),
    }
}

fn obj<'a>(data: &'a Blob, name: &'a str) -> Object<'a> {
    Object {
        data,
        name,
        location: name,
        content_type: "application/octet-stream",
        depth: 0,
        sha256: None,
    }
}

fn hits(e: &YaraEngine, data: &Blob, name: &str) -> Vec<(String, bool)> {
    e.scan(&obj(data, name), &ctx())
        .unwrap()
        .hits
        .into_iter()
        .map(|h| (h.signature, h.suspicious))
        .collect()
}

const GOOD: &str = r#"
rule Evil_Marker { strings: $a = "EVIL-MARKER" condition: $a }
"#;

#[test]
fn a_broken_file_does_not_disable_the_good_one() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "good.yar", GOOD);
    write(
        dir.path(),
        "sub/broken.yara",
        "rule Broken { condition: nonsense and }",
    );
    write(dir.path(), "notes.txt", "not a rule file");
    let e = YaraEngine::load("yara", &[dir.path().to_path_buf()]).unwrap();
    let info = e.info();
    assert_eq!(info.kind, "yara");
    assert_eq!(info.signatures["yara_rules"], 1);
    assert_eq!(info.load_errors.len(), 1, "{:?}", info.load_errors);
    assert!(
        info.load_errors[0].contains("broken.yara"),
        "{:?}",
        info.load_errors
    );
    assert!(info.version.starts_with("yara-x "));
    assert_eq!(info.signature_version.len(), 12);
    let data = Blob::from_vec(b"xx EVIL-MARKER xx".to_vec());
    assert_eq!(
        hits(&e, &data, "f"),
        [("YARA.Evil_Marker".to_string(), false)]
    );
    assert!(hits(&e, &Blob::from_vec(b"benign".to_vec()), "f").is_empty());
}

#[test]
fn externals_are_set_from_the_object() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "ext.yar",
        r#"
rule Exe_Ext { condition: extension == "exe" }
rule Named { condition: filename == "Setup.EXE" and filepath == "a.zip>Setup.EXE" }
rule Typed { condition: filetype == "application/x-dosexec" }
"#,
    );
    let e = YaraEngine::load("yara", &[dir.path().join("ext.yar")]).unwrap();
    let data = Blob::from_vec(b"MZ".to_vec());
    let o = Object {
        data: &data,
        name: "Setup.EXE",
        location: "a.zip>Setup.EXE",
        content_type: "application/x-dosexec",
        depth: 1,
        sha256: None,
    };
    let mut got: Vec<String> = e
        .scan(&o, &ctx())
        .unwrap()
        .hits
        .into_iter()
        .map(|h| h.signature)
        .collect();
    got.sort();
    assert_eq!(got, ["YARA.Exe_Ext", "YARA.Named", "YARA.Typed"]);
    assert!(hits(&e, &data, "readme.txt").is_empty());
}

#[test]
fn suspicious_metadata() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "s.yar",
        r#"
rule Sev { meta: severity = "suspicious" strings: $a = "abc" condition: $a }
rule Flag { meta: suspicious = true strings: $a = "abc" condition: $a }
rule NotFlag { meta: suspicious = false strings: $a = "abc" condition: $a }
rule Plain { meta: author = "x" strings: $a = "abc" condition: $a }
"#,
    );
    let e = YaraEngine::load("yara", &[dir.path().to_path_buf()]).unwrap();
    let mut got = hits(&e, &Blob::from_vec(b"..abc..".to_vec()), "f");
    got.sort();
    assert_eq!(
        got,
        [
            ("YARA.Flag".to_string(), true),
            ("YARA.NotFlag".to_string(), false),
            ("YARA.Plain".to_string(), false),
            ("YARA.Sev".to_string(), true),
        ]
    );
}

#[test]
fn file_backed_blob_is_scanned() {
    let dir = tempfile::tempdir().unwrap();
    let rules = write(dir.path(), "r.yar", GOOD);
    let e = YaraEngine::load("yara", &[rules]).unwrap();
    let spool_dir = tempfile::tempdir().unwrap();
    let mut s = Spool::new(16, 1 << 30, spool_dir.path());
    s.write_all(&vec![b'.'; 100_000]).unwrap();
    s.write_all(b"EVIL-MARKER").unwrap();
    let (blob, _) = s.finish().unwrap();
    assert!(blob.as_slice().is_none(), "spilled to a file");
    assert_eq!(
        hits(&e, &blob, "big.bin"),
        [("YARA.Evil_Marker".to_string(), false)]
    );
    assert_eq!(std::fs::read_dir(spool_dir.path()).unwrap().count(), 0);
}

#[test]
fn empty_rule_dir_loads_zero_rules() {
    let dir = tempfile::tempdir().unwrap();
    let e = YaraEngine::load("yara", &[dir.path().to_path_buf()]).unwrap();
    assert_eq!(e.info().signatures["yara_rules"], 0);
    assert!(e.info().load_errors.is_empty());
    assert!(hits(&e, &Blob::from_vec(b"x".to_vec()), "f").is_empty());
}

#[test]
fn missing_path_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let err = YaraEngine::load("yara", &[dir.path().join("nope")]).unwrap_err();
    assert!(err.to_string().contains("nope"), "{err}");
}

#[test]
fn same_rule_name_in_two_files_is_qualified() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a.yar", GOOD);
    write(dir.path(), "b.yar", GOOD);
    let e = YaraEngine::load("yara", &[dir.path().to_path_buf()]).unwrap();
    let mut got = hits(&e, &Blob::from_vec(b"EVIL-MARKER".to_vec()), "f");
    got.sort();
    assert_eq!(
        got,
        [
            ("YARA.a.yar.Evil_Marker".to_string(), false),
            ("YARA.b.yar.Evil_Marker".to_string(), false)
        ]
    );
}

#[test]
fn signature_version_follows_content() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "r.yar", GOOD);
    let v1 = YaraEngine::load("y", std::slice::from_ref(&p))
        .unwrap()
        .info()
        .signature_version;
    let v1b = YaraEngine::load("y", std::slice::from_ref(&p))
        .unwrap()
        .info()
        .signature_version;
    write(dir.path(), "r.yar", &GOOD.replace("EVIL", "BAD"));
    let v2 = YaraEngine::load("y", &[p])
        .unwrap()
        .info()
        .signature_version;
    assert_eq!(v1, v1b);
    assert_ne!(v1, v2);
}

#[test]
fn expired_deadline_is_a_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let e = YaraEngine::load("yara", &[write(dir.path(), "r.yar", GOOD)]).unwrap();
    let data = Blob::from_vec(b"x".to_vec());
    let past = ScanContext {
        deadline: Instant::now(),
    };
    assert!(matches!(
        e.scan(&obj(&data, "f"), &past),
        Err(EngineError::Timeout)
    ));
}

#[test]
fn unreadable_files_are_reported_and_only_fatal_when_nothing_is_read() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bin.yar"), [0xff, 0xfe, 0x00, 0x80]).unwrap();
    let err = YaraEngine::load("yara", &[dir.path().to_path_buf()]).unwrap_err();
    assert!(err.to_string().contains("bin.yar"), "{err}");
    write(dir.path(), "good.yar", GOOD);
    let e = YaraEngine::load("yara", &[dir.path().to_path_buf()]).unwrap();
    assert_eq!(e.info().signatures["yara_rules"], 1);
    assert!(e.info().load_errors[0].contains("bin.yar"));
}
