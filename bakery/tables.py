"""`Table`: one TOML table under validation, shared by every section's parser.

A leaf module (it imports nothing from the bakery but errors), so bakery/config.py and the
stage configs (images, upscale, text, deploy) all import it without an import circle.
Each Table knows its dotted key path, so each error names the exact key
(``images.bands[1].psi``) and what is wrong with it. Unknown keys are errors too: a typo
must not silently fall back to a default.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from bakery.errors import ConfigError

_MISSING = object()


class Table:
    """One TOML table under validation; `finish()` rejects the keys nobody asked for."""

    def __init__(self, data: dict, path: str, source: Path, root: Path):
        self.data, self.path, self.source, self.root = data, path, source, root
        self._seen: set[str] = set()
        # False: paths are resolved but need not exist yet (a command that does not use them)
        self.check_files = True

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def error(self, name: str | None, problem: str) -> ConfigError:
        where = self.key(name) if name else (self.path or "(top level)")
        return ConfigError(f"{self.source}: {where}: {problem}")

    def has(self, name: str) -> bool:
        return name in self.data

    def raw(self, name: str, default: Any = _MISSING) -> Any:
        self._seen.add(name)
        if name not in self.data:
            if default is _MISSING:
                raise self.error(name, "is required but missing")
            return default
        return self.data[name]

    def str(self, name: str, default: Any = _MISSING, *, choices: tuple | None = None,
            allow_empty: bool = True) -> str:
        value = self.raw(name, default)
        if value is None and default is None:
            return None  # type: ignore[return-value]
        if not isinstance(value, str):
            raise self.error(name, f"must be a string, got {_describe(value)}")
        if choices is not None and value not in choices:
            raise self.error(name, f"must be one of {', '.join(map(repr, choices))}, got {value!r}")
        if not allow_empty and not value.strip():
            raise self.error(name, "must not be empty")
        return value

    def bool(self, name: str, default: Any = _MISSING) -> bool:
        value = self.raw(name, default)
        if not isinstance(value, bool):
            raise self.error(name, f"must be true or false, got {_describe(value)}")
        return value

    def int(self, name: str, default: Any = _MISSING, *, min: int | None = None,
            max: int | None = None) -> int:
        value = self.raw(name, default)
        if value is None and default is None:
            return None  # type: ignore[return-value]
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(name, f"must be an integer, got {_describe(value)}")
        self._check_range(name, value, min, max)
        return value

    def float(self, name: str, default: Any = _MISSING, *, min: float | None = None,
              max: float | None = None) -> float:
        value = self.raw(name, default)
        if value is None and default is None:
            return None  # type: ignore[return-value]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.error(name, f"must be a number, got {_describe(value)}")
        self.check_finite(name, value)
        self._check_range(name, value, min, max)
        return float(value)

    def check_finite(self, name: str, value) -> None:
        """NaN passes every range check (all comparisons are false) and inf passes open ones:
        the one check every float key goes through."""
        if isinstance(value, float) and not math.isfinite(value):
            raise self.error(name, f"must be a finite number, got {value}")

    def str_list(self, name: str, default: Any = _MISSING) -> tuple[str, ...]:
        value = self.raw(name, default)
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise self.error(name, f"must be a list of strings, got {_describe(value)}")
        return tuple(value)

    def str_map(self, name: str, default: Any = _MISSING) -> dict[str, str]:
        value = self.raw(name, default)
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise self.error(name, f"must be a table of strings, got {_describe(value)}")
        return dict(value)

    def path_value(self, name: str, default: Any = _MISSING, *, must_exist: bool = False,
                   kind: str = "file") -> Path:
        """A path relative to the project root; with must_exist, a missing file is an error."""
        value = self.str(name, default, allow_empty=False)
        if value is None:
            return None  # type: ignore[return-value]
        path = self._to_path(name, value)
        if must_exist:
            ok = path.is_dir() if kind == "directory" else path.is_file()
            if not ok:
                raise self.error(name, f"{kind} not found: {path}")
        return path

    def _to_path(self, name: str, value: str) -> Path:
        """The path as the OS will see it; what it cannot name is a config error, not a crash."""
        if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
            raise self.error(name, f"must not contain control characters (NUL, newline, ...), got {value!r}")
        try:
            path = Path(value).expanduser()
        except RuntimeError:  # "~nosuchuser/...": no such user, no home folder to expand
            raise self.error(name, f"cannot expand {value!r}: no such user's home folder") from None
        path = path if path.is_absolute() else self.root / path
        # The OS limits (NAME_MAX 255 bytes per name, PATH_MAX 4096): beyond them every use is an OSError.
        if any(len(part.encode("utf-8", "surrogateescape")) > 255 for part in path.parts) \
                or len(str(path).encode("utf-8", "surrogateescape")) > 4000:
            raise self.error(name, "is too long a path for the file system (255 bytes per name at most)")
        return path

    def table(self, name: str) -> "Table":
        value = self.raw(name, {})
        if not isinstance(value, dict):
            raise self.error(name, f"must be a table, got {_describe(value)}")
        return Table(value, self.key(name), self.source, self.root)

    def tables(self, name: str, default: Any = _MISSING) -> list["Table"]:
        value = self.raw(name, default)
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise self.error(name, f"must be an array of tables ([[{self.key(name)}]]), got {_describe(value)}")
        return [Table(v, f"{self.key(name)}[{i}]", self.source, self.root) for i, v in enumerate(value)]

    def finish(self) -> None:
        unknown = sorted(set(self.data) - self._seen)
        if unknown:
            raise self.error(unknown[0], "unknown key" + _suggestion(unknown[0], self.data, self._seen))

    def _check_range(self, name, value, lo, hi) -> None:
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            if lo is not None and hi is not None:
                bounds = f"[{lo}, {hi}]"
            elif lo is not None:
                bounds = f"≥ {lo}"
            else:
                bounds = f"≤ {hi}"
            raise self.error(name, f"{value} is out of range (must be {bounds})")


def _describe(value: Any) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
             list: "a list", dict: "a table"}
    return f"{names.get(type(value), type(value).__name__)} ({value!r})"[:80]


def _suggestion(name: str, data: dict, seen: set[str]) -> str:
    import difflib

    close = difflib.get_close_matches(name, sorted(seen), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
