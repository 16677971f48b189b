//! Times one load of a signature set through the compiled-set cache (a
//! fresh process per load, as `moat scan` does): the measurement behind
//! the cache's entry layout (BENCHMARKS.md, "Compiled-set cache").
//!
//!     cargo run --release -p moat-builtin --example load_probe -- CACHE_DIR SIGS...

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let mut args = std::env::args_os().skip(1);
    let Some(dir) = args.next() else {
        eprintln!("usage: load_probe CACHE_DIR SIGS...");
        std::process::exit(2);
    };
    let paths: Vec<std::path::PathBuf> = args.map(Into::into).collect();
    let opts = moat_builtin::LoadOptions {
        cache_dir: Some(dir.into()),
        all_match: false,
        ..Default::default()
    };
    let t = std::time::Instant::now();
    match moat_builtin::BuiltinEngine::load_with("builtin", &paths, &opts) {
        Ok(e) => eprintln!(
            "load {:.2} ms, cache {:?}",
            t.elapsed().as_secs_f64() * 1e3,
            e.cache_outcome()
        ),
        Err(e) => {
            eprintln!("load_probe: {e}");
            std::process::exit(1);
        }
    }
}
