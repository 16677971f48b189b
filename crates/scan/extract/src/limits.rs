//! Extraction limits. Every limit fails closed: exceeding one yields a
//! [`Problem::LimitsExceeded`](crate::Problem::LimitsExceeded), never a silent skip.

use serde::Deserialize;
use std::path::PathBuf;

/// Bounds on what one walk may do. All sizes are bytes.
///
/// Deserialises with every field optional (`#[serde(default)]`): a missing
/// field keeps its default; an unknown field is an error.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Deepest member level that is still extracted: members of the root are
    /// at depth 1; a container found at depth `max_depth` is visited but not
    /// opened. Default 16.
    pub max_depth: u32,
    /// Most members materialised in one walk, all levels together. Default 10 000.
    pub max_members: u64,
    /// Most bytes materialised in one walk, all levels together (a tar inside
    /// a gzip counts both the tar and its members, since both are scanned).
    /// Default 1 GiB.
    pub max_expanded_bytes: u64,
    /// Largest single member. Default 512 MiB.
    pub max_member_size: u64,
    /// Largest expanded/compressed ratio of one member. Default 200.
    pub max_ratio: u64,
    /// The ratio is only checked once a member has expanded past this. Default 1 MiB.
    pub ratio_min_size: u64,
    /// Members up to this size stay in memory; larger ones go to an anonymous
    /// 0600 temporary file. Default 1 MiB.
    pub spool_threshold: usize,
    /// Where those temporary files are created. Default: `std::env::temp_dir()`.
    pub tmp_dir: PathBuf,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_depth: 16,
            max_members: 10_000,
            max_expanded_bytes: 1 << 30,
            max_member_size: 512 << 20,
            max_ratio: 200,
            ratio_min_size: 1 << 20,
            spool_threshold: 1 << 20,
            tmp_dir: std::env::temp_dir(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_config_keeps_defaults() {
        let l: Limits = serde_json::from_str(r#"{"max_depth": 3}"#).unwrap();
        assert_eq!(l.max_depth, 3);
        assert_eq!(l.max_members, 10_000);
        assert_eq!(l.max_expanded_bytes, 1 << 30);
    }
}
