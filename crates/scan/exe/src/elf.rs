//! ELF headers as ClamAV reads them for target information
//! (`libclamav/elf.c`, `cli_elfheader`): the entry point mapped through
//! the program headers, sections from the section headers, everything
//! truncated to ClamAV's 32-bit fields.

use super::{ExeError, ExeInfo, ExeKind, Section, Src};

/// Endian-aware field reads.
#[derive(Clone, Copy)]
struct End {
    big: bool,
}

impl End {
    fn u16(self, b: &[u8], at: usize) -> u16 {
        let s = [
            b.get(at).copied().unwrap_or(0),
            b.get(at + 1).copied().unwrap_or(0),
        ];
        if self.big {
            u16::from_be_bytes(s)
        } else {
            u16::from_le_bytes(s)
        }
    }

    fn u32(self, b: &[u8], at: usize) -> u32 {
        let mut s = [0u8; 4];
        if let Some(x) = b.get(at..at + 4) {
            s.copy_from_slice(x);
        }
        if self.big {
            u32::from_be_bytes(s)
        } else {
            u32::from_le_bytes(s)
        }
    }

    fn u64(self, b: &[u8], at: usize) -> u64 {
        let mut s = [0u8; 8];
        if let Some(x) = b.get(at..at + 8) {
            s.copy_from_slice(x);
        }
        if self.big {
            u64::from_be_bytes(s)
        } else {
            u64::from_le_bytes(s)
        }
    }
}

/// Most program headers ClamAV accepts.
const MAX_PHNUM: u16 = 128;
/// Most section headers ClamAV accepts for target information.
const MAX_SHNUM: u16 = 256;

