"""`bakery site`: publish complete (image + snippet) pairs and render index.html last.

An ID is published only when public/example-{ID}.jpg and a non-empty
build/text/snippet-{ID}.txt both exist. Snippets are copied to public/snippet-{ID}.txt,
CSS is compiled from SCSS, assets get content-hashed names (so index.html can be cached
briefly and everything else forever), and index.html is written last: the live page never
references a file that is not there yet.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import jinja2

from bakery.errors import BakeryError
from bakery.fsutil import remove_stale_temps, write_bytes_atomic, write_json_atomic, write_text_atomic
from bakery.progress import progress

log = logging.getLogger("bakery.site")

IMAGE_RE = re.compile(r"^example-(\d+)\.jpg$")
SNIPPET_RE = re.compile(r"^snippet-(\d+)\.txt$")
TITLE_RE = re.compile(r"^_([^_\n]{1,300})_")


@dataclass(frozen=True)
class SiteReport:
    published: int
    image_only: int
    snippet_only: int
    page_bytes: int


def text_dir(config) -> Path:
    return config.build_dir / "text"


def ids_in(directory: Path, pattern: re.Pattern) -> dict[int, Path]:
    found = {}
    if directory.is_dir():
        for entry in directory.iterdir():
            m = pattern.match(entry.name)
            if m and entry.is_file() and entry.stat().st_size > 0:
                found[int(m.group(1))] = entry
    return found


def to_ranges(ids: list[int]) -> list[list[int]]:
    """[0, 1, 2, 5, 6] → [[0, 2], [5, 6]]: compact even for 100k IDs."""
    ranges: list[list[int]] = []
    for i in sorted(ids):
        if ranges and i == ranges[-1][1] + 1:
            ranges[-1][1] = i
        else:
            ranges.append([i, i])
    return ranges


def group_by_band(config, ids: list[int]) -> list[dict]:
    """Per psi band, the ranges of published IDs (the page shows the psi; figures use it)."""
    bands = []
    claimed: set[int] = set()
    for band in config.images.bands:
        members = [i for i in ids if band.first <= i <= band.last]
        claimed.update(members)
        if members:
            bands.append({"psi": band.psi, "seeds": f"{band.first}-{band.last}", "ranges": to_ranges(members)})
    rest = [i for i in ids if i not in claimed]
    if rest:
        bands.append({"psi": None, "seeds": None, "ranges": to_ranges(rest)})
    return bands


def read_snippet(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise BakeryError(f"{path}: not valid UTF-8 ({exc.reason})") from None


def publish_snippets(config, ids: list[int], snippets: dict[int, Path], quiet: bool) -> None:
    """Copy each snippet into public/ unless an identical copy is already there."""
    for i in progress(ids, "site: snippets", total=len(ids), unit="file", quiet=quiet):
        data = read_snippet(snippets[i]).encode("utf-8")
        target = config.public_dir / f"snippet-{i}.txt"
        if not target.is_file() or target.read_bytes() != data:
            write_bytes_atomic(target, data)


def fingerprinted(name: str, data: bytes) -> str:
    stem, dot, ext = name.rpartition(".")
    return f"{stem}.{hashlib.sha256(data).hexdigest()[:10]}.{ext}"


def compile_css(static_dir: Path) -> bytes:
    import sass

    parts = []
    for scss in sorted(static_dir.glob("*.scss")):
        if scss.name.startswith("_"):
            continue  # partials are pulled in by @use/@import
        try:
            parts.append(sass.compile(filename=str(scss), output_style="compressed"))
        except sass.CompileError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else "compile error"
            raise BakeryError(f"{scss}: SCSS does not compile: {first}") from None
    return "".join(parts).encode("utf-8")


def write_asset(public_dir: Path, name: str, data: bytes) -> str:
    """Write `data` under a content-hashed name (kept if already there); returns that name."""
    hashed = fingerprinted(name, data)
    target = public_dir / "assets" / hashed
    if not target.is_file() or target.read_bytes() != data:
        write_bytes_atomic(target, data)
    return f"assets/{hashed}"


def copy_static_files(static_dir: Path, public_dir: Path) -> None:
    """Everything in static/ but the sources (SCSS, app.js) ships as is: favicon, robots.txt."""
    for source in sorted(static_dir.iterdir()):
        if source.is_file() and source.suffix not in (".scss", ".js") and not source.name.startswith("."):
            data = source.read_bytes()
            target = public_dir / source.name
            if not target.is_file() or target.read_bytes() != data:
                write_bytes_atomic(target, data)


def content_security_policy(config) -> str:
    script = ["'self'"]
    connect = ["'self'"]
    if config.site.analytics:
        script.append(config.site.analytics.origin)
        connect.append(config.site.analytics.origin)
    return "; ".join([
        "default-src 'none'",
        f"script-src {' '.join(script)}",
        "style-src 'self'",
        "img-src 'self'",
        f"connect-src {' '.join(connect)}",
        "base-uri 'none'",
        "form-action 'none'",
    ])


def fallback_pair(config, ids: list[int], snippets: dict[int, Path]) -> dict | None:
    """The one fixed pair shown to visitors without JavaScript."""
    if not ids:
        return None
    chosen = config.site.noscript_id if config.site.noscript_id in snippets and config.site.noscript_id in ids else ids[0]
    text = read_snippet(snippets[chosen])
    m = TITLE_RE.match(text)
    return {
        "id": chosen,
        "alt": f"Generated anime face #{chosen}",
        "title": m.group(1) if m else None,
        "body": text[m.end():] if m else text,
    }


def make_environment(templates_dir: Path) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir)),
        autoescape=jinja2.select_autoescape(default=True, default_for_string=True),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    # `tojson` must never write NaN/Infinity: the page's JSON.parse would reject the whole block.
    env.policies["json.dumps_kwargs"] = {"sort_keys": True, "allow_nan": False}
    return env


def render_index(config, ids: list[int], snippets: dict[int, Path], css_href: str, js_href: str) -> str:
    env = make_environment(config.site.templates_dir)
    try:
        template = env.get_template("index.html")
    except jinja2.TemplateNotFound:
        raise BakeryError(f"{config.site.templates_dir / 'index.html'}: template not found") from None
    except jinja2.TemplateSyntaxError as exc:
        raise BakeryError(f"{exc.filename}:{exc.lineno}: template error: {exc.message}") from None
    data = {"refresh_seconds": config.site.refresh_seconds, "bands": group_by_band(config, ids)}
    return template.render(
        site=config.site, csp=content_security_policy(config), css_href=css_href, js_href=js_href,
        data=data, count=len(ids), fallback=fallback_pair(config, ids, snippets),
        mirror_command=mirror_command(config),
    )


def mirror_command(config) -> str | None:
    """The public rsync mirror's download command, shown on the page when one is configured."""
    mirror = config.deploy.mirror
    if not mirror.public_url:
        return None
    return f"rsync --recursive --times {mirror.public_url} {mirror.module}/"


