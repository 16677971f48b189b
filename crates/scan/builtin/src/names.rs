//! One arena for every signature name: no `String` per signature.

use std::sync::Arc;

/// Signature names, stored back to back in blocks. A name is found by its
/// index. Each parse block fills one block; merging moves the blocks in
/// rather than copying their bytes into one vector, so that a load never
/// holds every name twice. Blocks are shared (`Arc`): a reload reuses the
/// blocks of unchanged signature files (see `load::SignatureParts`).
#[derive(Debug, Default, Clone)]
pub(crate) struct NameArena {
    blocks: Vec<Arc<NameBlock>>,
    /// Id of the first name of each block.
    firsts: Vec<u32>,
    len: u32,
}

#[derive(Debug, Default, Clone, serde::Serialize, serde::Deserialize)]
struct NameBlock {
    #[serde(with = "crate::cache::codec::bytes")]
    bytes: Vec<u8>,
    /// End offset (exclusive) of each name in `bytes`.
    ends: Vec<u32>,
    /// Whether the name comes from a PUA file (`.hdu`, `.hsu`, `.ndu`).
    pua: Vec<bool>,
}

/// The arena would pass 4 GiB of names in a block or 2^32 names (offsets
/// and ids are `u32`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ArenaFull;

impl NameArena {
    /// Write the arena to the compiled-set cache: a header, then one
    /// segment per block.
    pub(crate) fn write_cache(&self, w: &mut crate::cache::SegWriter<'_>) -> std::io::Result<()> {
        w.put(&(self.blocks.len() as u64, &self.firsts, self.len))?;
        for b in &self.blocks {
            w.put(&**b)?;
        }
        Ok(())
    }

    /// An arena [`NameArena::write_cache`] wrote.
    pub(crate) fn read_cache(r: &mut crate::cache::SegReader<'_>) -> Result<NameArena, String> {
        let (n, firsts, len): (u64, Vec<u32>, u32) = r.get()?;
        if firsts.len() as u64 != n {
            return Err("name arena: block count".into());
        }
        let mut blocks = Vec::new();
        for _ in 0..n {
            blocks.push(Arc::new(r.get::<NameBlock>()?));
        }
        Ok(NameArena {
            blocks,
            firsts,
            len,
        })
    }

    /// An arena of one block with room for `names` names of `bytes` bytes.
    pub(crate) fn with_capacity(names: usize, bytes: usize) -> NameArena {
        NameArena {
            blocks: vec![Arc::new(NameBlock {
                bytes: Vec::with_capacity(bytes),
                ends: Vec::with_capacity(names),
                pua: Vec::with_capacity(names),
            })],
            firsts: vec![0],
            len: 0,
        }
    }

    /// Add a name to the last block.
    pub(crate) fn push(&mut self, name: &[u8], pua: bool) -> Result<u32, ArenaFull> {
        let id = self.len;
        let next = id.checked_add(1).ok_or(ArenaFull)?;
        if self.blocks.is_empty() {
            self.blocks.push(Arc::default());
            self.firsts.push(id);
        }
        // Blocks are only written while their parse owns them; a shared
        // one would be copied first.
        let b = Arc::make_mut(self.blocks.last_mut().ok_or(ArenaFull)?);
        let end = u32::try_from(b.bytes.len() + name.len()).map_err(|_| ArenaFull)?;
        b.bytes.extend_from_slice(name);
        b.ends.push(end);
        b.pua.push(pua);
        self.len = next;
        Ok(id)
    }

    pub(crate) fn len(&self) -> usize {
        self.len as usize
    }

    /// Bytes the names take (text, end offsets and PUA flags).
    pub(crate) fn bytes(&self) -> usize {
        self.blocks
            .iter()
            .map(|b| b.bytes.len() + b.ends.len() * 4 + b.pua.len())
            .sum()
    }

    /// The block holding `id` and the name's index in it.
    fn locate(&self, id: u32) -> Option<(&NameBlock, usize)> {
        let i = self.firsts.partition_point(|&f| f <= id).checked_sub(1)?;
        let b = self.blocks.get(i)?;
        let local = (id - self.firsts[i]) as usize;
        (local < b.ends.len()).then_some((b, local))
    }

    pub(crate) fn get(&self, id: u32) -> &[u8] {
        let Some((b, i)) = self.locate(id) else {
            return b"";
        };
        let start = if i == 0 { 0 } else { b.ends[i - 1] };
        b.bytes
            .get(start as usize..b.ends[i] as usize)
            .unwrap_or(b"")
    }

    pub(crate) fn is_pua(&self, id: u32) -> bool {
        self.locate(id).is_some_and(|(b, i)| b.pua[i])
    }

    /// Move `other`'s blocks in after ours; returns the id offset to add
    /// to `other`'s ids.
    pub(crate) fn append(&mut self, other: NameArena) -> Result<u32, ArenaFull> {
        let base = self.len;
        self.len = base.checked_add(other.len).ok_or(ArenaFull)?;
        for (b, first) in other.blocks.into_iter().zip(other.firsts) {
            if !b.ends.is_empty() {
                self.blocks.push(b);
                self.firsts.push(base + first);
            }
        }
        Ok(base)
    }

    /// Trim every block this arena alone holds to its contents.
    pub(crate) fn shrink_to_fit(&mut self) {
        for b in self.blocks.iter_mut().filter_map(Arc::get_mut) {
            b.bytes.shrink_to_fit();
            b.ends.shrink_to_fit();
            b.pua.shrink_to_fit();
        }
        self.blocks.shrink_to_fit();
        self.firsts.shrink_to_fit();
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
        // An empty arena appended adds no block; pushing after an append
        // goes to the last block.
        a.append(NameArena::default()).unwrap();
        assert_eq!(a.push(b"four", false).unwrap(), 3);
        assert_eq!(a.get(3), b"four");
        assert_eq!(a.get(2), b"three");
        let mut c = NameArena::with_capacity(1, 1);
        assert_eq!(c.append(a).unwrap(), 0);
        assert_eq!(c.get(0), b"one");
        assert_eq!(c.get(3), b"four");
    }
}
