//! Link flags of the `moat` binary.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    // Relative relocations packed as DT_RELR: the binary carries 125,000 of
    // them, 3 MB of `.rela.dyn` that the dynamic loader read and applied on
    // every start; packed they are 33 KB, and `moat --version` went from
    // 6.8 to 5.2 ms (BENCHMARKS.md, "Compiled-set cache"), a part of every
    // short `moat scan`. Only where the C library can load them (glibc
    // 2.36 and later: it defines GLIBC_ABI_DT_RELR) and for a native x86-64
    // build (binutils 2.38 and later, lld 15 and later take the flag).
    let var = |k: &str| std::env::var(k).unwrap_or_default();
    if var("TARGET") == "x86_64-unknown-linux-gnu"
        && var("HOST") == var("TARGET")
        && glibc_has_relr()
    {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}

fn glibc_has_relr() -> bool {
    const NEEDLE: &[u8] = b"GLIBC_ABI_DT_RELR";
    [
        "/lib/x86_64-linux-gnu/libc.so.6",
        "/usr/lib/x86_64-linux-gnu/libc.so.6",
        "/lib64/libc.so.6",
        "/usr/lib64/libc.so.6",
    ]
    .iter()
    .find_map(|p| {
        #[allow(clippy::disallowed_methods)] // the system's C library, a few MB
        std::fs::read(p).ok()
    })
    .is_some_and(|b| b.windows(NEEDLE.len()).any(|w| w == NEEDLE))
}
