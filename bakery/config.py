"""content/site.toml → one validated, typed, immutable Config object.

Every section is read through a `Table` (bakery/tables.py), so each error names the exact
key and what is wrong with it.
"""

from __future__ import annotations

import os
import re
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
        """Rebuilt from the parsed host and port only: nothing else of the URL reaches the CSP."""
        return script_origin(self.script)


HOST_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)\Z")
# Path and query of a script URL: RFC 3986 characters minus those a CSP or an HTML attribute
# gives meaning to (space, quotes, ';', ',', '*', '<', '>').
URL_TAIL = re.compile(r"[A-Za-z0-9._~%/!$&()+=:@?-]*\Z")


def script_origin(url: str) -> str:
    """https://host[:port] of a strictly parsed https URL; ValueError says what is wrong."""
    from urllib.parse import urlsplit

    if not url.isascii() or any(ch.isspace() or ord(ch) < 32 for ch in url):
        raise ValueError("must be plain ASCII without spaces or control characters")
    parts = urlsplit(url)
    if parts.scheme != "https":
        raise ValueError("must be an https:// URL")
    if "@" in parts.netloc:
        raise ValueError("must not contain user:password@")
    host_port = parts.netloc
    host, _, port = host_port.partition(":") if not host_port.startswith("[") else (host_port, "", "")
    host = host.lower()
    labels = host.split(".")
    if len(host) > 253 or len(labels) < 2 or not all(HOST_LABEL.match(label) for label in labels) \
            or labels[-1].isdigit():
        raise ValueError(f"needs a valid host name (like cdn.example.com), got {host_port!r}")
    if port and (not port.isdigit() or not 0 < int(port) < 65536 or port.startswith("0")):
        raise ValueError(f"has an invalid port {port!r}")
    if parts.fragment or "#" in url:
        raise ValueError("must not have a #fragment")
    if not URL_TAIL.match(parts.path + ("?" + parts.query if parts.query else "")):
        raise ValueError("has characters a script URL does not need (quotes, ';', ',', '*', ...)")
    return f"https://{host}" + (f":{port}" if port else "")


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
        try:
            script_origin(script)
        except ValueError as exc:
            raise a.error("script", f"{exc}, got {script!r}") from None
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
        publish_model=t.bool("publish_model", False),
    )
    for key in ("build_dir", "public_dir"):
        check_output_dir(t, key, getattr(site, key))
    check_disjoint_folders(t, site)
    t.finish()
    return site


SYSTEM_FOLDERS = (Path("/proc"), Path("/sys"), Path("/dev"))


def check_output_dir(t: Table, key: str, path: Path) -> None:
    """A folder the bakery writes into must be (or become) a real folder of its own, checked
    here so that a bad value stops the run before any work instead of as a traceback."""
    try:
        resolved = path.resolve()
    except (OSError, RuntimeError) as exc:  # a symlink loop
        raise t.error(key, f"cannot resolve {path}: {exc}") from None
    for system in SYSTEM_FOLDERS:
        if resolved == system or system in resolved.parents:
            raise t.error(key, f"{path} is inside {system}, a system folder: choose a project folder")
    for candidate in [resolved, *resolved.parents]:
        if os.path.lexists(candidate):
            if not candidate.is_dir():
                what = "is" if candidate == resolved else f"is inside {candidate}, which is"
                raise t.error(key, f"{path} {what} a file, not a folder")
            return


def check_disjoint_folders(t: Table, site: "SiteConfig") -> None:
    """build/, public/, static/ and templates/ must not overlap: public_dir = "build" would
    publish the intermediates and the deploy state, a build inside static/ would ship it."""
    keys = ("build_dir", "public_dir", "static_dir", "templates_dir")
    folders = {key: getattr(site, key).resolve() for key in keys}
    for i, a in enumerate(keys):
        for b in keys[i + 1:]:
            pa, pb = folders[a], folders[b]
            if pa == pb:
                raise t.error(b, f"is the same folder as site.{a} ({getattr(site, a)}): they must be separate")
            if pa in pb.parents or pb in pa.parents:
                inner, outer = (b, a) if pa in pb.parents else (a, b)
                raise t.error(inner, f"{getattr(site, inner)} is inside site.{outer} "
                                     f"({getattr(site, outer)}): the folders must not nest")


# section → "module:parser"; the stage parsers are imported only when their section is read.
SECTIONS = {
    "site": "bakery.config:parse_site",
    "images": "bakery.images.config:parse_images",
    "upscale": "bakery.upscale.config:parse_upscale",
    "jpeg": "bakery.upscale.config:parse_jpeg",
    "text": "bakery.text.config:parse_text",
    "deploy": "bakery.deploy.config:parse_deploy",
    "ray": "bakery.scale.config:parse_ray",
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
    ray = property(lambda self: self.section("ray"))

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
    except RecursionError:
        raise ConfigError(f"{path}: invalid TOML: arrays or tables nested too deeply") from None
    except OSError as exc:  # a folder, unreadable, ...
        raise ConfigError(f"{path}: cannot read the config ({exc.strerror or exc})") from None
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
