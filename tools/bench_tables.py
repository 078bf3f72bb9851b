#!/usr/bin/env python3
"""Markdown tables for docs/benchmarks.md from one GPU run's raw outputs.

    python3 tools/bench_tables.py docs/gpu-runs/<run>

reads torch_decode.jsonl + decode.txt (kernel_bench --no-prefill) and torch_prefill.jsonl +
prefill.txt (kernel_bench --no-decode) from the folder and prints the decode and prefill
tables: PyTorch's best dense attention first, every speedup against it, our dense second.
"""
import json
import re
import sys
from pathlib import Path

ROW = re.compile(r"^(?P<name>.*?)\s+(?P<ms>[\d.]+)\s+(?P<mb>[\d.]+)\s+(?P<gbs>\d+)\s+(?P<peak>[\d.]+)\s+(?P<speedup>[\d.]+)$")


def torch_rows(path, mode):
    rows = {}
    for line in Path(path).read_text().splitlines():
        d = json.loads(line)
        if d.get("mode") != mode:
            continue
        key = (d["batch"], d["kv_heads"], d["context"]) if mode == "decode" else d["context"]
        rows[key] = d
    return rows


def ours(path):
    rows = {}
    for line in Path(path).read_text().splitlines():
        m = ROW.match(line.strip())
        if m:
            rows[m["name"]] = (float(m["ms"]), float(m["gbs"]), float(m["peak"]))
    return rows


def find(rows, prefix, contains):
    for name, value in rows.items():
        if name.startswith(prefix) and contains in name:
            return name, value
    raise KeyError(f"{prefix} ... {contains}")


def decode_table(folder):
    torch = torch_rows(folder / "torch_decode.jsonl", "decode")
    mine = ours(folder / "decode.txt")
    print("| batch | KV heads | context | PyTorch best ms (backend) | PyTorch GB/s | hash ms (launches) "
          "| **hash vs PyTorch** | ours dense ms (GB/s, % of measured) | dense vs PyTorch | hash vs ours dense "
          "| query MLP ms | score + top-k ms | attend ms (GB/s) | hash, one list per KV head: ms (vs PyTorch) |")
    print("|" + "---:|" * 14)
    for (batch, kv_heads, context), t in sorted(torch.items()):
        tag = f"b{batch} kv{kv_heads} T{context // 1024}K "
        kv_bytes = batch * kv_heads * context * 2 * t["head_dim"] * 2
        torch_gbs = kv_bytes / (t["best_ms"] / 1e3) / 1e9
        hash_name, (hash_ms, _, _) = find(mine, tag, "hash end-to-end (per-query-head")
        launches = re.search(r"(\d+) launches", hash_name)
        _, (dense_ms, dense_gbs, dense_peak) = find(mine, tag, "dense decode")
        _, (mlp_ms, _, _) = find(mine, tag, "query MLP")
        _, (topk_ms, _, _) = find(mine, tag, "score + top-k (")
        _, (attend_ms, attend_gbs, _) = find(mine, tag, "attend over chosen")
        _, (shared_ms, _, _) = find(mine, tag, "shared per KV head")
        print(f"| {batch} | {kv_heads} | {context // 1024}K | {t['best_ms']:.3f} ({t['best']}) | {torch_gbs:.0f} "
              f"| {hash_ms:.3f} ({launches[1] if launches else '?'}) | **{t['best_ms'] / hash_ms:.2f}** "
              f"| {dense_ms:.3f} ({dense_gbs:.0f}, {dense_peak:.0f}%) | {t['best_ms'] / dense_ms:.2f} "
              f"| {dense_ms / hash_ms:.2f} | {mlp_ms:.3f} | {topk_ms:.3f} | {attend_ms:.3f} ({attend_gbs:.0f}) "
              f"| {shared_ms:.3f} ({t['best_ms'] / shared_ms:.2f}) |")


def prefill_table(folder):
    torch = torch_rows(folder / "torch_prefill.jsonl", "prefill")
    mine = ours(folder / "prefill.txt")
    print("| context | PyTorch best ms (backend) | PyTorch TFLOP/s | HiP ms (mask ms) | **HiP vs PyTorch** "
          "| Hyper ms | **Hyper vs PyTorch** | ours dense ms (TFLOP/s) | dense vs PyTorch | HiP vs ours dense "
          "| Hyper vs ours dense |")
    print("|" + "---:|" * 11)
    for context, t in sorted(torch.items()):
        tag = f"T{context // 1024}K "
        flops = 2.0 * context * context * t["q_heads"] * t["head_dim"]
        _, (hip_ms, _, _) = find(mine, tag, "HiP: mask + block")
        _, (mask_ms, _, _) = find(mine, tag, "HiP: mask alone")
        _, (hyper_ms, _, _) = find(mine, tag, "HyperAttention")
        _, (dense_ms, _, _) = find(mine, tag, "dense: ours")
        best = t["best_ms"]
        print(f"| {context // 1024}K | {best:.2f} ({t['best']}) | {flops / (best / 1e3) / 1e12:.0f} "
              f"| {hip_ms:.1f} ({mask_ms:.1f}) | **{best / hip_ms:.2f}** | {hyper_ms:.1f} | **{best / hyper_ms:.2f}** "
              f"| {dense_ms:.1f} ({flops / (dense_ms / 1e3) / 1e12:.0f}) | {best / dense_ms:.2f} "
              f"| {dense_ms / hip_ms:.2f} | {dense_ms / hyper_ms:.2f} |")


def main():
    folder = Path(sys.argv[1])
    if (folder / "decode.txt").exists():
        decode_table(folder)
        print()
    if (folder / "prefill.txt").exists():
        prefill_table(folder)


if __name__ == "__main__":
    main()
