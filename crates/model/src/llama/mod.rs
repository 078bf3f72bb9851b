//! A Llama-family decoder with pluggable attention.

mod config;
mod load;
mod model;
mod rope;

pub use config::LlamaConfig;
pub(crate) use model::phase_name;
pub use model::{
    layer_attention, token_batch, token_ids, AttentionInputs, AttentionPlan, LayerMethod, Llama, LlamaLayer,
    RmsNorm,
};
pub use rope::{apply_rope, RopeTable};
