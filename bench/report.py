#!/usr/bin/python3
"""Prints the benchmark as markdown tables from the raw outputs collected by bench/run.sh: deltatune
next to the PyTorch reference, decode as a fraction of the memory-bandwidth limit (weight bytes read
per token / measured read bandwidth), prefill and forward + backward GFLOP/s as a fraction of the
measured fp32 FMA peak, peak memory of a long backward, and training throughput; and the tokenizer
(bench_tokenizer's Google Benchmark JSON) next to Hugging Face tokenizers.

FLOP counts (multiply-add = 2 FLOPs; norms, gates, conv and other elementwise work are left out):
  P      frozen matrix parameters of the layers; H = vocab x hidden, the head (tied or not)
  L      LoRA parameters (every A and B of the adapter file), T tokens, C = 64 (delta-rule chunk)
  prefill  2 P T + 2 H (head on the last position only) + attention + delta rule
  forward + backward (loss at every position, frozen weights get no gradient):
    frozen GEMMs   4 (P + H) T: forward 2 (P + H) T and the input gradient dx as much again
    LoRA           6 L T: forward x A^T, (.) B^T; backward dB, d(xA^T), dA, dx, each 2 T r (in or out)
    attention      forward 2 nq hd T^2 per full-attention layer (causal QK^T and PV, half of each
                   T x T product); backward twice that (dP, dV, dQ, dK): 6 nq hd T^2 in all
    delta rule     forward per token and value head 6 dk dv + 2 C (dk + dv) (chunked form: state
                   read, correction and update, plus the intra-chunk products); backward twice that
"""
import argparse
import json
import os
import re
import struct

DELTA_RULE_CHUNK = 64


def text_config(model_dir):
    with open(os.path.join(model_dir, "config.json")) as f:
        document = json.load(f)
    return document.get("text_config", document)


def weight_counts(c):
    """(frozen matrix parameters of the layers, head parameters, full-attention layers)."""
    h, i = c["hidden_size"], c["intermediate_size"]
    nq, nkv, hd = c["num_attention_heads"], c["num_key_value_heads"], c["head_dim"]
    nk, nv, dk, dv = c["linear_num_key_heads"], c["linear_num_value_heads"], c["linear_key_head_dim"], c["linear_value_head_dim"]
    attention = h * (2 * nq * hd + 2 * nkv * hd) + nq * hd * h
    deltanet = h * (2 * nk * dk + nv * dv) + h * nv * dv + 2 * h * nv + nv * dv * h
    mlp = 3 * h * i
    types = c["layer_types"]
    layers = sum((attention if t == "full_attention" else deltanet) + mlp for t in types)
    return layers, c["vocab_size"] * h, types.count("full_attention")


def attention_forward_flops(c, tokens):
    """Causal QK^T and PV over all full-attention layers for a sequence of `tokens`."""
    _, _, full_layers = weight_counts(c)
    return full_layers * 2 * c["num_attention_heads"] * c["head_dim"] * tokens * tokens


def delta_rule_forward_flops_per_token(c):
    _, _, full_layers = weight_counts(c)
    nv, dk, dv = c["linear_num_value_heads"], c["linear_key_head_dim"], c["linear_value_head_dim"]
    return (len(c["layer_types"]) - full_layers) * nv * (6 * dk * dv + 2 * DELTA_RULE_CHUNK * (dk + dv))


def prefill_flops(c, tokens):
    layers, head, _ = weight_counts(c)
    return 2 * layers * tokens + 2 * head + attention_forward_flops(c, tokens) + delta_rule_forward_flops_per_token(c) * tokens


def training_flops(c, tokens, lora_parameters):
    """Forward + backward to the LoRA factors, loss at every position (see the module docstring)."""
    layers, head, _ = weight_counts(c)
    return (4 * (layers + head) * tokens + 6 * lora_parameters * tokens + 3 * attention_forward_flops(c, tokens)
            + 3 * delta_rule_forward_flops_per_token(c) * tokens)


def safetensors_parameters(path):
    """Number of values in a safetensors file, from its header."""
    with open(path, "rb") as f:
        (header_length,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(header_length))
    header.pop("__metadata__", None)
    count = 0
    for info in header.values():
        values = 1
        for dim in info["shape"]:
            values *= dim
        count += values
    return count


def directory_mib(directory, suffix):
    return sum(os.path.getsize(os.path.join(directory, name)) for name in os.listdir(directory)
               if name.endswith(suffix)) / 2 ** 20


def parse_pairs(text):
    return {key: float(value) for key, value in re.findall(r"^(\w+) ([\d.]+)$", text, re.M)}


def parse_grad_line(text, what):
    """(tokens, loss, seconds, peak RSS MiB) of deltatune grad's summary line."""
    match = re.search(r"^grad: tokens (\d+) loss ([\d.naif-]+) seconds ([\d.]+) peak_rss_mib ([\d.]+)", text, re.M)
    if not match:
        raise SystemExit(f"could not parse the deltatune grad report of the {what}: {text!r}")
    return int(match.group(1)), float(match.group(2)), float(match.group(3)), float(match.group(4))


