//! `bsa eval`: perplexity, passkey retrieval and attention fidelity for every method at
//! several sparsities, against dense; tables on the terminal, JSON and SVG plots in `--out`.

use std::path::PathBuf;

use burn_sparse_attn_model::eval::{
    attention_fidelity, passkey_sweep, perplexity_sweep, FidelityRow, FidelitySweep, MethodKind, PasskeyRow,
    PasskeySweep, PerplexityRow, PerplexitySweep, Protocol,
};
use burn_sparse_attn_model::Llama;
use serde::Serialize;

use crate::checks;
use crate::plot::{self, Axes, Panel, Series};
use crate::progress::Progress;
use crate::setup::{Error, HashOptions, Source};

/// Options of `bsa eval`.
#[derive(clap::Args)]
pub struct EvalArgs {
    #[command(flatten)]
    source: Source,
    /// Which evaluations to run.
    #[arg(long, value_delimiter = ',', default_value = "perplexity,passkey,fidelity")]
    tasks: Vec<Task>,
    /// Sparse methods to compare with dense (`bsa methods` lists them; default: all).
    #[arg(long, value_delimiter = ',', default_values_t = MethodKind::sparse())]
    methods: Vec<MethodKind>,
    /// Sparsity factors (8 attends to an eighth of the keys).
    #[arg(long, value_delimiter = ',', default_value = "4,8,16")]
    sparsities: Vec<f64>,
    /// Contexts (tokens) of the perplexity passages.
    #[arg(long, value_delimiter = ',', default_value = "1024,2048")]
    contexts: Vec<usize>,
    /// How the perplexity passages are run: `prefill` (every token through the method, the
    /// second half scored) or `decode` (a dense prefill, then the last `--decode-tokens`
    /// tokens decoded one step at a time with the method and scored).
    #[arg(long, default_value = "prefill")]
    protocol: ProtocolArg,
    /// Tokens decoded and scored per passage with `--protocol decode`.
    #[arg(long, default_value_t = 256)]
    decode_tokens: usize,
    /// Contexts (tokens) of the passkey prompts.
    #[arg(long, value_delimiter = ',', default_value = "512,1024")]
    passkey_contexts: Vec<usize>,
    /// Needle depths of the passkey prompts (0 = start, 1 = end).
    #[arg(long, value_delimiter = ',', default_value = "0.1,0.5,0.9")]
    depths: Vec<f64>,
    /// Passkeys per context and depth.
    #[arg(long, default_value_t = 2)]
    trials: usize,
    /// Context (tokens) of the fidelity measurement.
    #[arg(long, default_value_t = 1024)]
    fidelity_context: usize,
    /// Layers kept dense in every method (perplexity and passkey).
    #[arg(long, value_delimiter = ',', default_value = "0,1")]
    dense_layers: Vec<usize>,
    #[command(flatten)]
    hash: HashOptions,
    /// Folder for results.json and the plots.
    #[arg(long, default_value = "eval-out")]
    out: PathBuf,
}

/// `--protocol`.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ProtocolArg {
    /// Sparse prefill of the whole passage.
    Prefill,
    /// Dense prefill, sparse decode of the passage's tail.
    Decode,
}

impl EvalArgs {
    fn protocol(&self) -> Protocol {
        match self.protocol {
            ProtocolArg::Prefill => Protocol::SparsePrefill,
            ProtocolArg::Decode => Protocol::DensePrefillSparseDecode { decoded: self.decode_tokens },
        }
    }
}

/// An evaluation of `bsa eval`.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Task {
    /// Perplexity of long text.
    Perplexity,
    /// Passkey retrieval.
    Passkey,
    /// Per-layer attention fidelity.
    Fidelity,
}

/// Everything measured, as written to results.json.
#[derive(Serialize, Default)]
struct Results {
    backend: &'static str,
    model: String,
    text: String,
    hash_mappings: Option<String>,
    shared_selection: bool,
    perplexity: Vec<PerplexityRow>,
    passkey: Vec<PasskeyRow>,
    fidelity: Vec<FidelityRow>,
}

