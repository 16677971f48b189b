//! Archive extraction with limits: zip, gzip, tar, bzip2, xz, zstd
#![forbid(unsafe_code)]
