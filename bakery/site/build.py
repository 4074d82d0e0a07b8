"""`bakery site`: publish complete (image + snippet) pairs and render the pages, index.html last.

An ID is published only when public/example-{ID}.jpg and a non-empty
build/text/snippet-{ID}.txt both exist (canonical names, regular files: bakery/site/files.py)
and the ID lies inside a configured band. Snippets are checked against the cleaning
max_chars, then copied to public/snippet-{ID}.txt. CSS is compiled from SCSS, scripts and
CSS get content-hashed names (so the pages can be cached briefly and everything else
forever), downloads are listed (bakery/site/downloads.py), and grid.html, then index.html
are written last: the live pages never reference a file that is not there yet.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import jinja2

from bakery.errors import BakeryError
from bakery.fsutil import remove_stale_temps, write_bytes_atomic, write_json_atomic, write_text_atomic
from bakery.progress import progress
from bakery.site.downloads import write_downloads
from bakery.site.files import IMAGE_RE, SNIPPET_RE, canonical_files
from bakery.sizes import human_bytes
from bakery.verify import verified_pair_ids

log = logging.getLogger("bakery.site")

TITLE_RE = re.compile(r"^_([^_\n]{1,300})_")


@dataclass(frozen=True)
class SiteReport:
    published: int
    image_only: int
    snippet_only: int
    page_bytes: int  # index.html's HTML + CSS + JS
    outside_bands: int = 0  # complete pairs not published: their IDs left images.bands
    pages: dict = field(default_factory=dict)  # page name → HTML + CSS + JS bytes
    unverified: int = 0  # complete pairs in the bands not published: a file is not what its stage wrote


def text_dir(config) -> Path:
    return config.build_dir / "text"


def ids_in(directory: Path, pattern: re.Pattern) -> dict[int, Path]:
    return canonical_files(directory, pattern)


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


def check_length(config, image_id: int, text: str) -> None:
    """Nothing longer than the cleaning rules allow goes live (a 100,000-character word once
    froze the page for minutes); the snippets were made with other rules or by hand."""
    limit = config.text.clean.max_chars
    if len(text) > limit:
        raise BakeryError(f"snippet {image_id} ({text_dir(config) / f'snippet-{image_id}.txt'}): "
                          f"{len(text)} characters, over text.clean.max_chars ({limit}); "
                          "rerun `bakery text` or shorten it")


def publish_snippets(config, ids: list[int], snippets: dict[int, Path], quiet: bool) -> None:
    """Copy each snippet into public/ unless an identical copy is already there. All are read
    and checked first, so a bad one stops the build before any is published."""
    texts = {}
    for i in ids:
        texts[i] = read_snippet(snippets[i])
        check_length(config, i, texts[i])
    for i in progress(ids, "site: snippets", total=len(ids), unit="file", quiet=quiet):
        data = texts.pop(i).encode("utf-8")
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


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) in pixels, from the JPEG's header."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            return img.size
    except (OSError, UnidentifiedImageError) as exc:
        raise BakeryError(f"{path}: not a readable image ({exc})") from None


def fallback_pair(config, ids: list[int], images: dict[int, Path], snippets: dict[int, Path]) -> dict | None:
    """The one fixed pair shown to visitors without JavaScript, with the image's true pixel size
    (the browser reserves its aspect ratio before it loads; the stylesheet scales it to the frame)."""
    if not ids:
        return None
    chosen = config.site.noscript_id if config.site.noscript_id in snippets and config.site.noscript_id in ids else ids[0]
    text = read_snippet(snippets[chosen])
    m = TITLE_RE.match(text)
    width, height = image_size(images[chosen])
    return {
        "id": chosen,
        "width": width,
        "height": height,
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


PAGES = ("grid.html", "index.html")  # index.html last: the entry page goes live only when all else is there
PAGE_SCRIPTS = {"grid.html": "grid.js", "index.html": "app.js"}
SHARED_SCRIPT = "pairs.js"  # ID pool, psi filter and snippet rendering, used by both pages


class EmptySite(BakeryError):
    """Nothing to publish: a 0-pair page must not go live by accident."""

    exit_code = 2


def render_page(config, name: str, context: dict) -> str:
    env = make_environment(config.site.templates_dir)
    env.filters["filesize"] = human_bytes
    try:
        template = env.get_template(name)
    except jinja2.TemplateNotFound:
        raise BakeryError(f"{config.site.templates_dir / name}: template not found") from None
    except jinja2.TemplateSyntaxError as exc:
        raise BakeryError(f"{exc.filename}:{exc.lineno}: template error: {exc.message}") from None
    try:
        return template.render(page=name, **context)
    except jinja2.TemplateError as exc:  # e.g. an undefined variable in a user's template
        raise BakeryError(f"{config.site.templates_dir / name}: template error: {exc}") from None


def page_context(config, ids: list[int], fallback: dict | None, assets: dict, downloads: dict) -> dict:
    data = {"refresh_seconds": config.site.refresh_seconds, "bands": group_by_band(config, ids)}
    return {
        "site": config.site, "csp": content_security_policy(config), "assets": assets,
        "data": data, "count": len(ids), "fallback": fallback,
        "mirror_command": mirror_command(config), "downloads": downloads,
    }


def mirror_command(config) -> str | None:
    """The public rsync mirror's download command, shown on the page when one is configured."""
    mirror = config.deploy.mirror
    if not mirror.public_url:
        return None
    return f"rsync --recursive --times {mirror.public_url} {mirror.module}/"


