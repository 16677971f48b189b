//! Write moat's `nocomment.html` and `notags.html` for each HTML file given,
//! into `OUTDIR/<index>/`, like `sigtool --html-normalise` does into the
//! current directory. Used by `scripts/htmlnorm-compare.sh`.
//!
//! Usage: `htmlnorm OUTDIR FILE...`

use moat_builtin::normalize::{MAX_HTML_NORMALIZE, html::normalize_html};
use std::io::Read;

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((out, files)) = args.split_first() else {
        eprintln!("usage: htmlnorm OUTDIR FILE...");
        std::process::exit(2);
    };
    for (i, f) in files.iter().enumerate() {
        // Bounded like the engine: ClamAV does not normalise larger HTML.
        let mut data = Vec::new();
        #[allow(clippy::disallowed_methods)] // bounded by `take`
        std::fs::File::open(f)?
            .take(MAX_HTML_NORMALIZE)
            .read_to_end(&mut data)?;
        let n = normalize_html(&data);
        let dir = std::path::Path::new(out).join(i.to_string());
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("nocomment.html"), &n.nocomment)?;
        std::fs::write(dir.join("notags.html"), &n.notags)?;
        if let Some(u) = n.unsupported {
            std::fs::write(dir.join("unsupported"), u)?;
        }
    }
    Ok(())
}
