//! Executable layout, from `moat-exe` (shared with moat-extract's
//! unpackers), and the import-table hash that only `.imp` signatures need.

pub use moat_exe::*;

pub mod imports;
