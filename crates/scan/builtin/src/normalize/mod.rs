//! Normalisation as ClamAV does it before matching text and HTML, so that
//! target 0, 3 (HTML) and 7 (ASCII text) body signatures match what
//! `clamscan --allmatch` matches.
//!
//! What ClamAV 1.4 does (libclamav/scanners.c `cli_magic_scan`, `scanraw`,
//! `cli_scanhtml`, `cli_scanscript`; matcher.c `cli_scan_buff`), reproduced by
//! [`raw_plan`] and [`layers`]:
//!
//! * The object's type is decided from its first 1024 bytes
//!   ([`filetype::classify`]).
//! * **Text** (ASCII, UTF-8, UTF-16): the raw bytes are scanned with target 0
//!   only (hashes included). If an HTML marker of the file-type table occurs
//!   anywhere in the file, the file is then treated as HTML (below, without
//!   undoing the raw scan). Otherwise, if it is at most
//!   [`MAX_SCRIPT_NORMALIZE`] bytes, its text normalisation
//!   ([`text::TextNormalizer`]) is scanned with targets 0 and 7 (no hashes).
//! * **HTML** (an HTML marker in the first 1024 bytes of text or binary
//!   data): the raw bytes are *not* scanned at all, hashes included (DCONF
//!   `HTMLSKIPRAW`, on by default). If the file is at most
//!   [`MAX_HTML_NORMALIZE`] bytes, the normalised `nocomment.html` and, up to
//!   [`MAX_HTML_NOTAGS`] bytes, `notags.html` ([`html`]) are scanned like files
//!   of type HTML: hashes, targets 0 and 3.
//! * **Mail** (mail magic): the raw bytes are scanned with targets 0 and 4.
//! * Everything else: the raw scan as before (targets chosen by the head).
//!
//! Not reproduced (each a documented difference, not a silent one): the
//! `javascript` layer of HTML (ClamAV runs its JavaScript tokeniser and
//! renames identifiers before scanning it with targets 0, 3 and 7), `data:`
//! URIs (`rfc2397`), UTF-16 HTML, HTML inside GIF files, MIME parsing of mail
//! (ClamAV scans decoded body parts and attachments as nested files), and
//! ClamAV's 128 KiB flush boundary in script normalisation (a target 0
//! signature spanning it is missed by ClamAV, found here).

mod entities;
pub mod filetype;
pub mod html;
pub mod text;

pub use filetype::{FileKind, TextType, classify};

use crate::ndb::Target;

/// ClamAV's `MaxHTMLNormalize` default: larger HTML is not normalised.
pub const MAX_HTML_NORMALIZE: u64 = 40 << 20;
/// ClamAV's `MaxHTMLNoTags` default: larger HTML has no `notags` layer.
pub const MAX_HTML_NOTAGS: u64 = 8 << 20;
/// ClamAV's `MaxScriptNormalize` default: larger text is not normalised.
pub const MAX_SCRIPT_NORMALIZE: u64 = 20 << 20;

/// How the raw bytes of an object are scanned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawPlan {
    /// Whether the raw bytes are scanned at all (hashes and body signatures).
    pub scan: bool,
    /// A target enabled for the raw scan besides those the head selects.
    pub extra: Option<Target>,
}

/// The raw-scan plan for an object of this kind.
pub fn raw_plan(kind: FileKind) -> RawPlan {
    match kind {
        FileKind::Html => RawPlan {
            scan: false,
            extra: None,
        },
        FileKind::Mail => RawPlan {
            scan: true,
            extra: Some(Target::Mail),
        },
        _ => RawPlan {
            scan: true,
            extra: None,
        },
    }
}

/// Whether [`layers`] needs the object's content (so the caller reads it,
/// bounded by [`MAX_HTML_NORMALIZE`]).
pub fn wants_layers(kind: FileKind, len: u64) -> bool {
    matches!(kind, FileKind::Html | FileKind::Text(_)) && len <= MAX_HTML_NORMALIZE
}

