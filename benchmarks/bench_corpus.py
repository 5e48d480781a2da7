"""Benchmark: toy-world generation speed and BPE training time.

Targets: generation >= 2 MB of text per second; training a 2048-token BPE on 5 MB of
toy-world text <= 60 s on a 2-core CPU.

    python -m benchmarks.bench_corpus            # 20 MB of text, the BPE on 5 MB, 2M labelled tokens
    python -m benchmarks.bench_corpus --quick    # 1 MB, a 512-token BPE on 200 kB, 50k tokens: a test
"""

import argparse
import sys
import time

from sae.run.command import Parser, run_command
from sae.world.corpus import toy_text, toy_tokens
from sae.tokenizer import Tokenizer


PROG = "python -m benchmarks.bench_corpus"


def main(argv: list[str] | None = None) -> None:
    ap = Parser(prog=PROG, description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, a test that it runs (the targets do not apply)")
    args = ap.parse_args(argv)
    n_chars, bpe_chars, vocab, n_tokens = ((1_000_000, 200_000, 512, 50_000) if args.quick else
                                           (20_000_000, 5_000_000, 2048, 2_000_000))
    t0 = time.perf_counter()
    text = toy_text(n_chars, seed=0)
    dt = time.perf_counter() - t0
    mb = len(text.encode("utf-8")) / 1e6
    print(f"generation: {mb:.1f} MB in {dt:.2f}s = {mb / dt:.1f} MB/s (target >= 2)")

    bpe_text = text[:bpe_chars]
    t0 = time.perf_counter()
    tok = Tokenizer.train(bpe_text, vocab_size=vocab)
    dt = time.perf_counter() - t0
    print(f"BPE training: vocab {vocab} on {len(bpe_text.encode()) / 1e6:.1f} MB in {dt:.1f}s "
          "(target <= 60 for 2048 on 5 MB)")

    t0 = time.perf_counter()
    tokens, _ = toy_tokens(tok, n_tokens, seed=1)
    dt = time.perf_counter() - t0
    print(f"labelled tokenisation: {len(tokens) / dt / 1e6:.2f} M tokens/s; "
          f"{len(bpe_text) / len(tok.encode(bpe_text)):.2f} characters per token")


if __name__ == "__main__":
    sys.exit(run_command(main, PROG))
