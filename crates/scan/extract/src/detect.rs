//! Container detection by magic bytes.

/// A container format the walker opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ContainerKind {
    Zip,
    Gzip,
    Tar,
    Bzip2,
    Xz,
    Zstd,
    SevenZ,
    /// An RFC 5322 message or an mbox file (MIME parts are its members).
    Mail,
    Cpio,
    /// Outlook's `winmail.dat`.
    Tnef,
    /// RTF documents (their embedded objects are the members).
    Rtf,
    /// An OLE1 embedded object, as RTF documents hold them.
    Ole1,
    /// An OLE2 compound file (Office 97–2003 documents, MSI, `.msg`).
    Ole2,
    /// Microsoft `COMPRESS.EXE` output (`file.ex_`).
    Szdd,
    /// BinHex 4.0 (`.hqx`).
    BinHex,
    Pdf,
    /// A Microsoft Cabinet (`MSCF`).
    Cab,
    Arj,
    /// Compiled HTML Help (ITSF).
    Chm,
    /// HTML pages: their `data:` URIs are the members.
    Html,
    /// The files an InstallShield setup carries after its program.
    InstallShield,
    /// An NSIS installer's data (found embedded in its executable).
    Nsis,
    /// AutoIt v3 compiled scripts (an `.a3x` file, or found embedded in the
    /// executable that runs them): the script, decompiled, and its files.
    AutoIt,
    /// A Symbian OS installation package (EPOC `.sis`, before Symbian 9).
    Sis,
    /// A Windows executable: its members are the objects embedded in it
    /// (self-extracting archives, executables inside executables).
    Pe,
}

impl ContainerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ContainerKind::Zip => "zip",
            ContainerKind::Gzip => "gzip",
            ContainerKind::Tar => "tar",
            ContainerKind::Bzip2 => "bzip2",
            ContainerKind::Xz => "xz",
            ContainerKind::Zstd => "zstd",
            ContainerKind::SevenZ => "7z",
            ContainerKind::Mail => "mail",
            ContainerKind::Cpio => "cpio",
            ContainerKind::Tnef => "tnef",
            ContainerKind::Rtf => "rtf",
            ContainerKind::Ole1 => "ole1",
            ContainerKind::Ole2 => "ole2",
            ContainerKind::Szdd => "szdd",
            ContainerKind::BinHex => "binhex",
            ContainerKind::Pdf => "pdf",
            ContainerKind::Cab => "cab",
            ContainerKind::Pe => "pe",
            ContainerKind::Nsis => "nsis",
            ContainerKind::Arj => "arj",
            ContainerKind::Chm => "chm",
            ContainerKind::Html => "html",
            ContainerKind::InstallShield => "installshield",
            ContainerKind::AutoIt => "autoit",
            ContainerKind::Sis => "sis",
        }
    }
}

/// How many leading bytes [`detect`] and [`detect_unsupported_archive`] look
/// at: as many as ClamAV's file typing (SIS needs them all).
pub const HEAD_LEN: usize = crate::formats::sis::TYPE_BUFFER;

/// How many leading bytes the formats other than SIS are recognised by.
const SHORT_HEAD: usize = 512;

/// The container format of content starting with `head` (give at least
/// [`HEAD_LEN`] bytes when available: tar is recognised by `ustar` at offset 257).
pub fn detect(head: &[u8]) -> Option<ContainerKind> {
    let full = head;
    let head = &full[..full.len().min(SHORT_HEAD)];
    let starts = |m: &[u8]| head.starts_with(m);
    if starts(b"PK\x03\x04") || starts(b"PK\x05\x06") || starts(b"PK\x07\x08") {
        Some(ContainerKind::Zip)
    } else if starts(&[0x1f, 0x8b, 0x08]) {
        Some(ContainerKind::Gzip)
    } else if is_bzip2(head) {
        Some(ContainerKind::Bzip2)
    } else if starts(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
        Some(ContainerKind::Xz)
    } else if starts(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Some(ContainerKind::Zstd)
    } else if starts(&[b'7', b'z', 0xbc, 0xaf, 0x27, 0x1c]) {
        Some(ContainerKind::SevenZ)
    } else if crate::formats::cab::is_cab(head) {
        Some(ContainerKind::Cab)
    } else if head.get(257..262) == Some(b"ustar") {
        Some(ContainerKind::Tar)
    } else if crate::formats::ishield::is_ishield(head) {
        Some(ContainerKind::InstallShield)
    } else if crate::formats::chm::is_chm(head) {
        Some(ContainerKind::Chm)
    } else if crate::formats::arj::is_arj(head) {
        Some(ContainerKind::Arj)
    } else if crate::formats::nsis::is_nsis(head) {
        Some(ContainerKind::Nsis)
    } else if crate::formats::autoit::is_autoit(head) {
        Some(ContainerKind::AutoIt)
    } else if crate::formats::pe::is_pe(head) {
        Some(ContainerKind::Pe)
    } else if crate::formats::pdf::is_pdf(head) {
        Some(ContainerKind::Pdf)
    } else if crate::formats::binhex::is_binhex(head) {
        Some(ContainerKind::BinHex)
    } else if crate::formats::szdd::is_szdd(head) {
        Some(ContainerKind::Szdd)
    } else if crate::formats::ole2::is_ole2(head) {
        Some(ContainerKind::Ole2)
    } else if crate::formats::rtf::is_rtf(head) {
        Some(ContainerKind::Rtf)
    } else if crate::formats::ole1::is_ole1(head) {
        Some(ContainerKind::Ole1)
    } else if crate::formats::tnef::is_tnef(head) {
        Some(ContainerKind::Tnef)
    } else if crate::formats::cpio::is_cpio(head) {
        Some(ContainerKind::Cpio)
    } else if crate::formats::sis::is_sis(full) {
        Some(ContainerKind::Sis)
    } else if is_mail(head) {
        Some(ContainerKind::Mail)
    } else if crate::formats::html::is_html(head) {
        Some(ContainerKind::Html)
    } else {
        None
    }
}

