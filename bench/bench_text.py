"""Text stage benchmark: batched generation vs one sample per process start, same run.

baseline  the original's way: a fresh Python process per snippet that imports torch and
          transformers, loads the model and samples one snippet (--single processes).
batched   one process that loads the model once and samples --samples snippets in
          batches of --batch (what `bakery text` does).
Both use the embedded SmolLM2-135M-Instruct, the shipped prompt and the same
max_new_tokens, and count the tokens actually generated (a row ends early at
end-of-text), timed from outside the process: start-up and model load included.

Then `bakery text` on a copy of content/ (content/site.toml's 36 IDs) from an empty
build folder: the default bake's text time.

Prints `name: value unit` lines and the ratio batched/baseline (target ≥ 5×).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def worker(samples: int, batch: int, tokens: int, first_seed: int) -> None:
    """Runs inside a child process: load, generate, print one JSON line."""
    import dataclasses

    from bakery.config import load_config
    from bakery.text.backends import Request
    from bakery.text.backends.transformers_backend import TransformersBackend

    stage = load_config(REPO / "content/site.toml").text.all_stages["generate"]
    stage = dataclasses.replace(stage, batch_size=batch, max_new_tokens=tokens)
    started = time.monotonic()
    backend = TransformersBackend(stage.model, stage.device)
    loaded = time.monotonic()
    prompt = stage.prompt.read_text(encoding="utf-8")
    backend.generate([Request(prompt, first_seed + n) for n in range(samples)], stage)
    done = time.monotonic()
    print(json.dumps({"tokens": backend.tokens_generated, "load_s": loaded - started, "gen_s": done - loaded}))


def run_worker(samples: int, batch: int, tokens: int, first_seed: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    started = time.monotonic()
    out = subprocess.run([sys.executable, __file__, "--worker", str(samples), str(batch), str(tokens), str(first_seed)],
                         env=env, capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["wall_s"] = time.monotonic() - started
    return result


def bake_text_time() -> tuple[float, int]:
    """`bakery text` with the shipped config, from nothing, in a scratch copy of the project."""
    with tempfile.TemporaryDirectory(prefix="bench-text-") as tmp:
        root = Path(tmp)
        shutil.copytree(REPO / "content", root / "content")
        for name in ("templates", "static"):
            (root / name).symlink_to(REPO / name)
        env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
        started = time.monotonic()
        subprocess.run([sys.executable, "-m", "bakery", "-q", "-c", str(root / "content/site.toml"), "text"],
                       env=env, check=True)
        elapsed = time.monotonic() - started
        return elapsed, len(list((root / "build/text").glob("snippet-*.txt")))


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(*map(int, sys.argv[2:6]))
        return
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--single", type=int, default=3, help="baseline processes, one sample each (default 3)")
    p.add_argument("--samples", type=int, default=36, help="batched samples in one process (default 36)")
    p.add_argument("--batch", type=int, default=12, help="batch size of the batched run (default 12)")
    p.add_argument("--tokens", type=int, default=None, help="max_new_tokens (default: the shipped config's)")
    p.add_argument("--skip-bake", action="store_true", help="skip timing `bakery text` on content/site.toml")
    args = p.parse_args()
    if args.tokens is None:
        sys.path.insert(0, str(REPO))
        from bakery.config import load_config

        args.tokens = load_config(REPO / "content/site.toml").text.all_stages["generate"].max_new_tokens
    print(f"model: embedded SmolLM2-135M-Instruct, max_new_tokens {args.tokens}, {os.cpu_count()} CPUs", flush=True)

    singles = [run_worker(1, 1, args.tokens, first_seed=n) for n in range(args.single)]
    s_tokens, s_wall = sum(r["tokens"] for r in singles), sum(r["wall_s"] for r in singles)
    s_gen = sum(r["gen_s"] for r in singles)
    print(f"baseline_tokens: {s_tokens} tokens in {args.single} processes", flush=True)
    print(f"baseline_time_per_snippet: {s_wall / args.single:.1f} s", flush=True)
    print(f"baseline_throughput: {s_tokens / s_wall:.2f} tokens/s", flush=True)
    print(f"baseline_generation_only: {s_tokens / s_gen:.2f} tokens/s", flush=True)

    batched = run_worker(args.samples, args.batch, args.tokens, first_seed=0)
    print(f"batched_tokens: {batched['tokens']} tokens in 1 process (batch {args.batch})", flush=True)
    print(f"batched_time_per_snippet: {batched['wall_s'] / args.samples:.2f} s", flush=True)
    print(f"batched_throughput: {batched['tokens'] / batched['wall_s']:.2f} tokens/s", flush=True)
    print(f"batched_generation_only: {batched['tokens'] / batched['gen_s']:.2f} tokens/s", flush=True)
    ratio = (batched["tokens"] / batched["wall_s"]) / (s_tokens / s_wall)
    print(f"speedup_vs_process_per_sample: {ratio:.1f} x (target >= 5 x)", flush=True)
    print(f"speedup_generation_only: {(batched['tokens'] / batched['gen_s']) / (s_tokens / s_gen):.1f} x", flush=True)

    if not args.skip_bake:
        elapsed, count = bake_text_time()
        print(f"default_bake_text_time: {elapsed:.1f} s for {count} snippets", flush=True)


if __name__ == "__main__":
    main()
