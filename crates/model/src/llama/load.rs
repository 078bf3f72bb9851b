//! Building a [`Llama`] from a GGUF file: every tensor's shape checked against the config
//! before it is dequantised, its values checked finite after.

use burn::module::Param;
use burn::tensor::{backend::Backend, Tensor, TensorData};

use super::config::LlamaConfig;
use super::model::{linear, AttentionPlan, Llama, LlamaLayer, RmsNorm};
use crate::error::{ModelError, ModelResult};
use crate::gguf::GgufFile;

impl<B: Backend> Llama<B> {
    /// Loads the weights of `file` (dequantised to f32) with the attention of `plan`.
    pub fn from_gguf(file: &GgufFile, plan: &AttentionPlan, device: &B::Device) -> ModelResult<Self> {
        let config = LlamaConfig::from_gguf(file)?;
        plan.check(config.layers)?;
        if file.tensors.contains_key("output.weight") {
            return Err(ModelError::Format("untied output.weight is not supported yet".into()));
        }
        let c = &config;
        let (q_width, kv_width) = (c.heads * c.head_dim(), c.kv_heads * c.head_dim());
        // GGML dims are fastest-varying first: a [d_in, d_out] weight is d_out rows of d_in.
        let matrix = |name: &str, d_in: usize, d_out: usize, meaning: &str| -> ModelResult<Tensor<B, 2>> {
            let values = checked_tensor(file, name, &[d_in, d_out], meaning)?;
            Ok(Tensor::from_data(TensorData::new(values, [d_out, d_in]), device))
        };
        // Transposed on the host to a contiguous `[d_in, d_out]`: a transposed view made the
        // CPU backend copy every weight on every call (most of a decode step's time).
        let projection = |name: &str, d_in: usize, d_out: usize, meaning: &str| -> ModelResult<_> {
            let rows = checked_tensor(file, name, &[d_in, d_out], meaning)?;
            let mut values = vec![0.0; rows.len()];
            for (o, row) in rows.chunks_exact(d_in).enumerate() {
                for (i, &value) in row.iter().enumerate() {
                    values[i * d_out + o] = value;
                }
            }
            Ok(linear(Tensor::from_data(TensorData::new(values, [d_in, d_out]), device)))
        };
        let norm = |name: &str| -> ModelResult<RmsNorm<B>> {
            let values = checked_tensor(file, name, &[c.d_model], "embedding width")?;
            let weight = Tensor::from_data(TensorData::new(values, [c.d_model]), device);
            Ok(RmsNorm { weight: Param::from_tensor(weight), eps: c.norm_eps })
        };
        let (d, ff) = (c.d_model, c.d_ff);
        let mut layers = Vec::new();
        for i in 0..c.layers {
            let name = |part: &str| format!("blk.{i}.{part}.weight");
            layers.push(LlamaLayer {
                attn_norm: norm(&name("attn_norm"))?,
                q: projection(&name("attn_q"), d, q_width, "embedding width x heads * head_dim")?,
                k: projection(&name("attn_k"), d, kv_width, "embedding width x KV heads * head_dim")?,
                v: projection(&name("attn_v"), d, kv_width, "embedding width x KV heads * head_dim")?,
                o: projection(&name("attn_output"), q_width, d, "heads * head_dim x embedding width")?,
                attention: plan.for_layer(i).init(device)?,
                ffn_norm: norm(&name("ffn_norm"))?,
                gate: projection(&name("ffn_gate"), d, ff, "embedding width x feed-forward width")?,
                up: projection(&name("ffn_up"), d, ff, "embedding width x feed-forward width")?,
                down: projection(&name("ffn_down"), ff, d, "feed-forward width x embedding width")?,
            });
        }
        let embedding = matrix("token_embd.weight", d, c.vocab_size, "embedding width x vocabulary")?;
        Ok(Self {
            embedding: Param::from_tensor(embedding),
            layers,
            norm: norm("output_norm.weight")?,
            config,
        })
    }
}

/// The values of tensor `name`, which must have GGML dims `dims` (`meaning` says what the
/// config makes them) and hold only finite values.
fn checked_tensor(file: &GgufFile, name: &str, dims: &[usize], meaning: &str) -> ModelResult<Vec<f32>> {
    let info = file.tensors.get(name).ok_or_else(|| ModelError::Missing(format!("tensor {name}")))?;
    if info.dims != dims {
        return Err(ModelError::Tensor {
            name: name.into(),
            problem: format!("has shape {:?}, the config needs {dims:?} ({meaning})", info.dims),
        });
    }
    let (values, _) = file.tensor_f32(name)?;
    if let Some(at) = values.iter().position(|v| !v.is_finite()) {
        return Err(ModelError::Tensor {
            name: name.into(),
            problem: format!("value {at} is {}: weights must be finite", values[at]),
        });
    }
    Ok(values)
}
