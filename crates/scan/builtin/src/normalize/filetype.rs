//! File-type detection as ClamAV does it before scanning, for the types
//! that decide how text is normalised: ASCII text (target 7), HTML
//! (target 3) and mail (target 4).
//!
//! ClamAV (libclamav/filetypes.c `cli_determine_fmap_type`) reads the first
//! [`MAGIC_HEAD`] bytes and
//! 1. compares them with the fixed-offset magic numbers of its file-type
//!    table (type-0 lines; the last loaded line is tried first);
//! 2. if none matches, classifies them as ASCII / UTF-8 / UTF-16 text or
//!    binary data (textdet.c `cli_texttype`, [`text_type`]);
//! 3. for text and binary data, runs the table's pattern lines (type 1:
//!    `<html>`, `<script`, mail header pairs, …) over the same bytes; the
//!    recognised type with the highest enum value wins, except that
//!    self-extracting-archive markers are ignored here.
//!
//! The table is ClamAV's built-in one (libclamav/filetypes_int.h), which is
//! what `clamscan -d DIR` uses when no `daily.ftm` is loaded; lines are
//! filtered by functionality level as ClamAV 1.4 (level [`FLEVEL`]) does.
//! Not reproduced (documented, not silent: the file keeps its text or binary
//! type): the UTF-16 and byte-order-mark HTML re-detection and the tar check.

use crate::ndb::{NdbSet, set_from_lines};
use std::sync::OnceLock;

/// Bytes of the object's head that the type detection reads (ClamAV's
/// `CL_FILE_MBUFF_SIZE`).
pub const MAGIC_HEAD: usize = 1024;

/// ClamAV 1.4's functionality level (`CL_FLEVEL`), for the table's min/max levels.
pub const FLEVEL: u32 = 215;

/// What the scan does with an object, decided from its type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// Text (`CL_TYPE_TEXT_ASCII`, `_UTF8`, `_UTF16LE`, `_UTF16BE`): raw scan
    /// with target 0, then HTML or script normalisation.
    Text(TextType),
    /// `CL_TYPE_BINARY_DATA`.
    Binary,
    /// `CL_TYPE_HTML`: no raw scan; the normalised layers are scanned.
    Html,
    /// `CL_TYPE_MAIL`: raw scan with targets 0 and 4.
    Mail,
    /// Any other recognised type (by its ClamAV name).
    Other(&'static str),
}

/// ClamAV's text classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextType {
    Ascii,
    Utf8,
    Utf16Le,
    Utf16Be,
}

/// ClamAV's file type names (`cli_file_t`, libclamav/filetypes.h) in enum
/// order: `CL_TYPE_ANY` (0), then from `CL_TYPE_TEXT_ASCII` on. A later type
/// has priority in pattern-based recognition; logical signatures' target
/// blocks (`Container`, `Intermediates`) use the index as the type's identity.
pub(crate) const CL_TYPES: &[&str] = &[
    "CL_TYPE_ANY",
    "CL_TYPE_TEXT_ASCII",
    "CL_TYPE_TEXT_UTF8",
    "CL_TYPE_TEXT_UTF16LE",
    "CL_TYPE_TEXT_UTF16BE",
    "CL_TYPE_BINARY_DATA",
    "CL_TYPE_ERROR",
    "CL_TYPE_MSEXE",
    "CL_TYPE_ELF",
    "CL_TYPE_MACHO",
    "CL_TYPE_MACHO_UNIBIN",
    "CL_TYPE_POSIX_TAR",
    "CL_TYPE_OLD_TAR",
    "CL_TYPE_CPIO_OLD",
    "CL_TYPE_CPIO_ODC",
    "CL_TYPE_CPIO_NEWC",
    "CL_TYPE_CPIO_CRC",
    "CL_TYPE_GZ",
    "CL_TYPE_ZIP",
    "CL_TYPE_BZ",
    "CL_TYPE_RAR",
    "CL_TYPE_ARJ",
    "CL_TYPE_MSSZDD",
    "CL_TYPE_MSOLE2",
    "CL_TYPE_MSCAB",
    "CL_TYPE_MSCHM",
    "CL_TYPE_SIS",
    "CL_TYPE_SCRENC",
    "CL_TYPE_GRAPHICS",
    "CL_TYPE_GIF",
    "CL_TYPE_PNG",
    "CL_TYPE_JPEG",
    "CL_TYPE_TIFF",
    "CL_TYPE_RIFF",
    "CL_TYPE_BINHEX",
    "CL_TYPE_TNEF",
    "CL_TYPE_CRYPTFF",
    "CL_TYPE_PDF",
    "CL_TYPE_UUENCODED",
    "CL_TYPE_SCRIPT",
    "CL_TYPE_HTML_UTF16",
    "CL_TYPE_RTF",
    "CL_TYPE_7Z",
    "CL_TYPE_SWF",
    "CL_TYPE_JAVA",
    "CL_TYPE_XAR",
    "CL_TYPE_XZ",
    "CL_TYPE_OOXML_WORD",
    "CL_TYPE_OOXML_PPT",
    "CL_TYPE_OOXML_XL",
    "CL_TYPE_INTERNAL",
    "CL_TYPE_HWP3",
    "CL_TYPE_OOXML_HWP",
    "CL_TYPE_PS",
    "CL_TYPE_EGG",
    "CL_TYPE_ONENOTE",
    "CL_TYPE_PYTHON_COMPILED",
    "CL_TYPE_LHA_LZH",
    "CL_TYPE_PART_ANY",
    "CL_TYPE_PART_HFSPLUS",
    "CL_TYPE_MBR",
    "CL_TYPE_HTML",
    "CL_TYPE_MAIL",
    "CL_TYPE_SFX",
    "CL_TYPE_ZIPSFX",
    "CL_TYPE_RARSFX",
    "CL_TYPE_7ZSFX",
    "CL_TYPE_CABSFX",
    "CL_TYPE_ARJSFX",
    "CL_TYPE_EGGSFX",
    "CL_TYPE_NULSFT",
    "CL_TYPE_AUTOIT",
    "CL_TYPE_ISHIELD_MSI",
    "CL_TYPE_ISO9660",
    "CL_TYPE_DMG",
    "CL_TYPE_GPT",
    "CL_TYPE_APM",
    "CL_TYPE_XDP",
    "CL_TYPE_XML_WORD",
    "CL_TYPE_XML_XL",
    "CL_TYPE_XML_HWP",
    "CL_TYPE_HWPOLE2",
    "CL_TYPE_MHTML",
    "CL_TYPE_LNK",
    "CL_TYPE_UDF",
    "CL_TYPE_ALZ",
    "CL_TYPE_OTHER",
    "CL_TYPE_IGNORED",
];

/// Self-extracting markers: not taken as the file's type by the head check.
const SFX: &[&str] = &[
    "CL_TYPE_ZIPSFX",
    "CL_TYPE_ARJSFX",
    "CL_TYPE_RARSFX",
    "CL_TYPE_EGGSFX",
    "CL_TYPE_CABSFX",
    "CL_TYPE_7ZSFX",
];

