//! Text generation: the prompt is prefilled into the KV caches in one pass, then one token
//! is decoded at a time, with whatever attention method each layer holds. Tokens are
//! handed to a callback as they come (for streaming) and generation stops at an
//! end-of-sequence token, after `max_new_tokens`, at the model's context, or when the
//! callback says so.

mod batch;
pub mod chat;
pub mod sampling;
pub mod stream;

use std::time::Instant;

use burn::config::Config;
use burn::tensor::backend::Backend;
use serde::Serialize;

use crate::error::{ModelError, ModelResult};
use crate::llama::{token_ids, Llama};
pub use chat::{ChatMessage, ChatTemplate};
pub use sampling::{Sampler, SamplingConfig};
pub use stream::TextStream;

/// Settings of [`Llama::generate`].
#[derive(Config, Debug)]
pub struct GenerationConfig {
    /// The most tokens generated after the prompt.
    #[config(default = 256)]
    pub max_new_tokens: usize,
    /// How each token is picked from the logits (greedy by default).
    #[config(default = "SamplingConfig::new()")]
    pub sampling: SamplingConfig,
    /// Tokens that end generation (the tokenizer's end-of-sequence token, usually); the
    /// stop token is returned as the last token.
    #[config(default = "Vec::new()")]
    pub stop_tokens: Vec<u32>,
    /// Keep generating past the model's trained context length instead of stopping there
    /// (RoPE positions extend, but quality is not trained for).
    #[config(default = false)]
    pub past_context: bool,
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum StopReason {
    /// A stop token was generated.
    StopToken,
    /// `max_new_tokens` were generated.
    MaxTokens,
    /// The sequence reached the model's context length.
    ContextFull,
    /// The token callback asked to stop.
    Callback,
}

/// What [`Llama::generate`] produced, with its timing.
#[derive(Debug, Clone, Serialize)]
pub struct Generation {
    /// The generated tokens (the prompt excluded), the stop token included.
    pub tokens: Vec<u32>,
    /// Why generation ended.
    pub stop: StopReason,
    /// Tokens of the prompt.
    pub prompt_tokens: usize,
    /// Seconds of the prefill pass (up to the first generated token).
    pub prefill_seconds: f64,
    /// Seconds of the decode steps (every token after the first).
    pub decode_seconds: f64,
}

impl Generation {
    /// Prompt tokens per second of the prefill.
    pub fn prefill_tokens_per_second(&self) -> f64 {
        self.prompt_tokens as f64 / self.prefill_seconds.max(f64::MIN_POSITIVE)
    }

    /// Generated tokens per second of the decode steps (the first token comes from the
    /// prefill and is not counted).
    pub fn decode_tokens_per_second(&self) -> f64 {
        self.tokens.len().saturating_sub(1) as f64 / self.decode_seconds.max(f64::MIN_POSITIVE)
    }
}

/// How [`Llama::generate_after`] puts the prompt into the caches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PromptFeed {
    /// One causal pass over the whole prompt (a prefill).
    Prefill,
    /// One decode step per prompt token, as if the model had generated them: each layer's
    /// method sees the prompt as it sees generated tokens.
    Decode,
}

impl<B: Backend> Llama<B> {
    /// Generates a continuation of `prompt` (token ids, batch 1): prefill, then one decode
    /// step per token, each layer attending with the method it holds (see
    /// [`Llama::set_attention`]). `on_token` sees every generated token as soon as it is
    /// chosen and returns `false` to stop.
    ///
    /// Errors on an empty prompt, a prompt that fills the model's context (unless
    /// `past_context`), a token id past the vocabulary, or bad sampling settings.
    pub fn generate(
        &self,
        prompt: &[u32],
        config: &GenerationConfig,
        on_token: impl FnMut(u32) -> bool,
    ) -> ModelResult<Generation> {
        self.generate_after(&mut self.new_caches(), prompt, PromptFeed::Prefill, config, on_token)
    }

    /// [`Llama::generate`] after the tokens already in `caches` (one per layer, from an
    /// earlier pass, possibly with another attention: see `KvCache::hand_over`), with
    /// `prompt` fed as `feed` says. The caches hold the prompt and the generation after.
    pub fn generate_after(
        &self,
        caches: &mut [burn_sparse_attn_core::KvCache<B>],
        prompt: &[u32],
        feed: PromptFeed,
        config: &GenerationConfig,
        mut on_token: impl FnMut(u32) -> bool,
    ) -> ModelResult<Generation> {
        let mut sampler = config.sampling.sampler()?;
        let cached = caches.first().map_or(0, |c| c.len());
        if caches.len() != self.layers.len() {
            return Err(ModelError::Generation(format!(
                "{} caches given for {} layers",
                caches.len(),
                self.layers.len()
            )));
        }
        self.check_prompt(prompt, cached, config.past_context)?;
        let device = self.embedding.device();
        let started = Instant::now();
        let mut logits = match feed {
            PromptFeed::Prefill => self.last_logits(prompt, caches, &device)?,
            PromptFeed::Decode => {
                let mut last = Vec::new();
                for &token in prompt {
                    last = self.last_logits(&[token], caches, &device)?;
                }
                last
            }
        };
        let mut next = sampler.sample(&logits)?;
        let prefill_seconds = started.elapsed().as_secs_f64();
        let started = Instant::now();
        let mut tokens = Vec::new();
        let stop = loop {
            tokens.push(next);
            if !on_token(next) {
                break StopReason::Callback;
            }
            if config.stop_tokens.contains(&next) {
                break StopReason::StopToken;
            }
            if tokens.len() >= config.max_new_tokens {
                break StopReason::MaxTokens;
            }
            if !config.past_context && cached + prompt.len() + tokens.len() >= self.config.context_length {
                break StopReason::ContextFull;
            }
            logits = self.last_logits(&[next], caches, &device)?;
            next = sampler.sample(&logits)?;
        };
        Ok(Generation {
            tokens,
            stop,
            prompt_tokens: prompt.len(),
            prefill_seconds,
            decode_seconds: started.elapsed().as_secs_f64(),
        })
    }

    pub(crate) fn check_prompt(&self, prompt: &[u32], cached: usize, past_context: bool) -> ModelResult<()> {
        let (context, vocab) = (self.config.context_length, self.config.vocab_size);
        if prompt.is_empty() {
            return Err(ModelError::Generation("the prompt has no tokens".into()));
        }
        if cached + prompt.len() >= context && !past_context {
            let after = if cached > 0 { format!(" after {cached} cached tokens") } else { String::new() };
            return Err(ModelError::Generation(format!(
                "the prompt has {} tokens{after}; the model's context of {context} leaves no room to generate",
                prompt.len()
            )));
        }
        match prompt.iter().find(|&&t| t as usize >= vocab) {
            Some(t) => Err(ModelError::Generation(format!("token {t} is past the vocabulary of {vocab}"))),
            None => Ok(()),
        }
    }

    /// Logits `[vocab]` at the last of `tokens`, appended to `caches`; only that position is
    /// projected to the vocabulary.
    fn last_logits(
        &self,
        tokens: &[u32],
        caches: &mut [burn_sparse_attn_core::KvCache<B>],
        device: &B::Device,
    ) -> ModelResult<Vec<f32>> {
        let hidden = self.hidden(token_ids(tokens, device), caches)?;
        let [_, t, d] = hidden.dims();
        let last = hidden.slice([0..1, t - 1..t, 0..d]);
        let logits = self.logits(last).into_data().convert::<f32>();
        logits.to_vec::<f32>().map_err(|e| ModelError::Generation(format!("reading the logits: {e:?}")))
    }
}
