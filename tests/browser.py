"""Headless Debian Chromium driven by Playwright (its own browser download does not work here)."""

from __future__ import annotations

import os
import shutil
import subprocess

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-quic", "--no-first-run", "--disable-sync"]


def chromium_path() -> str:
    """Debian's chromium; installed on the spot (as root) when missing."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path:
        return path
    if os.geteuid() != 0:
        raise RuntimeError("chromium is missing and we are not root: apt-get install chromium")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], check=True, env=env)
    return shutil.which("chromium")


def launch(playwright):
    return playwright.chromium.launch(executable_path=chromium_path(), headless=True, args=CHROMIUM_ARGS)
