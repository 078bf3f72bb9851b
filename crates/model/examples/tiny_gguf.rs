//! Writes the tiny valid Llama GGUF of the model tests (2 layers, width 64, every supported
//! tensor type) to a file: the seed of the GGUF reader's fuzz target (fuzz/README.md).
//!
//! `cargo run -p burn-sparse-attn-model --example tiny_gguf -- fuzz/corpus/gguf_reader/tiny.gguf`

#[path = "../tests/model/tiny_gguf.rs"]
#[allow(dead_code)]
mod tiny_gguf;

fn main() {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: tiny_gguf OUT_FILE");
        std::process::exit(2);
    };
    let bytes = tiny_gguf::tiny_gguf().bytes;
    if let Some(parent) = std::path::Path::new(&path).parent() {
        std::fs::create_dir_all(parent).ok();
    }
    if let Err(error) = std::fs::write(&path, &bytes) {
        eprintln!("error: cannot write {path}: {error}");
        std::process::exit(1);
    }
    println!("wrote {} bytes to {path}", bytes.len());
}
