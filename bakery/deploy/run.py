"""`bakery deploy [s3|rsync|all]`: the preflight once, then each target in turn.

A target is a module with two functions, `problems(config, options) -> list[str]` (what would
stop it: credentials, destinations; nothing is sent) and `push(config, options)`. Every
chosen target's problems are collected before any target pushes (bakery/deploy/preflight.py),
so a missing credential for the second target stops the first one too. A target that fails
while pushing does not stop the others; the command fails at the end.
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass

from bakery.deploy.preflight import check_before_deploy
from bakery.errors import BakeryError

log = logging.getLogger("bakery.deploy")

# target name (deploy.targets) → its module; imported only when chosen (S3 needs boto3).
TARGET_MODULES = {"s3": "bakery.deploy.s3", "rsync": "bakery.deploy.rsync"}


@dataclass(frozen=True)
class DeployOptions:
    """The `bakery deploy` flags every target reads (None: the target's config key decides)."""

    dry_run: bool = False
    delete: bool | None = None
    max_deletes: int | None = None
    allow_empty: bool = False
    purge_everything: bool = False
    trust_state: bool = False
    quiet: bool = False

    @classmethod
    def from_args(cls, args) -> DeployOptions:
        return cls(dry_run=args.dry_run, delete=getattr(args, "delete", None),
                   max_deletes=getattr(args, "max_deletes", None), allow_empty=getattr(args, "allow_empty", False),
                   purge_everything=getattr(args, "purge_everything", False),
                   trust_state=getattr(args, "trust_state", False), quiet=getattr(args, "quiet", False))


def chosen_targets(config, target: str) -> list[str]:
    names = [target] if target != "all" else list(config.deploy.targets)
    if not names:
        raise BakeryError(f"{config.source}: deploy.targets is empty: nothing to deploy "
                          "(set targets = [\"s3\"] and/or [\"rsync\"], or name one: bakery deploy s3)")
    return names


def deploy(config, names: list[str], options: DeployOptions) -> None:
    """Check every chosen target, then push to each; BakeryError naming the targets that failed."""
    targets = {name: importlib.import_module(TARGET_MODULES[name]) for name in names}
    check_before_deploy(config, targets, options)  # every credential and destination, before any upload
    failures = []
    for name, target in targets.items():
        try:
            target.push(config, options)
        except BakeryError as exc:
            if len(targets) == 1:
                raise
            log.error("deploy %s failed: %s", name, exc)
            failures.append(name)
    if failures:
        raise BakeryError(f"deploy failed for: {', '.join(failures)}")


def run_deploy(config, args) -> None:
    deploy(config, chosen_targets(config, args.target), DeployOptions.from_args(args))
