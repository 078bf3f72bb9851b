//! A Llama-family decoder in Burn whose attention is any method of burn-sparse-attn, loaded
//! from a GGUF file (F32, F16, Q8_0, Q4_0 and Q4_1 tensors, dequantised on load).

pub mod error;
pub mod eval;
pub mod generate;
pub mod gguf;
pub mod llama;
pub mod tokenizer;

pub use error::{ModelError, ModelResult};
pub use generate::{
    ChatMessage, ChatTemplate, Generation, GenerationConfig, PromptFeed, SamplingConfig, StopReason,
    TextStream,
};
pub use gguf::GgufFile;
pub use llama::{AttentionInputs, AttentionPlan, LayerMethod, Llama, LlamaConfig};
pub use tokenizer::GgufTokenizer;
