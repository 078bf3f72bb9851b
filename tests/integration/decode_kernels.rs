//! The decode-side kernels of HashAttention against the reference: the fused signature
//! kernel (MLP + sign packing in one launch) against the reference MLP's codes, and the
//! top-k by match counts split over several cubes per row against the host rule, with ties
//! that cross the cubes' chunks. Under wgpu always, on CUDA with `--features cuda`.

use burn::module::Module;
use burn::record::{BinBytesRecorder, FullPrecisionSettings, Recorder};
use burn::tensor::{backend::Backend, Int, Tensor, TensorData};
use burn_sparse_attn::hash::HashActivation;
use burn_sparse_attn::kernels::{self, KernelWindow};
use burn_sparse_attn::rng::SplitMix64;
use burn_sparse_attn::{HashMapping, HashMappingConfig};

use crate::kernels::{floats, host_signature_top_k, ints, pair, rows_of, Ref};

/// The same random mappings on both backends (through a record: Burn initialises lazily).
fn same_mapping<G: Backend>(
    config: &HashMappingConfig,
    device: &G::Device,
) -> (HashMapping<Ref>, HashMapping<G>) {
    let recorder = BinBytesRecorder::<FullPrecisionSettings>::default();
    let mapping = config.init::<Ref>(&Default::default()).unwrap();
    let bytes = recorder.record(mapping.into_record(), ()).unwrap();
    let on_ref = config
        .init::<Ref>(&Default::default())
        .unwrap()
        .load_record(recorder.load(bytes.clone(), &Default::default()).unwrap());
    let on_gpu = config.init::<G>(device).unwrap().load_record(recorder.load(bytes, device).unwrap());
    (on_ref, on_gpu)
}

/// Every bit of `signatures` whose reference code is clear of zero has that code's sign;
/// returns how many bits were checked.
fn assert_signs(name: &str, codes: Tensor<Ref, 4>, signatures: Vec<i64>) -> usize {
    let bits = codes.dims()[3];
    let codes = floats(codes);
    assert_eq!(codes.len(), signatures.len() * 32, "{name}: sizes");
    let mut checked = 0;
    for (i, &code) in codes.iter().enumerate() {
        if code.abs() > 1e-3 {
            let word = signatures[i / 32] as u32;
            let bit = (word >> (i % bits % 32)) & 1 == 1;
            assert_eq!(bit, code >= 0.0, "{name}: bit {i} (code {code})");
            checked += 1;
        }
    }
    checked
}

fn fused_signatures_match_reference_codes<G: Backend>(device: &G::Device) {
    for (layers, hidden, bits, activation, head_dim, query_heads, key_heads, kv_heads, len) in [
        (3, 128, 32, HashActivation::Silu, 64, 4, 2, 2, 1),
        (1, 128, 64, HashActivation::Relu, 24, 3, 3, 1, 3),
        (2, 40, 64, HashActivation::Gelu, 13, 6, 6, 2, 5),
        (4, 17, 32, HashActivation::Tanh, 24, 2, 1, 1, 2),
        (3, 33, 96, HashActivation::Silu, 7, 2, 2, 1, 11),
    ] {
        let config = HashMappingConfig::new(head_dim, query_heads, key_heads)
            .with_bits(bits)
            .with_hidden(hidden)
            .with_layers(layers)
            .with_activation(activation);
        let (on_ref, on_gpu) = same_mapping::<G>(&config, device);
        let (q_ref, q) = pair::<G>([2, query_heads, len, head_dim], 5, device);
        let (k_ref, k) = pair::<G>([2, kv_heads, len, head_dim], 6, device);
        let name = format!("{layers} layers of {hidden}, {bits} bits, {activation:?}");
        let query = ints(kernels::hash_signatures(&q, &on_gpu.query).expect("kernel path"));
        assert_eq!(query.len(), 2 * query_heads * len * bits / 32);
        let checked = assert_signs(&format!("{name}: queries"), on_ref.query_codes(q_ref), query.clone());
        assert!(checked * 100 >= 2 * query_heads * len * bits * 95, "{name}: too few bits clear of zero");
        // The mapping's own entry point takes the kernel.
        assert_eq!(ints(on_gpu.query_signatures(q).unwrap()), query, "{name}: query_signatures");
        let key = kernels::hash_signatures(&k, &on_gpu.key).expect("kernel path");
        assert_eq!(key.dims(), [2, key_heads, len, bits / 32]);
        assert_signs(&format!("{name}: keys"), on_ref.key_codes(k_ref).unwrap(), ints(key));
    }
}

