//! PDF encryption with the standard security handler (ISO 32000-2 §7.6.4),
//! for documents that open without a password: those encrypted only to set
//! permissions, which is also how malicious PDFs hide their streams from
//! scanners that do not decrypt. Revisions 2 to 4 (RC4 40 to 128 bits,
//! AES-128) and 5 and 6 (AES-256) are read; the user password tried is the
//! empty one, as ClamAV does. A document that needs a password, or another
//! security handler (public-key), is [`Security::Locked`]: its streams cannot
//! be scanned, and the walker reports it as encrypted.
//!
//! Only what the walker needs is parsed: the encryption dictionary (direct,
//! or the indirect object `/Encrypt N G R` names, found by its `N G obj`
//! header) and the first `/ID` string; a small tokenizer below reads them.

use crate::formats::{read_at_full, read_full};
use aes::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit, generic_array::GenericArray};
use md5::{Digest, Md5};
use moat_core::Blob;
use sha2::{Sha256, Sha384, Sha512};
use std::io::{self, Read};

/// How far after `/Encrypt` or `/ID` or an object header the value is read.
const VALUE_WINDOW: usize = 16 * 1024;
/// Most `/Encrypt` references followed to their object.
const MAX_LOOKUPS: usize = 4;
/// Nesting depth of arrays and dictionaries the tokenizer follows.
const MAX_DEPTH: usize = 16;

/// The padding string of algorithm 2, also the empty user password padded.
const PAD: [u8; 32] = [
    0x28, 0xBF, 0x4E, 0x5E, 0x4E, 0x75, 0x8A, 0x41, 0x64, 0x00, 0x4E, 0x56, 0xFF, 0xFA, 0x01, 0x08,
    0x2E, 0x2E, 0x00, 0xB6, 0xD0, 0x68, 0x3E, 0x80, 0x2F, 0x0C, 0xA9, 0xFE, 0x64, 0x53, 0x69, 0x7A,
];

/// What the encryption of a document means for reading its streams.
#[derive(Debug)]
pub(crate) enum Security {
    /// Not encrypted, or its streams are not (`/StmF /Identity`).
    Open,
    /// Streams are decrypted with this.
    Decrypt(Crypt),
    /// Streams cannot be read: the reason.
    Locked(&'static str),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    Rc4,
    AesV2,
    AesV3,
}

/// The file key and cipher of a document that opened with the empty password.
#[derive(Debug)]
pub(crate) struct Crypt {
    key: Vec<u8>,
    method: Method,
    encrypt_metadata: bool,
}

impl Crypt {
    /// Whether a stream of this `/Type` is encrypted: cross-reference
    /// streams never are, metadata unless `/EncryptMetadata false`.
    pub(crate) fn encrypts(&self, stream_type: Option<&[u8]>) -> bool {
        match stream_type {
            Some(b"XRef") => false,
            Some(b"Metadata") => self.encrypt_metadata,
            _ => true,
        }
    }

    /// `inner` (the raw stream data of object `n g`) decrypted.
    pub(crate) fn reader<'a>(
        &self,
        (n, g): (u64, u64),
        inner: Box<dyn Read + 'a>,
    ) -> Box<dyn Read + 'a> {
        let key = match self.method {
            Method::AesV3 => self.key.clone(),
            Method::Rc4 | Method::AesV2 => {
                // Algorithm 1: the object's key from the file key.
                let mut h = Md5::new();
                h.update(&self.key);
                h.update(&n.to_le_bytes()[..3]);
                h.update(&g.to_le_bytes()[..2]);
                if self.method == Method::AesV2 {
                    h.update(b"sAlT");
                }
                let d = h.finalize();
                d[..(self.key.len() + 5).min(16)].to_vec()
            }
        };
        match self.method {
            Method::Rc4 => Box::new(Rc4Reader {
                inner,
                rc4: Rc4::new(&key),
            }),
            Method::AesV2 => Box::new(AesCbcReader::<_, cbc::Decryptor<aes::Aes128>>::new(
                inner, key,
            )),
            Method::AesV3 => Box::new(AesCbcReader::<_, cbc::Decryptor<aes::Aes256>>::new(
                inner, key,
            )),
        }
    }
}

