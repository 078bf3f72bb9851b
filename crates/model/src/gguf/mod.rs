//! GGUF files: metadata, tensor directory (every field checked against the file),
//! dequantisation.

mod cursor;
mod dequant;
mod directory;
mod layout;
mod reader;

pub use cursor::MAX_ARRAY_DEPTH;
pub use dequant::{dequantize, GgmlType};
pub use layout::{type_name, TypeLayout};
pub use reader::{GgufFile, GgufValue, TensorInfo, MAX_FILE_BYTES};
