//! Passkey retrieval: a number hidden at a chosen depth of filler text, asked for at the end.

use burn::tensor::{backend::Backend, Int, Tensor, TensorData};

use crate::error::ModelResult;
use crate::llama::Llama;
use crate::tokenizer::GgufTokenizer;

const INTRO: &str = "There is an important piece of information hidden inside a lot of irrelevant text. \
Find it and memorize it. I will quiz you about it.\n";
const FILLER: &str =
    "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again. ";
const QUESTION: &str = "\nWhat is the pass key? The pass key is";

/// A prompt of at most `context` tokens (as many filler sentences as fit) with `passkey`
/// stated at `depth` (0 = start, 1 = end) of the filler, ending with the question.
pub fn passkey_prompt(
    tokenizer: &GgufTokenizer,
    context: usize,
    depth: f64,
    passkey: u32,
) -> ModelResult<Vec<u32>> {
    let needle = format!("The pass key is {passkey}. Remember it. {passkey} is the pass key. ");
    let build = |fillers: usize| {
        let before = ((fillers as f64) * depth.clamp(0.0, 1.0)).round() as usize;
        let text =
            format!("{INTRO}{}{needle}{}{QUESTION}", FILLER.repeat(before), FILLER.repeat(fillers - before));
        tokenizer.encode(&text)
    };
    let fixed = build(0)?.len();
    let per_filler = tokenizer.encode(FILLER)?.len();
    // Fillers tokenize shorter together than alone: grow from the estimate while it fits.
    let mut fillers = context.saturating_sub(fixed) / per_filler;
    let mut prompt = build(fillers)?;
    loop {
        let longer = build(fillers + 1)?;
        if longer.len() > context {
            return Ok(prompt);
        }
        (fillers, prompt) = (fillers + 1, longer);
    }
}

/// Greedy continuation of `prompt`: `new_tokens` tokens, prefill then decode with caches.
pub fn generate_greedy<B: Backend>(
    model: &Llama<B>,
    prompt: &[u32],
    new_tokens: usize,
    device: &B::Device,
) -> ModelResult<Vec<u32>> {
    let mut caches = model.new_caches();
    let mut input: Vec<u32> = prompt.to_vec();
    let mut out = Vec::with_capacity(new_tokens);
    for _ in 0..new_tokens {
        let ids: Vec<i64> = input.iter().map(|&t| t as i64).collect();
        let len = ids.len();
        let tokens = Tensor::<B, 2, Int>::from_data(TensorData::new(ids, [1, len]), device);
        let hidden = model.hidden(tokens, &mut caches)?.narrow(1, len - 1, 1);
        let next = model.logits(hidden).argmax(2).into_scalar().elem::<i64>() as u32;
        out.push(next);
        input = vec![next];
    }
    Ok(out)
}

/// Whether the model's greedy answer to a passkey prompt contains the passkey.
pub fn retrieves_passkey<B: Backend>(
    model: &Llama<B>,
    tokenizer: &GgufTokenizer,
    context: usize,
    depth: f64,
    passkey: u32,
    device: &B::Device,
) -> ModelResult<(bool, String)> {
    let prompt = passkey_prompt(tokenizer, context, depth, passkey)?;
    let digits = passkey.to_string().len();
    let answer = tokenizer.decode(&generate_greedy(model, &prompt, digits + 2, device)?)?;
    Ok((answer.contains(&passkey.to_string()), answer))
}

use burn::tensor::ElementConversion;
