//! `bsa train-hash`: learns HashAttention's mappings for every layer of the model on
//! queries and keys captured from books, then compares them with random mappings on a
//! held-out book (recall of the true top-k keys at given sparsities, and perplexity).

use std::path::PathBuf;
use std::time::Instant;

use burn::backend::Autodiff;
use burn::tensor::backend::Backend as _;
use burn_sparse_attn_core::{HashMappingConfig, HashMappingsConfig};
use burn_sparse_attn_model::eval::{
    perplexity_sweep, retrieval_prompt, MethodKind, PerplexityRow, PerplexitySweep, Preset, PromptFit,
    Protocol, RetrievalTask,
};
use burn_sparse_attn_train::evaluate::{mean_recall_by_sparsity, recall_by_sparsity, RecallRow};
use burn_sparse_attn_train::labels::LabelConfig;
use burn_sparse_attn_train::{capture_qk, train_hash_mappings, CapturedQk, HashTrainingConfig};
use serde::Serialize;

use crate::backend::{self, Backend};
use crate::checks;
use crate::progress::Progress;
use crate::setup::{book, book_tokens, Error, Source};

/// The default training books: those of ../shared/data/books that no evaluation reads
/// (Frankenstein is the held-out text; Dorian Gray and Treasure Island fill the retrieval
/// prompts of docs/evaluation.md).
const TRAINING_BOOKS: [&str; 6] =
    ["pg1342.txt", "pg11.txt", "pg1184.txt", "pg2554.txt", "pg2701.txt", "pg4300.txt"];

/// Options of `bsa train-hash`.
#[derive(clap::Args)]
pub struct TrainHashArgs {
    /// A Llama-family GGUF file (default: SmolLM2-135M-Instruct, downloaded when missing).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Training texts (default: the six books of ../shared/data/books that the evaluation
    /// does not read: Alice in Wonderland, The Count of Monte Cristo, Pride and Prejudice,
    /// Crime and Punishment, Moby Dick, Ulysses).
    #[arg(long, value_delimiter = ',')]
    train_texts: Vec<PathBuf>,
    /// Held-out text for the evaluation (default: Frankenstein).
    #[arg(long)]
    holdout_text: Option<PathBuf>,
    /// Tokens per captured passage.
    #[arg(long, default_value_t = 2048)]
    context: usize,
    /// Training passages per text (one more of the first text validates).
    #[arg(long, default_value_t = 2)]
    passages_per_text: usize,
    /// Signature bits (a multiple of 32).
    #[arg(long, default_value_t = 32)]
    bits: usize,
    /// Hidden width of the mapping MLPs.
    #[arg(long, default_value_t = 32)]
    hidden: usize,
    /// Linear layers per MLP.
    #[arg(long, default_value_t = 2)]
    mlp_layers: usize,
    /// Standardise queries and keys with the training keys' mean and spread before the
    /// MLPs (folded into the saved mappings).
    #[arg(long)]
    center_keys: bool,
    /// Positive keys per query (the true top-k).
    #[arg(long, default_value_t = 32)]
    top_k: usize,
    /// Epochs (a checkpoint after each); 0 with `--init-mappings` evaluates those.
    #[arg(long, default_value_t = 3)]
    epochs: usize,
    /// Steps per epoch.
    #[arg(long, default_value_t = 100)]
    steps_per_epoch: usize,
    /// Earliest position of a training query (default: 256, or a quarter of `--context`
    /// when that is less). Queries from early positions teach the mappings short contexts:
    /// a query at position p sees what the last query of a p-token prompt sees.
    #[arg(long)]
    min_query_position: Option<usize>,
    /// Queries per step (all layers at once).
    #[arg(long, default_value_t = 64)]
    queries_per_step: usize,
    /// Adam's learning rate.
    #[arg(long, default_value_t = 1e-3)]
    learning_rate: f64,
    /// Sparsity factors of the evaluation.
    #[arg(long, value_delimiter = ',', default_value = "8,16,32")]
    sparsities: Vec<f64>,
    /// Layers kept dense in the perplexity runs.
    #[arg(long, value_delimiter = ',', default_value = "0,1")]
    dense_layers: Vec<usize>,
    /// Skip the perplexity runs of the evaluation.
    #[arg(long)]
    skip_perplexity: bool,
    /// Stop at the end of the epoch after which another would pass this many minutes of
    /// training (the checkpoint is written: `--resume` continues).
    #[arg(long)]
    time_limit_minutes: Option<f64>,
    /// Start from these mappings (a `.safetensors` file or a folder that `bsa train-hash`
    /// wrote; same shape as the options ask for) instead of random ones.
    #[arg(long)]
    init_mappings: Option<PathBuf>,
    /// Continue from the last checkpoint in `--out`.
    #[arg(long)]
    resume: bool,
    /// Folder of checkpoints, logs, the trained mappings (`mappings/` and
    /// `mappings.safetensors`) and `report.json`.
    #[arg(long, default_value = "runs/hash-smollm2")]
    out: PathBuf,
}

