//! Hash mappings as one safetensors file, readable by Python tools (`safetensors`,
//! PyTorch, NumPy) and embeddable in a binary.
//!
//! Tensor names ([`tensor_name`]), for layer `l`, side `query` or `key` and linear layer
//! `i` of that side's MLP (input first):
//! - `layers.{l}.{side}.{i}.weight`: `[heads, d_input, d_output]` (`y = x W + b` per head);
//! - `layers.{l}.{side}.{i}.bias`: `[heads, d_output]`.
//!
//! Stored as F32 or F16 (read as either, or BF16). The metadata entry `config`
//! ([`CONFIG_METADATA_KEY`]) holds the [`HashMappingsConfig`] as JSON (the activation
//! between layers among it).

use std::collections::HashMap;
use std::path::Path;

use burn::config::Config;
use burn::module::{Module, Param};
use burn::tensor::{backend::Backend, Tensor, TensorData};
use half::{bf16, f16};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use super::check::{self, layer_sizes};
use super::headwise_linear::HeadwiseLinear;
use super::mlp::HeadwiseMlp;
use super::{HashMapping, HashMappings, HashMappingsConfig};
use crate::error::{AttnError, AttnResult};

/// The metadata entry holding the config as JSON.
pub const CONFIG_METADATA_KEY: &str = "config";

/// Largest mappings file read (the paper's largest MLPs for a 70B model fit well within).
const MAX_FILE_BYTES: u64 = 1 << 30;

/// How weights are stored in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoredPrecision {
    /// 32-bit floats: exactly the trained weights.
    F32,
    /// 16-bit floats: half the size.
    F16,
}

/// The name of one tensor: `layers.{layer}.{side}.{linear}.{param}`.
pub fn tensor_name(layer: usize, side: &str, linear: usize, param: &str) -> String {
    format!("layers.{layer}.{side}.{linear}.{param}")
}

fn format_error(source: &str, message: impl std::fmt::Display) -> AttnError {
    AttnError::File { path: source.to_string(), message: message.to_string() }
}

impl<B: Backend> HashMappings<B> {
    /// The mappings as safetensors bytes (see the module docs for the names).
    pub fn to_safetensors(
        &self,
        config: &HashMappingsConfig,
        precision: StoredPrecision,
    ) -> AttnResult<Vec<u8>> {
        let mut tensors: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
        for (l, mapping) in self.layers.iter().enumerate() {
            for (side, mlp) in [("query", &mapping.query), ("key", &mapping.key)] {
                for (i, linear) in mlp.layers.iter().enumerate() {
                    for (param, data) in
                        [("weight", linear.weight.val().into_data()), ("bias", linear.bias.val().into_data())]
                    {
                        let shape = data.shape.to_vec();
                        let values = data
                            .convert::<f32>()
                            .to_vec::<f32>()
                            .map_err(|e| AttnError::Config(format!("reading hash mapping weights: {e:?}")))?;
                        let (dtype, bytes) = encode(&values, precision);
                        tensors.push((tensor_name(l, side, i, param), dtype, shape, bytes));
                    }
                }
            }
        }
        let views = tensors
            .iter()
            .map(|(name, dtype, shape, bytes)| {
                Ok((name.clone(), TensorView::new(*dtype, shape.clone(), bytes)?))
            })
            .collect::<Result<Vec<_>, safetensors::SafeTensorError>>()
            .map_err(|e| AttnError::Config(format!("hash mappings to safetensors: {e}")))?;
        let metadata = HashMap::from([(CONFIG_METADATA_KEY.to_string(), config.to_string())]);
        safetensors::serialize(views, Some(metadata))
            .map_err(|e| AttnError::Config(format!("hash mappings to safetensors: {e}")))
    }

    /// Writes [`HashMappings::to_safetensors`] to `path`.
    pub fn save_safetensors(
        &self,
        config: &HashMappingsConfig,
        path: impl AsRef<Path>,
        precision: StoredPrecision,
    ) -> AttnResult<()> {
        let path = path.as_ref();
        let bytes = self.to_safetensors(config, precision)?;
        std::fs::write(path, bytes).map_err(|e| format_error(&path.display().to_string(), e))
    }
}

impl HashMappingsConfig {
    /// The config stored in safetensors `bytes`, checked, without reading any weight.
    /// `source` names the bytes in errors (a path, usually).
    pub fn from_safetensors_header(bytes: &[u8], source: &str) -> AttnResult<Self> {
        let (_, metadata) = SafeTensors::read_metadata(bytes).map_err(|e| format_error(source, e))?;
        let json = metadata
            .metadata()
            .as_ref()
            .and_then(|m| m.get(CONFIG_METADATA_KEY))
            .ok_or_else(|| format_error(source, format!("no `{CONFIG_METADATA_KEY}` metadata entry")))?;
        let config = Self::load_binary(json.as_bytes()).map_err(|e| format_error(source, e))?;
        config.mapping.validate().map_err(|e| format_error(source, e))?;
        if config.layers == 0 {
            return Err(format_error(source, "mappings for 0 layers"));
        }
        Ok(config)
    }