/// ClamAV's built-in file-type table (libclamav/filetypes_int.h, ClamAV
/// 1.4), file lines only: `kind:offset:magic:name:required:type[:min[:max]]`.
const FTYPES: &[&str] = &[
    "0:0:1f8b:GZip:CL_TYPE_ANY:CL_TYPE_GZ",
    "0:0:23407e5e:SCRENC:CL_TYPE_ANY:CL_TYPE_SCRENC",
    "0:0:28546869732066696c65206d75737420626520636f6e76657274656420776974682042696e48657820342e3029:BinHex:CL_TYPE_ANY:CL_TYPE_BINHEX",
    "0:0:2e524d46:Real Media File:CL_TYPE_ANY:CL_TYPE_IGNORED",
    "0:0:3e46726f6d20:Mail:CL_TYPE_ANY:CL_TYPE_MAIL",
    "0:0:424d:BMP:CL_TYPE_ANY:CL_TYPE_GRAPHICS",
    "0:0:425a68:BZip:CL_TYPE_ANY:CL_TYPE_BZ",
    "0:0:446174653a20:Mail:CL_TYPE_ANY:CL_TYPE_MAIL",
    "0:0:44656c6976657265642d546f3a20:Mail:CL_TYPE_ANY:CL_TYPE_MAIL",
    "0:0:44656c69766572792d646174653a20:Mail:CL_TYPE_ANY:CL_TYPE_MAIL",
    "0:0:456e76656c6f70652d746f3a20:Mail:CL_TYPE_ANY:CL_TYPE_MAIL",
    "0:0:466f723a20:Eserv mail:CL_TYPE_ANY:CL_TYPE_MAIL",
    "0:0:46726f6d20:MBox:CL_TYPE_ANY:CL_TYPE_MAIL",
    "0:0:46726f6d3a20:Exim mail:CL_TYPE_ANY:CL_TYPE_MAIL",
    "0:0:48692e20546869732069732074686520716d61696c2d73656e64:Qmail bounce:CL_TYPE_ANY:CL_TYPE_MAIL",
    "0:0:494433:MP3:CL_TYPE_ANY:CL_TYPE_IGNORED",
    "0:0:49545346:MS CHM:CL_TYPE_ANY:CL_TYPE_MSCHM",
    "0:0:4d5a:MS-EXE/DLL:CL_TYPE_ANY:CL_TYPE_MSEXE",
    "0:0:4d6573736167652d49443a20:Mail:CL_TYPE_ANY:CL_TYPE_MAIL",
    "0:0:4d6573736167652d49643a20:Mail:CL_TYPE_ANY:CL_TYPE_MAIL",
    "0:0:4f676753:Ogg Stream:CL_TYPE_ANY:CL_TYPE_IGNORED",
    "0:0:504b0304:ZIP:CL_TYPE_ANY:CL_TYPE_ZIP",
    "0:0:504b3030504b0304:ZIP:CL_TYPE_ANY:CL_TYPE_ZIP",
    "0:0:52494646:RIFF:CL_TYPE_ANY:CL_TYPE_RIFF",
    "0:0:52494658:RIFX:CL_TYPE_ANY:CL_TYPE_RIFF",
    "0:0:52617221:RAR:CL_TYPE_ANY:CL_TYPE_RAR",
    "0:0:52656365697665643a20:Raw mail:CL_TYPE_ANY:CL_TYPE_MAIL",
    "0:0:52657475726e2d506174683a20:Maildir:CL_TYPE_ANY:CL_TYPE_MAIL",
    "0:0:52657475726e2d706174683a20:Maildir:CL_TYPE_ANY:CL_TYPE_MAIL",
    "0:0:535a4444:compress.exed:CL_TYPE_ANY:CL_TYPE_MSSZDD",
    "0:0:5375626a6563743a20:Mail:CL_TYPE_ANY:CL_TYPE_MAIL",
    "0:0:546f3a20:Mail:CL_TYPE_ANY:CL_TYPE_MAIL",
    "0:0:582d4170706172656e746c792d546f3a20:Mail:CL_TYPE_ANY:CL_TYPE_MAIL",
    "0:0:582d455653:EVS mail:CL_TYPE_ANY:CL_TYPE_MAIL",
    "0:0:582d456e76656c6f70652d46726f6d3a20:Mail:CL_TYPE_ANY:CL_TYPE_MAIL",
    "0:0:582d4f726967696e616c2d546f3a20:Mail:CL_TYPE_ANY:CL_TYPE_MAIL",
    "0:0:582d5265616c2d546f3a20:Mail:CL_TYPE_ANY:CL_TYPE_MAIL",
    "0:0:582d53696576653a20:Mail:CL_TYPE_ANY:CL_TYPE_MAIL",
    "0:0:582d53796d616e7465632d:Symantec:CL_TYPE_ANY:CL_TYPE_MAIL",
    "0:0:582d5549444c3a20:Mail:CL_TYPE_ANY:CL_TYPE_MAIL",
    "0:0:60ea:ARJ:CL_TYPE_ANY:CL_TYPE_ARJ",
    "0:0:626567696e20:UUencoded:CL_TYPE_ANY:CL_TYPE_UUENCODED",
    "0:0:763a0a52656365697665643a20:VPOP3 Mail (UNIX):CL_TYPE_ANY:CL_TYPE_MAIL",
    "0:0:763a0d0a52656365697665643a20:VPOP3 Mail (DOS):CL_TYPE_ANY:CL_TYPE_MAIL",
    "0:0:789f3e22:TNEF:CL_TYPE_ANY:CL_TYPE_TNEF",
    "0:0:7f454c46:ELF:CL_TYPE_ANY:CL_TYPE_ELF",
    "0:0:b6b9acaefeffffff:CryptFF:CL_TYPE_ANY:CL_TYPE_CRYPTFF",
    "0:0:d0cf11e0a1b11ae1:OLE2 container:CL_TYPE_ANY:CL_TYPE_MSOLE2",
    "0:0:fffb90:MP3:CL_TYPE_ANY:CL_TYPE_IGNORED",
    "1:*:3c4120*(68|48)(72|52)4546:HTML data:CL_TYPE_ANY:CL_TYPE_HTML",
    "1:*:3c4120*(68|48)(72|52)6566:HTML data:CL_TYPE_ANY:CL_TYPE_HTML",
    "1:*:3c484541443e:HTML data:CL_TYPE_ANY:CL_TYPE_HTML",
    "1:*:3c48544d4c3e:HTML data:CL_TYPE_ANY:CL_TYPE_HTML",
    "1:*:3c486561643e:HTML data:CL_TYPE_ANY:CL_TYPE_HTML",
    "1:*:3c48746d6c3e:HTML data:CL_TYPE_ANY:CL_TYPE_HTML",
    "1:*:3c494652414d45:HTML data:CL_TYPE_ANY:CL_TYPE_HTML",
    "1:*:3c494d47:HTML data:CL_TYPE_ANY:CL_TYPE_HTML",
    "1:*:3c496d67:HTML data:CL_TYPE_ANY:CL_TYPE_HTML",
    "1:*:3c4f424a454354:HTML data:CL_TYPE_ANY:CL_TYPE_HTML",
    "1:*:3c4f626a656374:HTML data:CL_TYPE_ANY:CL_TYPE_HTML",
    "1:*:3c534352495054:HTML data:CL_TYPE_ANY:CL_TYPE_HTML",
    "1:*:3c536372697074:HTML data:CL_TYPE_ANY:CL_TYPE_HTML",
    "1:*:3c5441424c45:HTML data:CL_TYPE_ANY:CL_TYPE_HTML",
    "1:*:3c6120*(68|48)(72|52)4546:HTML data:CL_TYPE_ANY:CL_TYPE_HTML",
    "1:*:3c6120*(68|48)(72|52)6566:HTML data:CL_TYPE_ANY:CL_TYPE_HTML",
    "1:*:3c686561643e:HTML data:CL_TYPE_ANY:CL_TYPE_HTML",
    "1:*:3c68746d6c3e:HTML data:CL_TYPE_ANY:CL_TYPE_HTML",
    "1:*:3c696672616d65:HTML data:CL_TYPE_ANY:CL_TYPE_HTML",
    "1:*:3c696d67:HTML data:CL_TYPE_ANY:CL_TYPE_HTML",
    "1:*:3c6f626a656374:HTML data:CL_TYPE_ANY:CL_TYPE_HTML",
    "1:*:3c736372697074:HTML data:CL_TYPE_ANY:CL_TYPE_HTML",
    "1:*:3c7461626c65:HTML data:CL_TYPE_ANY:CL_TYPE_HTML",
    "1:*:4d5a{60-300}50450000:PE:CL_TYPE_ANY:CL_TYPE_MSEXE",
    "1:*:504b0304:ZIP-SFX:CL_TYPE_ANY:CL_TYPE_ZIPSFX",
    "1:*:526172211a0700:RAR-SFX:CL_TYPE_ANY:CL_TYPE_RARSFX",
    "1:*:60ea{7}0002:ARJ-SFX:CL_TYPE_ANY:CL_TYPE_ARJSFX",
    "1:*:60ea{7}0102:ARJ-SFX:CL_TYPE_ANY:CL_TYPE_ARJSFX",
    "1:*:60ea{7}0202:ARJ-SFX:CL_TYPE_ANY:CL_TYPE_ARJSFX",
    "1:*:a3484bbe986c4aa9994c530a86d6487d41553321454130(35|36):AUTOIT:CL_TYPE_ANY:CL_TYPE_AUTOIT",
    "1:*:efbeadde4e756c6c736f6674496e7374:NSIS:CL_TYPE_ANY:CL_TYPE_NULSFT",
    "0:0:5349502d48495420285349502f48:SIP log:CL_TYPE_ANY:CL_TYPE_IGNORED",
    "1:0:3c2540204c414e4755414745203d:HTML data:CL_TYPE_ANY:CL_TYPE_HTML",
    "0:257:7573746172:TAR-POSIX:CL_TYPE_ANY:CL_TYPE_POSIX_TAR",
    "0:0:5b616c69617365735d:mirc ini:CL_TYPE_ANY:CL_TYPE_SCRIPT",
    "1:0,1024:0a(46|66)726f6d3a20{-1024}0a(4d|6d)(49|69)(4d|6d)(45|65)2d(56|76)657273696f6e3a20:Mail file:CL_TYPE_ANY:CL_TYPE_MAIL",
    "1:0,1024:0a(46|66)726f6d3a20{-2048}0a(43|63)6f6e74656e742d(54|74)7970653a20:Mail file:CL_TYPE_ANY:CL_TYPE_MAIL",
    "1:0,1024:0a(4d|6d)(49|69)(4d|6d)(45|65)2d(56|76)657273696f6e3a20{-2048}0a(43|63)6f6e74656e742d(54|74)7970653a20:Mail file:CL_TYPE_ANY:CL_TYPE_MAIL",
    "1:0,1024:0a(4d|6d)6573736167652d(49|69)643a20{-1024}0a(43|63)6f6e74656e742d(54|74)7970653a20:Mail file:CL_TYPE_ANY:CL_TYPE_MAIL",
    "0:0:cefaedfe:Mach-O LE:CL_TYPE_ANY:CL_TYPE_MACHO:45",
    "0:0:cffaedfe:Mach-O LE 64-bit:CL_TYPE_ANY:CL_TYPE_MACHO:45",
    "0:0:feedface:Mach-O BE:CL_TYPE_ANY:CL_TYPE_MACHO:45",
    "0:0:feedfacf:Mach-O BE 64-bit:CL_TYPE_ANY:CL_TYPE_MACHO:45",
    "0:0:377abcaf271c:7zip:CL_TYPE_ANY:CL_TYPE_7Z:47",
    "0:0:52656365697665642d5350463a20:Mail file:CL_TYPE_ANY:CL_TYPE_MAIL",
    "1:0,2048:0a(52|72)656365697665643a20{-2048}0a(43|63)6f6e74656e742d(54|74)7970653a20:Mail file:CL_TYPE_ANY:CL_TYPE_MAIL",
    "0:0:303730373031:CPIO NEWC:CL_TYPE_ANY:CL_TYPE_CPIO_NEWC:45",
    "0:0:303730373032:CPIO CRC:CL_TYPE_ANY:CL_TYPE_CPIO_CRC:45",
    "0:0:303730373037:CPIO ODC:CL_TYPE_ANY:CL_TYPE_CPIO_ODC:45",
    "0:0:71c7:CPIO OLD BINARY BE:CL_TYPE_ANY:CL_TYPE_CPIO_OLD:45",
    "0:0:c771:CPIO OLD BINARY LE:CL_TYPE_ANY:CL_TYPE_CPIO_OLD:45",
    "1:*:496e7374616c6c536869656c6400{292}0600000000000000????????????????0000000001:ISHIELD-MSI:CL_TYPE_ANY:CL_TYPE_ISHIELD_MSI:45",
    "0:0:255044462d:PDF document:CL_TYPE_ANY:CL_TYPE_PDF:55",
    "1:*:255044462d??2e:PDF:CL_TYPE_ANY:CL_TYPE_PDF:55",
    "1:*:257064662d??2e:PDF:CL_TYPE_ANY:CL_TYPE_PDF:55",
    "0:0:53594d430100:SYM DATFILE:CL_TYPE_ANY:CL_TYPE_IGNORED",
    "1:0,128:2f5247420a49440affffffffffffffffffffffffffffffffffffffffffffffff:PDF image:CL_TYPE_ANY:CL_TYPE_IGNORED",
    "0:0:377f0682002de218:SQLite WAL:CL_TYPE_ANY:CL_TYPE_IGNORED",
    "0:0:377f0683002de218:SQLite WAL:CL_TYPE_ANY:CL_TYPE_IGNORED",
    "0:0:53514c69746520666f726d6174203300:SQLite database:CL_TYPE_ANY:CL_TYPE_IGNORED",
    "0:0:d9d505f920a163d7:SQLite journal:CL_TYPE_ANY:CL_TYPE_IGNORED",
    "0:0:465753:SWF (uncompressed):CL_TYPE_ANY:CL_TYPE_SWF:71",
    "0:0:4d53434600000000:MS CAB:CL_TYPE_ANY:CL_TYPE_MSCAB",
    "1:*:4d53434600000000:CAB-SFX:CL_TYPE_ANY:CL_TYPE_CABSFX",
    "1:*:014344303031{2043-2443}4344303031:ISO9660:CL_TYPE_ANY:CL_TYPE_ISO9660:71",
    "1:0,32768:004245413031:UDF:CL_TYPE_ANY:CL_TYPE_UDF:180",
    "0:0:5b616c69617365735d:TAR-POSIX-CVE-2012-1419:CL_TYPE_ANY:CL_TYPE_POSIX_TAR",
    "1:8,12:19040010:SIS:CL_TYPE_ANY:CL_TYPE_SIS",
    "1:0,1024:44656c6976657265642d546f3a{-256}52656365697665643a:Mail file:CL_TYPE_ANY:CL_TYPE_MAIL",
    "0:0:0000000c6a5020200d0a870a:JPEG2000:CL_TYPE_ANY:CL_TYPE_GRAPHICS",
    "0:0:000001b3:MPEG video stream:CL_TYPE_ANY:CL_TYPE_BINARY_DATA",
    "0:0:000001ba:MPEG sys stream:CL_TYPE_ANY:CL_TYPE_BINARY_DATA",
    "1:0:cafebabe0000000?:Universal Binary:CL_TYPE_ANY:CL_TYPE_MACHO_UNIBIN:75",
    "1:0:cafebabe0000001?:Universal Binary:CL_TYPE_ANY:CL_TYPE_MACHO_UNIBIN:75",
    "1:0:cafebabe0000002?:Java class file:CL_TYPE_ANY:CL_TYPE_JAVA:75",
    "1:0:cafebabe0000003?:Java class file:CL_TYPE_ANY:CL_TYPE_JAVA:75",
    "0:0:78617221:XAR container file:CL_TYPE_ANY:CL_TYPE_XAR:75",
    "1:EOF-512:6b6f6c79:DMG container file:CL_TYPE_ANY:CL_TYPE_DMG:75",
    "0:0:fd377a585a00:XZ container file:CL_TYPE_ANY:CL_TYPE_XZ:76",
    "1:0:3c3f786d6c2076657273696f6e3d22312e3022{0-1024}3c576f726b626f6f6b:Microsoft Excel 2003 XML Document:CL_TYPE_ANY:CL_TYPE_XML_XL:80",
    "1:0:3c3f786d6c2076657273696f6e3d22312e3022{0-1024}3c776f7264446f63756d656e74:Microsoft Word 2003 XML Document:CL_TYPE_ANY:CL_TYPE_XML_WORD:80",
    "1:0:3c3f786d6c2076657273696f6e3d22312e3022{0-1024}3c??3a576f726b626f6f6b:Microsoft Excel 2003 XML Document:CL_TYPE_ANY:CL_TYPE_XML_XL:80",
    "1:0:3c3f786d6c2076657273696f6e3d22312e3022{0-1024}3c??3a776f7264446f63756d656e74:Microsoft Word 2003 XML Document:CL_TYPE_ANY:CL_TYPE_XML_WORD:80",
    "0:512:4546492050415254:Disk Image - GUID Partition Table:CL_TYPE_ANY:CL_TYPE_GPT:77",
    "1:*:3c7864703a786470:Adobe XDP - Embedded PDF:CL_TYPE_ANY:CL_TYPE_XDP:79",
    "1:0:4552{510}504d0000:Disk Image - Apple Partition Map:CL_TYPE_ANY:CL_TYPE_APM:77",
    "1:510:55aa:Disk Image - Master Boot Record:CL_TYPE_ANY:CL_TYPE_MBR:77",
    "0:4:d0cf11e0a1b11ae1:HWP embedded OLE2:CL_TYPE_ANY:CL_TYPE_HWPOLE2:82",
    "1:0:efbbbf3c3f786d6c2076657273696f6e3d22312e3022*3c4857504d4c:HWPML Document:CL_TYPE_ANY:CL_TYPE_XML_HWP:82",
    "0:0:48575020446f63756d656e742046696c652056332e3030201a0102030405:HWP3 Document:CL_TYPE_ANY:CL_TYPE_HWP3:82",
    "0:0:7b5c7274:RTF:CL_TYPE_ANY:CL_TYPE_RTF:30",
    "0:0:cafebabe:Universal Binary/Java Bytecode:CL_TYPE_ANY:CL_TYPE_MACHO_UNIBIN:46:74",
    "0:0:252150532d41646f62652d:PostScript:CL_TYPE_ANY:CL_TYPE_ANY:51:82",
    "0:0:252150532d41646f62652d:PostScript:CL_TYPE_ANY:CL_TYPE_PS:83:83",
    "0:0:252150532d41646f62652d:PostScript:CL_TYPE_ANY:CL_TYPE_PS:90",
    "1:0:(4d|6d)(49|69)(4d|6d)(45|65)2d(56|76)657273696f6e3a20{-1024}0a(43|63)6f6e74656e742d(54|74)7970653a20:MHTML file:CL_TYPE_ANY:CL_TYPE_MHTML:83:83",
    "1:*:0a(4d|6d)(49|69)(4d|6d)(45|65)2d(56|76)657273696f6e3a20{-1024}0a(43|63)6f6e74656e742d(54|74)7970653a20:MHTML file:CL_TYPE_ANY:CL_TYPE_MHTML:83:83",
    "1:0:(4d|6d)(49|69)(4d|6d)(45|65)2d(56|76)657273696f6e3a20{-1024}0a(43|63)6f6e74656e742d(54|74)7970653a20:MHTML file:CL_TYPE_ANY:CL_TYPE_MHTML:90",
    "1:*:0a(4d|6d)(49|69)(4d|6d)(45|65)2d(56|76)657273696f6e3a20{-1024}0a(43|63)6f6e74656e742d(54|74)7970653a20:MHTML file:CL_TYPE_ANY:CL_TYPE_MHTML:90",
    "0:0:252150532d41646f62652d:PostScript:CL_TYPE_ANY:CL_TYPE_ANY:84:85",
    "0:0:4C0000000114020000000000C000000000000046:Microsoft Windows Shortcut File:CL_TYPE_ANY:CL_TYPE_LNK:100",
    "0:0:435753:SWF (zlib compressed):CL_TYPE_ANY:CL_TYPE_SWF:71",
    "0:0:45474741:Egg Archive:CL_TYPE_ANY:CL_TYPE_EGG:115",
    "0:0:89504e47:PNG:CL_TYPE_ANY:CL_TYPE_GRAPHICS::121",
    "0:0:89504e47:PNG:CL_TYPE_ANY:CL_TYPE_PNG:122",
    "0:0:474946:GIF:CL_TYPE_ANY:CL_TYPE_GRAPHICS::121",
    "0:0:474946:GIF:CL_TYPE_ANY:CL_TYPE_GIF:122",
    "0:0:ffd8ff:JPEG:CL_TYPE_ANY:CL_TYPE_GRAPHICS::121",
    "0:0:ffd8ff:JPEG:CL_TYPE_ANY:CL_TYPE_JPEG:122",
    "0:0:49492a00:TIFF Little Endian:CL_TYPE_ANY:CL_TYPE_TIFF:122",
    "0:0:4d4d:TIFF Big Endian:CL_TYPE_ANY:CL_TYPE_TIFF:122",
    "0:0:7b20224d61676963223a2022434c414d4a534f4e763022:Internal properties:CL_TYPE_ANY:CL_TYPE_INTERNAL:78:119",
    "0:0:7b0a2020224d61676963223a22434c414d4a534f4e763022:Internal properties:CL_TYPE_ANY:CL_TYPE_INTERNAL:120",
    "0:0:5a5753:SWF (LZMA compressed):CL_TYPE_ANY:CL_TYPE_SWF:81",
    "0:0:49492a00:TIFF Little Endian:CL_TYPE_ANY:CL_TYPE_GRAPHICS:81:121",
    "0:0:4d4d:TIFF Big Endian:CL_TYPE_ANY:CL_TYPE_GRAPHICS:81:121",
    "1:*:377abcaf271c:7zip-SFX:CL_TYPE_ANY:CL_TYPE_7ZSFX:74",
    "1:0:3c3f786d6c2076657273696f6e3d22312e3022{0-1024}70726f6769643d22576f72642e446f63756d656e74223f3e:Microsoft Word 2003 XML Document:CL_TYPE_ANY:CL_TYPE_XML_WORD:80",
    "0:0:e4525c7b8cd8a74daeb15378d02996d3:Microsoft OneNote Document:CL_TYPE_ANY:CL_TYPE_ONENOTE:200",
    "0:0:02099900:Python 1.0 byte-compiled (.pyc):CL_TYPE_ANY:CL_TYPE_PYTHON_COMPILED:200",
    "0:0:03099900:Python 1.1/1.2 byte-compiled (.pyc):CL_TYPE_ANY:CL_TYPE_PYTHON_COMPILED:200",
    "0:0:892e0d0a:Python 1.3 byte-compiled (.pyc):CL_TYPE_ANY:CL_TYPE_PYTHON_COMPILED:200",
    "0:0:04170d0a:Python 1.4 byte-compiled (.pyc):CL_TYPE_ANY:CL_TYPE_PYTHON_COMPILED:200",
    "0:0:994e0d0a:Python 1.5 byte-compiled (.pyc):CL_TYPE_ANY:CL_TYPE_PYTHON_COMPILED:200",
    "0:0:fcc40d0a:Python 1.6 byte-compiled (.pyc):CL_TYPE_ANY:CL_TYPE_PYTHON_COMPILED:200",
    "0:0:fdc40d0a:Python 1.6 byte-compiled (.pyc):CL_TYPE_ANY:CL_TYPE_PYTHON_COMPILED:200",
    "0:0:87c60d0a:Python 2.0 byte-compiled (.pyc):CL_TYPE_ANY:CL_TYPE_PYTHON_COMPILED:200",
    "0:0:88c60d0a:Python 2.0 byte-compiled (.pyc):CL_TYPE_ANY:CL_TYPE_PYTHON_COMPILED:200",
    "0:0:2aeb0d0a:Python 2.1 byte-compiled (.pyc):CL_TYPE_ANY:CL_TYPE_PYTHON_COMPILED:200",
    "0:0:2beb0d0a:Python 2.1 byte-compiled (.pyc):CL_TYPE_ANY:CL_TYPE_PYTHON_COMPILED:200",
    "0:0:2ded0d0a:Python 2.2 byte-compiled (.pyc):CL_TYPE_ANY:CL_TYPE_PYTHON_COMPILED:200",
    "0:0:2eed0d0a:Python 2.2 byte-compiled (.pyc):CL_TYPE_ANY:CL_TYPE_PYTHON_COMPILED:200",
    "0:0:3bf20d0a:Python 2.3 byte-compiled (.pyc):CL_TYPE_ANY:CL_TYPE_PYTHON_COMPILED:200",
    "0:0:3cf20d0a:Python 2.3 byte-compiled (.pyc):CL_TYPE_ANY:CL_TYPE_PYTHON_COMPILED:200",
    "0:0:45f20d0a:Python 2.3 byte-compiled (.pyc):CL_TYPE_ANY:CL_TYPE_PYTHON_COMPILED:200",
    "0:0:59f20d0a:Python 2.4 byte-compiled (.pyc):CL_TYPE_ANY:CL_TYPE_PYTHON_COMPILED:200",
    "0:0:63f20d0a:Python 2.4 byte-compiled (.pyc):CL_TYPE_ANY:CL_TYPE_PYTHON_COMPILED:200",
    "0:0:6df20d0a:Python 2.4 byte-compiled (.pyc):CL_TYPE_ANY:CL_TYPE_PYTHON_COMPILED:200",
    "0:0:6ef20d0a:Python 2.4 byte-compiled (.pyc):CL_TYPE_ANY:CL_TYPE_PYTHON_COMPILED:200",
    "0:0:77f20d0a:Python 2.5 byte-compiled (.pyc):CL_TYPE_ANY:CL_TYPE_PYTHON_COMPILED:200",
    "0:0:81f20d0a:Python 2.5 byte-compiled (.pyc):CL_TYPE_ANY:CL_TYPE_PYTHON_COMPILED:200",
    "0:0:8bf20d0a:Python 2.5 byte-compiled (.pyc):CL_TYPE_ANY:CL_TYPE_PYTHON_COMPILED:200",
    "0:0:8cf20d0a:Python 2.5 byte-compiled (.pyc):CL_TYPE_ANY:CL_TYPE_PYTHON_COMPILED:200",
    "0:0:95f20d0a:Python 2.5 byte-compiled (.pyc):CL_TYPE_ANY:CL_TYPE_PYTHON_COMPILED:200",
    "0:0:9ff20d0a:Python 2.5 byte-compiled (.pyc):CL_TYPE_ANY:CL_TYPE_PYTHON_COMPILED:200",
    "0:0:a9f20d0a:Python 2.5 byte-compiled (.pyc):CL_TYPE_ANY:CL_TYPE_PYTHON_COMPILED:200",
    "0:0:b3f20d0a:Python 2.5 byte-compiled (.pyc):CL_TYPE_ANY:CL_TYPE_PYTHON_COMPILED:200",
    "0:0:b4f20d0a:Python 2.5 byte-compiled (.pyc):CL_TYPE_ANY:CL_TYPE_PYTHON_COMPILED:200",
    "0:0:c7f20d0a:Python 2.6 byte-compiled (.pyc):CL_TYPE_ANY:CL_TYPE_PYTHON_COMPILED:200",
    "0:0:d1f20d0a:Python 2.6 byte-compiled (.pyc):CL_TYPE_ANY:CL_TYPE_PYTHON_COMPILED:200",
    "0:0:d2f20d0a:Python 2.6 byte-compiled (.pyc):CL_TYPE_ANY:CL_TYPE_PYTHON_COMPILED:200",
    "0:0:dbf20d0a:Python 2.7 byte-compiled (.pyc):CL_TYPE_ANY:CL_TYPE_PYTHON_COMPILED:200",
    "0:0:e5f20d0a:Python 2.7 byte-compiled (.pyc):CL_TYPE_ANY:CL_TYPE_PYTHON_COMPILED:200",
    "0:0:eff20d0a:Python 2.7 byte-compiled (.pyc):CL_TYPE_ANY:CL_TYPE_PYTHON_COMPILED:200",
    "0:0:f9f20d0a:Python 2.7 byte-compiled (.pyc):CL_TYPE_ANY:CL_TYPE_PYTHON_COMPILED:200",
    "0:0:03f30d0a:Python 2.7 byte-compiled (.pyc):CL_TYPE_ANY:CL_TYPE_PYTHON_COMPILED:200",
    "0:0:04f30d0a:Python 2.7 byte-compiled (.pyc):CL_TYPE_ANY:CL_TYPE_PYTHON_COMPILED:200",
    "0:0:0af30d0a:PyPy 2.7 byte-compiled (.pyc):CL_TYPE_ANY:CL_TYPE_PYTHON_COMPILED:200",
    "0:0:b80b0d0a:Python 3.0 byte-compiled (.pyc):CL_TYPE_ANY:CL_TYPE_PYTHON_COMPILED:200",
    "0:0:c20b0d0a:Python 3.0 byte-compiled (.pyc):CL_TYPE_ANY:CL_TYPE_PYTHON_COMPILED:200",
    "0:0:cc0b0d0a:Python 3.0 byte-compiled (.pyc):CL_TYPE_ANY:CL_TYPE_PYTHON_COMPILED:200",
    "0:0:d60b0d0a:Python 3.0 byte-compiled (.pyc):CL_TYPE_ANY:CL_TYPE_PYTHON_COMPILED:200",
    "0:0:e00b0d0a:Python 3.0 byte-compiled (.pyc):CL_TYPE_ANY:CL_TYPE_PYTHON_COMPILED:200",
    "0:0:ea0b0d0a:Python 3.0 byte-compiled (.pyc):CL_TYPE_ANY:CL_TYPE_PYTHON_COMPILED:200",
    "0:0:f40b0d0a:Python 3.0 byte-compiled (.pyc):CL_TYPE_ANY:CL_TYPE_PYTHON_COMPILED:200",
    "0:0:f50b0d0a:Python 3.0 byte-compiled (.pyc):CL_TYPE_ANY:CL_TYPE_PYTHON_COMPILED:200",
    "0:0:ff0b0d0a:Python 3.0 byte-compiled (.pyc):CL_TYPE_ANY:CL_TYPE_PYTHON_COMPILED:200",
    "0:0:090c0d0a:Python 3.0 byte-compiled (.pyc):CL_TYPE_ANY:CL_TYPE_PYTHON_COMPILED:200",
    "0:0:130c0d0a:Python 3.0 byte-compiled (.pyc):CL_TYPE_ANY:CL_TYPE_PYTHON_COMPILED:200",
    "0:0:1d0c0d0a:Python 3.0 byte-compiled (.pyc):CL_TYPE_ANY:CL_TYPE_PYTHON_COMPILED:200",
    "0:0:1f0c0d0a:Python 3.0 byte-compiled (.pyc):CL_TYPE_ANY:CL_TYPE_PYTHON_COMPILED:200",
    "0:0:270c0d0a:Python 3.0 byte-compiled (.pyc):CL_TYPE_ANY:CL_TYPE_PYTHON_COMPILED:200",
    "0:0:3b0c0d0a:Python 3.0 byte-compiled (.pyc):CL_TYPE_ANY:CL_TYPE_PYTHON_COMPILED:200",
    "0:0:450c0d0a:Python 3.1 byte-compiled (.pyc):CL_TYPE_ANY:CL_TYPE_PYTHON_COMPILED:200",
    "0:0:4f0c0d0a:Python 3.1 byte-compiled (.pyc):CL_TYPE_ANY:CL_TYPE_PYTHON_COMPILED:200",
    "0:0:580c0d0a:Python 3.2 byte-compiled (.pyc):CL_TYPE_ANY:CL_TYPE_PYTHON_COMPILED:200",
    "0:0:620c0d0a:Python 3.2 byte-compiled (.pyc):CL_TYPE_ANY:CL_TYPE_PYTHON_COMPILED:200",
    "0:0:6c0c0d0a:Python 3.2 byte-compiled (.pyc):CL_TYPE_ANY:CL_TYPE_PYTHON_COMPILED:200",
    "0:0:760c0d0a:Python 3.3 byte-compiled (.pyc):CL_TYPE_ANY:CL_TYPE_PYTHON_COMPILED:200",
    "0:0:800c0d0a:Python 3.3 byte-compiled (.pyc):CL_TYPE_ANY:CL_TYPE_PYTHON_COMPILED:200",
    "0:0:8a0c0d0a:Python 3.3 byte-compiled (.pyc):CL_TYPE_ANY:CL_TYPE_PYTHON_COMPILED:200",
    "0:0:940c0d0a:Python 3.3 byte-compiled (.pyc):CL_TYPE_ANY:CL_TYPE_PYTHON_COMPILED:200",
    "0:0:9e0c0d0a:Python 3.3 byte-compiled (.pyc):CL_TYPE_ANY:CL_TYPE_PYTHON_COMPILED:200",
    "0:0:b20c0d0a:Python 3.4 byte-compiled (.pyc):CL_TYPE_ANY:CL_TYPE_PYTHON_COMPILED:200",
    "0:0:bc0c0d0a:Python 3.4 byte-compiled (.pyc):CL_TYPE_ANY:CL_TYPE_PYTHON_COMPILED:200",
    "0:0:c60c0d0a:Python 3.4 byte-compiled (.pyc):CL_TYPE_ANY:CL_TYPE_PYTHON_COMPILED:200",
    "0:0:d00c0d0a:Python 3.4 byte-compiled (.pyc):CL_TYPE_ANY:CL_TYPE_PYTHON_COMPILED:200",
    "0:0:da0c0d0a:Python 3.4 byte-compiled (.pyc):CL_TYPE_ANY:CL_TYPE_PYTHON_COMPILED:200",
    "0:0:e40c0d0a:Python 3.4 byte-compiled (.pyc):CL_TYPE_ANY:CL_TYPE_PYTHON_COMPILED:200",
    "0:0:ee0c0d0a:Python 3.4 byte-compiled (.pyc):CL_TYPE_ANY:CL_TYPE_PYTHON_COMPILED:200",
    "0:0:f80c0d0a:Python 3.5.1- byte-compiled (.pyc):CL_TYPE_ANY:CL_TYPE_PYTHON_COMPILED:200",
    "0:0:020d0d0a:Python 3.5.1- byte-compiled (.pyc):CL_TYPE_ANY:CL_TYPE_PYTHON_COMPILED:200",
    "0:0:0c0d0d0a:Python 3.5.1- byte-compiled (.pyc):CL_TYPE_ANY:CL_TYPE_PYTHON_COMPILED:200",
    "0:0:160d0d0a:Python 3.5.1- byte-compiled (.pyc):CL_TYPE_ANY:CL_TYPE_PYTHON_COMPILED:200",
    "0:0:170d0d0a:Python 3.5.2+ byte-compiled (.pyc):CL_TYPE_ANY:CL_TYPE_PYTHON_COMPILED:200",
    "0:0:200d0d0a:Python 3.6 byte-compiled (.pyc):CL_TYPE_ANY:CL_TYPE_PYTHON_COMPILED:200",
    "0:0:210d0d0a:Python 3.6 byte-compiled (.pyc):CL_TYPE_ANY:CL_TYPE_PYTHON_COMPILED:200",
    "0:0:2a0d0d0a:Python 3.6 byte-compiled (.pyc):CL_TYPE_ANY:CL_TYPE_PYTHON_COMPILED:200",
    "0:0:2b0d0d0a:Python 3.6 byte-compiled (.pyc):CL_TYPE_ANY:CL_TYPE_PYTHON_COMPILED:200",
    "0:0:2c0d0d0a:Python 3.6 byte-compiled (.pyc):CL_TYPE_ANY:CL_TYPE_PYTHON_COMPILED:200",
    "0:0:2d0d0d0a:Python 3.6 byte-compiled (.pyc):CL_TYPE_ANY:CL_TYPE_PYTHON_COMPILED:200",
    "0:0:2f0d0d0a:Python 3.6 byte-compiled (.pyc):CL_TYPE_ANY:CL_TYPE_PYTHON_COMPILED:200",
    "0:0:300d0d0a:Python 3.6 byte-compiled (.pyc):CL_TYPE_ANY:CL_TYPE_PYTHON_COMPILED:200",
    "0:0:310d0d0a:Python 3.6 byte-compiled (.pyc):CL_TYPE_ANY:CL_TYPE_PYTHON_COMPILED:200",
    "0:0:320d0d0a:Python 3.6 byte-compiled (.pyc):CL_TYPE_ANY:CL_TYPE_PYTHON_COMPILED:200",
    "0:0:330d0d0a:Python 3.6 byte-compiled (.pyc):CL_TYPE_ANY:CL_TYPE_PYTHON_COMPILED:200",
    "0:0:3e0d0d0a:Python 3.7 byte-compiled (.pyc):CL_TYPE_ANY:CL_TYPE_PYTHON_COMPILED:200",
    "0:0:3f0d0d0a:Python 3.7 byte-compiled (.pyc):CL_TYPE_ANY:CL_TYPE_PYTHON_COMPILED:200",
    "0:0:f00d0d0a:PyPy 3.7 byte-compiled (.pyc):CL_TYPE_ANY:CL_TYPE_PYTHON_COMPILED:200",
    "0:0:00010d0a:PyPy 3.8 byte-compiled (.pyc):CL_TYPE_ANY:CL_TYPE_PYTHON_COMPILED:200",
    "0:0:50010d0a:PyPy 3.9 byte-compiled (.pyc):CL_TYPE_ANY:CL_TYPE_PYTHON_COMPILED:200",
    "1:0:??0d0d0a:Python 3.7 or newer byte-compiled (.pyc):CL_TYPE_ANY:CL_TYPE_PYTHON_COMPILED:200",
    "1:2:2d6c68(30|31|32|33|34|35|36|37|64|78)2d:LHA or LZH archive:CL_TYPE_ANY:CL_TYPE_LHA_LZH:210",
    "1:2:2d6c7a(73|34|35)2d:LHA archive using .LZS extension:CL_TYPE_ANY:CL_TYPE_LHA_LZH:210",
    "1:2:2d706d302d:LHA archive using PMarc (.PMA) extension:CL_TYPE_ANY:CL_TYPE_LHA_LZH:210",
    "0:0:414c5a01:ALZ:CL_TYPE_ANY:CL_TYPE_ALZ:210",
];

