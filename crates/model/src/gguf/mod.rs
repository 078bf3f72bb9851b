//! GGUF files: metadata, tensor directory, dequantisation.

mod dequant;
mod reader;

pub use dequant::{dequantize, GgmlType};
pub use reader::{GgufFile, GgufValue, TensorInfo};
