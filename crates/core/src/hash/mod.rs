//! HashAttention's hash functions and bit signatures.

mod check;
mod headwise_linear;
mod mapping;
mod mlp;
mod per_layer;
mod safetensors_format;
mod signature;

pub use headwise_linear::{HeadwiseLinear, HeadwiseLinearConfig};
pub use mapping::{HashMapping, HashMappingConfig};
pub use mlp::{HashActivation, HeadwiseMlp, HeadwiseMlpConfig};
pub use per_layer::{is_safetensors, layer_path, HashMappings, HashMappingsConfig};
pub use safetensors_format::{tensor_name, StoredPrecision, CONFIG_METADATA_KEY};
pub use signature::{
    matching_bits, pack_signs, ranked_group_matching_bits, ranked_matching_bits, unpack_signs,
    words_for_bits, WORD_BITS,
};
