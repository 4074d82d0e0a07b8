"""End to end: `bakery bake` on a small real project (NVIDIA-format StyleGAN 2 pickle, waifu2x,
a tiny GPT-2), then a rerun that finds everything done and rewrites nothing."""

from __future__ import annotations

import json
import re

import pytest
from PIL import Image

from bakery.cli import main
from bakery.config import load_config
from tests.conftest import FIXTURES, write_project
from text_support import build_tiny_gpt2, tiny_toml

pytestmark = pytest.mark.slow


def bake_project(tmp_path):
    model = build_tiny_gpt2(tmp_path / "gpt2")
    return write_project(tmp_path / "site", f"""
        [images]
        model = "{FIXTURES / 'stylegan2' / 'stylegan2_tf1_synthetic_r64.pkl'}"
        batch_size = 4

        [[images.bands]]
        seeds = "0-1"
        psi = 0.5

        [[images.bands]]
        seeds = "2-3"
        psi = 0.7
        noise = "seeded"

        [[images.bands]]
        seeds = "4-5"
        psi = 1.0

    """ + tiny_toml(model))


def snapshot(folder):
    return {p.relative_to(folder): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


def test_bake_end_to_end_then_rerun_is_a_no_op(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    path = bake_project(tmp_path)
    assert main(["-q", "-c", str(path), "bake"]) == 0
    config = load_config(path)
    public = config.public_dir
    for i in range(6):
        with Image.open(public / f"example-{i}.jpg") as im:
            assert im.format == "JPEG" and im.size == (128, 128)  # 64 px, upscaled 2x
        assert (public / f"snippet-{i}.txt").read_text(encoding="utf-8").strip()
    html = (public / "index.html").read_text()
    data = json.loads(re.search(r'id="bakery-data">(.*?)</script>', html, re.S).group(1))
    assert [(b["psi"], b["ranges"]) for b in data["bands"]] == [(0.5, [[0, 1]]), (0.7, [[2, 3]]), (1.0, [[4, 5]])]

    before = snapshot(tmp_path / "site")
    assert main(["-q", "-c", str(path), "bake"]) == 0
    after = snapshot(tmp_path / "site")
    changed = sorted(str(p) for p in after if before.get(p) != after[p])
    # manifests and index.html may be rewritten; no image or snippet is redone
    assert not [p for p in changed if re.search(r"(example|snippet)-\d+\.(png|jpg|txt)$", p)], changed
