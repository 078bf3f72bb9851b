//! Retrieval on SmolLM2-135M-Instruct: dense attention solves every task at 1K tokens under
//! both protocols; a method that keeps the needle's keys finds a passkey too; a sliding
//! window that drops them cannot. Needs the model (see golden_logits.rs).

use crate::common::dense_model;
use burn_sparse_attn_core::{AttentionConfig, OracleTopKConfig, StreamingAttentionConfig};
use burn_sparse_attn_model::eval::retrieval::answer;
use burn_sparse_attn_model::eval::{answer_holds, retrieval_prompt, Haystack, Protocol, RetrievalTask};
use burn_sparse_attn_model::AttentionPlan;

const DECODE: Protocol = Protocol::DensePrefillSparseDecode { decoded: 1 };

/// Two stretches of the built-in book as the filler of the book tasks.
fn haystack() -> Haystack {
    let lines: Vec<&str> = include_str!("../../../../assets/text/pride-and-prejudice.txt").lines().collect();
    let part = |range: std::ops::Range<usize>| lines[range].join("\n");
    Haystack::from_texts(&[part(2000..3000), part(9000..10000)]).unwrap()
}

#[test]
fn passkey_is_found_unless_the_attention_drops_it() {
    let device = Default::default();
    let (mut model, tokenizer) = dense_model();
    let prompt = retrieval_prompt(RetrievalTask::Passkey, &tokenizer, None, 512, 0.1, 4).unwrap();
    let length = prompt.tokens().len();
    assert!(length <= 512 && length > 512 - 40, "prompt of {length} tokens");
    let dense = model.build_attention(&AttentionPlan::dense(), &device).unwrap();
    let mut found = |config: AttentionConfig, protocol| {
        let attention = model.build_attention(&AttentionPlan::new(config, vec![]), &device).unwrap();
        let text = answer(&mut model, &tokenizer, &prompt, &dense, &attention, protocol).unwrap();
        (answer_holds(&text, &prompt.answers), text)
    };
    let oracle =
        AttentionConfig::OracleTopK(OracleTopKConfig::new().with_sink(4).with_window(32).with_heavy(64.0));
    let window = AttentionConfig::Streaming(StreamingAttentionConfig::new().with_sink(4).with_window(100));
    for protocol in [Protocol::SparsePrefill, DECODE] {
        let (top_k, text) = found(oracle.clone(), protocol);
        assert!(top_k, "oracle top-k answered {text:?} ({protocol:?})");
        let (streaming, text) = found(window.clone(), protocol);
        assert!(
            !streaming,
            "a 100-token window cannot see the needle 400 tokens back, yet answered {text:?}"
        );
    }
}

#[test]
fn dense_solves_every_task_at_1k_under_both_protocols() {
    let device = Default::default();
    let (mut model, tokenizer) = dense_model();
    let haystack = haystack();
    let dense = model.build_attention(&AttentionPlan::dense(), &device).unwrap();
    for task in RetrievalTask::ALL {
        let mut answered = Vec::new();
        for (depth, seed) in [(0.1, 1), (0.4, 2), (0.6, 3), (0.9, 4)] {
            let prompt = retrieval_prompt(task, &tokenizer, Some(&haystack), 1024, depth, seed).unwrap();
            let length = prompt.tokens().len();
            assert!(length <= 1024 && length > 1024 - 80, "{task}: prompt of {length} tokens");
            let text =
                answer(&mut model, &tokenizer, &prompt, &dense, &dense, Protocol::SparsePrefill).unwrap();
            answered.push((answer_holds(&text, &prompt.answers), text, prompt));
        }
        // A 135M model is far from perfect on the harder tasks: these prompts measured 4, 4, 2
        // and 1 of 4 with dense attention. The floor catches a broken prompt, checker or
        // protocol (which answers none), not the model's limits.
        let floor = match task {
            RetrievalTask::Passkey | RetrievalTask::MultiKey => 3,
            RetrievalTask::MultiValue => 2,
            RetrievalTask::Distractors => 1,
        };
        let solved = answered.iter().filter(|a| a.0).count();
        eprintln!("{task}: dense solved {solved} of 4");
        assert!(
            solved >= floor,
            "{task}: {:?}",
            answered.iter().map(|a| (&a.1, &a.2.answers)).collect::<Vec<_>>()
        );
        // Dense prefill and dense decoding of the question give the same answer.
        let (_, prefill_text, prompt) = &answered[0];
        let decode_text = answer(&mut model, &tokenizer, prompt, &dense, &dense, DECODE).unwrap();
        assert_eq!(&decode_text, prefill_text, "{task}");
    }
}
