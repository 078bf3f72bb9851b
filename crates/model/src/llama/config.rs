//! Sizes of a Llama-family model, read from GGUF metadata.

use serde::{Deserialize, Serialize};

use crate::error::{ModelError, ModelResult};
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
    /// Reads `llama.*` (or `<architecture>.*`) metadata and checks it ([`Self::validate`]).
    pub fn from_gguf(file: &GgufFile) -> ModelResult<Self> {
        let arch = file.string("general.architecture").unwrap_or("llama").to_string();
        let key = |k: &str| format!("{arch}.{k}");
        let size = |v: u64, k: &str| {
            usize::try_from(v).map_err(|_| ModelError::Config(format!("{} = {v} is too large", key(k))))
        };
        let uint = |k: &str| size(file.uint(&key(k))?, k);
        let optional = |k: &str, default: usize| match file.optional_uint(&key(k))? {
            Some(v) => size(v, k),
            None => Ok(default),
        };
        let heads = uint("attention.head_count")?;
        let tokens = file.strings("tokenizer.ggml.tokens").map(|t| t.len()).ok();
        let vocab_size = match (file.optional_uint(&key("vocab_size"))?, tokens) {
            (Some(v), _) => size(v, "vocab_size")?,
            (None, Some(n)) => n,
            (None, None) => {
                return Err(ModelError::Missing(format!("{} or tokenizer.ggml.tokens", key("vocab_size"))))
            }
        };
        if let Some(n) = tokens.filter(|&n| n > vocab_size) {
            return Err(ModelError::Config(format!(
                "the tokenizer has {n} tokens, more than the vocabulary of {vocab_size}"
            )));
        }
        let config = Self {
            vocab_size,
            d_model: uint("embedding_length")?,
            layers: uint("block_count")?,
            heads,
            kv_heads: optional("attention.head_count_kv", heads)?,
            d_ff: uint("feed_forward_length")?,
            rope_theta: file.optional_float(&key("rope.freq_base"))?.unwrap_or(10_000.0),
            norm_eps: file.optional_float(&key("attention.layer_norm_rms_epsilon"))?.unwrap_or(1e-5),
            context_length: optional("context_length", 2048)?,
        };
        config.validate()?;
        Ok(config)
    }

    /// Checks that every size is positive, the heads divide the width (into an even head
    /// dimension, for RoPE's pairs) and the KV heads divide the heads, and that the RoPE
    /// base and the RMS epsilon are finite and positive.
    pub fn validate(&self) -> ModelResult<()> {
        let sizes = [
            ("vocabulary (vocab_size)", self.vocab_size),
            ("embedding width (embedding_length)", self.d_model),
            ("layer count (block_count)", self.layers),
            ("head count (attention.head_count)", self.heads),
            ("KV head count (attention.head_count_kv)", self.kv_heads),
            ("feed-forward width (feed_forward_length)", self.d_ff),
            ("context length (context_length)", self.context_length),
        ];
        if let Some((name, _)) = sizes.iter().find(|(_, v)| *v == 0) {
            return Err(ModelError::Config(format!("the {name} is 0")));
        }
        if !self.d_model.is_multiple_of(self.heads) || !(self.d_model / self.heads).is_multiple_of(2) {
            return Err(ModelError::Config(format!(
                "{} heads do not split the embedding width {} into even head dimensions",
                self.heads, self.d_model
            )));
        }
        if !self.heads.is_multiple_of(self.kv_heads) {
            return Err(ModelError::Config(format!(
                "{} heads are not a multiple of {} KV heads",
                self.heads, self.kv_heads
            )));
        }
        for (name, value) in [
            ("RoPE base (rope.freq_base)", self.rope_theta),
            ("RMS norm epsilon (attention.layer_norm_rms_epsilon)", self.norm_eps),
        ] {
            if !(value.is_finite() && value > 0.0) {
                return Err(ModelError::Config(format!(
                    "the {name} is {value}, not a finite positive number"
                )));
            }
        }
        Ok(())
    }

    /// Dimension of one head.
    pub fn head_dim(&self) -> usize {
        self.d_model / self.heads
    }
}
