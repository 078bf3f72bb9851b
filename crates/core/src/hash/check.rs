//! Checks of mappings read from files, before they are used: the config's sizes against
//! the file's size (so a corrupt config cannot make `init` allocate more than the file
//! holds), the record's shapes against the config (Burn's loader asserts, and a wrong shape
//! would fail deep inside a forward pass), and every weight finite.

use std::io::Read;
use std::path::{Path, PathBuf};

use burn::tensor::{backend::Backend, ElementConversion, Tensor};

use super::headwise_linear::HeadwiseLinearRecord;
use super::mapping::HashMappingRecord;
use super::mlp::HeadwiseMlpRecord;
use super::HashMappingConfig;
use crate::error::{AttnError, AttnResult};

/// Largest config.json read.
const MAX_CONFIG_BYTES: u64 = 1 << 20;

fn file_error(path: &Path, message: impl Into<String>) -> AttnError {
    AttnError::File { path: path.display().to_string(), message: message.into() }
}

/// The contents of `path`, a regular file of at most `limit` bytes.
pub fn read_limited(path: &Path, limit: u64) -> AttnResult<Vec<u8>> {
    let file = std::fs::File::open(path).map_err(|e| file_error(path, e.to_string()))?;
    let len = regular_file_len(path, &file)?;
    if len > limit {
        return Err(file_error(path, format!("{len} bytes, more than the {limit} allowed")));
    }
    let mut bytes = Vec::new();
    file.take(limit).read_to_end(&mut bytes).map_err(|e| file_error(path, e.to_string()))?;
    Ok(bytes)
}

/// Reads a config.json (at most [`MAX_CONFIG_BYTES`]).
pub fn read_config(path: &Path) -> AttnResult<Vec<u8>> {
    read_limited(path, MAX_CONFIG_BYTES)
}

fn regular_file_len(path: &Path, file: &std::fs::File) -> AttnResult<u64> {
    let meta = file.metadata().map_err(|e| file_error(path, e.to_string()))?;
    if !meta.is_file() {
        return Err(file_error(path, "not a regular file"));
    }
    Ok(meta.len())
}

/// The record file behind `path` (Burn's recorder adds `.mpk`), checked to be a regular
/// file large enough for the f32 weights `config` declares.
pub fn record_file(config: &HashMappingConfig, path: &Path) -> AttnResult<PathBuf> {
    let file_path = path.with_extension("mpk");
    let file = std::fs::File::open(&file_path).map_err(|e| file_error(&file_path, e.to_string()))?;
    let len = regular_file_len(&file_path, &file)?;
    let weights = parameter_count(config)
        .and_then(|n| n.checked_mul(4))
        .ok_or_else(|| file_error(&file_path, format!("the config's sizes overflow: {config:?}")))?;
    if weights > len as u128 {
        return Err(file_error(
            &file_path,
            format!("{len} bytes cannot hold the {weights} bytes of weights the config declares"),
        ));
    }
    Ok(file_path)
}

/// Parameters of one mapping (query and key MLPs), `None` on overflow.
fn parameter_count(config: &HashMappingConfig) -> Option<u128> {
    let mut total = 0u128;
    for heads in [config.query_heads, config.key_heads] {
        for (d_in, d_out) in layer_sizes(config) {
            let per_head = (d_in as u128).checked_mul(d_out as u128)?.checked_add(d_out as u128)?;
            total = total.checked_add(per_head.checked_mul(heads as u128)?)?;
        }
    }
    Some(total)
}

/// `(d_input, d_output)` of each linear layer of an MLP of `config`.
pub(super) fn layer_sizes(config: &HashMappingConfig) -> Vec<(usize, usize)> {
    (0..config.layers)
        .map(|i| {
            let d_in = if i == 0 { config.head_dim } else { config.hidden };
            let d_out = if i + 1 == config.layers { config.bits } else { config.hidden };
            (d_in, d_out)
        })
        .collect()
}

/// Checks that `record` has the layers and shapes of `config` and finite weights.
pub fn check_record<B: Backend>(
    config: &HashMappingConfig,
    record: &HashMappingRecord<B>,
    path: &Path,
) -> AttnResult<()> {
    let sides: [(&str, &HeadwiseMlpRecord<B>, usize); 2] =
        [("query", &record.query, config.query_heads), ("key", &record.key, config.key_heads)];
    for (side, mlp, heads) in sides {
        let sizes = layer_sizes(config);
        if mlp.layers.len() != sizes.len() {
            return Err(file_error(
                path,
                format!("the {side} MLP has {} layers, the config says {}", mlp.layers.len(), sizes.len()),
            ));
        }
        for (i, (layer, (d_in, d_out))) in mlp.layers.iter().zip(sizes).enumerate() {
            check_layer(layer, [heads, d_in, d_out], &format!("{side} MLP layer {i}"))
                .map_err(|message| file_error(path, message))?;
        }
    }
    Ok(())
}

