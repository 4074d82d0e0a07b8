"""One redaction helper for every error path: no secret value and no URL password on stderr.

Secrets reach the bakery only from the environment, at the edge that needs them (the S3
client, the CloudFlare purge, the OpenAI-compatible backend, rsync's RSYNC_PASSWORD). Each
edge registers the values it read with `remember`, and every message built from text that
we do not control (a server's error body, an exception from a library, a URL from the
config) goes through `redact` before it is raised, logged or printed. The CLI redacts the
final error line and every log line once more, so a path that forgot still cannot print a
registered secret or a URL password.
"""

from __future__ import annotations

import logging
import re
import threading
from typing import Iterable

MASK = "***"
# Shorter values would mangle ordinary words in messages; real tokens are far longer.
MIN_SECRET_LEN = 4
# scheme://user:password@host or scheme://token@host: the whole userinfo goes.
_URL_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)[^/\s@?#]+@")
# An echoed Authorization header, whatever the token (also one nobody registered).
_AUTH_HEADER = re.compile(r"(?i)(?P<lead>\bauthorization[\"']?\s*[:=]\s*[\"']?(?:\w+\s+)?|\bbearer\s+)[^\s\"',;]+")

_known: set[str] = set()
_lock = threading.Lock()


def remember(*values: str | None) -> None:
    """Register secret values read from the environment, so that every later message hides them."""
    with _lock:
        for value in values:
            if isinstance(value, str) and len(value.strip()) >= MIN_SECRET_LEN:
                _known.update({value, value.strip()})  # servers may echo it with or without spaces


def redact(text: object, secrets: Iterable[str | None] = ()) -> str:
    """`text` with URL credentials, Authorization values and every known secret replaced by ***."""
    out = str(text)
    with _lock:
        values = set(_known)
    values.update(s for s in secrets if isinstance(s, str) and len(s) >= MIN_SECRET_LEN)
    for value in sorted(values, key=len, reverse=True):  # longest first: one secret may contain another
        out = out.replace(value, MASK)
    out = _URL_USERINFO.sub(lambda m: f"{m.group('scheme')}{MASK}@", out)
    return _AUTH_HEADER.sub(lambda m: f"{m.group('lead')}{MASK}", out)



class RedactingFilter(logging.Filter):
    """On a log handler: every record leaves with its formatted message redacted."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = redact(record.getMessage()), None
        return True


def redact_log_handlers(logger: logging.Logger) -> None:
    """Add the filter to the handlers of `logger` (a logger's own filters miss its children)."""
    for handler in logger.handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
