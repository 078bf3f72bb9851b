//! Reading GGUF's little-endian fields, each checked against the bytes left: a count or a
//! length is refused when what it declares cannot fit in the rest of the file, before
//! anything is allocated for it, and nested arrays are refused past a small depth (without
//! recursing further), so that no header, however corrupt, asks for more memory than the
//! file justifies or overflows the stack.

use super::reader::GgufValue;
use crate::error::{ModelError, ModelResult};

/// Arrays nested deeper than this are refused (real files nest none).
pub const MAX_ARRAY_DEPTH: usize = 4;

/// A position in a GGUF file held in memory.
pub struct Cursor<'a> {
    bytes: &'a [u8],
    /// Bytes read so far.
    pub at: usize,
}

fn format(message: String) -> ModelError {
    ModelError::Format(message)
}

/// Fewest bytes a metadata value of type `kind` occupies (an unknown type: `None`).
fn min_value_size(kind: u32) -> Option<usize> {
    Some(match kind {
        0 | 1 | 7 => 1,
        2 | 3 => 2,
        4..=6 => 4,
        8 | 10..=12 => 8,
        9 => 12,
        _ => return None,
    })
}

impl<'a> Cursor<'a> {
    /// A cursor at the start of `bytes`.
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, at: 0 }
    }

    /// Bytes left after the cursor.
    pub fn remaining(&self) -> usize {
        self.bytes.len() - self.at
    }

    /// The next `n` bytes of `what`.
    pub fn take(&mut self, n: usize, what: &str) -> ModelResult<&'a [u8]> {
        if n > self.remaining() {
            return Err(format(format!(
                "{what} needs {n} bytes at byte {}, but the file ends {} bytes later",
                self.at,
                self.remaining()
            )));
        }
        let slice = &self.bytes[self.at..self.at + n];
        self.at += n;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self, what: &str) -> ModelResult<[u8; N]> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }

    /// A u32 field.
    pub fn u32(&mut self, what: &str) -> ModelResult<u32> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    /// A u64 field.
    pub fn u64(&mut self, what: &str) -> ModelResult<u64> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// A count of items of `what`, each at least `min_size` bytes: refused when that many
    /// cannot fit in the bytes left.
    pub fn count(&mut self, what: &str, min_size: usize) -> ModelResult<usize> {
        let at = self.at;
        let n = self.u64(what)?;
        match usize::try_from(n) {
            Ok(n) if n <= self.remaining() / min_size.max(1) => Ok(n),
            _ => Err(format(format!(
                "{what} count {n} at byte {at} cannot fit in the {} bytes left",
                self.remaining()
            ))),
        }
    }

    /// A length-prefixed UTF-8 string.
    pub fn string(&mut self, what: &str) -> ModelResult<String> {
        let len = self.count(&format!("{what} length"), 1)?;
        let bytes = self.take(len, what)?;
        String::from_utf8(bytes.to_vec()).map_err(|e| format(format!("{what} is not UTF-8: {e}")))
    }

    /// A metadata value of type `kind`, `what` naming it in errors.
    pub fn value(&mut self, kind: u32, what: &str) -> ModelResult<GgufValue> {
        self.value_at_depth(kind, what, 0)
    }

    fn value_at_depth(&mut self, kind: u32, what: &str, depth: usize) -> ModelResult<GgufValue> {
        Ok(match kind {
            0 => GgufValue::Uint(self.array::<1>(what)?[0] as u64),
            1 => GgufValue::Int(self.array::<1>(what)?[0] as i8 as i64),
            2 => GgufValue::Uint(u16::from_le_bytes(self.array(what)?) as u64),
            3 => GgufValue::Int(i16::from_le_bytes(self.array(what)?) as i64),
            4 => GgufValue::Uint(self.u32(what)? as u64),
            5 => GgufValue::Int(i32::from_le_bytes(self.array(what)?) as i64),
            6 => GgufValue::Float(f32::from_le_bytes(self.array(what)?) as f64),
            7 => GgufValue::Bool(self.array::<1>(what)?[0] != 0),
            8 => GgufValue::String(self.string(what)?),
            9 => {
                if depth >= MAX_ARRAY_DEPTH {
                    return Err(format(format!("{what} nests arrays deeper than {MAX_ARRAY_DEPTH} levels")));
                }
                let item = self.u32(what)?;
                let min_size = min_value_size(item)
                    .ok_or_else(|| format(format!("{what} is an array of unknown metadata type {item}")))?;
                let len = self.count(&format!("{what} item"), min_size)?;
                // Grown as items are read: memory follows the bytes actually consumed.
                let mut items = Vec::new();
                for _ in 0..len {
                    items.push(self.value_at_depth(item, what, depth + 1)?);
                }
                GgufValue::Array(items)
            }
            10 => GgufValue::Uint(self.u64(what)?),
            11 => GgufValue::Int(i64::from_le_bytes(self.array(what)?)),
            12 => GgufValue::Float(f64::from_le_bytes(self.array(what)?)),
            other => return Err(format(format!("{what} has unknown metadata type {other}"))),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The payload of a type-9 value that is `levels` arrays deep.
    fn nested_arrays(levels: usize) -> Vec<u8> {
        let mut bytes = Vec::new();
        for _ in 1..levels {
            bytes.extend(9u32.to_le_bytes());
            bytes.extend(1u64.to_le_bytes());
        }
        bytes.extend(0u32.to_le_bytes());
        bytes.extend(0u64.to_le_bytes());
        bytes
    }

    #[test]
    fn counts_that_cannot_fit_are_refused_before_allocation() {
        let mut bytes = (1u64 << 62).to_le_bytes().to_vec();
        bytes.extend([0; 64]);
        let error = Cursor::new(&bytes).count("tensor", 24).unwrap_err().to_string();
        assert!(error.contains("tensor count 4611686018427387904"), "{error}");
        let mut fits = 2u64.to_le_bytes().to_vec();
        fits.extend([0; 48]);
        assert_eq!(Cursor::new(&fits).count("tensor", 24).ok(), Some(2));
    }

    #[test]
    fn arrays_nest_to_the_limit_and_no_further() {
        assert!(Cursor::new(&nested_arrays(MAX_ARRAY_DEPTH)).value(9, "k").is_ok());
        let error = Cursor::new(&nested_arrays(MAX_ARRAY_DEPTH + 1)).value(9, "k").unwrap_err();
        assert!(error.to_string().contains("deeper than"), "{error}");
        let deep = nested_arrays(1_000_000);
        assert!(Cursor::new(&deep).value(9, "k").is_err());
    }
}
