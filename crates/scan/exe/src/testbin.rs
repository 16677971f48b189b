//! Test executables built at test time (MinGW for PE, gcc for ELF) and
//! facts about them from binutils and ClamAV's `sigtool`, to check the
//! parsers against. A missing compiler skips with a printed reason.
#![allow(clippy::disallowed_methods)] // small test binaries read whole

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

const PE_SRC: &str = r#"#include <windows.h>
#include <stdio.h>
int main(void) { printf("moat %lu\n", GetTickCount()); Sleep(1); return 0; }
"#;

const ELF_SRC: &str = "#include <stdio.h>\nint main(void) { puts(\"moat\"); return 0; }\n";

fn dir() -> &'static Path {
    static D: OnceLock<PathBuf> = OnceLock::new();
    D.get_or_init(|| {
        let d = std::env::temp_dir().join(format!("moat-exe-testbin-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&d);
        d
    })
}

/// Compile `src` with `cc` into `out`; `None` (with the reason printed) when
/// the compiler is missing or fails.
pub fn build(cc: &str, src: &str, out: &str, extra: &[&str]) -> Option<Vec<u8>> {
    let d = dir();
    let c = d.join(format!("{out}.c"));
    let o = d.join(out);
    std::fs::write(&c, src).ok()?;
    match Command::new(cc)
        .args(extra)
        .arg("-o")
        .arg(&o)
        .arg(&c)
        .output()
    {
        Ok(r) if r.status.success() => std::fs::read(&o).ok(),
        Ok(r) => {
            eprintln!("SKIP: {cc} failed: {}", String::from_utf8_lossy(&r.stderr));
            None
        }
        Err(e) => {
            eprintln!("SKIP: {cc} not available ({e}); install gcc-mingw-w64-x86-64 / gcc");
            None
        }
    }
}

/// A stripped 64-bit MinGW executable importing from kernel32 and msvcrt.
pub fn mingw_pe() -> Option<Vec<u8>> {
    static PE: OnceLock<Option<Vec<u8>>> = OnceLock::new();
    PE.get_or_init(|| build("x86_64-w64-mingw32-gcc", PE_SRC, "t.exe", &["-O1", "-s"]))
        .clone()
}

/// A small gcc-built ELF.
pub fn gcc_elf() -> Option<Vec<u8>> {
    static ELF: OnceLock<Option<Vec<u8>>> = OnceLock::new();
    ELF.get_or_init(|| build("gcc", ELF_SRC, "t.elf", &["-O1"]))
        .clone()
}

pub struct Facts {
    pub ep_file_offset: u64,
    /// (raw offset, raw size) per section.
    pub sections: Vec<(u32, u32)>,
}

fn write_tmp(name: &str, data: &[u8]) -> PathBuf {
    let p = dir().join(name);
    std::fs::write(&p, data).unwrap();
    p
}

fn run(cmd: &str, args: &[&str], file: &Path) -> String {
    let o = Command::new(cmd).args(args).arg(file).output().unwrap();
    String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr)
}

fn hex(s: &str) -> u64 {
    u64::from_str_radix(s.trim_start_matches("0x"), 16).unwrap()
}

/// Section file offsets from objdump, raw sizes from ClamAV's own
/// `sigtool --mdb` debug output, the entry point from objdump.
pub fn objdump_pe(pe: &[u8]) -> Facts {
    let p = write_tmp("facts.exe", pe);
    let h = run("x86_64-w64-mingw32-objdump", &["-h"], &p);
    let lines: Vec<&str> = h.lines().collect();
    let mut secs = Vec::new(); // (vma, size, off, has contents)
    for (i, l) in lines.iter().enumerate() {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.len() == 7 && f[0].parse::<u32>().is_ok() {
            let contents = lines.get(i + 1).is_some_and(|n| n.contains("CONTENTS"));
            secs.push((hex(f[3]), hex(f[2]), hex(f[5]) as u32, contents));
        }
    }
    let pp = run("x86_64-w64-mingw32-objdump", &["-p"], &p);
    let field = |k: &str| {
        pp.lines()
            .find(|l| l.starts_with(k))
            .and_then(|l| l.split_whitespace().nth(1))
            .map(hex)
            .unwrap()
    };
    let base = field("ImageBase");
    let ep_rva = field("AddressOfEntryPoint");
    // sigtool prints `Section{n}: rsz:md5` for sections with data, in order.
    let sig = run("sigtool", &["--debug", "--mdb"], &p);
    let mut sizes = sig.lines().filter_map(|l| {
        let rest = l.split("Section{").nth(1)?;
        let v = rest.split(": ").nth(1)?;
        v.split(':').next()?.parse::<u32>().ok()
    });
    let sections: Vec<(u32, u32)> = secs
        .iter()
        .map(|&(_, _, off, contents)| {
            if contents {
                (off, sizes.next().unwrap_or(0))
            } else {
                (off, 0)
            }
        })
        .collect();
    let (vma, _, off, _) = secs
        .iter()
        .find(|(vma, size, _, c)| *c && ep_rva + base >= *vma && ep_rva + base < vma + size)
        .copied()
        .unwrap();
    Facts {
        ep_file_offset: ep_rva + base - vma + u64::from(off),
        sections,
    }
}

/// Entry point file offset (through the program headers) and section
/// offsets/sizes from readelf.
pub fn readelf(elf: &[u8]) -> Facts {
    let p = write_tmp("facts.elf", elf);
    let h = run("readelf", &["-hlSW"], &p);
    let entry = h
        .lines()
        .find(|l| l.contains("Entry point address:"))
        .and_then(|l| l.split_whitespace().last())
        .map(hex)
        .unwrap();
    let mut ep = None;
    let mut sections = Vec::new();
    for l in h.lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.len() >= 6 && f[1].starts_with("0x") && f[2].starts_with("0x") && ep.is_none() {
            let (off, vaddr, memsz) = (hex(f[1]), hex(f[2]), hex(f[5]));
            if vaddr <= entry && entry < vaddr + memsz {
                ep = Some(entry - vaddr + off);
            }
        }
        if let Some(rest) = l.trim_start().strip_prefix('[')
            && let Some((idx, tail)) = rest.split_once(']')
            && idx.trim().parse::<u32>().is_ok()
        {
            let t: Vec<&str> = tail.split_whitespace().collect();
            // Name may be empty for section 0: Type Address Off Size ...
            let (off, size) = if t.get(1).is_some_and(|a| a.len() == 16) {
                (t[2], t[3])
            } else {
                (t[3], t[4])
            };
            sections.push((hex(off) as u32, hex(size) as u32));
        }
    }
    Facts {
        ep_file_offset: ep.unwrap(),
        sections,
    }
}

/// `rounds` copies of the first 4 KiB of `pe` with one to four bytes of its
/// headers (DOS, PE, optional, sections) overwritten, from a fixed
/// sequence so failures reproduce.
pub fn mutated_headers(pe: &[u8], rounds: usize) -> impl Iterator<Item = Vec<u8>> + '_ {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    (0..rounds).map(move |_| {
        let mut f = pe[..pe.len().min(4096)].to_vec();
        for _ in 0..1 + next() % 4 {
            let at = (next() % 0x300) as usize;
            f[at] = next() as u8;
        }
        f
    })
}