def build_site(config, quiet: bool = False) -> SiteReport:
    public, static = config.public_dir, config.site.static_dir
    public.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(public)
    images = ids_in(public, IMAGE_RE)
    snippets = ids_in(text_dir(config), SNIPPET_RE)
    ids = sorted(images.keys() & snippets.keys())
    publish_snippets(config, ids, snippets, quiet)

    css_href = write_asset(public, "style.css", compile_css(static))
    js_path = static / "app.js"
    if not js_path.is_file():
        raise BakeryError(f"{js_path}: script not found")
    js_href = write_asset(public, "app.js", js_path.read_bytes())

    copy_static_files(static, public)
    html = render_index(config, ids, snippets, css_href, js_href)
    write_json_atomic(config.build_dir / "site" / "manifest.json", {
        "published": len(ids), "bands": group_by_band(config, ids),
        "assets": {"css": css_href, "js": js_href},
    })
    write_text_atomic(public / "index.html", html)  # last: the page goes live only now

    page_bytes = len(html.encode()) + (public / css_href).stat().st_size + (public / js_href).stat().st_size
    return SiteReport(len(ids), len(images.keys() - snippets.keys()), len(snippets.keys() - images.keys()),
                      page_bytes)


def run_site(config, args) -> None:
    report = build_site(config, quiet=args.quiet)
    log.info("site: published %d pairs into %s (page weight %.1f KB: HTML + CSS + JS)",
             report.published, config.public_dir, report.page_bytes / 1024)
    if report.image_only or report.snippet_only:
        log.info("site: not published (incomplete): %d image(s) without snippet, %d snippet(s) without image",
                 report.image_only, report.snippet_only)
    if report.published == 0:
        log.warning("site: no complete pairs yet: run `bakery images` and `bakery text` first")
