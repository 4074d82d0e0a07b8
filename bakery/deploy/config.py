"""The [deploy] section: S3 (+ CloudFlare purge), rsync mirror targets, mirror module, archive.

Every key is documented in docs/deploy.md. Secrets never live here: the CloudFlare token is
read from the environment variable *named* by `token_env`, AWS credentials come from boto3's
standard chain, and an rsync daemon password from rsync's own RSYNC_PASSWORD.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from bakery.tables import Table

TARGETS = ("s3", "rsync")
PURGE_MODES = ("changed", "everything", "none")
MB = 1024 * 1024

# Glob → Cache-Control, first match wins; a glob without "/" matches the file name, one with
# "/" the whole path below public/. The page is cached briefly so a new bake shows up within
# minutes; content-hashed assets never change; images and snippets keep their names across
# generations (`bakery archive` + a new bake), so they are long-lived but not "immutable".
DEFAULT_CACHE_CONTROL = {
    "index.html": "public, max-age=300",
    "*.html": "public, max-age=300",
    "assets/*": "public, max-age=31536000, immutable",
    "example-*.jpg": "public, max-age=2592000",
    "snippet-*.txt": "public, max-age=2592000",
    "*": "public, max-age=86400",
}

# Extension → Content-Type where Python's mimetypes is missing or lacks the charset.
DEFAULT_CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".json": "application/json",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".webp": "image/webp",
    ".svg": "image/svg+xml",
    ".gz": "application/gzip",
    ".tar": "application/x-tar",
    ".mp4": "video/mp4",
    ".webm": "video/webm",
    ".ico": "image/x-icon",
    ".xml": "application/xml",
}

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")


@dataclass(frozen=True)
class S3Config:
    bucket: str
    prefix: str
    region: str | None
    endpoint_url: str | None
    concurrency: int
    multipart_threshold: int  # bytes
    multipart_chunk: int  # bytes
    max_deletes: int
    trust_state: bool  # plan from the last complete deploy's state file, without a listing
    exclude: tuple[str, ...]
    upload_last: tuple[str, ...]
    cache_control: dict[str, str] = field(default_factory=dict)
    content_types: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class CloudflareConfig:
    zone_id: str
    token_env: str
    purge: str  # "changed" | "everything" | "none"
    base_url: str  # "" → site.base_url
    api_url: str
    batch_size: int
    max_urls: int
    timeout_seconds: float


@dataclass(frozen=True)
class RsyncTarget:
    name: str
    destination: str
    delete: bool
    extra_trees: dict[str, Path]  # subfolder at the destination → local folder
    extra_args: tuple[str, ...]
    timeout_seconds: int


@dataclass(frozen=True)
class MirrorConfig:
    module: str
    path: Path | None  # where public/ lives on the serving host (None: this public_dir)
    comment: str
    public_url: str
    uid: str
    gid: str
    max_connections: int
    hosts_allow: tuple[str, ...]
    use_chroot: bool


@dataclass(frozen=True)
class ArchiveConfig:
    build_dirs: tuple[str, ...]  # build/ subfolders holding the current generation


@dataclass(frozen=True)
class DeployConfig:
    targets: tuple[str, ...]
    s3: S3Config | None
    cloudflare: CloudflareConfig | None
    rsync: tuple[RsyncTarget, ...]
    mirror: MirrorConfig
    archive: ArchiveConfig


def optional_str(t: Table, name: str) -> str | None:
    """A string key where "" means the same as leaving it out."""
    value = t.str(name, "")
    return value.strip() or None


def http_url(t: Table, name: str, default: str = "") -> str:
    value = t.str(name, default).strip()
    if value and (urlsplit(value).scheme not in ("http", "https") or not urlsplit(value).netloc):
        raise t.error(name, f"must be an http:// or https:// URL, got {value!r}")
    return value.rstrip("/")


def ordered_map(t: Table, name: str, defaults: dict[str, str]) -> dict[str, str]:
    """The user's entries first (in file order), then the defaults they do not override."""
    mine = t.str_map(name, {})
    return {**mine, **{k: v for k, v in defaults.items() if k not in mine}}


def parse_s3(t: Table) -> S3Config | None:
    if not t.data:
        return None
    bucket = t.str("bucket", allow_empty=False)
    if not BUCKET_RE.match(bucket):
        raise t.error("bucket", f"not a valid bucket name: {bucket!r} (3-63 lowercase letters, digits, '.', '-')")
    content_types = ordered_map(t, "content_types", DEFAULT_CONTENT_TYPES)
    for ext in content_types:
        if not ext.startswith("."):
            raise t.error("content_types", f"keys are file extensions starting with '.', got {ext!r}")
    cfg = S3Config(
        bucket=bucket,
        prefix=t.str("prefix", "").strip("/"),
        region=optional_str(t, "region"),
        endpoint_url=http_url(t, "endpoint_url") or None,
        concurrency=t.int("concurrency", 16, min=1, max=256),
        multipart_threshold=t.int("multipart_threshold_mb", 64, min=5, max=5 * 1024) * MB,
        multipart_chunk=t.int("multipart_chunk_mb", 16, min=5, max=5 * 1024) * MB,
        max_deletes=t.int("max_deletes", 1000, min=0),
        trust_state=t.bool("trust_state", False),
        exclude=t.str_list("exclude", []),
        upload_last=t.str_list("upload_last", ["index.html"]),
        cache_control=ordered_map(t, "cache_control", DEFAULT_CACHE_CONTROL),
        content_types={k.lower(): v for k, v in content_types.items()},
    )
    t.finish()
    return cfg