#[derive(Serialize)]
struct Report {
    backend: &'static str,
    train_seconds: f64,
    recall: Vec<RecallRow>,
    /// Recall over the questions' queries of passkey prompts.
    question_recall: Vec<RecallRow>,
    perplexity: Vec<PerplexityRow>,
}

/// Needle depths of the passkey prompts whose questions' recall is measured.
const PASSKEY_DEPTHS: [f64; 5] = [0.1, 0.3, 0.5, 0.7, 0.9];

/// Runs training and evaluation.
pub fn run(args: TrainHashArgs) -> Result<(), Error> {
    check_args(&args)?;
    let texts = if args.train_texts.is_empty() {
        TRAINING_BOOKS.iter().map(|name| book(name)).collect()
    } else {
        args.train_texts.clone()
    };
    let holdout = args.holdout_text.clone().unwrap_or_else(|| book("pg84.txt"));
    for text in &texts {
        checks::input_file("--train-texts", text)?;
    }
    checks::input_file("--holdout-text", &holdout)?;
    let device = Default::default();
    let source = Source { model: args.model.clone(), text: None };
    let loaded = source.load(&device)?;
    let (mut model, tokenizer) = (loaded.model, loaded.tokenizer);
    checks::token_counts("--context", &[args.context], model.config.context_length)?;
    checks::dense_layers(&args.dense_layers, model.layers.len())?;
    checks::hash_mappings(&model, args.init_mappings.as_deref(), &device)?;
    let n = args.passages_per_text;
    let training_texts = if args.epochs == 0 { &[][..] } else { &texts[..] };
    let mut progress = Progress::new("capture", training_texts.len() * n + 2 + PASSKEY_DEPTHS.len());
    let (mut train, mut valid) = (Vec::new(), Vec::new());
    for (t, text) in training_texts.iter().enumerate() {
        let extra = usize::from(t == 0);
        let tokens = book_tokens(text, &tokenizer, args.context * (n + extra))?;
        for (p, passage) in tokens.chunks(args.context).enumerate() {
            let captured = capture_qk(&mut model, passage, &device)?;
            if p < n {
                train.push(captured)
            } else {
                valid.push(captured)
            }
            progress.step(format!("{} passage {p}", text.display()));
        }
    }
    let held_out = capture_qk(&mut model, &book_tokens(&holdout, &tokenizer, args.context)?, &device)?;
    progress.step(format!("{} (held out)", holdout.display()));
    let mut questions = Vec::new();
    for (i, &depth) in PASSKEY_DEPTHS.iter().enumerate() {
        let prompt = retrieval_prompt(
            RetrievalTask::Passkey,
            &tokenizer,
            None,
            args.context,
            depth,
            i as u64,
            PromptFit::ContextPart,
        )?;
        questions.push((capture_qk(&mut model, &prompt.tokens(), &device)?, prompt.question.len()));
        progress.step(format!("passkey prompt, needle at depth {depth}"));
    }
    drop(progress);

    let config = &model.config;
    let mapping = HashMappingConfig::new(config.head_dim(), config.heads, config.kv_heads)
        .with_bits(args.bits)
        .with_hidden(args.hidden)
        .with_layers(args.mlp_layers);
    let labels = LabelConfig::new().with_top_k(args.top_k);
    let training = HashTrainingConfig::new(mapping.clone())
        .with_labels(labels.clone())
        .with_learning_rate(args.learning_rate)
        .with_queries_per_step(args.queries_per_step)
        .with_steps_per_epoch(args.steps_per_epoch)
        .with_epochs(args.epochs)
        .with_min_query_position(args.min_query_position.unwrap_or(256.min(args.context / 4)))
        .with_center_keys(args.center_keys)
        .with_time_limit_seconds(args.time_limit_minutes.map(|m| m * 60.0))
        .with_init_mappings(args.init_mappings.as_ref().map(|p| p.display().to_string()));
    eprintln!(
        "training mappings for {} layers on {} passages of {} tokens ({} validation) on {}",
        config.layers,
        train.len(),
        args.context,
        valid.len(),
        backend::name()
    );
    let start = Instant::now();
    let (trained, mappings_dir) = match (&args.init_mappings, args.epochs) {
        (Some(path), 0) => (HashMappingsConfig::load_from::<Backend>(path, &device)?.1, path.clone()),
        _ => {
            let trained = train_hash_mappings::<Autodiff<Backend>>(
                &training,
                train,
                valid,
                &args.out,
                args.resume,
                &device,
            )?;
            (trained, args.out.join("mappings"))
        }
    };
    let train_seconds = start.elapsed().as_secs_f64();
    if args.epochs == 0 {
        eprintln!("evaluating the mappings in {}", mappings_dir.display());
    } else {
        eprintln!("trained in {train_seconds:.0} s; mappings in {}", mappings_dir.display());
    }

    Backend::seed(&device, 1234);
    let random = HashMappingsConfig::new(mapping, config.layers).init::<Backend>(&device)?;
    let recall_of = |name, m| recall_by_sparsity(name, m, &held_out, &labels, &args.sparsities, 256, &device);
    let mut recall = recall_of("trained", &trained);
    recall.extend(recall_of("random", &random));
    print_recall(&recall, &held_out, args.top_k);
    let question_recall_of =
        |name, m| mean_recall_by_sparsity(name, m, &questions, &labels, &args.sparsities, &device);
    let mut question_recall = question_recall_of("trained", &trained);
    question_recall.extend(question_recall_of("random", &random));
    print_question_recall(&question_recall, args.context, args.top_k);

    let mut perplexity = Vec::new();
    if !args.skip_perplexity {
        let tokens = book_tokens(&holdout, &tokenizer, args.context)?;
        let sweep = |methods: Vec<MethodKind>, hash_mappings| PerplexitySweep {
            contexts: vec![args.context],
            sparsities: args.sparsities.clone(),
            methods,
            dense_layers: args.dense_layers.clone(),
            hash_mappings,
            shared_selection: false,
            protocol: Protocol::SparsePrefill,
            presets: vec![Preset::EqualBudget],
        };
        let mut progress = Progress::new("perplexity", 2 + 3 * args.sparsities.len());
        let mut step =
            |r: &PerplexityRow| progress.step(format!("{} x{}: {:.3}", r.method, r.sparsity, r.perplexity));
        let trained_sweep = sweep(vec![MethodKind::OracleTopK, MethodKind::Hash], Some(mappings_dir.clone()));
        perplexity = perplexity_sweep(&mut model, &tokens, &trained_sweep, &device, &mut step)?;
        for row in
            perplexity_sweep(&mut model, &tokens, &sweep(vec![MethodKind::Hash], None), &device, &mut step)?
        {
            if row.method == MethodKind::Hash {
                perplexity.push(row);
            }
        }
        drop(progress);
        print_perplexity(&perplexity);
    }
    let report = Report { backend: backend::name(), train_seconds, recall, question_recall, perplexity };
    let path = args.out.join("report.json");
    std::fs::write(&path, serde_json::to_string_pretty(&report)?)?;
    eprintln!("wrote {}", path.display());
    Ok(())
}

