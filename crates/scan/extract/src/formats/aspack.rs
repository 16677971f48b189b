//! ASPack-packed executables (versions 2.12 to 2.42), unpacked as ClamAV
//! unpacks them (`libclamav/aspack.c` and the ASPack part of `cli_scanpe`):
//! the sections are laid out at their addresses, each compressed block the
//! stub lists is decoded in place (ASPack's LZ77 with Huffman-coded
//! symbols whose tables the stream carries), the first block's call and
//! jump targets are turned back from ASPack's filter, and the image is
//! given headers again with [`rebuild`](super::rebuildpe::rebuild).
//!
//! Every table index and copy is checked; a stream that does not decode
//! leaves the file scanned as it is, as in ClamAV.

use super::rebuildpe::rebuild;
use moat_exe::{ExeInfo, Section};

/// The three layouts of the stub ClamAV knows (2.12, 2.12–2.42, 2.42).
#[derive(Debug, Clone, Copy)]
struct Version {
    /// Where the `push OEP; ret` is in the entry point's code.
    epbuff: usize,
    /// How far past the entry point the file must go.
    ep_offset: u64,
    blocks: usize,
    init_mlt: usize,
    comp_block: usize,
    wrkbuf: usize,
    oep: usize,
    /// Bytes per entry of the block list.
    block_entry: usize,
}

const VERSIONS: [Version; 3] = [
    Version {
        epbuff: 0x3b9,
        ep_offset: 58 + 0x70e,
        blocks: 0x57c,
        init_mlt: 0x70e,
        comp_block: 0x6d6,
        wrkbuf: 0x148,
        oep: 0x39b,
        block_entry: 8,
    },
    Version {
        epbuff: 0x41f,
        ep_offset: 58 + 0x76a,
        blocks: 0x5d8,
        init_mlt: 0x76a,
        comp_block: 0x732,
        wrkbuf: 0x13a,
        oep: 0x401,
        block_entry: 12,
    },
    Version {
        epbuff: 0x42b,
        ep_offset: 58 + 0x776,
        blocks: 0x5e4,
        init_mlt: 0x776,
        comp_block: 0x73e,
        wrkbuf: 0x148,
        oep: 0x40d,
        block_entry: 12,
    },
];

/// The stub's version, from its entry point code (`cli_scanpe`).
fn version(info: &ExeInfo, fsize: u64, epbuff: &[u8], epsize: usize) -> Option<Version> {
    let ep = info.ep?;
    if !epbuff.starts_with(b"\x60\xe8\x03\x00\x00\x00\xe9\xeb")
        || !VERSIONS.iter().any(|v| ep + v.ep_offset < fsize)
        || epsize < 0x3bf
    {
        return None;
    }
    VERSIONS
        .into_iter()
        .find(|v| epbuff.get(v.epbuff..v.epbuff + 6) == Some(b"\x68\x00\x00\x00\x00\xc3"))
}

/// Whether the entry point code is ASPack's.
pub(crate) fn recognised(info: &ExeInfo, fsize: u64, epbuff: &[u8], epsize: usize) -> bool {
    version(info, fsize, epbuff, epsize).is_some()
}

/// The size of the image ClamAV lays the sections out in.
pub(crate) fn image_size(info: &ExeInfo) -> u64 {
    info.sections
        .iter()
        .map(|s| u64::from(s.rva.wrapping_add(s.vsz)))
        .max()
        .unwrap_or(0)
}