/// One type-0 line: `magic` at `offset`.
struct Magic {
    offset: usize,
    magic: Vec<u8>,
    ty: &'static str,
}

struct Table {
    /// In the order ClamAV tries them (last loaded first).
    magics: Vec<Magic>,
    /// Type-1 patterns; name id `i` recognises `pattern_types[i]`.
    patterns: NdbSet,
    pattern_types: Vec<&'static str>,
}

fn level_ok(min: Option<&str>, max: Option<&str>) -> bool {
    let lvl = |s: Option<&str>| s.map(|v| v.parse::<u32>().unwrap_or(0));
    lvl(min).is_none_or(|m| m <= FLEVEL) && lvl(max).is_none_or(|m| m >= FLEVEL)
}

fn table() -> &'static Table {
    static T: OnceLock<Table> = OnceLock::new();
    T.get_or_init(|| {
        let mut magics = Vec::new();
        let mut lines = Vec::new();
        let mut pattern_types = Vec::new();
        for l in FTYPES {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() < 6 || !level_ok(f.get(6).copied(), f.get(7).copied()) {
                continue;
            }
            match f[0] {
                "0" => {
                    if let (Ok(offset), Ok(magic)) = (f[1].parse::<usize>(), hex::decode(f[2])) {
                        magics.push(Magic {
                            offset,
                            magic,
                            ty: f[5],
                        });
                    }
                }
                _ => {
                    lines.push(format!("{}:0:{}:{}", pattern_types.len(), f[1], f[2]));
                    pattern_types.push(f[5]);
                }
            }
        }
        magics.reverse();
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        let (patterns, errs) = set_from_lines(&refs);
        for (i, e) in errs {
            tracing::debug!(pattern = %lines[i], error = %e, "file-type pattern not loaded");
        }
        Table {
            magics,
            patterns,
            pattern_types,
        }
    })
}