def table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    print("\n".join(lines))


def report_inference(args, c, limits):
    match = re.search(r"prefill: (\d+) tokens in [\d.]+ s \(([\d.]+) tok/s\); decode: (\d+) tokens in [\d.]+ s \(([\d.]+) tok/s\)",
                      args.inference_deltatune)
    if not match:
        raise SystemExit(f"could not parse the deltatune speed report: {args.inference_deltatune!r}")
    results = {"deltatune (BF16 weights)": (float(match.group(2)), float(match.group(4)), 2)}
    reference = parse_pairs(args.inference_reference)
    if reference:
        results["PyTorch reference (F32)"] = (reference["prefill_tok_s"], reference["decode_tok_s"], 4)
    layers, head, _ = weight_counts(c)
    flops_per_token = prefill_flops(c, args.prompt_tokens) / args.prompt_tokens
    print(f"\n## Inference: prefill {args.prompt_tokens} tokens (~{flops_per_token / 1e9:.2f} GFLOP/token), then decode\n")
    rows = []
    for name, (prefill, decode, bytes_per_weight) in results.items():
        gflops = prefill * flops_per_token / 1e9
        limit = limits["read_bandwidth_gbs"] * 1e9 / ((layers + head) * bytes_per_weight)
        rows.append([name, f"{prefill:.1f}", f"{gflops:.1f}", f"{gflops / limits['fp32_peak_gflops']:.1%}",
                     f"{decode:.2f}", f"{limit:.2f}", f"{decode / limit:.1%}"])
    table(["engine", "prefill tok/s", "GFLOP/s", "of fp32 peak", "decode tok/s", "bandwidth limit tok/s", "of limit"], rows)
    if len(results) == 2:
        (_, (p0, d0, _)), (_, (p1, d1, _)) = results.items()
        print(f"\ndeltatune / reference: prefill {p0 / p1:.2f}x, decode {d0 / d1:.2f}x")


def report_grad(args, c, limits):
    tokens, loss, seconds, peak_rss = parse_grad_line(args.grad_deltatune, "forward + backward")
    lora = safetensors_parameters(os.path.join(args.adapter, "adapter_model.safetensors"))
    flops = training_flops(c, tokens, lora)
    print(f"\n## LoRA forward + backward: {tokens} tokens, adapter {os.path.basename(args.adapter)} "
          f"({lora / 1e6:.2f}M LoRA parameters), ~{flops / 1e9:.1f} GFLOP\n")
    rows = [("deltatune grad (BF16 weights)", seconds, loss, f"{peak_rss:.0f}")]
    reference = parse_pairs(args.grad_reference)
    if reference:
        rows.append(("PyTorch reference (F32, autograd)", reference["grad_seconds"], reference["grad_loss"], "-"))
    peak = limits["fp32_peak_gflops"]
    table(["engine", "seconds", "tokens/s", "GFLOP/s", "of fp32 peak", "loss", "peak RSS MiB"],
          [[name, f"{s:.2f}", f"{tokens / s:.1f}", f"{flops / s / 1e9:.1f}", f"{flops / s / 1e9 / peak:.1%}", f"{l:.5f}", rss]
           for name, s, l, rss in rows])
    if reference:
        print(f"\nreference seconds / deltatune seconds: {reference['grad_seconds'] / seconds:.2f}x")


def report_memory(args):
    tokens, _, seconds, peak_rss = parse_grad_line(args.memory_deltatune, "memory run")
    loaded = re.search(r"^grad: loaded, peak_rss_mib ([\d.]+)", args.memory_deltatune, re.M)
    print(f"\n## Memory: deltatune grad --recompute-activations, {tokens} tokens\n")
    table(["tokens", "seconds", "peak RSS MiB", "RSS after loading MiB", "weight files MiB (mapped, all read)"],
          [[str(tokens), f"{seconds:.2f}", f"{peak_rss:.0f}", loaded.group(1) if loaded else "-",
            f"{directory_mib(args.model, '.safetensors'):.0f}"]])


def benchmark_runs(path):
    """{benchmark name without its /real_time suffix: run} of a Google Benchmark JSON file."""
    with open(path) as f:
        runs = json.load(f)["benchmarks"]
    return {run["run_name"].removesuffix("/real_time"): run for run in runs if run["run_type"] == "iteration"}


def run_seconds(run):
    return run["real_time"] / {"ns": 1e9, "us": 1e6, "ms": 1e3, "s": 1}[run["time_unit"]]