/// Long rows (several cubes each), signatures drawn from a few distinct words so that most
/// keys tie at the threshold, shared selection, two words, fewer candidates than k, and
/// enough rows (4096) that only the cap on keys per cube splits them.
fn match_top_k_splits_rows_and_keeps_tie_order<G: Backend>(device: &G::Device) {
    let mut rng = SplitMix64::new(17);
    for (heads, key_heads, group, words, query_len, kv_len, k, distinct) in [
        (2, 2, 1, 1, 1, 5003, 301, 0),
        (8, 2, 4, 1, 1, 6007, 190, 3),
        (3, 1, 1, 2, 2, 4500, 700, 2),
        (4, 4, 1, 1, 1, 9000, 8999, 5),
        (2, 1, 2, 1, 1, 2000, 64, 1),
        (8, 8, 1, 1, 512, 4600, 300, 4),
    ] {
        let random_word = |rng: &mut SplitMix64| rng.next_u64() as u32 as i32 as i64;
        let palette: Vec<i64> = (0..distinct.max(1)).map(|_| random_word(&mut rng)).collect();
        let q: Vec<i64> = (0..heads * query_len * words).map(|_| random_word(&mut rng)).collect();
        let keys: Vec<i64> = (0..key_heads * kv_len * words)
            .map(|_| if distinct == 0 { random_word(&mut rng) } else { palette[rng.below(distinct)] })
            .collect();
        let to = |v: &Vec<i64>, shape: [usize; 4]| {
            Tensor::<G, 4, Int>::from_data(
                TensorData::new(v.iter().map(|&x| x as i32).collect::<Vec<_>>(), shape),
                device,
            )
        };
        let at = KernelWindow { first_position: kv_len - query_len, sink: 7, window: 33 };
        let got = kernels::top_k_by_signatures(
            &to(&q, [1, heads, query_len, words]),
            &to(&keys, [1, key_heads, kv_len, words]),
            group,
            at,
            k,
        )
        .expect("kernel path");
        let got = ints(got);
        let name =
            format!("{heads}/{key_heads} heads, group {group}, {kv_len} keys, k {k}, {distinct} distinct");
        for row in got.chunks(k) {
            let chosen: Vec<i64> = row.iter().copied().take_while(|&key| key >= 0).collect();
            assert!(row[chosen.len()..].iter().all(|&key| key == -1), "{name}: padding only at the end");
            assert!(chosen.windows(2).all(|w| w[0] < w[1]), "{name}: keys in ascending order");
        }
        let expected =
            host_signature_top_k(&q, &keys, [1, heads, query_len, kv_len, words], key_heads, at, k, group);
        assert_eq!(expected, rows_of(&got, None, k), "{name}");
    }
}

macro_rules! decode_kernel_tests {
    ($name:ident, $backend:ty) => {
        mod $name {
            use super::*;
            type G = $backend;
            #[test]
            fn fused_signatures_match_reference() {
                fused_signatures_match_reference_codes::<G>(&Default::default());
            }
            #[test]
            fn match_top_k_over_split_rows_matches_host_rule() {
                match_top_k_splits_rows_and_keeps_tie_order::<G>(&Default::default());
            }
        }
    };
}

decode_kernel_tests!(wgpu, burn::backend::Wgpu);
#[cfg(feature = "cuda")]
decode_kernel_tests!(cuda, burn::backend::Cuda);
