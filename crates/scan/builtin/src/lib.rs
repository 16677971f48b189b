//! The builtin engine: ClamAV signature formats (hdb, hsb, ndb, cvd, cld) and EICAR
#![forbid(unsafe_code)]