/// The checks that need no model, before it is loaded.
fn check_args(args: &TrainHashArgs) -> Result<(), Error> {
    if args.epochs == 0 && args.init_mappings.is_none() {
        return Err("--epochs 0 evaluates the mappings of --init-mappings: give them".into());
    }
    for (option, value) in [
        ("--context", args.context),
        ("--passages-per-text", args.passages_per_text),
        ("--hidden", args.hidden),
        ("--mlp-layers", args.mlp_layers),
        ("--top-k", args.top_k),
        ("--epochs", args.epochs.max(1)),
        ("--steps-per-epoch", args.steps_per_epoch),
        ("--queries-per-step", args.queries_per_step),
    ] {
        checks::positive(option, &[value])?;
    }
    if args.bits == 0 || !args.bits.is_multiple_of(32) {
        return Err(format!("--bits must be a positive multiple of 32, got {}", args.bits).into());
    }
    if args.queries_per_step > args.context {
        return Err(format!(
            "--queries-per-step {} is more than the {} queries of a --context passage",
            args.queries_per_step, args.context
        )
        .into());
    }
    if let Some(position) = args.min_query_position {
        if position + args.queries_per_step > args.context {
            return Err(format!(
                "--min-query-position {position} leaves no room for --queries-per-step {} in --context {}",
                args.queries_per_step, args.context
            )
            .into());
        }
    }
    if args.top_k >= args.context {
        return Err(format!("--top-k {} must be below --context {}", args.top_k, args.context).into());
    }
    checks::positive_real("--learning-rate", args.learning_rate)?;
    checks::in_range("--learning-rate", &[args.learning_rate], 0.0, 1.0)?;
    if let Some(minutes) = args.time_limit_minutes {
        checks::positive_real("--time-limit-minutes", minutes)?;
    }
    checks::sparsities("--sparsities", &args.sparsities)?;
    checks::output_dir("--out", &args.out)
}

