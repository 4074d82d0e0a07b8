"""Quiet TensorFlow's and ncnn's native start-up banners without hiding real errors."""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile

NATIVE_NOISE = re.compile(r"^(WARNING: All log messages before absl|[IW]\d{4} |E\d{4} .*(cuInit|cuda)|"
                          r"To enable the following instructions|.*rebuild TensorFlow with|"
                          r"dlopen failed libvulkan|load vulkan driver failed)")  # ncnn's GPU probe, no Vulkan


@contextlib.contextmanager
def quiet_native_startup():
    """TensorFlow's C++ start-up banners (oneDNN, missing CUDA) bypass Python logging and
    TF_CPP_MIN_LOG_LEVEL; catch fd 2 while it starts and pass on only other lines."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            for line in capture.read().decode("utf-8", "replace").splitlines():
                if line.strip() and not NATIVE_NOISE.match(line):
                    print(line, file=sys.stderr)
