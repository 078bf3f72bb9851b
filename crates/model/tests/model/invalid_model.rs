//! Models that parse but must not run: bad constants, heads that do not fit the tensors,
//! non-finite or unsupported weights, and weights that overflow in a forward pass. Each is
//! refused with an error that names the problem (on the tiny generated model).

use burn::tensor::{Int, Tensor, TensorData};
use burn_sparse_attn_model::{AttentionPlan, GgufFile, Llama, ModelResult};

use crate::common::B;
use crate::tiny_gguf::{tiny_gguf, tiny_gguf_with, TinyGguf};

fn load(bytes: Vec<u8>) -> ModelResult<Llama<B>> {
    Llama::<B>::from_gguf(&GgufFile::parse(bytes)?, &AttentionPlan::dense(), &Default::default())
}

fn load_error(overrides: &[(&str, f64)]) -> String {
    load(tiny_gguf_with(overrides).bytes).map(|_| ()).unwrap_err().to_string()
}

/// The tiny file with the f32 at index `index` of tensor `name` set to `value`.
fn with_weight(tiny: &TinyGguf, name: &str, index: usize, value: f32) -> Vec<u8> {
    let info = GgufFile::parse(tiny.bytes.clone()).unwrap().tensors[name].clone();
    assert_eq!(info.kind, 0, "{name} must be F32");
    let at = tiny.data_start + info.offset + 4 * index;
    let mut bytes = tiny.bytes.clone();
    bytes[at..at + 4].copy_from_slice(&value.to_le_bytes());
    bytes
}

#[test]
fn constants_must_be_finite_and_positive() {
    for value in [f64::NAN, -10_000.0, 0.0, f64::INFINITY] {
        let error = load_error(&[("llama.rope.freq_base", value)]);
        assert!(error.contains("RoPE base"), "{value}: {error}");
        let error = load_error(&[("llama.attention.layer_norm_rms_epsilon", value)]);
        assert!(error.contains("RMS norm epsilon"), "{value}: {error}");
    }
}

#[test]
fn head_counts_must_be_positive_and_consistent() {
    let error = load_error(&[("llama.attention.head_count", 0.0)]);
    assert!(error.contains("head count (attention.head_count) is 0"), "{error}");
    let error = load_error(&[("llama.attention.head_count_kv", 0.0)]);
    assert!(error.contains("KV head count (attention.head_count_kv) is 0"), "{error}");
    let error = load_error(&[("llama.attention.head_count_kv", 3.0)]);
    assert!(error.contains("not a multiple of 3 KV heads"), "{error}");
    let error = load_error(&[("llama.attention.head_count", 5.0)]);
    assert!(error.contains("even head dimensions"), "{error}");
    // 8 heads of 8 over 2 KV heads: consistent, but the K projection is 32 wide, not 16.
    let error = load_error(&[("llama.attention.head_count", 8.0)]);
    assert!(error.contains("tensor blk.0.attn_k.weight") && error.contains("KV heads"), "{error}");
    let error = load_error(&[("llama.embedding_length", 128.0)]);
    assert!(error.contains("blk.0.attn_norm.weight"), "{error}");
}

#[test]
fn non_finite_and_unsupported_weights_are_refused_by_name() {
    let tiny = tiny_gguf();
    let error = load(with_weight(&tiny, "blk.1.ffn_norm.weight", 5, f32::NAN)).map(|_| ()).unwrap_err();
    assert!(error.to_string().contains("tensor blk.1.ffn_norm.weight: value 5 is NaN"), "{error}");
    // Relabel an F32 tensor as I32, which has the same size but no dequantiser here.
    let file = GgufFile::parse(tiny.bytes.clone()).unwrap();
    let mut edited = GgufFile::parse(tiny.bytes.clone()).unwrap();
    edited.tensors.get_mut("output_norm.weight").unwrap().kind = 26;
    let error =
        Llama::<B>::from_gguf(&edited, &AttentionPlan::dense(), &Default::default()).map(|_| ()).unwrap_err();
    assert!(error.to_string().contains("output_norm.weight has type I32"), "{error}");
    assert!(Llama::<B>::from_gguf(&file, &AttentionPlan::dense(), &Default::default()).is_ok());
}

#[test]
fn overflowing_hidden_states_stop_the_run_naming_the_layer() {
    let tiny = tiny_gguf();
    let device = Default::default();
    let tokens = || Tensor::<B, 2, Int>::from_data(TensorData::new(vec![1i64, 2, 3], [1, 3]), &device);
    let model = load(tiny.bytes.clone()).unwrap();
    model.forward(tokens(), &mut model.new_caches()).unwrap();
    // A finite but huge gain before layer 1's MLP makes its output overflow.
    let huge = load(with_weight(&tiny, "blk.1.ffn_norm.weight", 0, 3e38)).unwrap();
    let error = huge.forward(tokens(), &mut huge.new_caches()).unwrap_err().to_string();
    assert_eq!(error, "the hidden states after layer 1 hold NaN or infinite values");
}