    /// Mappings from safetensors `bytes` (written by [`HashMappings::to_safetensors`] or
    /// any tool using the same names): every tensor must be there with its config's shape
    /// and finite values, and no other tensor.
    pub fn from_safetensors<B: Backend>(
        bytes: &[u8],
        source: &str,
        device: &B::Device,
    ) -> AttnResult<(Self, HashMappings<B>)> {
        let config = Self::from_safetensors_header(bytes, source)?;
        let file = SafeTensors::deserialize(bytes).map_err(|e| format_error(source, e))?;
        let m = &config.mapping;
        let mut expected = std::collections::HashSet::new();
        let mut layers = Vec::with_capacity(config.layers);
        for l in 0..config.layers {
            let mut mlp = |side: &str, heads: usize| -> AttnResult<HeadwiseMlp<B>> {
                let mut linears = Vec::new();
                for (i, (d_in, d_out)) in layer_sizes(m).into_iter().enumerate() {
                    let (weight, bias) = (tensor_name(l, side, i, "weight"), tensor_name(l, side, i, "bias"));
                    linears.push(HeadwiseLinear {
                        weight: Param::from_tensor(read(
                            &file,
                            &weight,
                            [heads, d_in, d_out],
                            source,
                            device,
                        )?),
                        bias: Param::from_tensor(read(&file, &bias, [heads, d_out], source, device)?),
                    });
                    expected.extend([weight, bias]);
                }
                Ok(HeadwiseMlp { layers: linears, activation: m.activation })
            };
            let mapping = HashMapping { query: mlp("query", m.query_heads)?, key: mlp("key", m.key_heads)? };
            check::check_record(m, &mapping.clone().into_record(), Path::new(source))?;
            layers.push(mapping);
        }
        if let Some(extra) = file.names().into_iter().find(|name| !expected.contains(*name)) {
            return Err(format_error(
                source,
                format!("tensor {extra} is not part of mappings of this config"),
            ));
        }
        Ok((config, HashMappings { layers }))
    }

    /// Reads the config of the safetensors file `path` (see [`Self::from_safetensors_header`]).
    pub fn read_safetensors_config(path: impl AsRef<Path>) -> AttnResult<Self> {
        let path = path.as_ref();
        Self::from_safetensors_header(
            &check::read_limited(path, MAX_FILE_BYTES)?,
            &path.display().to_string(),
        )
    }

    /// Loads mappings from the safetensors file `path` (see [`Self::from_safetensors`]).
    pub fn load_safetensors<B: Backend>(
        path: impl AsRef<Path>,
        device: &B::Device,
    ) -> AttnResult<(Self, HashMappings<B>)> {
        let path = path.as_ref();
        Self::from_safetensors(
            &check::read_limited(path, MAX_FILE_BYTES)?,
            &path.display().to_string(),
            device,
        )
    }
}

fn encode(values: &[f32], precision: StoredPrecision) -> (Dtype, Vec<u8>) {
    match precision {
        StoredPrecision::F32 => (Dtype::F32, values.iter().flat_map(|v| v.to_le_bytes()).collect()),
        StoredPrecision::F16 => {
            (Dtype::F16, values.iter().flat_map(|v| f16::from_f32(*v).to_le_bytes()).collect())
        }
    }
}

/// The tensor `name` of `file` as f32, checked to have `shape`.
fn read<B: Backend, const D: usize>(
    file: &SafeTensors,
    name: &str,
    shape: [usize; D],
    source: &str,
    device: &B::Device,
) -> AttnResult<Tensor<B, D>> {
    let view = file.tensor(name).map_err(|_| format_error(source, format!("tensor {name} is missing")))?;
    if view.shape() != shape {
        return Err(format_error(
            source,
            format!("tensor {name} has shape {:?}, the config needs {shape:?}", view.shape()),
        ));
    }
    let bytes = view.data();
    let values: Vec<f32> = match view.dtype() {
        Dtype::F32 => bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
        Dtype::F16 => bytes.chunks_exact(2).map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
        Dtype::BF16 => bytes.chunks_exact(2).map(|b| bf16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
        other => {
            return Err(format_error(
                source,
                format!("tensor {name} is {other:?}; F32, F16 or BF16 expected"),
            ))
        }
    };
    Ok(Tensor::from_data(TensorData::new(values, shape), device))
}
