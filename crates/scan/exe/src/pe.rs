//! PE headers as ClamAV reads them (`libclamav/pe.c`, `cli_peheader` with
//! the options `cli_scanpe` and `cli_pe_targetinfo` use; strict mode off,
//! as in a default `clamscan`).

use super::{ExeError, ExeInfo, ExeKind, PeMode, Section, Src, le16, le32};

/// `sizeof(struct pe_image_file_hdr)` (with the `PE\0\0` magic).
const FILE_HDR: usize = 24;
/// `sizeof(struct pe_image_optional_hdr32)` without data directories.
const OPT32: usize = 96;
/// Extra bytes of the PE32+ optional header.
const OPT64_EXTRA: usize = 16;
const SECTION_HDR: usize = 40;
const PE32P_MAGIC: u16 = 0x020b;

/// ClamAV's `PEALIGN`: round down to a multiple of `a` (unless `a` is 0).
pub fn pe_align(o: u32, a: u32) -> u32 {
    o.checked_div(a).map_or(o, |q| q.wrapping_mul(a))
}

/// ClamAV's `PESALIGN`: round up to a multiple of `a` (unless `a` is 0),
/// with the same 32-bit wrap-around.
pub fn pe_salign(o: u32, a: u32) -> u32 {
    o.checked_div(a)
        .map_or(o, |q| (q + u32::from(!o.is_multiple_of(a))).wrapping_mul(a))
}

/// ClamAV's `cli_rawaddr`: the file offset of an RVA, `None` when it maps
/// nowhere. RVAs inside the headers map to themselves.
pub fn rawaddr(rva: u32, sections: &[Section], fsize: u64, hdr_size: u32) -> Option<u32> {
    if rva < hdr_size {
        return (u64::from(rva) < fsize).then_some(rva);
    }
    sections
        .iter()
        .rev()
        .find(|s| s.rsz != 0 && s.rva <= rva && s.rsz > rva - s.rva)
        .map(|s| (rva - s.rva).wrapping_add(s.raw))
}

/// `CLI_ISCONTAINED_0_TO(fsize, off, size)`.
fn contained(fsize: u64, off: u32, size: u32) -> bool {
    let (off, size) = (u64::from(off), u64::from(size));
    fsize > 0 && size > 0 && size <= fsize && off + size <= fsize && off < fsize
}

