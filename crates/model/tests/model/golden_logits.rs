//! The dense model's logits match a second implementation (tools/golden_logits.py: the
//! `gguf` package's dequantiser and a numpy decoder), on SmolLM2-135M-Instruct.
//!
//! Needs the model at `models/SmolLM2-135M-Instruct.Q4_1.gguf` (scripts/get_model.sh puts
//! it there; the test command runs it) or at the path in `SMOLLM2_GGUF`.

use crate::common::{gguf, B};
use burn::tensor::{Int, Tensor, TensorData};
use burn_sparse_attn_model::{AttentionPlan, Llama};

fn numbers(json: &str, key: &str) -> Vec<f64> {
    let start = json.find(&format!("\"{key}\"")).expect("key in fixture");
    let body = &json[start..];
    let open = body.find('[').unwrap();
    let mut depth = 0;
    let mut end = open;
    for (i, c) in body[open..].char_indices() {
        match c {
            '[' => depth += 1,
            ']' => {
                depth -= 1;
                if depth == 0 {
                    end = open + i;
                    break;
                }
            }
            _ => {}
        }
    }
    body[open..end]
        .split(|c: char| c == ',' || c == '[' || c == ']' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap())
        .collect()
}

#[test]
fn dense_logits_match_the_numpy_reference() {
    let fixture = include_str!("../fixtures/smollm2_golden.json");
    let ids: Vec<i64> = numbers(fixture, "token_ids").into_iter().map(|x| x as i64).collect();
    let top: Vec<f64> = numbers(fixture, "top5_per_position");
    let device = Default::default();
    let file = gguf();
    let model = Llama::<B>::from_gguf(&file, &AttentionPlan::dense(), &device).unwrap();
    let t = ids.len();
    let tokens = Tensor::<B, 2, Int>::from_data(TensorData::new(ids, [1, t]), &device);
    let logits = model.forward(tokens, &mut model.new_caches()).unwrap();
    let vocab = model.config.vocab_size;
    let logits: Vec<f32> = logits.into_data().to_vec().unwrap();
    let mut worst = 0.0f64;
    for pos in 0..t {
        let row = &logits[pos * vocab..][..vocab];
        let argmax = (0..vocab).max_by(|&a, &b| row[a].total_cmp(&row[b])).unwrap();
        let reference = &top[pos * 10..][..10];
        assert_eq!(argmax as f64, reference[0], "argmax at position {pos}");
        for pair in reference.chunks(2) {
            worst = worst.max((row[pair[0] as usize] as f64 - pair[1]).abs());
        }
    }
    eprintln!("largest difference of the top-5 logits: {worst:.2e}");
    assert!(worst < 2e-2, "logits differ by {worst}");
}

#[test]
fn the_tokenizer_encodes_the_fixture_sentence_and_round_trips_text() {
    let file = gguf();
    let tokenizer = burn_sparse_attn_model::GgufTokenizer::from_gguf(&file).unwrap();
    let fixture = include_str!("../fixtures/smollm2_golden.json");
    let ids: Vec<u32> = numbers(fixture, "token_ids").into_iter().map(|x| x as u32).collect();
    assert_eq!(tokenizer.encode("The quick brown fox jumps over the lazy dog. The dog").unwrap(), ids);
    let text = "It is a truth universally acknowledged, that a single man in possession of a good fortune,\n\
                must be in want of a wife. 1813 — “Pride & Prejudice”; <|im_start|>user";
    let encoded = tokenizer.encode(text).unwrap();
    assert_eq!(tokenizer.decode(&encoded).unwrap(), text);
    let start = tokenizer.encode("<|im_start|>").unwrap();
    assert_eq!(start.len(), 1, "control tokens stay whole: {start:?}");
    // Digits are split one by one, as in the model's training.
    assert_eq!(tokenizer.encode("1813").unwrap().len(), 4);
}
