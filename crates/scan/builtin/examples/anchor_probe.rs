//! How selective the ndb anchors are on real data: for an `.ndb` file and a
//! set of files, the number of positions, prefilter candidates (gram and
//! next-four-bytes equal) and confirmed anchors (whole anchor equal), the
//! prefilter's time alone, and the anchors costing the most candidates.
//!
//! `cargo run --release -p moat-builtin --example anchor_probe -- FILE.ndb PATH...`
//! (`PROBE_ANCHOR_ONLY=1`: index the anchor bytes alone, not the bytes
//! after them).

use moat_builtin::ndb::{
    Elem, compile, parse_ndb_line,
    prefilter::{GramIndex, Pattern},
};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

fn walk(p: &Path, out: &mut Vec<PathBuf>) {
    if p.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(p)
            .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        entries.sort();
        for e in entries {
            walk(&e, out);
        }
    } else if p.is_file() {
        out.push(p.to_path_buf());
    }
}

/// Up to eight (value, mask) bytes right after an anchor, from the part's
/// elements from position `(ei, off)` on (as `NdbSet` gives them to the
/// index).
fn after(elems: &[Elem], (ei, off): (usize, usize)) -> ([u8; 8], [u8; 8]) {
    let (mut v, mut m) = ([0u8; 8], [0u8; 8]);
    let mut k = 0usize;
    for (i, e) in elems.iter().enumerate().skip(ei) {
        match e {
            Elem::Seq(bytes) => {
                let from = if i == ei { off } else { 0 };
                for b in bytes.iter().skip(from).take(8usize.saturating_sub(k)) {
                    v[k] = b.val & b.mask;
                    m[k] = b.mask;
                    k += 1;
                }
            }
            Elem::Gap {
                min,
                max: Some(max),
            } if min == max => k += *min as usize,
            _ => break,
        }
        if k >= 8 {
            break;
        }
    }
    (v, m)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(ndb) = args.next() else {
        eprintln!("usage: anchor_probe FILE.ndb PATH...");
        std::process::exit(2);
    };
    let mut files = Vec::new();
    for a in args {
        walk(Path::new(&a), &mut files);
    }
    #[allow(clippy::disallowed_methods)] // probe input chosen by the operator
    let text = std::fs::read_to_string(&ndb).unwrap_or_default();
    let mut pats: Vec<Vec<u8>> = Vec::new();
    // Patterns as NdbSet makes them: an anchor and the bytes after it.
    type After = ([u8; 8], [u8; 8]);
    let mut ids: HashMap<(Vec<u8>, After), u32> = HashMap::new();
    let mut afters: Vec<After> = Vec::new();
    let mut refs: HashMap<u32, u32> = HashMap::new();
    let mut unanchored = 0;
    for (i, l) in text.lines().enumerate() {
        let Ok(s) = parse_ndb_line(l) else { continue };
        let Ok(c) = compile(s, i as u32) else {
            unanchored += 1;
            continue;
        };
        let all = std::iter::once((&c.elems, &c.pieces))
            .chain(c.rest.iter().map(|r| (&r.elems, &r.pieces)))
            .flat_map(|(elems, pieces)| pieces.iter().map(move |p| (elems, p)));
        for (elems, p) in all {
            let n = pats.len() as u32;
            let a = after(elems, p.right);
            let id = *ids.entry((p.bytes().to_vec(), a)).or_insert_with(|| {
                pats.push(p.bytes().to_vec());
                afters.push(a);
                n
            });
            *refs.entry(id).or_default() += 1;
        }
    }
    let with_after = std::env::var_os("PROBE_ANCHOR_ONLY").is_none();
    let patterns: Vec<Pattern<'_>> = pats
        .iter()
        .zip(&afters)
        .map(|(p, (v, m))| Pattern {
            anchor: p,
            after: *v,
            after_mask: if with_after { *m } else { [0; 8] },
            ..Pattern::anchor(p)
        })
        .collect();
    let index = GramIndex::build_with(&patterns);
    let lens = |lo: usize, hi: usize| {
        pats.iter()
            .filter(|p| p.len() >= lo && p.len() <= hi)
            .count()
    };
    println!(
        "{} distinct anchors ({} refs; {} unanchored sigs): 2-3 bytes {}, 4-7 {}, 8+ {}",
        pats.len(),
        refs.values().sum::<u32>(),
        unanchored,
        lens(2, 3),
        lens(4, 7),
        lens(8, usize::MAX)
    );
    let data: Vec<Vec<u8>> = files
        .iter()
        .filter_map(|p| {
            #[allow(clippy::disallowed_methods)] // probe input chosen by the operator
            std::fs::read(p).ok()
        })
        .collect();
    let bytes: usize = data.iter().map(Vec::len).sum();
    // Prefilter alone.
    let t = Instant::now();
    let mut cand = 0u64;
    for d in &data {
        let _ = index.scan::<()>(d, d.len(), &mut None, |_, _, _| {
            cand += 1;
            Ok(false)
        });
    }
    let pre = t.elapsed().as_secs_f64();
    // With confirmation, per anchor.
    let mut per: HashMap<u32, (u64, u64)> = HashMap::new();
    let mut confirmed = 0u64;
    // Confirmed candidates of a pattern already confirmed earlier in the
    // same file (short anchors, grams): what muting found patterns saves.
    let mut again = [0u64; 2];
    for d in &data {
        let mut seen = std::collections::HashSet::new();
        let _ = index.scan::<()>(d, d.len(), &mut None, |i, pid, _| {
            let p = &pats[pid as usize];
            let ok = d.get(i..i + p.len()) == Some(p.as_slice());
            let e = per.entry(pid).or_default();
            e.0 += 1;
            if ok {
                e.1 += 1;
                confirmed += 1;
                if !seen.insert(pid) {
                    again[usize::from(p.len() >= 4)] += 1;
                }
            }
            Ok(false)
        });
    }
    println!(
        "repeated confirmations in one file: short anchors {}, grams {}",
        again[0], again[1]
    );
    println!(
        "{} files, {:.1} MB: prefilter {:.3} s ({:.0} MB/s); {} candidates ({:.4}/byte), {} confirmed ({:.4}/byte)",
        data.len(),
        bytes as f64 / 1e6,
        pre,
        bytes as f64 / 1e6 / pre,
        cand,
        cand as f64 / bytes as f64,
        confirmed,
        confirmed as f64 / bytes as f64
    );
    let mut top: Vec<(u32, (u64, u64))> = per.into_iter().collect();
    top.sort_by_key(|(_, (c, _))| std::cmp::Reverse(*c));
    let mut cum = 0u64;
    for (pid, (c, ok)) in top.iter().take(30) {
        cum += c;
        println!(
            "  {:<34} refs {:>4} candidates {:>9} confirmed {:>9} (cum {:.1} %)",
            hex::encode(&pats[*pid as usize]),
            refs.get(pid).copied().unwrap_or(0),
            c,
            ok,
            100.0 * cum as f64 / cand.max(1) as f64
        );
    }
}
