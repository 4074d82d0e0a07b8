"""Debian packages the tests need (chromium, rsync), installed on the spot when missing."""

from __future__ import annotations

import os
import shutil
import subprocess


def ensure_command(command: str, package: str) -> str | None:
    """The path of `command`, installing Debian's `package` first when it is missing and we
    are root. On a fresh machine apt has no package lists yet, hence the update on failure."""
    if shutil.which(command):
        return shutil.which(command)
    if os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = ["apt-get", "install", "-y", "-qq", package]
        if subprocess.run(install, env=env, capture_output=True).returncode != 0:
            subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True)
            subprocess.run(install, env=env, capture_output=True)
    return shutil.which(command)
