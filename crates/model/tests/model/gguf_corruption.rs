//! The GGUF reader against corrupt files: a tiny valid model loads and runs; a few hundred
//! seeded corruptions of it (byte flips, truncations, edits of counts, lengths, dims, types
//! and offsets) each end in an `Err` or a model that runs, never a panic and never an
//! allocation beyond what the file's size justifies. Edits that break the layout (every
//! truncation; any new offset, type or dimension) must be refused.

use std::panic::{catch_unwind, AssertUnwindSafe};

use burn::tensor::{Int, Tensor, TensorData};
use burn_sparse_attn_core::rng::SplitMix64;
use burn_sparse_attn_model::{AttentionPlan, GgufFile, Llama, ModelResult};

use crate::alloc_limit::largest_allocation;
use crate::common::B;
use crate::tiny_gguf::{tiny_gguf, Field, VOCAB};

/// Parses `bytes`, loads the model and runs four tokens through it.
fn load_and_run(bytes: Vec<u8>) -> ModelResult<()> {
    let device = Default::default();
    let file = GgufFile::parse(bytes)?;
    let model = Llama::<B>::from_gguf(&file, &AttentionPlan::dense(), &device)?;
    let tokens = Tensor::<B, 2, Int>::from_data(TensorData::new(vec![1i64, 7, 3, 39], [1, 4]), &device);
    model.forward(tokens, &mut model.new_caches())?;
    Ok(())
}

/// Runs [`load_and_run`], failing the test on a panic or an allocation over 64 bytes per
/// byte of the file (plus 1 MiB for the model's small working buffers).
fn outcome(bytes: Vec<u8>, what: &str) -> ModelResult<()> {
    let limit = 64 * bytes.len() + (1 << 20);
    let (result, largest) = largest_allocation(|| catch_unwind(AssertUnwindSafe(|| load_and_run(bytes))));
    let result = result.unwrap_or_else(|_| panic!("{what}: the reader panicked"));
    assert!(largest <= limit, "{what}: allocated {largest} bytes at once (limit {limit})");
    result
}

#[test]
fn the_tiny_model_loads_and_runs() {
    let tiny = tiny_gguf();
    outcome(tiny.bytes.clone(), "the valid file").unwrap();
    let file = GgufFile::parse(tiny.bytes).unwrap();
    assert_eq!(file.tensors.len(), 20);
    assert_eq!(file.strings("tokenizer.ggml.tokens").unwrap().len(), VOCAB);
}

#[test]
fn layout_breaking_edits_are_refused() {
    let tiny = tiny_gguf();
    let mut rng = SplitMix64::new(1);
    let mut cases = 0;
    for (at, field) in tiny.fields.iter().copied() {
        if !matches!(field, Field::Offset | Field::Type | Field::Dim) {
            continue;
        }
        for _ in 0..3 {
            let mut bytes = tiny.bytes.clone();
            let old = read(&bytes, at, field.width());
            let new = match rng.below(3) {
                0 => old ^ (1 << rng.below(8 * field.width())),
                1 => old.wrapping_add(1 + rng.below(64) as u64),
                _ => rng.next_u64() >> (64 - 8 * field.width()),
            };
            if new == old {
                continue;
            }
            write(&mut bytes, at, field.width(), new);
            let what = format!("{field:?} at byte {at}: {old} -> {new}");
            assert!(outcome(bytes, &what).is_err(), "{what} was accepted");
            cases += 1;
        }
    }
    for _ in 0..50 {
        let len = rng.below(tiny.bytes.len());
        let what = format!("truncation to {len} bytes");
        assert!(outcome(tiny.bytes[..len].to_vec(), &what).is_err(), "{what} was accepted");
        cases += 1;
    }
    assert!(cases > 250, "only {cases} cases");
}

#[test]
fn random_corruptions_never_panic_or_over_allocate() {
    let tiny = tiny_gguf();
    let header_end = tiny.fields.last().unwrap().0 + 8;
    let mut rng = SplitMix64::new(2);
    let mut refused = 0;
    for case in 0..300 {
        let mut bytes = tiny.bytes.clone();
        let what = match case % 3 {
            // Header fields set to extreme or random values.
            0 => {
                let (at, field) = tiny.fields[rng.below(tiny.fields.len())];
                let value = [u64::MAX, 1 << 62, 1 << 40, 0, rng.next_u64()][rng.below(5)];
                write(&mut bytes, at, field.width(), value >> (64 - 8 * field.width()));
                format!("{field:?} at byte {at} set to {value:#x}")
            }
            // A few flipped bytes in the header.
            1 => {
                for _ in 0..1 + rng.below(4) {
                    bytes[rng.below(header_end)] ^= 1 << rng.below(8);
                }
                "header bit flips".to_string()
            }
            // Flipped bytes anywhere, weights included.
            _ => {
                for _ in 0..1 + rng.below(8) {
                    let at = rng.below(bytes.len());
                    bytes[at] = rng.next_u64() as u8;
                }
                "random bytes".to_string()
            }
        };
        refused += usize::from(outcome(bytes, &format!("case {case}: {what}")).is_err());
    }
    // Most corruptions hit a field the reader checks; weights may change and still load.
    assert!(refused > 100, "only {refused} of 300 corruptions were refused");
}

fn read(bytes: &[u8], at: usize, width: usize) -> u64 {
    let mut buf = [0u8; 8];
    buf[..width].copy_from_slice(&bytes[at..at + width]);
    u64::from_le_bytes(buf)
}

fn write(bytes: &mut [u8], at: usize, width: usize, value: u64) {
    bytes[at..at + width].copy_from_slice(&value.to_le_bytes()[..width]);
}

#[test]
fn open_names_the_file_and_refuses_what_is_not_one() {
    if std::path::Path::new("/dev/zero").exists() {
        let error = GgufFile::open("/dev/zero").unwrap_err().to_string();
        assert!(error.contains("/dev/zero: not a regular file"), "{error}");
    }
    let path = std::env::temp_dir().join(format!("bsa-truncated-{}.gguf", std::process::id()));
    std::fs::write(&path, &tiny_gguf().bytes[..100]).unwrap();
    let error = GgufFile::open(&path).unwrap_err().to_string();
    std::fs::remove_file(&path).unwrap();
    assert!(
        error.contains(&format!("{}: ", path.display()))
            && error.contains("tensor count 20 at byte 8 cannot fit"),
        "{error}"
    );
}