/// Unpack: `image` holds the sections at their addresses (as `cli_scanpe`
/// lays them out). The rebuilt program, or the image as it is when the
/// rebuild fails (as ClamAV writes it); `None` when ASPack's data does not
/// decode.
pub(crate) fn unpack(
    info: &ExeInfo,
    fsize: u64,
    epbuff: &[u8],
    epsize: usize,
    mut image: Vec<u8>,
    max: u64,
) -> Option<Vec<u8>> {
    let v = version(info, fsize, epbuff, epsize)?;
    let ep = info.vep.wrapping_sub(1) as usize;
    let size = image.len();
    let at = |off: usize| ep.checked_add(off);
    let mut s = Stream::new();
    let mut j = 0u32;
    for i in 0..58 {
        s.init_array[i] = j;
        if let Some(&b) = at(i + v.init_mlt).and_then(|o| image.get(o)) {
            j = j.wrapping_add(1u32.wrapping_shl(u32::from(b)));
        }
    }
    // The stub's constants the decoder reads (`stuff`).
    let mut stuff = [0u8; 0x72];
    stuff.copy_from_slice(image.get(at(v.comp_block)?..at(v.comp_block)? + 0x72)?);
    let mut blocks = at(v.blocks)?;
    let mut block_rva: u32 = 1;
    let mut i = 0usize;
    let rd = |img: &[u8], o: usize| moat_exe::le32(img, o);
    loop {
        if blocks.checked_add(8).is_none_or(|e| e > size) {
            break;
        }
        block_rva = rd(&image, blocks);
        if block_rva == 0 {
            break;
        }
        let block_size = rd(&image, blocks + 4);
        let (start, len) = (block_rva as usize, block_size as usize);
        if len == 0 || start.checked_add(len).is_none_or(|e| e > size) {
            break;
        }
        let mut input = image[start..start + len].to_vec();
        input.resize(len + 0x10e, 0);
        s.input = input;
        s.pos = 0;
        if !s.decomp_block(&stuff, &mut image[start..start + len]) {
            tracing::debug!(block_rva, "aspack: block does not decode");
            break;
        }
        if i == 0 && len > 7 {
            while i < len - 6 {
                let c = image[start + i];
                // The filter's marker byte, read where the stub keeps it.
                let marker = at(v.wrkbuf).and_then(|o| image.get(o)).copied();
                if (c == 0xe8 || c == 0xe9) && Some(image[start + i + 1]) == marker {
                    let w = start + i + 1;
                    let target = (rd(&image, w) & 0xffff_ff00).rotate_left(0x18);
                    image[w..w + 4].copy_from_slice(&target.wrapping_sub(i as u32).to_le_bytes());
                    i += 4;
                }
                i += 1;
            }
        }
        blocks += v.block_entry;
        if v.block_entry == 12 {
            while rd(&image, blocks + 4).wrapping_add(0x10e) == 0 {
                blocks += 12;
            }
        }
    }
    if block_rva != 0 {
        return None;
    }
    let mut n = info.sections.len();
    if n > 2 && ep == info.sections[n - 2].rva as usize && info.sections[n - 1].rsz == 0 {
        n -= 2;
    }
    let outsects: Vec<Section> = info.sections[..n]
        .iter()
        .map(|s| Section {
            raw: s.rva,
            rsz: s.vsz,
            ..*s
        })
        .collect();
    let oep = at(v.oep).map_or(0, |o| rd(&image, o));
    Some(rebuild(&image, &outsects, info.image_base32, oep, (0, 0), 0, max).unwrap_or(image))
}

/// One Huffman table: symbols by code order, and the first-byte lookup
/// of short codes (`DICT_HELPER`).
struct Table {
    starts: Vec<u32>,
    ends: [u8; 0x100],
}

/// The decoder's state (`struct ASPK`); the tables persist from block to
/// block, as in the stub.
struct Stream {
    bitpos: u32,
    hash: u32,
    init_array: [u32; 58],
    tables: [Table; 4],
    input: Vec<u8>,
    pos: usize,
    decrypt_dict: [u8; 757],
    d3: [[u32; 24]; 4],
    d4: [[u32; 24]; 4],
    dict_ok: bool,
    array1: [u8; 19],
    array2: [u8; 758],
}

