"""A pseudo-terminal standing in for stderr, to see what the progress helpers draw on a TTY."""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import struct
import sys
import termios


@contextlib.contextmanager
def fake_terminal():
    """sys.stderr becomes an 80-column pty; yields a list that, after the block, holds one
    string: everything drawn on it."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))  # a new pty is 0 columns wide
    drawn: list[str] = []
    real_stderr = sys.stderr
    try:
        with open(slave, "w", closefd=True) as tty:
            sys.stderr = tty
            yield drawn
            tty.flush()
            chunks = []
            while select.select([master], [], [], 0.2)[0]:  # read before the terminal closes
                chunks.append(os.read(master, 65536))
            drawn.append(b"".join(chunks).decode("utf-8", "replace"))
    finally:
        sys.stderr = real_stderr
        os.close(master)


def eager_spinner(module, monkeypatch, descs: list[str]):
    """Make `module.spinner` draw at once (real steps in tests end before the usual delay) and
    record each step's description."""
    from bakery.progress import spinner

    def recording(desc, quiet=False, delay=0.5):
        descs.append(desc)
        return spinner(desc, quiet=quiet, delay=0.0)

    monkeypatch.setattr(module, "spinner", recording)
