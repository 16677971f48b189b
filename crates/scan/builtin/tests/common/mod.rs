//! What the differential tests share: running Debian's `clamscan`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

/// A file's name, the key of the detection maps.
pub fn name_of(p: &Path) -> String {
    p.file_name().unwrap().to_string_lossy().into_owned()
}

/// `clamscan --allmatch` detections per file name (every file present,
/// ClamAV's `.UNOFFICIAL` suffix removed). Panics when clamscan cannot run:
/// `scripts/test-deps.sh` installs it, and a skipped comparison proves nothing.
pub fn clamscan(sigs: &Path, files: &[PathBuf]) -> BTreeMap<String, BTreeSet<String>> {
    let out = Command::new("clamscan")
        .args(["--allmatch", "--no-summary", "-d"])
        .arg(sigs)
        .args(files)
        .output()
        .expect("clamscan is installed (apt clamav; scripts/test-deps.sh)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.code().is_some_and(|c| c <= 1),
        "clamscan failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut m: BTreeMap<String, BTreeSet<String>> = files
        .iter()
        .map(|f| (name_of(f), BTreeSet::new()))
        .collect();
    for line in stdout.lines() {
        let Some(rest) = line.strip_suffix(" FOUND") else {
            continue;
        };
        let Some((path, sig)) = rest.rsplit_once(": ") else {
            continue;
        };
        let sig = sig.strip_suffix(".UNOFFICIAL").unwrap_or(sig);
        m.entry(name_of(Path::new(path)))
            .or_default()
            .insert(sig.to_string());
    }
    m
}