/// Number of the built-in type patterns that could not be compiled (they
/// are all expected to load; a test guards it).
pub fn unloaded_patterns() -> usize {
    let t = table();
    t.pattern_types.len() - t.patterns.len()
}

/// Priority of a recognised type: its place from `CL_TYPE_TEXT_ASCII` on
/// (0 for that and for a name not in the list).
fn rank(ty: &str) -> usize {
    CL_TYPES
        .iter()
        .position(|&t| t == ty)
        .map_or(0, |p| p.saturating_sub(1))
}

fn kind_of(ty: &'static str) -> FileKind {
    match ty {
        "CL_TYPE_TEXT_ASCII" => FileKind::Text(TextType::Ascii),
        "CL_TYPE_TEXT_UTF8" => FileKind::Text(TextType::Utf8),
        "CL_TYPE_TEXT_UTF16LE" => FileKind::Text(TextType::Utf16Le),
        "CL_TYPE_TEXT_UTF16BE" => FileKind::Text(TextType::Utf16Be),
        "CL_TYPE_BINARY_DATA" => FileKind::Binary,
        "CL_TYPE_HTML" => FileKind::Html,
        "CL_TYPE_MAIL" => FileKind::Mail,
        other => FileKind::Other(other),
    }
}

/// The highest-priority type recognised by the type-1 patterns in `data`
/// (ClamAV's on-the-fly recognition), if any.
pub fn recognise(data: &[u8]) -> Option<&'static str> {
    let t = table();
    let found = t.patterns.scan_slice(data, None).ok()?;
    found
        .into_iter()
        .filter_map(|i| t.pattern_types.get(i as usize).copied())
        .max_by_key(|ty| rank(ty))
}

