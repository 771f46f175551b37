#!/usr/bin/python3
"""Parity of `deltatune grad` (causal-LM loss and LoRA gradients) against PyTorch float64 autograd.

First checks the reference itself: chunked and recurrent delta rule give the same LoRA gradients, and
autograd agrees with central finite differences on a few entries (qwen35_reference.self_check_lora_gradients).

Then creates asymmetric random models with `deltatune init-model` (nk != nv, dk != dv, nq != nkv,
randomised norms; one untied BF16 model with the multimodal prefix, one tied F32 text-only model)
and LoRA adapters with `deltatune init-adapter --init random` (non-zero B): all twelve kinds, an
rsLoRA adapter stored as BF16, and one with rank_pattern / alpha_pattern whose keys are in the other
namespace. One JSONL data file of three lines whose lengths cross the delta rule's chunk of 64
(70, 130, 20 tokens): masked prompts (-100 labels on a prefix), a line without labels, a masked
position in the middle. For each case `deltatune grad --model M --adapter A --data D --out G` must
give the loss to 1e-5 relative and every gradient tensor, each on its own, to 1e-3 relative L2 (the
reference's gradients must be non-zero, the key sets equal). The all-kinds adapter also runs with
--recurrent and with --recompute-activations.

Prints one line per check and "N passed, M failed"; exits non-zero on any failure.

Usage: test_grad_parity.py --bin build/deltatune --tmp build/test-tmp/grad-reference
"""
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_parity as parity  # noqa: E402  (sets the passive OpenMP wait policy before torch loads)
import qwen35_reference as ref  # noqa: E402
import torch  # noqa: E402

LOSS_TOLERANCE = 1e-5
GRADIENT_TOLERANCE = 1e-3
IGNORE = ref.IGNORE_INDEX

# name -> init-model arguments (the tiny preset has nk 2, dk 16, dv 24, nq 4, nkv 2)
MODELS = {
    "gva-untied-bf16": ["--dtype", "bf16", "--randomize-norms", "--seed", "31", "--set", "linear_num_value_heads=6"],
    "tied-textonly-f32": ["--dtype", "f32", "--randomize-norms", "--seed", "32", "--text-only",
                          "--set", "tie_word_embeddings=true", "--set", "num_attention_heads=6",
                          "--set", "num_key_value_heads=2", "--set", "linear_num_key_heads=1",
                          "--set", "linear_num_value_heads=3", "--set", "full_attention_interval=2"],
}

# name -> (model, init-adapter arguments, edit of the written adapter or None)
ADAPTERS = {
    "all-kinds": ("gva-untied-bf16", ["--rank", "4", "--alpha", "8", "--seed", "41"], None),
    "rslora-bf16": ("tied-textonly-f32", ["--rank", "8", "--alpha", "4", "--rslora", "--seed", "42", "--dtype", "bf16",
                                          "--targets", "q_proj,v_proj,o_proj,in_proj_qkv,in_proj_b,out_proj,up_proj"], None),
    "rank-alpha-pattern": ("gva-untied-bf16", ["--rank", "6", "--alpha", "12", "--seed", "43"],
                           parity.use_patterns_and_other_namespace),
}

# (adapter, extra `deltatune grad` flags)
CASES = (
    ("all-kinds", []),
    ("all-kinds", ["--recurrent"]),
    ("all-kinds", ["--recompute-activations"]),
    ("rslora-bf16", []),
    ("rank-alpha-pattern", []),
)


def write_data(path, vocab_size):
    """Three lines of 70, 130 and 20 tokens: a masked 15-token prompt; no labels; a masked 4-token
    prompt and a masked position in the middle."""
    generator = torch.Generator().manual_seed(7)
    lines = [torch.randint(0, vocab_size, (length,), generator=generator).tolist() for length in (70, 130, 20)]
    records = [{"input_ids": lines[0], "labels": [IGNORE] * 15 + lines[0][15:]},
               {"input_ids": lines[1]},
               {"input_ids": lines[2], "labels": [IGNORE] * 4 + lines[2][4:11] + [IGNORE] + lines[2][12:]}]
    with open(path, "w") as f:
        for record in records:
            f.write(json.dumps(record) + "\n")