fn print_recall(rows: &[RecallRow], held_out: &CapturedQk, top_k: usize) {
    println!(
        "\nRecall of the true top-{top_k} keys (outside sink and window) within the budget, held-out passage of {} \
         tokens (oracle top-k: 1 by definition)",
        held_out.len
    );
    println!("{:<10} {:>9} {:>8}", "mappings", "sparsity", "recall");
    for r in rows {
        println!("{:<10} {:>9} {:>8.3}", r.mappings, format!("{}x", r.sparsity), r.recall);
    }
}

fn print_question_recall(rows: &[RecallRow], context: usize, top_k: usize) {
    println!(
        "\nRecall of the true top-{top_k} keys within the budget over the question tokens of {} passkey prompts of \
         {context} tokens (needle depths {PASSKEY_DEPTHS:?})",
        PASSKEY_DEPTHS.len()
    );
    println!("{:<10} {:>9} {:>8}", "mappings", "sparsity", "recall");
    for r in rows {
        println!("{:<10} {:>9} {:>8.3}", r.mappings, format!("{}x", r.sparsity), r.recall);
    }
}

fn print_perplexity(rows: &[PerplexityRow]) {
    println!("\nPerplexity of the held-out passage's second half (hash rows: trained first, then random)");
    println!("{:<14} {:>9} {:>11} {:>10}", "method", "sparsity", "perplexity", "agreement");
    for r in rows {
        println!(
            "{:<14} {:>9} {:>11.3} {:>10.3}",
            r.method.name(),
            format!("{}x", r.sparsity),
            r.perplexity,
            r.agreement_with_dense
        );
    }
}
