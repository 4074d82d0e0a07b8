"""What `bakery deploy` checks before it sends anything, for every target it is about to run.

A deploy that stops half-way is worse than one that never starts: with the CloudFlare token
missing, the old order uploaded everything and then lost the purge. So every credential and
destination the chosen targets need is checked first, and all problems are reported in one
line; nothing has been uploaded, copied or deleted when this fails.

The site itself (index.html, image + snippet pairs) is checked here; each target answers for
its own credentials and destinations through its `problems(config, options)` function. This
module asks the targets it is given (bakery.deploy.run passes them) and imports none of them,
so no target imports it either: each check runs once, in one place.
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


def check_before_deploy(config, targets: dict, options) -> None:
    """BakeryError listing every problem, before any target sends anything.

    targets: name → target module (each has `problems(config, options) -> list[str]`)."""
    problem = site_problem(config, options.allow_empty)
    problems = [problem] if problem else []
    for target in targets.values():
        problems += target.problems(config, options)
    if problems:
        raise BakeryError("deploy: nothing was sent: " + "; ".join(problems))