def parse_cloudflare(t: Table) -> CloudflareConfig | None:
    if not t.data:
        return None
    token_env = t.str("token_env", "CLOUDFLARE_API_TOKEN", allow_empty=False)
    if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", token_env):
        raise t.error("token_env", f"must be an environment variable name, got {token_env!r}")
    cfg = CloudflareConfig(
        zone_id=t.str("zone_id", allow_empty=False).strip(),
        token_env=token_env,
        purge=t.str("purge", "changed", choices=PURGE_MODES),
        base_url=http_url(t, "base_url"),
        api_url=http_url(t, "api_url", "https://api.cloudflare.com/client/v4"),
        batch_size=t.int("batch_size", 30, min=1, max=500),
        max_urls=t.int("max_urls", 3000, min=1),
        timeout_seconds=t.float("timeout_seconds", 30.0, min=1, max=600),
    )
    t.finish()
    return cfg


def parse_extra_trees(t: Table) -> dict[str, Path]:
    trees = {}
    for sub, local in t.str_map("extra_trees", {}).items():
        if not all(NAME_RE.match(part) for part in sub.strip("/").split("/")):
            raise t.error("extra_trees", f"destination subfolder {sub!r} must be a plain relative path")
        path = Path(local).expanduser()
        trees[sub.strip("/")] = path if path.is_absolute() else t.root / path
    return trees


def parse_rsync_target(t: Table) -> RsyncTarget:
    name = t.str("name", allow_empty=False)
    if not NAME_RE.match(name):
        raise t.error("name", f"use letters, digits, '.', '_', '-' only, got {name!r}")
    target = RsyncTarget(
        name=name,
        destination=t.str("destination", allow_empty=False).strip(),
        delete=t.bool("delete", False),
        extra_trees=parse_extra_trees(t),
        extra_args=t.str_list("extra_args", []),
        timeout_seconds=t.int("timeout_seconds", 300, min=0),
    )
    t.finish()
    return target


def parse_mirror(t: Table) -> MirrorConfig:
    module = t.str("module", "waifus", allow_empty=False)
    if not NAME_RE.match(module):
        raise t.error("module", f"use letters, digits, '.', '_', '-' only, got {module!r}")
    public_url = t.str("public_url", "").strip()
    if public_url and not public_url.startswith("rsync://"):
        raise t.error("public_url", f"must start with rsync://, got {public_url!r}")
    path = t.str("path", "").strip()
    for key in ("comment", "uid", "gid"):
        if "\n" in str(t.data.get(key, "")):
            raise t.error(key, "must be a single line")
    cfg = MirrorConfig(
        module=module,
        path=Path(path) if path else None,
        comment=t.str("comment", "generated images and snippets, read-only"),
        public_url=public_url,
        uid=t.str("uid", "nobody", allow_empty=False),
        gid=t.str("gid", "nogroup", allow_empty=False),
        max_connections=t.int("max_connections", 20, min=0),
        hosts_allow=t.str_list("hosts_allow", []),
        use_chroot=t.bool("use_chroot", True),
    )
    if cfg.path is not None and not cfg.path.is_absolute():
        raise t.error("path", f"must be an absolute path on the serving host, got {path!r}")
    t.finish()
    return cfg


def parse_archive(t: Table) -> ArchiveConfig:
    dirs = t.str_list("build_dirs", ["raw", "upscaled", "compress", "text"])
    for d in dirs:
        if not NAME_RE.match(d):
            raise t.error("build_dirs", f"entries are folder names directly under build/, got {d!r}")
    t.finish()
    return ArchiveConfig(build_dirs=dirs)


def parse_deploy(t: Table) -> DeployConfig:
    targets = t.str_list("targets", [])
    for target in targets:
        if target not in TARGETS:
            raise t.error("targets", f"unknown target {target!r} (choose from {', '.join(TARGETS)})")
    rsync = tuple(parse_rsync_target(r) for r in t.tables("rsync", []))
    names = [r.name for r in rsync]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise t.error("rsync", f"two targets are named {dup!r}")
    cfg = DeployConfig(
        targets=targets,
        s3=parse_s3(t.table("s3")),
        cloudflare=parse_cloudflare(t.table("cloudflare")),
        rsync=rsync,
        mirror=parse_mirror(t.table("mirror")),
        archive=parse_archive(t.table("archive")),
    )
    if "s3" in targets and cfg.s3 is None:
        raise t.error("targets", "names 's3' but there is no [deploy.s3] section")
    if "rsync" in targets and not cfg.rsync:
        raise t.error("targets", "names 'rsync' but there is no [[deploy.rsync]] target")
    t.finish()
    return cfg
