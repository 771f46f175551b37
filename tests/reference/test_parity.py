#!/usr/bin/python3
"""Parity of the deltatune forward pass and greedy generation against the PyTorch float64 reference.

Creates asymmetric random models with `deltatune init-model` (nk != nv, dk != dv, nq != nkv, tied and
untied heads, both checkpoint prefixes, a sharded checkpoint, randomised norms, BF16/F16/F32 storage),
then for each checks:
  - `deltatune logits` (chunked, and --recurrent for some lengths) against the reference at
    T = 1, 63, 64, 65, 130, and fed in cached pieces (70, 65, then five single-token decode steps):
    relative L2 error <= 1e-4, any non-finite value fails;
  - `deltatune generate --temperature 0 --ignore-eos --print-ids` 32 tokens against the reference's
    cached greedy loop.
Then LoRA adapters from `deltatune init-adapter --init random` (non-zero B) on those models, applied
unmerged with `--adapter` (logits chunked and recurrent, cached pieces, greedy) against the reference
with the adapter read from the same directory: all twelve kinds on the GVA model, an rsLoRA adapter
stored as BF16, and one whose adapter_config.json gains rank_pattern / alpha_pattern (its factors cut
to the pattern ranks, its keys renamed into the other namespace).
Prints one line per check and "N passed, M failed"; exits non-zero on any failure.

Usage: test_parity.py --bin build/deltatune --tmp build/test-tmp/reference
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import time

# Passive OpenMP waiting (read when torch loads libgomp): spinning workers make tiny models on a busy
# shared machine many times slower, in torch and in deltatune alike.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import qwen35_reference as ref  # noqa: E402

RELATIVE_TOLERANCE = 1e-4
GREEDY_TOKENS = 32
LENGTHS = (1, 63, 64, 65, 130)
RECURRENT_LENGTHS = (65, 130)
# Cached continuation: chunked prefill after a cache (conv, recurrent and KV state carried over),
# then single-token decode steps, against one full reference pass.
PIECES = (70, 65, 1, 1, 1, 1, 1)

# name -> init-model arguments
MODELS = {
    "gva-untied-bf16": ["--dtype", "bf16", "--randomize-norms", "--seed", "11",
                        "--set", "linear_num_key_heads=2", "--set", "linear_num_value_heads=6"],
    "tied-textonly-sharded-f32": ["--dtype", "f32", "--randomize-norms", "--seed", "12", "--text-only", "--shards", "3",
                                  "--set", "tie_word_embeddings=true", "--set", "num_attention_heads=6",
                                  "--set", "num_key_value_heads=2", "--set", "linear_key_head_dim=8",
                                  "--set", "full_attention_interval=2"],
    "hf-init-f16": ["--dtype", "f16", "--seed", "13", "--set", "linear_num_key_heads=1",
                    "--set", "linear_num_value_heads=3", "--set", "num_hidden_layers=5"],
}

# name -> (stack prefix, head tied, sharded): checked so a silently ignored flag cannot pass.
EXPECTED_LAYOUT = {
    "gva-untied-bf16": ("model.language_model.", False, False),
    "tied-textonly-sharded-f32": ("model.", True, True),
    "hf-init-f16": ("model.language_model.", False, False),
}




def use_patterns_and_other_namespace(adapter_dir):
    """Adds rank_pattern / alpha_pattern to adapter_config.json, cuts each module's factors to its
    pattern rank, and renames the keys from base_model.model.model.language_model.layers.N. to
    base_model.model.model.layers.N."""
    config_path = os.path.join(adapter_dir, "adapter_config.json")
    with open(config_path) as f:
        config = json.load(f)
    config["rank_pattern"] = {"q_proj": 2, r"layers\.0\.linear_attn\.in_proj_z": 3, "down_proj": 5}
    config["alpha_pattern"] = {r"layers\.[12]\.mlp\.down_proj": 3.0, "in_proj_a": 24.0}
    with open(config_path, "w") as f:
        json.dump(config, f, indent=2)
    weights_path = os.path.join(adapter_dir, "adapter_model.safetensors")
    tensors, _ = ref.read_safetensors(weights_path)
    renamed = {}
    for key, tensor in tensors.items():
        key = key.replace("base_model.model.model.language_model.layers.", "base_model.model.model.layers.")
        module = key[len("base_model.model."):].rsplit(".lora_", 1)[0]
        rank = ref.pattern_value(config["rank_pattern"], module, config["r"])
        renamed[key] = tensor[:rank] if ".lora_A." in key else tensor[:, :rank]
    ref.write_safetensors(weights_path, renamed)


# name -> (model, init-adapter arguments, edit of the written adapter or None)
ADAPTERS = {
    "all-kinds": ("gva-untied-bf16", ["--rank", "4", "--alpha", "8", "--seed", "21"], None),
    "rslora-bf16": ("tied-textonly-sharded-f32", ["--rank", "8", "--alpha", "4", "--rslora", "--seed", "22", "--dtype", "bf16",
                                                  "--targets", "q_proj,v_proj,in_proj_qkv,in_proj_b,out_proj,down_proj"], None),
    "rank-alpha-pattern": ("hf-init-f16", ["--rank", "6", "--alpha", "12", "--seed", "23"], use_patterns_and_other_namespace),
}
ADAPTER_LENGTHS = (65,)


class Results:
    def __init__(self):
        self.passed = 0
        self.failed = 0

    def record(self, name, ok, detail):
        if ok:
            self.passed += 1
        else:
            self.failed += 1
        print(f"{'PASS' if ok else 'FAIL'} {name}: {detail}", flush=True)


def run(command):
    completed = subprocess.run(command, capture_output=True, text=True)
    if completed.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {completed.returncode}: {completed.stderr.strip()[-2000:]}")
    return completed.stdout


def relative_error(actual, expected):
    """NaN-aware: any non-finite value in either tensor is an infinite error."""
    if actual.shape != expected.shape:
        return float("inf"), f"shape {list(actual.shape)} != reference {list(expected.shape)}"
    if not bool(torch.isfinite(actual).all()) or not bool(torch.isfinite(expected).all()):
        return float("inf"), "non-finite values"
    error = float((actual - expected).norm() / expected.norm().clamp_min(1e-300))
    return error, f"relative L2 {error:.2e}"


def check_logits(results, binary, tmp, name, model_dir, cfg, weights, generator, lengths=LENGTHS, extra=()):
    for length in lengths:
        tokens = torch.randint(0, cfg["vocab_size"], (length,), generator=generator).tolist()
        with torch.no_grad():
            expected = ref.forward(cfg, weights, tokens)
        for recurrent in (False, True):
            if recurrent and length not in RECURRENT_LENGTHS:
                continue
            label = f"{name} logits T={length}{' recurrent' if recurrent else ''}"
            out = os.path.join(tmp, f"{name}-{length}-{int(recurrent)}.safetensors")
            try:
                run([binary, "logits", "--model", model_dir, "--tokens", ",".join(map(str, tokens)), "--out", out]
                    + (["--recurrent"] if recurrent else []) + list(extra))
                tensors, _ = ref.read_safetensors(out)
                error, detail = relative_error(tensors["logits"].to(torch.float64), expected)
                results.record(label, error <= RELATIVE_TOLERANCE, detail)
            except Exception as exc:  # one broken case must not hide the others
                results.record(label, False, str(exc))


def check_pieces(results, binary, tmp, name, model_dir, cfg, weights, generator, extra=()):
    label = f"{name} logits pieces {','.join(map(str, PIECES))}"
    tokens = torch.randint(0, cfg["vocab_size"], (sum(PIECES),), generator=generator).tolist()
    out = os.path.join(tmp, f"{name}-pieces.safetensors")
    try:
        with torch.no_grad():
            expected = ref.forward(cfg, weights, tokens)
        run([binary, "logits", "--model", model_dir, "--tokens", ",".join(map(str, tokens)), "--out", out,
             "--pieces", ",".join(map(str, PIECES))] + list(extra))
        tensors, _ = ref.read_safetensors(out)
        error, detail = relative_error(tensors["logits"].to(torch.float64), expected)
        results.record(label, error <= RELATIVE_TOLERANCE, detail)
    except Exception as exc:
        results.record(label, False, str(exc))


def check_greedy(results, binary, name, model_dir, cfg, weights, generator, extra=()):
    label = f"{name} greedy {GREEDY_TOKENS} tokens"
    prompt = torch.randint(0, cfg["vocab_size"], (20,), generator=generator).tolist()
    try:
        expected = ref.greedy_continuation(cfg, weights, prompt, GREEDY_TOKENS)
        output = run([binary, "generate", "--model", model_dir, "--tokens", ",".join(map(str, prompt)),
                      "--temperature", "0", "--max-tokens", str(GREEDY_TOKENS), "--ignore-eos", "--print-ids"]
                     + list(extra))
        actual = [int(t) for t in output.strip().split(",") if t]
        if actual == expected:
            results.record(label, True, "identical")
            return
        step = next((i for i, (a, b) in enumerate(zip(actual, expected)) if a != b), min(len(actual), len(expected)))
        results.record(label, False, f"diverges at step {step}: deltatune {actual} vs reference {expected}")
    except Exception as exc:
        results.record(label, False, str(exc))


def driver_arguments(argv, description):
    """--bin and --tmp of a parity driver; the scratch directory is recreated empty."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bin", required=True, help="the deltatune executable")
    parser.add_argument("--tmp", required=True, help="scratch directory (recreated)")
    args = parser.parse_args(argv)
    shutil.rmtree(args.tmp, ignore_errors=True)
    os.makedirs(args.tmp)
    return args


