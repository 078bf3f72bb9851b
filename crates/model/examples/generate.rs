//! Generation with a sparse method: SmolLM2 answers a chat prompt with HashAttention (its
//! trained mappings) in every layer but the first two, streaming the answer.
//!
//! `cargo run --release -p burn-sparse-attn-model --example generate -- \
//!     models/SmolLM2-135M-Instruct.Q4_1.gguf assets/hash/smollm2-135m.safetensors "Why is the sky blue?"`

use std::io::Write;

use burn::backend::NdArray;
use burn_sparse_attn_model::eval::{plan, KeyBudget, MethodKind};
use burn_sparse_attn_model::{
    AttentionPlan, ChatMessage, ChatTemplate, GenerationConfig, GgufFile, GgufTokenizer, Llama,
    SamplingConfig, TextStream,
};

type B = NdArray<f32>;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [model_path, mappings, question] = args.as_slice() else {
        return Err("usage: generate MODEL.gguf MAPPINGS.safetensors QUESTION".into());
    };
    let device = Default::default();
    let file = GgufFile::open(model_path)?;
    let tokenizer = GgufTokenizer::from_gguf(&file)?;
    let mut model = Llama::<B>::from_gguf(&file, &AttentionPlan::dense(), &device)?;

    let template = ChatTemplate::from_gguf(&file)?.ok_or("the model has no chat template")?;
    let prompt = tokenizer.encode(&template.render(&[ChatMessage::user(question.as_str())], true)?)?;

    // HashAttention at 1/8 of the prompt's keys (at least 96), layers 0 and 1 dense.
    let budget = KeyBudget::new(prompt.len(), 8.0)?;
    let hash = plan(MethodKind::Hash, &model.config, &budget, &[0, 1], &Some(mappings.into()), false);
    model.set_attention(&hash, &device)?;

    let config = GenerationConfig::new()
        .with_max_new_tokens(200)
        .with_stop_tokens(tokenizer.eos.into_iter().collect())
        .with_sampling(SamplingConfig::new().with_temperature(0.7).with_top_p(0.9).with_seed(1));
    let mut stream = TextStream::new(&tokenizer);
    let generation = model.generate(&prompt, &config, |token| {
        print!("{}", stream.push(token).unwrap_or_default());
        std::io::stdout().flush().is_ok()
    })?;
    println!("{}", stream.finish()?);
    eprintln!(
        "{} prompt tokens at {:.0} tokens/s, {} generated at {:.1} tokens/s ({:?})",
        generation.prompt_tokens,
        generation.prefill_tokens_per_second(),
        generation.tokens.len(),
        generation.decode_tokens_per_second(),
        generation.stop
    );
    Ok(())
}
