"""Byte counts as people read them: the one formatter for logs, error lines and the page."""

from __future__ import annotations

UNITS = ("KB", "MB", "GB", "TB")


def human_bytes(n: float) -> str:
    """1536 → '1.5 KB': powers of 1024 as file managers show them, whole bytes below 1 KB,
    TB as the largest unit. A negative count (a difference) keeps its sign."""
    if abs(n) < 1024:
        return f"{n:.0f} bytes"
    for unit in UNITS:
        n /= 1024
        if abs(n) < 1024 or unit == UNITS[-1]:
            break
    return f"{n:.1f} {unit}"
