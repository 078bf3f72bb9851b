//! The evaluation harness: perplexity on long text, retrieval tasks (passkey, multi-key,
//! multi-value, distractors) and per-layer attention fidelity, for every method at given
//! sparsities or as its authors deploy it, against dense attention, under two protocols
//! (sparse prefill; dense prefill with sparse decode).
//!
//! Each sweep takes a description (`*Sweep`), runs the model and returns rows (also passed
//! to a callback as they are measured, for progress display); the rows serialise to JSON.

pub mod fidelity;
pub mod needles;
pub mod perplexity;
pub mod retrieval;
pub mod score;
pub mod suite;
mod workers;

pub use fidelity::{attention_fidelity, FidelityRow, FidelitySweep};
pub use needles::{
    answer_holds, retrieval_prompt, Haystack, PromptFit, RetrievalPrompt, RetrievalTask, QUESTION_ROOM,
};
pub use perplexity::{perplexity_sweep, PerplexityRow, PerplexitySweep};
pub use retrieval::{prompt_fit, retrieval_sweep, RetrievalRow, RetrievalSweep};
pub use score::{score_decoding, score_sequence, Protocol, SequenceScore};
pub use suite::{
    head_layout, method_config, plan, settings, Configured, HeadLayout, KeyBudget, MethodKind, Preset,
    Setting, SweepOptions,
};
