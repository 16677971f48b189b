//! One arena for every signature name: no `String` per signature.

/// Signature names, stored back to back. A name is found by its index.
#[derive(Debug, Default, Clone)]
pub(crate) struct NameArena {
    bytes: Vec<u8>,
    /// End offset (exclusive) of each name in `bytes`.
    ends: Vec<u32>,
    /// Whether the name comes from a PUA file (`.hdu`, `.hsu`, `.ndu`).
    pua: Vec<bool>,
}

/// The arena would pass 4 GiB of names (offsets are `u32`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ArenaFull;

impl NameArena {
    pub(crate) fn with_capacity(names: usize, bytes: usize) -> NameArena {
        NameArena {
            bytes: Vec::with_capacity(bytes),
            ends: Vec::with_capacity(names),
            pua: Vec::with_capacity(names),
        }
    }

    pub(crate) fn push(&mut self, name: &[u8], pua: bool) -> Result<u32, ArenaFull> {
        let id = u32::try_from(self.ends.len()).map_err(|_| ArenaFull)?;
        let end = u32::try_from(self.bytes.len() + name.len()).map_err(|_| ArenaFull)?;
        self.bytes.extend_from_slice(name);
        self.ends.push(end);
        self.pua.push(pua);
        Ok(id)
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.ends.len()
    }

    pub(crate) fn get(&self, id: u32) -> &[u8] {
        let i = id as usize;
        let Some(&end) = self.ends.get(i) else {
            return b"";
        };
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        self.bytes.get(start as usize..end as usize).unwrap_or(b"")
    }

    pub(crate) fn is_pua(&self, id: u32) -> bool {
        self.pua.get(id as usize).copied().unwrap_or(false)
    }

    /// Append `other`; returns the id offset to add to `other`'s ids.
    pub(crate) fn append(&mut self, other: NameArena) -> Result<u32, ArenaFull> {
        let id_base = u32::try_from(self.ends.len()).map_err(|_| ArenaFull)?;
        let byte_base = u32::try_from(self.bytes.len()).map_err(|_| ArenaFull)?;
        u32::try_from(self.bytes.len() + other.bytes.len()).map_err(|_| ArenaFull)?;
        u32::try_from(self.ends.len() + other.ends.len()).map_err(|_| ArenaFull)?;
        self.bytes.extend_from_slice(&other.bytes);
        self.ends.extend(other.ends.iter().map(|e| e + byte_base));
        self.pua.extend_from_slice(&other.pua);
        Ok(id_base)
    }

    pub(crate) fn shrink_to_fit(&mut self) {
        self.bytes.shrink_to_fit();
        self.ends.shrink_to_fit();
        self.pua.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_get_append() {
        let mut a = NameArena::default();
        assert_eq!(a.push(b"one", false).unwrap(), 0);
        assert_eq!(a.push(b"two", true).unwrap(), 1);
        let mut b = NameArena::default();
        b.push(b"three", false).unwrap();
        let base = a.append(b).unwrap();
        assert_eq!(base, 2);
        assert_eq!(a.get(0), b"one");
        assert_eq!(a.get(1), b"two");
        assert_eq!(a.get(2), b"three");
        assert!(a.is_pua(1) && !a.is_pua(2));
        assert_eq!(a.get(9), b"");
        assert_eq!(a.len(), 3);
    }
}
