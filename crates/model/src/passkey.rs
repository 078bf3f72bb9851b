//! Passkey retrieval: a number hidden at a chosen depth of filler text, asked for at the end.

use burn::tensor::backend::Backend;

use crate::error::ModelResult;
use crate::generate::GenerationConfig;
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

/// Whether the model's greedy answer to a passkey prompt contains the passkey.
pub fn retrieves_passkey<B: Backend>(
    model: &Llama<B>,
    tokenizer: &GgufTokenizer,
    context: usize,
    depth: f64,
    passkey: u32,
) -> ModelResult<(bool, String)> {
    let prompt = passkey_prompt(tokenizer, context, depth, passkey)?;
    let digits = passkey.to_string().len();
    // Greedy, as many tokens as the passkey and two more; the prompt may fill the context.
    let config = GenerationConfig::new().with_max_new_tokens(digits + 2).with_past_context(true);
    let answer = tokenizer.decode(&model.generate(&prompt, &config, |_| true)?.tokens)?;
    Ok((answer.contains(&passkey.to_string()), answer))
}