impl Stream {
    fn new() -> Stream {
        let table = |n: usize| Table {
            starts: vec![0; n],
            ends: [0; 0x100],
        };
        Stream {
            bitpos: 0,
            hash: 0x10000,
            init_array: [0; 58],
            tables: [table(721), table(28), table(8), table(19)],
            input: Vec::new(),
            pos: 0,
            decrypt_dict: [0; 757],
            d3: [[0; 24]; 4],
            d4: [[0; 24]; 4],
            dict_ok: false,
            array1: [0; 19],
            array2: [0; 758],
        }
    }

    fn fill(&mut self) -> Option<()> {
        while self.bitpos >= 8 {
            let b = *self.input.get(self.pos)?;
            self.hash = self.hash << 8 | u32::from(b);
            self.pos += 1;
            self.bitpos -= 8;
        }
        Some(())
    }

    /// The next 24 bits of the stream, left-aligned as the stub keeps them.
    fn peek24(&mut self) -> Option<u32> {
        self.fill()?;
        Some((self.hash >> (8 - self.bitpos)) & 0xff_ffff)
    }

    /// `num` (<= 24) bits.
    fn bits(&mut self, num: u32) -> Option<u32> {
        // More than 24 is a shift ClamAV leaves undefined: not ASPack data.
        let shift = 24u32.checked_sub(num)?;
        let v = self.peek24()? >> shift;
        self.bitpos += num;
        Some(v)
    }

    /// `getbits`, whose result ClamAV keeps in a byte.
    fn getbits(&mut self, num: u32) -> Option<u32> {
        Some(self.bits(num)? & 0xff)
    }

    fn getdec(&mut self, which: usize) -> Option<u32> {
        let ret = self.peek24()? & 0xff_fe00;
        let d3 = &self.d3[which];
        let pos = if ret < d3[8] {
            let p = self.tables[which].ends[(ret >> 16) as usize];
            if p == 0 || p >= 24 {
                return None;
            }
            p as usize
        } else {
            (9..15).find(|&p| ret < d3[p]).unwrap_or(15)
        };
        self.bitpos += pos as u32;
        let idx = (ret.wrapping_sub(d3[pos - 1]) >> (24 - pos)).wrapping_add(self.d4[which][pos]);
        self.tables[which].starts.get(idx as usize).copied()
    }

    /// `build_decrypt_array`: the table `which` from its code lengths.
    fn build_table(&mut self, lengths: &[u8], which: usize) -> Option<()> {
        let size = self.tables[which].starts.len();
        let (mut bus, mut dict) = ([0u32; 18], [0u32; 18]);
        for &l in &lengths[..size] {
            *bus.get_mut(usize::from(l))? += 1;
        }
        let (d3, d4) = (&mut self.d3[which], &mut self.d4[which]);
        d3[0] = 0;
        d4[0] = 0;
        let (mut sum, mut endoff) = (0u32, 0u32);
        for (i, counter) in (9..=23u32).rev().enumerate() {
            sum = sum.wrapping_add(bus[i + 1] << counter);
            if sum > 0x100_0000 {
                return None;
            }
            d3[i + 1] = sum;
            d4[i + 1] = bus[i].wrapping_add(d4[i]);
            dict[i + 1] = d4[i + 1];
            if counter >= 0x10 {
                let old = endoff;
                endoff = d3[i + 1] >> 16;
                if endoff < old {
                    return None;
                }
                if endoff > old {
                    let ends = &mut self.tables[which].ends;
                    ends.get_mut(old as usize..endoff as usize)?
                        .fill(i as u8 + 1);
                }
            }
        }
        if sum != 0x100_0000 {
            return None;
        }
        let starts = &mut self.tables[which].starts;
        for (i, &l) in lengths[..size].iter().enumerate() {
            if l != 0 {
                let slot = dict.get_mut(usize::from(l))?;
                *starts.get_mut(*slot as usize)? = i as u32;
                *slot += 1;
            }
        }
        Some(())
    }

