//! Building a [`Llama`] from a GGUF file.

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
        // GGML dims are fastest-varying first: a [d_in, d_out] weight is d_out rows of d_in.
        let matrix = |name: &str| -> ModelResult<Tensor<B, 2>> {
            let (values, dims) = file.tensor_f32(name)?;
            if dims.len() != 2 {
                return Err(ModelError::Format(format!("{name} has dims {dims:?}, expected 2")));
            }
            Ok(Tensor::from_data(TensorData::new(values, [dims[1], dims[0]]), device))
        };
        let projection = |name: &str| matrix(name).map(|w| linear(w.transpose()));
        let norm = |name: &str| -> ModelResult<RmsNorm<B>> {
            let (values, dims) = file.tensor_f32(name)?;
            let weight = Tensor::from_data(TensorData::new(values, [dims[0]]), device);
            Ok(RmsNorm { weight: Param::from_tensor(weight), eps: config.norm_eps })
        };
        let mut layers = Vec::with_capacity(config.layers);
        for i in 0..config.layers {
            let name = |part: &str| format!("blk.{i}.{part}.weight");
            layers.push(LlamaLayer {
                attn_norm: norm(&name("attn_norm"))?,
                q: projection(&name("attn_q"))?,
                k: projection(&name("attn_k"))?,
                v: projection(&name("attn_v"))?,
                o: projection(&name("attn_output"))?,
                attention: plan.for_layer(i).init(device)?,
                ffn_norm: norm(&name("ffn_norm"))?,
                gate: projection(&name("ffn_gate"))?,
                up: projection(&name("ffn_up"))?,
                down: projection(&name("ffn_down"))?,
            });
        }
        if file.tensors.contains_key("output.weight") {
            return Err(ModelError::Format("untied output.weight is not supported yet".into()));
        }
        Ok(Self {
            embedding: Param::from_tensor(matrix("token_embd.weight")?),
            layers,
            norm: norm("output_norm.weight")?,
            config,
        })
    }
}