def in_bands(config, ids: list[int]) -> list[int]:
    """Only IDs inside a configured band: pairs whose band left the config are not published."""
    bands = [(band.first, band.last) for band in config.images.bands]
    return [i for i in ids if any(first <= i <= last for first, last in bands)]


def check_not_empty(ids: list[int], allow_empty: bool) -> None:
    if not ids and not allow_empty:
        raise EmptySite("site: no complete pairs to publish (an image in public/ and a snippet in "
                        "build/text/ with the same ID, inside the configured bands): run `bakery images` "
                        "and `bakery text` first, or pass --allow-empty to publish an empty page")


def write_scripts(public: Path, static: Path) -> dict[str, str]:
    """Each page's script and the shared one, under content-hashed names: file name → href."""
    hrefs = {}
    for name in (SHARED_SCRIPT, *PAGE_SCRIPTS.values()):
        path = static / name
        if not path.is_file():
            raise BakeryError(f"{path}: script not found")
        hrefs[name] = write_asset(public, name, path.read_bytes())
    return hrefs


def build_site(config, quiet: bool = False, allow_empty: bool = False) -> SiteReport:
    public, static = config.public_dir, config.site.static_dir
    if public.is_dir():
        remove_stale_temps(public)
    images = ids_in(public, IMAGE_RE) if public.is_dir() else {}
    snippets = ids_in(text_dir(config), SNIPPET_RE)
    complete = sorted(images.keys() & snippets.keys())
    banded = in_bands(config, complete)
    ids = verified_pair_ids(config, {i: images[i] for i in banded}, snippets)  # only files as their stage wrote them
    check_not_empty(ids, allow_empty)  # before anything is written: a refused site leaves no trace
    public.mkdir(parents=True, exist_ok=True)
    publish_snippets(config, ids, snippets, quiet)

    css_href = write_asset(public, "style.css", compile_css(static))
    scripts = write_scripts(public, static)
    copy_static_files(static, public)
    downloads = write_downloads(config, mirror_command(config))

    pages, weights = {}, {}
    fallback = fallback_pair(config, ids, images, snippets)
    for name in PAGES:
        assets = {"css": css_href, "pairs": scripts[SHARED_SCRIPT], "page": scripts[PAGE_SCRIPTS[name]]}
        pages[name] = render_page(config, name, page_context(config, ids, fallback, assets, downloads))
        weights[name] = len(pages[name].encode()) + sum(
            (public / assets[k]).stat().st_size for k in ("css", "pairs", "page"))
    write_json_atomic(config.build_dir / "site" / "manifest.json", {
        "published": len(ids), "bands": group_by_band(config, ids),
        "assets": {"css": css_href, "js": scripts}, "page_bytes": weights,
    })
    for name in PAGES:
        write_text_atomic(public / name, pages[name])  # index.html last: the page goes live only now

    return SiteReport(len(ids), len(images.keys() - snippets.keys()), len(snippets.keys() - images.keys()),
                      weights["index.html"], len(complete) - len(banded), weights, len(banded) - len(ids))


def run_site(config, args) -> None:
    report = build_site(config, quiet=args.quiet, allow_empty=getattr(args, "allow_empty", False))
    weights = ", ".join(f"{name} {size / 1024:.1f} KB" for name, size in report.pages.items())
    log.info("site: published %d pairs into %s (page weight, HTML + CSS + JS: %s)",
             report.published, config.public_dir, weights)
    if report.image_only or report.snippet_only:
        log.info("site: not published (incomplete): %d image(s) without snippet, %d snippet(s) without image",
                 report.image_only, report.snippet_only)
    if report.outside_bands:
        log.info("site: not published: %d pair(s) outside the configured bands (images.bands)",
                 report.outside_bands)
    if report.published == 0:
        log.warning("site: no complete pairs yet: run `bakery images` and `bakery text` first")
