//! Executable layout: what body-signature offsets (`EP+n`, `Sx+n`, `SEx`,
//! `SL+n`), section hashes (`.mdb`/`.msb`), import-table hashes (`.imp`) and
//! logical-signature target descriptions (`EntryPoint`, `NumberOfSections`)
//! need to know about a PE or ELF file. Mirrors ClamAV's `struct
//! cli_exe_info` / `cli_exe_section` (`libclamav/execs.h`), with file
//! offsets as ClamAV computes them (`pe.c` `cli_peheader`/`cli_rawaddr`,
//! `elf.c` `cli_elfheader`).
//!
//! The parsers are hand-written rather than built on `goblin`/`object`: the
//! values a signature is matched against are ClamAV's, not the format's
//! (ClamAV aligns section addresses down and sizes up, truncates sections
//! at the end of the file, drops sections that start past it, keeps 32-bit
//! offsets, and rejects a PE whose entry point maps nowhere), and those
//! rules are most of the code. Every read is bounds-checked through
//! [`Src`]; nothing here indexes past a buffer or overflows.

#![forbid(unsafe_code)]

pub mod elf;
pub mod pe;

use moat_core::Blob;

/// Which executable format the object is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExeKind {
    Pe,
    Elf,
    MachO,
}

/// One section, as ClamAV records it (`cli_exe_section`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Section {
    /// Relative virtual address (aligned as ClamAV aligns it).
    pub rva: u32,
    /// Virtual size.
    pub vsz: u32,
    /// File offset of the section's raw data (ClamAV's `raw`).
    pub raw: u32,
    /// Size of the raw data in the file (ClamAV's `rsz`).
    pub rsz: u32,
    /// Characteristics (PE) or flags.
    pub chr: u32,
    /// PE: `SizeOfRawData` as the header has it, cut at the end of the file
    /// (ClamAV's `ursz`, which its unpackers use). 0 for ELF.
    pub ursz: u32,
}

/// The layout of one executable object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExeInfo {
    pub kind: ExeKind,
    /// File offset of the entry point (ClamAV's `ep` after `cli_rawaddr`),
    /// `None` when it does not map into the file.
    pub ep: Option<u64>,
    pub sections: Vec<Section>,
    /// PE: `SizeOfHeaders` aligned up to the section alignment (RVAs below
    /// it map to the same file offset). 0 for ELF.
    pub hdr_size: u32,
    /// PE: PE32+ (64-bit) optional header.
    pub pe32plus: bool,
    /// PE: the import directory (RVA, size), zero when absent.
    pub import_dir: (u32, u32),
    /// PE: the resource directory (RVA, size), zero when absent.
    pub resource_dir: (u32, u32),
    /// PE: the entry point's RVA (`AddressOfEntryPoint`). 0 for ELF.
    pub vep: u32,
    /// PE: the optional header's 32-bit `ImageBase` field as ClamAV reads it
    /// (`pe_opt.opt32.ImageBase`, also for PE32+). 0 for ELF.
    pub image_base32: u32,
}

/// Why an object's executable headers were not understood.
#[derive(Debug, thiserror::Error)]
pub enum ExeError {
    /// Not this format at all (wrong magic, too short for a header).
    #[error("not a {0} file")]
    NotExe(&'static str),
    /// The headers are broken in a way ClamAV also refuses.
    #[error("malformed executable: {0}")]
    Format(&'static str),
    #[error("reading executable headers: {0}")]
    Io(#[from] std::io::Error),
}

/// Bounds-checked random access to an object: the head is served from
/// memory, the rest with [`Blob::read_at`].
#[derive(Debug, Clone, Copy)]
pub struct Src<'a> {
    blob: &'a Blob,
    head: &'a [u8],
}

impl<'a> Src<'a> {
    /// `head` must be the object's first bytes (any length, may be empty).
    pub fn new(blob: &'a Blob, head: &'a [u8]) -> Src<'a> {
        let head = blob.as_slice().unwrap_or(head);
        Src { blob, head }
    }

    pub fn len(&self) -> u64 {
        self.blob.len()
    }

    pub fn is_empty(&self) -> bool {
        self.blob.is_empty()
    }

    /// Fill `buf` from `off`; `Ok(false)` when the object ends first.
    pub fn read(&self, off: u64, buf: &mut [u8]) -> Result<bool, ExeError> {
        let Some(end) = off.checked_add(buf.len() as u64) else {
            return Ok(false);
        };
        if end > self.len() {
            return Ok(false);
        }
        if let (Ok(s), Ok(e)) = (usize::try_from(off), usize::try_from(end))
            && let Some(h) = self.head.get(s..e)
        {
            buf.copy_from_slice(h);
            return Ok(true);
        }
        Ok(self.blob.read_at(off, buf)? == buf.len())
    }

    /// `N` bytes at `off`, `None` past the end.
    pub fn array<const N: usize>(&self, off: u64) -> Result<Option<[u8; N]>, ExeError> {
        let mut b = [0u8; N];
        Ok(self.read(off, &mut b)?.then_some(b))
    }

    /// Up to `max` bytes at `off` (fewer at the end of the object).
    pub fn upto(&self, off: u64, max: usize) -> Result<Vec<u8>, ExeError> {
        let n = self.len().saturating_sub(off).min(max as u64) as usize;
        let mut v = vec![0u8; n];
        if n > 0 && !self.read(off, &mut v)? {
            return Err(ExeError::Format("short read"));
        }
        Ok(v)
    }
}

/// Little-endian field readers over fixed buffers (offsets are constants
/// checked by the callers' buffer sizes; out of range reads give 0).
pub fn le16(b: &[u8], at: usize) -> u16 {
    b.get(at..at + 2)
        .map_or(0, |s| u16::from_le_bytes([s[0], s[1]]))
}

pub fn le32(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4)
        .map_or(0, |s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

/// How the PE section table is cleaned up (ClamAV parses the same header
/// two ways).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeMode {
    /// For offsets (`cli_pe_targetinfo`): a section starting past the end
    /// of the file keeps its place with a raw size of 0.
    Target,
    /// For section hashes (`cli_scanpe`): such a section is removed.
    Scan,
}

/// The executable layout of an object by its magic: PE for `MZ`/`ZM`, ELF
/// for `\x7fELF`; `Ok(None)` for anything else.
pub fn parse(src: &Src<'_>, mode: PeMode) -> Result<Option<ExeInfo>, ExeError> {
    let Some(magic) = src.array::<4>(0)? else {
        return Ok(None);
    };
    if magic.starts_with(b"MZ") || magic.starts_with(b"ZM") {
        pe::parse(src, mode).map(Some)
    } else if magic == *b"\x7fELF" {
        elf::parse(src).map(Some)
    } else {
        Ok(None)
    }
}

#[cfg(any(test, feature = "testbin"))]
#[doc(hidden)]
pub mod testbin;
