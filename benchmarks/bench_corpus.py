"""Benchmark: toy-world generation speed and BPE training time.

Targets (issue #2): generation >= 2 MB of text per second; training a 2048-token BPE on 5 MB of
toy-world text <= 60 s on a 2-core CPU. Run: `python benchmarks/bench_corpus.py`.
"""

import time

from sae.corpus import toy_text, toy_tokens
from sae.tokenizer import Tokenizer


def main() -> None:
    t0 = time.perf_counter()
    text = toy_text(20_000_000, seed=0)
    dt = time.perf_counter() - t0
    mb = len(text.encode("utf-8")) / 1e6
    print(f"generation: {mb:.1f} MB in {dt:.2f}s = {mb / dt:.1f} MB/s (target >= 2)")

    five = text[:5_000_000]
    t0 = time.perf_counter()
    tok = Tokenizer.train(five, vocab_size=2048)
    dt = time.perf_counter() - t0
    print(f"BPE training: vocab 2048 on {len(five.encode()) / 1e6:.1f} MB in {dt:.1f}s (target <= 60)")

    t0 = time.perf_counter()
    tokens, _ = toy_tokens(tok, 2_000_000, seed=1)
    dt = time.perf_counter() - t0
    print(f"labelled tokenisation: {len(tokens) / dt / 1e6:.2f} M tokens/s; "
          f"{len(five) / len(tok.encode(five)):.2f} characters per token")


if __name__ == "__main__":
    main()
