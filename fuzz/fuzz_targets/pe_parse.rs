//! Parse arbitrary bytes as PE (both of ClamAV's section-table modes) and
//! ELF headers, walk the import table, and resolve every executable-relative
//! offset kind. Nothing may panic, and what comes back must lie inside the
//! input: sections with raw data and the entry point are within the file.
#![no_main]

use libfuzzer_sys::fuzz_target;
use moat_builtin::exe::{self, ExeKind, PeMode, Src, imports};
use moat_builtin::ndb::{Layout, Offset};
use moat_core::Blob;

fuzz_target!(|data: &[u8]| {
    // Make the PE and ELF parsers reachable from any input.
    let mut pe = b"MZ".to_vec();
    pe.extend_from_slice(data);
    let mut elf = b"\x7fELF".to_vec();
    elf.extend_from_slice(data);
    for bytes in [data.to_vec(), pe, elf] {
        let len = bytes.len() as u64;
        let blob = Blob::from_vec(bytes);
        let src = Src::new(&blob, &[]);
        for mode in [PeMode::Scan, PeMode::Target] {
            let Ok(Some(info)) = exe::parse(&src, mode) else {
                continue;
            };
            if info.kind == ExeKind::Pe {
                for s in info.sections.iter().filter(|s| s.rsz != 0) {
                    assert!(u64::from(s.raw) + u64::from(s.rsz) <= len);
                }
                assert!(info.ep.is_some_and(|ep| ep < len));
                let mut total = 0u64;
                if let Ok(n) = imports::import_string(&src, &info, |p| total += p.len() as u64) {
                    assert_eq!(u64::from(n), total);
                }
            }
            let layout = Layout::Exe(info);
            for off in [
                Offset::Ep { delta: 5, span: 3 },
                Offset::Ep { delta: -5, span: 0 },
                Offset::Section {
                    index: 1,
                    add: 7,
                    span: 0,
                },
                Offset::SectionWhole { index: 0, span: 2 },
                Offset::LastSection { add: 1, span: 9 },
                Offset::Eof { back: 4, span: 1 },
            ] {
                if let Some((lo, hi)) = off.resolve(len, &layout) {
                    assert!(lo <= hi);
                }
            }
        }
    }
});
