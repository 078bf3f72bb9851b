//! HashAttention's learned mappings: queries and keys to bit signatures.

use std::path::Path;

use burn::config::Config;
use burn::module::Module;
use burn::record::{FullPrecisionSettings, NamedMpkFileRecorder, Recorder};
use burn::tensor::{backend::Backend, Int, Tensor};

use super::check;
use super::mlp::{HashActivation, HeadwiseMlp, HeadwiseMlpConfig};
use super::signature::{matching_bits, pack_signs, words_for_bits};
use crate::error::{AttnError, AttnResult};
use crate::kernels;

/// Config of a [`HashMapping`]. Defaults follow the paper: 3 layers, 128 wide, 32 bits, SiLU.
#[derive(Config, Debug)]
pub struct HashMappingConfig {
    /// Dimension of queries and keys.
    pub head_dim: usize,
    /// Query heads; each has its own query MLP.
    pub query_heads: usize,
    /// Heads of the key MLPs: `query_heads` (a key signature per query head, as in the
    /// paper's code) or the number of KV heads (signatures shared within a GQA group).
    pub key_heads: usize,
    /// Signature bits, a positive multiple of 32.
    #[config(default = 32)]
    pub bits: usize,
    /// Width of the hidden layers.
    #[config(default = 128)]
    pub hidden: usize,
    /// Linear layers per MLP.
    #[config(default = 3)]
    pub layers: usize,
    /// Non-linearity between layers.
    #[config(default = "HashActivation::Silu")]
    pub activation: HashActivation,
}

/// Two MLPs per head that map post-RoPE queries and keys to `bits` real codes, whose signs
/// are the signatures.
#[derive(Module, Debug)]
pub struct HashMapping<B: Backend> {
    /// Query MLPs, `query_heads` heads.
    pub query: HeadwiseMlp<B>,
    /// Key MLPs, `key_heads` heads.
    pub key: HeadwiseMlp<B>,
}

impl HashMappingConfig {
    /// Checks bits and heads.
    pub fn validate(&self) -> AttnResult<()> {
        words_for_bits(self.bits)?;
        if self.key_heads == 0 || !self.query_heads.is_multiple_of(self.key_heads) {
            return Err(AttnError::HeadsNotDivisible {
                query_heads: self.query_heads,
                kv_heads: self.key_heads,
            });
        }
        Ok(())
    }

    fn mlp(&self, heads: usize) -> HeadwiseMlpConfig {
        HeadwiseMlpConfig::new(heads, self.head_dim, self.bits)
            .with_hidden(self.hidden)
            .with_layers(self.layers)
            .with_activation(self.activation)
    }

    /// Creates the mappings with random weights.
    pub fn init<B: Backend>(&self, device: &B::Device) -> AttnResult<HashMapping<B>> {
        self.validate()?;
        Ok(HashMapping {
            query: self.mlp(self.query_heads).init(device)?,
            key: self.mlp(self.key_heads).init(device)?,
        })
    }

    /// Loads mappings saved by [`HashMapping::save`] (a Burn named-MessagePack record).
    ///
    /// The file must be large enough for the config's weights, and the record must have the
    /// config's shapes and finite weights; errors name the file.
    pub fn load<B: Backend>(&self, path: impl AsRef<Path>, device: &B::Device) -> AttnResult<HashMapping<B>> {
        self.validate()?;
        let file = check::record_file(self, path.as_ref())?;
        let record: HashMappingRecord<B> =
            Recorder::<B>::load(&recorder(), file.clone(), device).map_err(|e| file_error(&file, e))?;
        check::check_record(self, &record, &file)?;
        Ok(self.init::<B>(device)?.load_record(record))
    }
}

impl<B: Backend> HashMapping<B> {
    /// Real-valued query codes `[batch, query_heads, len, bits]` from
    /// `q: [batch, query_heads, len, head_dim]` (what training relaxes with `tanh`).
    pub fn query_codes(&self, q: Tensor<B, 4>) -> Tensor<B, 4> {
        self.query.forward(q)
    }

    /// Real-valued key codes `[batch, key_heads, len, bits]`.
    ///
    /// `k`: `[batch, kv_heads, len, head_dim]`; when the mapping has more key heads than
    /// `kv_heads` (a signature per query head), each KV head's keys feed its group's MLPs.
    pub fn key_codes(&self, k: Tensor<B, 4>) -> AttnResult<Tensor<B, 4>> {
        let key_heads = self.key_heads();
        let [b, kv_heads, t, d] = k.dims();
        if kv_heads == 0 || !key_heads.is_multiple_of(kv_heads) {
            return Err(AttnError::HeadsNotDivisible { query_heads: key_heads, kv_heads });
        }
        let groups = key_heads / kv_heads;
        let k = k.reshape([b, kv_heads, 1, t, d]).expand([b, kv_heads, groups, t, d]);
        Ok(self.key.forward(k.reshape([b, key_heads, t, d])))
    }

    /// Packed query signatures `[batch, query_heads, len, bits / 32]`. On a CubeCL backend
    /// a few tokens (decoding) take one fused kernel (see [`kernels::hash_signatures`]).
    pub fn query_signatures(&self, q: Tensor<B, 4>) -> AttnResult<Tensor<B, 4, Int>> {
        if q.dims()[1] == self.query_heads() {
            if let Some(signatures) = kernels::hash_signatures(&q, &self.query) {
                return Ok(signatures);
            }
        }
        pack_signs(self.query_codes(q))
    }

    /// Packed key signatures `[batch, key_heads, len, bits / 32]` of
    /// `k: [batch, kv_heads, len, head_dim]` (see [`key_codes`](Self::key_codes)).
    pub fn key_signatures(&self, k: Tensor<B, 4>) -> AttnResult<Tensor<B, 4, Int>> {
        let kv_heads = k.dims()[1];
        if kv_heads > 0 && self.key_heads().is_multiple_of(kv_heads) {
            if let Some(signatures) = kernels::hash_signatures(&k, &self.key) {
                return Ok(signatures);
            }
        }
        pack_signs(self.key_codes(k)?)
    }

    /// Matching bits of queries against cached key signatures,
    /// `[batch, query_heads, query_len, kv_len]`.
    pub fn scores(&self, q: Tensor<B, 4>, key_signatures: Tensor<B, 4, Int>) -> AttnResult<Tensor<B, 4>> {
        Ok(matching_bits(self.query_signatures(q)?, key_signatures))
    }

    /// Heads of the query MLPs.
    pub fn query_heads(&self) -> usize {
        self.query.layers[0].weight.dims()[0]
    }

    /// Signature bits (the width of the MLPs' output).
    pub fn bits(&self) -> usize {
        self.query.layers.last().map_or(0, |l| l.weight.dims()[2])
    }

    /// Heads of the key MLPs.
    pub fn key_heads(&self) -> usize {
        self.key.layers[0].weight.dims()[0]
    }

    /// Saves the weights to `path` (Burn's named MessagePack; the extension `.mpk` is
    /// added). Load with [`HashMappingConfig::load`] and the same config.
    pub fn save(self, path: impl AsRef<Path>) -> AttnResult<()> {
        let path = path.as_ref();
        self.save_file(path.to_path_buf(), &recorder()).map_err(|e| file_error(path, e))
    }
}

fn recorder() -> NamedMpkFileRecorder<FullPrecisionSettings> {
    NamedMpkFileRecorder::<FullPrecisionSettings>::new()
}

fn file_error(path: &Path, error: impl std::fmt::Display) -> AttnError {
    AttnError::File { path: path.display().to_string(), message: error.to_string() }
}
