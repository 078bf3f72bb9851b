//! The demo: every method on a long passage of a book, against dense attention.

use burn_sparse_attn_model::eval::{
    perplexity_sweep, KeyBudget, MethodKind, PerplexitySweep, Preset, Protocol,
};

use crate::setup::{Error, HashOptions, Source};
use crate::{backend, checks};

/// Options of `bsa demo`.
#[derive(clap::Args)]
pub struct DemoArgs {
    #[command(flatten)]
    source: Source,
    /// Tokens of the passage; the second half is scored.
    #[arg(long, default_value_t = 1536)]
    tokens: usize,
    /// Sparsity factor of the sparse methods (8 attends to an eighth of the keys).
    #[arg(long, default_value_t = 8.0)]
    sparsity: f64,
    /// Layers kept dense in every method.
    #[arg(long, value_delimiter = ',', default_value = "0,1")]
    dense_layers: Vec<usize>,
    #[command(flatten)]
    hash: HashOptions,
    /// Write the results as JSON to this file too.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
}

/// Runs the demo.
pub fn run(args: DemoArgs) -> Result<(), Error> {
    checks::sparsities("--sparsity", &[args.sparsity])?;
    args.source.check_text()?;
    if let Some(path) = &args.json {
        checks::output_file("--json", path)?;
    }
    let device = Default::default();
    let loaded = args.source.load(&device)?;
    let hash_mappings = args.hash.mappings(&loaded)?;
    let mut model = loaded.model;
    checks::token_counts("--tokens", &[args.tokens], model.config.context_length)?;
    checks::dense_layers(&args.dense_layers, model.layers.len())?;
    checks::hash_mappings(&model, hash_mappings.as_deref(), &device)?;
    let tokens = args.source.passage(&loaded.tokenizer, args.tokens)?;
    let budget = KeyBudget::new(args.tokens, args.sparsity)?;
    println!(
        "{} tokens of {} on {}; sparse methods attend to {} keys per query (sink {}, window {}, {} chosen); \
         layers {:?} stay dense; the second half of the passage is scored; HashAttention's mappings: {}",
        tokens.len(),
        args.source.text_name(),
        backend::name(),
        budget.total,
        budget.sink,
        budget.window,
        budget.heavy,
        args.dense_layers,
        hash_mappings.as_ref().map_or("random (untrained)".to_string(), |d| d.display().to_string())
    );
    println!("{:<14} {:>11} {:>20} {:>10}", "method", "perplexity", "agreement w/ dense", "seconds");
    let sweep = PerplexitySweep {
        contexts: vec![args.tokens],
        sparsities: vec![args.sparsity],
        methods: MethodKind::ALL.to_vec(),
        dense_layers: args.dense_layers.clone(),
        hash_mappings: hash_mappings.clone(),
        shared_selection: args.hash.shared_selection,
        protocol: Protocol::SparsePrefill,
        presets: vec![Preset::EqualBudget],
    };
    let rows = perplexity_sweep(&mut model, &tokens, &sweep, &device, |r| {
        println!(
            "{:<14} {:>11.3} {:>20.3} {:>10.1}",
            r.method.name(),
            r.perplexity,
            r.agreement_with_dense,
            r.seconds
        )
    })?;
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&rows)?)?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}
