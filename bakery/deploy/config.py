"""The [deploy] section: S3 (+ CloudFlare purge), rsync mirror targets, mirror module, archive.

Every key is documented in docs/deploy.md. Secrets never live here: the CloudFlare token is
read from the environment variable *named* by `token_env`, AWS credentials come from boto3's
standard chain, and an rsync daemon password from rsync's own RSYNC_PASSWORD.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from bakery.errors import ConfigError
from bakery.published import DEFAULT_CONTENT_TYPES
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

# Matched with fullmatch, never match + "$" ("$" also matches before a final newline).
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
BUCKET_RE = re.compile(r"[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]")
DEFAULT_MAX_DELETES = 1000  # S3 and rsync alike: a wrong destination cannot wipe a large mirror


@dataclass(frozen=True)
class S3Config:
    bucket: str
    prefix: str
    region: str | None
    endpoint_url: str | None
    concurrency: int
    multipart_threshold: int  # bytes
    multipart_chunk: int  # bytes
    delete: bool  # delete remote keys public/ no longer has (the --delete/--no-delete flag overrides)
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
    destination: str  # as rsync gets it: a local destination is absolute (resolved against the root)
    delete: bool
    max_deletes: int
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
    try:
        parts = urlsplit(value)
    except ValueError:  # "http://[::1": an unclosed IPv6 bracket
        parts = None
    if value and (parts is None or parts.scheme not in ("http", "https") or not parts.netloc):
        raise t.error(name, f"must be an http:// or https:// URL, got {value!r}")
    return value.rstrip("/")


# Loopback literals only (not "localhost", which a hosts file can point anywhere): the tests' fake API.
LOOPBACK_HOSTS = ("127.0.0.1", "::1")


def https_url(t: Table, name: str, default: str = "") -> str:
    """A URL that a secret is sent to: https only, since over http:// the token would cross the
    network in clear. Plain http is allowed to a loopback address, where it never leaves the machine."""
    value = http_url(t, name, default)
    parts = urlsplit(value)
    if value and parts.scheme != "https" and parts.hostname not in LOOPBACK_HOSTS:
        raise t.error(name, f"must be an https:// URL (the API token would be sent in clear over "
                            f"http://; plain http is allowed to 127.0.0.1 only), got {value!r}")
    return value


def ordered_map(t: Table, name: str, defaults: dict[str, str]) -> dict[str, str]:
    """The user's entries first (in file order), then the defaults they do not override."""
    mine = t.str_map(name, {})
    return {**mine, **{k: v for k, v in defaults.items() if k not in mine}}


def parse_s3(t: Table) -> S3Config | None:
    if not t.data:
        return None
    bucket = t.str("bucket", allow_empty=False)
    if not BUCKET_RE.fullmatch(bucket):
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
        delete=t.bool("delete", False),
        max_deletes=t.int("max_deletes", DEFAULT_MAX_DELETES, min=0),
        trust_state=t.bool("trust_state", False),
        exclude=t.str_list("exclude", []),
        upload_last=t.str_list("upload_last", ["index.html", "grid.html"]),
        cache_control=ordered_map(t, "cache_control", DEFAULT_CACHE_CONTROL),
        content_types={k.lower(): v for k, v in content_types.items()},
    )
    t.finish()
    return cfg


def looks_like_a_token(name: str) -> bool:
    """Variable names are short and upper-case by convention; API tokens are long mixed-case
    letters and digits, and one pasted here must not be printed back in an error."""
    return len(name) >= 24 and any(c.islower() for c in name) and sum(c.isdigit() for c in name) >= 4


def parse_cloudflare(t: Table) -> CloudflareConfig | None:
    if not t.data:
        return None
    token_env = t.str("token_env", "CLOUDFLARE_API_TOKEN", allow_empty=False)
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", token_env) or looks_like_a_token(token_env):
        # Not echoed: what lands here by mistake is usually the token itself.
        raise t.error("token_env", "must be the NAME of an environment variable (letters, digits, '_'), "
                                   "not the token itself: export the token and name its variable here")
    cfg = CloudflareConfig(
        zone_id=t.str("zone_id", allow_empty=False).strip(),
        token_env=token_env,
        purge=t.str("purge", "changed", choices=PURGE_MODES),
        base_url=http_url(t, "base_url"),
        api_url=https_url(t, "api_url", "https://api.cloudflare.com/client/v4"),
        batch_size=t.int("batch_size", 30, min=1, max=500),
        max_urls=t.int("max_urls", 3000, min=1),
        timeout_seconds=t.float("timeout_seconds", 30.0, min=1, max=600),
    )
    t.finish()
    return cfg


def parse_extra_trees(t: Table) -> dict[str, Path]:
    trees = {}
    for sub, local in t.str_map("extra_trees", {}).items():
        if not all(NAME_RE.fullmatch(part) for part in sub.strip("/").split("/")):
            raise t.error("extra_trees", f"destination subfolder {sub!r} must be a plain relative path")
        path = Path(local).expanduser()
        trees[sub.strip("/")] = path if path.is_absolute() else t.root / path
    return trees