def main(argv):
    args = driver_arguments(argv, __doc__)
    start = time.time()
    results = Results()
    models = {}  # name -> (directory, reference config, reference weights)

    try:
        results.record("reference delta rule chunked == recurrent (float64)", True, f"max abs {ref.self_check():.1e}")
        results.record("reference model recurrent/cached/gradients == chunked (float64)", True, f"relative {ref.self_check_model():.1e}")
    except AssertionError as exc:
        results.record("reference self-check", False, str(exc))

    for index, (name, init_args) in enumerate(MODELS.items()):
        model_dir = os.path.join(args.tmp, name)
        try:
            run([args.bin, "init-model", "--preset", "tiny", "--out", model_dir] + init_args)
            cfg, weights = ref.load_model(model_dir)
            layout = (cfg["checkpoint_prefix"], weights["lm_head.weight"] is weights["embed_tokens.weight"],
                      os.path.exists(os.path.join(model_dir, "model.safetensors.index.json")))
            results.record(f"{name} checkpoint layout", layout == EXPECTED_LAYOUT[name],
                           f"prefix {layout[0]}, tied {layout[1]}, sharded {layout[2]}")
        except Exception as exc:
            results.record(f"{name} init-model + reference load", False, str(exc))
            continue
        generator = torch.Generator().manual_seed(100 + index)
        check_logits(results, args.bin, args.tmp, name, model_dir, cfg, weights, generator)
        check_pieces(results, args.bin, args.tmp, name, model_dir, cfg, weights, generator)
        check_greedy(results, args.bin, name, model_dir, cfg, weights, generator)
        models[name] = (model_dir, cfg, weights)

    for index, (name, (model_name, init_args, edit)) in enumerate(ADAPTERS.items()):
        if model_name not in models:
            continue
        model_dir, cfg, weights = models[model_name]
        adapter_dir = os.path.join(args.tmp, f"adapter-{name}")
        label = f"{model_name} + adapter {name}"
        try:
            run([args.bin, "init-adapter", "--model", model_dir, "--out", adapter_dir, "--init", "random"] + init_args)
            if edit:
                edit(adapter_dir)
            adapted = ref.with_adapter(weights, adapter_dir)
            generator = torch.Generator().manual_seed(200 + index)
            # The adapter must move the logits well beyond the tolerance, or ignoring it would pass.
            probe = torch.randint(0, cfg["vocab_size"], (16,), generator=generator).tolist()
            with torch.no_grad():
                effect, detail = relative_error(ref.forward(cfg, adapted, probe), ref.forward(cfg, weights, probe))
            results.record(f"{label} changes the reference logits", effect > 100 * RELATIVE_TOLERANCE, detail)
        except Exception as exc:
            results.record(f"{label} init-adapter + reference load", False, str(exc))
            continue
        extra = ["--adapter", adapter_dir]
        check_logits(results, args.bin, args.tmp, label, model_dir, cfg, adapted, generator, ADAPTER_LENGTHS, extra)
        check_pieces(results, args.bin, args.tmp, label, model_dir, cfg, adapted, generator, extra)
        check_greedy(results, args.bin, label, model_dir, cfg, adapted, generator, extra)

    print(f"{results.passed} passed, {results.failed} failed ({time.time() - start:.1f} s)")
    return 1 if results.failed or results.passed == 0 else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
