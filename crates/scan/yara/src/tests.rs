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

/// A test file of at most 64 MiB.
fn read_small(path: &Path) -> Vec<u8> {
    use std::io::Read;
    let mut v = Vec::new();
    #[allow(clippy::disallowed_methods)] // bounded by take()
    std::fs::File::open(path)
        .unwrap()
        .take(64 << 20)
        .read_to_end(&mut v)
        .unwrap();
    v
}

fn ctx() -> ScanContext {
    ScanContext::within(Duration::from_secs(30))
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
        all_match: false,
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

// ---- modules: PE files built at test time with MinGW ----

/// Compile `c_source` with x86_64-w64-mingw32-gcc into `out` (extra args,
/// e.g. `-shared`).
fn mingw(dir: &Path, c_source: &str, out: &str, extra: &[&str]) -> PathBuf {
    let src = write(dir, &format!("{out}.c"), c_source);
    let exe = dir.join(out);
    let st = std::process::Command::new("x86_64-w64-mingw32-gcc")
        .args(extra)
        .arg("-o")
        .arg(&exe)
        .arg(&src)
        .status()
        .expect("x86_64-w64-mingw32-gcc (Debian gcc-mingw-w64) is required");
    assert!(st.success(), "mingw build of {out} failed");
    exe
}

/// 64 KiB of pseudo-random bytes as a C initialiser (xorshift, fixed seed).
fn random_c_array(name: &str) -> String {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut s = format!("const unsigned char {name}[65536] = {{");
    for i in 0..65536 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        if i > 0 {
            s.push(',');
        }
        s.push_str(&((x >> 24) as u8).to_string());
    }
    s.push_str("};\n");
    s
}

const MODULE_RULES: &str = r#"
import "pe"
import "dotnet"
import "math"

rule Pe_Exports_Marker {
    condition: pe.is_pe and pe.is_dll() and pe.exports("moat_marker_export")
}
rule Pe_Amd64_Kernel32 {
    condition: pe.machine == pe.MACHINE_AMD64
        and pe.imports(/kernel32\.dll/i, /.+/) > 0
        and pe.number_of_sections >= 3
}
rule Pe_Not_DotNet {
    condition: pe.is_pe and not dotnet.is_dotnet
}
rule Pe_High_Entropy_Section {
    condition: pe.is_pe and for any s in pe.sections : (
        s.raw_data_size > 60000 and math.entropy(s.raw_data_offset, s.raw_data_size) > 7.0
    )
}
rule Low_Entropy_Blob {
    condition: not pe.is_pe and filesize > 1000 and math.entropy(0, filesize) < 1.0
}
"#;

fn names(e: &YaraEngine, data: &Blob, name: &str) -> Vec<String> {
    let mut v: Vec<String> = hits(e, data, name).into_iter().map(|h| h.0).collect();
    v.sort();
    v
}

#[test]
fn pe_dotnet_and_math_rules_match_mingw_binaries() {
    let dir = tempfile::tempdir().unwrap();
    let rules = write(dir.path(), "rules/modules.yar", MODULE_RULES);
    let e = YaraEngine::load("yara", std::slice::from_ref(&rules)).unwrap();
    assert!(
        e.info().load_errors.is_empty(),
        "{:?}",
        e.info().load_errors
    );
    assert_eq!(e.info().signatures["yara_rules"], 5);

    let dll = mingw(
        dir.path(),
        "__declspec(dllexport) int moat_marker_export(int x) { return x * 7; }\n",
        "marker.dll",
        &["-shared"],
    );
    let exe = mingw(
        dir.path(),
        &format!(
            "#include <stdio.h>\n{}\nint main(int c, char **v) {{ printf(\"%d\\n\", blob[c]); return 0; }}\n",
            random_c_array("blob")
        ),
        "entropy.exe",
        &[],
    );
    let dll_bytes = Blob::from_vec(read_small(&dll));
    let exe_bytes = Blob::from_vec(read_small(&exe));
    let zeros = Blob::from_vec(vec![0u8; 4096]);

    assert_eq!(
        names(&e, &dll_bytes, "marker.dll"),
        [
            "YARA.Pe_Amd64_Kernel32",
            "YARA.Pe_Exports_Marker",
            "YARA.Pe_Not_DotNet"
        ]
    );
    assert_eq!(
        names(&e, &exe_bytes, "entropy.exe"),
        [
            "YARA.Pe_Amd64_Kernel32",
            "YARA.Pe_High_Entropy_Section",
            "YARA.Pe_Not_DotNet"
        ]
    );
    assert_eq!(names(&e, &zeros, "zeros.bin"), ["YARA.Low_Entropy_Blob"]);

    // The same verdicts from yara 4 (Debian `yara`), when installed.
    match std::process::Command::new("yara")
        .arg(&rules)
        .arg(&dll)
        .output()
    {
        Ok(out) => {
            let stdout = String::from_utf8_lossy(&out.stdout);
            let mut got: Vec<String> = stdout
                .lines()
                .filter_map(|l| l.split_whitespace().next())
                .map(|r| format!("YARA.{r}"))
                .collect();
            got.sort();
            assert_eq!(got, names(&e, &dll_bytes, "marker.dll"), "yara: {stdout}");
        }
        Err(err) => eprintln!("yara not installed ({err}): differential check skipped"),
    }
}

