//! The evaluation harness on SmolLM2: every method equals dense when its budget covers
//! every key, the oracle keeps the most attention mass, and bad requests give clear errors.

use crate::common::{book_tokens, dense_model};
use burn_sparse_attn_model::eval::{
    attention_fidelity, perplexity_sweep, retrieval_sweep, score_sequence, FidelitySweep, KeyBudget,
    MethodKind, PerplexitySweep, Preset, Protocol, RetrievalSweep, RetrievalTask, Setting, SweepOptions,
};

const SPARSE: [MethodKind; 5] =
    [MethodKind::Streaming, MethodKind::OracleTopK, MethodKind::Hip, MethodKind::Hyper, MethodKind::Hash];

#[test]
fn fidelity_is_exact_at_full_budget_and_the_oracle_keeps_the_most_mass() {
    let (mut model, tokenizer) = dense_model();
    let context = 2 * KeyBudget::MIN_TOTAL + 9;
    let tokens = book_tokens(&tokenizer, context);
    let sweep = FidelitySweep {
        context,
        sparsities: vec![1.0, 2.0],
        methods: SPARSE.to_vec(),
        hash_mappings: None,
        shared_selection: false,
    };
    let mut seen = 0;
    let rows = attention_fidelity(&mut model, &tokens, &sweep, &Default::default(), |_| seen += 1).unwrap();
    assert_eq!(rows.len(), sweep.rows_per_layer() * model.layers.len());
    assert_eq!(seen, rows.len());
    for row in rows.iter().filter(|r| r.sparsity == 1.0) {
        assert!(row.relative_error < 1e-4, "{row:?}");
        if let Some(recall) = row.mass_recall {
            assert!((recall - 1.0).abs() < 1e-4, "{row:?}");
        }
    }
    let half: Vec<_> = rows.iter().filter(|r| r.sparsity == 2.0).collect();
    for layer in 0..model.layers.len() {
        let recall =
            |m: MethodKind| half.iter().find(|r| r.layer == layer && r.method == m).unwrap().mass_recall;
        let oracle = recall(MethodKind::OracleTopK).unwrap();
        assert!(oracle <= 1.0 + 1e-4, "layer {layer}: {oracle}");
        for method in [MethodKind::Streaming, MethodKind::Hip, MethodKind::Hash] {
            assert!(recall(method).unwrap() <= oracle + 1e-4, "layer {layer}: {method} beats the oracle");
        }
        assert!(recall(MethodKind::Hyper).is_none());
    }
    let mean_error = |m: MethodKind| {
        let errors: Vec<f64> = half.iter().filter(|r| r.method == m).map(|r| r.relative_error).collect();
        errors.iter().sum::<f64>() / errors.len() as f64
    };
    assert!(mean_error(MethodKind::OracleTopK) < mean_error(MethodKind::Streaming));
}

#[test]
fn perplexity_sweep_equals_dense_at_full_budget_and_rejects_long_contexts() {
    let (mut model, tokenizer) = dense_model();
    let context = 2 * KeyBudget::MIN_TOTAL + 5;
    let tokens = book_tokens(&tokenizer, context);
    let sweep = PerplexitySweep {
        contexts: vec![context],
        sparsities: vec![1.0],
        methods: SPARSE.to_vec(),
        dense_layers: vec![0],
        hash_mappings: None,
        shared_selection: false,
        protocol: Protocol::SparsePrefill,
        presets: vec![Preset::EqualBudget],
    };
    let device = Default::default();
    let rows = perplexity_sweep(&mut model, &tokens, &sweep, &device, |_| {}).unwrap();
    assert_eq!(rows.len(), sweep.runs());
    let dense = rows[0].perplexity;
    assert_eq!(rows[0].method, MethodKind::Dense);
    for row in &rows {
        assert!((row.perplexity - dense).abs() < 1e-3 * dense, "{row:?} vs dense {dense}");
        assert_eq!(row.agreement_with_dense, 1.0, "{row:?}");
    }
    let too_long = PerplexitySweep { contexts: vec![context + 1], ..sweep };
    let error = perplexity_sweep(&mut model, &tokens, &too_long, &device, |_| {}).unwrap_err();
    assert!(error.to_string().contains("longer than the text"), "{error}");
}

