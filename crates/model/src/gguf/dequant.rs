//! Dequantisation of the GGML tensor types a small Llama GGUF uses.

use half::f16;

/// GGML tensor types with a dequantiser here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GgmlType {
    /// 32-bit floats.
    F32,
    /// 16-bit floats.
    F16,
    /// Blocks of 32: f16 scale, 16 bytes of 4-bit values, `x = d * (q - 8)`.
    Q4_0,
    /// Blocks of 32: f16 scale and minimum, 16 bytes of 4-bit values, `x = d * q + m`.
    Q4_1,
    /// Blocks of 32: f16 scale, 32 signed bytes, `x = d * q`.
    Q8_0,
}

/// Values per quantisation block.
const BLOCK: usize = 32;

impl GgmlType {
    /// The type of a GGML type id, if supported.
    pub fn from_id(id: u32) -> Option<Self> {
        Some(match id {
            0 => Self::F32,
            1 => Self::F16,
            2 => Self::Q4_0,
            3 => Self::Q4_1,
            8 => Self::Q8_0,
            _ => return None,
        })
    }

    /// Bytes that `len` values occupy.
    pub fn bytes_for(&self, len: usize) -> usize {
        match self {
            Self::F32 => 4 * len,
            Self::F16 => 2 * len,
            Self::Q4_0 => len / BLOCK * 18,
            Self::Q4_1 => len / BLOCK * 20,
            Self::Q8_0 => len / BLOCK * 34,
        }
    }
}

/// Decodes `len` values of type `kind` from `bytes`.
pub fn dequantize(kind: GgmlType, bytes: &[u8], len: usize) -> Vec<f32> {
    let half = |b: &[u8]| f16::from_le_bytes([b[0], b[1]]).to_f32();
    let mut out = Vec::with_capacity(len);
    match kind {
        GgmlType::F32 => {
            out.extend(bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])))
        }
        GgmlType::F16 => out.extend(bytes.chunks_exact(2).map(half)),
        GgmlType::Q8_0 => {
            for block in bytes.chunks_exact(34) {
                let d = half(block);
                out.extend(block[2..].iter().map(|&q| d * (q as i8) as f32));
            }
        }
        GgmlType::Q4_0 | GgmlType::Q4_1 => {
            let (step, offset_of) = if kind == GgmlType::Q4_0 { (18, None) } else { (20, Some(4)) };
            for block in bytes.chunks_exact(step) {
                let d = half(block);
                let (min, start) = match offset_of {
                    Some(at) => (half(&block[2..]), at),
                    None => (-8.0 * d, 2),
                };
                let quants = &block[start..start + 16];
                out.extend(quants.iter().map(|&q| d * (q & 0x0F) as f32 + min));
                out.extend(quants.iter().map(|&q| d * (q >> 4) as f32 + min));
            }
        }
    }
    out.truncate(len);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f16_bytes(x: f32) -> [u8; 2] {
        f16::from_f32(x).to_le_bytes()
    }

    #[test]
    fn q8_0_block_is_scale_times_signed_bytes() {
        let mut block = f16_bytes(0.5).to_vec();
        block.extend((0..32).map(|i| (i as i8 - 16) as u8));
        let values = dequantize(GgmlType::Q8_0, &block, 32);
        let want: Vec<f32> = (0..32).map(|i| 0.5 * (i as f32 - 16.0)).collect();
        assert_eq!(values, want);
    }

    #[test]
    fn q4_1_low_nibbles_come_first_then_high() {
        let mut block = f16_bytes(0.25).to_vec();
        block.extend(f16_bytes(-1.0));
        block.extend((0..16).map(|i| (i as u8) | ((15 - i as u8) << 4)));
        let values = dequantize(GgmlType::Q4_1, &block, 32);
        let want: Vec<f32> = (0..16)
            .map(|i| 0.25 * i as f32 - 1.0)
            .chain((0..16).map(|i| 0.25 * (15 - i) as f32 - 1.0))
            .collect();
        assert_eq!(values, want);
        assert_eq!(GgmlType::Q4_1.bytes_for(64), 40);
    }

    #[test]
    fn q4_0_is_centred_on_eight() {
        let mut block = f16_bytes(2.0).to_vec();
        block.extend([0x8F; 16]);
        let values = dequantize(GgmlType::Q4_0, &block, 32);
        assert!(values[..16].iter().all(|&v| v == 14.0) && values[16..].iter().all(|&v| v == 0.0));
    }
}
