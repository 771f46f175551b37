#!/usr/bin/python3
"""Times the PyTorch reference (tests/reference/qwen35_reference.py) in its float32 fast mode on the
benchmark model, with the chunked delta rule and `threads` intra-op threads.

  reference_bench.py inference --model DIR --prompt-tokens 512 --decode-tokens 64
      prefill (chunked) then cached decode; prints "prefill_tok_s X" and "decode_tok_s Y"
  reference_bench.py grad --model DIR --adapter DIR --data FILE.jsonl
      one forward + backward of the causal-LM loss of the file (one batch) to every LoRA factor by
      autograd, the frozen weights needing no gradient; prints "grad_seconds S" and "grad_loss L"
  reference_bench.py train --model DIR --adapter DIR --data FILE.jsonl --steps 3
      training steps, one line of the file each: forward + backward + gradient clipping to norm 1 +
      AdamW (lr 2e-4, no weight decay) on the LoRA factors; prints "train_tokens_per_second X", the
      mean over the steps after the first (the first pays for allocations)
"""
import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "reference"))
import qwen35_reference as ref  # noqa: E402

DTYPE = torch.float32


def bench_inference(args):
    cfg, weights = ref.load_model(args.model, dtype=DTYPE)
    prompt = torch.randint(0, cfg["vocab_size"], (args.prompt_tokens,), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        cache = ref.new_cache(cfg)
        start = time.perf_counter()
        logits = ref.forward(cfg, weights, prompt, cache, all_logits=False)
        prefill = time.perf_counter() - start
        start = time.perf_counter()
        for _ in range(args.decode_tokens):
            token = int(torch.argmax(logits[-1]))
            logits = ref.forward(cfg, weights, [token], cache, recurrent=True)
        decode = time.perf_counter() - start
    print(f"prefill_tok_s {args.prompt_tokens / prefill:.3f}")
    print(f"decode_tok_s {args.decode_tokens / decode:.3f}")


def load_adapted(args):
    cfg, weights = ref.load_model(args.model, dtype=DTYPE)
    adapted = ref.with_adapter(weights, args.adapter, dtype=DTYPE)
    factor_names = sorted(ref.adapter_factor_keys(args.adapter))
    return cfg, adapted, factor_names, ref.read_examples(args.data)


def bench_grad(args):
    cfg, adapted, factor_names, examples = load_adapted(args)
    start = time.perf_counter()
    loss, _ = ref.lora_loss_and_gradients(cfg, adapted, examples, factor_names)
    print(f"grad_seconds {time.perf_counter() - start:.3f}")
    print(f"grad_loss {loss:.6f}")


def bench_train(args):
    cfg, adapted, factor_names, examples = load_adapted(args)
    factors = [adapted[name].detach().clone().requires_grad_(True) for name in factor_names]
    adapted.update(zip(factor_names, factors))
    optimizer = torch.optim.AdamW(factors, lr=2e-4, weight_decay=0.0)
    rates = []
    for step in range(args.steps):
        example = examples[step % len(examples)]
        start = time.perf_counter()
        total, count = ref.loss_sum(cfg, adapted, [example])
        optimizer.zero_grad()
        (total / count).backward()
        torch.nn.utils.clip_grad_norm_(factors, 1.0)
        optimizer.step()
        rates.append(len(example[0]) / (time.perf_counter() - start))
    timed = rates[1:] or rates
    print(f"train_tokens_per_second {sum(timed) / len(timed):.3f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    sub = parser.add_subparsers(dest="command", required=True)
    inference = sub.add_parser("inference")
    inference.add_argument("--model", required=True)
    inference.add_argument("--prompt-tokens", type=int, default=512)
    inference.add_argument("--decode-tokens", type=int, default=64)
    for name in ("grad", "train"):
        part = sub.add_parser(name)
        part.add_argument("--model", required=True)
        part.add_argument("--adapter", required=True)
        part.add_argument("--data", required=True)
        if name == "train":
            part.add_argument("--steps", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    {"inference": bench_inference, "grad": bench_grad, "train": bench_train}[args.command](args)


if __name__ == "__main__":
    main()