    /// `build_decrypt_dictionaries`: read the code lengths of all tables.
    fn build_dictionaries(&mut self) -> Option<()> {
        let keep = self.getbits(1);
        if keep != Some(1) {
            self.decrypt_dict = [0; 757];
        }
        keep?;
        for k in 0..19 {
            self.array1[k] = self.getbits(4)? as u8;
        }
        let a1 = self.array1;
        self.build_table(&a1, 3)?;
        let mut counter = 0usize;
        while counter < 757 {
            let ret = self.getdec(3)?;
            if ret >= 16 {
                let (mut n, copy) = match ret {
                    16 => (3 + self.getbits(2)?, true),
                    17 => (3 + self.getbits(3)?, false),
                    _ => (11 + self.getbits(7)?, false),
                };
                while n > 0 && counter < 757 {
                    self.array2[1 + counter] = if copy { self.array2[counter] } else { 0 };
                    counter += 1;
                    n -= 1;
                }
            } else {
                self.array2[1 + counter] =
                    (self.decrypt_dict[counter].wrapping_add(ret as u8)) & 0xf;
                counter += 1;
            }
        }
        let a2 = self.array2;
        self.build_table(&a2[1..], 0)?;
        self.build_table(&a2[722..], 1)?;
        self.build_table(&a2[750..], 2)?;
        self.dict_ok = a2[750..758].iter().any(|&b| b != 3);
        self.decrypt_dict.copy_from_slice(&a2[1..758]);
        Some(())
    }

    /// `decrypt`: decode `output.len()` bytes.
    fn decrypt(&mut self, stuff: &[u8; 0x72], output: &mut [u8]) -> Option<()> {
        let size = output.len();
        let mut hist = [0u32; 4];
        let mut counter = 0usize;
        while counter < size {
            let sym = self.getdec(0)?;
            if sym < 256 {
                output[counter] = sym as u8;
                counter += 1;
                continue;
            }
            if sym >= 720 {
                self.build_dictionaries()?;
                continue;
            }
            let mut backbytes = (sym - 256) >> 3;
            let mut backsize = ((sym - 256) & 7) + 2;
            if backsize - 2 == 7 {
                let g = self.getdec(1)?;
                if g >= 0x56 {
                    return None;
                }
                let hlp = u32::from(stuff[g as usize + 0x1c]);
                let extra = self.bits(hlp)?;
                backsize = backsize
                    .wrapping_add(u32::from(stuff[g as usize]))
                    .wrapping_add(extra);
            }
            let mut useold = self.init_array[backbytes as usize];
            let g = u32::from(stuff[backbytes as usize + 0x38]);
            if !self.dict_ok || g < 3 {
                useold = useold.wrapping_add(self.bits(g)?);
            } else {
                let hi = self.bits(g - 3)?;
                useold = useold.wrapping_add(hi.wrapping_mul(8));
                useold = useold.wrapping_add(self.getdec(2)?);
            }
            if useold < 3 {
                backbytes = hist[useold as usize];
                if useold != 0 {
                    hist[useold as usize] = hist[0];
                    hist[0] = backbytes;
                }
            } else {
                hist[2] = hist[1];
                hist[1] = hist[0];
                backbytes = useold - 3;
                hist[0] = backbytes;
            }
            let back = backbytes.wrapping_add(1) as usize;
            let len = backsize as usize;
            if back == 0 || back > counter || len > size - counter {
                return None;
            }
            for _ in 0..len {
                output[counter] = output[counter - back];
                counter += 1;
            }
        }
        Some(())
    }

    fn decomp_block(&mut self, stuff: &[u8; 0x72], output: &mut [u8]) -> bool {
        self.d3 = [[0; 24]; 4];
        self.d4 = [[0; 24]; 4];
        self.decrypt_dict = [0; 757];
        self.bitpos = 0x20;
        self.build_dictionaries().is_some() && self.decrypt(stuff, output).is_some()
    }
}
