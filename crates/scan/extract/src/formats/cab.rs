//! Microsoft Cabinet files (`MSCF`): Windows installers and driver and
//! update packages carry them, and so do mail attachments. Every file is a
//! member. Files share the compressed stream of their folder, so each
//! folder is decompressed once, front to back, and its files are cut from it
//! in the order of their offsets (reading each file from the folder's start
//! would make a cabinet of many files quadratic). Stored, MSZIP (deflate
//! blocks that share a 32 KiB history) and LZX (the `lzxd` crate, run inside
//! `catch_unwind`) folders are read; Quantum is `unsupported`, and so is a
//! file continued from or into another cabinet of a set (its data is not all
//! here). Block checksums are not checked, as ClamAV does not.

use super::{Cut, Framed, Frames, INPUT_BUFFER, cut_members, read_full, skip};
use crate::WalkError;
use crate::walk::{Step, Walker};
use moat_core::Blob;
use std::io::{self, BufReader, Read, Seek, SeekFrom};

const HEADER: usize = 36;
const FLAG_PREV: u16 = 1;
const FLAG_NEXT: u16 = 2;
const FLAG_RESERVE: u16 = 4;
/// Longest name (and set-member string) read; longer ones are cut.
const MAX_NAME: usize = 256;
/// MSZIP's history and largest block.
const MSZIP_WINDOW: usize = 32 * 1024;
/// Folder indexes that mean "continued from/to another cabinet".
const CONTINUED: u16 = 0xfffd;

/// The signature, reserved zeros and format version 1.3.
pub(crate) fn is_cab(head: &[u8]) -> bool {
    head.len() >= HEADER
        && head.starts_with(b"MSCF")
        && head[4..8] == [0; 4]
        && head[24] == 3
        && head[25] == 1
}

struct Folder {
    data_at: u64,
    blocks: u16,
    compression: u16,
}

struct File {
    size: u32,
    offset: u32,
    folder: u16,
    name: String,
}

/// The folders and files of a cabinet, and the per-block reserve size.
struct Directory {
    folders: Vec<Folder>,
    files: Vec<File>,
    data_reserve: u8,
}

fn u16_at(b: &[u8], i: usize) -> u16 {
    u16::from_le_bytes([b[i], b[i + 1]])
}

fn u32_at(b: &[u8], i: usize) -> u32 {
    u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}

/// A NUL-terminated string of at most [`MAX_NAME`] bytes kept (the rest of a
/// longer one is skipped).
fn c_string(r: &mut impl Read) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut b = [0u8; 1];
    loop {
        if read_full(r, &mut b)? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        if b[0] == 0 {
            return Ok(out);
        }
        if out.len() < MAX_NAME {
            out.push(b[0]);
        }
    }
}

fn directory(blob: &Blob) -> io::Result<Directory> {
    let mut r = BufReader::new(blob.reader());
    let mut h = [0u8; HEADER];
    r.read_exact(&mut h)?;
    let files_at = u32_at(&h, 16);
    let (n_folders, n_files, flags) = (u16_at(&h, 26), u16_at(&h, 28), u16_at(&h, 30));
    let (mut folder_reserve, mut data_reserve) = (0u8, 0u8);
    if flags & FLAG_RESERVE != 0 {
        let mut res = [0u8; 4];
        r.read_exact(&mut res)?;
        folder_reserve = res[2];
        data_reserve = res[3];
        skip(&mut r, u64::from(u16_at(&res, 0)))?;
    }
    // Names of the previous and next cabinets of a set, and their disks.
    for flag in [FLAG_PREV, FLAG_NEXT] {
        if flags & flag != 0 {
            c_string(&mut r)?;
            c_string(&mut r)?;
        }
    }
    let mut folders = Vec::with_capacity(usize::from(n_folders));
    for _ in 0..n_folders {
        let mut f = [0u8; 8];
        r.read_exact(&mut f)?;
        skip(&mut r, u64::from(folder_reserve))?;
        folders.push(Folder {
            data_at: u64::from(u32_at(&f, 0)),
            blocks: u16_at(&f, 4),
            compression: u16_at(&f, 6),
        });
    }
    r.seek(SeekFrom::Start(u64::from(files_at)))?;
    let mut files = Vec::with_capacity(usize::from(n_files));
    for _ in 0..n_files {
        let mut f = [0u8; 16];
        r.read_exact(&mut f)?;
        let name = c_string(&mut r)?;
        files.push(File {
            size: u32_at(&f, 0),
            offset: u32_at(&f, 4),
            folder: u16_at(&f, 8),
            name: String::from_utf8_lossy(&name).into_owned(),
        });
    }
    Ok(Directory {
        folders,
        files,
        data_reserve,
    })
}

