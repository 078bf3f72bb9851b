//! Generation: the cached decode loop against full forward passes, stopping rules, sampling
//! and bad input on the tiny model; the chat template and streamed text on SmolLM2.

use burn::tensor::{Int, Tensor, TensorData};
use burn_sparse_attn_core::{AttentionConfig, OracleTopKConfig, StreamingAttentionConfig};
use burn_sparse_attn_model::{
    AttentionPlan, ChatMessage, ChatTemplate, GenerationConfig, GgufFile, Llama, SamplingConfig, StopReason,
    TextStream,
};

use crate::common::{dense_model, gguf, B};
use crate::tiny_gguf::{tiny_gguf, tiny_gguf_with};

fn tiny(overrides: &[(&str, f64)]) -> Llama<B> {
    let bytes = if overrides.is_empty() { tiny_gguf() } else { tiny_gguf_with(overrides) }.bytes;
    Llama::<B>::from_gguf(&GgufFile::parse(bytes).unwrap(), &AttentionPlan::dense(), &Default::default())
        .unwrap()
}

/// Greedy continuation computed the slow way: the whole sequence through fresh caches at
/// every step, the argmax of the last position.
fn greedy_without_cache(model: &Llama<B>, prompt: &[u32], count: usize) -> Vec<u32> {
    let mut sequence = prompt.to_vec();
    for _ in 0..count {
        let ids =
            TensorData::new(sequence.iter().map(|&t| t as i64).collect::<Vec<_>>(), [1, sequence.len()]);
        let logits =
            model.forward(Tensor::<B, 2, Int>::from_data(ids, &Default::default()), &mut model.new_caches());
        let [_, t, v] = logits.as_ref().unwrap().dims();
        let last = logits.unwrap().slice([0..1, t - 1..t, 0..v]).argmax(2);
        sequence.push(last.into_data().iter::<i64>().next().unwrap() as u32);
    }
    sequence[prompt.len()..].to_vec()
}

const PROMPT: [u32; 11] = [3, 17, 5, 39, 0, 22, 8, 8, 14, 30, 2];

#[test]
fn cached_greedy_generation_equals_full_forward_passes() {
    let mut model = tiny(&[]);
    let config = GenerationConfig::new().with_max_new_tokens(12);
    let want = greedy_without_cache(&model, &PROMPT, 12);
    let generated = model.generate(&PROMPT, &config, |_| true).unwrap();
    assert_eq!(generated.tokens, want);
    assert_eq!((generated.stop, generated.prompt_tokens), (StopReason::MaxTokens, PROMPT.len()));
    // A sparse method whose budget covers every key decodes the same tokens.
    let everything = OracleTopKConfig::new().with_sink(2).with_window(4).with_heavy(64.0);
    model
        .set_attention(
            &AttentionPlan::new(AttentionConfig::OracleTopK(everything), vec![]),
            &Default::default(),
        )
        .unwrap();
    assert_eq!(model.generate(&PROMPT, &config, |_| true).unwrap().tokens, want);
}

#[test]
fn a_sparse_method_is_used_while_decoding() {
    let mut model = tiny(&[]);
    let config = GenerationConfig::new().with_max_new_tokens(40);
    let dense = model.generate(&PROMPT, &config, |_| true).unwrap().tokens;
    let window = StreamingAttentionConfig::new().with_sink(1).with_window(2);
    model
        .set_attention(&AttentionPlan::new(AttentionConfig::Streaming(window), vec![]), &Default::default())
        .unwrap();
    assert_ne!(model.generate(&PROMPT, &config, |_| true).unwrap().tokens, dense);
}

