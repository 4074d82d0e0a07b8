"""bakery.sizes.human_bytes: the one byte formatter (deploy logs, disk-full lines, the page's links)."""

from __future__ import annotations

import pytest

from bakery.sizes import human_bytes


@pytest.mark.parametrize("n, text", [
    (0, "0 bytes"), (1, "1 bytes"), (1023, "1023 bytes"),
    (1024, "1.0 KB"), (1536, "1.5 KB"), (19_046, "18.6 KB"), (1024 ** 2 - 1, "1024.0 KB"),
    (1024 ** 2, "1.0 MB"), (5 * 1024 ** 3, "5.0 GB"), (3 * 1024 ** 4, "3.0 TB"),
    (2048 * 1024 ** 4, "2048.0 TB"),  # no unit above TB
    (-1536, "-1.5 KB"), (1536.0, "1.5 KB"), (100.4, "100 bytes"),
])
def test_human_bytes(n, text):
    assert human_bytes(n) == text


def test_every_caller_uses_it():
    """The old copies are gone: deploy, preflight and the site all format through human_bytes."""
    from bakery import preflight
    from bakery.deploy import rsync, s3
    from bakery.site import build, downloads

    for module in (preflight, rsync, s3, downloads):
        assert not hasattr(module, "human") and not hasattr(module, "human_size"), module.__name__
    assert build.human_bytes is human_bytes