#[test]
fn dense_layers_must_be_layers_of_the_model() {
    let file = GgufFile::parse(tiny_gguf().bytes).unwrap();
    let plan = |dense_layers| AttentionPlan { dense_layers, ..AttentionPlan::dense() };
    let error = Llama::<B>::from_gguf(&file, &plan(vec![2]), &Default::default()).map(|_| ()).unwrap_err();
    assert_eq!(error.to_string(), "model config: dense layer 2 is not among the 2 layers");
    let mut model = Llama::<B>::from_gguf(&file, &plan(vec![1]), &Default::default()).unwrap();
    assert!(model.set_attention(&plan(vec![0, 9]), &Default::default()).is_err());
}

#[test]
fn layer_ranges_pick_each_layers_method_and_must_lie_within_the_model() {
    use burn_sparse_attn_core::{AttentionConfig, MethodKind, StreamingAttentionConfig};
    let streaming = |window| AttentionConfig::Streaming(StreamingAttentionConfig::new().with_window(window));
    let plan = AttentionPlan { dense_layers: vec![3], ..AttentionPlan::new(streaming(8), vec![]) }
        .with_layers(2..5, AttentionConfig::Hip(burn_sparse_attn_core::HipAttentionConfig::new()))
        .with_layers(4..6, streaming(16));
    let kinds: Vec<MethodKind> = (0..7).map(|l| plan.for_layer(l).kind()).collect();
    use MethodKind::*;
    assert_eq!(kinds, [Streaming, Streaming, Hip, Dense, Streaming, Streaming, Streaming]);
    let window = |l| match plan.for_layer(l) {
        AttentionConfig::Streaming(c) => c.window,
        other => panic!("layer {l}: {other:?}"),
    };
    assert_eq!((window(0), window(4), window(5), window(6)), (8, 16, 16, 8));

    let file = GgufFile::parse(tiny_gguf().bytes).unwrap();
    let mut model = Llama::<B>::from_gguf(&file, &AttentionPlan::dense(), &Default::default()).unwrap();
    let ranged = |range| AttentionPlan::dense().with_layers(range, streaming(8));
    model.set_attention(&ranged(1..2), &Default::default()).unwrap();
    assert_eq!(model.layers[1].attention.kind(), Streaming);
    assert_eq!(model.layers[0].attention.kind(), Dense);
    for bad in [1..3, 1..1] {
        let error = model.set_attention(&ranged(bad.clone()), &Default::default()).unwrap_err().to_string();
        assert_eq!(error, format!("model config: layer range {bad:?} is empty or not within the 2 layers"));
    }
}

#[test]
fn hash_mappings_must_fit_the_model() {
    use burn_sparse_attn_core::{HashMappingConfig, HashMappings, HashMappingsConfig};
    let device = Default::default();
    let model = load(tiny_gguf().bytes).unwrap();
    let dir = std::env::temp_dir().join(format!("bsa-tiny-mappings-{}", std::process::id()));
    let try_mappings = |mapping: HashMappingConfig, layers: usize| {
        let config = HashMappingsConfig::new(mapping, layers);
        let mappings: HashMappings<B> = config.init(&device).unwrap();
        mappings.save_dir(&config, &dir).unwrap();
        model
            .load_hash_mappings(Some(&dir), &device)
            .map(|m| m.unwrap().layers.len())
            .map_err(|e| e.to_string())
    };
    let fitting = || HashMappingConfig::new(16, 4, 2).with_hidden(8).with_layers(2);
    assert_eq!(try_mappings(fitting(), 2), Ok(2));
    assert_eq!(try_mappings(HashMappingConfig::new(16, 4, 4).with_hidden(8).with_layers(2), 2), Ok(2));
    let error = try_mappings(fitting(), 3).unwrap_err();
    assert!(error.contains("they are for 3 layers, the model has 2"), "{error}");
    let error = try_mappings(HashMappingConfig::new(8, 4, 2), 2).unwrap_err();
    assert!(error.contains("head_dim 8, the model's is 16"), "{error}");
    let error = try_mappings(HashMappingConfig::new(16, 2, 2), 2).unwrap_err();
    assert!(error.contains("2 query heads, the model has 4"), "{error}");
    let error = try_mappings(HashMappingConfig::new(16, 4, 1), 2).unwrap_err();
    assert!(error.contains("1 key heads, the model has 4 heads and 2 KV heads"), "{error}");
    std::fs::remove_dir_all(&dir).unwrap();
}
