"""What `bakery deploy` checks before it sends anything, for every target it is about to run.

A deploy that stops half-way is worse than one that never starts: with the CloudFlare token
missing, the old order uploaded everything and then lost the purge. So every credential and
destination the chosen targets need is checked first, and all problems are reported in one
line; nothing has been uploaded, copied or deleted when this fails.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

from bakery.errors import BakeryError

log = logging.getLogger("bakery.deploy")

IMAGE_RE = re.compile(r"example-(0|[1-9][0-9]*)\.jpg")
SNIPPET_RE = re.compile(r"snippet-(0|[1-9][0-9]*)\.txt")


def published_pairs(public: Path) -> int:
    """Image + snippet pairs at public/'s top level, by canonical name (one directory read)."""
    images, snippets = set(), set()
    with os.scandir(public) as entries:
        for entry in entries:
            if (m := IMAGE_RE.fullmatch(entry.name)) and entry.is_file():
                images.add(m.group(1))
            elif (m := SNIPPET_RE.fullmatch(entry.name)) and entry.is_file():
                snippets.add(m.group(1))
    return len(images & snippets)


def site_problem(config, allow_empty: bool) -> str | None:
    public = config.public_dir
    if not (public / "index.html").is_file():
        return f"{public / 'index.html'}: not found: run `bakery site` (or `make bake`) before deploying"
    if not allow_empty and published_pairs(public) == 0:
        return (f"{public}: no image + snippet pairs: the page would show nothing "
                "(run `make bake`, or pass --allow-empty to publish it anyway)")
    return None


def cloudflare_problems(config, purge_everything: bool) -> list[str]:
    """The token (and the URL base) a purge after this deploy would need."""
    from bakery.deploy.purgequeue import load_pending

    cf = config.deploy.cloudflare
    if cf is None:
        return [f"{config.source}: deploy.cloudflare: --purge-everything needs a [deploy.cloudflare] section"] \
            if purge_everything else []
    owed = load_pending(config.build_dir, cf.zone_id)
    if cf.purge == "none" and not purge_everything and not owed:
        return []
    problems = []
    if not os.environ.get(cf.token_env, "").strip():
        problems.append(f"cloudflare: environment variable {cf.token_env} is not set (an API token with "
                        "the Zone.Cache Purge permission; see deploy.cloudflare.token_env)")
    if cf.purge == "changed" and not (cf.base_url or config.site.base_url):
        problems.append(f"{config.source}: deploy.cloudflare.base_url: needed to build the URLs to purge "
                        "(or set site.base_url)")
    return problems


def s3_problems(config) -> list[str]:
    from bakery.deploy.s3 import aws_session

    if config.deploy.s3 is None:
        return [f"{config.source}: deploy.s3: no [deploy.s3] section: nothing to deploy to"]
    try:
        aws_session(config.deploy.s3)
    except BakeryError as exc:
        return [str(exc)]
    return []


def rsync_problems(config, delete: bool | None) -> list[str]:
    from bakery.deploy.config import delete_target_problem
    from bakery.deploy.rsync import rsync_binary

    problems = []
    try:
        rsync_binary()
    except BakeryError as exc:
        problems.append(str(exc))
    own = [("content", config.root / "content"), ("build", config.build_dir), ("public", config.public_dir),
           ("static", config.site.static_dir), ("templates", config.site.templates_dir)]
    for i, target in enumerate(config.deploy.rsync):
        key = f"{config.source}: deploy.rsync[{i}]"
        for sub, local in target.extra_trees.items():
            if not local.is_dir():
                problems.append(f"{key}.extra_trees.{sub}: folder not found: {local}")
        problem = delete_target_problem(target.destination, config.root, own) \
            if (target.delete if delete is None else delete) else None
        if problem:
            problems.append(f"{key}.destination: with --delete: {problem}")
    return problems


def check_before_deploy(config, targets, *, dry_run: bool = False, allow_empty: bool = False,
                        purge_everything: bool = False, delete: bool | None = None) -> None:
    """BakeryError listing every problem, before any target sends anything."""
    problem = site_problem(config, allow_empty)
    problems = [problem] if problem else []
    if "s3" in targets:
        problems += s3_problems(config)
        purge = cloudflare_problems(config, purge_everything)
        if dry_run:  # the plan can still be shown; the real deploy will refuse
            for p in purge:
                log.warning("deploy: the real deploy would stop here: %s", p)
        else:
            problems += purge
    if "rsync" in targets:
        problems += rsync_problems(config, delete)
    if problems:
        raise BakeryError("deploy: nothing was sent: " + "; ".join(problems))


def check_deploy_args(config, targets, args) -> None:
    """check_before_deploy with the `bakery deploy` command line's flags."""
    check_before_deploy(config, targets, dry_run=args.dry_run, allow_empty=getattr(args, "allow_empty", False),
                        purge_everything=getattr(args, "purge_everything", False),
                        delete=getattr(args, "delete", None))