/// The document's security, from the offsets of its `/Encrypt` and `/ID`
/// keys. The newest trailer's `/Encrypt` is the last one that is a key
/// naming a dictionary with a `/Filter`; text that only looks like one (in
/// a string or an uncompressed stream) is passed over.
pub(crate) fn security(blob: &Blob, encrypt_at: &[u64], id_at: &[u64]) -> io::Result<Security> {
    // Each reference looked up is a pass over the file: a few at most.
    let mut lookups = 0;
    for &at in encrypt_at.iter().rev() {
        let Some(after) = key_value(blob, at + 8)? else {
            continue;
        };
        let dict = match Lexer::new(&after).value(0) {
            Some(Value::Dict(d)) => d,
            Some(Value::Ref(n, g)) if lookups < MAX_LOOKUPS => {
                lookups += 1;
                match object(blob, n, g)? {
                    Some(Value::Dict(d)) => d,
                    _ => continue,
                }
            }
            _ => continue,
        };
        if get(&dict, b"Filter").is_none() {
            continue;
        }
        let id0 = first_id(blob, at, id_at)?;
        return Ok(from_dict(&dict, &id0));
    }
    Ok(Security::Open)
}

/// What follows a key ending at `at`, unless the key was only the start of
/// a longer name (`/Encrypt` of `/EncryptMetadata`).
fn key_value(blob: &Blob, at: u64) -> io::Result<Option<Vec<u8>>> {
    let after = read_window(blob, at)?;
    Ok(match after.first() {
        Some(&b) if is_white(b) || is_delim(b) => Some(after),
        _ => None,
    })
}

fn from_dict(dict: &Dict, id0: &[u8]) -> Security {
    if get(dict, b"Filter").and_then(Value::name) != Some(b"Standard") {
        return Security::Locked("not the standard security handler");
    }
    let v = get(dict, b"V").and_then(Value::int).unwrap_or(0);
    let r = get(dict, b"R").and_then(Value::int).unwrap_or(0);
    let encrypt_metadata = get(dict, b"EncryptMetadata").and_then(Value::bool) != Some(false);
    let method = match v {
        1 | 2 => Method::Rc4,
        4 | 5 => {
            let Some(stmf) = get(dict, b"StmF").and_then(Value::name) else {
                return Security::Open;
            };
            if stmf == b"Identity" {
                return Security::Open;
            }
            let cfm = get(dict, b"CF")
                .and_then(|cf| cf.dict_get(stmf))
                .and_then(|f| f.dict_get(b"CFM"))
                .and_then(Value::name);
            match cfm {
                Some(b"V2") => Method::Rc4,
                Some(b"AESV2") => Method::AesV2,
                Some(b"AESV3") => Method::AesV3,
                Some(b"None") => return Security::Open,
                _ => return Security::Locked("unknown crypt filter method"),
            }
        }
        _ => return Security::Locked("unknown encryption version"),
    };
    let bytes = |k: &[u8]| get(dict, k).and_then(Value::string).unwrap_or(&[]);
    let (o, u) = (bytes(b"O"), bytes(b"U"));
    let key = match r {
        2..=4 => {
            let len = match r {
                2 => 5,
                _ => get(dict, b"Length")
                    .and_then(Value::int)
                    .map_or(5, |bits| (bits / 8).clamp(5, 16) as usize),
            };
            let p = get(dict, b"P").and_then(Value::int).unwrap_or(0) as i32;
            let key = key_r2_r4(o, p, id0, r, len, encrypt_metadata);
            user_password_is_empty(&key, r, u, id0).then_some(key)
        }
        5 | 6 => key_r5_r6(r, u, bytes(b"UE")),
        _ => return Security::Locked("unknown security handler revision"),
    };
    match key {
        Some(key) => Security::Decrypt(Crypt {
            key,
            method,
            encrypt_metadata,
        }),
        None => Security::Locked("a password is needed"),
    }
}