/// The HTML markers of the table's `*`-offset pattern lines, all literals.
const HTML_LITERALS: &[&[u8]] = &[
    b"<HEAD>", b"<HTML>", b"<Head>", b"<Html>", b"<IFRAME", b"<IMG", b"<Img", b"<OBJECT",
    b"<Object", b"<SCRIPT", b"<Script", b"<TABLE", b"<head>", b"<html>", b"<iframe", b"<img",
    b"<object", b"<script", b"<table",
];

/// Whether `data` holds one of the file-type table's HTML markers anywhere
/// (what ClamAV's raw scan of a text file recognises as HTML): one of
/// [`HTML_LITERALS`], or `<A ` / `<a ` followed anywhere later by `href`
/// with `h`/`r` of either case and `EF` or `ef`. Equivalent to running the
/// table's HTML pattern lines (a test checks it), in one linear pass.
pub fn has_html_marker(data: &[u8]) -> bool {
    let mut first_anchor: Option<usize> = None;
    for i in memchr::memchr_iter(b'<', data) {
        let rest = &data[i..];
        if HTML_LITERALS.iter().any(|l| rest.starts_with(l)) {
            return true;
        }
        if first_anchor.is_none() && (rest.starts_with(b"<A ") || rest.starts_with(b"<a ")) {
            first_anchor = Some(i + 3);
        }
    }
    let Some(from) = first_anchor else {
        return false;
    };
    data[from.min(data.len())..].windows(4).any(|w| {
        matches!(w[0], b'h' | b'H')
            && matches!(w[1], b'r' | b'R')
            && (&w[2..] == b"EF" || &w[2..] == b"ef")
    })
}