#[test]
fn generation_stops_at_stop_tokens_the_callback_and_the_context() {
    let model = tiny(&[]);
    let free = model.generate(&PROMPT, &GenerationConfig::new().with_max_new_tokens(8), |_| true).unwrap();
    let stop = free.tokens[3];
    let first = free.tokens.iter().position(|&t| t == stop).unwrap();
    let stopped = model
        .generate(
            &PROMPT,
            &GenerationConfig::new().with_max_new_tokens(8).with_stop_tokens(vec![stop]),
            |_| true,
        )
        .unwrap();
    assert_eq!((stopped.stop, stopped.tokens.as_slice()), (StopReason::StopToken, &free.tokens[..=first]));

    let mut seen = Vec::new();
    let called = model
        .generate(&PROMPT, &GenerationConfig::new(), |t| {
            seen.push(t);
            seen.len() < 3
        })
        .unwrap();
    assert_eq!((called.stop, &called.tokens), (StopReason::Callback, &seen));
    assert_eq!(seen, free.tokens[..3]);

    let short = tiny(&[("llama.context_length", 16.0)]);
    let full = short.generate(&PROMPT, &GenerationConfig::new(), |_| true).unwrap();
    assert_eq!((full.stop, full.tokens.len()), (StopReason::ContextFull, 16 - PROMPT.len()));
    let past = short.generate(
        &PROMPT,
        &GenerationConfig::new().with_max_new_tokens(9).with_past_context(true),
        |_| true,
    );
    assert_eq!(past.unwrap().tokens.len(), 9);
}

#[test]
fn sampling_repeats_for_a_seed_and_differs_across_seeds() {
    let model = tiny(&[]);
    let run = |seed| {
        let sampling = SamplingConfig::new().with_temperature(1.5).with_seed(seed);
        let config = GenerationConfig::new().with_max_new_tokens(24).with_sampling(sampling);
        model.generate(&PROMPT, &config, |_| true).unwrap().tokens
    };
    assert_eq!(run(1), run(1));
    assert_ne!(run(1), run(2));
    let top1 = SamplingConfig::new().with_temperature(1.5).with_top_k(1);
    let config = GenerationConfig::new().with_max_new_tokens(12).with_sampling(top1);
    assert_eq!(
        model.generate(&PROMPT, &config, |_| true).unwrap().tokens,
        greedy_without_cache(&model, &PROMPT, 12)
    );
}

#[test]
fn bad_prompts_and_settings_are_refused() {
    let model = tiny(&[]);
    let error = |prompt: &[u32], config: GenerationConfig| {
        model.generate(prompt, &config, |_| true).unwrap_err().to_string()
    };
    assert!(error(&[], GenerationConfig::new()).contains("no tokens"));
    assert!(error(&[1, 40], GenerationConfig::new()).contains("token 40 is past the vocabulary of 40"));
    let long = vec![1; 128];
    assert!(error(&long, GenerationConfig::new()).contains("context of 128"));
    let hot = GenerationConfig::new().with_sampling(SamplingConfig::new().with_temperature(-0.5));
    assert!(error(&PROMPT, hot).contains("temperature"));
}

#[test]
fn smollm2_answers_a_chat_prompt_streamed_token_by_token() {
    let (model, tokenizer) = dense_model();
    let template = ChatTemplate::from_gguf(&gguf()).unwrap().expect("SmolLM2-Instruct has a chat template");
    let text = template.render(&[ChatMessage::user("What is the capital of France?")], true).unwrap();
    assert!(text.starts_with("<|im_start|>system\n") && text.ends_with("<|im_start|>assistant\n"), "{text}");
    let prompt = tokenizer.encode(&text).unwrap();
    let im_start = tokenizer.encode("<|im_start|>").unwrap();
    assert_eq!(im_start.len(), 1, "control tokens are matched whole");
    assert_eq!(prompt.iter().filter(|&&t| t == im_start[0]).count(), 3);

    let stop = tokenizer.eos.into_iter().collect::<Vec<_>>();
    let config = GenerationConfig::new().with_max_new_tokens(24).with_stop_tokens(stop);
    let mut stream = TextStream::new(&tokenizer);
    let mut streamed = String::new();
    let generation = model.generate(&prompt, &config, |t| {
        streamed.push_str(&stream.push(t).unwrap());
        true
    });
    let generation = generation.unwrap();
    streamed.push_str(&stream.finish().unwrap());
    assert_eq!(streamed, tokenizer.decode(&generation.tokens).unwrap());
    assert!(streamed.contains("Paris"), "{streamed:?}");
    assert_eq!(generation.stop, StopReason::StopToken, "{streamed:?}");
    assert!(generation.prefill_tokens_per_second() > 0.0 && generation.decode_tokens_per_second() > 0.0);
}
