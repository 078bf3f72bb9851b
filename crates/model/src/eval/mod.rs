//! The evaluation harness: perplexity on long text, passkey retrieval and per-layer
//! attention fidelity, for every method at given sparsities against dense attention.
//!
//! Each sweep takes a description (`*Sweep`), runs the model and returns rows (also passed
//! to a callback as they are measured, for progress display); the rows serialise to JSON.

pub mod fidelity;
pub mod perplexity;
pub mod retrieval;
pub mod score;
pub mod suite;

pub use fidelity::{attention_fidelity, FidelityRow, FidelitySweep};
pub use perplexity::{perplexity_sweep, PerplexityRow, PerplexitySweep};
pub use retrieval::{passkey_sweep, PasskeyRow, PasskeySweep};
pub use score::{score_decoding, score_sequence, Protocol, SequenceScore};
pub use suite::{head_layout, method_config, plan, HeadLayout, KeyBudget, MethodKind};
