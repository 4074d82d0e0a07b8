"""Headless Debian Chromium driven by Playwright (its own browser download does not work here)."""

from __future__ import annotations

import shutil

from tests.debian import ensure_command

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-quic", "--no-first-run", "--disable-sync"]


def chromium_path() -> str:
    """Debian's chromium; installed on the spot (as root) when missing."""
    path = ensure_command("chromium", "chromium") or shutil.which("chromium-browser")
    if not path:
        raise RuntimeError("chromium is missing and could not be installed: apt-get install chromium")
    return path


def launch(playwright):
    return playwright.chromium.launch(executable_path=chromium_path(), headless=True, args=CHROMIUM_ARGS)
