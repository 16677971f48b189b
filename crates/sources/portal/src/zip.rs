//! A zip archive written as it streams: entries stored (no compression:
//! the payload is already scanned content, and speed matters more), CRC-32
//! computed on the fly and given in a data descriptor after each entry, ZIP64
//! records only where sizes or offsets need them. Nothing is prebuilt.

/// The per-entry bookkeeping the central directory needs.
struct Entry {
    name: Vec<u8>,
    crc: u32,
    size: u64,
    offset: u64,
    zip64: bool,
}

/// Builds the framing bytes; the caller streams each entry's data between
/// [`ZipWriter::begin`] and [`ZipWriter::end`], feeding it to [`ZipWriter::data`].
pub struct ZipWriter {
    entries: Vec<Entry>,
    offset: u64,
    crc: crc32fast::Hasher,
    size: u64,
}

const DOS_TIME: u16 = 0;
const DOS_DATE: u16 = (1 << 5) | 1; // 1980-01-01
const FLAGS: u16 = 0x0808; // bit 3: data descriptor; bit 11: UTF-8 name

fn u16le(v: &mut Vec<u8>, x: u16) {
    v.extend_from_slice(&x.to_le_bytes());
}
fn u32le(v: &mut Vec<u8>, x: u32) {
    v.extend_from_slice(&x.to_le_bytes());
}
fn u64le(v: &mut Vec<u8>, x: u64) {
    v.extend_from_slice(&x.to_le_bytes());
}

impl Default for ZipWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl ZipWriter {
    pub fn new() -> ZipWriter {
        ZipWriter {
            entries: Vec::new(),
            offset: 0,
            crc: crc32fast::Hasher::new(),
            size: 0,
        }
    }

    /// The local header of an entry of `size` bytes (known in advance).
    pub fn begin(&mut self, name: &str, size: u64) -> Vec<u8> {
        let zip64 = size >= 0xFFFF_FFFF || self.offset >= 0xFFFF_FFFF;
        let mut h = Vec::with_capacity(64 + name.len());
        u32le(&mut h, 0x0403_4b50);
        u16le(&mut h, if zip64 { 45 } else { 20 });
        u16le(&mut h, FLAGS);
        u16le(&mut h, 0); // stored
        u16le(&mut h, DOS_TIME);
        u16le(&mut h, DOS_DATE);
        u32le(&mut h, 0); // crc: in the descriptor
        if zip64 {
            u32le(&mut h, 0xFFFF_FFFF);
            u32le(&mut h, 0xFFFF_FFFF);
        } else {
            u32le(&mut h, 0);
            u32le(&mut h, 0);
        }
        u16le(&mut h, name.len() as u16);
        u16le(&mut h, if zip64 { 20 } else { 0 });
        h.extend_from_slice(name.as_bytes());
        if zip64 {
            u16le(&mut h, 0x0001);
            u16le(&mut h, 16);
            u64le(&mut h, 0);
            u64le(&mut h, 0);
        }
        self.entries.push(Entry {
            name: name.as_bytes().to_vec(),
            crc: 0,
            size,
            offset: self.offset,
            zip64,
        });
        self.offset += h.len() as u64;
        self.crc = crc32fast::Hasher::new();
        self.size = 0;
        h
    }

    pub fn data(&mut self, chunk: &[u8]) {
        self.crc.update(chunk);
        self.size += chunk.len() as u64;
        self.offset += chunk.len() as u64;
    }

    /// The data descriptor; `Err` when the data did not match the size
    /// announced (the archive would be corrupt).
    pub fn end(&mut self) -> Result<Vec<u8>, String> {
        let crc = std::mem::replace(&mut self.crc, crc32fast::Hasher::new()).finalize();
        let Some(e) = self.entries.last_mut() else {
            return Err("no entry begun".into());
        };
        if self.size != e.size {
            return Err(format!("entry {} bytes, announced {}", self.size, e.size));
        }
        e.crc = crc;
        let mut d = Vec::with_capacity(24);
        u32le(&mut d, 0x0807_4b50);
        u32le(&mut d, crc);
        if e.zip64 {
            u64le(&mut d, e.size);
            u64le(&mut d, e.size);
        } else {
            u32le(&mut d, e.size as u32);
            u32le(&mut d, e.size as u32);
        }
        self.offset += d.len() as u64;
        Ok(d)
    }