/// Parse the ELF headers of `src`.
pub fn parse(src: &Src<'_>) -> Result<ExeInfo, ExeError> {
    let h32 = src.array::<52>(0)?.ok_or(ExeError::NotExe("ELF"))?;
    if h32[..4] != *b"\x7fELF" {
        return Err(ExeError::NotExe("ELF"));
    }
    let is64 = match h32[4] {
        1 => false,
        2 => true,
        _ => return Err(ExeError::Format("unknown ELF class")),
    };
    // ClamAV treats every data encoding other than 1 as big-endian.
    let e = End { big: h32[5] != 1 };
    let mut h = [0u8; 64];
    if is64 {
        h = src.array::<64>(0)?.ok_or(ExeError::NotExe("ELF"))?;
    } else {
        h[..52].copy_from_slice(&h32);
    }
    // (entry, phoff, shoff, phentsize, phnum, shentsize, shnum)
    let (entry, phoff, shoff, phentsize, phnum, shentsize, shnum) = if is64 {
        (
            e.u64(&h, 24),
            e.u64(&h, 32),
            e.u64(&h, 40),
            e.u16(&h, 54),
            e.u16(&h, 56),
            e.u16(&h, 58),
            e.u16(&h, 60),
        )
    } else {
        (
            u64::from(e.u32(&h, 24)),
            u64::from(e.u32(&h, 28)),
            u64::from(e.u32(&h, 32)),
            e.u16(&h, 42),
            e.u16(&h, 44),
            e.u16(&h, 46),
            e.u16(&h, 48),
        )
    };
    if phnum > MAX_PHNUM {
        return Err(ExeError::Format("more than 128 program headers"));
    }
    let mut ep: u32 = 0;
    if phnum != 0 && entry != 0 {
        let size: u16 = if is64 { 56 } else { 32 };
        if phentsize != size {
            return Err(ExeError::Format("unexpected program header size"));
        }
        let mut found = None;
        let mut off = phoff;
        for _ in 0..phnum {
            let mut ph = [0u8; 56];
            if !src.read(off, &mut ph[..usize::from(size)])? {
                return Err(ExeError::Format("truncated program headers"));
            }
            off = off.wrapping_add(u64::from(size));
            if found.is_some() {
                continue;
            }
            // Same arithmetic as cli_rawaddr32/64, wrap-around included.
            if is64 {
                let (poff, vaddr, memsz) = (e.u64(&ph, 8), e.u64(&ph, 16), e.u64(&ph, 40));
                if vaddr <= entry && vaddr.wrapping_add(memsz) > entry {
                    found = Some(entry.wrapping_sub(vaddr).wrapping_add(poff) as u32);
                }
            } else {
                let entry = entry as u32;
                let (poff, vaddr, memsz) = (e.u32(&ph, 4), e.u32(&ph, 8), e.u32(&ph, 20));
                if vaddr <= entry && vaddr.wrapping_add(memsz) > entry {
                    found = Some(entry.wrapping_sub(vaddr).wrapping_add(poff));
                }
            }
        }
        ep = found.ok_or(ExeError::Format("entry point in no segment"))?;
    }
    if shnum > MAX_SHNUM {
        return Err(ExeError::Format("more than 256 section headers"));
    }
    let size: u16 = if is64 { 64 } else { 40 };
    if shentsize != size {
        return Err(ExeError::Format("unexpected section header size"));
    }
    let mut sections = Vec::with_capacity(usize::from(shnum));
    let mut off = shoff;
    for _ in 0..shnum {
        let mut sh = [0u8; 64];
        if !src.read(off, &mut sh[..usize::from(size)])? {
            return Err(ExeError::Format("truncated section headers"));
        }
        off = off.wrapping_add(u64::from(size));
        let s = if is64 {
            Section {
                rva: e.u64(&sh, 16) as u32,
                raw: e.u64(&sh, 24) as u32,
                rsz: e.u64(&sh, 32) as u32,
                ..Section::default()
            }
        } else {
            Section {
                rva: e.u32(&sh, 12),
                raw: e.u32(&sh, 16),
                rsz: e.u32(&sh, 20),
                ..Section::default()
            }
        };
        sections.push(s);
    }
    Ok(ExeInfo {
        kind: ExeKind::Elf,
        ep: Some(u64::from(ep)),
        sections,
        hdr_size: 0,
        pe32plus: false,
        import_dir: (0, 0),
        resource_dir: (0, 0),
        vep: 0,
        image_base32: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use moat_core::Blob;

    fn parse_vec(data: Vec<u8>) -> Result<ExeInfo, ExeError> {
        let blob = Blob::from_vec(data);
        parse(&Src::new(&blob, &[]))
    }

    #[test]
    fn gcc_elf_entry_point_and_sections_match_readelf() {
        let Some(elf) = crate::testbin::gcc_elf() else {
            return;
        };
        let info = parse_vec(elf.clone()).unwrap();
        assert_eq!(info.kind, ExeKind::Elf);
        let facts = crate::testbin::readelf(&elf);
        assert_eq!(info.ep, Some(facts.ep_file_offset));
        assert_eq!(info.sections.len(), facts.sections.len());
        for (s, (raw, rsz)) in info.sections.iter().zip(&facts.sections) {
            assert_eq!((s.raw, s.rsz), (*raw, *rsz));
        }
    }

    #[test]
    fn hostile_headers_are_errors_not_panics() {
        assert!(matches!(
            parse_vec(b"\x7fELF".to_vec()),
            Err(ExeError::NotExe(_))
        ));
        let mut h = vec![0u8; 64];
        h[..4].copy_from_slice(b"\x7fELF");
        h[4] = 3;
        assert!(matches!(parse_vec(h.clone()), Err(ExeError::Format(_))));
        h[4] = 2;
        h[5] = 1;
        // 129 program headers.
        h[56] = 129;
        h[24] = 1;
        assert!(matches!(parse_vec(h.clone()), Err(ExeError::Format(_))));
        if let Some(elf) = crate::testbin::gcc_elf() {
            for cut in (0..elf.len()).step_by(97) {
                let _ = parse_vec(elf[..cut].to_vec());
            }
            // Garbage program header offsets.
            let mut bad = elf.clone();
            bad[32..40].copy_from_slice(&u64::MAX.to_le_bytes());
            assert!(parse_vec(bad).is_err());
        }
    }
}
