//! Hash mappings as safetensors: the documented names and shapes as the safetensors crate
//! reads them, the same signatures after a round trip, and clear errors on files that do
//! not match their config.

use std::collections::HashMap;

use crate::common::*;
use burn::config::Config;
use burn::module::Param;
use burn::tensor::Tensor;
use burn_sparse_attn::hash::{tensor_name, StoredPrecision, CONFIG_METADATA_KEY};
use burn_sparse_attn::{HashActivation, HashMappingConfig, HashMappings, HashMappingsConfig};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};

fn config() -> HashMappingsConfig {
    let mapping = HashMappingConfig::new(12, 6, 2)
        .with_bits(64)
        .with_hidden(10)
        .with_layers(3)
        .with_activation(HashActivation::Gelu);
    HashMappingsConfig::new(mapping, 2)
}

fn mappings() -> HashMappings<B> {
    config().init(&device()).unwrap()
}

/// `(name, shape)` of every tensor the format documents for [`config`].
fn documented() -> Vec<(String, Vec<usize>)> {
    let mut names = Vec::new();
    for layer in 0..2 {
        for (side, heads) in [("query", 6), ("key", 2)] {
            for (i, (d_in, d_out)) in [(12, 10), (10, 10), (10, 64)].into_iter().enumerate() {
                names.push((tensor_name(layer, side, i, "weight"), vec![heads, d_in, d_out]));
                names.push((tensor_name(layer, side, i, "bias"), vec![heads, d_out]));
            }
        }
    }
    names
}

#[test]
fn names_shapes_and_config_are_as_documented() {
    let bytes = mappings().to_safetensors(&config(), StoredPrecision::F32).unwrap();
    let file = SafeTensors::deserialize(&bytes).unwrap();
    let mut found: Vec<(String, Vec<usize>)> =
        file.iter().map(|(n, v)| (n.to_string(), v.shape().to_vec())).collect();
    let mut want = documented();
    found.sort();
    want.sort();
    assert_eq!(found, want);
    assert!(file.iter().all(|(_, v)| v.dtype() == Dtype::F32));
    assert_eq!(found[0].0, "layers.0.key.0.bias");
    let (_, metadata) = SafeTensors::read_metadata(&bytes).unwrap();
    let json = &metadata.metadata().as_ref().unwrap()[CONFIG_METADATA_KEY];
    let stored = HashMappingsConfig::load_binary(json.as_bytes()).unwrap();
    assert_eq!(
        (stored.layers, stored.mapping.bits, stored.mapping.activation),
        (2, 64, HashActivation::Gelu)
    );
}

