//! Errors of model loading and running.

use thiserror::Error;

/// An error loading or running a model.
#[derive(Debug, Error)]
pub enum ModelError {
    /// Reading a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not a GGUF file this reader understands.
    #[error("GGUF format: {0}")]
    Format(String),
    /// A metadata key or tensor the model needs is missing or of the wrong kind.
    #[error("GGUF is missing {0}")]
    Missing(String),
    /// A tensor type without a dequantiser here.
    #[error(
        "tensor {name} has type {}, which this reader cannot dequantise (F32, F16, Q8_0, Q4_0, Q4_1 can)",
        crate::gguf::type_name(u32::clone(.kind))
    )]
    UnsupportedType {
        /// Tensor name.
        name: String,
        /// GGML type id.
        kind: u32,
    },
    /// A tensor does not fit the model: wrong shape, NaN or infinite values.
    #[error("tensor {name}: {problem}")]
    Tensor {
        /// Tensor name.
        name: String,
        /// What is wrong with it.
        problem: String,
    },
    /// The model's sizes or constants are out of range or inconsistent.
    #[error("model config: {0}")]
    Config(String),
    /// Trained hash mappings are for another model.
    #[error("hash mappings in {dir}: {problem}")]
    HashMappings {
        /// The mappings' folder.
        dir: String,
        /// How they differ from the model.
        problem: String,
    },
    /// A forward pass produced NaN or infinite values.
    #[error("{0} hold NaN or infinite values")]
    NonFinite(String),
    /// An evaluation was asked for something it cannot do (an unknown method, an empty sweep).
    #[error("evaluation: {0}")]
    Eval(String),
    /// Generation or chat settings that cannot work (a bad temperature, an empty prompt, a
    /// prompt past the model's context, a chat template that fails).
    #[error("generation: {0}")]
    Generation(String),
    /// An attention call failed.
    #[error(transparent)]
    Attention(#[from] burn_sparse_attn_core::AttnError),
}

/// Result of model loading and running.
pub type ModelResult<T> = Result<T, ModelError>;
