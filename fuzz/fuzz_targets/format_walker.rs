//! Walks arbitrary bytes as one of the formats whose start random bytes
//! rarely hit (the first byte picks a prefix that makes the walker read the
//! rest as mail, RTF, an OLE1 object, TNEF, OLE2, SZDD, BinHex, PDF, cpio,
//! an AutoIt EA05 or EA06 script, as in an `.a3x` file or after its
//! header in an executable, an EPOC SIS package, or an ISO 9660 image:
//! 32 KiB of system area, then the primary descriptor's `\x01CD001`), then
//! walks it as `archive_walker` does.
#![no_main]

use libfuzzer_sys::fuzz_target;
use moat_extract::detect;

#[path = "walk_checked.rs"]
mod walk_checked;

/// An ISO 9660 image's start: the system area, then `\x01CD001` (the
/// walker finds images by it, past `detect`'s head).
static ISO: [u8; 32774] = {
    let mut v = [0u8; 32774];
    let m = *b"\x01CD001";
    let mut i = 0;
    while i < 6 {
        v[32768 + i] = m[i];
        i += 1;
    }
    v
};

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let prefix: &[u8] = match pick % 13 {
        0 => b"Message-ID: <fuzz@moat>\r\n",
        1 => b"{\\rtf1 ",
        2 => b"\x01\x05\x00\x00\x02\x00\x00\x00",
        3 => b"\x78\x9f\x3e\x22\x01\x00",
        4 => b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1",
        5 => b"SZDD\x88\xf0\x27\x33A\x00",
        6 => b"(This file must be converted with BinHex 4.0)\r\n:",
        7 => b"%PDF-1.7\n",
        8 => b"070701",
        9 => b"\xa3\x48\x4b\xbe\x98\x6c\x4a\xa9\x99\x4c\x53\x0a\x86\xd6\x48\x7dAU3!EA05",
        10 => b"\xa3\x48\x4b\xbe\x98\x6c\x4a\xa9\x99\x4c\x53\x0a\x86\xd6\x48\x7dAU3!EA06",
        11 => &ISO,
        // The UIDs, the third the EPOC SIS one; the header follows.
        _ => b"\x01\x00\x00\x10\x12\x3a\x00\x10\x19\x04\x00\x10\x00\x00\x00\x00",
    };
    let mut msg = prefix.to_vec();
    msg.extend_from_slice(rest);
    if detect(&msg).is_none() && pick % 13 != 11 {
        return;
    }
    walk_checked::walk_checked(msg);
});