#[test]
fn a_round_trip_keeps_the_signatures() {
    let original = mappings();
    let (q, k) = (randn([2, 6, 9, 12], 1), randn([2, 2, 13, 12], 2));
    let signatures = |m: &HashMappings<B>, layer: usize| {
        let mapping = &m.layers[layer];
        (
            to_ints(mapping.query_signatures(q.clone()).unwrap()),
            to_ints(mapping.key_signatures(k.clone()).unwrap()),
        )
    };
    let dir = std::env::temp_dir().join(format!("bsa-safetensors-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("m.safetensors");
    original.save_safetensors(&config(), &path, StoredPrecision::F32).unwrap();
    let (config, loaded) = HashMappingsConfig::load_safetensors::<B>(&path, &device()).unwrap();
    assert_eq!(config.layers, 2);
    assert_eq!(HashMappingsConfig::read_safetensors_config(&path).unwrap().mapping.hidden, 10);
    for layer in 0..2 {
        assert_eq!(signatures(&loaded, layer), signatures(&original, layer));
        let codes = |m: &HashMappings<B>| m.layers[layer].query_codes(q.clone());
        assert_eq!(max_abs_diff(codes(&loaded), codes(&original)), 0.0);
    }
    // F16 halves the file and keeps the weights to f16 precision.
    let half = original.to_safetensors(&config, StoredPrecision::F16).unwrap();
    let full = original.to_safetensors(&config, StoredPrecision::F32).unwrap();
    assert!(half.len() * 10 < full.len() * 6, "{} vs {} bytes", half.len(), full.len());
    let (_, rounded) = HashMappingsConfig::from_safetensors::<B>(&half, "half", &device()).unwrap();
    let weight = |m: &HashMappings<B>| m.layers[1].key.layers[2].weight.val();
    assert!(max_abs_diff(weight(&rounded), weight(&original)) < 1e-3);
    std::fs::remove_dir_all(dir).unwrap();
}

/// Safetensors bytes of `mappings` with each tensor passed through `edit` (`None` drops it)
/// and `extra` tensors added; the config metadata unless `config` is `None`.
fn edited(
    edit: impl Fn(&str, Vec<usize>, Vec<u8>) -> Option<(Vec<usize>, Vec<u8>)>,
    extra: &[&str],
    config_json: Option<String>,
) -> Vec<u8> {
    let bytes = mappings().to_safetensors(&config(), StoredPrecision::F32).unwrap();
    let file = SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = file
        .iter()
        .filter_map(|(n, v)| {
            edit(n, v.shape().to_vec(), v.data().to_vec()).map(|(s, d)| (n.to_string(), s, d))
        })
        .collect();
    tensors.extend(extra.iter().map(|n| (n.to_string(), vec![1], 0f32.to_le_bytes().to_vec())));
    let views: Vec<(String, TensorView)> = tensors
        .iter()
        .map(|(n, s, d)| (n.clone(), TensorView::new(Dtype::F32, s.clone(), d).unwrap()))
        .collect();
    let metadata = config_json.map(|json| HashMap::from([(CONFIG_METADATA_KEY.to_string(), json)]));
    safetensors::serialize(views, metadata).unwrap()
}

fn load_error(bytes: &[u8]) -> String {
    HashMappingsConfig::from_safetensors::<B>(bytes, "m.safetensors", &device())
        .map(|_| ())
        .unwrap_err()
        .to_string()
}

#[test]
fn files_that_do_not_fit_their_config_are_refused() {
    let same = |_: &str, shape, data| Some((shape, data));
    let json = || Some(config().to_string());
    assert!(HashMappingsConfig::from_safetensors::<B>(&edited(same, &[], json()), "ok", &device()).is_ok());

    let missing = load_error(&edited(|n, s, d| (n != "layers.1.key.2.bias").then_some((s, d)), &[], json()));
    assert!(
        missing.contains("m.safetensors") && missing.contains("tensor layers.1.key.2.bias is missing"),
        "{missing}"
    );
    let reshaped = |n: &str, s: Vec<usize>, d| {
        Some(if n == "layers.0.query.1.bias" { (vec![10, 6], d) } else { (s, d) })
    };
    let error = load_error(&edited(reshaped, &[], json()));
    assert!(error.contains("layers.0.query.1.bias has shape [10, 6], the config needs [6, 10]"), "{error}");
    let error = load_error(&edited(same, &["layers.2.query.0.weight"], json()));
    assert!(error.contains("tensor layers.2.query.0.weight is not part of"), "{error}");
    let error = load_error(&edited(same, &[], None));
    assert!(error.contains("no `config` metadata entry"), "{error}");
    let wrong_config = config().mapping.with_bits(33);
    let error = load_error(&edited(same, &[], Some(HashMappingsConfig::new(wrong_config, 2).to_string())));
    assert!(error.contains("multiple of 32"), "{error}");
    let nan = |n: &str, s, mut d: Vec<u8>| {
        if n == "layers.1.query.0.weight" {
            d[8..12].copy_from_slice(&f32::NAN.to_le_bytes());
        }
        Some((s, d))
    };
    let error = load_error(&edited(nan, &[], json()));
    assert!(error.contains("query MLP layer 0 holds NaN"), "{error}");
    assert!(load_error(b"not a safetensors file").contains("m.safetensors"));
}

#[test]
fn loaded_mappings_are_modules_like_initialised_ones() {
    // The loaded module must carry its weights as parameters (trainable again).
    let bytes = mappings().to_safetensors(&config(), StoredPrecision::F32).unwrap();
    let (_, loaded) = HashMappingsConfig::from_safetensors::<B>(&bytes, "m", &device()).unwrap();
    let weight: &Param<Tensor<B, 3>> = &loaded.layers[0].query.layers[0].weight;
    assert_eq!(weight.dims(), [6, 12, 10]);
    assert_eq!(burn::module::Module::num_params(&loaded), burn::module::Module::num_params(&mappings()));
}
