//! Sizes of a Llama-family model, read from GGUF metadata.

use serde::{Deserialize, Serialize};

use crate::error::ModelResult;
use crate::gguf::GgufFile;

/// Sizes and constants of a Llama-family decoder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LlamaConfig {
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Model width.
    pub d_model: usize,
    /// Decoder layers.
    pub layers: usize,
    /// Query heads.
    pub heads: usize,
    /// Key/value heads (GQA).
    pub kv_heads: usize,
    /// Hidden width of the SwiGLU MLP.
    pub d_ff: usize,
    /// RoPE base.
    pub rope_theta: f64,
    /// RMSNorm epsilon.
    pub norm_eps: f64,
    /// Trained context length.
    pub context_length: usize,
}

impl LlamaConfig {
    /// Reads `llama.*` (or `<architecture>.*`) metadata.
    pub fn from_gguf(file: &GgufFile) -> ModelResult<Self> {
        let arch = file.string("general.architecture").unwrap_or("llama").to_string();
        let key = |k: &str| format!("{arch}.{k}");
        let uint = |k: &str| file.uint(&key(k)).map(|v| v as usize);
        let heads = uint("attention.head_count")?;
        let vocab_size = match uint("vocab_size") {
            Ok(v) => v,
            Err(_) => file.strings("tokenizer.ggml.tokens")?.len(),
        };
        Ok(Self {
            vocab_size,
            d_model: uint("embedding_length")?,
            layers: uint("block_count")?,
            heads,
            kv_heads: uint("attention.head_count_kv").unwrap_or(heads),
            d_ff: uint("feed_forward_length")?,
            rope_theta: file.float(&key("rope.freq_base")).unwrap_or(10_000.0),
            norm_eps: file.float(&key("attention.layer_norm_rms_epsilon")).unwrap_or(1e-5),
            context_length: uint("context_length").unwrap_or(2048),
        })
    }

    /// Dimension of one head.
    pub fn head_dim(&self) -> usize {
        self.d_model / self.heads
    }
}
