//! Differential tests of normalisation against the real `clamscan`: body
//! signatures of targets 0, 3, 4 and 7 and hash signatures (written here) on
//! HTML, text and mail files with case, whitespace, comment and entity
//! variations. `clamscan --allmatch --no-summary -d DIR FILES` and the
//! builtin engine must report the same signatures per file (modulo
//! ClamAV's `.UNOFFICIAL` suffix). Skipped with a note when `clamscan` is
//! not installed.

use md5::{Digest, Md5};
use moat_builtin::BuiltinEngine;
use moat_builtin::normalize::html::normalize_html;
use moat_core::{Blob, ScanContext};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

mod common;
use common::{clamscan, name_of};
use std::time::Duration;

fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

fn moat(sigs: &Path, files: &[PathBuf]) -> BTreeMap<String, BTreeSet<String>> {
    let e = BuiltinEngine::load("t", &[sigs.to_path_buf()]).unwrap();
    let info = moat_core::Engine::info(&e);
    assert!(info.load_errors.is_empty(), "{:?}", info.load_errors);
    assert!(info.unsupported.is_empty(), "{:?}", info.unsupported);
    let ctx = ScanContext::within(Duration::from_secs(60));
    files
        .iter()
        .map(|f| {
            let blob = Blob::open(f).unwrap();
            let r = e.scan_blob(&blob, None, &ctx).unwrap();
            (
                name_of(f),
                r.hits.into_iter().map(|h| h.signature).collect(),
            )
        })
        .collect()
}

fn compare(sig_files: &[(&str, String)], inputs: &[(&str, Vec<u8>)]) {
    let d = tempfile::tempdir().unwrap();
    let sigs = d.path().join("sigs");
    let data = d.path().join("files");
    std::fs::create_dir_all(&sigs).unwrap();
    std::fs::create_dir_all(&data).unwrap();
    for (n, c) in sig_files {
        std::fs::write(sigs.join(n), c).unwrap();
    }
    let mut files = Vec::new();
    for (n, c) in inputs {
        let p = data.join(n);
        std::fs::write(&p, c).unwrap();
        files.push(p);
    }
    let want = clamscan(&sigs, &files);
    let got = moat(&sigs, &files);
    let mut diffs = Vec::new();
    for (f, w) in &want {
        let g = got.get(f).cloned().unwrap_or_default();
        if &g != w {
            diffs.push(format!("{f}: clamscan {w:?} moat {g:?}"));
        }
    }
    assert!(diffs.is_empty(), "differences:\n{}", diffs.join("\n"));
    // The case must exercise something: some files detected, some not.
    assert!(want.values().any(|s| !s.is_empty()));
}

/// Body signatures of targets 0, 3 and 7 around one phrase, in raw and
/// normalised spellings.
fn body_sigs() -> String {
    let lines = [
        ("Raw.Mixed", 0, "For More Inform"),
        ("Any.Lower", 0, "for more inform"),
        ("Any.Space", 0, "hello world for"),
        ("Ascii.Lower", 7, "for more inform"),
        ("Ascii.Mixed", 7, "For More Inform"),
        ("Ascii.Quote", 7, "' for more inform"),
        ("Html.Lower", 3, "hello world for more inform"),
        ("Html.P", 3, "<p>hello world"),
        ("Html.RawP", 3, "<P>Hello"),
        ("Html.Comment", 3, "a comment"),
        ("Any.Comment", 0, "<!-- a comment"),
        ("Html.Entity", 3, "fish&chips"),
        ("Html.Script", 3, "<script>varx=1;</script>"),
        ("Html.Href", 3, " http://Evil.example/Payload "),
        ("Html.Attr", 3, "<a href=\"http://evil.example/payload\">"),
        ("Ascii.Any", 7, "world"),
        ("Mail.Subject", 4, "Subject: Hello"),
        ("Any.Subject", 0, "Subject: Hello"),
    ];
    lines
        .iter()
        .map(|(n, t, s)| format!("{n}:{t}:*:{}\n", hex(s)))
        .collect()
}