/// Algorithm 2: the file key from the empty user password.
fn key_r2_r4(o: &[u8], p: i32, id0: &[u8], r: i64, len: usize, encrypt_metadata: bool) -> Vec<u8> {
    let mut h = Md5::new();
    h.update(PAD);
    h.update(&o[..o.len().min(32)]);
    h.update(p.to_le_bytes());
    h.update(id0);
    if r >= 4 && !encrypt_metadata {
        h.update([0xff; 4]);
    }
    let mut d = h.finalize();
    if r >= 3 {
        for _ in 0..50 {
            d = Md5::digest(&d[..len]);
        }
    }
    d[..len].to_vec()
}

/// Algorithms 4 and 5: whether `key` (from the empty password) gives `/U`.
fn user_password_is_empty(key: &[u8], r: i64, u: &[u8], id0: &[u8]) -> bool {
    if r == 2 {
        let mut x = PAD;
        Rc4::new(key).apply(&mut x);
        return u.len() >= 32 && x[..] == u[..32];
    }
    let mut h = Md5::new();
    h.update(PAD);
    h.update(id0);
    let mut x: [u8; 16] = h.finalize().into();
    for i in 0..20u8 {
        let k: Vec<u8> = key.iter().map(|b| b ^ i).collect();
        Rc4::new(&k).apply(&mut x);
    }
    u.len() >= 16 && x[..] == u[..16]
}

/// Algorithms 2.A and 11 for the empty password: the file key when `/U`
/// validates it.
fn key_r5_r6(r: i64, u: &[u8], ue: &[u8]) -> Option<Vec<u8>> {
    if u.len() < 48 || ue.len() < 32 {
        return None;
    }
    let (hash, validation_salt, key_salt) = (&u[..32], &u[32..40], &u[40..48]);
    if hash_r5_r6(r, validation_salt) != hash {
        return None;
    }
    let intermediate = hash_r5_r6(r, key_salt);
    let mut dec = cbc::Decryptor::<aes::Aes256>::new_from_slices(&intermediate, &[0u8; 16]).ok()?;
    let mut key = ue[..32].to_vec();
    for block in key.chunks_exact_mut(16) {
        dec.decrypt_block_mut(GenericArray::from_mut_slice(block));
    }
    Some(key)
}

/// The hash of the empty password with `salt`: SHA-256 (revision 5) or
/// algorithm 2.B (revision 6; no user key data for a user password).
fn hash_r5_r6(r: i64, salt: &[u8]) -> [u8; 32] {
    let mut k: Vec<u8> = Sha256::digest(salt).to_vec();
    if r == 5 {
        return first_32(&k);
    }
    let mut round = 0u32;
    loop {
        // K1 = (password ‖ K ‖ user key data) 64 times; the password is empty.
        let k1 = k.repeat(64);
        let Ok(mut enc) = cbc::Encryptor::<aes::Aes128>::new_from_slices(&k[..16], &k[16..32])
        else {
            return [0; 32];
        };
        let mut e = k1;
        for block in e.chunks_exact_mut(16) {
            enc.encrypt_block_mut(GenericArray::from_mut_slice(block));
        }
        let m = e[..16].iter().map(|&b| u32::from(b)).sum::<u32>() % 3;
        k = match m {
            0 => Sha256::digest(&e).to_vec(),
            1 => Sha384::digest(&e).to_vec(),
            _ => Sha512::digest(&e).to_vec(),
        };
        round += 1;
        let last = u32::from(*e.last().unwrap_or(&0));
        if round >= 64 && last <= round - 32 {
            return first_32(&k);
        }
    }
}

fn first_32(k: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(&k[..32]);
    out
}

