//! One module per container format. Each walks its members through
//! [`Walker::member`](crate::walk::Walker::member).

pub(crate) mod binhex;
pub(crate) mod cpio;
pub(crate) mod mail;
pub(crate) mod ole1;
pub(crate) mod ole2;
pub(crate) mod pdf;
pub(crate) mod rtf;
pub(crate) mod sevenz;
pub(crate) mod stream;
pub(crate) mod szdd;
pub(crate) mod tar;
pub(crate) mod tnef;
pub(crate) mod zip;

/// Read-ahead buffer in front of a blob, so decoders don't issue tiny reads.
pub(crate) const INPUT_BUFFER: usize = 64 * 1024;