fn check_layer<B: Backend>(
    layer: &HeadwiseLinearRecord<B>,
    want: [usize; 3],
    name: &str,
) -> Result<(), String> {
    let (weight, bias) = (layer.weight.val(), layer.bias.val());
    if weight.dims() != want || bias.dims() != [want[0], want[2]] {
        return Err(format!(
            "{name} has weight {:?} and bias {:?}, the config needs {want:?} and {:?}",
            weight.dims(),
            bias.dims(),
            [want[0], want[2]]
        ));
    }
    if !all_finite(weight) || !all_finite(bias) {
        return Err(format!("{name} holds NaN or infinite weights"));
    }
    Ok(())
}

fn all_finite<B: Backend, const D: usize>(x: Tensor<B, D>) -> bool {
    x.is_finite().all().into_scalar().elem()
}

#[cfg(test)]
mod tests {
    use burn::config::Config;
    use burn::module::Param;

    use super::super::{HashMappingConfig, HashMappings, HashMappingsConfig};
    use super::*;

    type B = burn::backend::NdArray<f32>;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("bsa-hash-check-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn small() -> HashMappingConfig {
        HashMappingConfig::new(16, 4, 2).with_hidden(8).with_layers(2)
    }

    #[test]
    fn records_must_have_the_configs_shapes() {
        let (device, dir) = (Default::default(), temp_dir("shapes"));
        let path = dir.join("m");
        small().init::<B>(&device).unwrap().save(&path).unwrap();
        assert!(small().load::<B>(&path, &device).is_ok());
        let error = small().with_hidden(4).load::<B>(&path, &device).unwrap_err().to_string();
        assert!(error.contains("query MLP layer 0 has weight [4, 16, 8]"), "{error}");
        let error = small().with_hidden(4).with_layers(3).load::<B>(&path, &device).unwrap_err().to_string();
        assert!(error.contains("the query MLP has 2 layers, the config says 3"), "{error}");
        let error = small().with_hidden(1 << 40).load::<B>(&path, &device).unwrap_err().to_string();
        assert!(error.contains("cannot hold"), "{error}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn non_finite_weights_are_refused() {
        let (device, dir) = (Default::default(), temp_dir("nan"));
        let path = dir.join("m");
        let mut mapping = small().init::<B>(&device).unwrap();
        let bias = mapping.key.layers[1].bias.val();
        let mut values = bias.to_data().to_vec::<f32>().unwrap();
        values[3] = f32::NAN;
        let nan = Tensor::from_data(burn::tensor::TensorData::new(values, bias.dims()), &device);
        mapping.key.layers[1].bias = Param::from_tensor(nan);
        mapping.save(&path).unwrap();
        let error = small().load::<B>(&path, &device).unwrap_err().to_string();
        assert!(error.contains("m.mpk") && error.contains("key MLP layer 1 holds NaN"), "{error}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn dir_configs_are_checked_before_any_weight_is_read() {
        let (device, dir) = (Default::default(), temp_dir("dir"));
        let config = HashMappingsConfig::new(small(), 2);
        let mappings: HashMappings<B> = config.init(&device).unwrap();
        mappings.save_dir(&config, &dir).unwrap();
        assert_eq!(HashMappingsConfig::read_dir_config(&dir).unwrap().layers, 2);
        assert!(HashMappingsConfig::load_dir::<B>(&dir, &device).is_ok());
        HashMappingsConfig::new(small().with_bits(33), 2).save(dir.join("config.json")).unwrap();
        let error = HashMappingsConfig::read_dir_config(&dir).unwrap_err().to_string();
        assert!(error.contains("config.json") && error.contains("multiple of 32"), "{error}");
        HashMappingsConfig::new(small(), 0).save(dir.join("config.json")).unwrap();
        assert!(HashMappingsConfig::read_dir_config(&dir).is_err());
        std::fs::write(dir.join("config.json"), b"{ not json").unwrap();
        assert!(HashMappingsConfig::read_dir_config(&dir).is_err());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
