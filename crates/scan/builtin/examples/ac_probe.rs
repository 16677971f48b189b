//! The measurement behind `ndb::prefilter`: Aho-Corasick (contiguous NFA,
//! noncontiguous NFA, DFA) over the first N bytes of every body signature
//! of an ndb file, build time, memory and overlapping-search throughput.
//!
//! `cargo run --release -p moat-builtin --example ac_probe -- SIGS/bench.ndb DATA_FILE`

use aho_corasick::{AhoCorasick, AhoCorasickKind, MatchKind};
use std::io::Read;
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(ndb), Some(data)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: ac_probe NDB_FILE DATA_FILE");
        std::process::exit(2);
    };
    let mut text = String::new();
    let mut data_buf = Vec::new();
    #[allow(clippy::disallowed_methods)] // bounded by take(1 GiB)
    let read = std::fs::File::open(ndb)
        .and_then(|f| f.take(1 << 30).read_to_string(&mut text))
        .and_then(|_| std::fs::File::open(data))
        .and_then(|f| f.take(1 << 30).read_to_end(&mut data_buf));
    if let Err(e) = read {
        eprintln!("{e}");
        std::process::exit(1);
    }
    let kinds = [
        ("contiguous-nfa", AhoCorasickKind::ContiguousNFA, 3),
        (
            "contiguous-nfa dense_depth=1",
            AhoCorasickKind::ContiguousNFA,
            1,
        ),
        ("noncontiguous-nfa", AhoCorasickKind::NoncontiguousNFA, 3),
        ("dfa", AhoCorasickKind::DFA, 3),
    ];
    for len in [4usize, 8] {
        // Literal signatures only (Name:0:*:HEX), first `len` bytes.
        let pats: Vec<Vec<u8>> = text
            .lines()
            .filter_map(|l| l.rsplit(':').next())
            .filter(|h| h.len() >= len * 2 && h.bytes().all(|b| b.is_ascii_hexdigit()))
            .filter_map(|h| hex::decode(&h[..len * 2]).ok())
            .collect();
        for (name, kind, dense) in kinds {
            let t = Instant::now();
            let ac = match AhoCorasick::builder()
                .match_kind(MatchKind::Standard)
                .kind(Some(kind))
                .dense_depth(dense)
                .build(&pats)
            {
                Ok(ac) => ac,
                Err(e) => {
                    println!("{name}: {e}");
                    continue;
                }
            };
            let build = t.elapsed();
            let t = Instant::now();
            let n = ac.find_overlapping_iter(&data_buf).count();
            let secs = t.elapsed().as_secs_f64();
            println!(
                "{} anchors of {len} bytes, {name}: build {:.0} ms, {:.1} MiB, {:.0} MB/s overlapping ({n} matches)",
                pats.len(),
                build.as_secs_f64() * 1e3,
                ac.memory_usage() as f64 / 1048576.0,
                data_buf.len() as f64 / 1e6 / secs
            );
        }
    }
}
