//! `bsa eval`: perplexity, retrieval tasks and attention fidelity for every method at
//! several sparsities (or as its authors deploy it), against dense, under either protocol;
//! tables on the terminal, JSON and SVG plots in `--out`.

use std::path::PathBuf;

use burn_sparse_attn_core::profile;
use burn_sparse_attn_model::eval::{
    attention_fidelity, perplexity_sweep, retrieval_sweep, FidelityRow, FidelitySweep, Haystack, MethodKind,
    PerplexityRow, PerplexitySweep, Preset, Protocol, RetrievalRow, RetrievalSweep, RetrievalTask,
    SweepOptions,
};
use burn_sparse_attn_model::Llama;
use serde::Serialize;

use crate::checks;
use crate::plot::{self, Axes, Panel, Series};
use crate::precision::Float;
use crate::progress::Progress;
use crate::setup::{Error, HashOptions, Source};

/// Options of `bsa eval`.
#[derive(clap::Args)]
pub struct EvalArgs {
    #[command(flatten)]
    source: Source,
    /// Which evaluations to run.
    #[arg(long, value_delimiter = ',', default_value = "perplexity,retrieval,fidelity")]
    tasks: Vec<Task>,
    /// Sparse methods to compare with dense (`bsa methods` lists them; default: all).
    #[arg(long, value_delimiter = ',', default_values_t = MethodKind::sparse())]
    methods: Vec<MethodKind>,
    /// Sparsity factors (8 attends to an eighth of the keys) of the equal-budget preset.
    #[arg(long, value_delimiter = ',', default_value = "4,8,16")]
    sparsities: Vec<f64>,
    /// How the methods are configured: `equal-budget` (every method at each sparsity, sink 16
    /// and window 64 plus chosen keys), `as-deployed` (HyperAttention and HiP as their authors run
    /// them, once per context), `as-deployed-exact-sink` (HyperAttention as deployed with its
    /// first 16 keys exact).
    #[arg(long, value_delimiter = ',', default_value = "equal-budget", value_parser = parse_preset)]
    presets: Vec<Preset>,
    /// Contexts (tokens) of the perplexity passages.
    #[arg(long, value_delimiter = ',', default_value = "1024,2048")]
    contexts: Vec<usize>,
    /// How passages and prompts meet the method: `prefill` (every token through the method;
    /// perplexity scores the second half) or `decode` (a dense prefill, then the last
    /// `--decode-tokens` tokens of a passage, or a retrieval prompt's question and answer,
    /// decoded one step at a time with the method).
    #[arg(long, default_value = "prefill")]
    protocol: ProtocolArg,
    /// Tokens decoded and scored per passage with `--protocol decode`.
    #[arg(long, default_value_t = 256)]
    decode_tokens: usize,
    /// Retrieval tasks: `passkey` (a number in repeated filler), `multi-key` (four needles,
    /// one asked), `multi-value` (two values of one key, both asked), `distractors` (the
    /// needle among needles of other keys).
    #[arg(long, value_delimiter = ',', default_value = "passkey,multi-key,multi-value,distractors", value_parser = parse_task)]
    retrieval_tasks: Vec<RetrievalTask>,
    /// Contexts (tokens) of the retrieval prompts.
    #[arg(long, value_delimiter = ',', default_value = "512,1024", alias = "passkey-contexts")]
    retrieval_contexts: Vec<usize>,
    /// Depths of the asked needle (0 = start of the filler, 1 = end).
    #[arg(long, value_delimiter = ',', default_value = "0.1,0.5,0.9")]
    depths: Vec<f64>,
    /// Prompts per task, context and depth.
    #[arg(long, default_value_t = 2)]
    trials: usize,
    /// The most retrieval prompts run as one batch (a task's prompts at one context run in
    /// batches across depths; the decode protocol keeps their dense caches, about 46 KB per
    /// token of SmolLM2-135M in f32, for every method).
    #[arg(long, default_value_t = 25)]
    batch: usize,
    /// Retrieval method settings run at once, each on its own thread and GPU stream with its
    /// own copy of the model and memory pool (answers do not depend on it; on an H200, 4 jobs
    /// take the 4K sparse-prefill table from 241 to 159 s, and do not help at 8K).
    #[arg(long, default_value_t = 1)]
    jobs: usize,
    /// Books whose sentences fill the multi-key and multi-value prompts (default: the text of
    /// `--text`, or the built-in book).
    #[arg(long, value_delimiter = ',')]
    haystack: Vec<PathBuf>,
    /// Context (tokens) of the fidelity measurement.
    #[arg(long, default_value_t = 1024)]
    fidelity_context: usize,
    /// Layers kept dense by the equal-budget preset (perplexity and retrieval).
    #[arg(long, value_delimiter = ',', default_value = "0,1")]
    dense_layers: Vec<usize>,
    #[command(flatten)]
    hash: HashOptions,
    /// The float type the model computes in: `f16` and `bf16` (GPU backends) put the
    /// matmuls and the prefill kernels on tensor cores, several times faster than `f32`,
    /// which is the reference.
    #[arg(long, value_enum, default_value_t = Float::F32)]
    float: Float,
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
    /// Retrieval tasks (`--retrieval-tasks`; `passkey` is the old name).
    #[value(alias = "passkey")]
    Retrieval,
    /// Per-layer attention fidelity.
    Fidelity,
}

