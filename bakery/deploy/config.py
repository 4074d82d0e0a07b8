"""The [deploy] section: S3 (+ CloudFlare purge) and rsync mirror targets."""

from __future__ import annotations

from dataclasses import dataclass, field

from bakery.config import Table

TARGETS = ("s3", "rsync")

DEFAULT_CACHE_CONTROL = {
    "index.html": "public, max-age=300",
    "*.html": "public, max-age=300",
    "example-*.jpg": "public, max-age=31536000, immutable",
    "snippet-*.txt": "public, max-age=31536000, immutable",
    "*": "public, max-age=86400",
}


@dataclass(frozen=True)
class S3Config:
    bucket: str
    prefix: str
    region: str | None
    endpoint_url: str | None
    concurrency: int
    cache_control: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class CloudflareConfig:
    zone_id: str
    token_env: str
    purge: str  # "changed" | "everything" | "none"


@dataclass(frozen=True)
class RsyncTarget:
    name: str
    destination: str
    delete: bool


@dataclass(frozen=True)
class DeployConfig:
    targets: tuple[str, ...]
    s3: S3Config | None
    cloudflare: CloudflareConfig | None
    rsync: tuple[RsyncTarget, ...]


def parse_s3(t: Table) -> S3Config | None:
    if not t.data:
        return None
    cache = dict(DEFAULT_CACHE_CONTROL)
    cache.update(t.str_map("cache_control", {}))
    cfg = S3Config(
        bucket=t.str("bucket", allow_empty=False),
        prefix=t.str("prefix", "").strip("/"),
        region=t.str("region", None),
        endpoint_url=t.str("endpoint_url", None),
        concurrency=t.int("concurrency", 16, min=1, max=256),
        cache_control=cache,
    )
    t.finish()
    return cfg


def parse_cloudflare(t: Table) -> CloudflareConfig | None:
    if not t.data:
        return None
    cfg = CloudflareConfig(
        zone_id=t.str("zone_id", allow_empty=False),
        token_env=t.str("token_env", "CLOUDFLARE_API_TOKEN", allow_empty=False),
        purge=t.str("purge", "changed", choices=("changed", "everything", "none")),
    )
    t.finish()
    return cfg


def parse_rsync_target(t: Table) -> RsyncTarget:
    target = RsyncTarget(
        name=t.str("name", allow_empty=False),
        destination=t.str("destination", allow_empty=False),
        delete=t.bool("delete", False),
    )
    t.finish()
    return target


def parse_deploy(t: Table) -> DeployConfig:
    targets = t.str_list("targets", [])
    for target in targets:
        if target not in TARGETS:
            raise t.error("targets", f"unknown target {target!r} (choose from {', '.join(TARGETS)})")
    cfg = DeployConfig(
        targets=targets,
        s3=parse_s3(t.table("s3")),
        cloudflare=parse_cloudflare(t.table("cloudflare")),
        rsync=tuple(parse_rsync_target(r) for r in t.tables("rsync", [])),
    )
    if "s3" in targets and cfg.s3 is None:
        raise t.error("targets", "names 's3' but there is no [deploy.s3] section")
    if "rsync" in targets and not cfg.rsync:
        raise t.error("targets", "names 'rsync' but there is no [[deploy.rsync]] target")
    t.finish()
    return cfg