// ---- loading: together first, whole files only ----

#[test]
fn a_file_with_one_bad_rule_is_rejected_whole() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a_good.yar", GOOD);
    write(
        dir.path(),
        "b_mixed.yar",
        r#"
rule Mixed_Good { strings: $a = "MIXED-GOOD" condition: $a }
rule Mixed_Bad { condition: undefined_identifier }
"#,
    );
    write(
        dir.path(),
        "c_good.yar",
        "rule Other { strings: $a = \"OTHER\" condition: $a }",
    );
    // The bad rule first: yara-x still compiles the good one after it.
    write(
        dir.path(),
        "d_bad_first.yar",
        r#"
rule Late_Bad { condition: another_undefined_identifier }
rule Late_Good { strings: $a = "LATE-GOOD" condition: $a }
"#,
    );
    let e = YaraEngine::load("yara", &[dir.path().to_path_buf()]).unwrap();
    assert_eq!(e.info().signatures["yara_rules"], 2);
    assert_eq!(e.load_report().files, 2);
    assert_eq!(e.info().load_errors.len(), 2, "{:?}", e.info().load_errors);
    assert!(e.info().load_errors[0].contains("b_mixed.yar"));
    assert!(e.info().load_errors[0].contains("undefined_identifier"));
    assert!(e.info().load_errors[1].contains("d_bad_first.yar"));
    let data = Blob::from_vec(b"EVIL-MARKER MIXED-GOOD OTHER LATE-GOOD".to_vec());
    assert_eq!(names(&e, &data, "f"), ["YARA.Evil_Marker", "YARA.Other"]);
}

#[test]
fn yara4_regex_escapes_and_externals_compile() {
    let dir = tempfile::tempdir().unwrap();
    // `\/` style escapes of yara 4 regexes and every external variable.
    write(
        dir.path(),
        "compat.yar",
        r#"
rule Loose_Regex { strings: $r = /evil\-path\/x\.exe/ condition: $r }
rule Uses_Externals {
    condition: filename != "x" and filepath != "x" and extension != "x"
        and filetype != "x" and owner == ""
}
"#,
    );
    let e = YaraEngine::load("yara", &[dir.path().to_path_buf()]).unwrap();
    assert!(
        e.info().load_errors.is_empty(),
        "{:?}",
        e.info().load_errors
    );
    let data = Blob::from_vec(b"..evil-path/x.exe..".to_vec());
    assert_eq!(
        names(&e, &data, "f"),
        ["YARA.Loose_Regex", "YARA.Uses_Externals"]
    );
}

// ---- the compiled cache ----

fn cache_entries(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|r| r.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn second_load_comes_from_the_cache() {
    use crate::CacheOutcome;
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let rules = dir.path().join("rules");
    write(&rules, "modules.yar", MODULE_RULES);
    write(&rules, "good.yar", GOOD);
    write(
        &rules,
        "broken.yar",
        "rule Broken { condition: nonsense and }",
    );
    let roots = [rules.clone()];

    let cold = YaraEngine::load_cached("yara", &roots, Some(&cache)).unwrap();
    assert_eq!(cold.load_report().cache, CacheOutcome::Stored);
    let entries = cache_entries(&cache);
    assert_eq!(entries.len(), 1, "{entries:?}");
    let mode = std::fs::metadata(&entries[0]).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);

    let warm = YaraEngine::load_cached("yara", &roots, Some(&cache)).unwrap();
    assert_eq!(warm.load_report().cache, CacheOutcome::Hit);
    assert!(
        warm.load_report().elapsed < cold.load_report().elapsed,
        "warm {:?} not faster than cold {:?}",
        warm.load_report().elapsed,
        cold.load_report().elapsed
    );
    // Same set, same report, same detections.
    assert_eq!(warm.info().signatures, cold.info().signatures);
    assert_eq!(warm.info().signature_version, cold.info().signature_version);
    assert_eq!(warm.info().load_errors, cold.info().load_errors);
    assert!(warm.info().load_errors[0].contains("broken.yar"));
    assert_eq!(warm.load_report().files, 2);
    let data = Blob::from_vec(b"EVIL-MARKER".to_vec());
    assert_eq!(names(&warm, &data, "f"), ["YARA.Evil_Marker"]);
}

