//! The normalisers and the file-type detection on arbitrary bytes: they must
//! not panic, the text normaliser must give the same output however its
//! input is split, and the HTML outputs must stay within their bound.
#![no_main]

use libfuzzer_sys::fuzz_target;
use moat_builtin::normalize::html::normalize_html;
use moat_builtin::normalize::text::{TextNormalizer, normalize_text};
use moat_builtin::normalize::{FileKind, classify, layers};

fuzz_target!(|data: &[u8]| {
    let kind = classify(data);
    let _ = layers(kind, data);
    let _ = layers(FileKind::Html, data);

    let whole = normalize_text(data);
    assert!(whole.len() <= data.len());
    let cut = data
        .first()
        .map_or(0, |&b| usize::from(b) % (data.len() + 1));
    let mut n = TextNormalizer::new();
    let mut split = Vec::new();
    n.feed(&data[..cut], &mut split);
    n.feed(&data[cut..], &mut split);
    assert_eq!(whole, split);

    let h = normalize_html(data);
    // Character references at most double; each <a>/<img> adds a bounded copy.
    assert!(h.nocomment.len() <= 2 * data.len() + 16);
    assert!(h.notags.len() <= data.len() * (1025 + 2) + 16);
});
