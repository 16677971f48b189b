//! Executable layout: what body-signature offsets (`EP+n`, `Sx+n`, `SEx`,
//! `SL+n`), section hashes (`.mdb`/`.msb`) and logical-signature target
//! descriptions (`EntryPoint`, `NumberOfSections`) need to know about a PE or
//! ELF file. Mirrors ClamAV's `struct cli_exe_info` / `cli_exe_section`
//! (`libclamav/execs.h`), with file offsets as ClamAV computes them.

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
}

/// The layout of one executable object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExeInfo {
    pub kind: ExeKind,
    /// File offset of the entry point (ClamAV's `ep` after `cli_rawaddr`),
    /// `None` when it does not map into the file.
    pub ep: Option<u64>,
    pub sections: Vec<Section>,
}
