"""Golden logits of SmolLM2-135M-Instruct for crates/model/tests/fixtures/smollm2_golden.json.

A second, independent implementation of the forward pass: the `gguf` package reads and
dequantises the file, numpy runs the Llama decoder (llama.cpp's conventions: RoPE rotates
adjacent pairs, as the GGUF conversion permutes the query and key weights). Run once,
outside the project's runtime:

    pip install gguf numpy
    python3 tools/golden_logits.py models/SmolLM2-135M-Instruct.Q4_1.gguf > crates/model/tests/fixtures/smollm2_golden.json
"""

import json
import sys

import gguf
import numpy as np

WORDS = ["The", "Ġquick", "Ġbrown", "Ġfox", "Ġjumps", "Ġover", "Ġthe", "Ġlazy", "Ġdog", ".", "ĠThe", "Ġdog"]


def field(reader, key):
    f = reader.fields[key]
    value = f.parts[f.data[0]]
    return value.tolist()[0] if hasattr(value, "tolist") else value


def main(path):
    reader = gguf.GGUFReader(path)
    tensors = {}
    for t in reader.tensors:
        values = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32)
        tensors[t.name] = values.reshape([int(d) for d in reversed(t.shape)])
    tokens = [bytes(reader.fields["tokenizer.ggml.tokens"].parts[i]).decode() for i in reader.fields["tokenizer.ggml.tokens"].data]
    ids = [tokens.index(w) for w in WORDS]
    heads = field(reader, "llama.attention.head_count")
    kv_heads = field(reader, "llama.attention.head_count_kv")
    layers = field(reader, "llama.block_count")
    theta = field(reader, "llama.rope.freq_base")
    eps = field(reader, "llama.attention.layer_norm_rms_epsilon")

    emb = tensors["token_embd.weight"]  # [vocab, d]
    d = emb.shape[1]
    hd = d // heads
    t = len(ids)
    x = emb[ids].astype(np.float64)

    def norm(x, w):
        return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * w

    def rope(x):  # x: [heads, t, hd], adjacent pairs rotate
        i = np.arange(hd // 2)
        angles = np.arange(t)[:, None] * theta ** (-2.0 * i / hd)
        cos, sin = np.cos(angles), np.sin(angles)
        a, b = x[..., 0::2], x[..., 1::2]
        out = np.empty_like(x)
        out[..., 0::2] = a * cos - b * sin
        out[..., 1::2] = a * sin + b * cos
        return out

    causal = np.triu(np.full((t, t), -np.inf), 1)
    for layer in range(layers):
        w = lambda name: tensors[f"blk.{layer}.{name}.weight"]
        h = norm(x, w("attn_norm"))
        q = (h @ w("attn_q").T).reshape(t, heads, hd).transpose(1, 0, 2)
        k = (h @ w("attn_k").T).reshape(t, kv_heads, hd).transpose(1, 0, 2)
        v = (h @ w("attn_v").T).reshape(t, kv_heads, hd).transpose(1, 0, 2)
        q, k = rope(q), rope(k)
        group = heads // kv_heads
        k, v = np.repeat(k, group, axis=0), np.repeat(v, group, axis=0)
        scores = q @ k.transpose(0, 2, 1) / np.sqrt(hd) + causal
        p = np.exp(scores - scores.max(-1, keepdims=True))
        p /= p.sum(-1, keepdims=True)
        attended = (p @ v).transpose(1, 0, 2).reshape(t, d)
        x = x + attended @ w("attn_output").T
        h = norm(x, w("ffn_norm"))
        gate = h @ w("ffn_gate").T
        x = x + ((gate / (1 + np.exp(-gate))) * (h @ w("ffn_up").T)) @ w("ffn_down").T
    logits = norm(x, tensors["output_norm.weight"]) @ emb.T

    top = [[[int(i), float(logits[pos, i])] for i in np.argsort(-logits[pos])[:5]] for pos in range(t)]
    json.dump({"words": WORDS, "token_ids": ids, "top5_per_position": top}, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main(sys.argv[1])
