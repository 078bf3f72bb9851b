//! A tiny valid Llama GGUF written in memory (2 layers, width 64, 4 heads over 2 KV heads,
//! every supported tensor type), with the position of each header field, so that tests can
//! corrupt exactly the counts, lengths, dims, types and offsets a reader must distrust.

use burn_sparse_attn_core::rng::SplitMix64;
use half::f16;

/// A header field of the tiny file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// The tensor count, metadata count or an array length (u64).
    Count,
    /// The length of a string (u64).
    Length,
    /// A tensor's number of dimensions (u32).
    NDims,
    /// One dimension of a tensor (u64).
    Dim,
    /// A tensor's GGML type (u32).
    Type,
    /// A tensor's offset in the data section (u64).
    Offset,
}

impl Field {
    /// Bytes of the field.
    pub fn width(self) -> usize {
        match self {
            Field::NDims | Field::Type => 4,
            _ => 8,
        }
    }
}

/// The file and where its header fields are.
pub struct TinyGguf {
    /// The whole file.
    pub bytes: Vec<u8>,
    /// `(byte position, field)` of every header field.
    pub fields: Vec<(usize, Field)>,
    /// Where the data section starts.
    pub data_start: usize,
}

const ALIGN: usize = 32;
const D: usize = 64;
const KV: usize = 32;
const FF: usize = 96;
/// Vocabulary of the tiny model.
pub const VOCAB: usize = 40;

struct Writer {
    bytes: Vec<u8>,
    fields: Vec<(usize, Field)>,
}

impl Writer {
    fn u32(&mut self, v: u32, field: Option<Field>) {
        if let Some(f) = field {
            self.fields.push((self.bytes.len(), f));
        }
        self.bytes.extend(v.to_le_bytes());
    }

    fn u64(&mut self, v: u64, field: Option<Field>) {
        if let Some(f) = field {
            self.fields.push((self.bytes.len(), f));
        }
        self.bytes.extend(v.to_le_bytes());
    }

    fn string(&mut self, s: &str) {
        self.u64(s.len() as u64, Some(Field::Length));
        self.bytes.extend(s.as_bytes());
    }

    fn pad(&mut self) {
        self.bytes.resize(self.bytes.len().next_multiple_of(ALIGN), 0);
    }
}

/// The tensors: name, GGML dims, GGML type id.
fn tensors() -> Vec<(String, Vec<usize>, u32)> {
    let mut out = vec![("token_embd.weight".to_string(), vec![D, VOCAB], 1)];
    for i in 0..2 {
        let name = |part: &str| format!("blk.{i}.{part}.weight");
        out.extend([
            (name("attn_norm"), vec![D], 0),
            (name("attn_q"), vec![D, D], 8),
            (name("attn_k"), vec![D, KV], 2),
            (name("attn_v"), vec![D, KV], 3),
            (name("attn_output"), vec![D, D], 1),
            (name("ffn_norm"), vec![D], 0),
            (name("ffn_gate"), vec![D, FF], 8),
            (name("ffn_up"), vec![D, FF], 0),
            (name("ffn_down"), vec![FF, D], 3),
        ]);
    }
    out.push(("output_norm.weight".to_string(), vec![D], 0));
    out
}

/// Random data of `len` values of type `kind` with small finite values.
fn data(kind: u32, len: usize, rng: &mut SplitMix64) -> Vec<u8> {
    let small = |rng: &mut SplitMix64| 0.1 * rng.normal();
    let half = |x: f32| f16::from_f32(x).to_le_bytes();
    let mut out = Vec::new();
    match kind {
        0 => (0..len).for_each(|_| out.extend((1.0 + small(rng)).to_le_bytes())),
        1 => (0..len).for_each(|_| out.extend(half(small(rng)))),
        _ => {
            for _ in 0..len / 32 {
                out.extend(half(0.01));
                match kind {
                    3 => out.extend(half(-0.08)),
                    8 => {
                        out.extend((0..32).map(|_| rng.next_u64() as u8));
                        continue;
                    }
                    _ => {}
                }
                out.extend((0..16).map(|_| rng.next_u64() as u8));
            }
        }
    }
    out
}

/// Writes the tiny model.
pub fn tiny_gguf() -> TinyGguf {
    tiny_gguf_with(&[])
}

/// Writes the tiny model with the numeric metadata `overrides` (key, value) in place of
/// its defaults.
pub fn tiny_gguf_with(overrides: &[(&str, f64)]) -> TinyGguf {
    let chosen =
        |key: &str, default: f64| overrides.iter().find(|(k, _)| *k == key).map_or(default, |(_, v)| *v);
    let mut w = Writer { bytes: b"GGUF".to_vec(), fields: Vec::new() };
    w.u32(3, None);
    let tensors = tensors();
    w.u64(tensors.len() as u64, Some(Field::Count));
    let uints = [
        ("llama.embedding_length", D),
        ("llama.block_count", 2),
        ("llama.attention.head_count", 4),
        ("llama.attention.head_count_kv", 2),
        ("llama.feed_forward_length", FF),
        ("llama.context_length", 128),
        ("general.alignment", ALIGN),
    ];
    let floats = [("llama.rope.freq_base", 10_000.0f32), ("llama.attention.layer_norm_rms_epsilon", 1e-5)];
    w.u64((uints.len() + floats.len() + 2) as u64, Some(Field::Count));
    w.string("general.architecture");
    w.u32(8, None);
    w.string("llama");
    for (key, default) in uints {
        w.string(key);
        w.u32(4, None);
        w.u32(chosen(key, default as f64) as u32, None);
    }
    for (key, default) in floats {
        w.string(key);
        w.u32(6, None);
        w.bytes.extend((chosen(key, default as f64) as f32).to_le_bytes());
    }
    w.string("tokenizer.ggml.tokens");
    w.u32(9, None);
    w.u32(8, None);
    w.u64(VOCAB as u64, Some(Field::Count));
    for t in 0..VOCAB {
        w.string(&format!("t{t}"));
    }
    let mut rng = SplitMix64::new(16);
    let blobs: Vec<Vec<u8>> =
        tensors.iter().map(|(_, dims, kind)| data(*kind, dims.iter().product(), &mut rng)).collect();
    let mut offset = 0;
    for ((name, dims, kind), blob) in tensors.iter().zip(&blobs) {
        w.string(name);
        w.u32(dims.len() as u32, Some(Field::NDims));
        for &d in dims {
            w.u64(d as u64, Some(Field::Dim));
        }
        w.u32(*kind, Some(Field::Type));
        w.u64(offset as u64, Some(Field::Offset));
        offset = (offset + blob.len()).next_multiple_of(ALIGN);
    }
    w.pad();
    let data_start = w.bytes.len();
    for blob in &blobs {
        w.pad();
        w.bytes.extend(blob);
    }
    TinyGguf { bytes: w.bytes, fields: w.fields, data_start }
}