/// Everything measured, as written to results.json.
#[derive(Serialize, Default)]
struct Results {
    backend: &'static str,
    float: Float,
    model: String,
    text: String,
    hash_mappings: Option<String>,
    shared_selection: bool,
    haystack: Vec<String>,
    perplexity: Vec<PerplexityRow>,
    retrieval: Vec<RetrievalRow>,
    fidelity: Vec<FidelityRow>,
}

/// Runs the evaluation.
pub fn run(args: EvalArgs) -> Result<(), Error> {
    if args.sparsities.is_empty() || args.methods.is_empty() {
        return Err("give at least one sparsity and one method".into());
    }
    check_args(&args)?;
    let device = Default::default();
    args.float.apply(&device)?;
    let loaded = args.source.load(&device)?;
    let hash_mappings = args.hash.mappings(&loaded)?;
    let (mut model, tokenizer) = (loaded.model, loaded.tokenizer);
    check_against_model(&args, &model)?;
    checks::hash_mappings(&model, hash_mappings.as_deref(), &device)?;
    let mut results = Results {
        backend: crate::backend::name(),
        float: args.float,
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
            presets: args.presets.clone(),
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
    if args.tasks.contains(&Task::Retrieval) {
        let sweep = RetrievalSweep {
            tasks: args.retrieval_tasks.clone(),
            contexts: args.retrieval_contexts.clone(),
            depths: args.depths.clone(),
            sparsities: args.sparsities.clone(),
            methods: args.methods.clone(),
            presets: args.presets.clone(),
            trials: args.trials,
            options: SweepOptions {
                dense_layers: args.dense_layers.clone(),
                hash_mappings: hash_mappings.clone(),
                shared_selection: args.hash.shared_selection,
            },
            protocol: args.protocol(),
            seed: 7,
            batch: args.batch,
            jobs: args.jobs,
        };
        let (haystack, names) = haystack(&args)?;
        results.haystack = names;
        sweep.check(&tokenizer, Some(&haystack))?;
        let mut progress = Progress::new("retrieval", sweep.rows());
        results.retrieval = retrieval_sweep(&mut model, &tokenizer, Some(&haystack), &sweep, &device, |r| {
            progress.step(format!(
                "{} {} at {} depth {}: {}/{} ({:.1} s)",
                r.task,
                label(r.method, r.preset, r.sparsity),
                r.context,
                r.depth,
                r.found,
                r.trials,
                r.seconds
            ));
            // Each setting's rows come together: its first row takes the setting's profile.
            if profile::enabled() && Some(&r.depth) == args.depths.first() {
                let name = format!("{} {} at {}", r.task, label(r.method, r.preset, r.sparsity), r.context);
                eprintln!("\nprofile of {name}:\n{}", profile::table(&profile::take()));
            }
        })?;
        drop(progress);
        print_retrieval(&results.retrieval, &args.depths);
        save(&args, &results)?;
        plot_retrieval(&args, &results.retrieval)?;
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
    if args.presets.is_empty() {
        return Err("--presets: give at least one preset".into());
    }
    for path in &args.haystack {
        checks::input_file("--haystack", path)?;
    }
    checks::positive("--trials", &[args.trials])?;
    checks::positive("--batch", &[args.batch])?;
    checks::positive("--jobs", &[args.jobs])?;
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
    if runs(Task::Retrieval) {
        checks::token_counts("--retrieval-contexts", &args.retrieval_contexts, context)?;
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

/// The books of `--haystack` (or the evaluated text) and their names.
fn haystack(args: &EvalArgs) -> Result<(Haystack, Vec<String>), Error> {
    if args.haystack.is_empty() {
        let text = match &args.source.text {
            Some(path) => checks::read_text(path)?,
            None => crate::setup::DEFAULT_TEXT.to_string(),
        };
        return Ok((Haystack::from_texts(&[text])?, vec![args.source.text_name()]));
    }
    let texts = args.haystack.iter().map(|p| checks::read_text(p)).collect::<Result<Vec<_>, _>>()?;
    let names = args.haystack.iter().map(|p| p.display().to_string()).collect();
    Ok((Haystack::from_texts(&texts)?, names))
}

fn parse_preset(s: &str) -> Result<Preset, String> {
    s.parse().map_err(|e: burn_sparse_attn_model::ModelError| e.to_string())
}

fn parse_task(s: &str) -> Result<RetrievalTask, String> {
    s.parse().map_err(|e: burn_sparse_attn_model::ModelError| e.to_string())
}

/// A run's name in tables and legends: the method, with its preset unless equal-budget.
fn series_name(method: MethodKind, preset: Preset) -> String {
    match preset {
        Preset::EqualBudget => method.name().to_string(),
        preset => format!("{} ({})", method.name(), preset.name()),
    }
}

/// A run's name with its sparsity, for progress lines.
fn label(method: MethodKind, preset: Preset, sparsity: f64) -> String {
    format!("{} x{sparsity:.1}", series_name(method, preset))
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
        "{:<34} {:>8} {:>9} {:>6} {:>11} {:>10} {:>9}",
        "method", "context", "sparsity", "keys", "perplexity", "agreement", "seconds"
    );
    for r in rows {
        println!(
            "{:<34} {:>8} {:>9} {:>6} {:>11.3} {:>10.3} {:>9.1}",
            series_name(r.method, r.preset),
            r.context,
            format!("{:.1}x", r.sparsity),
            r.keys_per_query,
            r.perplexity,
            r.agreement_with_dense,
            r.seconds
        );
    }
}

fn print_retrieval(rows: &[RetrievalRow], depths: &[f64]) {
    let protocol = match rows.first().map(|r| r.protocol) {
        Some(Protocol::DensePrefillSparseDecode { .. }) => {
            "dense prefill of the context, question and answer decoded"
        }
        _ => "the whole prompt prefilled with the method",
    };
    println!("\nRetrieval ({protocol}): prompts answered / asked, per needle depth");
    let header: String = depths.iter().map(|d| format!("{:>7}", format!("d={d}"))).collect();
    println!(
        "{:<12} {:<34} {:>8} {:>9} {:>6}{header} {:>9}",
        "task", "method", "context", "sparsity", "keys", "accuracy"
    );
    for group in groups(rows, |r| (r.task, r.context, r.method, r.preset, r.sparsity.to_bits())) {
        let r = group[0];
        let cells: String =
            group.iter().map(|g| format!("{:>7}", format!("{}/{}", g.found, g.trials))).collect();
        println!(
            "{:<12} {:<34} {:>8} {:>9} {:>6}{cells} {:>9.2}",
            r.task.name(),
            series_name(r.method, r.preset),
            r.context,
            format!("{:.1}x", r.sparsity),
            r.keys_per_query,
            accuracy(&group)
        );
    }
    for group in groups(rows, |r| r.context) {
        let prompts: usize = group.iter().map(|r| r.trials).sum();
        let seconds: f64 = group.iter().map(|r| r.seconds).sum();
        println!(
            "context {}: {prompts} prompts in {seconds:.0} s ({:.2} s per prompt)",
            group[0].context,
            seconds / prompts.max(1) as f64
        );
    }
}

/// Found over asked, across `rows`.
fn accuracy(rows: &[&RetrievalRow]) -> f64 {
    let (found, trials) = rows.iter().fold((0, 0), |(f, t), r| (f + r.found, t + r.trials));
    found as f64 / trials.max(1) as f64
}

/// `rows` grouped by `key`, groups in first-seen order.
fn groups<R, K: PartialEq>(rows: &[R], key: impl Fn(&R) -> K) -> Vec<Vec<&R>> {
    let mut out: Vec<(K, Vec<&R>)> = Vec::new();
    for row in rows {
        let k = key(row);
        match out.iter_mut().find(|(seen, _)| *seen == k) {
            Some((_, group)) => group.push(row),
            None => out.push((k, vec![row])),
        }
    }
    out.into_iter().map(|(_, group)| group).collect()
}

fn print_fidelity(rows: &[FidelityRow]) {
    println!(
        "\nAttention fidelity over layers: mass recall = kept attention mass / mass of the true top keys"
    );
    println!(
        "{:<14} {:>9} {:>6} {:>12} {:>16} {:>11} {:>16}",
        "method", "sparsity", "keys", "mass recall", "worst (layer)", "rel. error", "worst (layer)"
    );
    for group in groups(rows, |r| (r.method, r.sparsity.to_bits())) {
        let (method, sparsity) = (group[0].method, group[0].sparsity);
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

/// A line per run of `y` against sparsity, for points `(method, preset, sparsity, y)` of one
/// panel; dense is flat across `sparsities`.
fn lines_by_sparsity(points: &[(MethodKind, Preset, f64, f64)], sparsities: &[f64]) -> Vec<Series> {
    let mut series: Vec<Series> = Vec::new();
    for &(method, preset, sparsity, y) in points {
        let points: Vec<(f64, f64)> = if method == MethodKind::Dense {
            sparsities.iter().map(|&s| (s, y)).collect()
        } else {
            vec![(sparsity, y)]
        };
        add_points(&mut series, &series_name(method, preset), method, points);
    }
    series
}

fn plot_perplexity(args: &EvalArgs, rows: &[PerplexityRow]) -> Result<(), Error> {
    let panels = args
        .contexts
        .iter()
        .map(|&c| {
            let points: Vec<_> = rows
                .iter()
                .filter(|r| r.context == c)
                .map(|r| (r.method, r.preset, r.sparsity, r.perplexity))
                .collect();
            Panel {
                title: format!("perplexity, {c} tokens"),
                series: lines_by_sparsity(&points, &args.sparsities),
            }
        })
        .collect::<Vec<_>>();
    let axes = Axes { x: "sparsity (keys skipped : kept)", y: "perplexity", log_x: true };
    plot::draw(&args.out.join("perplexity.svg"), &axes, &panels)
}

fn plot_retrieval(args: &EvalArgs, rows: &[RetrievalRow]) -> Result<(), Error> {
    let mut panels = Vec::new();
    for task_rows in groups(rows, |r| (r.task, r.context)) {
        let (task, context) = (task_rows[0].task, task_rows[0].context);
        let points: Vec<_> = groups(&task_rows, |r| (r.method, r.preset, r.sparsity.to_bits()))
            .into_iter()
            .map(|g| {
                let group: Vec<&RetrievalRow> = g.into_iter().copied().collect();
                (group[0].method, group[0].preset, group[0].sparsity, accuracy(&group))
            })
            .collect();
        panels.push(Panel {
            title: format!("{task}, {context} tokens"),
            series: lines_by_sparsity(&points, &args.sparsities),
        });
    }
    let axes = Axes { x: "sparsity (keys skipped : kept)", y: "accuracy (all depths)", log_x: true };
    plot::draw(&args.out.join("retrieval.svg"), &axes, &panels)
}

fn plot_fidelity(args: &EvalArgs, rows: &[FidelityRow]) -> Result<(), Error> {
    let panels = args
        .sparsities
        .iter()
        .map(|&s| {
            let mut series: Vec<Series> = Vec::new();
            for r in rows.iter().filter(|r| r.sparsity == s) {
                let Some(recall) = r.mass_recall else { continue };
                add_points(&mut series, r.method.name(), r.method, vec![(r.layer as f64, recall)]);
            }
            Panel { title: format!("attention mass recall, {s}x sparsity"), series }
        })
        .collect::<Vec<_>>();
    let axes = Axes { x: "layer", y: "mass recall of the oracle top keys", log_x: false };
    plot::draw(&args.out.join("fidelity.svg"), &axes, &panels)
}

/// Appends `points` to the line `name` (of `method`'s color) in `series`, starting the line
/// when it is new; points stay in x order.
fn add_points(series: &mut Vec<Series>, name: &str, method: MethodKind, points: Vec<(f64, f64)>) {
    match series.iter_mut().find(|s| s.name == name) {
        Some(s) => {
            s.points.extend(points);
            s.points.sort_by(|a, b| a.0.total_cmp(&b.0));
        }
        None => series.push(Series { name: name.to_string(), color: color(method), points }),
    }
}

/// The palette index of `method`: its place in [`MethodKind::ALL`].
fn color(method: MethodKind) -> usize {
    MethodKind::ALL.iter().position(|m| *m == method).unwrap_or(0)
}