/// Runs the evaluation.
pub fn run(args: EvalArgs) -> Result<(), Error> {
    if args.sparsities.is_empty() || args.methods.is_empty() {
        return Err("give at least one sparsity and one method".into());
    }
    check_args(&args)?;
    let device = Default::default();
    let loaded = args.source.load(&device)?;
    let hash_mappings = args.hash.mappings(&loaded)?;
    let (mut model, tokenizer) = (loaded.model, loaded.tokenizer);
    check_against_model(&args, &model)?;
    checks::hash_mappings(&model, hash_mappings.as_deref(), &device)?;
    let mut results = Results {
        backend: crate::backend::name(),
        model: loaded.path.display().to_string(),
        text: args.source.text_name(),
        hash_mappings: hash_mappings.as_ref().map(|d| d.display().to_string()),
        shared_selection: args.hash.shared_selection,
        ..Default::default()
    };
    if args.tasks.contains(&Task::Perplexity) {
        let sweep = PerplexitySweep {
            contexts: args.contexts.clone(),
            sparsities: args.sparsities.clone(),
            methods: args.methods.clone(),
            dense_layers: args.dense_layers.clone(),
            hash_mappings: hash_mappings.clone(),
            shared_selection: args.hash.shared_selection,
            protocol: args.protocol(),
        };
        let longest = args.contexts.iter().copied().max().unwrap_or(0);
        let tokens = args.source.passage(&tokenizer, longest)?;
        let mut progress = Progress::new("perplexity", sweep.runs());
        results.perplexity = perplexity_sweep(&mut model, &tokens, &sweep, &device, |r| {
            progress.step(format!("{} x{} at {}: {:.3}", r.method, r.sparsity, r.context, r.perplexity))
        })?;
        drop(progress);
        print_perplexity(&results.perplexity);
        save(&args, &results)?;
        plot_perplexity(&args, &results.perplexity)?;
    }
    if args.tasks.contains(&Task::Passkey) {
        let sweep = PasskeySweep {
            contexts: args.passkey_contexts.clone(),
            depths: args.depths.clone(),
            sparsities: args.sparsities.clone(),
            methods: args.methods.clone(),
            trials: args.trials,
            dense_layers: args.dense_layers.clone(),
            hash_mappings: hash_mappings.clone(),
            shared_selection: args.hash.shared_selection,
            seed: 7,
        };
        burn_sparse_attn_model::eval::retrieval::check_contexts(&tokenizer, &sweep.contexts)?;
        let mut progress = Progress::new("passkey", sweep.rows());
        results.passkey = passkey_sweep(&mut model, &tokenizer, &sweep, &device, |r| {
            progress.step(format!(
                "{} x{} at {} depth {}: {}/{}",
                r.method, r.sparsity, r.context, r.depth, r.found, r.trials
            ))
        })?;
        drop(progress);
        print_passkey(&results.passkey, &args.depths);
        save(&args, &results)?;
        plot_passkey(&args, &results.passkey)?;
    }
    if args.tasks.contains(&Task::Fidelity) {
        let sweep = FidelitySweep {
            context: args.fidelity_context,
            sparsities: args.sparsities.clone(),
            methods: args.methods.clone(),
            hash_mappings: hash_mappings.clone(),
            shared_selection: args.hash.shared_selection,
        };
        let tokens = args.source.passage(&tokenizer, sweep.context)?;
        let mut progress = Progress::new("fidelity", sweep.rows_per_layer() * model.layers.len());
        results.fidelity = attention_fidelity(&mut model, &tokens, &sweep, &device, |r| {
            progress.step(format!(
                "layer {} {} x{}: error {:.3}",
                r.layer, r.method, r.sparsity, r.relative_error
            ))
        })?;
        drop(progress);
        print_fidelity(&results.fidelity);
        save(&args, &results)?;
        plot_fidelity(&args, &results.fidelity)?;
    }
    eprintln!("wrote {} and the plots beside it", args.out.join("results.json").display());
    Ok(())
}

/// The checks that need no model, before it is loaded.
fn check_args(args: &EvalArgs) -> Result<(), Error> {
    if args.tasks.is_empty() {
        return Err("--tasks: give at least one task".into());
    }
    checks::sparsities("--sparsities", &args.sparsities)?;
    args.source.check_text()?;
    checks::in_range("--depths", &args.depths, 0.0, 1.0)?;
    checks::positive("--trials", &[args.trials])?;
    checks::output_dir("--out", &args.out)
}

/// The checks against the model's context and layers, before any evaluation runs.
fn check_against_model(args: &EvalArgs, model: &Llama<crate::backend::Backend>) -> Result<(), Error> {
    let context = model.config.context_length;
    let runs = |task| args.tasks.contains(&task);
    if runs(Task::Perplexity) {
        checks::token_counts("--contexts", &args.contexts, context)?;
        for &passage in &args.contexts {
            args.protocol().score_from(passage).map_err(|e| format!("--decode-tokens: {e}"))?;
        }
    }
    if runs(Task::Passkey) {
        checks::token_counts("--passkey-contexts", &args.passkey_contexts, context)?;
    }
    if runs(Task::Fidelity) {
        checks::token_counts("--fidelity-context", &[args.fidelity_context], context)?;
    }
    checks::dense_layers(&args.dense_layers, model.layers.len())
}

