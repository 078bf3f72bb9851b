//! A reader for GGUF files (version 2 and 3): metadata and tensor directory.

use std::collections::HashMap;
use std::path::Path;

use super::dequant::{dequantize, GgmlType};
use crate::error::{ModelError, ModelResult};

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
    /// Reads and parses `path`.
    pub fn open(path: impl AsRef<Path>) -> ModelResult<Self> {
        let path = path.as_ref();
        let bytes = std::fs::read(path)
            .map_err(|source| ModelError::Io { path: path.display().to_string(), source })?;
        Self::parse(bytes)
    }

    /// Parses a whole GGUF file held in memory.
    pub fn parse(bytes: Vec<u8>) -> ModelResult<Self> {
        let mut cursor = Cursor { bytes: &bytes, at: 0 };
        if cursor.take(4)? != b"GGUF" {
            return Err(ModelError::Format("no GGUF magic".into()));
        }
        let version = cursor.u32()?;
        if !(2..=3).contains(&version) {
            return Err(ModelError::Format(format!("version {version} (2 and 3 are supported)")));
        }
        let tensor_count = cursor.u64()? as usize;
        let kv_count = cursor.u64()? as usize;
        let mut metadata = HashMap::with_capacity(kv_count);
        for _ in 0..kv_count {
            let key = cursor.string()?;
            let kind = cursor.u32()?;
            metadata.insert(key, cursor.value(kind)?);
        }
        let mut tensors = HashMap::with_capacity(tensor_count);
        for _ in 0..tensor_count {
            let name = cursor.string()?;
            let n_dims = cursor.u32()? as usize;
            let dims =
                (0..n_dims).map(|_| cursor.u64().map(|d| d as usize)).collect::<ModelResult<Vec<_>>>()?;
            let kind = cursor.u32()?;
            let offset = cursor.u64()? as usize;
            tensors.insert(name.clone(), TensorInfo { name, dims, kind, offset });
        }
        let alignment = match metadata.get("general.alignment") {
            Some(GgufValue::Uint(a)) if *a > 0 => *a as usize,
            _ => 32,
        };
        let data_start = cursor.at.div_ceil(alignment) * alignment;
        Ok(Self { metadata, tensors, bytes, data_start })
    }

    /// An unsigned integer metadata value.
    pub fn uint(&self, key: &str) -> ModelResult<u64> {
        match self.metadata.get(key) {
            Some(GgufValue::Uint(v)) => Ok(*v),
            Some(GgufValue::Int(v)) if *v >= 0 => Ok(*v as u64),
            _ => Err(ModelError::Missing(format!("unsigned metadata {key}"))),
        }
    }

    /// A float metadata value.
    pub fn float(&self, key: &str) -> ModelResult<f64> {
        match self.metadata.get(key) {
            Some(GgufValue::Float(v)) => Ok(*v),
            _ => Err(ModelError::Missing(format!("float metadata {key}"))),
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
        let start = self.data_start + info.offset;
        let size = kind.bytes_for(info.len());
        let bytes = self
            .bytes
            .get(start..start + size)
            .ok_or_else(|| ModelError::Format(format!("tensor {name} runs past the end of the file")))?;
        Ok((dequantize(kind, bytes, info.len()), info.dims.clone()))
    }
}

struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> ModelResult<&'a [u8]> {
        let slice = self
            .bytes
            .get(self.at..self.at + n)
            .ok_or_else(|| ModelError::Format(format!("truncated at byte {}", self.at)))?;
        self.at += n;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self) -> ModelResult<[u8; N]> {
        Ok(self.take(N)?.try_into().unwrap())
    }

    fn u32(&mut self) -> ModelResult<u32> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> ModelResult<u64> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    fn string(&mut self) -> ModelResult<String> {
        let len = self.u64()? as usize;
        String::from_utf8(self.take(len)?.to_vec()).map_err(|e| ModelError::Format(format!("string: {e}")))
    }

    fn value(&mut self, kind: u32) -> ModelResult<GgufValue> {
        Ok(match kind {
            0 => GgufValue::Uint(self.array::<1>()?[0] as u64),
            1 => GgufValue::Int(self.array::<1>()?[0] as i8 as i64),
            2 => GgufValue::Uint(u16::from_le_bytes(self.array()?) as u64),
            3 => GgufValue::Int(i16::from_le_bytes(self.array()?) as i64),
            4 => GgufValue::Uint(self.u32()? as u64),
            5 => GgufValue::Int(i32::from_le_bytes(self.array()?) as i64),
            6 => GgufValue::Float(f32::from_le_bytes(self.array()?) as f64),
            7 => GgufValue::Bool(self.array::<1>()?[0] != 0),
            8 => GgufValue::String(self.string()?),
            9 => {
                let item = self.u32()?;
                let len = self.u64()? as usize;
                GgufValue::Array((0..len).map(|_| self.value(item)).collect::<ModelResult<_>>()?)
            }
            10 => GgufValue::Uint(self.u64()?),
            11 => GgufValue::Int(i64::from_le_bytes(self.array()?)),
            12 => GgufValue::Float(f64::from_le_bytes(self.array()?)),
            other => return Err(ModelError::Format(format!("unknown metadata type {other}"))),
        })
    }
}