/// The first string of the `/ID` nearest to the `/Encrypt` at `at` (the
/// same trailer's), or nothing.
fn first_id(blob: &Blob, at: u64, id_at: &[u64]) -> io::Result<Vec<u8>> {
    let mut near: Vec<u64> = id_at.to_vec();
    near.sort_by_key(|&i| i.abs_diff(at));
    for &id in near.iter().take(8) {
        let Some(after) = key_value(blob, id + 3)? else {
            continue;
        };
        if let Some(Value::Array(items)) = Lexer::new(&after).value(0)
            && let Some(Value::Str(s)) = items.into_iter().next()
        {
            return Ok(s);
        }
    }
    Ok(Vec::new())
}

/// The value of indirect object `n g` (its last definition in the file).
/// Not `find_all`: only the last match is wanted, kept in constant memory
/// however often a hostile file repeats the header.
fn object(blob: &Blob, n: u64, g: u64) -> io::Result<Option<Value>> {
    let header = format!("{n} {g} obj");
    let finder = memchr::memmem::Finder::new(header.as_bytes());
    let mut last = None;
    let mut buf = vec![0u8; 64 * 1024];
    let mut at = 0u64;
    while at < blob.len() {
        let k = read_at_full(blob, at, &mut buf)?;
        if k == 0 {
            break;
        }
        for i in finder.find_iter(&buf[..k]) {
            // `11 0 obj` is not `1 0 obj`.
            if i == 0 && at > 0 || i > 0 && buf[i - 1].is_ascii_digit() {
                continue;
            }
            last = Some(at + i as u64);
        }
        if at + k as u64 >= blob.len() || k <= header.len() {
            break;
        }
        at += (k - header.len()) as u64;
    }
    let Some(start) = last else {
        return Ok(None);
    };
    let after = read_window(blob, start + header.len() as u64)?;
    Ok(Lexer::new(&after).value(0))
}

fn read_window(blob: &Blob, at: u64) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; VALUE_WINDOW];
    let n = read_at_full(blob, at, &mut buf)?;
    buf.truncate(n);
    Ok(buf)
}

// --- a PDF object tokenizer, enough for the encryption dictionary

type Dict = Vec<(Vec<u8>, Value)>;

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Int(i64),
    Real,
    Bool(bool),
    Null,
    Name(Vec<u8>),
    Str(Vec<u8>),
    Array(Vec<Value>),
    Dict(Dict),
    Ref(u64, u64),
}

impl Value {
    fn int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }
    fn name(&self) -> Option<&[u8]> {
        match self {
            Value::Name(n) => Some(n),
            _ => None,
        }
    }
    fn string(&self) -> Option<&[u8]> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }
    fn bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }
    fn dict_get(&self, key: &[u8]) -> Option<&Value> {
        match self {
            Value::Dict(d) => get(d, key),
            _ => None,
        }
    }
}

fn get<'a>(dict: &'a Dict, key: &[u8]) -> Option<&'a Value> {
    dict.iter().find(|(k, _)| k == key).map(|(_, v)| v)
}

fn is_white(b: u8) -> bool {
    matches!(b, 0 | b'\t' | b'\n' | 0x0c | b'\r' | b' ')
}

fn is_delim(b: u8) -> bool {
    matches!(
        b,
        b'(' | b')' | b'<' | b'>' | b'[' | b']' | b'{' | b'}' | b'/' | b'%'
    )
}

#[derive(Debug, PartialEq)]
enum Token {
    Value(Value),
    Word(Vec<u8>),
    ArrayOpen,
    ArrayClose,
    DictOpen,
    DictClose,
}