/// Writes what is measured so far to `results.json` (after each task, so that a long run
/// cut short keeps its finished tasks).
fn save(args: &EvalArgs, results: &Results) -> Result<(), Error> {
    std::fs::write(args.out.join("results.json"), serde_json::to_string_pretty(results)?)?;
    Ok(())
}

fn print_perplexity(rows: &[PerplexityRow]) {
    let scored = match rows.first().map(|r| r.protocol) {
        Some(Protocol::DensePrefillSparseDecode { decoded }) => {
            format!(
                "the last {decoded} tokens of each passage, decoded one step at a time after a dense prefill"
            )
        }
        _ => "the second half of each passage, prefilled with the method".to_string(),
    };
    println!("\nPerplexity of {scored} (agreement = argmax equal to dense's)");
    println!(
        "{:<14} {:>8} {:>9} {:>6} {:>11} {:>10} {:>9}",
        "method", "context", "sparsity", "keys", "perplexity", "agreement", "seconds"
    );
    for r in rows {
        println!(
            "{:<14} {:>8} {:>9} {:>6} {:>11.3} {:>10.3} {:>9.1}",
            r.method.name(),
            r.context,
            format!("{}x", r.sparsity),
            r.keys_per_query,
            r.perplexity,
            r.agreement_with_dense,
            r.seconds
        );
    }
}

fn print_passkey(rows: &[PasskeyRow], depths: &[f64]) {
    println!("\nPasskey retrieval: passkeys found / asked, per needle depth");
    let header: String = depths.iter().map(|d| format!("{:>9}", format!("d={d}"))).collect();
    println!("{:<14} {:>8} {:>9}{header} {:>9}", "method", "context", "sparsity", "accuracy");
    let mut contexts: Vec<usize> = rows.iter().map(|r| r.context).collect();
    contexts.dedup();
    for context in contexts {
        let in_context = || rows.iter().filter(move |r| r.context == context);
        for (method, sparsity) in settings(in_context().map(|r| (r.method, r.sparsity))) {
            let group: Vec<&PasskeyRow> =
                in_context().filter(|r| r.method == method && r.sparsity == sparsity).collect();
            let cells: String =
                group.iter().map(|g| format!("{:>9}", format!("{}/{}", g.found, g.trials))).collect();
            let (found, trials) = group.iter().fold((0, 0), |(f, t), r| (f + r.found, t + r.trials));
            let accuracy = found as f64 / trials as f64;
            println!(
                "{:<14} {context:>8} {:>9}{cells} {accuracy:>9.2}",
                method.name(),
                format!("{sparsity}x")
            );
        }
    }
}

