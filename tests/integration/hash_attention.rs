//! HashAttention: packed signatures, popcount scores, the keys it chooses, saving mappings.

use crate::common::*;
use burn::module::Param;
use burn::tensor::Tensor;
use burn_sparse_attn::hash::{matching_bits, pack_signs, unpack_signs};
use burn_sparse_attn::{
    AttentionMethod, AttnError, HashActivation, HashAttentionConfig, HashMapping, HashMappingConfig, KvCache,
};

/// Host packing: bit `i % 32` of word `i / 32` set where `x >= 0`.
fn host_pack(values: &[f32], bits: usize) -> Vec<u32> {
    values
        .chunks(bits)
        .flat_map(|row| {
            row.chunks(32).map(|w| w.iter().enumerate().map(|(i, x)| ((*x >= 0.0) as u32) << i).sum())
        })
        .collect()
}

#[test]
fn packing_matches_host_bits_and_unpacks_to_the_signs() {
    let codes = randn([2, 3, 5, 64], 8);
    let values = to_vec(codes.clone());
    let packed = pack_signs(codes).unwrap();
    assert_eq!(packed.dims(), [2, 3, 5, 2]);
    let words: Vec<u32> = to_ints(packed.clone()).into_iter().map(|w| w as u32).collect();
    assert_eq!(words, host_pack(&values, 64));
    let signs = to_vec(unpack_signs(packed));
    assert!(signs.iter().zip(&values).all(|(s, x)| *s == if *x >= 0.0 { 1.0 } else { -1.0 }));
}

#[test]
fn matching_bits_equals_host_popcount_with_shared_key_heads() {
    let (q, k) = (randn([1, 6, 4, 64], 1), randn([1, 2, 7, 64], 2));
    let (qw, kw) = (host_pack(&to_vec(q.clone()), 64), host_pack(&to_vec(k.clone()), 64));
    let scores = to_vec(matching_bits(pack_signs(q).unwrap(), pack_signs(k).unwrap()));
    for h in 0..6 {
        for i in 0..4 {
            for j in 0..7 {
                let kh = h / 3;
                let want: u32 = (0..2)
                    .map(|w| (!(qw[(h * 4 + i) * 2 + w] ^ kw[(kh * 7 + j) * 2 + w])).count_ones())
                    .sum();
                assert_eq!(scores[(h * 4 + i) * 7 + j], want as f32);
            }
        }
    }
}

#[test]
fn clones_of_an_untrained_mapping_sign_alike() {
    // Burn draws a lazily initialised parameter separately in each clone: a mapping cloned
    // before its first use (as a model installing the same attention twice does) would hash
    // differently in each copy.
    let mapping = HashMappingConfig::new(16, 4, 2).init::<B>(&device()).unwrap();
    let (first, second) = (mapping.clone(), mapping.clone());
    let q = randn([1, 4, 9, 16], 3);
    let k = randn([1, 2, 9, 16], 4);
    assert_eq!(
        to_ints(first.query_signatures(q.clone()).unwrap()),
        to_ints(second.query_signatures(q).unwrap())
    );
    assert_eq!(to_ints(first.key_signatures(k.clone()).unwrap()), to_ints(second.key_signatures(k).unwrap()));
}

#[test]
fn bits_must_be_a_multiple_of_32() {
    for bits in [0, 16, 48] {
        let config = HashMappingConfig::new(8, 2, 2).with_bits(bits);
        assert_eq!(config.init::<B>(&device()).unwrap_err(), AttnError::BitsNotMultipleOf32(bits));
    }
    assert_eq!(pack_signs(randn([1, 1, 2, 40], 0)).unwrap_err(), AttnError::BitsNotMultipleOf32(40));
    let err = HashMappingConfig::new(8, 4, 3).init::<B>(&device()).unwrap_err();
    assert_eq!(err, AttnError::HeadsNotDivisible { query_heads: 4, kv_heads: 3 });
}

/// A one-layer mapping with identity weights: signatures are sign(q) and sign(k).
fn identity_mapping(heads: usize, key_heads: usize, dim: usize) -> HashMapping<B> {
    let mut mapping = HashMappingConfig::new(dim, heads, key_heads)
        .with_layers(1)
        .with_bits(dim)
        .init::<B>(&device())
        .unwrap();
    for (mlp, h) in [(&mut mapping.query, heads), (&mut mapping.key, key_heads)] {
        let eye = Tensor::<B, 2>::eye(dim, &device()).unsqueeze_dim::<3>(0).repeat_dim(0, h);
        mlp.layers[0].weight = Param::from_tensor(eye);
        mlp.layers[0].bias = Param::from_tensor(Tensor::zeros([h, dim], &device()));
    }
    mapping
}

#[test]
fn sign_mapping_chooses_the_keys_a_direct_computation_says() {
    chooses_the_keys_a_direct_computation_says(false);
}

#[test]
fn shared_selection_chooses_the_keys_of_the_summed_match_counts() {
    chooses_the_keys_a_direct_computation_says(true);
}