/// Header names only mail carries; one of them must be in the leading header
/// block for content to be read as mail, so that a text file that merely
/// starts with `Date:` or `To:` is not.
const MAIL_HEADERS: &[&[u8]] = &[
    b"received",
    b"return-path",
    b"message-id",
    b"mime-version",
    b"delivered-to",
    b"x-original-to",
    b"dkim-signature",
    b"authentication-results",
    b"arc-seal",
    b"x-mailer",
    b"in-reply-to",
    b"content-transfer-encoding",
];

/// A message: an optional mbox `From ` line, then a block of header lines
/// (and folded continuations) up to a blank line or the end of `head`, with a
/// header name from [`MAIL_HEADERS`] among them.
fn is_mail(head: &[u8]) -> bool {
    // Whole lines only: the last one may be cut anywhere.
    let whole = head
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(&[][..], |i| &head[..i]);
    let mut lines = whole.split(|&b| b == b'\n').peekable();
    if lines.peek().is_some_and(|l| l.starts_with(b"From ")) {
        lines.next();
    }
    let mut strong = false;
    let mut first = true;
    for line in lines {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        if !first && (line[0] == b' ' || line[0] == b'\t') {
            continue;
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            return false;
        };
        let name = &line[..colon];
        if name.is_empty() || !name.iter().all(|b| b.is_ascii_graphic()) {
            return false;
        }
        strong |= MAIL_HEADERS.iter().any(|h| name.eq_ignore_ascii_case(h));
        first = false;
    }
    strong
}

/// `BZh1`..`BZh9` followed by a block or end-of-stream magic, so that text
/// starting with "BZh9" is not taken for an archive.
fn is_bzip2(head: &[u8]) -> bool {
    const BLOCK: [u8; 6] = [0x31, 0x41, 0x59, 0x26, 0x53, 0x59];
    const END: [u8; 6] = [0x17, 0x72, 0x45, 0x38, 0x50, 0x90];
    head.len() >= 10
        && head.starts_with(b"BZh")
        && (b'1'..=b'9').contains(&head[3])
        && (head[4..10] == BLOCK || head[4..10] == END)
}

/// Archive formats moat recognises but cannot open: `"rar"`.
pub fn detect_unsupported_archive(head: &[u8]) -> Option<&'static str> {
    if head.starts_with(b"Rar!\x1a\x07\x00") || head.starts_with(b"Rar!\x1a\x07\x01\x00") {
        Some("rar")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magic_bytes() {
        assert_eq!(detect(b"PK\x03\x04rest"), Some(ContainerKind::Zip));
        assert_eq!(detect(b"PK\x05\x06"), Some(ContainerKind::Zip));
        assert_eq!(detect(&[0x1f, 0x8b, 8, 0]), Some(ContainerKind::Gzip));
        assert_eq!(detect(b"\xfd7zXZ\x00"), Some(ContainerKind::Xz));
        assert_eq!(detect(&[0x28, 0xb5, 0x2f, 0xfd]), Some(ContainerKind::Zstd));
        assert_eq!(
            detect(b"BZh91AY&SYxx"),
            Some(ContainerKind::Bzip2),
            "block magic"
        );
        assert_eq!(detect(b"BZh9 is just text"), None);
        let mut tar = vec![0u8; 512];
        tar[257..263].copy_from_slice(b"ustar\0");
        assert_eq!(detect(&tar), Some(ContainerKind::Tar));
        assert_eq!(detect(b"hello"), None);
        assert_eq!(detect(b""), None);
    }

    #[test]
    fn mail_is_a_header_block_with_a_mail_only_header() {
        let msg =
            b"From: a@example.com\r\nSubject: hi\r\n  folded\r\nMIME-Version: 1.0\r\n\r\nbody\r\n";
        assert_eq!(detect(msg), Some(ContainerKind::Mail));
        let mbox = b"From a@example.com  Thu Jul 31 13:49:50 2008\nReceived: by x\nTo: b\n";
        assert_eq!(detect(mbox), Some(ContainerKind::Mail));
        // A cut header line at the end of the head does not matter.
        let mut long = b"Received: from x\nMessage-ID: <1@x>\nX-Long: ".to_vec();
        long.resize(HEAD_LEN, b'a');
        assert_eq!(detect(&long), Some(ContainerKind::Mail));
        // Text that only starts like a header, YAML, a letter.
        assert_eq!(detect(b"Date: 2020-01-01\nTo: all\n\nnotes\n"), None);
        assert_eq!(detect(b"from: a\nto: b\nmessage-id x\n"), None);
        assert_eq!(detect(b"From the start, we knew.\nIt was late.\n"), None);
        assert_eq!(detect(b"Message-ID: <1@x>"), None);
    }

    #[test]
    fn unsupported_magic() {
        assert_eq!(
            detect(b"7z\xbc\xaf\x27\x1c\x00\x04"),
            Some(ContainerKind::SevenZ)
        );
        assert_eq!(
            detect_unsupported_archive(b"7z\xbc\xaf\x27\x1c\x00\x04"),
            None
        );
        assert_eq!(detect_unsupported_archive(b"Rar!\x1a\x07\x00"), Some("rar"));
        assert_eq!(
            detect_unsupported_archive(b"Rar!\x1a\x07\x01\x00"),
            Some("rar")
        );
        assert_eq!(detect_unsupported_archive(b"PK\x03\x04"), None);
    }
}