/// Classify an object from its first bytes (`head`, up to [`MAGIC_HEAD`]
/// are used).
pub fn classify(head: &[u8]) -> FileKind {
    let head = &head[..head.len().min(MAGIC_HEAD)];
    let t = table();
    for m in &t.magics {
        if head.get(m.offset..m.offset + m.magic.len()) == Some(m.magic.as_slice()) {
            return kind_of(m.ty);
        }
    }
    let base = match text_type(head) {
        Some(tt) => FileKind::Text(tt),
        None => FileKind::Binary,
    };
    match recognise(head) {
        Some(ty) if !SFX.contains(&ty) => kind_of(ty),
        _ => base,
    }
}

/// Character classes of textdet.c: 0 never in text, 1 plain ASCII,
/// 2 ISO-8859, 3 non-ISO extended ASCII.
const TEXT_CHARS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = match i {
            7..=10 | 12 | 13 | 27 => 1,
            0x20..=0x7e => 1,
            0x85 => 1,
            0x80..=0x9f => 3,
            0xa0..=0xff => 2,
            _ => 0,
        };
        i += 1;
    }
    t
};

fn is_ascii(buf: &[u8]) -> bool {
    buf.iter().all(|&b| TEXT_CHARS[b as usize] != 0)
}

fn is_utf8(buf: &[u8]) -> bool {
    let mut gotone = false;
    let mut i = 0;
    while i < buf.len() {
        let b = buf[i];
        if b & 0x80 == 0 {
            if TEXT_CHARS[b as usize] != 1 {
                return false;
            }
        } else if b & 0x40 == 0 {
            return false;
        } else {
            let following = match b {
                _ if b & 0x20 == 0 => 1,
                _ if b & 0x10 == 0 => 2,
                _ if b & 0x08 == 0 => 3,
                _ if b & 0x04 == 0 => 4,
                _ if b & 0x02 == 0 => 5,
                _ => return false,
            };
            for _ in 0..following {
                i += 1;
                let Some(&c) = buf.get(i) else {
                    return gotone;
                };
                if c & 0x80 == 0 || c & 0x40 != 0 {
                    return false;
                }
            }
            gotone = true;
        }
        i += 1;
    }
    gotone
}

