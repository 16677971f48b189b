//! The `moat` binary: reads configuration, builds each role, runs it. Wiring only.
//!
//! Exit codes: `0` nothing found; `1` something infected or suspicious; `2`
//! something unscannable or an engine error, or moat itself could not run
//! (bad configuration, unreadable signatures, a port in use).

mod alloc;
mod bucket;
mod clamd;
mod cli_scan;
mod config;
mod icap;
mod logging;
mod portal;
mod proxy;
mod roles;
mod runtime;
mod serve;
mod signatures;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "moat", version, about = "A self-hosted file-security gateway")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Scan files, directories (recursively) or standard input (`-`).
    Scan(cli_scan::ScanArgs),
    /// Run the configured roles (scan API by default) on embedded defaults.
    Serve(serve::ServeArgs),
    /// Run the edge proxy: scan uploads, then forward them to upstream pools.
    Proxy(proxy::ProxyArgs),
    /// The bucket scanner: `watch` S3 event notifications, or `scan` existing objects.
    Bucket(bucket::BucketArgs),
    /// A clamd-compatible server (clamdscan, mail servers, Nextcloud, c-icap point at it).
    Clamd(clamd::ClamdArgs),
    /// An ICAP server (Squid, c-icap clients, appliances point at icap://host:port/avscan).
    Icap(icap::IcapArgs),
    /// Signature databases: `update` fetches them (freshclam-compatible).
    Signatures(signatures::SignaturesArgs),
    /// The file-sharing portal: `create-admin`, `create-token`, `rotate-kek`.
    Portal(portal::PortalArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.cmd {
        Cmd::Scan(a) => cli_scan::run(a),
        Cmd::Serve(a) => serve::run(a),
        Cmd::Proxy(a) => proxy::run(a),
        Cmd::Bucket(a) => bucket::run(a),
        Cmd::Clamd(a) => clamd::run(a),
        Cmd::Icap(a) => icap::run(a),
        Cmd::Signatures(a) => signatures::run(a),
        Cmd::Portal(a) => portal::run(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("moat: error: {e:#}");
            ExitCode::from(2)
        }
    }
}