/// With identity mappings (signatures are signs), the keys chosen per query head, or per KV
/// head from match counts summed over its query heads (`shared`), against loops.
fn chooses_the_keys_a_direct_computation_says(shared: bool) {
    let (heads, kv_heads, dim, len) = (4, 2, 32, 41);
    let (sink, window, heavy) = (3, 4, 6);
    let dims = Dims {
        batch: 1,
        query_heads: heads,
        kv_heads,
        query_len: len,
        kv_len: len,
        head_dim: dim,
        value_dim: 8,
    };
    let (q, k, v) = dims.qkv(60);
    let config = HashAttentionConfig::new(HashMappingConfig::new(dim, heads, kv_heads))
        .with_sink(sink)
        .with_window(window)
        .with_heavy(heavy as f64)
        .with_shared_selection(shared);
    let method = config.init_with(identity_mapping(heads, kv_heads, dim)).unwrap();
    let mut cache = KvCache::new();
    method
        .prefill(
            q.clone().narrow(2, 0, len - 1),
            k.clone().narrow(2, 0, len - 1),
            v.clone().narrow(2, 0, len - 1),
            &mut cache,
        )
        .unwrap();
    method
        .decode(
            q.clone().narrow(2, len - 1, 1),
            k.clone().narrow(2, len - 1, 1),
            v.clone().narrow(2, len - 1, 1),
            &mut cache,
        )
        .unwrap();
    let selection = method.selection(q.clone(), &cache).unwrap();

    let (qv, kv) = (to_vec(q), to_vec(k));
    let signs = |x: &[f32]| x.iter().map(|v| *v >= 0.0).collect::<Vec<_>>();
    let indices = to_ints(selection.indices.clone());
    let valid = to_bools(selection.valid.clone());
    let width = selection.width();
    for h in 0..heads {
        for i in 0..len {
            let matches = |h: usize, j: usize| {
                let qs = signs(&qv[(h * len + i) * dim..][..dim]);
                let ks = signs(&kv[((h / 2) * len + j) * dim..][..dim]);
                qs.iter().zip(&ks).filter(|(a, b)| a == b).count()
            };
            let group = if shared { heads / kv_heads } else { 1 };
            let first = h / group * group;
            let score = |j: usize| (first..first + group).map(|g| matches(g, j)).sum::<usize>();
            let row = (h * len + i) * width;
            let chosen: Vec<usize> =
                (0..width).filter(|&n| valid[row + n]).map(|n| indices[row + n] as usize).collect();
            let fixed: Vec<usize> = (0..=i).filter(|&j| j < sink || j + window > i).collect();
            let candidates: Vec<usize> = (sink..=i).filter(|&j| j + window <= i).collect();
            let heavy_chosen: Vec<usize> = chosen.iter().cloned().filter(|j| !fixed.contains(j)).collect();
            assert!(fixed.iter().all(|j| chosen.contains(j)), "head {h} query {i}: {chosen:?}");
            assert_eq!(heavy_chosen.len(), heavy.min(candidates.len()), "head {h} query {i}");
            // Ties allowed: every chosen key scores at least as high as every key left out.
            let worst_chosen = heavy_chosen.iter().map(|&j| score(j)).min().unwrap_or(usize::MAX);
            let best_left =
                candidates.iter().filter(|j| !chosen.contains(j)).map(|&j| score(j)).max().unwrap_or(0);
            assert!(worst_chosen >= best_left, "head {h} query {i}: chose {worst_chosen} over {best_left}");
            // A shared list is the same for every query head of the KV head.
            let first_row = (first * len + i) * width;
            let first_chosen: Vec<usize> = (0..width)
                .filter(|&n| valid[first_row + n])
                .map(|n| indices[first_row + n] as usize)
                .collect();
            if shared {
                assert_eq!(chosen, first_chosen, "head {h} query {i}");
            }
        }
    }
}

#[test]
fn saved_mappings_load_back_identically() {
    let config =
        HashMappingConfig::new(16, 3, 1).with_bits(64).with_hidden(24).with_activation(HashActivation::Gelu);
    let mapping = config.init::<B>(&device()).unwrap();
    let q = randn([2, 3, 5, 16], 4);
    let k = randn([2, 1, 5, 16], 5);
    let (qs, ks) = (mapping.query_signatures(q.clone()).unwrap(), mapping.key_signatures(k.clone()).unwrap());
    let codes = mapping.query_codes(q.clone());
    let path = std::env::temp_dir().join(format!("bsa-mapping-{}", std::process::id()));
    mapping.save(&path).unwrap();
    let loaded = config.load::<B>(&path, &device()).unwrap();
    std::fs::remove_file(path.with_extension("mpk")).ok();
    assert_eq!(to_ints(loaded.query_signatures(q.clone()).unwrap()), to_ints(qs));
    assert_eq!(to_ints(loaded.key_signatures(k).unwrap()), to_ints(ks));
    assert_eq!(max_abs_diff(loaded.query_codes(q), codes), 0.0);

    let err = config.load::<B>(std::env::temp_dir().join("bsa-no-such-file"), &device()).unwrap_err();
    assert!(matches!(err, AttnError::File { .. }), "{err}");
}

#[test]
fn query_heads_must_match_the_mapping() {
    let method = HashAttentionConfig::new(HashMappingConfig::new(8, 4, 2)).init::<B>(&device()).unwrap();
    let err =
        method.forward(randn([1, 2, 5, 8], 0), randn([1, 2, 5, 8], 1), randn([1, 2, 5, 8], 2)).unwrap_err();
    assert!(matches!(err, AttnError::Shape { name: "q", .. }), "{err}");
}
