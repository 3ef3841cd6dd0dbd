//! Memory of a launch: global allocations (byte-addressed, bounds known) and a block's shared
//! memory. Accesses outside every allocation are reported by the sanitizer with the allocation
//! they missed (the nearest one).

/// First address handed out for global allocations; each allocation is followed by an unmapped
/// gap so an overrun lands outside every allocation instead of in the next one.
const GLOBAL_BASE: u64 = 0x0010_0000_0000;
/// Alignment of global allocations (as `cudaMalloc` guarantees at least 256 bytes).
const GLOBAL_ALIGN: u64 = 256;
/// Unmapped bytes after each allocation.
const GLOBAL_GAP: u64 = 1 << 16;

/// One global allocation.
#[derive(Clone, Debug, PartialEq)]
pub struct Allocation {
    /// A name for reports (the tensor or parameter it backs).
    pub name: String,
    /// Its first address.
    pub base: u64,
    /// Its bytes.
    pub data: Vec<u8>,
}

/// Where an address fell relative to the allocations.
#[derive(Clone, Debug, PartialEq)]
pub struct Miss {
    /// The nearest allocation: its name, base and size; `None` when there is none.
    pub nearest: Option<(String, u64, u64)>,
}

impl std::fmt::Display for Miss {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.nearest {
            Some((name, base, size)) => write!(
                f,
                "nearest allocation `{name}` [{base:#x}, {:#x}) ({size} bytes)",
                base + size
            ),
            None => f.write_str("no allocations"),
        }
    }
}

/// The device's global memory: allocations at distinct, gapped addresses.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GlobalMemory {
    allocs: Vec<Allocation>,
}

impl GlobalMemory {
    /// Empty memory.
    pub fn new() -> GlobalMemory {
        GlobalMemory::default()
    }

    /// Adds an allocation holding `data` and returns its base address.
    pub fn alloc(&mut self, name: impl Into<String>, data: Vec<u8>) -> u64 {
        let base = match self.allocs.last() {
            Some(a) => (a.base + a.data.len() as u64 + GLOBAL_GAP).next_multiple_of(GLOBAL_ALIGN),
            None => GLOBAL_BASE,
        };
        self.allocs.push(Allocation {
            name: name.into(),
            base,
            data,
        });
        base
    }

    /// The allocation starting at `base`.
    pub fn get(&self, base: u64) -> Option<&Allocation> {
        self.allocs.iter().find(|a| a.base == base)
    }

    /// All allocations.
    pub fn allocations(&self) -> &[Allocation] {
        &self.allocs
    }

    /// Takes the allocations out (the launch hands them back to its caller).
    pub fn into_allocations(self) -> Vec<Allocation> {
        self.allocs
    }

    fn locate(&self, addr: u64, len: u64) -> Result<(usize, usize), Miss> {
        // Allocations are in increasing address order.
        let i = self.allocs.partition_point(|a| a.base <= addr);
        if i > 0 {
            let a = &self.allocs[i - 1];
            let size = a.data.len() as u64;
            if addr >= a.base && addr.checked_add(len).is_some_and(|e| e <= a.base + size) {
                return Ok((i - 1, (addr - a.base) as usize));
            }
        }
        let nearest = [i.checked_sub(1), Some(i)]
            .into_iter()
            .flatten()
            .filter_map(|k| self.allocs.get(k))
            .min_by_key(|a| {
                let end = a.base + a.data.len() as u64;
                if addr < a.base {
                    a.base - addr
                } else {
                    addr.saturating_sub(end)
                }
            })
            .map(|a| (a.name.clone(), a.base, a.data.len() as u64));
        Err(Miss { nearest })
    }

    /// Reads `out.len()` bytes at `addr`.
    pub fn read(&self, addr: u64, out: &mut [u8]) -> Result<(), Miss> {
        let (k, off) = self.locate(addr, out.len() as u64)?;
        out.copy_from_slice(&self.allocs[k].data[off..off + out.len()]);
        Ok(())
    }

    /// Writes `bytes` at `addr`.
    pub fn write(&mut self, addr: u64, bytes: &[u8]) -> Result<(), Miss> {
        let (k, off) = self.locate(addr, bytes.len() as u64)?;
        self.allocs[k].data[off..off + bytes.len()].copy_from_slice(bytes);
        Ok(())
    }

    /// Whether `[addr, addr+len)` lies inside one allocation.
    pub fn contains(&self, addr: u64, len: u64) -> bool {
        self.locate(addr, len).is_ok()
    }
}