/// 1: UTF-16LE, 2: UTF-16BE.
fn is_utf16(buf: &[u8]) -> Option<TextType> {
    if buf.len() < 2 {
        return None;
    }
    let (be, nobom) = match (buf[0], buf[1]) {
        (0xff, 0xfe) => (false, false),
        (0xfe, 0xff) => (true, false),
        _ => (true, true),
    };
    let mut bad = 0usize;
    let mut i = 2;
    while i + 1 < buf.len() {
        let c = if be {
            u32::from(buf[i + 1]) + 256 * u32::from(buf[i])
        } else {
            u32::from(buf[i]) + 256 * u32::from(buf[i + 1])
        };
        if c == 0xfffe {
            return None;
        }
        if c < 128 && TEXT_CHARS[c as usize] != 1 {
            if nobom {
                return None;
            }
            bad += 1;
        }
        i += 2;
    }
    if !nobom && bad >= buf.len() / 2 {
        return None;
    }
    Some(if be {
        TextType::Utf16Be
    } else {
        TextType::Utf16Le
    })
}

/// ClamAV's `cli_texttype`: the text class of `buf`, `None` for binary data.
pub fn text_type(buf: &[u8]) -> Option<TextType> {
    if is_ascii(buf) {
        Some(TextType::Ascii)
    } else if is_utf8(buf) {
        Some(TextType::Utf8)
    } else {
        is_utf16(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_type_pattern_loads() {
        assert_eq!(unloaded_patterns(), 0);
        // `clamscan --debug`: "Loaded 255 filetype definitions", of which
        // two are partition types (kind 4, not used for files).
        let t = table();
        assert_eq!(t.magics.len() + t.pattern_types.len() + 2, 255);
    }

    /// Every `*`-offset HTML line of the table, as body signatures.
    fn html_pattern_set() -> NdbSet {
        let lines: Vec<String> = FTYPES
            .iter()
            .filter(|l| l.starts_with("1:*:") && l.ends_with(":CL_TYPE_HTML"))
            .enumerate()
            .map(|(i, l)| format!("{i}:0:*:{}", l.split(':').nth(2).unwrap()))
            .collect();
        assert_eq!(lines.len(), 23);
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        let (set, errs) = set_from_lines(&refs);
        assert!(errs.is_empty());
        set
    }

    #[test]
    fn html_marker_scan_equals_the_table_patterns() {
        let set = html_pattern_set();
        let pieces: &[&[u8]] = &[
            b"<a ", b"<A ", b"href", b"HREF", b"hrEF", b"Href", b"hReF", b"<img", b"<IMG", b"<Img",
            b"<iMg", b"<html>", b"<HTML", b"<Html>", b"<table", b"<TABLE", b"<Table", b"<script",
            b"<SCRIPT", b"<Script", b"<sCRIPT", b"<head>", b"<HEAD>", b"<iframe", b"<IFRAME",
            b"<object", b"<OBJECT", b"<Object", b"x", b" ", b"<", b"<a", b"a ", b"\n",
        ];
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut seen = [0usize; 2];
        for _ in 0..4000 {
            let mut d = Vec::new();
            for _ in 0..(x % 7) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                d.extend_from_slice(pieces[(x >> 20) as usize % pieces.len()]);
            }
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let want = !set.scan_slice(&d, None).unwrap().is_empty();
            assert_eq!(
                has_html_marker(&d),
                want,
                "{:?}",
                String::from_utf8_lossy(&d)
            );
            seen[usize::from(want)] += 1;
        }
        assert!(seen[0] > 500 && seen[1] > 500, "{seen:?}");
    }

    #[test]
    fn text_classes_follow_textdet() {
        assert_eq!(text_type(b"plain text\r\n\tok"), Some(TextType::Ascii));
        // ISO-8859 and extended bytes are still "ASCII" text to ClamAV.
        assert_eq!(text_type("caf\u{e9}".as_bytes()), Some(TextType::Ascii));
        assert_eq!(text_type(b"a\x00\x00\x02"), None);
        // Without a byte-order mark, any even run of code units >= 128 is UTF-16.
        assert_eq!(text_type(b"\x00\x01\x02"), Some(TextType::Utf16Be));
        assert_eq!(text_type(b"\xff\xfea\x00b\x00"), Some(TextType::Utf16Le));
        assert_eq!(text_type(b"\x7f\x00\x00\x02"), None);
    }

    #[test]
    fn magic_and_patterns_decide_the_kind() {
        assert_eq!(classify(b"hello world\n"), FileKind::Text(TextType::Ascii));
        assert_eq!(classify(b"<html><body>x</body></html>"), FileKind::Html);
        assert_eq!(classify(b"x\n<SCRIPT>alert(1)</SCRIPT>"), FileKind::Html);
        // HTML markers are case-sensitive as in the table: mixed case is text.
        assert_eq!(classify(b"<hTmL>x"), FileKind::Text(TextType::Ascii));
        assert_eq!(classify(b"From: a@b\nTo: c\n\nbody"), FileKind::Mail);
        assert_eq!(classify(b"MZ\x90\x00"), FileKind::Other("CL_TYPE_MSEXE"));
        assert_eq!(classify(b"\x7fELF\x02"), FileKind::Other("CL_TYPE_ELF"));
        assert_eq!(classify(b"\x00\x01<img src=x>"), FileKind::Html);
        assert_eq!(classify(b"\x00\x01\x00\x02"), FileKind::Binary);
        // Mail recognised by header pairs further in.
        let m = b"X-Foo: 1\nReceived: by x\nContent-Type: text/plain\n\nhi";
        assert_eq!(classify(m), FileKind::Mail);
    }
}
