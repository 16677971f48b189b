//! `moat scan --yara`: one bad rule file never disables the others; externals;
//! suspicious rules; rules see archive members.

mod common;
use common::*;

#[test]
fn yara_rules_scan_files_and_members_and_bad_files_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    std::fs::create_dir(&rules).unwrap();
    std::fs::write(
        rules.join("good.yar"),
        "rule Moat_Marker { strings: $a = \"moat-yara-marker\" condition: $a }\n",
    )
    .unwrap();
    std::fs::write(
        rules.join("ext.yar"),
        "rule Exe_Named { condition: extension == \"exe\" and filesize > 0 }\n\
         rule Odd { meta: severity = \"suspicious\" strings: $a = \"odd-but-not-evil\" condition: $a }\n",
    )
    .unwrap();
    std::fs::write(
        rules.join("broken.yar"),
        "rule Broken { condition: $nope }\n",
    )
    .unwrap();

    let files = dir.path().join("files");
    std::fs::create_dir(&files).unwrap();
    std::fs::write(files.join("marker.txt"), b"xx moat-yara-marker xx").unwrap();
    std::fs::write(files.join("tool.exe"), b"not really a program").unwrap();
    std::fs::write(files.join("odd.txt"), b"something odd-but-not-evil here").unwrap();
    std::fs::write(files.join("plain.txt"), b"plain").unwrap();
    python(
        "import sys, zipfile\nwith zipfile.ZipFile(sys.argv[1], 'w', zipfile.ZIP_DEFLATED) as z: z.writestr('inner/marker.bin', b'-- moat-yara-marker --')",
        &[&files.join("packed.zip")],
    );

    let out = moat()
        .args(["scan", "--json", "--yara"])
        .arg(&rules)
        .arg(&files)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("broken.yar"),
        "the bad rule file is reported: {stderr}"
    );
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let lines = json_lines(&out);
    let get = |name: &str| {
        lines
            .iter()
            .find(|v| v["path"].as_str().unwrap().ends_with(name))
            .unwrap()
            .clone()
    };
    assert_eq!(get("marker.txt")["status"], "infected");
    assert_eq!(
        get("marker.txt")["findings"][0]["signature"],
        "YARA.Moat_Marker"
    );
    assert_eq!(
        get("tool.exe")["findings"][0]["signature"],
        "YARA.Exe_Named"
    );
    assert_eq!(get("odd.txt")["status"], "suspicious");
    assert_eq!(get("plain.txt")["status"], "clean");
    // Deflated, so only the extracted member can match.
    let packed = get("packed.zip");
    assert_eq!(packed["status"], "infected");
    let locations: Vec<&str> = packed["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["location"].as_str().unwrap())
        .collect();
    assert!(
        locations
            .iter()
            .any(|l| l.ends_with("packed.zip>inner/marker.bin")),
        "{locations:?}"
    );
}
