"""A tiny real project for the resume tests (StyleGAN 2 fixture, Lanczos, JPEG, tiny GPT-2, site),
and a comparison of two projects' public/ and build/ that ignores only run-to-run fields."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import FIXTURES, REPO, write_project
from text_support import tiny_toml

# Fields that legitimately differ between two bakes of the same config:
# - "source": the input's [mtime_ns, size] (upscale, compress), a freshness check;
# - build/bakery.lock: the holder's pid, command and start time.
RUN_TO_RUN_KEYS = ("source",)
RUN_TO_RUN_FILES = ("build/bakery.lock",)


def tiny_bake_project(root: Path, model: Path, ids: str = "0-3", text_batch: int = 3) -> Path:
    return write_project(root, f"""
        [images]
        model = "{FIXTURES / 'stylegan2' / 'stylegan2_tf1_synthetic_r64.pkl'}"
        batch_size = 2

        [[images.bands]]
        seeds = "{ids}"
        psi = 0.7
        noise = "seeded"

        [upscale]
        method = "lanczos"

    """ + tiny_toml(model).replace("batch_size = 3", f"batch_size = {text_batch}"))


def three_band_project(root, model, psi: float = 0.5):
    """9 IDs in 3 bands; image batches of 2 (5 batches), text batches of 3 (3 batches). The
    tiny GPT-2's snippets clean to 26-32 characters: min_chars = 29 rejects 5 of them, so every
    bake also runs a resampling round (which cannot help here: see BAKED)."""
    return write_project(root, f"""
        [images]
        model = "{FIXTURES / 'stylegan2' / 'stylegan2_tf1_synthetic_r64.pkl'}"
        batch_size = 2

        [[images.bands]]
        seeds = "0-2"
        psi = {psi}

        [[images.bands]]
        seeds = "3-5"
        psi = 0.7
        noise = "seeded"

        [[images.bands]]
        seeds = "6-8"
        psi = 1.0

        [upscale]
        method = "lanczos"

    """ + tiny_toml(model, clean="min_chars = 29"))


# How a bake of three_band_project ends: its short snippets are resampled once, and with this
# tiny model the resample comes out as short (today the transformers backend's CPU
# torch.Generator keeps only the low 32 bits of a seed, so attempt 2's sub-seed ID + 2**32 draws
# what attempt 1 drew): exit 1 naming them, the rest kept. Should resampling ever succeed, the
# bake exits 0; either way the scale-out bakes are compared with a local bake byte for byte.
BAKED = "snippet(s) failed after 2 attempt(s)"


def assert_baked(result: subprocess.CompletedProcess) -> None:
    """A bake (or merge) of three_band_project ran to its end, failing at most some snippets."""
    errors = [line for line in result.stderr.splitlines() if line.startswith("bakery: error:")]
    if result.returncode == 0:
        assert not errors, result.stderr
    else:
        assert result.returncode == 1 and len(errors) == 1 and BAKED in errors[0], result.stderr


def _scrub(value, root: str):
    if isinstance(value, dict):
        return {k: _scrub(v, root) for k, v in value.items() if k not in RUN_TO_RUN_KEYS}
    if isinstance(value, list):
        return [_scrub(v, root) for v in value]
    if isinstance(value, str):
        return value.replace(root, "<project>")
    return value


def project_state(root: Path) -> dict[str, object]:
    """Every file under public/ and build/: bytes, or for JSON manifests their scrubbed content."""
    state = {}
    for top in ("public", "build"):
        for path in sorted((root / top).rglob("*")):
            rel = path.relative_to(root).as_posix()
            if not path.is_file() or rel in RUN_TO_RUN_FILES:
                continue
            if path.suffix == ".json":
                state[rel] = _scrub(json.loads(path.read_text(encoding="utf-8")), str(root))
            elif path.name == "index.html":
                state[rel] = path.read_text(encoding="utf-8").replace(str(root), "<project>")
            else:
                state[rel] = path.read_bytes()
    return state


def differences(a: dict, b: dict) -> list[str]:
    return sorted({k for k in a.keys() | b.keys() if a.get(k) != b.get(k)})


def copy_project(src: Path, dst: Path) -> Path:
    """A copy with the same mtimes (the stages' freshness checks compare them)."""
    shutil.copytree(src, dst, symlinks=True)
    return dst / "content" / "site.toml"


def bakery_process(config: Path, *args: str, kill_at: str | None = None,
                   timeout: float = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    """`bakery -q -c CONFIG ARGS` in a child process, killed by SIGKILL at `kill_at` if given."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", **(env or {})}
    env.pop("BAKERY_TEST_KILL_AT", None)
    if kill_at:
        env["BAKERY_TEST_KILL_AT"] = kill_at
    return subprocess.run([sys.executable, "-m", "bakery", "-q", "-c", str(config), *args], env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=timeout)