def reference_gradients(cfg, weights, adapter_dir, data_path):
    """(loss, {adapter file key: float64 gradient}) from the float64 reference."""
    keys = ref.adapter_factor_keys(adapter_dir)
    adapted = ref.with_adapter(weights, adapter_dir)
    loss, gradients = ref.lora_loss_and_gradients(cfg, adapted, ref.read_examples(data_path), sorted(keys))
    return loss, {keys[name]: gradient for name, gradient in gradients.items()}


def check_case(results, binary, tmp, label, model_dir, adapter_dir, data_path, flags, expected_loss, expected):
    out = os.path.join(tmp, label.replace(" ", "_") + ".safetensors")
    try:
        parity.run([binary, "grad", "--model", model_dir, "--adapter", adapter_dir, "--data", data_path, "--out", out]
                   + flags)
        actual, _ = ref.read_safetensors(out)
    except Exception as exc:  # one broken case must not hide the others
        results.record(f"{label} deltatune grad", False, str(exc))
        return
    loss = actual.pop("loss", None)
    if loss is None or loss.numel() != 1:
        results.record(f"{label} loss", False, "no one-element tensor 'loss' in the output")
    else:
        error = abs(float(loss) - expected_loss) / abs(expected_loss)
        results.record(f"{label} loss", error <= LOSS_TOLERANCE,
                       f"deltatune {float(loss):.8f}, reference {expected_loss:.8f}, relative {error:.2e}")
    missing, unexpected = sorted(set(expected) - set(actual)), sorted(set(actual) - set(expected))
    if missing or unexpected:
        results.record(f"{label} gradient keys", False, f"missing {missing[:4]}, unexpected {unexpected[:4]}")
    for key in sorted(set(expected) & set(actual)):
        if float(expected[key].norm()) == 0.0:
            results.record(f"{label} {key}", False, "the reference gradient is zero: the case cannot tell")
            continue
        error, detail = parity.relative_error(actual[key].to(torch.float64), expected[key])
        results.record(f"{label} {key}", error <= GRADIENT_TOLERANCE, detail)


def main(argv):
    args = parity.driver_arguments(argv, __doc__)
    start = time.time()
    results = parity.Results()

    try:
        forms, finite = ref.self_check_lora_gradients()
        results.record("reference LoRA gradients chunked == recurrent, autograd == finite differences (float64)", True,
                       f"relative L2 {forms:.1e}, finite differences {finite:.1e}")
    except AssertionError as exc:
        results.record("reference LoRA gradient self-check", False, str(exc))

    models = {}  # name -> (directory, reference config, reference weights)
    for name, init_args in MODELS.items():
        model_dir = os.path.join(args.tmp, name)
        try:
            parity.run([args.bin, "init-model", "--preset", "tiny", "--out", model_dir] + init_args)
            models[name] = (model_dir,) + ref.load_model(model_dir)
        except Exception as exc:
            results.record(f"{name} init-model + reference load", False, str(exc))
    vocab_size = min(cfg["vocab_size"] for _, cfg, _ in models.values()) if models else 0
    data_path = os.path.join(args.tmp, "data.jsonl")
    write_data(data_path, vocab_size)

    references = {}  # adapter -> (model directory, adapter directory, loss, gradients)
    for name, (model_name, init_args, edit) in ADAPTERS.items():
        if model_name not in models:
            continue
        model_dir, cfg, weights = models[model_name]
        adapter_dir = os.path.join(args.tmp, f"adapter-{name}")
        try:
            parity.run([args.bin, "init-adapter", "--model", model_dir, "--out", adapter_dir, "--init", "random"]
                       + init_args)
            if edit:
                edit(adapter_dir)
            references[name] = (model_dir, adapter_dir) + reference_gradients(cfg, weights, adapter_dir, data_path)
        except Exception as exc:
            results.record(f"{model_name} + adapter {name} init-adapter + reference", False, str(exc))

    for adapter_name, flags in CASES:
        if adapter_name in references:
            model_dir, adapter_dir, loss, gradients = references[adapter_name]
            label = " ".join([adapter_name] + flags)
            check_case(results, args.bin, args.tmp, label, model_dir, adapter_dir, data_path, flags, loss, gradients)

    print(f"{results.passed} passed, {results.failed} failed ({time.time() - start:.1f} s)")
    return 1 if results.failed or results.passed == 0 else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
