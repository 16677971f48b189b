//! `moat scan` end to end on the shared generators' corpus and on bad input.

mod common;
use common::*;
use std::collections::HashMap;
use std::path::Path;

#[test]
fn corpus_detections_match_the_manifest_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let (sigs, corpus) = gen_small(dir.path());
    let out = moat()
        .args(["scan", "--json", "-j", "2", "--signatures"])
        .arg(&sigs)
        .arg(&corpus)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let manifest: HashMap<String, serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(corpus.join("manifest.json")).unwrap())
            .unwrap();
    let results: HashMap<String, serde_json::Value> = json_lines(&out)
        .into_iter()
        .map(|v| {
            let p = v["path"].as_str().unwrap().to_string();
            let rel = Path::new(&p)
                .strip_prefix(&corpus)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            (rel, v)
        })
        .filter(|(rel, _)| rel != "manifest.json")
        .collect();
    assert_eq!(
        results.len(),
        manifest.len(),
        "every corpus file gets exactly one verdict"
    );
    let mut infected = 0;
    for (rel, want) in &manifest {
        let got = &results[rel];
        if want["expect"] == "clean" {
            assert_eq!(got["status"], "clean", "{rel}: {got}");
            continue;
        }
        infected += 1;
        assert_eq!(got["status"], "infected", "{rel}: {got}");
        let names: Vec<&str> = got["findings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["signature"].as_str().unwrap())
            .collect();
        for sig in want["signatures"].as_array().unwrap() {
            let sig = sig.as_str().unwrap();
            let found = if sig == "EICAR" {
                names
                    .iter()
                    .any(|n| n.to_ascii_lowercase().contains("eicar"))
            } else {
                names.contains(&sig)
            };
            assert!(found, "{rel}: expected {sig}, got {names:?}");
        }
        assert_eq!(got["sha256"].as_str().unwrap().len(), 64);
    }
    assert!(infected > 30, "corpus has planted detections");
    // Findings inside containers carry their location.
    let nested = &results["infected/eicar_nested.zip"];
    let loc = nested["findings"][0]["location"].as_str().unwrap();
    assert!(
        loc.ends_with("eicar_nested.zip>inner.zip>deep/eicar.txt"),
        "{loc}"
    );
}

#[test]
fn text_output_and_exit_codes_follow_clamscan() {
    let dir = tempfile::tempdir().unwrap();
    let clean = dir.path().join("clean.txt");
    std::fs::write(&clean, b"just text\n").unwrap();
    let out = moat().arg("scan").arg(&clean).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("{}: OK", clean.display())
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("Scanned files: 1"));

    let eicar = dir.path().join("eicar.com");
    std::fs::write(&eicar, EICAR).unwrap();
    let out = moat().arg("scan").arg(dir.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("{}: Eicar-Test-Signature FOUND", eicar.display())),
        "{text}"
    );
    assert!(text.contains(&format!("{}: OK", clean.display())), "{text}");
}

