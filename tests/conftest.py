"""Shared test helpers: tiny projects made in tmp_path, with the repo's templates and static."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def write_project(root: Path, toml: str = "", with_site_dirs: bool = True) -> Path:
    """A project folder holding content/site.toml (+ prompt); returns the toml's path."""
    content = root / "content"
    (content / "prompts").mkdir(parents=True, exist_ok=True)
    (content / "prompts" / "plot.txt").write_text("Plot summary of a new anime:\n")
    site = ""
    if not with_site_dirs:  # empty folders, enough for the config to validate
        (root / "templates").mkdir(exist_ok=True)
        (root / "static").mkdir(exist_ok=True)
    else:
        site = f'[site]\ntemplates_dir = "{REPO / "templates"}"\nstatic_dir = "{REPO / "static"}"\n'
    path = content / "site.toml"
    path.write_text(site + textwrap.dedent(toml))
    return path


MINIMAL_BANDS = """
[[images.bands]]
seeds = "0-3"
psi = 0.7

[[images.bands]]
seeds = "4-5"
psi = 1.1
"""


@pytest.fixture
def project(tmp_path):
    """A valid minimal project; returns the path of its site.toml."""
    return write_project(tmp_path, MINIMAL_BANDS)


def make_pairs(config, ids, snippet=lambda i: f"Snippet number {i}.", image_ids=None, size=64):
    """Write public/example-{ID}.jpg (a colour that encodes the ID) and build/text/snippet-{ID}.txt."""
    from PIL import Image

    config.public_dir.mkdir(parents=True, exist_ok=True)
    text_dir = config.build_dir / "text"
    text_dir.mkdir(parents=True, exist_ok=True)
    for i in (ids if image_ids is None else image_ids):
        colour = ((i * 67) % 256, (i * 131) % 256, (i * 29 + 90) % 256)
        Image.new("RGB", (size, size), colour).save(config.public_dir / f"example-{i}.jpg", quality=90)
    for i in ids:
        (text_dir / f"snippet-{i}.txt").write_text(snippet(i), encoding="utf-8")


@pytest.fixture(scope="module")
def browser():
    """One headless Chromium per test module (launching one takes seconds)."""
    from playwright.sync_api import sync_playwright

    from tests.browser import launch

    with sync_playwright() as p:
        b = launch(p)
        yield b
        b.close()


@pytest.fixture(autouse=True, scope="session")
def user_cache_in_tmp(tmp_path_factory):
    """[text] model_cache defaults to the user's cache folder ($XDG_CACHE_HOME/bakery): point
    it at a session temp folder, so tests (and the bakery processes they start) never write
    to the real home, and the GGUF is converted once per session."""
    patch = pytest.MonkeyPatch()
    patch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("xdg-cache")))
    yield
    patch.undo()