fn inputs() -> Vec<(&'static str, Vec<u8>)> {
    let html = b"<html><body>\n<!-- a comment -->\n<P>Hello   WORLD For More Inform</P>\n<script>var X = 1;</script></body></html>\n".to_vec();
    let mut late_html = Vec::new();
    for i in 0..60 {
        late_html
            .extend_from_slice(format!("plain line {i} of text before any markup\n").as_bytes());
    }
    late_html.extend_from_slice(b"<html><P>Hello   World For More Inform</P></html>\n");
    let mut noise = Vec::new();
    let mut x: u32 = 12345;
    for _ in 0..4096 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        noise.push(x as u8);
    }
    noise.extend_from_slice(b"Hello \x00World\x01 FOR  more\tINFORM");
    vec![
        ("page.html", html),
        (
            "upper.html",
            b"<HTML><BODY><P>HELLO\r\n\r\n world  FOR more   INFORM</P></BODY></HTML>".to_vec(),
        ),
        (
            "entities.html",
            b"<html><p>Fish&amp;Chips &#70;ish&#x26;chips</p></html>".to_vec(),
        ),
        (
            "links.html",
            b"<html><A HREF='http://Evil.example/Payload'>click</A></html>".to_vec(),
        ),
        ("late.txt", late_html),
        (
            "mixedcase-tag.txt",
            b"<hTmL><P>Hello   WORLD For More Inform</P>".to_vec(),
        ),
        (
            "source.py",
            b"def f():\n    print('See the docs'\n          ' For   More Inform')\n".to_vec(),
        ),
        ("plain.txt", b"Hello   WORLD For More Inform\n".to_vec()),
        ("exact.txt", b"hello world for more inform".to_vec()),
        ("noise.bin", noise),
        (
            "binary.bin",
            [&[0u8, 1, 0, 2][..], b" For More Inform"].concat(),
        ),
    ]
}

#[test]
fn body_signatures_of_targets_0_3_4_7_match_like_clamscan() {
    compare(&[("n.ndb", body_sigs())], &inputs());
}

/// Mail: target 4 applies to the raw message, target 0 too. (ClamAV also
/// scans each decoded body part as a file of its own, so target 7
/// signatures can match a text body there; MIME parsing is not done here,
/// hence no target 7 signature in this case.)
#[test]
fn mail_is_scanned_raw_with_targets_0_and_4() {
    let sigs: String = [
        ("Mail.Subject", 4, "Subject: Hello"),
        ("Any.Subject", 0, "Subject: Hello"),
        ("Mail.Lower", 4, "hello world"),
        ("Html.Subject", 3, "Subject: Hello"),
    ]
    .iter()
    .map(|(n, t, s)| format!("{n}:{t}:*:{}\n", hex(s)))
    .collect();
    let mails = vec![
        (
            "mail.eml",
            b"Subject: Hello\nFrom: a@b.example\n\nhello world\n".to_vec(),
        ),
        (
            "mbox",
            b"From someone@example Mon Jan 1\nSubject: Hello\n\nhello world\n".to_vec(),
        ),
        // Not mail: the header is not at the start and no header pair follows.
        (
            "note.txt",
            b"see:\nSubject: Hello\n\nhello world\n".to_vec(),
        ),
    ];
    compare(&[("m.ndb", sigs)], &mails);
}

#[test]
fn hashes_of_raw_html_do_not_match_but_hashes_of_normalised_layers_do() {
    // One name per distinct hash: which name ClamAV reports for a hash
    // listed twice is the hash table's business, not normalisation's.
    let mut seen = BTreeSet::new();
    let mut hdb = String::new();
    let mut add = |name: String, b: &[u8]| {
        let h = hex::encode(Md5::digest(b));
        if seen.insert(h.clone()) {
            hdb.push_str(&format!("{h}:{}:{name}\n", b.len()));
        }
    };
    for (n, c) in inputs() {
        add(format!("Raw.{n}"), &c);
        let o = normalize_html(&c);
        add(format!("nocomment.{n}"), &o.nocomment);
        add(format!("notags.{n}"), &o.notags);
    }
    compare(&[("h.hdb", hdb)], &inputs());
}

