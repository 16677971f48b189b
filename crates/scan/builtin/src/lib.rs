//! The builtin engine: ClamAV signature formats (hdb, hsb, ndb, cvd, cld) and EICAR.
//!
//! Operators keep their ClamAV signature sets: [`BuiltinEngine::load`] reads
//! `.hdb`/`.hsb` whole-file hashes (and their PUA twins `.hdu`/`.hsu`), `.ndb`
//! (and `.ndu`) body signatures, `.mdb`/`.msb` PE section hashes (and
//! `.mdu`/`.msu`), `.imp` import-table hashes and `.cvd`/`.cld` containers.
//! Signature kinds
//! this engine cannot honour are counted by kind in
//! [`moat_core::EngineInfo::unsupported`], never silently dropped, and a
//! malformed line is reported (file and line number) and skipped without
//! disabling the rest of the set.
//!
//! Scanning is a single streaming pass over the object: the hashers that some
//! signature could need for this object's size and a prefilter over one
//! literal anchor per body signature (see [`ndb::prefilter`] for why not
//! Aho-Corasick) run chunk by chunk; each anchor hit is verified against the
//! whole signature (which may read outside the current chunk). A PE or ELF
//! object's headers are parsed as ClamAV parses them ([`exe`]) when a body
//! signature's offset is relative to its entry point or sections, and PEs
//! get their section and import hashes checked after the pass.
//!
//! Modules:
//! * [`hashdb`]: hash line parsing and the compact hash tables;
//! * [`exe`]: PE/ELF layout (entry point, sections) and the import hash;
//! * [`ndb`]: body signature parsing, anchors and the verifier;
//! * [`cvd`]: `.cvd`/`.cld` headers and in-memory unpacking;
//! * [`eicar`]: the built-in EICAR test signature;
//! * `load`: reading signature files and directories in parallel;
//! * `cache`: the compiled set on disk, read back instead of compiled again;
//! * `engine`: [`BuiltinEngine`] and its [`moat_core::Engine`] implementation.
#![forbid(unsafe_code)]

pub mod age;
mod allow;
mod cache;
pub mod cvd;
pub mod dsig;
pub mod eicar;
mod engine;
pub mod exe;
pub mod hashdb;
pub mod ldb;
mod load;
mod names;
pub mod ndb;
pub mod normalize;

pub use cache::{CacheOutcome, default_cache_dir};
pub use engine::{BuiltinEngine, DEFAULT_CHUNK};
pub use hashdb::{HashFile, HashKind, HashLineError, ParsedHash, parse_hash_line};
pub use load::{LoadError, LoadOptions, SignatureParts, is_signature_file};
pub use ndb::{NdbLineError, NdbSignature, parse_ndb_line};
