//! Passkey retrieval on SmolLM2-135M-Instruct: dense attention finds a number hidden early
//! in 512 tokens; a method that keeps the needle's keys finds it too; a sliding window that
//! drops them cannot. Needs the model (see golden_logits.rs).

use crate::common::dense_model;
use burn_sparse_attn_core::{AttentionConfig, OracleTopKConfig, StreamingAttentionConfig};
use burn_sparse_attn_model::passkey::{passkey_prompt, retrieves_passkey};
use burn_sparse_attn_model::AttentionPlan;

#[test]
fn passkey_is_found_unless_the_attention_drops_it() {
    let device = Default::default();
    let (mut model, tokenizer) = dense_model();
    let (context, depth, passkey) = (512, 0.1, 48213);
    let prompt = passkey_prompt(&tokenizer, context, depth, passkey).unwrap();
    assert!(prompt.len() <= context && prompt.len() > context - 40, "prompt of {} tokens", prompt.len());

    let mut found = |config: Option<AttentionConfig>| {
        let plan = config.map_or_else(AttentionPlan::dense, |c| AttentionPlan::new(c, vec![]));
        model.set_attention(&plan, &device).unwrap();
        retrieves_passkey(&model, &tokenizer, context, depth, passkey).unwrap()
    };
    let (dense, answer) = found(None);
    assert!(dense, "dense answered {answer:?}");
    let oracle = OracleTopKConfig::new().with_sink(4).with_window(32).with_heavy(64.0);
    let (top_k, answer) = found(Some(AttentionConfig::OracleTopK(oracle)));
    assert!(top_k, "oracle top-k answered {answer:?}");
    let window = StreamingAttentionConfig::new().with_sink(4).with_window(100);
    let (streaming, answer) = found(Some(AttentionConfig::Streaming(window)));
    assert!(!streaming, "a 100-token window cannot see the needle 400 tokens back, yet answered {answer:?}");
}