/// Crafted HTML whose normalisation exercises each state of ClamAV's
/// normaliser; `sigtool --html-normalise` must write the same bytes.
fn crafted_html() -> Vec<(&'static str, Vec<u8>)> {
    let mut long_word = b"<p>".to_vec();
    long_word.extend(std::iter::repeat_n(b'X', 9000));
    long_word.extend_from_slice(b" tail</p>");
    let mut chunky = Vec::new();
    for i in 0..3000 {
        chunky.extend_from_slice(format!("<b>W{i}</b>   \r\n").as_bytes());
    }
    vec![
        ("basic", b"<html><body>\n<!-- a comment -->\n<P>Hello   WORLD</P></body></html>\n".to_vec()),
        ("entities", b"<p>A&amp;B &lt;x&gt; &#65;&#x42;&#X43; &hearts; &NoSuch; &#0; &#x263a; &#12290; &#99999999999999999999; &unterminated".to_vec()),
        ("attrs", b"<A HREF='http://X.example/A&amp;B' title=\"T\\\"q\" data-x = y checked>L</A><IMG SRC=pic.PNG>".to_vec()),
        ("script", b"<script language='JavaScript'>\n// c\nvar S = 'It''s'; <!-- hidden -->\nif (a < b) x();\n</SCRIPT>after".to_vec()),
        ("style", b"<style>BODY { Color: RED }</style><p>Text</p>".to_vec()),
        ("eightbit", "<p>caf\u{e9} \u{3002} \u{ff0e} \u{4e2d}\u{6587}</p><a href=\"\u{e9}\u{3002}x\">y</a>".as_bytes().to_vec()),
        ("latin1", b"<p>caf\xe9 \xa1C \xa1D \xa1x</p>".to_vec()),
        ("data-uri", b"<img src=\"data:image/png;base64,iVBORw0KGgo=\"><a href=data:text/plain,Hi%20there&amp;x>d</a><p>after</p>".to_vec()),
        ("nul-bytes", b"<p>a\x00b\x00\x00c</p>\x00".to_vec()),
        ("crlf", b"<P>\r\nline1\r\n\r\n   line2\r\n</P>\r\n".to_vec()),
        ("comment-forms", b"<!DOCTYPE html><!--x--><! y ><p>t</p><!-- a > b -->z".to_vec()),
        ("long-word", long_word),
        ("chunky", chunky),
        ("unclosed", b"<p>text <b attr=\"open".to_vec()),
    ]
}

#[test]
fn html_normaliser_is_byte_identical_to_sigtool() {
    if Command::new("sigtool").arg("--version").output().is_err() {
        println!("note: sigtool not found; comparison skipped");
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let mut diffs = Vec::new();
    for (name, html) in crafted_html() {
        let dir = d.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let input = dir.join("input.html");
        std::fs::write(&input, &html).unwrap();
        // sigtool may abort after writing its files; only the files count.
        let _ = Command::new("sigtool")
            .arg(format!("--html-normalise={}", input.display()))
            .current_dir(&dir)
            .output()
            .unwrap();
        let ours = normalize_html(&html);
        assert_eq!(ours.unsupported, None, "{name}");
        for (file, got) in [
            ("nocomment.html", &ours.nocomment),
            ("notags.html", &ours.notags),
        ] {
            #[allow(clippy::disallowed_methods)] // sigtool's small output
            let want = std::fs::read(dir.join(file)).unwrap();
            if &want != got {
                diffs.push(format!(
                    "{name}/{file}:\n  clamav {:?}\n  moat   {:?}",
                    String::from_utf8_lossy(&want),
                    String::from_utf8_lossy(got)
                ));
            }
        }
    }
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
}
