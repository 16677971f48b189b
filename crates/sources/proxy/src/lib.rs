//! moat-proxy: the edge proxy role. A scanning reverse proxy in front of
//! upstream pools.
#![forbid(unsafe_code)]
