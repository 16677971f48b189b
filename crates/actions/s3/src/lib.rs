//! moat-s3: S3 access for the bucket role.
#![forbid(unsafe_code)]
