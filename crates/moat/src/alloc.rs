//! The process allocator, and the one place moat asks it to give memory back.
//!
//! mimalloc instead of glibc malloc: the proxy's request path allocates and
//! frees many small buffers per request, and glibc's free-list consolidation
//! showed up as ~9% of the proxy's CPU in a profile (see BENCHMARKS.md).
//!
//! A signature load allocates on rayon's worker threads and the old engine
//! set is freed on another thread when a reload swaps it out. mimalloc keeps
//! such memory until the owning thread next allocates (blocks freed from
//! another thread wait on the page's thread-free list) and returns freed
//! pages to the OS only after a purge delay, checked when later pages are
//! freed. An idle server after a reload therefore kept the old set's memory:
//! 1.5 times its fresh RSS, measured with `bench/reload_mem.py` (see
//! ARCHITECTURE.md and BENCHMARKS.md). [`release_free_memory`] runs once
//! after each engine load.

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

// mimalloc's `mi_collect` (mimalloc.h; part of the library the `mimalloc`
// crate links). Declared here rather than through `libmimalloc-sys`'s
// `extended` feature, which would add a dependency for one function.
unsafe extern "C" {
    fn mi_collect(force: bool);
    fn mi_option_get(option: i32) -> std::ffi::c_long;
    fn mi_option_set(option: i32, value: std::ffi::c_long);
}

/// `mi_option_purge_delay` in mimalloc v3's `mi_option_t` (mimalloc.h; the
/// `mimalloc` crate builds v3): milliseconds before freed pages are
/// returned to the OS; mimalloc v3's default is 1000 (src/options.c; the
/// header's comment still says 10, v2's default).
const MI_OPTION_PURGE_DELAY: i32 = 15;

/// Run `f` with mimalloc returning freed pages to the OS at once instead of
/// after its purge delay, then restore the delay.
///
/// For a signature load in a short process (`moat scan`): the loader's
/// transients (parsed lines, per-thread tables merged later) are freed while
/// the load is still allocating, and with the default delay their pages
/// stayed resident on top of the new ones, so the load's peak set the
/// process's peak RSS: 43 MiB instead of 36 MiB for 20,000 body signatures
/// (BENCHMARKS.md, "`moat scan` start-up"). Scanning afterwards keeps the
/// delay: a file's buffers are freed and allocated again file after file.
pub fn with_immediate_purge<T>(f: impl FnOnce() -> T) -> T {
    // SAFETY: `mi_option_get`/`mi_option_set` take an option index and a
    // value, touch only mimalloc's option table (atomics), and may be called
    // from any thread at any time.
    let before = unsafe { mi_option_get(MI_OPTION_PURGE_DELAY) };
    // SAFETY: as above.
    unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, 0) };
    let out = f();
    // SAFETY: as above.
    unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, before) };
    out
}

/// Have mimalloc collect the pages freed on every rayon worker thread and
/// on the calling thread, and return all free memory to the OS now rather
/// than after its purge delay. Blocking (a few milliseconds); call it after
/// a signature load or reload, from a blocking thread.
pub fn release_free_memory() {
    // SAFETY: `mi_collect` takes no pointers and only walks the calling
    // thread's own heap and the process-wide arenas, under mimalloc's locks;
    // it is safe to call from any thread at any time, including while other
    // threads allocate.
    rayon::broadcast(|_| unsafe { mi_collect(true) });
    // SAFETY: as above.
    unsafe { mi_collect(true) };
}

#[cfg(test)]
mod tests {
    use rayon::prelude::*;

    fn rss_kib() -> i64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    #[test]
    fn immediate_purge_sets_mimallocs_purge_delay_and_restores_it() {
        // SAFETY: reads mimalloc's option table only.
        let get = || unsafe { super::mi_option_get(super::MI_OPTION_PURGE_DELAY) };
        let before = get();
        let inside = super::with_immediate_purge(get);
        assert_eq!(inside, 0, "purge delay inside");
        assert_eq!(get(), before, "purge delay restored");
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            // mimalloc v3's default purge delay: the index names that option.
            assert_eq!(before, 1000, "default purge delay");
        }
    }

    #[test]
    fn memory_allocated_on_rayon_workers_and_freed_elsewhere_goes_back_to_the_os() {
        // As a reload: 64 MiB allocated on rayon's workers, freed on this thread.
        let blocks: Vec<Vec<u8>> = (0..64u8)
            .into_par_iter()
            .map(|i| vec![i | 1; 1 << 20])
            .collect();
        let held = rss_kib();
        drop(blocks);
        let freed = rss_kib();
        super::release_free_memory();
        let released = rss_kib();
        assert!(
            held - released >= 32 * 1024,
            "RSS {held} KiB with the blocks, {freed} KiB after freeing them, {released} KiB after release_free_memory"
        );
    }
}
