//! A reader for GGUF files (version 2 and 3): metadata and tensor directory, every field
//! checked against the file before it is trusted (see `cursor` and `directory`).

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use super::cursor::Cursor;
use super::dequant::{dequantize, GgmlType};
use super::directory::{self, MIN_TENSOR_INFO_BYTES};
use super::layout::TypeLayout;
use crate::error::{ModelError, ModelResult};

/// Largest GGUF file read (it is read whole into memory).
pub const MAX_FILE_BYTES: u64 = 64 << 30;

/// Largest `general.alignment` accepted.
const MAX_ALIGNMENT: u64 = 1 << 20;

/// Fewest bytes of one metadata entry: key length, value type, a one-byte value.
const MIN_METADATA_BYTES: usize = 8 + 4 + 1;

/// A metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum GgufValue {
    /// Any unsigned integer type.
    Uint(u64),
    /// Any signed integer type.
    Int(i64),
    /// f32 or f64.
    Float(f64),
    /// A boolean.
    Bool(bool),
    /// A UTF-8 string.
    String(String),
    /// An array of values.
    Array(Vec<GgufValue>),
}

impl GgufValue {
    /// The value in a few words, for errors (an array is not spelled out).
    pub fn describe(&self) -> String {
        match self {
            Self::Uint(v) => format!("the unsigned integer {v}"),
            Self::Int(v) => format!("the integer {v}"),
            Self::Float(v) => format!("the float {v}"),
            Self::Bool(v) => format!("the boolean {v}"),
            Self::String(s) => format!("a string of {} bytes", s.len()),
            Self::Array(items) => format!("an array of {} values", items.len()),
        }
    }
}

/// Where a tensor's data lies and how it is encoded.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    /// Tensor name, e.g. `blk.0.attn_q.weight`.
    pub name: String,
    /// Dimensions, fastest-varying first (GGML order).
    pub dims: Vec<usize>,
    /// GGML type id.
    pub kind: u32,
    /// Offset of the data from the start of the data section.
    pub offset: usize,
    /// Bytes of data (from the type and the dims).
    pub size: usize,
}

impl TensorInfo {
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.dims.iter().product()
    }

    /// Whether the tensor has no element.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A GGUF file read into memory.
#[derive(Debug)]
pub struct GgufFile {
    /// Metadata by key.
    pub metadata: HashMap<String, GgufValue>,
    /// Tensor directory by name.
    pub tensors: HashMap<String, TensorInfo>,
    bytes: Vec<u8>,
    data_start: usize,
}

impl GgufFile {
    /// Reads and parses `path` (a regular file of at most [`MAX_FILE_BYTES`]); errors name it.
    pub fn open(path: impl AsRef<Path>) -> ModelResult<Self> {
        let path = path.as_ref();
        let io = |source: std::io::Error| ModelError::Io { path: path.display().to_string(), source };
        let file = std::fs::File::open(path).map_err(io)?;
        let meta = file.metadata().map_err(io)?;
        if !meta.is_file() {
            return Err(ModelError::Format(format!("{}: not a regular file", path.display())));
        }
        if meta.len() > MAX_FILE_BYTES {
            return Err(ModelError::Format(format!(
                "{}: {} bytes, more than the {MAX_FILE_BYTES} this reader loads",
                path.display(),
                meta.len()
            )));
        }
        let mut bytes = Vec::new();
        file.take(MAX_FILE_BYTES).read_to_end(&mut bytes).map_err(io)?;
        Self::parse(bytes).map_err(|e| match e {
            ModelError::Format(message) => ModelError::Format(format!("{}: {message}", path.display())),
            other => other,
        })
    }

    /// Parses a whole GGUF file held in memory.
    pub fn parse(bytes: Vec<u8>) -> ModelResult<Self> {
        let mut cursor = Cursor::new(&bytes);
        if cursor.take(4, "the magic number")? != b"GGUF" {
            return Err(ModelError::Format("no GGUF magic number".into()));
        }
        let version = cursor.u32("the version")?;
        if !(2..=3).contains(&version) {
            return Err(ModelError::Format(format!("version {version} (2 and 3 are supported)")));
        }
        let tensor_count = cursor.count("tensor", MIN_TENSOR_INFO_BYTES)?;
        let kv_count = cursor.count("metadata", MIN_METADATA_BYTES)?;
        let mut metadata = HashMap::new();
        for i in 0..kv_count {
            let key = cursor.string(&format!("metadata key {i}"))?;
            let what = format!("metadata {key}");
            let kind = cursor.u32(&what)?;
            let value = cursor.value(kind, &what)?;
            if metadata.insert(key, value).is_some() {
                return Err(ModelError::Format(format!("{what} appears twice")));
            }
        }
        let alignment = alignment(&metadata)?;
        let infos = (0..tensor_count)
            .map(|i| directory::read_info(&mut cursor, i, alignment))
            .collect::<ModelResult<Vec<_>>>()?;
        let data_start = cursor
            .at
            .checked_next_multiple_of(alignment)
            .ok_or_else(|| ModelError::Format("the data section's start overflows".into()))?;
        let tensors = directory::check_ranges(infos, data_start, bytes.len(), alignment)?;
        Ok(Self { metadata, tensors, bytes, data_start })
    }

