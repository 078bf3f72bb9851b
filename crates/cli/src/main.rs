//! `bsa`: the command line of burn-sparse-attn.
//!
//! `bsa demo` loads SmolLM2-135M-Instruct (downloading it when missing), reads a long
//! passage of a book, and runs it through the model with dense attention and with each
//! sparse method, printing perplexity, agreement with dense and time side by side.
//! `bsa generate` answers a prompt with any attention method, streaming the text.
//! `bsa eval` runs the evaluation harness: perplexity, passkey retrieval and per-layer
//! attention fidelity at several sparsities, with tables, JSON and plots. `bsa train-hash`
//! learns HashAttention's mappings with burn-train. `bsa methods` lists the methods.

mod backend;
mod checks;
mod demo;
mod evaluate;
mod export_hash;
mod generate;
mod plot;
mod precision;
mod progress;
mod setup;
mod train_hash;

use clap::{Parser, Subcommand};

/// Sparse attention for Burn: demos and evaluations on a real model.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Every attention method on a long passage of real text, against dense attention.
    Demo(demo::DemoArgs),
    /// Generate text from a prompt (argument, file or standard input) with any method.
    Generate(generate::GenerateArgs),
    /// Perplexity, passkey retrieval and attention fidelity at several sparsities.
    Eval(evaluate::EvalArgs),
    /// Learn HashAttention's mappings on real text and compare them with random ones.
    TrainHash(train_hash::TrainHashArgs),
    /// Write HashAttention mappings as one safetensors file (readable from Python).
    ExportHash(export_hash::ExportHashArgs),
    /// List the attention methods: the names `--methods` takes, and what each selects.
    Methods,
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo(args) => demo::run(args),
        Command::Eval(args) => evaluate::run(args),
        Command::Generate(args) => generate::run(args),
        Command::TrainHash(args) => train_hash::run(args),
        Command::ExportHash(args) => export_hash::run(args),
        Command::Methods => {
            for method in burn_sparse_attn_model::eval::MethodKind::ALL {
                println!("{:<14} {}", method.name(), method.description());
            }
            Ok(())
        }
    };
    if let Err(error) = result {
        eprintln!("error: {error}");
        std::process::exit(1);
    }
}
