//! The least a cold load of body signatures costs in a fresh process,
//! whatever the compiler: every source read and split into lines, every
//! line's hex field decoded into bytes (into one reused buffer per thread,
//! nothing kept, on rayon's threads as the loader parses), then an entry of
//! `ENTRY_BYTES` written through the compiled-set cache's own writer
//! (checksum, temporary file, rename). No anchors, no index, no names.
//! The measurement behind issue 11's cold-load floor (BENCHMARKS.md,
//! "Cold load: the floor").
//!
//!     cargo run --release -p moat-builtin --example cold_floor -- CACHE_DIR ENTRY_BYTES SIGS...

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

use rayon::prelude::*;
use std::time::Instant;

/// A hex digit's value; 16 for any other byte (tabulated in `main`: a
/// lookup per digit decodes about twice as fast as this match).
fn nibble(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        b'A'..=b'F' => c - b'A' + 10,
        _ => 16,
    }
}

/// Decode the hex digit pairs of `field` into `out`, digit values from
/// `hex`, skipping wildcards, jumps and alternatives' punctuation; the
/// number of bytes.
fn decode(hex: &[u8; 256], field: &[u8], out: &mut Vec<u8>) -> usize {
    out.clear();
    out.resize(field.len() / 2, 0);
    let (mut n, mut i) = (0, 0);
    while i + 1 < field.len() {
        let (h, l) = (hex[field[i] as usize], hex[field[i + 1] as usize]);
        if (h | l) < 16 {
            out[n] = h << 4 | l;
            n += 1;
            i += 2;
        } else {
            i += 1;
        }
    }
    n
}

/// Largest source read.
const MAX_SOURCE: u64 = 1 << 30;

/// A whole signature source, up to [`MAX_SOURCE`] bytes.
fn read_source(path: &std::ffi::OsStr) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let len = f.metadata()?.len();
    if len > MAX_SOURCE {
        return Err(std::io::Error::other("larger than 1 GiB"));
    }
    let mut buf = vec![0u8; len as usize];
    f.read_exact(&mut buf)?;
    Ok(buf)
}

fn main() {
    let mut args = std::env::args_os().skip(1);
    let (Some(dir), Some(size)) = (args.next(), args.next()) else {
        eprintln!("usage: cold_floor CACHE_DIR ENTRY_BYTES SIGS...");
        std::process::exit(2);
    };
    let Some(size) = size.to_str().and_then(|s| s.parse::<usize>().ok()) else {
        eprintln!("cold_floor: ENTRY_BYTES is a number of bytes");
        std::process::exit(2);
    };
    // rayon's workers, started as the loader's first parallel parse starts them.
    let t = Instant::now();
    rayon::broadcast(|_| ());
    let pool = t.elapsed();
    let t = Instant::now();
    let mut sources = Vec::new();
    for path in args {
        match read_source(&path) {
            Ok(d) => sources.push(d),
            Err(e) => {
                eprintln!("cold_floor: {}: {e}", path.to_string_lossy());
                std::process::exit(1);
            }
        }
    }
    let read = t.elapsed();
    let t = Instant::now();
    let hex: [u8; 256] = std::array::from_fn(|c| nibble(c as u8));
    let (mut lines, mut bytes) = (0usize, 0usize);
    for data in &sources {
        let (n, b) = data
            .par_split(|&c| c == b'\n')
            .map_init(Vec::new, |buf, line| {
                let field = line.split(|&c| c == b':').nth(3).unwrap_or(&[]);
                (1usize, decode(&hex, field, buf))
            })
            .reduce(|| (0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
        lines += n;
        bytes += b;
    }
    let parse = t.elapsed();
    let t = Instant::now();
    let kind = moat_core::disk_cache::Kind {
        magic: b"MOATFLR1",
        ext: "floor",
        max_entry: u64::MAX,
    };
    let key = moat_core::disk_cache::Key::new(sha2::Digest::new(), sha2::Digest::new());
    let written = moat_core::disk_cache::write_with(dir.as_ref(), &kind, &key, |w| {
        let chunk: Vec<u8> = (0..1u32 << 16).map(|i| (i * 2_654_435_761) as u8).collect();
        let mut left = size;
        while left > 0 {
            let n = left.min(chunk.len());
            w.write_all(&chunk[..n])?;
            left -= n;
        }
        Ok(())
    });
    if let Err(e) = written {
        eprintln!("cold_floor: {e}");
        std::process::exit(1);
    }
    eprintln!(
        "threads {:.2} ms, read {:.2} ms, {lines} lines ({bytes} signature bytes) \
         decoded {:.2} ms, {size}-byte entry written {:.2} ms",
        pool.as_secs_f64() * 1e3,
        read.as_secs_f64() * 1e3,
        parse.as_secs_f64() * 1e3,
        t.elapsed().as_secs_f64() * 1e3
    );
}