fn print_fidelity(rows: &[FidelityRow]) {
    println!(
        "\nAttention fidelity over layers: mass recall = kept attention mass / mass of the true top keys"
    );
    println!(
        "{:<14} {:>9} {:>6} {:>12} {:>16} {:>11} {:>16}",
        "method", "sparsity", "keys", "mass recall", "worst (layer)", "rel. error", "worst (layer)"
    );
    for (method, sparsity) in settings(rows.iter().map(|r| (r.method, r.sparsity))) {
        let group: Vec<&FidelityRow> =
            rows.iter().filter(|r| r.method == method && r.sparsity == sparsity).collect();
        let mean = |f: &dyn Fn(&FidelityRow) -> Option<f64>| {
            let v: Vec<f64> = group.iter().filter_map(|r| f(r)).collect();
            (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
        };
        let worst_recall = group
            .iter()
            .filter_map(|r| r.mass_recall.map(|m| (m, r.layer)))
            .min_by(|a, b| a.0.total_cmp(&b.0));
        let worst_error =
            group.iter().map(|r| (r.relative_error, r.layer)).max_by(|a, b| a.0.total_cmp(&b.0));
        let cell = |v: Option<f64>| v.map_or("n/a".to_string(), |v| format!("{v:.3}"));
        let worst = |v: Option<(f64, usize)>| v.map_or("n/a".to_string(), |(v, l)| format!("{v:.3} ({l})"));
        println!(
            "{:<14} {:>9} {:>6} {:>12} {:>16} {:>11} {:>16}",
            method.name(),
            format!("{sparsity}x"),
            group[0].keys_per_query,
            cell(mean(&|r| r.mass_recall)),
            worst(worst_recall),
            cell(mean(&|r| Some(r.relative_error))),
            worst(worst_error)
        );
    }
}

/// The distinct `(method, sparsity)` pairs of `items`, in first-seen order.
fn settings(items: impl Iterator<Item = (MethodKind, f64)>) -> Vec<(MethodKind, f64)> {
    let mut seen: Vec<(MethodKind, f64)> = Vec::new();
    for item in items {
        if !seen.contains(&item) {
            seen.push(item);
        }
    }
    seen
}

/// A line per method of `y` against sparsity, for rows of one panel; dense is flat.
fn lines_by_sparsity<R>(
    rows: &[&R],
    sparsities: &[f64],
    key: impl Fn(&R) -> (MethodKind, f64, f64),
) -> Vec<Series> {
    let mut series: Vec<Series> = Vec::new();
    for r in rows {
        let (method, sparsity, y) = key(r);
        let points: Vec<(f64, f64)> = if method == MethodKind::Dense {
            sparsities.iter().map(|&s| (s, y)).collect()
        } else {
            vec![(sparsity, y)]
        };
        add_points(&mut series, method, points);
    }
    series
}

fn plot_perplexity(args: &EvalArgs, rows: &[PerplexityRow]) -> Result<(), Error> {
    let panels = args
        .contexts
        .iter()
        .map(|&c| {
            let rows: Vec<&PerplexityRow> = rows.iter().filter(|r| r.context == c).collect();
            let series = lines_by_sparsity(&rows, &args.sparsities, |r| (r.method, r.sparsity, r.perplexity));
            Panel { title: format!("perplexity, {c} tokens"), series }
        })
        .collect::<Vec<_>>();
    let axes = Axes { x: "sparsity (keys skipped : kept)", y: "perplexity", log_x: true };
    plot::draw(&args.out.join("perplexity.svg"), &axes, &panels)
}

fn plot_passkey(args: &EvalArgs, rows: &[PasskeyRow]) -> Result<(), Error> {
    let panels = args
        .passkey_contexts
        .iter()
        .map(|&c| {
            let mut mean: Vec<(MethodKind, f64, f64)> = Vec::new();
            for (method, sparsity) in
                settings(rows.iter().filter(|r| r.context == c).map(|r| (r.method, r.sparsity)))
            {
                let group =
                    rows.iter().filter(|r| r.context == c && r.method == method && r.sparsity == sparsity);
                let (found, trials) = group.fold((0, 0), |(f, t), r| (f + r.found, t + r.trials));
                mean.push((method, sparsity, found as f64 / trials as f64));
            }
            let refs: Vec<&(MethodKind, f64, f64)> = mean.iter().collect();
            Panel {
                title: format!("passkey, {c} tokens"),
                series: lines_by_sparsity(&refs, &args.sparsities, |r| *r),
            }
        })
        .collect::<Vec<_>>();
    let axes = Axes { x: "sparsity (keys skipped : kept)", y: "accuracy (all depths)", log_x: true };
    plot::draw(&args.out.join("passkey.svg"), &axes, &panels)
}

fn plot_fidelity(args: &EvalArgs, rows: &[FidelityRow]) -> Result<(), Error> {
    let panels = args
        .sparsities
        .iter()
        .map(|&s| {
            let mut series: Vec<Series> = Vec::new();
            for r in rows.iter().filter(|r| r.sparsity == s) {
                let Some(recall) = r.mass_recall else { continue };
                add_points(&mut series, r.method, vec![(r.layer as f64, recall)]);
            }
            Panel { title: format!("attention mass recall, {s}x sparsity"), series }
        })
        .collect::<Vec<_>>();
    let axes = Axes { x: "layer", y: "mass recall of the oracle top keys", log_x: false };
    plot::draw(&args.out.join("fidelity.svg"), &axes, &panels)
}

/// Appends `points` to `method`'s line in `series`, starting the line when it is new.
fn add_points(series: &mut Vec<Series>, method: MethodKind, points: Vec<(f64, f64)>) {
    match series.iter_mut().find(|s| s.name == method.name()) {
        Some(s) => s.points.extend(points),
        None => series.push(Series { name: method.name().to_string(), color: color(method), points }),
    }
}

/// The palette index of `method`: its place in [`MethodKind::ALL`].
fn color(method: MethodKind) -> usize {
    MethodKind::ALL.iter().position(|m| *m == method).unwrap_or(0)
}
