"""content/site.toml → one validated, typed, immutable Config object.

Every section is read through a `Table` (bakery/tables.py), so each error names the exact
key and what is wrong with it.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

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
    publish_model: bool = False  # copy images.model into public/ for download (docs/config.md)


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
        publish_model=t.bool("publish_model", False),
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
