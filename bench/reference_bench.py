#!/usr/bin/python3
"""Times the PyTorch reference in its float32 fast mode (chunked delta rule for the prefill, KV and
recurrent caches for decode) on the benchmark model. Prints "prefill_tok_s X" and "decode_tok_s Y".

Usage: reference_bench.py --model DIR --prompt-tokens 512 --decode-tokens 64
"""
import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "reference"))
import qwen35_reference as ref  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--prompt-tokens", type=int, default=512)
    parser.add_argument("--decode-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cfg, weights = ref.load_model(args.model, dtype=torch.float32)
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


if __name__ == "__main__":
    main()
