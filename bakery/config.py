"""content/site.toml → one validated, typed, immutable Config object.

Every section is read through a `Table` (bakery/tables.py), so each error names the exact
key and what is wrong with it.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from bakery.errors import ConfigError
from bakery.tables import Table

DEFAULT_CONFIG = Path("content/site.toml")


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
        templates_dir=t.path_value("templates_dir", "templates", must_exist=t.check_files, kind="directory"),
        static_dir=t.path_value("static_dir", "static", must_exist=t.check_files, kind="directory"),
        noscript_id=t.int("noscript_id", None, min=0),
    )
    t.finish()
    return site


# section → "module:parser"; the stage parsers are imported only when their section is read.
SECTIONS = {
    "site": "bakery.config:parse_site",
    "images": "bakery.images.config:parse_images",
    "upscale": "bakery.upscale.config:parse_upscale",
    "jpeg": "bakery.upscale.config:parse_jpeg",
    "text": "bakery.text.config:parse_text",
    "deploy": "bakery.deploy.config:parse_deploy",
}


def _parse_section(name: str, t: Table) -> Any:
    import importlib

    module, func = SECTIONS[name].split(":")
    return getattr(importlib.import_module(module), func)(t)


@dataclass(frozen=True)
class Config:
    """The validated config. A section is validated when first read (or up front, for the
    sections load_config was asked for), so a command never trips over a section it does
    not use: `bakery generate` needs no text prompts, templates or deploy keys."""

    source: Path
    root: Path
    tables: dict[str, Table] = field(repr=False, compare=False)
    check_site_dirs: bool = True
    _parsed: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def section(self, name: str) -> Any:
        if name not in self._parsed:
            table = self.tables[name]
            table.check_files = name != "site" or self.check_site_dirs
            self._parsed[name] = _parse_section(name, table)
        return self._parsed[name]

    site = property(lambda self: self.section("site"))
    images = property(lambda self: self.section("images"))
    upscale = property(lambda self: self.section("upscale"))
    jpeg = property(lambda self: self.section("jpeg"))
    text = property(lambda self: self.section("text"))
    deploy = property(lambda self: self.section("deploy"))

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


def load_config(path: Path | str = DEFAULT_CONFIG, root: Path | None = None,
                sections: Iterable[str] | None = None) -> Config:
    """Read the config and validate `sections` now (None: every section); raises ConfigError
    with one line naming key and problem.

    [site] is always validated (every command needs build_dir and public_dir), but its
    templates_dir and static_dir must exist only when "site" is among `sections`. The other
    sections are validated when a stage first reads them.
    """
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
    wanted = list(SECTIONS) if sections is None else list(sections)
    unknown = [name for name in wanted if name not in SECTIONS]
    if unknown:
        raise ValueError(f"load_config: unknown section(s) {unknown}")
    config = Config(source=path, root=root, tables={name: top.table(name) for name in SECTIONS},
                    check_site_dirs="site" in wanted)
    top.finish()
    for name in ["site"] + [n for n in SECTIONS if n in wanted and n != "site"]:
        config.section(name)
    return config
