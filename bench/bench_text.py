"""Text stage benchmark: the bakery's sampler against llama.cpp on the same GGUF, same run.

bakery     one process (the project's Python) that loads the embedded SmolLM2-135M-Instruct
           GGUF through the model cache and samples --samples snippets in batches of
           --batch, twice: once with an empty cache folder (cold: transformers converts
           the GGUF and the cache is written) and once with that cache (warm).
llama.cpp  one process running llama-cpp-python on the same GGUF file: the same prompt
           (the shipped prompt through the model's chat template, as `bakery text` sends
           it), the same sampling (temperature, top_k, top_p, repetition penalty from
           content/site.toml), one stream, one snippet after another (no batching), a
           seed per snippet.
Both generate --tokens new tokens at most per snippet and count the tokens actually
generated (a snippet may end early at end-of-text); both use --threads CPU threads.
Printed for each: load time, tokens/s and s/snippet end to end (timed from outside the
process: start-up, imports and load included) and generation only, then the ratios
bakery/llama.cpp (above 1: the bakery is faster). Then, unless --skip-bake, `bakery text`
on a scratch copy of content/ (36 IDs) from an empty build folder, cache warm.

llama.cpp is optional. The bench imports llama_cpp when this Python has it, else runs the
llama.cpp side with the interpreter named by BAKERY_LLAMA_PYTHON; with neither it prints
one `llama_cpp: skipped (...)` line. Build it in a throwaway venv (about 10 minutes on 2
cores; never into the project's venv):

    python3.11 -m venv /tmp/llama-venv
    CMAKE_ARGS=-DGGML_NATIVE=ON /tmp/llama-venv/bin/pip install llama-cpp-python
    BAKERY_LLAMA_PYTHON=/tmp/llama-venv/bin/python python bench/bench_text.py

--process-per-sample adds the older baseline: a fresh process per snippet (the original's
way), against one batched process.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LLAMA_PYTHON_ENV = "BAKERY_LLAMA_PYTHON"


def bakery_worker(samples: int, batch: int, tokens: int, first_seed: int, threads: int, cache: str) -> None:
    """Runs inside a child process: load, generate, print one JSON line."""
    import dataclasses

    from bakery.config import load_config
    from bakery.text.backends import Request
    from bakery.text.backends.transformers_backend import TransformersBackend

    stage = load_config(REPO / "content/site.toml").text.all_stages["generate"]
    stage = dataclasses.replace(stage, batch_size=batch, max_new_tokens=tokens)
    started = time.monotonic()
    backend = TransformersBackend(stage.model, stage.device, cache_dir=Path(cache) if cache else None,
                                  threads=threads)
    loaded = time.monotonic()
    prompt = stage.prompt.read_text(encoding="utf-8")
    texts = backend.generate([Request(prompt, first_seed + n) for n in range(samples)], stage)
    done = time.monotonic()
    print(json.dumps({"tokens": backend.tokens_generated, "load_s": loaded - started, "gen_s": done - loaded,
                      "chars": sum(len(t) for t in texts)}))


def llama_worker(model: str, prompt_file: str, samples: int, tokens: int, threads: int, sampling: str) -> None:
    """Runs inside a child process with llama_cpp: load, generate one snippet at a time."""
    from llama_cpp import Llama

    params = json.loads(sampling)
    prompt = Path(prompt_file).read_text(encoding="utf-8")
    started = time.monotonic()
    llm = Llama(model_path=model, n_ctx=1024, n_threads=threads, n_threads_batch=threads, verbose=False)
    loaded = time.monotonic()
    count, chars = 0, 0
    for n in range(samples):
        out = llm.create_completion(prompt, max_tokens=tokens, temperature=params["temperature"],
                                    top_k=params["top_k"], top_p=params["top_p"],
                                    repeat_penalty=params["repetition_penalty"], seed=n)
        count += out["usage"]["completion_tokens"]
        chars += len(out["choices"][0]["text"])
    done = time.monotonic()
    print(json.dumps({"tokens": count, "load_s": loaded - started, "gen_s": done - loaded, "chars": chars}))


def timed_child(argv: list[str], env: dict | None = None) -> dict:
    started = time.monotonic()
    out = subprocess.run(argv, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"bench_text: {' '.join(argv[:3])} failed:\n{out.stderr[-2000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["wall_s"] = time.monotonic() - started
    return result


def bakery_env() -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def run_bakery(samples: int, batch: int, tokens: int, threads: int, cache: str, first_seed: int = 0) -> dict:
    return timed_child([sys.executable, __file__, "--bakery-worker", str(samples), str(batch), str(tokens),
                        str(first_seed), str(threads), cache], bakery_env())


def llama_python() -> tuple[str | None, str]:
    """The interpreter that can import llama_cpp, and why not when none can."""
    if importlib.util.find_spec("llama_cpp") is not None:
        return sys.executable, ""
    named = os.environ.get(LLAMA_PYTHON_ENV)
    if not named:
        return None, f"llama_cpp is not importable here and {LLAMA_PYTHON_ENV} is not set"
    check = subprocess.run([named, "-c", "import llama_cpp"], capture_output=True, text=True)
    if check.returncode != 0:
        return None, f"{LLAMA_PYTHON_ENV}={named} cannot import llama_cpp"
    return named, ""


def rendered_prompt(scratch: Path) -> tuple[Path, Path, dict]:
    """The GGUF file, the exact text `bakery text` feeds the model, and the sampling settings."""
    script = (
        "import json,sys\n"
        "from bakery.config import load_config\n"
        "from bakery.text.backends.transformers_backend import embedded_model_file\n"
        "from transformers import AutoTokenizer\n"
        f"stage = load_config({str(REPO / 'content/site.toml')!r}).text.all_stages['generate']\n"
        "path = embedded_model_file()\n"
        "tok = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name, local_files_only=True)\n"
        "text = stage.prompt.read_text(encoding='utf-8')\n"
        "if stage.chat:\n"
        "    text = tok.apply_chat_template([{'role': 'user', 'content': text}], tokenize=False,"
        " add_generation_prompt=True)\n"
        "print(json.dumps({'model': str(path), 'prompt': text + stage.prefix, 'sampling': stage.sampling()}))\n")
    out = subprocess.run([sys.executable, "-c", script], env=bakery_env(), capture_output=True, text=True,
                         check=True)
    info = json.loads(out.stdout.strip().splitlines()[-1])
    prompt_file = scratch / "prompt.txt"
    prompt_file.write_text(info["prompt"], encoding="utf-8")
    return Path(info["model"]), prompt_file, info["sampling"]


def report(name: str, r: dict, samples: int) -> None:
    print(f"{name}_load_time: {r['load_s']:.2f} s", flush=True)
    print(f"{name}_tokens: {r['tokens']} tokens for {samples} snippets", flush=True)
    print(f"{name}_throughput: {r['tokens'] / r['wall_s']:.1f} tokens/s", flush=True)
    print(f"{name}_time_per_snippet: {r['wall_s'] / samples:.2f} s", flush=True)
    print(f"{name}_generation_only: {r['tokens'] / r['gen_s']:.1f} tokens/s", flush=True)
    print(f"{name}_generation_per_snippet: {r['gen_s'] / samples:.2f} s", flush=True)
    print(f"{name}_end_to_end: {r['wall_s']:.1f} s", flush=True)


def bake_text_time(cache: str, threads: int) -> tuple[float, int]:
    """`bakery text` with the shipped config, from nothing, in a scratch copy of the project."""
    with tempfile.TemporaryDirectory(prefix="bench-text-") as tmp:
        root = Path(tmp)
        shutil.copytree(REPO / "content", root / "content")
        for name in ("templates", "static"):
            (root / name).symlink_to(REPO / name)
        config = root / "content/site.toml"
        extra = f"model_cache = {json.dumps(cache)}\n" + (f"threads = {threads}\n" if threads else "")
        config.write_text(config.read_text(encoding="utf-8").replace("[text]\n", "[text]\n" + extra, 1),
                          encoding="utf-8")
        started = time.monotonic()
        subprocess.run([sys.executable, "-m", "bakery", "-q", "-c", str(config), "text"], env=bakery_env(),
                       check=True)
        elapsed = time.monotonic() - started
        return elapsed, len(list((root / "build/text").glob("snippet-*.txt")))


def process_per_sample(args) -> None:
    singles = [run_bakery(1, 1, args.tokens, args.threads, "", first_seed=n) for n in range(3)]
    s_tokens, s_wall = sum(r["tokens"] for r in singles), sum(r["wall_s"] for r in singles)
    print(f"process_per_sample_throughput: {s_tokens / s_wall:.2f} tokens/s (3 processes, no cache)", flush=True)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--bakery-worker":
        bakery_worker(*map(int, sys.argv[2:7]), sys.argv[7])
        return
    if len(sys.argv) > 1 and sys.argv[1] == "--llama-worker":
        llama_worker(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]), sys.argv[7])
        return
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--samples", type=int, default=36, help="snippets per side (default 36)")
    p.add_argument("--batch", type=int, default=None, help="bakery batch size (default: the shipped config's)")
    p.add_argument("--tokens", type=int, default=100, help="new tokens per snippet at most (default 100)")
    p.add_argument("--threads", type=int, default=max(1, (os.cpu_count() or 2) // 2),
                   help="CPU threads for both sides (default: half the cores, llama-cpp-python's default)")
    p.add_argument("--skip-bake", action="store_true", help="skip timing `bakery text` on content/site.toml")
    p.add_argument("--process-per-sample", action="store_true", help="also time a fresh process per snippet")
    args = p.parse_args()
    sys.path.insert(0, str(REPO))
    from bakery.config import load_config

    if args.batch is None:
        args.batch = load_config(REPO / "content/site.toml").text.all_stages["generate"].batch_size
    print(f"model: embedded SmolLM2-135M-Instruct GGUF, {args.samples} snippets, max_new_tokens {args.tokens}, "
          f"{args.threads} thread(s), bakery batch {args.batch}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}", flush=True)

    with tempfile.TemporaryDirectory(prefix="bench-text-cache-") as scratch:
        cache = str(Path(scratch) / "models")
        cold = run_bakery(args.samples, args.batch, args.tokens, args.threads, cache)
        report("bakery_cold_cache", cold, args.samples)
        warm = run_bakery(args.samples, args.batch, args.tokens, args.threads, cache)
        report("bakery", warm, args.samples)

        python, why = llama_python()
        if python is None:
            print(f"llama_cpp: skipped ({why}; see this file's docstring to build it)", flush=True)
        else:
            model, prompt_file, sampling = rendered_prompt(Path(scratch))
            llama = timed_child([python, __file__, "--llama-worker", str(model), str(prompt_file),
                                 str(args.samples), str(args.tokens), str(args.threads), json.dumps(sampling)])
            report("llama_cpp", llama, args.samples)
            e2e = (warm["tokens"] / warm["wall_s"]) / (llama["tokens"] / llama["wall_s"])
            gen = (warm["tokens"] / warm["gen_s"]) / (llama["tokens"] / llama["gen_s"])
            cold_e2e = (cold["tokens"] / cold["wall_s"]) / (llama["tokens"] / llama["wall_s"])
            print(f"ratio_end_to_end_vs_llama_cpp: {e2e:.2f} x (tokens/s, bakery with a warm cache / llama.cpp)",
                  flush=True)
            print(f"ratio_end_to_end_cold_cache_vs_llama_cpp: {cold_e2e:.2f} x", flush=True)
            print(f"ratio_generation_only_vs_llama_cpp: {gen:.2f} x", flush=True)
            print(f"ratio_time_per_snippet_vs_llama_cpp: {llama['wall_s'] / warm['wall_s']:.2f} x "
                  "(llama.cpp s/snippet / bakery s/snippet)", flush=True)
        print(f"load_cold_vs_warm_cache: {cold['load_s']:.1f} s -> {warm['load_s']:.1f} s "
              f"({cold['load_s'] / warm['load_s']:.1f} x)", flush=True)

        if args.process_per_sample:
            process_per_sample(args)
        if not args.skip_bake:
            elapsed, count = bake_text_time(cache, args.threads)
            print(f"default_bake_text_time: {elapsed:.1f} s for {count} snippets (model cache warm)", flush=True)


if __name__ == "__main__":
    main()