pub(crate) struct Lexer<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Lexer<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Lexer { buf, pos: 0 }
    }

    fn peek(&self) -> Option<u8> {
        self.buf.get(self.pos).copied()
    }

    fn skip_space(&mut self) {
        while let Some(b) = self.peek() {
            if is_white(b) {
                self.pos += 1;
            } else if b == b'%' {
                while self.peek().is_some_and(|b| b != b'\n' && b != b'\r') {
                    self.pos += 1;
                }
            } else {
                break;
            }
        }
    }

    fn token(&mut self) -> Option<Token> {
        self.skip_space();
        let b = self.peek()?;
        self.pos += 1;
        Some(match b {
            b'[' => Token::ArrayOpen,
            b']' => Token::ArrayClose,
            b'<' if self.peek() == Some(b'<') => {
                self.pos += 1;
                Token::DictOpen
            }
            b'>' if self.peek() == Some(b'>') => {
                self.pos += 1;
                Token::DictClose
            }
            b'<' => Token::Value(Value::Str(self.hex_string())),
            b'(' => Token::Value(Value::Str(self.literal_string())),
            b'/' => Token::Value(Value::Name(self.name())),
            _ => {
                let start = self.pos - 1;
                while self.peek().is_some_and(|b| !is_white(b) && !is_delim(b)) {
                    self.pos += 1;
                }
                let word = &self.buf[start..self.pos];
                match word {
                    b"true" => Token::Value(Value::Bool(true)),
                    b"false" => Token::Value(Value::Bool(false)),
                    b"null" => Token::Value(Value::Null),
                    _ => match std::str::from_utf8(word).ok().and_then(|s| s.parse().ok()) {
                        Some(i) => Token::Value(Value::Int(i)),
                        None if !word.is_empty()
                            && word.iter().all(|b| b"+-.0123456789".contains(b)) =>
                        {
                            Token::Value(Value::Real)
                        }
                        None => Token::Word(word.to_vec()),
                    },
                }
            }
        })
    }

    fn hex_string(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        let mut high: Option<u8> = None;
        while let Some(b) = self.peek() {
            self.pos += 1;
            if b == b'>' {
                break;
            }
            let Some(v) = (b as char).to_digit(16) else {
                continue;
            };
            match high.take() {
                Some(h) => out.push(h << 4 | v as u8),
                None => high = Some(v as u8),
            }
        }
        if let Some(h) = high {
            out.push(h << 4);
        }
        out
    }

    fn literal_string(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        let mut depth = 1usize;
        while let Some(b) = self.peek() {
            self.pos += 1;
            match b {
                b'(' => {
                    depth += 1;
                    out.push(b);
                }
                b')' => {
                    depth -= 1;
                    if depth == 0 {
                        break;
                    }
                    out.push(b);
                }
                b'\\' => {
                    let Some(e) = self.peek() else { break };
                    self.pos += 1;
                    match e {
                        b'n' => out.push(b'\n'),
                        b'r' => out.push(b'\r'),
                        b't' => out.push(b'\t'),
                        b'b' => out.push(8),
                        b'f' => out.push(12),
                        b'0'..=b'7' => {
                            let mut v = u32::from(e - b'0');
                            for _ in 0..2 {
                                match self.peek() {
                                    Some(d @ b'0'..=b'7') => {
                                        v = v * 8 + u32::from(d - b'0');
                                        self.pos += 1;
                                    }
                                    _ => break,
                                }
                            }
                            out.push(v as u8);
                        }
                        // A backslash at the end of a line continues it.
                        b'\r' => {
                            if self.peek() == Some(b'\n') {
                                self.pos += 1;
                            }
                        }
                        b'\n' => {}
                        other => out.push(other),
                    }
                }
                _ => out.push(b),
            }
        }
        out
    }

    fn name(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        while let Some(b) = self.peek() {
            if is_white(b) || is_delim(b) {
                break;
            }
            self.pos += 1;
            if b == b'#'
                && let Some(hex) = self.buf.get(self.pos..self.pos + 2)
                && let Some(v) = std::str::from_utf8(hex)
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(v);
                self.pos += 2;
                continue;
            }
            out.push(b);
        }
        out
    }

    /// The next value: `N G R` is a reference; unbalanced or too deep
    /// structures end the value (`None`).
    pub(crate) fn value(&mut self, depth: usize) -> Option<Value> {
        if depth > MAX_DEPTH {
            return None;
        }
        match self.token()? {
            Token::Value(Value::Int(n)) => {
                let save = self.pos;
                if let Some(Token::Value(Value::Int(g))) = self.token()
                    && let Some(Token::Word(w)) = self.token()
                    && w == b"R"
                    && n >= 0
                    && g >= 0
                {
                    return Some(Value::Ref(n as u64, g as u64));
                }
                self.pos = save;
                Some(Value::Int(n))
            }
            Token::Value(v) => Some(v),
            Token::ArrayOpen => {
                let mut items = Vec::new();
                loop {
                    self.skip_space();
                    if self.peek() == Some(b']') {
                        self.pos += 1;
                        return Some(Value::Array(items));
                    }
                    items.push(self.value(depth + 1)?);
                }
            }
            Token::DictOpen => {
                let mut dict = Vec::new();
                loop {
                    match self.token()? {
                        Token::DictClose => return Some(Value::Dict(dict)),
                        Token::Value(Value::Name(k)) => {
                            let v = self.value(depth + 1)?;
                            dict.push((k, v));
                        }
                        _ => return None,
                    }
                }
            }
            Token::Word(_) | Token::ArrayClose | Token::DictClose => None,
        }
    }
}