def parse_rsync_target(t: Table) -> RsyncTarget:
    name = t.str("name", allow_empty=False)
    if not NAME_RE.fullmatch(name):
        raise t.error("name", f"use letters, digits, '.', '_', '-' only, got {name!r}")
    delete = t.bool("delete", False)
    target = RsyncTarget(
        name=name,
        destination=parse_destination(t, delete),
        delete=delete,
        max_deletes=t.int("max_deletes", DEFAULT_MAX_DELETES, min=0),
        extra_trees=parse_extra_trees(t),
        extra_args=t.str_list("extra_args", []),
        timeout_seconds=t.int("timeout_seconds", 300, min=0),
    )
    t.finish()
    return target


def parse_mirror(t: Table) -> MirrorConfig:
    module = t.str("module", "waifus", allow_empty=False)
    if not NAME_RE.fullmatch(module):
        raise t.error("module", f"use letters, digits, '.', '_', '-' only, got {module!r}")
    public_url = t.str("public_url", "").strip()
    if public_url and not public_url.startswith("rsync://"):
        raise t.error("public_url", f"must start with rsync://, got {public_url!r}")
    path = t.str("path", "").strip()
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
        if not NAME_RE.fullmatch(d):
            raise t.error("build_dirs", f"entries are folder names directly under build/, got {d!r}")
    t.finish()
    return ArchiveConfig(build_dirs=dirs)


def parse_deploy(t: Table) -> DeployConfig:
    refuse_control_characters(t, t.data)
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


# ---------------------------------------------------------------- values that reach rsyncd.conf or argv

def control_character(value: str) -> str | None:
    """The first control character (C0, DEL, C1, line/paragraph separator) in value, or None."""
    for ch in value:
        if unicodedata.category(ch) == "Cc" or ch in "\u2028\u2029":
            return ch
    return None


def single_line(where: str, value: str) -> str:
    """value, or a ConfigError naming `where`: a newline would add whole lines to rsyncd.conf,
    and no destination, path, header or option needs a control character."""
    ch = control_character(value)
    if ch is not None:
        raise ConfigError(f"{where}: contains the control character U+{ord(ch):04X}: "
                          "values written into rsyncd.conf, headers or command lines must be plain text")
    return value


def refuse_control_characters(t: Table, value, key: str = "") -> None:
    """Every string (and table key) anywhere under [deploy], checked before any is used."""
    if isinstance(value, str):
        single_line(f"{t.source}: {t.key(key)}", value)
    elif isinstance(value, dict):
        for k, v in value.items():
            sub = f"{key}.{k}" if key else str(k)
            if control_character(str(k)) is not None:
                single_line(f"{t.source}: {t.key(key or '(key)')}", str(k))
            refuse_control_characters(t, v, sub)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            refuse_control_characters(t, v, f"{key}[{i}]")


# ---------------------------------------------------------------- rsync destinations

@dataclass(frozen=True)
class Destination:
    host: str | None  # None: a local folder
    path: str  # the local path, the remote path, or the daemon module path
    daemon: bool  # host::module or rsync://host/module


def split_destination(dest: str) -> Destination:
    """How rsync itself reads a destination: rsync:// URL, host::module, [user@]host:path or local."""
    if dest.lower().startswith("rsync://"):
        parts = urlsplit(dest)
        return Destination(parts.netloc.rpartition("@")[2].split(":")[0], parts.path, True)
    colon, slash = dest.find(":"), dest.find("/")
    if colon >= 0 and (slash < 0 or colon < slash):
        host = dest[:colon].rpartition("@")[2]
        if dest[colon:colon + 2] == "::":
            return Destination(host, dest[colon + 2:], True)
        return Destination(host, dest[colon + 1:], False)
    return Destination(None, dest, False)


def parse_destination(t: Table, delete: bool) -> str:
    raw = t.str("destination", allow_empty=False).strip()
    if raw.startswith("-"):
        raise t.error("destination", f"must not begin with '-' (rsync would read it as an option): {raw!r}")
    dest = split_destination(raw)
    if dest.host is not None and (not dest.host or dest.host.startswith("-")):
        raise t.error("destination", f"the host part must not be empty or begin with '-' "
                                     f"(ssh would read it as an option): {raw!r}")
    if dest.host is None:  # local: relative to the project root, like every path in site.toml
        local = Path(raw).expanduser()
        raw = str(local if local.is_absolute() else t.root / local) + ("/" if raw.endswith("/") else "")
    problem = delete_target_problem(raw, t.root, ()) if delete else None
    if problem:
        raise t.error("destination", f"with delete = true: {problem}")
    return raw


def delete_target_problem(destination: str, root: Path, own_folders) -> str | None:
    """Why deleting everything public/ lacks inside `destination` would destroy something, or None.

    own_folders: (name, path) pairs of the project's folders (known once the site is parsed).
    """
    dest = split_destination(destination)
    if dest.host is not None:
        if not dest.daemon and dest.path.strip().rstrip("/") in ("", ".", "~"):
            return f"refusing to delete into the remote root, home or '.' folder: {destination!r}"
        return None
    where = Path(dest.path).resolve()
    if where == Path(where.anchor):
        return f"refusing to delete into the file system root {where}"
    if where == root.resolve() or where in root.resolve().parents:
        return f"refusing to delete into {where}: it holds this project ({root})"
    for name, folder in own_folders:
        folder = Path(folder).resolve()
        if where == folder or folder in where.parents:
            return f"refusing to delete into {where}: it is this project's {name} folder"
    return None
