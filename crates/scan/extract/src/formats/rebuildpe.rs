//! ClamAV's `cli_rebuildpe_align` (`libclamav/rebuildpe.c`): a parsable
//! (not runnable) PE around sections an unpacker has laid out in memory:
//! ClamAV's DOS stub and headers, a `.clamNN` section per input section
//! (an `empty` one first when the first section starts far from the
//! headers), every characteristic bit set. Byte for byte as ClamAV writes
//! it, so hashes of unpacked programs agree with clamscan's.

use moat_exe::Section;
use moat_exe::pe::pe_salign;

/// ClamAV's DOS header and stub ("This file was created by ClamAV for
/// internal use..."), in front of every PE it rebuilds (0xd0 bytes).
pub(crate) const DOS_STUB: &[u8; 0xd0] = b"\
\x4D\x5A\x90\x00\x02\x00\x00\x00\x04\x00\x0F\x00\xFF\xFF\x00\x00\
\xB0\x00\x00\x00\x00\x00\x00\x00\x40\x00\x1A\x00\x00\x00\x00\x00\
\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\
\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\xD0\x00\x00\x00\
\x0E\x1F\xB4\x09\xBA\x0D\x00\xCD\x21\xB4\x4C\xCD\x21\x54\x68\x69\
\x73\x20\x66\x69\x6C\x65\x20\x77\x61\x73\x20\x63\x72\x65\x61\x74\
\x65\x64\x20\x62\x79\x20\x43\x6C\x61\x6D\x41\x56\x20\x66\x6F\x72\
\x20\x69\x6E\x74\x65\x72\x6E\x61\x6C\x20\x75\x73\x65\x20\x61\x6E\
\x64\x20\x73\x68\x6F\x75\x6C\x64\x20\x6E\x6F\x74\x20\x62\x65\x20\
\x72\x75\x6E\x2E\x0D\x0A\x43\x6C\x61\x6D\x41\x56\x20\x2D\x20\x41\
\x20\x47\x50\x4C\x20\x76\x69\x72\x75\x73\x20\x73\x63\x61\x6E\x6E\
\x65\x72\x20\x2D\x20\x68\x74\x74\x70\x3A\x2F\x2F\x77\x77\x77\x2E\
\x63\x6C\x61\x6D\x61\x76\x2E\x6E\x65\x74\x0D\x0A\x24\x00\x00\x00";

/// The PE and optional header `cli_rebuildpe` writes after [`DOS_STUB`].
const PE_HEADER: &[u8; 0x78] = b"\
\x50\x45\x00\x00\x4C\x01\xFF\xFF\x43\x4C\x41\x4D\x00\x00\x00\x00\
\x00\x00\x00\x00\xE0\x00\x83\x8F\x0B\x01\x00\x00\x00\x10\x00\x00\
\x00\x10\x00\x00\x00\x00\x00\x00\xFF\xFF\xFF\xFF\x00\x10\x00\x00\
\x00\x10\x00\x00\xFF\xFF\xFF\xFF\x00\x10\x00\x00\x00\x02\x00\x00\
\x01\x00\x00\x00\x00\x00\x00\x00\x03\x00\x0A\x00\x00\x00\x00\x00\
\x00\x10\x00\x00\x00\x04\x00\x00\x00\x00\x00\x00\x02\x00\x00\x00\
\x00\x00\x10\x00\x00\x10\x00\x00\x00\x00\x10\x00\x00\x10\x00\x00\
\x00\x00\x00\x00\x10\x00\x00\x00";

/// Where the PE header starts.
const PE: usize = 0xd0;

fn put32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

/// Rebuild a PE from `sections` of `buffer` (each `rsz` bytes at `raw`),
/// with entry point `ep`, image base `base` and the resource directory
/// `res`. `align` (0: none) rounds the section values as ClamAV's aligned
/// variant does. `None` where ClamAV gives up (no sections, more than 96,
/// over `max` bytes, or a section outside the buffer).
pub(crate) fn rebuild(
    buffer: &[u8],
    sections: &[Section],
    base: u32,
    ep: u32,
    res: (u32, u32),
    align: u32,
    max: u64,
) -> Option<Vec<u8>> {
    let first = sections.first()?;
    let sects = sections.len() as u32;
    let mut rawbase = pe_salign(0x148 + 0x80 + 0x28 * sects, 0x200);
    let ghost = first.rva > pe_salign(rawbase, 0x1000);
    if ghost {
        rawbase = pe_salign(0x148 + 0x80 + 0x28 * (sects + 1), 0x200);
    }
    if sects + u32::from(ghost) > 96 {
        return None;
    }
    let aligned = |v: u32| if align == 0 { v } else { pe_salign(v, align) };
    let datasize: u64 = sections
        .iter()
        .map(|s| u64::from(pe_salign(aligned(s.rsz), 0x200)))
        .sum();
    if u64::from(rawbase) + datasize > max {
        return None;
    }
    let mut pe = vec![0u8; rawbase as usize + datasize as usize];
    pe[..PE].copy_from_slice(DOS_STUB);
    pe[PE..0x148].copy_from_slice(PE_HEADER);
    let mut datasize = pe_salign(rawbase, 0x1000);
    pe[PE + 6..PE + 8].copy_from_slice(&((sects + u32::from(ghost)) as u16).to_le_bytes());
    put32(&mut pe, PE + 40, ep);
    put32(&mut pe, PE + 52, base);
    put32(&mut pe, PE + 84, rawbase);
    put32(&mut pe, 0x148 + 0x10, res.0);
    put32(&mut pe, 0x148 + 0x14, res.1);
    let mut cur = 0x148 + 0x80;
    if ghost {
        pe[cur..cur + 5].copy_from_slice(b"empty");
        put32(&mut pe, cur + 8, first.rva.wrapping_sub(datasize));
        put32(&mut pe, cur + 12, datasize);
        put32(&mut pe, cur + 0x24, 0xffff_ffff);
        cur += 40;
        datasize = datasize.wrapping_add(pe_salign(first.rva.wrapping_sub(datasize), 0x1000));
    }
    for (i, s) in sections.iter().enumerate() {
        let name = format!(".clam{:02}", i + 1);
        let name = &name.as_bytes()[..name.len().min(7)];
        pe[cur..cur + name.len()].copy_from_slice(name);
        put32(&mut pe, cur + 8, aligned(s.vsz));
        put32(&mut pe, cur + 12, aligned(s.rva));
        put32(&mut pe, cur + 16, aligned(s.rsz));
        put32(&mut pe, cur + 20, rawbase);
        put32(&mut pe, cur + 0x24, 0xffff_ffff);
        let (raw, rsz) = (s.raw as usize, s.rsz as usize);
        let data = buffer.get(raw..raw.checked_add(rsz)?)?;
        let at = rawbase as usize;
        pe.get_mut(at..at + rsz)?.copy_from_slice(data);
        cur += 40;
        rawbase = rawbase.wrapping_add(pe_salign(aligned(s.rsz), 0x200));
        datasize = datasize.wrapping_add(pe_salign(aligned(s.vsz), 0x1000));
    }
    put32(&mut pe, PE + 80, datasize);
    pe.truncate(rawbase as usize);
    Some(pe)
}