// --- ciphers as streaming readers

/// RC4, written here because the `rc4` crate fixes the key length in the
/// type, and PDF keys are 5 to 16 bytes chosen by the document.
struct Rc4 {
    s: [u8; 256],
    i: u8,
    j: u8,
}

impl Rc4 {
    fn new(key: &[u8]) -> Rc4 {
        let mut s = [0u8; 256];
        for (i, v) in s.iter_mut().enumerate() {
            *v = i as u8;
        }
        let mut j = 0u8;
        if !key.is_empty() {
            for i in 0..256 {
                j = j.wrapping_add(s[i]).wrapping_add(key[i % key.len()]);
                s.swap(i, usize::from(j));
            }
        }
        Rc4 { s, i: 0, j: 0 }
    }

    fn apply(&mut self, data: &mut [u8]) {
        for b in data {
            self.i = self.i.wrapping_add(1);
            self.j = self.j.wrapping_add(self.s[usize::from(self.i)]);
            self.s.swap(usize::from(self.i), usize::from(self.j));
            let k = self.s[usize::from(
                self.s[usize::from(self.i)].wrapping_add(self.s[usize::from(self.j)]),
            )];
            *b ^= k;
        }
    }
}

struct Rc4Reader<R> {
    inner: R,
    rc4: Rc4,
}

impl<R: Read> Read for Rc4Reader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.rc4.apply(&mut buf[..n]);
        Ok(n)
    }
}

/// AES in CBC mode: the first 16 bytes are the IV, the last block carries
/// PKCS#7 padding (removed when it is well-formed; a stream whose length is
/// not a multiple of 16 is decrypted as far as whole blocks go).
struct AesCbcReader<R, D> {
    inner: R,
    key: Vec<u8>,
    dec: Option<D>,
    /// Ciphertext read and not yet decrypted (less than two blocks kept back).
    input: Vec<u8>,
    out: Vec<u8>,
    pos: usize,
    eof: bool,
}

impl<R: Read, D: BlockDecryptMut + KeyIvInit> AesCbcReader<R, D> {
    fn new(inner: R, key: Vec<u8>) -> Self {
        AesCbcReader {
            inner,
            key,
            dec: None,
            input: Vec::new(),
            out: Vec::new(),
            pos: 0,
            eof: false,
        }
    }