pub(crate) fn walk<E>(
    w: &mut Walker<'_, E>,
    blob: &Blob,
    location: &str,
    depth: u32,
) -> Result<(), WalkError<E>> {
    let dir = match directory(blob) {
        Ok(d) => d,
        Err(e) => {
            w.corrupt(location, format!("cab directory: {e}"));
            return Ok(());
        }
    };
    if dir.files.iter().any(|f| f.folder >= CONTINUED) {
        w.problem(crate::Problem::Unsupported {
            location: location.to_string(),
            what: "cab file continued in another cabinet".into(),
        });
    }
    if let Some(f) = dir
        .files
        .iter()
        .find(|f| f.folder < CONTINUED && usize::from(f.folder) >= dir.folders.len())
    {
        w.corrupt(
            location,
            format!("cab file {} names a missing folder", f.name),
        );
    }
    // Bytes decompressed only to be skipped (gaps and overlaps between
    // files) count against the expanded-bytes limit too.
    let mut skipped = 0u64;
    for (index, folder) in dir.folders.iter().enumerate() {
        let mut files: Vec<&File> = dir
            .files
            .iter()
            .filter(|f| usize::from(f.folder) == index)
            .collect();
        if files.is_empty() {
            continue;
        }
        files.sort_by_key(|f| f.offset);
        let Some(codec) = Codec::new(folder.compression) else {
            w.problem(crate::Problem::Unsupported {
                location: location.to_string(),
                what: format!("cab compression {:#06x}", folder.compression),
            });
            continue;
        };
        let cuts: Vec<Cut<'_>> = files
            .iter()
            .map(|f| Cut {
                offset: u64::from(f.offset),
                length: u64::from(f.size),
                name: &f.name,
            })
            .collect();
        // The first reading uses the codec just made; files that overlap
        // read the folder again with a new one.
        let mut codec = Some(codec);
        let open = || {
            let codec = match codec.take() {
                Some(c) => c,
                None => Codec::new(folder.compression).ok_or(io::ErrorKind::Unsupported)?,
            };
            FolderReader::open(blob, folder, dir.data_reserve, codec)
        };
        // The ratio check compares with the whole cabinet: a folder's
        // compressed size is not known before it is read.
        let step = cut_members(w, location, depth, &cuts, &mut skipped, open, |_| {
            blob.len()
        })?;
        if step == Step::Stop {
            return Ok(());
        }
    }
    Ok(())
}

/// A folder's decompressor.
enum Codec {
    Stored,
    MsZip {
        inflate: Box<flate2::Decompress>,
        history: Vec<u8>,
    },
    Lzx(Box<lzxd::Lzxd>),
}

impl Codec {
    /// The codec of `typeCompress`, if it is one read here.
    fn new(compression: u16) -> Option<Codec> {
        Some(match compression & 0x000f {
            0 => Codec::Stored,
            1 => Codec::MsZip {
                inflate: Box::new(flate2::Decompress::new(false)),
                history: Vec::new(),
            },
            // Cabinets use windows of 2^15 to 2^21 bytes.
            3 => Codec::Lzx(super::lzx::decoder(u32::from((compression >> 8) & 0x1f))?),
            _ => return None,
        })
    }

    /// One data block's content into `out`.
    fn decode(&mut self, data: &[u8], size: usize, out: &mut Vec<u8>) -> io::Result<()> {
        let bad = |what: String| io::Error::new(io::ErrorKind::InvalidData, what);
        out.clear();
        match self {
            Codec::Stored => out.extend_from_slice(data),
            Codec::MsZip { inflate, history } => {
                let Some(body) = data.strip_prefix(b"CK") else {
                    return Err(bad("mszip block without its CK signature".into()));
                };
                // Each block is a deflate stream that may refer back into the
                // previous block's output: that output is given to the fresh
                // inflater first, as a stored block whose output is dropped.
                inflate.reset(false);
                if !history.is_empty() {
                    let len = history.len() as u16;
                    let mut primer = Vec::with_capacity(history.len() + 5);
                    primer.push(0);
                    primer.extend_from_slice(&len.to_le_bytes());
                    primer.extend_from_slice(&(!len).to_le_bytes());
                    primer.extend_from_slice(history);
                    let mut sink = Vec::with_capacity(history.len());
                    inflate
                        .decompress_vec(&primer, &mut sink, flate2::FlushDecompress::Sync)
                        .map_err(|e| bad(format!("mszip: {e}")))?;
                }
                out.reserve(MSZIP_WINDOW);
                inflate
                    .decompress_vec(body, out, flate2::FlushDecompress::Finish)
                    .map_err(|e| bad(format!("mszip: {e}")))?;
                history.clear();
                history.extend_from_slice(&out[out.len().saturating_sub(MSZIP_WINDOW)..]);
            }
            Codec::Lzx(lzx) => super::lzx::frame(lzx, data, size, out)?,
        }
        Ok(())
    }
}

/// The uncompressed stream of one folder, block by block.
struct FolderReader {
    input: BufReader<moat_core::blob::BlobReader>,
    blocks_left: u16,
    reserve: u8,
    codec: Codec,
    data: Vec<u8>,
}

impl FolderReader {
    fn open(
        blob: &Blob,
        folder: &Folder,
        reserve: u8,
        codec: Codec,
    ) -> io::Result<Framed<FolderReader>> {
        let mut input = BufReader::with_capacity(INPUT_BUFFER, blob.reader());
        input.seek(SeekFrom::Start(folder.data_at))?;
        Ok(Framed::new(FolderReader {
            input,
            blocks_left: folder.blocks,
            reserve,
            codec,
            data: Vec::new(),
        }))
    }
}

impl Frames for FolderReader {
    /// The next data block.
    fn next_frame(&mut self, out: &mut Vec<u8>) -> io::Result<bool> {
        if self.blocks_left == 0 {
            return Ok(false);
        }
        self.blocks_left -= 1;
        let mut h = [0u8; 8];
        self.input.read_exact(&mut h)?;
        skip(&mut self.input, u64::from(self.reserve))?;
        let (stored, size) = (u16_at(&h, 4), u16_at(&h, 6));
        self.data.resize(usize::from(stored), 0);
        self.input.read_exact(&mut self.data)?;
        self.codec.decode(&self.data, usize::from(size), out)?;
        Ok(true)
    }
}