#[test]
fn stdin_is_scanned() {
    use std::io::Write;
    let mut child = moat()
        .args(["scan", "--json", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(EICAR).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let v = &json_lines(&out)[0];
    assert_eq!(v["path"], "stdin");
    assert_eq!(v["status"], "infected");
    assert_eq!(v["size"], 68);
}

const MAKE_BAD: &str = r#"
import sys, zipfile, io, os
d = sys.argv[1]
eicar = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
buf = io.BytesIO()
with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
    z.writestr("a.txt", b"hello " * 5000)
    z.writestr("b.txt", os.urandom(50000))
data = buf.getvalue()
open(os.path.join(d, "truncated.zip"), "wb").write(data[: len(data) // 2])
# A zip bomb: 300 MiB of zeros deflated to a few hundred KiB.
with zipfile.ZipFile(os.path.join(d, "bomb.zip"), "w", zipfile.ZIP_DEFLATED) as z:
    with z.open("zeros.bin", "w", force_zip64=True) as f:
        block = b"\0" * (1 << 20)
        for _ in range(300):
            f.write(block)
# An encrypted zip holding EICAR (ZipCrypto): python can't write it, so craft the
# flag bit on a stored entry; the content bytes are then "encrypted" noise.
buf = io.BytesIO()
with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
    z.writestr("eicar.com", bytes(b ^ 0x5a for b in eicar))
raw = bytearray(buf.getvalue())
raw[6] |= 1  # local header general-purpose flag: encrypted
cd = raw.find(b"PK\x01\x02")
raw[cd + 8] |= 1  # central directory flag
open(os.path.join(d, "encrypted.zip"), "wb").write(bytes(raw))
open(os.path.join(d, "empty.bin"), "wb").close()
open(os.path.join(d, "corrupt.gz"), "wb").write(b"\x1f\x8b\x08\x00garbage-not-deflate" * 10)
"#;

#[test]
fn bad_input_gets_the_right_verdict_never_clean() {
    let dir = tempfile::tempdir().unwrap();
    python(MAKE_BAD, &[dir.path()]);
    std::os::unix::fs::symlink(
        dir.path().join("does-not-exist"),
        dir.path().join("dangling"),
    )
    .unwrap();
    let out = moat()
        .args(["scan", "--json"])
        .arg(dir.path().join("truncated.zip"))
        .arg(dir.path().join("bomb.zip"))
        .arg(dir.path().join("encrypted.zip"))
        .arg(dir.path().join("empty.bin"))
        .arg(dir.path().join("corrupt.gz"))
        .arg(dir.path().join("dangling"))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let by_name: HashMap<String, serde_json::Value> = json_lines(&out)
        .into_iter()
        .map(|v| {
            (
                Path::new(v["path"].as_str().unwrap())
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .into_owned(),
                v,
            )
        })
        .collect();
    let expect = |name: &str, status: &str, reason: Option<&str>| {
        let v = &by_name[name];
        assert_eq!(v["status"], status, "{name}: {v}");
        if let Some(r) = reason {
            assert_eq!(v["reason"], r, "{name}: {v}");
        }
    };
    expect("truncated.zip", "unscannable", Some("unsupported"));
    expect("bomb.zip", "unscannable", Some("limits_exceeded"));
    expect("encrypted.zip", "unscannable", Some("encrypted"));
    expect("empty.bin", "clean", None);
    expect("corrupt.gz", "unscannable", Some("unsupported"));
    expect("dangling", "error", Some("unreadable"));
}

#[test]
fn malformed_signature_lines_are_reported_and_the_rest_still_loads() {
    let dir = tempfile::tempdir().unwrap();
    let sigs = dir.path().join("sigs");
    std::fs::create_dir(&sigs).unwrap();
    std::fs::write(
        sigs.join("mixed.ndb"),
        "Good.Sig:0:*:6d6f61742d676f6f642d7369676e6174757265\nBroken.Sig:0:*:zz11\nAlso.Broken\n",
    )
    .unwrap();
    let sample = dir.path().join("sample.bin");
    std::fs::write(&sample, b"xxxx moat-good-signature yyyy").unwrap();
    let out = moat()
        .args(["scan", "--signatures"])
        .arg(&sigs)
        .arg(&sample)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("Good.Sig FOUND"));
    assert!(
        stderr.contains("mixed.ndb") && stderr.contains(":2"),
        "error names file and line: {stderr}"
    );
}

#[test]
fn a_missing_signature_directory_is_a_clear_error() {
    let out = moat()
        .args(["scan", "--signatures", "/nonexistent/sigs", "/etc/hostname"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("/nonexistent/sigs"), "{stderr}");
}

/// `moat scan` keeps the compiled signature set in `$XDG_CACHE_HOME/moat/builtin`
/// and reads it back on the next run with the same files; a changed file or a
/// damaged entry means compiling again, never a stale or broken set.
#[test]
fn scan_reads_the_compiled_set_from_its_cache_until_a_signature_file_changes() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let (sigs, files, cache) = (
        dir.path().join("sigs"),
        dir.path().join("files"),
        dir.path().join("cache"),
    );
    std::fs::create_dir_all(&sigs).unwrap();
    std::fs::create_dir_all(&files).unwrap();
    std::fs::write(
        sigs.join("a.ndb"),
        "Cache.One:0:*:6f6e65206d61726b6572206279746573\n",
    )
    .unwrap();
    std::fs::write(files.join("one.bin"), b"..one marker bytes..").unwrap();
    std::fs::write(files.join("two.bin"), b"..two marker bytes..").unwrap();
    let scan = || {
        let out = moat()
            .env("XDG_CACHE_HOME", &cache)
            .env("MOAT_LOG", "moat_builtin=info")
            .args(["scan", "--json", "--signatures"])
            .arg(&sigs)
            .arg(&files)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let verdicts: HashMap<String, String> = json_lines(&out)
            .into_iter()
            .map(|v| {
                let name = Path::new(v["path"].as_str().unwrap())
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                let sig = v["findings"][0]["signature"]
                    .as_str()
                    .unwrap_or("clean")
                    .to_string();
                (name, sig)
            })
            .collect();
        (verdicts, stderr)
    };
    let entries = || -> Vec<std::path::PathBuf> {
        std::fs::read_dir(cache.join("moat/builtin"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect()
    };
    let from_cache = "loaded from the compiled cache";

    let (first, err) = scan();
    assert_eq!(first["one.bin"], "Cache.One", "{err}");
    assert_eq!(first["two.bin"], "clean");
    assert!(!err.contains(from_cache), "{err}");
    let e = entries();
    assert_eq!(e.len(), 1, "{e:?}");
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&e[0]), 0o600);
    assert_eq!(mode(&cache.join("moat/builtin")), 0o700);

    let (second, err) = scan();
    assert_eq!(second, first);
    assert!(err.contains(from_cache), "{err}");

    // A damaged entry: compiled again, the entry written anew.
    #[allow(clippy::disallowed_methods)] // the test's own small entry
    let mut bytes = std::fs::read(&e[0]).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    std::fs::write(&e[0], &bytes).unwrap();
    let (third, err) = scan();
    assert_eq!(third, first);
    assert!(!err.contains(from_cache), "{err}");
    assert!(err.contains("corrupt cache entry"), "{err}");
    assert!(scan().1.contains(from_cache));

    // A changed signature file: its new signature is in force at once.
    std::fs::write(
        sigs.join("b.ndb"),
        "Cache.Two:0:*:74776f206d61726b6572206279746573\n",
    )
    .unwrap();
    let (fourth, err) = scan();
    assert_eq!(fourth["one.bin"], "Cache.One");
    assert_eq!(fourth["two.bin"], "Cache.Two", "{err}");
    assert!(!err.contains(from_cache), "{err}");
    assert_eq!(entries().len(), 1, "the older entry of the set is removed");
}