    /// Reads and decrypts the next piece into `out`.
    fn fill(&mut self) -> io::Result<()> {
        self.out.clear();
        self.pos = 0;
        let have = self.input.len();
        self.input.resize(have + 64 * 1024, 0);
        let n = read_full(&mut self.inner, &mut self.input[have..])?;
        self.input.truncate(have + n);
        if n == 0 {
            self.eof = true;
        }
        if self.dec.is_none() {
            if self.input.len() < 16 {
                if self.eof {
                    self.input.clear();
                }
                return Ok(());
            }
            self.dec = D::new_from_slices(&self.key, &self.input[..16]).ok();
            self.input.drain(..16);
            if self.dec.is_none() {
                self.eof = true;
                self.input.clear();
                return Ok(());
            }
        }
        // Keep the last whole block back until the end: it holds the padding.
        let whole = self.input.len() / 16 * 16;
        let take = if self.eof {
            whole
        } else {
            whole.saturating_sub(16)
        };
        let Some(dec) = self.dec.as_mut() else {
            return Ok(());
        };
        self.out.extend_from_slice(&self.input[..take]);
        self.input.drain(..take);
        for block in self.out.chunks_exact_mut(16) {
            dec.decrypt_block_mut(GenericArray::from_mut_slice(block));
        }
        if self.eof {
            self.input.clear();
            if let Some(&p) = self.out.last() {
                let p = usize::from(p);
                if (1..=16).contains(&p)
                    && p <= self.out.len()
                    && self.out[self.out.len() - p..]
                        .iter()
                        .all(|&b| usize::from(b) == p)
                {
                    self.out.truncate(self.out.len() - p);
                }
            }
        }
        Ok(())
    }
}

impl<R: Read, D: BlockDecryptMut + KeyIvInit> Read for AesCbcReader<R, D> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.out.len() {
            if self.eof {
                return Ok(0);
            }
            self.fill()?;
        }
        Ok(super::drain(&self.out, &mut self.pos, buf))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rc4_gives_rfc_6229_keystreams() {
        // RFC 6229: key 0x0102030405, offset 0; key 0x0102030405060708090a0b0c0d0e0f10, offset 0.
        let mut z = [0u8; 16];
        Rc4::new(&[1, 2, 3, 4, 5]).apply(&mut z);
        assert_eq!(
            z,
            [
                0xb2, 0x39, 0x63, 0x05, 0xf0, 0x3d, 0xc0, 0x27, 0xcc, 0xc3, 0x52, 0x4a, 0x0a, 0x11,
                0x18, 0xa8
            ]
        );
        let key: Vec<u8> = (1..=16).collect();
        let mut z = [0u8; 16];
        Rc4::new(&key).apply(&mut z);
        assert_eq!(
            z,
            [
                0x9a, 0xc7, 0xcc, 0x9a, 0x60, 0x9d, 0x1e, 0xf7, 0xb2, 0x93, 0x28, 0x99, 0xcd, 0xe4,
                0x1b, 0x97
            ]
        );
    }

    #[test]
    fn the_tokenizer_reads_strings_names_references_and_nesting() {
        let src = b"<< /O (a\\(b\\)\\n\\101\\\nc) /U <4142 43> /Filter /Stan#64ard /V 4 \
                    /CF << /StdCF << /CFM /AESV2 >> >> /Enc 12 0 R /L [1 2.5 true null] %c\n /E false >>";
        let Some(Value::Dict(d)) = Lexer::new(src).value(0) else {
            panic!("not a dictionary")
        };
        assert_eq!(get(&d, b"O"), Some(&Value::Str(b"a(b)\nAc".to_vec())));
        assert_eq!(get(&d, b"U"), Some(&Value::Str(b"ABC".to_vec())));
        assert_eq!(
            get(&d, b"Filter").and_then(Value::name),
            Some(&b"Standard"[..])
        );
        assert_eq!(get(&d, b"V"), Some(&Value::Int(4)));
        assert_eq!(
            get(&d, b"CF")
                .and_then(|c| c.dict_get(b"StdCF"))
                .and_then(|f| f.dict_get(b"CFM")),
            Some(&Value::Name(b"AESV2".to_vec()))
        );
        assert_eq!(get(&d, b"Enc"), Some(&Value::Ref(12, 0)));
        assert_eq!(
            get(&d, b"L"),
            Some(&Value::Array(vec![
                Value::Int(1),
                Value::Real,
                Value::Bool(true),
                Value::Null
            ]))
        );
        assert_eq!(get(&d, b"E"), Some(&Value::Bool(false)));
        // Unbalanced and too deep: no value, no panic.
        assert_eq!(Lexer::new(b"<< /A [1 2").value(0), None);
        assert_eq!(Lexer::new(&[b'['; 100]).value(0), None);
    }
}
