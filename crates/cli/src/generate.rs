//! `bsa generate`: text generation with any attention method. The prompt comes from an
//! argument, a file or standard input, goes through the model's chat template (unless
//! `--raw`), and the answer is printed as it is generated; prefill and decode speed follow
//! on standard error.

use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;

use burn_sparse_attn_model::eval::{plan, KeyBudget, MethodKind};
use burn_sparse_attn_model::{ChatMessage, GenerationConfig, SamplingConfig, StopReason, TextStream};

use crate::setup::{Error, HashOptions, Source};
use crate::{backend, checks};

/// Options of `bsa generate`.
#[derive(clap::Args)]
pub struct GenerateArgs {
    /// The prompt (an instruction, when a file is given too: it follows the file's text).
    prompt: Option<String>,
    /// Read the prompt (or the document the prompt is about) from this file; `-` is
    /// standard input, which is also read when no prompt is given and it is not a terminal.
    #[arg(long, short)]
    file: Option<PathBuf>,
    /// Send the prompt as it is, without the model's chat template.
    #[arg(long)]
    raw: bool,
    /// A system message for the chat template (default: the template's own).
    #[arg(long)]
    system: Option<String>,
    /// The most tokens to generate.
    #[arg(long, default_value_t = 256)]
    max_tokens: usize,
    /// Sampling temperature; 0 is greedy.
    #[arg(long, default_value_t = 0.0)]
    temperature: f64,
    /// Sample among the k most likely tokens only (0: all).
    #[arg(long, default_value_t = 0)]
    top_k: usize,
    /// Sample within the smallest set of tokens whose probability reaches p (1: all).
    #[arg(long, default_value_t = 1.0)]
    top_p: f64,
    /// Seed of the sampler.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Attention method of every layer but `--dense-layers` (`bsa methods` lists them).
    #[arg(long, default_value_t = MethodKind::Dense)]
    method: MethodKind,
    /// Sparsity factor of a sparse method: it attends to 1/S of the prompt's keys.
    #[arg(long, default_value_t = 8.0)]
    sparsity: f64,
    /// Layers kept dense.
    #[arg(long, value_delimiter = ',', default_value = "0,1")]
    dense_layers: Vec<usize>,
    #[command(flatten)]
    hash: HashOptions,
    /// A Llama-family GGUF file (default: SmolLM2-135M-Instruct, downloaded when missing).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Prefill the prompt and decode a few tokens once, untimed and unprinted, before the
    /// run (GPU kernels compile on first use; this keeps that out of the speeds printed).
    #[arg(long)]
    warmup: bool,
}

/// Runs generation.
pub fn run(args: GenerateArgs) -> Result<(), Error> {
    checks::sparsities("--sparsity", &[args.sparsity])?;
    checks::positive("--max-tokens", &[args.max_tokens])?;
    let sampling = SamplingConfig::new()
        .with_temperature(args.temperature)
        .with_top_k(args.top_k)
        .with_top_p(args.top_p)
        .with_seed(args.seed);
    sampling.validate()?;
    let user_text = prompt_text(&args)?;
    let device = Default::default();
    let loaded = Source { model: args.model.clone(), text: None }.load(&device)?;
    let hash_mappings = args.hash.mappings(&loaded)?;
    let text = match (&loaded.chat_template, args.raw) {
        (Some(template), false) => {
            let mut messages: Vec<ChatMessage> = args.system.iter().map(ChatMessage::system).collect();
            messages.push(ChatMessage::user(user_text));
            template.render(&messages, true)?
        }
        (None, false) if args.system.is_some() => {
            return Err(
                "--system: the model has no chat template (use --raw and write the prompt in full)".into()
            )
        }
        _ => user_text,
    };
    let (mut model, tokenizer) = (loaded.model, loaded.tokenizer);
    checks::dense_layers(&args.dense_layers, model.layers.len())?;
    let prompt = tokenizer.encode(&text)?;
    let budget = KeyBudget::new(prompt.len(), args.sparsity)?;
    let attention = plan(
        args.method,
        &model.config,
        &budget,
        &args.dense_layers,
        &hash_mappings,
        args.hash.shared_selection,
    );
    model.set_attention(&attention, &device)?;
    let keys = if args.method == MethodKind::Dense {
        "every key".to_string()
    } else {
        format!(
            "{} keys per query (1/{} of the prompt; layers {:?} dense)",
            budget.total, args.sparsity, args.dense_layers
        )
    };
    eprintln!(
        "{} prompt tokens; {} attends to {keys}; {}",
        prompt.len(),
        args.method.name(),
        backend::name()
    );

    let config = GenerationConfig::new()
        .with_max_new_tokens(args.max_tokens)
        .with_sampling(sampling)
        .with_stop_tokens(tokenizer.eos.into_iter().collect());
    if args.warmup {
        model.generate(&prompt, &config.clone().with_max_new_tokens(4), |_| true)?;
    }
    let mut stream = TextStream::new(&tokenizer);
    let mut stdout = std::io::stdout().lock();
    let mut failure = None;
    let generation = model.generate(&prompt, &config, |token| {
        if Some(token) == tokenizer.eos {
            return true;
        }
        let written = stream.push(token).map_err(Error::from).and_then(|piece| {
            stdout.write_all(piece.as_bytes())?;
            stdout.flush().map_err(Error::from)
        });
        written.map_err(|e| failure = Some(e)).is_ok()
    })?;
    if let Some(error) = failure {
        return Err(error);
    }
    writeln!(stdout, "{}", stream.finish()?)?;
    let stop = match generation.stop {
        StopReason::StopToken => "end of answer",
        StopReason::MaxTokens => "--max-tokens reached",
        StopReason::ContextFull => "the model's context is full",
        StopReason::Callback => "output closed",
    };
    eprintln!(
        "prefill: {} tokens in {:.2} s ({:.1} tokens/s); decode: {} tokens in {:.2} s ({:.1} tokens/s); stopped: {stop}",
        generation.prompt_tokens,
        generation.prefill_seconds,
        generation.prefill_tokens_per_second(),
        generation.tokens.len().saturating_sub(1),
        generation.decode_seconds,
        generation.decode_tokens_per_second(),
    );
    Ok(())
}

/// The user's text: the file's (or standard input's) contents, followed by the prompt
/// argument when both are given.
fn prompt_text(args: &GenerateArgs) -> Result<String, Error> {
    let stdin = || -> Result<String, Error> {
        let mut text = String::new();
        std::io::stdin().take(checks::MAX_TEXT_BYTES).read_to_string(&mut text)?;
        Ok(text)
    };
    let document = match &args.file {
        Some(path) if path.as_os_str() == "-" => Some(stdin()?),
        Some(path) => Some(checks::read_text(path).map_err(|e| format!("--file: {e}"))?),
        None if args.prompt.is_none() && !std::io::stdin().is_terminal() => Some(stdin()?),
        None => None,
    };
    let text = match (document, &args.prompt) {
        (Some(document), Some(prompt)) => format!("{}\n\n{prompt}", document.trim_end()),
        (Some(document), None) => document,
        (None, Some(prompt)) => prompt.clone(),
        (None, None) => {
            return Err("give a prompt: bsa generate \"...\", --file PATH, or text on standard input".into())
        }
    };
    if text.trim().is_empty() {
        return Err("the prompt is empty".into());
    }
    Ok(text)
}