/// Parse the PE headers of `src`.
pub fn parse(src: &Src<'_>, mode: PeMode) -> Result<ExeInfo, ExeError> {
    let fsize = src.len();
    let dos = src.array::<64>(0)?.ok_or(ExeError::NotExe("PE"))?;
    if !(dos.starts_with(b"MZ") || dos.starts_with(b"ZM")) {
        return Err(ExeError::NotExe("PE"));
    }
    let e_lfanew = le32(&dos, 60);
    if e_lfanew == 0 {
        return Err(ExeError::NotExe("PE"));
    }
    let fh_at = u64::from(e_lfanew);
    let fh = src
        .array::<FILE_HDR>(fh_at)?
        .ok_or(ExeError::NotExe("PE"))?;
    if fh[..4] != *b"PE\0\0" {
        return Err(ExeError::NotExe("PE"));
    }
    let nsections = le16(&fh, 6);
    if nsections == 0 {
        return Err(ExeError::Format("no sections"));
    }
    let opt_hdr_size = usize::from(le16(&fh, 20));
    if opt_hdr_size < OPT32 {
        return Err(ExeError::Format("SizeOfOptionalHeader too small"));
    }
    let mut at = fh_at + FILE_HDR as u64;
    let mut opt = [0u8; OPT32 + OPT64_EXTRA];
    if !src.read(at, &mut opt[..OPT32])? {
        return Err(ExeError::Format("truncated optional header"));
    }
    at += OPT32 as u64;
    let mut stored = OPT32;
    let pe32plus = le16(&opt, 0) == PE32P_MAGIC;
    let (vep, hdr_size, ndatadirs) = if pe32plus {
        if opt_hdr_size < OPT32 + OPT64_EXTRA {
            return Err(ExeError::Format("SizeOfOptionalHeader too small for PE32+"));
        }
        if !src.read(at, &mut opt[OPT32..])? {
            return Err(ExeError::Format("truncated PE32+ optional header"));
        }
        at += OPT64_EXTRA as u64;
        stored += OPT64_EXTRA;
        (le32(&opt, 16), le32(&opt, 60), le32(&opt, 108))
    } else {
        (le32(&opt, 16), le32(&opt, 60), le32(&opt, 92))
    };
    let salign = le32(&opt, 32);
    let mut falign = le32(&opt, 36);
    // Data directories: at most 16 are read.
    let ndatadirs = ndatadirs.min(16) as usize;
    let dirs_size = ndatadirs * 8;
    if opt_hdr_size < stored + dirs_size {
        return Err(ExeError::Format(
            "SizeOfOptionalHeader does not cover the data directories",
        ));
    }
    let mut dirs = [0u8; 16 * 8];
    if !src.read(at, &mut dirs[..dirs_size])? {
        // ClamAV gives up here without calling it a format error.
        return Err(ExeError::Format("truncated data directories"));
    }
    at += (opt_hdr_size - stored) as u64;
    let import_dir = if ndatadirs > 1 {
        (le32(&dirs, 8), le32(&dirs, 12))
    } else {
        (0, 0)
    };
    let resource_dir = if ndatadirs > 2 {
        (le32(&dirs, 16), le32(&dirs, 20))
    } else {
        (0, 0)
    };
    let hdr_size = pe_salign(hdr_size, salign);

    let n = usize::from(nsections);
    let mut hdrs = vec![0u8; n * SECTION_HDR];
    if !src.read(at, &mut hdrs)? {
        return Err(ExeError::Format("truncated section table"));
    }
    let hdr = |i: usize| &hdrs[i * SECTION_HDR..(i + 1) * SECTION_HDR];
    if falign != 0x200 {
        // "File alignment fallback mode": a section whose raw pointer is not
        // aligned to FileAlignment but is to 0x200 switches to 0x200.
        let fallback = (0..n).any(|i| {
            let h = hdr(i);
            let (rsz, raw) = (le32(h, 16), le32(h, 20));
            falign != 0 && rsz != 0 && raw % falign != 0 && raw % 0x200 == 0
        });
        if fallback {
            falign = 0x200;
        }
    }
    let mut sections: Vec<Section> = Vec::with_capacity(n);
    let mut removed = 0usize;
    for i in 0..n {
        let h = hdr(i);
        let (uvsz, urva, ursz0, uraw) = (le32(h, 8), le32(h, 12), le32(h, 16), le32(h, 20));
        let mut s = Section {
            rva: pe_align(urva, salign),
            vsz: pe_salign(uvsz, salign),
            raw: pe_align(uraw, falign),
            rsz: pe_salign(ursz0, falign),
            chr: le32(h, 36),
            ursz: 0,
        };
        let mut ursz = ursz0;
        if s.rsz != 0 {
            if u64::from(s.raw) >= fsize || u64::from(uraw) >= fsize {
                match mode {
                    PeMode::Scan => {
                        if n - removed == 1 {
                            return Err(ExeError::Format("only section lies past the end"));
                        }
                        // ClamAV shifts the rest of the table down (its
                        // count shrinks); the section is simply skipped.
                        removed += 1;
                        continue;
                    }
                    PeMode::Target => {
                        s.rsz = 0;
                        ursz = 0;
                    }
                }
            } else {
                if !contained(fsize, s.raw, s.rsz) {
                    s.rsz = (fsize - u64::from(s.raw)) as u32;
                }
                if !contained(fsize, uraw, ursz) {
                    ursz = (fsize - u64::from(uraw)) as u32;
                }
            }
        }
        if s.vsz == 0 && s.rsz != 0 {
            s.vsz = pe_salign(ursz, salign);
        }
        if urva >> 31 != 0 || uvsz >> 31 != 0 || (s.rsz != 0 && uraw >> 31 != 0) || ursz >> 31 != 0
        {
            return Err(ExeError::Format("section value with the sign bit set"));
        }
        s.ursz = ursz;
        sections.push(s);
    }
    let ep = rawaddr(vep, &sections, fsize, hdr_size)
        .ok_or(ExeError::Format("entry point maps outside the file"))?;
    Ok(ExeInfo {
        kind: ExeKind::Pe,
        ep: Some(u64::from(ep)),
        sections,
        hdr_size,
        pe32plus,
        import_dir,
        resource_dir,
        vep,
        image_base32: le32(&opt, 28),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use moat_core::Blob;

    fn parse_vec(data: Vec<u8>, mode: PeMode) -> Result<ExeInfo, ExeError> {
        let blob = Blob::from_vec(data);
        parse(&Src::new(&blob, &[]), mode)
    }

    #[test]
    fn alignment_helpers_round_like_clamav() {
        assert_eq!(pe_align(0x1234, 0x1000), 0x1000);
        assert_eq!(pe_salign(0x1234, 0x200), 0x1400);
        assert_eq!(pe_salign(0x1400, 0x200), 0x1400);
        assert_eq!(pe_align(7, 0), 7);
        assert_eq!(pe_salign(7, 0), 7);
        // 32-bit wrap-around as in C, no panic.
        assert_eq!(pe_salign(u32::MAX, 0x1000), 0);
    }

    #[test]
    fn rawaddr_maps_headers_and_last_matching_section() {
        let secs = [
            Section {
                rva: 0x1000,
                raw: 0x400,
                rsz: 0x200,
                ..Section::default()
            },
            Section {
                rva: 0x1000,
                raw: 0x800,
                rsz: 0x100,
                ..Section::default()
            },
            Section {
                rva: 0x2000,
                raw: 0x600,
                rsz: 0,
                ..Section::default()
            },
        ];
        assert_eq!(rawaddr(0x10, &secs, 0x1000, 0x1000), Some(0x10));
        assert_eq!(rawaddr(0x10, &secs, 0x8, 0x1000), None);
        // Searched from the last section: the second one wins.
        assert_eq!(rawaddr(0x1010, &secs, 0x1000, 0x1000), Some(0x810));
        assert_eq!(rawaddr(0x1150, &secs, 0x1000, 0x1000), Some(0x550));
        // Sections without raw data map nothing.
        assert_eq!(rawaddr(0x2000, &secs, 0x1000, 0x1000), None);
    }

    #[test]
    fn rejects_non_pe_and_truncated_headers_without_panicking() {
        assert!(matches!(
            parse_vec(b"MZ".to_vec(), PeMode::Scan),
            Err(ExeError::NotExe(_))
        ));
        let mut dos = vec![0u8; 64];
        dos[..2].copy_from_slice(b"MZ");
        assert!(matches!(
            parse_vec(dos.clone(), PeMode::Scan),
            Err(ExeError::NotExe(_))
        ));
        dos[60..64].copy_from_slice(&0xffff_fff0u32.to_le_bytes());
        assert!(matches!(
            parse_vec(dos.clone(), PeMode::Scan),
            Err(ExeError::NotExe(_))
        ));
        // Every truncation of a real header is an error, never a panic.
        if let Some(pe) = crate::testbin::mingw_pe() {
            for cut in (0..pe.len().min(2048)).step_by(7) {
                let _ = parse_vec(pe[..cut].to_vec(), PeMode::Scan);
                let _ = parse_vec(pe[..cut].to_vec(), PeMode::Target);
            }
        }
    }

    #[test]
    fn mingw_pe_entry_point_and_sections_match_objdump() {
        let Some(pe) = crate::testbin::mingw_pe() else {
            return;
        };
        let info = parse_vec(pe.clone(), PeMode::Scan).unwrap();
        assert_eq!(info.kind, ExeKind::Pe);
        assert!(info.pe32plus);
        let facts = crate::testbin::objdump_pe(&pe);
        assert_eq!(info.sections.len(), facts.sections.len());
        for (s, (raw, rsz)) in info.sections.iter().zip(&facts.sections) {
            // MinGW aligns everything already, so ClamAV's values are the
            // header's (raw size 0 for .bss-like sections).
            assert_eq!((s.raw, s.rsz), (*raw, *rsz));
        }
        assert_eq!(info.ep, Some(facts.ep_file_offset));
        assert_ne!(info.import_dir, (0, 0));
    }

    #[test]
    fn mutated_headers_never_panic_and_stay_inside_the_file() {
        let Some(pe) = crate::testbin::mingw_pe() else {
            return;
        };
        let mut parsed = 0;
        for f in crate::testbin::mutated_headers(&pe, 3000) {
            let len = f.len() as u64;
            for mode in [PeMode::Scan, PeMode::Target] {
                if let Ok(info) = parse_vec(f.clone(), mode) {
                    parsed += 1;
                    assert!(info.ep.is_some_and(|ep| ep < len));
                    for s in info.sections.iter().filter(|s| s.rsz != 0) {
                        assert!(u64::from(s.raw) + u64::from(s.rsz) <= len);
                    }
                }
            }
        }
        // Most single-byte mutations leave a parseable header.
        assert!(parsed > 1000, "{parsed}");
    }

    /// A minimal PE32 built by hand: one section, entry point inside it.
    fn tiny_pe32(nsec_past_end: bool) -> Vec<u8> {
        let mut f = vec![0u8; 0x600];
        f[..2].copy_from_slice(b"MZ");
        f[60..64].copy_from_slice(&0x80u32.to_le_bytes());
        f[0x80..0x84].copy_from_slice(b"PE\0\0");
        f[0x80 + 6..0x80 + 8].copy_from_slice(&2u16.to_le_bytes());
        f[0x80 + 20..0x80 + 22].copy_from_slice(&(96u16 + 16 * 8).to_le_bytes());
        let o = 0x80 + 24;
        f[o..o + 2].copy_from_slice(&0x10bu16.to_le_bytes());
        f[o + 16..o + 20].copy_from_slice(&0x1010u32.to_le_bytes()); // EP rva
        f[o + 32..o + 36].copy_from_slice(&0x1000u32.to_le_bytes()); // salign
        f[o + 36..o + 40].copy_from_slice(&0x200u32.to_le_bytes()); // falign
        f[o + 60..o + 64].copy_from_slice(&0x200u32.to_le_bytes()); // headers
        f[o + 92..o + 96].copy_from_slice(&16u32.to_le_bytes());
        let s = o + 96 + 128;
        let sec = |f: &mut Vec<u8>, at: usize, rva: u32, raw: u32, rsz: u32| {
            f[at..at + 8].copy_from_slice(b".text\0\0\0");
            f[at + 8..at + 12].copy_from_slice(&0x1000u32.to_le_bytes());
            f[at + 12..at + 16].copy_from_slice(&rva.to_le_bytes());
            f[at + 16..at + 20].copy_from_slice(&rsz.to_le_bytes());
            f[at + 20..at + 24].copy_from_slice(&raw.to_le_bytes());
        };
        sec(&mut f, s, 0x1000, 0x200, 0x300); // truncated by the file end? no: 0x200+0x300 = 0x500
        let raw2 = if nsec_past_end { 0x10000 } else { 0x400 };
        sec(&mut f, s + 40, 0x2000, raw2, 0x300); // 0x400+0x300 runs past 0x600
        f
    }

    #[test]
    fn sections_are_truncated_or_dropped_as_clamav_does() {
        let info = parse_vec(tiny_pe32(false), PeMode::Scan).unwrap();
        assert!(!info.pe32plus);
        assert_eq!(info.ep, Some(0x210));
        assert_eq!(info.sections.len(), 2);
        assert_eq!((info.sections[1].raw, info.sections[1].rsz), (0x400, 0x200));
        // A section starting past the end: removed for scanning, kept
        // with raw size 0 for offsets.
        let scan = parse_vec(tiny_pe32(true), PeMode::Scan).unwrap();
        assert_eq!(scan.sections.len(), 1);
        let target = parse_vec(tiny_pe32(true), PeMode::Target).unwrap();
        assert_eq!(target.sections.len(), 2);
        assert_eq!(target.sections[1].rsz, 0);
    }

    #[test]
    fn entry_point_outside_the_file_is_a_format_error() {
        let mut f = tiny_pe32(false);
        let o = 0x80 + 24;
        f[o + 16..o + 20].copy_from_slice(&0x9000u32.to_le_bytes());
        assert!(matches!(
            parse_vec(f, PeMode::Target),
            Err(ExeError::Format(_))
        ));
    }
}
