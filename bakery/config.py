"""content/site.toml → one validated, typed, immutable Config object.

Every section is read through a `Table`, which knows its dotted key path, so each error
names the exact key (``images.bands[1].psi``) and what is wrong with it. Unknown keys are
errors too: a typo must not silently fall back to a default.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from bakery.errors import ConfigError

_MISSING = object()
DEFAULT_CONFIG = Path("content/site.toml")


class Table:
    """One TOML table under validation; `finish()` rejects the keys nobody asked for."""

    def __init__(self, data: dict, path: str, source: Path, root: Path):
        self.data, self.path, self.source, self.root = data, path, source, root
        self._seen: set[str] = set()

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
        self._check_range(name, value, min, max)
        return float(value)

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
        path = Path(value).expanduser()
        path = path if path.is_absolute() else self.root / path
        if must_exist:
            ok = path.is_dir() if kind == "directory" else path.is_file()
            if not ok:
                raise self.error(name, f"{kind} not found: {path}")
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


@dataclass(frozen=True)
class Analytics:
    """An optional third-party analytics script; the CSP admits exactly its origin."""

    script: str
    attributes: dict[str, str] = field(default_factory=dict)

    @property
    def origin(self) -> str:
        from urllib.parse import urlsplit

        parts = urlsplit(self.script)
        return f"{parts.scheme}://{parts.netloc}"


@dataclass(frozen=True)
class SiteConfig:
    title: str
    description: str
    refresh_seconds: int
    base_url: str
    analytics: Analytics | None
    build_dir: Path
    public_dir: Path
    templates_dir: Path
    static_dir: Path
    noscript_id: int | None


def parse_site(t: Table) -> SiteConfig:
    from urllib.parse import urlsplit

    base_url = t.str("base_url", "")
    if base_url and urlsplit(base_url).scheme not in ("http", "https"):
        raise t.error("base_url", f"must start with http:// or https://, got {base_url!r}")
    analytics = None
    a = t.table("analytics")
    if a.data:
        script = a.str("script", allow_empty=False)
        if urlsplit(script).scheme != "https" or not urlsplit(script).netloc:
            raise a.error("script", f"must be an https:// URL, got {script!r}")
        attributes = a.str_map("attributes", {})
        for attr in attributes:
            if not attr.startswith("data-") or not attr[5:].replace("-", "").isalnum():
                raise a.error("attributes", f"only data-* attributes are allowed, got {attr!r}")
        analytics = Analytics(script, attributes)
        a.finish()
    site = SiteConfig(
        title=t.str("title", "This Waifu Does Not Exist", allow_empty=False),
        description=t.str("description", ""),
        refresh_seconds=t.int("refresh_seconds", 15, min=1, max=3600),
        base_url=base_url.rstrip("/"),
        analytics=analytics,
        build_dir=t.path_value("build_dir", "build"),
        public_dir=t.path_value("public_dir", "public"),
        templates_dir=t.path_value("templates_dir", "templates", must_exist=True, kind="directory"),
        static_dir=t.path_value("static_dir", "static", must_exist=True, kind="directory"),
        noscript_id=t.int("noscript_id", None, min=0),
    )
    t.finish()
    return site


@dataclass(frozen=True)
class Config:
    source: Path
    root: Path
    site: SiteConfig
    images: Any
    upscale: Any
    jpeg: Any
    text: Any
    deploy: Any

    @property
    def build_dir(self) -> Path:
        return self.site.build_dir

    @property
    def public_dir(self) -> Path:
        return self.site.public_dir


def project_root_for(config_path: Path) -> Path:
    """Paths in site.toml are relative to the project root: the folder holding content/."""
    parent = config_path.resolve().parent
    return parent.parent if parent.name == "content" else parent


def load_config(path: Path | str = DEFAULT_CONFIG, root: Path | None = None) -> Config:
    """Read and validate the config; raises ConfigError with one line naming key and problem."""
    from bakery.deploy.config import parse_deploy
    from bakery.images.config import parse_images
    from bakery.text.config import parse_text
    from bakery.upscale.config import parse_jpeg, parse_upscale

    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not valid UTF-8 ({exc.reason})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    root = (root or project_root_for(path)).resolve()
    top = Table(raw, "", path, root)
    sections: dict[str, Callable[[Table], Any]] = {
        "site": parse_site, "images": parse_images, "upscale": parse_upscale,
        "jpeg": parse_jpeg, "text": parse_text, "deploy": parse_deploy,
    }
    parsed = {name: parse(top.table(name)) for name, parse in sections.items()}
    top.finish()
    return Config(source=path, root=root, **parsed)
