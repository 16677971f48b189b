//! The cabinet reader against gcab (apt `gcab`) on a cabinet Microsoft's
//! tools made: the LZX-compressed (2^21-byte window) cabinet inside
//! InstallShield's `clam_IScab_ext.exe` of Debian's `clamav-testfiles`,
//! found by moat as an object embedded in the executable. Every file gcab
//! extracts must be a member with the same content, and nothing else.

use moat_core::Blob;
use moat_extract::{Limits, walk};
use std::collections::BTreeMap;
use std::io::Read;
use std::process::Command;

const SETUP: &str = "/usr/share/clamav-testfiles/clam_IScab_ext.exe";

fn sha256_hex(d: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(d)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn read(path: &std::path::Path) -> Vec<u8> {
    let mut v = Vec::new();
    #[allow(clippy::disallowed_methods)] // bounded by take()
    std::fs::File::open(path)
        .unwrap_or_else(|e| panic!("{}: {e} (scripts/test-deps.sh installs it)", path.display()))
        .take(64 << 20)
        .read_to_end(&mut v)
        .unwrap();
    v
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
    let cab_at = members
        .keys()
        .find_map(|l| {
            let rest = l.strip_prefix("setup.exe>embedded@")?;
            let (at, member) = rest.split_once('>')?;
            (member == "ISBEW64.exe").then(|| at.parse::<usize>().unwrap())
        })
        .expect("the cabinet is found embedded in the setup");
    assert_eq!(&setup[cab_at..cab_at + 4], b"MSCF");

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
        expected.insert(
            format!("setup.exe>embedded@{cab_at}>{name}"),
            sha256_hex(&read(&p)),
        );
    }
    assert!(expected.len() >= 10, "{expected:?}");
    let prefix = format!("setup.exe>embedded@{cab_at}>");
    let got: BTreeMap<String, String> = members
        .into_iter()
        .filter(|(l, _)| l.starts_with(&prefix) && !l[prefix.len()..].contains('>'))
        .collect();
    assert_eq!(got, expected);
}