#[test]
fn retrieval_sweep_counts_what_each_method_finds_under_both_protocols() {
    let (mut model, tokenizer) = dense_model();
    for protocol in [Protocol::SparsePrefill, Protocol::DensePrefillSparseDecode { decoded: 1 }] {
        let sweep = RetrievalSweep {
            tasks: vec![RetrievalTask::Passkey],
            contexts: vec![256],
            depths: vec![0.2, 0.3],
            sparsities: vec![1.0, 3.0],
            methods: vec![MethodKind::Streaming],
            presets: vec![Preset::EqualBudget],
            trials: 2,
            options: SweepOptions::default(),
            protocol,
            seed: 1,
            // Four prompts per setting in batches of three and one, across depths.
            batch: 3,
            // The decode protocol's settings run on two threads at once: the same rows.
            jobs: if protocol == Protocol::SparsePrefill { 1 } else { 2 },
        };
        let rows =
            retrieval_sweep(&mut model, &tokenizer, None, &sweep, &Default::default(), |_| {}).unwrap();
        assert_eq!(rows.len(), sweep.rows());
        let found: Vec<(usize, usize)> = rows.iter().map(|r| (r.found, r.keys_per_query)).collect();
        // Dense and a window covering the prompt find both keys at both depths; a window of a
        // third cannot see a needle at 20-30% depth, whether it reads the prompt or only the
        // question.
        let expected = [(2, 256), (2, 256), (2, 256), (2, 256), (0, 96), (0, 96)];
        assert_eq!(found, expected, "{protocol:?}: {rows:?}");
        assert!(rows.iter().all(|r| r.protocol == protocol));
        assert!(rows.iter().all(|r| r.answers.len() == r.trials && r.seconds > 0.0), "{rows:?}");

        let none = RetrievalSweep { trials: 0, ..sweep.clone() };
        assert!(none.check(&tokenizer, None).unwrap_err().to_string().contains("at least one trial"));
        let unbatched = RetrievalSweep { batch: 0, ..sweep.clone() };
        assert!(unbatched
            .check(&tokenizer, None)
            .unwrap_err()
            .to_string()
            .contains("batches of at least one"));
        let idle = RetrievalSweep { jobs: 0, ..sweep.clone() };
        assert!(idle.check(&tokenizer, None).unwrap_err().to_string().contains("at least one job"));
        let books = RetrievalSweep { tasks: vec![RetrievalTask::MultiKey], ..sweep.clone() };
        assert!(books.check(&tokenizer, None).unwrap_err().to_string().contains("haystack"));
        let short = RetrievalSweep { contexts: vec![40], ..sweep };
        assert!(short.check(&tokenizer, None).unwrap_err().to_string().contains("longer context"));
    }
}

#[test]
fn as_deployed_presets_set_their_own_layers_and_budgets() {
    let (model, _) = dense_model();
    let config = &model.config;
    let options = SweepOptions { dense_layers: vec![0, 1], ..Default::default() };
    let configure =
        |method, preset| Setting { method, preset, sparsity: 8.0 }.configure(config, 8192, &options);
    let hyper = configure(MethodKind::Hyper, Preset::AsDeployed).unwrap();
    let kinds: Vec<MethodKind> = (0..config.layers).map(|l| hyper.plan.for_layer(l).kind()).collect();
    let sparse = config.layers - (config.layers as f64 / 4.0).round() as usize;
    assert!(kinds[..sparse].iter().all(|&k| k == MethodKind::Dense), "{kinds:?}");
    assert!(kinds[sparse..].iter().all(|&k| k == MethodKind::Hyper), "{kinds:?}");
    assert_eq!(hyper.keys_per_query, 4096 + 512);
    assert!((hyper.sparsity - 8192.0 / 4608.0).abs() < 1e-9);
    let hip = configure(MethodKind::Hip, Preset::AsDeployed).unwrap();
    assert_eq!((hip.plan.dense_layers.clone(), hip.keys_per_query), (vec![0, 1, 2], 16 + 256 + 512));
    let equal = configure(MethodKind::Hip, Preset::EqualBudget).unwrap();
    assert_eq!((equal.plan.dense_layers.clone(), equal.keys_per_query), (vec![0, 1], 1024));
    let error = configure(MethodKind::Hash, Preset::AsDeployed).unwrap_err().to_string();
    assert!(error.contains("hash has no as-deployed preset"), "{error}");
    assert!("authors".parse::<Preset>().unwrap_err().to_string().contains("as-deployed-exact-sink"));
}

