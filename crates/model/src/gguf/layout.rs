//! Byte layouts of GGML tensor types: what a tensor of a type and shape occupies, known
//! also for the types without a dequantiser here, so that every tensor's byte range can be
//! checked when the file is read.

/// How a GGML type stores values: `block` consecutive values of a row in `bytes` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TypeLayout {
    /// The type's name in GGML.
    pub name: &'static str,
    /// Values per block; a row's length must be a multiple of it.
    pub block: usize,
    /// Bytes per block.
    pub bytes: usize,
}

/// GGML type ids whose layout is known here, with their layouts.
const LAYOUTS: [(u32, TypeLayout); 19] = [
    (0, layout("F32", 1, 4)),
    (1, layout("F16", 1, 2)),
    (2, layout("Q4_0", 32, 18)),
    (3, layout("Q4_1", 32, 20)),
    (6, layout("Q5_0", 32, 22)),
    (7, layout("Q5_1", 32, 24)),
    (8, layout("Q8_0", 32, 34)),
    (9, layout("Q8_1", 32, 36)),
    (10, layout("Q2_K", 256, 84)),
    (11, layout("Q3_K", 256, 110)),
    (12, layout("Q4_K", 256, 144)),
    (13, layout("Q5_K", 256, 176)),
    (14, layout("Q6_K", 256, 210)),
    (15, layout("Q8_K", 256, 292)),
    (24, layout("I8", 1, 1)),
    (25, layout("I16", 1, 2)),
    (26, layout("I32", 1, 4)),
    (27, layout("I64", 1, 8)),
    (28, layout("F64", 1, 8)),
];

const fn layout(name: &'static str, block: usize, bytes: usize) -> TypeLayout {
    TypeLayout { name, block, bytes }
}

impl TypeLayout {
    /// The layout of GGML type `id`, if known.
    pub fn of(id: u32) -> Option<Self> {
        LAYOUTS.iter().find(|(i, _)| *i == id).map(|(_, l)| *l)
    }

    /// Bytes of a tensor of `dims` (fastest-varying first), or why it cannot have this type:
    /// its row length is not a multiple of the block, or its size overflows.
    pub fn size(&self, dims: &[usize]) -> Result<usize, String> {
        let row = dims.first().copied().unwrap_or(1);
        if !row.is_multiple_of(self.block) {
            return Err(format!(
                "its rows of {row} values are not whole {} blocks of {}",
                self.name, self.block
            ));
        }
        dims.iter()
            .try_fold(1usize, |n, &d| n.checked_mul(d))
            .and_then(|len| (len / self.block).checked_mul(self.bytes))
            .ok_or_else(|| format!("its shape {dims:?} overflows a byte count"))
    }
}

/// A readable name for GGML type `id`: its name when known, else the number.
pub fn type_name(id: u32) -> String {
    TypeLayout::of(id).map_or_else(|| format!("unknown type {id}"), |l| l.name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_follow_blocks_and_refuse_partial_blocks() {
        let q4_1 = TypeLayout::of(3).unwrap();
        assert_eq!(q4_1.size(&[64, 3]), Ok(3 * 2 * 20));
        assert!(q4_1.size(&[48, 3]).is_err());
        assert_eq!(TypeLayout::of(0).unwrap().size(&[5]), Ok(20));
        assert!(TypeLayout::of(0).unwrap().size(&[usize::MAX, 2]).is_err());
        assert_eq!(type_name(14), "Q6_K");
        assert_eq!(type_name(99), "unknown type 99");
    }
}
