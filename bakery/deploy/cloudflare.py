"""CloudFlare cache purge after a deploy: the changed URLs in batches, or everything.

API: POST {api_url}/zones/{zone_id}/purge_cache with a Bearer token and either
{"files": [...urls]} or {"purge_everything": true}. The number of URLs per request is
capped by the plan (30 for years; CloudFlare's current docs say 100 on Free/Pro/Business and
500 on Enterprise), so batch_size defaults to 30, which every plan accepts. The token is read
from the environment variable named in config, here at the edge, and never logged; every error
message goes through bakery.redact (a CloudFlare error body may echo the request's headers).
"""

from __future__ import annotations

import json
import logging
import os
import time
import urllib.error
import urllib.request
from urllib.parse import quote

from bakery.errors import BakeryError, ConfigError
from bakery.redact import redact, remember

log = logging.getLogger("bakery.deploy")

RETRIES = 3  # for 429 (rate limited) and 5xx answers
MAX_WAIT_S = 60.0


class PurgeError(BakeryError):
    pass


def read_token(cf) -> str:
    token = os.environ.get(cf.token_env, "").strip()
    if not token:
        raise PurgeError(f"cloudflare: environment variable {cf.token_env} is not set "
                         "(an API token with the Zone.Cache Purge permission; see deploy.cloudflare.token_env)")
    remember(token)
    return token


def urls_for(base_url: str, rels: list[str]) -> list[str]:
    """Public URLs of files below public/; an index.html is also purged as its folder URL."""
    urls: list[str] = []
    for rel in rels:
        path = quote(rel)
        urls.append(f"{base_url}/{path}")
        if rel == "index.html" or rel.endswith("/index.html"):
            urls.append(f"{base_url}/{path[: -len('index.html')]}")
    return list(dict.fromkeys(urls))


def error_text(status: int | str, body: bytes) -> str:
    """One line: HTTP status and CloudFlare's own error messages when the body has them."""
    try:
        doc = json.loads(body.decode("utf-8"))
        errors = doc.get("errors") or []
        detail = "; ".join(f"{e.get('message', '?')} (code {e.get('code', '?')})" for e in errors if isinstance(e, dict))
    except (ValueError, UnicodeDecodeError, AttributeError):
        detail = body.decode("utf-8", "replace").strip().splitlines()[0][:200] if body.strip() else ""
    return f"HTTP {status}: {detail or 'no error message'}"


def retry_wait(exc: urllib.error.HTTPError, attempt: int) -> float:
    try:
        return min(float(exc.headers.get("Retry-After", "")), MAX_WAIT_S)
    except ValueError:
        return min(2.0 ** attempt, MAX_WAIT_S)


def post(cf, token: str, body: dict) -> None:
    url = f"{cf.api_url}/zones/{quote(cf.zone_id, safe='')}/purge_cache"
    data = json.dumps(body).encode("utf-8")
    for attempt in range(RETRIES + 1):
        request = urllib.request.Request(url, data=data, method="POST", headers={
            "Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=cf.timeout_seconds) as response:
                answer = response.read()
            status = response.status
        except urllib.error.HTTPError as exc:
            if (exc.code == 429 or exc.code >= 500) and attempt < RETRIES:
                time.sleep(retry_wait(exc, attempt))
                continue
            raise PurgeError(redact(f"cloudflare: purge failed: {error_text(exc.code, exc.read())}", [token])) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise PurgeError(redact(f"cloudflare: purge failed: cannot reach {cf.api_url}: {reason}", [token])) from None
        try:
            ok = json.loads(answer.decode("utf-8")).get("success") is True
        except (ValueError, UnicodeDecodeError, AttributeError):
            ok = False
        if not ok:
            raise PurgeError(redact(f"cloudflare: purge failed: {error_text(status, answer)}", [token]))
        return


def purge_urls(cf, token: str, urls: list[str]) -> int:
    """Purge in batches of cf.batch_size; returns the number of requests sent."""
    batches = [urls[i:i + cf.batch_size] for i in range(0, len(urls), cf.batch_size)]
    for batch in batches:
        post(cf, token, {"files": batch})
    return len(batches)


def purge_everything(cf, token: str) -> None:
    post(cf, token, {"purge_everything": True})


def purge_problems(config, everything: bool) -> list[str]:
    """What a purge after this deploy would need and lacks: the token, and the URL base (for
    `purge = "changed"`); checked before the deploy uploads anything."""
    from bakery.deploy.purgequeue import load_pending

    cf = config.deploy.cloudflare
    if cf is None:
        return [f"{config.source}: deploy.cloudflare: --purge-everything needs a [deploy.cloudflare] section"] \
            if everything else []
    owed = load_pending(config.build_dir, cf.zone_id)
    if cf.purge == "none" and not everything and not owed:
        return []
    problems = []
    if not os.environ.get(cf.token_env, "").strip():
        problems.append(f"cloudflare: environment variable {cf.token_env} is not set (an API token with "
                        "the Zone.Cache Purge permission; see deploy.cloudflare.token_env)")
    if cf.purge == "changed" and not (cf.base_url or config.site.base_url):
        problems.append(f"{config.source}: deploy.cloudflare.base_url: needed to build the URLs to purge "
                        "(or set site.base_url)")
    return problems


def purge_after_deploy(config, changed_rels: list[str], everything: bool = False) -> None:
    cf = config.deploy.cloudflare
    if cf is None:
        raise ConfigError(f"{config.source}: deploy.cloudflare: --purge-everything needs a [deploy.cloudflare] section")
    if not everything and (cf.purge == "none" or not changed_rels):
        log.info("cloudflare: nothing to purge")
        return
    token = read_token(cf)
    if everything or cf.purge == "everything":
        purge_everything(cf, token)
        log.info("cloudflare: purged everything in zone %s", cf.zone_id)
        return
    base_url = cf.base_url or config.site.base_url
    if not base_url:
        raise ConfigError(f"{config.source}: deploy.cloudflare.base_url: needed to build the URLs to purge "
                          "(or set site.base_url)")
    urls = urls_for(base_url, changed_rels)
    if len(urls) > cf.max_urls:
        log.info("cloudflare: %d changed URLs is more than max_urls %d: purging everything instead",
                 len(urls), cf.max_urls)
        purge_everything(cf, token)
        return
    requests = purge_urls(cf, token, urls)
    log.info("cloudflare: purged %d URLs in %d request(s)", len(urls), requests)