#[test]
fn methods_and_budgets_reject_bad_input_clearly() {
    let error = "flash".parse::<MethodKind>().unwrap_err().to_string();
    assert!(error.contains("unknown method \"flash\"") && error.contains("oracle-top-k"), "{error}");
    for &method in MethodKind::ALL {
        assert_eq!(method.name().parse::<MethodKind>().unwrap(), method);
    }
    assert!(KeyBudget::new(1000, 0.5).unwrap_err().to_string().contains(">= 1"));
    assert!(KeyBudget::new(1000, f64::NAN).is_err());
    let budget = KeyBudget::new(4096, 16.0).unwrap();
    assert_eq!((budget.total, budget.sink + budget.window + budget.heavy), (256, 256));
    assert_eq!(KeyBudget::new(100, 8.0).unwrap().total, KeyBudget::MIN_TOTAL);
}

#[test]
fn trained_hash_mappings_keep_more_attention_mass_than_random_ones() {
    let (mut model, tokenizer) = dense_model();
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../assets/hash/smollm2-135m.safetensors");
    let context = 320;
    let tokens = book_tokens(&tokenizer, context);
    let mean_recall = |model: &mut burn_sparse_attn_model::Llama<crate::common::B>, hash_mappings| {
        let sweep = FidelitySweep {
            context,
            sparsities: vec![2.0],
            methods: vec![MethodKind::Hash],
            hash_mappings,
            shared_selection: false,
        };
        let rows = attention_fidelity(model, &tokens, &sweep, &Default::default(), |_| {}).unwrap();
        rows.iter().filter_map(|r| r.mass_recall).sum::<f64>() / rows.len() as f64
    };
    let trained = mean_recall(&mut model, Some(dir));
    let random = mean_recall(&mut model, None);
    eprintln!("mass recall at 2x: trained {trained:.3}, random {random:.3}");
    assert!(trained > random + 0.02, "trained {trained} vs random {random}");
}

#[test]
fn dense_prefill_then_sparse_decode_scores_like_dense_when_the_budget_covers_every_key() {
    let (mut model, tokenizer) = dense_model();
    let context = 2 * KeyBudget::MIN_TOTAL + 5;
    let tokens = book_tokens(&tokenizer, context);
    let protocol = Protocol::DensePrefillSparseDecode { decoded: 12 };
    let device = Default::default();
    let score_from = protocol.score_from(context).unwrap();
    let prefill = score_sequence(&model, &tokens, score_from, &device).unwrap().perplexity();
    let sweep = PerplexitySweep {
        contexts: vec![context],
        sparsities: vec![1.0],
        // Quest rounds its chosen keys down to whole pages, so its equal budget covers
        // slightly less than the context; tests/integration/methods.rs covers its hand-over.
        methods: MethodKind::sparse().into_iter().filter(|&m| m != MethodKind::Quest).collect(),
        dense_layers: vec![0],
        hash_mappings: None,
        shared_selection: false,
        protocol,
        presets: vec![Preset::EqualBudget],
    };
    let rows = perplexity_sweep(&mut model, &tokens, &sweep, &device, |_| {}).unwrap();
    assert_eq!(rows.len(), sweep.runs());
    for row in &rows {
        assert_eq!(row.protocol, protocol);
        assert!((row.perplexity - prefill).abs() < 1e-3 * prefill, "{row:?} vs dense prefill {prefill}");
        assert_eq!(row.agreement_with_dense, 1.0, "{row:?}");
    }
    // At a budget below the context, decoding is sparse: a short window changes the score.
    let window = PerplexitySweep { sparsities: vec![4.0], methods: vec![MethodKind::Streaming], ..sweep };
    let rows = perplexity_sweep(&mut model, &tokens, &window, &device, |_| {}).unwrap();
    assert!((rows[1].perplexity - prefill).abs() > 1e-4 * prefill, "{rows:?}");
    let error = Protocol::DensePrefillSparseDecode { decoded: context }.score_from(context).unwrap_err();
    assert!(error.to_string().contains("do not fit"), "{error}");
}
