#!/usr/bin/python3
"""Prints the benchmark table: deltatune vs the PyTorch reference, decode as a fraction of the
memory-bandwidth limit (weight bytes read per token / measured read bandwidth), and prefill GFLOP/s as
a fraction of the measured fp32 FMA peak. Inputs are the raw outputs collected by bench/run.sh."""
import argparse
import json
import os
import re


def text_config(model_dir):
    with open(os.path.join(model_dir, "config.json")) as f:
        document = json.load(f)
    return document.get("text_config", document)


def weight_counts(c):
    """(matrix parameters per token excluding the head, head parameters, full-attention layers)."""
    h, i = c["hidden_size"], c["intermediate_size"]
    nq, nkv, hd = c["num_attention_heads"], c["num_key_value_heads"], c["head_dim"]
    nk, nv, dk, dv = c["linear_num_key_heads"], c["linear_num_value_heads"], c["linear_key_head_dim"], c["linear_value_head_dim"]
    attention = h * (2 * nq * hd + 2 * nkv * hd) + nq * hd * h
    deltanet = h * (2 * nk * dk + nv * dv) + h * nv * dv + 2 * h * nv + nv * dv * h
    mlp = 3 * h * i
    types = c["layer_types"]
    layers = sum((attention if t == "full_attention" else deltanet) + mlp for t in types)
    return layers, c["vocab_size"] * h, types.count("full_attention")


def prefill_flops_per_token(c, prompt_tokens):
    layers, head, full_layers = weight_counts(c)
    nv, dk, dv = c["linear_num_value_heads"], c["linear_key_head_dim"], c["linear_value_head_dim"]
    attention = full_layers * 2 * c["num_attention_heads"] * c["head_dim"] * prompt_tokens  # causal QK^T + PV
    chunk = 64
    delta_rule = (len(c["layer_types"]) - full_layers) * nv * (6 * dk * dv + 2 * chunk * (dk + dv))
    return 2 * layers + attention + delta_rule + 2 * head / prompt_tokens  # head on the last position only


def parse_pairs(text):
    return {key: float(value) for key, value in re.findall(r"^(\w+) ([\d.]+)$", text, re.M)}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--prompt-tokens", type=int, required=True)
    parser.add_argument("--limits", required=True)
    parser.add_argument("--deltatune", required=True)
    parser.add_argument("--reference", default="")
    args = parser.parse_args()
    c = text_config(args.model)
    limits = parse_pairs(args.limits)
    match = re.search(r"prefill: (\d+) tokens in [\d.]+ s \(([\d.]+) tok/s\); decode: (\d+) tokens in [\d.]+ s \(([\d.]+) tok/s\)",
                      args.deltatune)
    if not match:
        raise SystemExit(f"could not parse the deltatune speed report: {args.deltatune!r}")
    results = {"deltatune (BF16)": (float(match.group(2)), float(match.group(4)), 2)}
    reference = parse_pairs(args.reference)
    if reference:
        results["PyTorch reference (F32)"] = (reference["prefill_tok_s"], reference["decode_tok_s"], 4)

    layers, head, _ = weight_counts(c)
    bandwidth = limits["read_bandwidth_gbs"] * 1e9
    peak = limits["fp32_peak_gflops"]
    flops = prefill_flops_per_token(c, args.prompt_tokens)
    print(f"model: {args.model} ({(layers + head) / 1e6:.0f}M matrix parameters, head {'tied' if c.get('tie_word_embeddings') else 'untied'})")
    print(f"machine: read bandwidth {limits['read_bandwidth_gbs']:.1f} GB/s, fp32 FMA peak {peak:.1f} GFLOP/s")
    print(f"prefill {args.prompt_tokens} tokens: ~{flops / 1e9:.2f} GFLOP/token")
    print()
    header = f"{'engine':<26}{'prefill tok/s':>14}{'GFLOP/s':>9}{'of peak':>9}{'decode tok/s':>14}{'bw limit':>10}{'of limit':>10}"
    print(header)
    print("-" * len(header))
    for name, (prefill, decode, bytes_per_weight) in results.items():
        gflops = prefill * flops / 1e9
        limit = bandwidth / ((layers + head) * bytes_per_weight)
        print(f"{name:<26}{prefill:>14.1f}{gflops:>9.1f}{gflops / peak:>9.1%}{decode:>14.2f}{limit:>10.2f}{decode / limit:>10.1%}")
    if len(results) == 2:
        (_, (p0, d0, _)), (_, (p1, d1, _)) = results.items()
        print(f"\ndeltatune / reference: prefill {p0 / p1:.2f}x, decode {d0 / d1:.2f}x")


if __name__ == "__main__":
    main()