#[test]
fn changed_rule_file_invalidates_the_cache() {
    use crate::CacheOutcome;
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let rules = dir.path().join("rules");
    let file = write(&rules, "good.yar", GOOD);
    let roots = [rules.clone()];
    let first = YaraEngine::load_cached("yara", &roots, Some(&cache)).unwrap();
    assert_eq!(first.load_report().cache, CacheOutcome::Stored);
    let old_entry = cache_entries(&cache);

    std::fs::write(&file, GOOD.replace("EVIL-MARKER", "NEW-MARKER")).unwrap();
    let second = YaraEngine::load_cached("yara", &roots, Some(&cache)).unwrap();
    assert_eq!(second.load_report().cache, CacheOutcome::Stored);
    assert_ne!(
        first.info().signature_version,
        second.info().signature_version
    );
    let new_entry = cache_entries(&cache);
    assert_eq!(new_entry.len(), 1, "stale entry removed: {new_entry:?}");
    assert_ne!(new_entry, old_entry);
    assert_eq!(
        names(&second, &Blob::from_vec(b"NEW-MARKER".to_vec()), "f"),
        ["YARA.Evil_Marker"]
    );
    assert!(names(&second, &Blob::from_vec(b"EVIL-MARKER".to_vec()), "f").is_empty());

    // A new file in the directory is a change too.
    write(&rules, "more.yar", "rule More { condition: true }");
    let third = YaraEngine::load_cached("yara", &roots, Some(&cache)).unwrap();
    assert_eq!(third.load_report().cache, CacheOutcome::Stored);
    assert_eq!(third.info().signatures["yara_rules"], 2);
}

#[test]
fn corrupt_cache_entry_is_rebuilt() {
    use crate::CacheOutcome;
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let rules = dir.path().join("rules");
    write(&rules, "good.yar", GOOD);
    let roots = [rules.clone()];
    YaraEngine::load_cached("yara", &roots, Some(&cache)).unwrap();
    let entry = cache_entries(&cache).pop().unwrap();
    let bytes = read_small(&entry);

    // A flipped byte in the body, then a truncated file, then garbage.
    let mut flipped = bytes.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x55;
    let truncated = bytes[..bytes.len() / 3].to_vec();
    for bad in [flipped, truncated, b"garbage".to_vec(), Vec::new()] {
        std::fs::write(&entry, &bad).unwrap();
        let e = YaraEngine::load_cached("yara", &roots, Some(&cache)).unwrap();
        assert_eq!(e.load_report().cache, CacheOutcome::Stored);
        assert_eq!(
            names(&e, &Blob::from_vec(b"EVIL-MARKER".to_vec()), "f"),
            ["YARA.Evil_Marker"]
        );
        let again = YaraEngine::load_cached("yara", &roots, Some(&cache)).unwrap();
        assert_eq!(again.load_report().cache, CacheOutcome::Hit);
    }
}

#[test]
fn unwritable_cache_dir_still_loads() {
    use crate::CacheOutcome;
    let dir = tempfile::tempdir().unwrap();
    let not_a_dir = write(dir.path(), "file", "x");
    let rules = write(dir.path(), "good.yar", GOOD);
    let e = YaraEngine::load_cached("yara", &[rules], Some(&not_a_dir.join("cache"))).unwrap();
    assert_eq!(e.load_report().cache, CacheOutcome::Failed);
    assert_eq!(
        names(&e, &Blob::from_vec(b"EVIL-MARKER".to_vec()), "f"),
        ["YARA.Evil_Marker"]
    );
}

#[test]
fn scanner_reuse_keeps_externals_per_object() {
    let dir = tempfile::tempdir().unwrap();
    let e = YaraEngine::load(
        "yara",
        &[write(
            dir.path(),
            "r.yar",
            r#"rule Exe { strings: $a = "MZ" condition: $a and extension == "exe" }"#,
        )],
    )
    .unwrap();
    let data = Blob::from_vec(b"MZ".to_vec());
    for i in 0..50 {
        let (name, want) = if i % 2 == 0 {
            ("a.exe", vec!["YARA.Exe".to_string()])
        } else {
            ("a.txt", vec![])
        };
        assert_eq!(names(&e, &data, name), want, "object {i}");
    }
}
