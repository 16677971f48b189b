//! A stress run for the format readers when cargo-fuzz cannot run (it needs
//! a nightly toolchain): each file given is mutated over and over (a few
//! random bytes overwritten, sometimes cut short) and walked in-process with
//! small limits; a panic, or a member past the limits, stops the run with
//! the mutated input written to `mutate-crash.bin`.
//!
//!     cargo run --release -p moat-extract --example mutate -- SECONDS FILE...

use moat_core::Blob;
use moat_extract::{Limits, walk};
use std::time::{Duration, Instant};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let secs: u64 = args.next().ok_or("SECONDS FILE...")?.parse()?;
    let files: Vec<(String, Vec<u8>)> = args
        .map(|p| {
            let b = Blob::open(std::path::Path::new(&p))?;
            let mut v = vec![0u8; b.len() as usize];
            b.read_at(0, &mut v)?;
            Ok((p, v))
        })
        .collect::<Result<_, std::io::Error>>()?;
    let limits = Limits {
        max_members: 64,
        max_member_size: 1 << 22,
        max_expanded_bytes: 1 << 24,
        ..Limits::default()
    };
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut rand = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut runs = 0u64;
    while Instant::now() < deadline {
        for (path, data) in &files {
            let mut m = data.clone();
            for _ in 0..1 + rand() % 8 {
                let i = (rand() % m.len() as u64) as usize;
                m[i] = rand() as u8;
            }
            if rand() % 8 == 0 {
                m.truncate((rand() % m.len() as u64) as usize);
            }
            let blob = Blob::from_vec(m.clone());
            let outcome = std::panic::catch_unwind(|| {
                let mut over = false;
                let r = walk::<std::convert::Infallible>(&blob, "m", &limits, &mut |e| {
                    over |= e.data.len() > limits.max_member_size;
                    Ok(())
                });
                (r.map(|r| r.members).unwrap_or(0), over)
            });
            match outcome {
                Ok((members, false)) if members <= limits.max_members => {}
                other => {
                    std::fs::write("mutate-crash.bin", &m)?;
                    return Err(
                        format!("{path}: {other:?} after {runs} runs (mutate-crash.bin)").into(),
                    );
                }
            }
            runs += 1;
        }
    }
    println!("{runs} mutated walks, no panic, limits kept");
    Ok(())
}