/// A normalised buffer and how to scan it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    /// ClamAV's name for it (`nocomment.html`, `notags.html`, `script`).
    pub name: &'static str,
    pub data: Vec<u8>,
    /// Targets besides target 0 (which always applies).
    pub target: Target,
    /// Whether hash signatures are checked (ClamAV scans the HTML layers as
    /// files of their own, the script buffer in memory).
    pub hashes: bool,
}

/// The normalised layers of an object of `kind` whose whole content is
/// `data`, in ClamAV's order.
pub fn layers(kind: FileKind, data: &[u8]) -> Vec<Layer> {
    let len = data.len() as u64;
    let html = match kind {
        FileKind::Html => true,
        FileKind::Text(_) => filetype::recognise(data) == Some("CL_TYPE_HTML"),
        _ => return Vec::new(),
    };
    let mut out = Vec::new();
    if html {
        if len > MAX_HTML_NORMALIZE {
            return out;
        }
        let n = html::normalize_html(data);
        out.push(Layer {
            name: "nocomment.html",
            data: n.nocomment,
            target: Target::Html,
            hashes: true,
        });
        if len <= MAX_HTML_NOTAGS {
            out.push(Layer {
                name: "notags.html",
                data: n.notags,
                target: Target::Html,
                hashes: true,
            });
        }
    } else if len <= MAX_SCRIPT_NORMALIZE {
        out.push(Layer {
            name: "script",
            data: text::normalize_text(data),
            target: Target::Ascii,
            hashes: false,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic pseudo-random inputs drawn from an HTML-heavy alphabet.
    fn inputs() -> impl Iterator<Item = Vec<u8>> {
        const ALPHA: &[u8] =
            b"<>!-&#;xX0123456789aAbB='\"\\ \t\r\n\0/%:,scriptdaSCRIPT\x80\xa1\xe3\xef\xff";
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        (0..3000).map(move |i| {
            let len = (i * 7) % 700;
            (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    if x.is_multiple_of(5) {
                        (x >> 8) as u8
                    } else {
                        ALPHA[(x >> 16) as usize % ALPHA.len()]
                    }
                })
                .collect()
        })
    }

    #[test]
    fn hostile_inputs_never_panic_and_stay_bounded() {
        for data in inputs() {
            let kind = classify(&data);
            for l in layers(kind, &data)
                .iter()
                .chain(&layers(FileKind::Html, &data))
            {
                assert!(l.data.len() <= 2 * data.len() + 16 || l.name == "notags.html");
            }
            let h = html::normalize_html(&data);
            assert!(h.nocomment.len() <= 2 * data.len() + 16);
            assert!(text::normalize_text(&data).len() <= data.len());
        }
    }

    #[test]
    fn layers_follow_the_kind_and_the_limits() {
        let html = b"<html><P>Hi  There</P></html>";
        let l = layers(FileKind::Html, html);
        let names: Vec<_> = l.iter().map(|l| (l.name, l.target, l.hashes)).collect();
        assert_eq!(
            names,
            vec![
                ("nocomment.html", Target::Html, true),
                ("notags.html", Target::Html, true)
            ]
        );
        assert_eq!(l[1].data, b" hi there ".to_vec());
        let t = layers(FileKind::Text(TextType::Ascii), b"Hi  There");
        assert_eq!(t.len(), 1);
        assert_eq!(
            (t[0].name, t[0].target, t[0].hashes),
            ("script", Target::Ascii, false)
        );
        assert_eq!(t[0].data, b"hi there".to_vec());
        // Text with an HTML marker after the head is normalised as HTML.
        let late = [vec![b'x'; 2000], b"<html>Y</html>".to_vec()].concat();
        assert_eq!(
            layers(FileKind::Text(TextType::Ascii), &late)[0].name,
            "nocomment.html"
        );
        assert!(layers(FileKind::Binary, html).is_empty());
        assert!(layers(FileKind::Mail, html).is_empty());
        assert!(!raw_plan(FileKind::Html).scan);
        assert_eq!(raw_plan(FileKind::Mail).extra, Some(Target::Mail));
        assert!(!wants_layers(FileKind::Html, MAX_HTML_NORMALIZE + 1));
    }
}