    /// An unsigned integer metadata value.
    pub fn uint(&self, key: &str) -> ModelResult<u64> {
        self.optional_uint(key)?.ok_or_else(|| ModelError::Missing(format!("unsigned metadata {key}")))
    }

    /// An unsigned integer metadata value, `None` when absent; an error when of another kind.
    pub fn optional_uint(&self, key: &str) -> ModelResult<Option<u64>> {
        match self.metadata.get(key) {
            None => Ok(None),
            Some(GgufValue::Uint(v)) => Ok(Some(*v)),
            Some(GgufValue::Int(v)) if *v >= 0 => Ok(Some(*v as u64)),
            Some(other) => Err(ModelError::Format(format!(
                "metadata {key} is {}, not an unsigned integer",
                other.describe()
            ))),
        }
    }

    /// A float metadata value.
    pub fn float(&self, key: &str) -> ModelResult<f64> {
        self.optional_float(key)?.ok_or_else(|| ModelError::Missing(format!("float metadata {key}")))
    }

    /// A float metadata value, `None` when absent; an error when of another kind.
    pub fn optional_float(&self, key: &str) -> ModelResult<Option<f64>> {
        match self.metadata.get(key) {
            None => Ok(None),
            Some(GgufValue::Float(v)) => Ok(Some(*v)),
            Some(other) => {
                Err(ModelError::Format(format!("metadata {key} is {}, not a float", other.describe())))
            }
        }
    }

    /// A string metadata value.
    pub fn string(&self, key: &str) -> ModelResult<&str> {
        match self.metadata.get(key) {
            Some(GgufValue::String(v)) => Ok(v),
            _ => Err(ModelError::Missing(format!("string metadata {key}"))),
        }
    }

    /// An array of strings.
    pub fn strings(&self, key: &str) -> ModelResult<Vec<&str>> {
        match self.metadata.get(key) {
            Some(GgufValue::Array(items)) => items
                .iter()
                .map(|v| match v {
                    GgufValue::String(s) => Ok(s.as_str()),
                    _ => Err(ModelError::Missing(format!("strings in {key}"))),
                })
                .collect(),
            _ => Err(ModelError::Missing(format!("string array {key}"))),
        }
    }

    /// The tensor `name` dequantised to f32, with its GGML dims (fastest-varying first).
    pub fn tensor_f32(&self, name: &str) -> ModelResult<(Vec<f32>, Vec<usize>)> {
        let info = self.tensors.get(name).ok_or_else(|| ModelError::Missing(format!("tensor {name}")))?;
        let kind = GgmlType::from_id(info.kind)
            .ok_or_else(|| ModelError::UnsupportedType { name: name.into(), kind: info.kind })?;
        // Recomputed rather than trusted: `tensors` is public and may have been edited.
        let bytes = TypeLayout::of(info.kind)
            .and_then(|layout| layout.size(&info.dims).ok())
            .and_then(|size| {
                let start = self.data_start.checked_add(info.offset)?;
                self.bytes.get(start..start.checked_add(size)?)
            })
            .ok_or_else(|| ModelError::Tensor {
                name: name.into(),
                problem: "its bytes lie outside the file".into(),
            })?;
        Ok((dequantize(kind, bytes, info.len()), info.dims.clone()))
    }
}

/// `general.alignment`: a power of two (32 when absent).
fn alignment(metadata: &HashMap<String, GgufValue>) -> ModelResult<usize> {
    match metadata.get("general.alignment") {
        None => Ok(32),
        Some(GgufValue::Uint(a)) if a.is_power_of_two() && *a <= MAX_ALIGNMENT => Ok(*a as usize),
        Some(other) => Err(ModelError::Format(format!(
            "general.alignment is {}, not a power of two up to {MAX_ALIGNMENT}",
            other.describe()
        ))),
    }
}