    /// The central directory and end records.
    pub fn finish(self) -> Vec<u8> {
        let cd_start = self.offset;
        let mut c = Vec::new();
        for e in &self.entries {
            let big_size = e.size >= 0xFFFF_FFFF;
            let big_off = e.offset >= 0xFFFF_FFFF;
            let mut extra = Vec::new();
            if big_size || big_off {
                u16le(&mut extra, 0x0001);
                let n = if big_size { 16 } else { 0 } + if big_off { 8 } else { 0 };
                u16le(&mut extra, n);
                if big_size {
                    u64le(&mut extra, e.size);
                    u64le(&mut extra, e.size);
                }
                if big_off {
                    u64le(&mut extra, e.offset);
                }
            }
            u32le(&mut c, 0x0201_4b50);
            u16le(&mut c, (3 << 8) | 45); // made by: Unix, 4.5
            u16le(&mut c, if e.zip64 || big_off { 45 } else { 20 });
            u16le(&mut c, FLAGS);
            u16le(&mut c, 0);
            u16le(&mut c, DOS_TIME);
            u16le(&mut c, DOS_DATE);
            u32le(&mut c, e.crc);
            let s = if big_size { 0xFFFF_FFFF } else { e.size as u32 };
            u32le(&mut c, s);
            u32le(&mut c, s);
            u16le(&mut c, e.name.len() as u16);
            u16le(&mut c, extra.len() as u16);
            u16le(&mut c, 0); // comment
            u16le(&mut c, 0); // disk
            u16le(&mut c, 0); // internal attributes
            u32le(&mut c, 0o100644 << 16); // external: regular file 0644
            u32le(
                &mut c,
                if big_off {
                    0xFFFF_FFFF
                } else {
                    e.offset as u32
                },
            );
            c.extend_from_slice(&e.name);
            c.extend_from_slice(&extra);
        }
        let cd_size = c.len() as u64;
        let n = self.entries.len() as u64;
        let need64 = n >= 0xFFFF || cd_start >= 0xFFFF_FFFF || cd_size >= 0xFFFF_FFFF;
        if need64 {
            let z64_at = cd_start + cd_size;
            u32le(&mut c, 0x0606_4b50);
            u64le(&mut c, 44);
            u16le(&mut c, 45);
            u16le(&mut c, 45);
            u32le(&mut c, 0);
            u32le(&mut c, 0);
            u64le(&mut c, n);
            u64le(&mut c, n);
            u64le(&mut c, cd_size);
            u64le(&mut c, cd_start);
            u32le(&mut c, 0x0706_4b50);
            u32le(&mut c, 0);
            u64le(&mut c, z64_at);
            u32le(&mut c, 1);
        }
        u32le(&mut c, 0x0605_4b50);
        u16le(&mut c, 0);
        u16le(&mut c, 0);
        let n16 = if need64 { 0xFFFF } else { n as u16 };
        u16le(&mut c, n16);
        u16le(&mut c, n16);
        u32le(&mut c, if need64 { 0xFFFF_FFFF } else { cd_size as u32 });
        u32le(&mut c, if need64 { 0xFFFF_FFFF } else { cd_start as u32 });
        u16le(&mut c, 0);
        c
    }
}

/// A zip-safe entry name: no directories, no control characters, unique
/// within the archive (a numeric suffix is added on collision).
pub fn entry_name(name: &str, taken: &mut std::collections::HashSet<String>) -> String {
    let base = crate::names::safe_name(name);
    let mut candidate = base.clone();
    let mut i = 1;
    while !taken.insert(candidate.clone()) {
        i += 1;
        candidate = match base.rsplit_once('.') {
            Some((stem, ext)) if !stem.is_empty() => format!("{stem} ({i}).{ext}"),
            _ => format!("{base} ({i})"),
        };
    }
    candidate
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn streamed_zip_is_read_back_by_unzip() {
        let mut z = ZipWriter::new();
        let mut out = Vec::new();
        let files: [(&str, &[u8]); 3] = [
            ("a.txt", b"hello"),
            ("b.bin", &[0u8; 70000]),
            ("empty", b""),
        ];
        for (name, data) in files {
            out.extend(z.begin(name, data.len() as u64));
            z.data(data);
            out.extend_from_slice(data);
            out.extend(z.end().unwrap());
        }
        out.extend(z.finish());
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.zip");
        std::fs::File::create(&p).unwrap().write_all(&out).unwrap();
        let st = std::process::Command::new("python3")
            .args(["-c", "import sys,zipfile; z=zipfile.ZipFile(sys.argv[1]); assert z.testzip() is None; print(','.join(f'{i.filename}:{len(z.read(i))}' for i in z.infolist()))"])
            .arg(&p)
            .output()
            .unwrap();
        assert!(
            st.status.success(),
            "{}",
            String::from_utf8_lossy(&st.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&st.stdout).trim(),
            "a.txt:5,b.bin:70000,empty:0"
        );
    }

    #[test]
    fn a_size_mismatch_is_an_error() {
        let mut z = ZipWriter::new();
        z.begin("a", 3);
        z.data(b"ab");
        assert!(z.end().is_err());
    }

    #[test]
    fn entry_names_are_unique_and_flat() {
        let mut t = Default::default();
        assert_eq!(entry_name("../../etc/passwd", &mut t), "passwd");
        assert_eq!(entry_name("passwd", &mut t), "passwd (2)");
        assert_eq!(entry_name("a.txt", &mut t), "a.txt");
        assert_eq!(entry_name("a.txt", &mut t), "a (2).txt");
    }
}