def report_tokenizer(args):
    print("\n## Tokenizer: Qwen3 tokenizer.json, parity strings repeated (wall time, one thread each)\n")
    if args.tokenizer_skipped:
        print(f"skipped: {args.tokenizer_skipped}")
        return
    runs = benchmark_runs(args.tokenizer_deltatune)
    train = next((name for name in runs if name.startswith("train_bpe/")), None)
    if not all(name in runs for name in ("load", "encode", "decode")) or train is None:
        raise SystemExit(f"{args.tokenizer_deltatune}: expected benchmarks load, encode, decode and train_bpe/N, got {sorted(runs)}")
    text_mib = os.path.getsize(args.tokenizer_text) / 2 ** 20
    reference = parse_pairs(args.tokenizer_reference)
    mib = 2 ** 20
    # (measure, deltatune, reference or None, whether higher is faster)
    measures = [
        ("load (s)", run_seconds(runs["load"]), reference.get("load_seconds"), False),
        (f"encode {text_mib:.2f} MiB (MiB/s)", runs["encode"]["bytes_per_second"] / mib,
         reference["encode_bytes_per_second"] / mib if reference else None, True),
        ("decode (MiB/s)", runs["decode"]["bytes_per_second"] / mib,
         reference["decode_bytes_per_second"] / mib if reference else None, True),
        (f"train BPE vocab {train.split('/')[1]} on the built-in corpus (s)", run_seconds(runs[train]), None, False),
    ]
    rows = []
    for name, ours, theirs, higher_is_faster in measures:
        ratio = "-" if theirs is None else f"{(ours / theirs if higher_is_faster else theirs / ours):.2f}x"
        rows.append([name, f"{ours:.3f}", "-" if theirs is None else f"{theirs:.3f}", ratio])
    table(["measure", "deltatune", "HF tokenizers", "deltatune speed / HF speed"], rows)
    if reference:
        ours, theirs = int(runs["encode"]["tokens"]), int(reference["encode_tokens"])
        print(f"\ntokens of the text: deltatune {ours}, HF tokenizers {theirs}" + ("" if ours == theirs else " (DIFFERENT)"))


def report_train(args):
    print("\n## Training steps (all-linear rank 16, AdamW)\n")
    if args.train_skipped:
        print(f"skipped: {args.train_skipped}")
        return
    with open(args.train_metrics) as f:
        rates = [record["tokens_per_second"] for record in map(json.loads, filter(str.strip, f))
                 if "tokens_per_second" in record]
    if not rates:
        raise SystemExit(f"{args.train_metrics}: no line with tokens_per_second")
    timed = rates[1:] or rates  # the first step pays for allocations, as in reference_bench.py
    rows = [["deltatune train (BF16 weights)", f"{sum(timed) / len(timed):.1f}", str(len(rates))]]
    reference = parse_pairs(args.train_reference)
    if reference:
        rows.append(["PyTorch reference (F32, autograd + torch.optim.AdamW)", f"{reference['train_tokens_per_second']:.1f}",
                     str(args.train_steps)])
    table(["engine", "tokens/s (mean after the first step)", "steps"], rows)
    if reference:
        print(f"\ndeltatune tokens/s / reference tokens/s: {sum(timed) / len(timed) / reference['train_tokens_per_second']:.2f}x")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="the model of the inference, grad and train parts")
    parser.add_argument("--limits", help="bench_machine_limits output (with --model)")
    parser.add_argument("--prompt-tokens", type=int)
    parser.add_argument("--inference-deltatune", help="deltatune generate's speed line")
    parser.add_argument("--inference-reference", default="")
    parser.add_argument("--adapter")
    parser.add_argument("--grad-deltatune", help="deltatune grad's summary line")
    parser.add_argument("--grad-reference", default="")
    parser.add_argument("--memory-deltatune", help="deltatune grad --recompute-activations' lines")
    parser.add_argument("--train-steps", type=int)
    parser.add_argument("--train-metrics", help="deltatune train's metrics.jsonl")
    parser.add_argument("--train-reference", default="")
    parser.add_argument("--train-skipped", default="", help="why the training part did not run")
    parser.add_argument("--tokenizer-text", help="the text file both tokenizers encoded")
    parser.add_argument("--tokenizer-deltatune", help="bench_tokenizer's Google Benchmark JSON")
    parser.add_argument("--tokenizer-reference", default="", help="tokenizer_reference_bench.js output")
    parser.add_argument("--tokenizer-skipped", default="", help="why the tokenizer part did not run")
    args = parser.parse_args()
    if args.model:
        c = text_config(args.model)
        limits = parse_pairs(args.limits)
        layers, head, _ = weight_counts(c)
        print(f"model: {args.model} ({(layers + head) / 1e6:.0f}M matrix parameters, head "
              f"{'tied' if c.get('tie_word_embeddings') else 'untied'})  ")
        print(f"machine: read bandwidth {limits['read_bandwidth_gbs']:.1f} GB/s, fp32 FMA peak {limits['fp32_peak_gflops']:.1f} GFLOP/s")
        if args.inference_deltatune:
            report_inference(args, c, limits)
        if args.grad_deltatune:
            report_grad(args, c, limits)
        if args.memory_deltatune:
            report_memory(args)
        if args.train_metrics or args.train_skipped:
            report_train(args)
    if args.tokenizer_deltatune or args.tokenizer_skipped:
        report_tokenizer(args)


if __name__ == "__main__":
    main()
