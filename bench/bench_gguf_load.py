"""Cold GGUF load: transformers' plain loader vs the bakery's (the file parsed once).

Loads the embedded SmolLM2-135M-Instruct GGUF into a float32 model and its tokenizer, with
no model cache, alternating the two ways (plain, bakery, plain, bakery, ...) so that both
see the same machine load, and checks that every tensor is equal. Prints `name: value unit`
lines and the ratio (above 1: the bakery's load is faster).

    python bench/bench_gguf_load.py [--rounds 2]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=2, help="loads of each kind, alternating (default 2)")
    args = p.parse_args()
    sys.path.insert(0, str(REPO))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from bakery.text.backends.transformers_backend import embedded_model_file, from_pretrained

    path = embedded_model_file()
    torch.set_num_threads(max(1, (os.cpu_count() or 2) // 2))

    def plain():
        tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, local_files_only=True,
                                                     dtype=torch.float32)
        return tokenizer, model

    def bakery():
        return from_pretrained(path.parent, torch.float32, {"gguf_file": path.name})

    print(f"model: {path.name}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}", flush=True)
    with contextlib.redirect_stderr(io.StringIO()):  # transformers' own progress bars
        bakery()  # the first load in a process also pays imports: not timed, for either side
    times: dict[str, list[float]] = {"plain": [], "bakery": []}
    models = {}
    for _ in range(args.rounds):
        for name, load in (("plain", plain), ("bakery", bakery)):
            started = time.monotonic()
            with contextlib.redirect_stderr(io.StringIO()):  # transformers' own progress bars
                models[name] = load()[1]
            times[name].append(time.monotonic() - started)
            print(f"{name}_gguf_load_time: {times[name][-1]:.2f} s", flush=True)
    a, b = models["plain"].state_dict(), models["bakery"].state_dict()
    same = a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    print(f"tensors_identical: {same} ({len(a)} tensors)", flush=True)
    plain_s, bakery_s = statistics.median(times["plain"]), statistics.median(times["bakery"])
    print(f"gguf_load_plain_transformers: {plain_s:.2f} s (median)", flush=True)
    print(f"gguf_load_bakery: {bakery_s:.2f} s (median)", flush=True)
    print(f"ratio_gguf_load_vs_plain_transformers: {plain_s / bakery_s:.2f} x", flush=True)
    if not same:
        sys.exit("tensors differ between the two loads")


if __name__ == "__main__":
    main()
