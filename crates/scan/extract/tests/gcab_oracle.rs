//! The cabinet reader against gcab (apt `gcab`) on a cabinet Microsoft's
//! tools made: the LZX-compressed (2^21-byte window) cabinet inside
//! InstallShield's `clam_IScab_ext.exe` of Debian's `clamav-testfiles`,
//! found by moat as a file of the setup's InstallShield overlay. Every file gcab
//! extracts must be a member with the same content, and nothing else.

mod common;

use common::read;
use moat_core::Blob;
use moat_extract::{Limits, walk};
use std::collections::BTreeMap;
use std::process::Command;

const SETUP: &str = "/usr/share/clamav-testfiles/clam_IScab_ext.exe";

fn sha256_hex(d: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(d)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn lzx_cabinet_in_an_installshield_setup_gives_what_gcab_gives() {
    let setup = read(SETUP.as_ref());
    let blob = Blob::from_vec(setup.clone());
    let mut members: BTreeMap<String, String> = BTreeMap::new();
    let report =
        walk::<std::convert::Infallible>(&blob, "setup.exe", &Limits::default(), &mut |e| {
            members.insert(
                e.location.to_string(),
                e.sha256.iter().map(|b| format!("{b:02x}")).collect(),
            );
            Ok(())
        })
        .unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    // The cabinet is one of the files of the setup's InstallShield overlay.
    let inside = members
        .keys()
        .find_map(|l| l.strip_suffix(">ISBEW64.exe"))
        .expect("the cabinet's files are found in the setup")
        .to_string();
    assert_eq!(inside, "setup.exe>engine32.cab");
    let cab_at = setup
        .windows(8)
        .position(|w| w == b"MSCF\0\0\0\0")
        .expect("an MSCF header");
    let dir = tempfile::tempdir().unwrap();
    let cab = dir.path().join("data.cab");
    std::fs::write(&cab, &setup[cab_at..]).unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let st = Command::new("gcab")
        .arg("-x")
        .arg("-C")
        .arg(&out)
        .arg(&cab)
        .status()
        .expect("gcab is installed (scripts/test-deps.sh)");
    assert!(st.success());
    let mut expected = BTreeMap::new();
    for e in std::fs::read_dir(&out).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        expected.insert(format!("{inside}>{name}"), sha256_hex(&read(&p)));
    }
    assert!(expected.len() >= 10, "{expected:?}");
    let prefix = format!("{inside}>");
    let got: BTreeMap<String, String> = members
        .into_iter()
        .filter(|(l, _)| l.starts_with(&prefix) && !l[prefix.len()..].contains('>'))
        .collect();
    assert_eq!(got, expected);
}
