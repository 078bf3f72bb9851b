//! The tensor directory: each entry read with its shape, type and offset checked, then the
//! byte ranges checked together. GGUF writers lay tensors out back to back, each at the
//! next aligned offset, so a range that leaves the data section, overlaps another, or
//! leaves a gap (a tensor relabelled with a smaller type or shape) means a corrupt entry.

use std::collections::HashMap;

use super::cursor::Cursor;
use super::layout::{type_name, TypeLayout};
use super::reader::TensorInfo;
use crate::error::{ModelError, ModelResult};

/// Fewest bytes of one directory entry: name length, dimension count, type, offset.
pub const MIN_TENSOR_INFO_BYTES: usize = 8 + 4 + 4 + 8;

/// Most dimensions of a GGML tensor.
const MAX_DIMS: u32 = 4;

fn format(message: String) -> ModelError {
    ModelError::Format(message)
}

/// Reads entry `index` of the directory: name, dims (1 to 4, none zero), a type whose
/// layout is known and that fits the dims, an offset that is a multiple of `alignment`.
pub fn read_info(cursor: &mut Cursor, index: usize, alignment: usize) -> ModelResult<TensorInfo> {
    let name = cursor.string(&format!("tensor {index}'s name"))?;
    let what = format!("tensor {name}");
    let n_dims = cursor.u32(&what)?;
    if !(1..=MAX_DIMS).contains(&n_dims) {
        return Err(format(format!("{what} has {n_dims} dimensions (1 to {MAX_DIMS} are valid)")));
    }
    let mut dims = Vec::new();
    for _ in 0..n_dims {
        let d = cursor.u64(&what)?;
        match usize::try_from(d) {
            Ok(d) if d > 0 => dims.push(d),
            _ => return Err(format(format!("{what} has a dimension of {d}"))),
        }
    }
    let kind = cursor.u32(&what)?;
    let layout = TypeLayout::of(kind).ok_or_else(|| {
        format(format!("{what} has GGML {}, whose layout this reader does not know", type_name(kind)))
    })?;
    let size =
        layout.size(&dims).map_err(|problem| format(format!("{what} of type {}: {problem}", layout.name)))?;
    let offset = cursor.u64(&what)?;
    match usize::try_from(offset) {
        Ok(offset) if offset.is_multiple_of(alignment) => Ok(TensorInfo { name, dims, kind, offset, size }),
        _ => Err(format(format!("{what} has offset {offset}, not a multiple of the alignment {alignment}"))),
    }
}

/// Checks that the tensors tile the data section from `data_start` to `file_len`, each at
/// the next aligned offset after the one before, and indexes them by name.
pub fn check_ranges(
    infos: Vec<TensorInfo>,
    data_start: usize,
    file_len: usize,
    alignment: usize,
) -> ModelResult<HashMap<String, TensorInfo>> {
    if infos.is_empty() {
        return Ok(HashMap::new());
    }
    let data_len = file_len.checked_sub(data_start).ok_or_else(|| {
        format(format!(
            "the tensor directory ends at byte {data_start}, past the end of the file ({file_len} bytes)"
        ))
    })?;
    // Each range on its own first, so that a wild offset is named as such.
    let mut by_offset = infos
        .iter()
        .map(|info| match info.offset.checked_add(info.size).filter(|&end| end <= data_len) {
            Some(end) => Ok((info, end)),
            None => Err(format(format!(
                "tensor {} ({} {:?}, {} bytes at data offset {}) runs past the end of the data section ({data_len} bytes)",
                info.name,
                type_name(info.kind),
                info.dims,
                info.size,
                info.offset
            ))),
        })
        .collect::<ModelResult<Vec<_>>>()?;
    by_offset.sort_by_key(|(info, _)| info.offset);
    let mut next = 0usize;
    let mut previous: Option<&TensorInfo> = None;
    for (info, end) in by_offset {
        if info.offset != next {
            let after = previous
                .map_or("the start of the data section".to_string(), |p| format!("tensor {}", p.name));
            let relation = if info.offset < next { "overlaps" } else { "leaves a gap after" };
            return Err(format(format!(
                "tensor {} at data offset {} {relation} {after}, whose data ends at {next} (aligned): \
                 a wrong offset, type or shape",
                info.name, info.offset
            )));
        }
        next = end.checked_next_multiple_of(alignment).unwrap_or(usize::MAX);
        previous = Some(info);
    }
    if data_len > next {
        return Err(format(format!(
            "the data section has {} bytes after its last tensor: a tensor's type or shape is too small",
            data_len - next
        )));
    }
    let mut tensors = HashMap::new();
    for info in infos {
        if let Some(twice) = tensors.insert(info.name.clone(), info) {
            return Err(format(format!("tensor {} appears twice in the directory", twice.name)));
        }
    }
    Ok(tensors)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An F32 tensor of `len` values at `offset`.
    fn f32_at(name: &str, len: usize, offset: usize) -> TensorInfo {
        TensorInfo { name: name.into(), dims: vec![len], kind: 0, offset, size: 4 * len }
    }

    fn error(infos: Vec<TensorInfo>, file_len: usize) -> String {
        check_ranges(infos, 64, file_len, 32).unwrap_err().to_string()
    }

    #[test]
    fn tensors_must_tile_the_data_section() {
        // a: 40 bytes at 0, padded to 64; b: 32 bytes at 64; data section of 96 bytes.
        let tiled = || vec![f32_at("a", 10, 0), f32_at("b", 8, 64)];
        assert_eq!(check_ranges(tiled(), 64, 64 + 96, 32).unwrap().len(), 2);
        assert!(error(vec![f32_at("a", 10, 0), f32_at("b", 8, 32)], 160)
            .contains("b at data offset 32 overlaps tensor a"));
        assert!(
            error(vec![f32_at("a", 8, 0), f32_at("b", 8, 64)], 160).contains("leaves a gap after tensor a")
        );
        assert!(error(vec![f32_at("a", 10, 32), f32_at("b", 8, 96)], 192)
            .contains("a at data offset 32 leaves a gap after the start"));
        assert!(error(tiled(), 64 + 95)
            .contains("tensor b (F32 [8], 32 bytes at data offset 64) runs past the end"));
        assert!(error(tiled(), 64 + 128).contains("32 bytes after its last tensor"));
        assert!(error(vec![f32_at("a", 10, 0), f32_at("a", 8, 64)], 160).contains("tensor a appears twice"));
        assert!(error(vec![f32_at("a", 8, usize::MAX - 31)], 160).contains("runs past the end"));
        assert!(error(tiled(), 32).contains("past the end of the file"));
    }
}
