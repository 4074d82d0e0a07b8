"""`bakery deploy rsync` (push public/ to mirrors) and `bakery mirror-config` (serve one).

Each target gets `rsync --recursive --times --partial --delay-updates`: quick-checks by size
and mtime, resumes a broken transfer, and moves files into place only at the end, so a
mirror never serves half a file. Deleting is opt-in per target (`delete = true`) and runs
after the transfer (--delete-delay). Extra trees (e.g. older generations kept elsewhere) go
to subfolders of the same destination and are protected from the main tree's --delete.
A failed mirror is reported and the others still run; the command fails at the end.
"""

from __future__ import annotations

import gzip
import io
import logging
import re
import shutil
import subprocess
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

from bakery.errors import BakeryError, StageFailures
from bakery.fsutil import write_bytes_atomic, write_text_atomic

log = logging.getLogger("bakery.deploy")

# rsync(1) EXIT VALUES, for a report a human can act on.
EXIT_MEANINGS = {
    1: "syntax or usage error", 2: "protocol incompatibility", 3: "errors selecting input/output files",
    5: "error starting client-server protocol", 10: "error in socket I/O (is the server up?)",
    11: "error in file I/O", 12: "error in rsync protocol data stream", 20: "interrupted",
    23: "partial transfer due to error", 24: "some source files vanished", 25: "--max-delete limit stopped deletions",
    30: "timeout in data send/receive", 35: "timeout waiting for daemon connection",
}
STAT_PATTERNS = {
    "files": re.compile(r"Number of regular files transferred:\s*([\d,.]+)"),
    "bytes": re.compile(r"Total transferred file size:\s*([\d,.]+)"),
    "deleted": re.compile(r"Number of deleted files:\s*([\d,.]+)"),
}


@dataclass(frozen=True)
class PushResult:
    target: str
    ok: bool
    files: int = 0
    bytes: int = 0
    deleted: int = 0
    seconds: float = 0.0
    error: str = ""


def rsync_binary() -> str:
    found = shutil.which("rsync")
    if not found:
        raise BakeryError("rsync: command not found: install it (Debian/Ubuntu: apt-get install rsync)")
    return found


def join_destination(destination: str, sub: str = "") -> str:
    base = destination.rstrip("/")
    return f"{base}/{sub}/" if sub else f"{base}/"


def rsync_command(target, source: Path, destination: str, *, dry_run: bool, max_deletes: int | None,
                  protect: tuple[str, ...] = ()) -> list[str]:
    cmd = [rsync_binary(), "--recursive", "--times", "--partial", "--delay-updates", "--stats",
           "--exclude=.tmp-*", "--exclude=.archiving-*"]  # leftovers of interrupted writes/archives
    if target.timeout_seconds:
        cmd.append(f"--timeout={target.timeout_seconds}")
    if target.delete:
        cmd.append("--delete-delay")
        cmd += [f"--filter=P /{sub}/" for sub in protect]
        if max_deletes is not None:
            cmd.append(f"--max-delete={max_deletes}")
    if dry_run:
        cmd += ["--dry-run", "--itemize-changes"]
    cmd += list(target.extra_args)
    cmd += [f"{source}/", destination]
    return cmd


def parse_stats(output: str) -> dict[str, int]:
    stats = {}
    for name, pattern in STAT_PATTERNS.items():
        m = pattern.search(output)
        stats[name] = int(re.sub(r"[,.]", "", m.group(1))) if m else 0
    return stats


def failure_text(code: int, stderr: str) -> str:
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    detail = next((line for line in lines if not line.startswith("rsync error:")), lines[-1] if lines else "")
    return f"exit {code} ({EXIT_MEANINGS.get(code, 'rsync error')}){': ' + detail if detail else ''}"


def run_rsync(cmd: list[str], dry_run: bool) -> tuple[int, str, str]:
    log.debug("rsync: %s", " ".join(cmd))
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, errors="replace")
    if dry_run:
        changes = proc.stdout.split("\nNumber of files:", 1)[0].strip()  # the itemized list, not --stats
        if changes:
            print(changes)
    return proc.returncode, proc.stdout, proc.stderr


def push_target(target, public: Path, dry_run: bool, max_deletes: int | None) -> PushResult:
    """public/ first, then each extra tree into its subfolder; stops at the first failure."""
    t0 = time.monotonic()
    trees = [(public, "")] + [(local, sub) for sub, local in sorted(target.extra_trees.items())]
    totals = {"files": 0, "bytes": 0, "deleted": 0}
    for local, sub in trees:
        protect = tuple(sorted(target.extra_trees)) if not sub else ()
        cmd = rsync_command(target, local, join_destination(target.destination, sub), dry_run=dry_run,
                            max_deletes=max_deletes, protect=protect)
        code, out, err = run_rsync(cmd, dry_run)
        if code != 0:
            where = f" (extra tree {sub!r})" if sub else ""
            return PushResult(target.name, False, seconds=time.monotonic() - t0,
                              error=f"{failure_text(code, err)}{where}")
        for name, value in parse_stats(out).items():
            totals[name] += value
    return PushResult(target.name, True, seconds=time.monotonic() - t0, **totals)


def check_trees(config) -> None:
    public = config.public_dir
    if not (public / "index.html").is_file():
        raise BakeryError(f"{public / 'index.html'}: not found: run `bakery site` (or `make bake`) before deploying")
    for i, target in enumerate(config.deploy.rsync):
        for sub, local in target.extra_trees.items():
            if not local.is_dir():
                raise BakeryError(f"{config.source}: deploy.rsync[{i}].extra_trees.{sub}: folder not found: {local}")


def human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


def deploy_rsync(config, dry_run: bool = False, max_deletes: int | None = None) -> list[PushResult]:
    targets = config.deploy.rsync
    if not targets:
        raise BakeryError(f"{config.source}: deploy.rsync: no [[deploy.rsync]] target configured")
    check_trees(config)
    rsync_binary()
    results = []
    for target in targets:
        result = push_target(target, config.public_dir, dry_run, max_deletes)
        results.append(result)
        if result.ok:
            log.info("rsync %s: %d files (%s) %s, %d deleted, %.1f s → %s", target.name, result.files,
                     human(result.bytes), "would be sent" if dry_run else "sent", result.deleted,
                     result.seconds, target.destination)
        else:
            log.error("rsync %s: FAILED, %s → %s", target.name, result.error, target.destination)
    failed = [r for r in results if not r.ok]
    if failed:
        raise StageFailures(f"rsync: {len(failed)} of {len(results)} mirror(s) failed: "
                            + "; ".join(f"{r.target}: {r.error}" for r in failed))
    return results


def run_deploy_rsync(config, args) -> None:
    deploy_rsync(config, dry_run=args.dry_run, max_deletes=args.max_deletes)


# ---------------------------------------------------------------- serving a mirror

def module_text(config, module: str) -> str:
    m = config.deploy.mirror
    path = m.path or config.public_dir
    url = m.public_url or f"rsync://HOST/{module}/"
    lines = [
        f"# rsync module written by `bakery mirror-config` from {config.source}.",
        "# Append it to /etc/rsyncd.conf (or &include the folder holding it), then restart the",
        "# daemon (systemctl restart rsync). Anyone can then fetch every image and snippet with:",
        f"#   rsync --recursive --times {url} {module}/",
        f"[{module}]",
        f"    path = {path}",
        f"    comment = {m.comment}",
        "    read only = yes",
        "    write only = no",
        "    list = yes",
        f"    use chroot = {'yes' if m.use_chroot else 'no'}",
        f"    uid = {m.uid}",
        f"    gid = {m.gid}",
        f"    max connections = {m.max_connections}",
        "    timeout = 600",
        "    exclude = .tmp-* .archiving-*",
        "    dont compress = *.jpg *.jpeg *.png *.webp *.gz *.mp4",
        "    transfer logging = no",
    ]
    if m.hosts_allow:
        lines.append(f"    hosts allow = {' '.join(m.hosts_allow)}")
    return "\n".join(lines) + "\n"


def snippet_sort_key(path: Path):
    digits = path.stem.removeprefix("snippet-")
    return (0, int(digits), "") if digits.isdigit() else (1, 0, path.name)


def snippets_tarball(public: Path) -> tuple[bytes, int]:
    """A reproducible snippets.tar.gz of public/snippet-*.txt (same snippets → same bytes)."""
    snippets = sorted(public.glob("snippet-*.txt"), key=snippet_sort_key)
    buffer = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buffer, mtime=0) as gz:
        with tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for path in snippets:
                data = path.read_bytes()
                info = tarfile.TarInfo(f"snippets/{path.name}")
                info.size, info.mode, info.mtime = len(data), 0o644, int(path.stat().st_mtime)
                tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue(), len(snippets)


def write_snippets_tarball(public: Path) -> tuple[Path, int, bool]:
    """(path, snippet count, whether it changed); an unchanged tarball keeps its mtime."""
    data, count = snippets_tarball(public)
    target = public / "snippets.tar.gz"
    if target.is_file() and target.read_bytes() == data:
        return target, count, False
    write_bytes_atomic(target, data)
    return target, count, True


def run_mirror_config(config, args) -> None:
    module = args.module or config.deploy.mirror.module
    if not re.match(r"^[A-Za-z0-9][A-Za-z0-9._-]*$", module):
        raise BakeryError(f"--module: use letters, digits, '.', '_', '-' only, got {module!r}")
    out = args.out or config.build_dir / "rsyncd.conf"
    write_text_atomic(out, module_text(config, module))
    log.info("mirror: wrote rsync module [%s] serving %s to %s", module,
             config.deploy.mirror.path or config.public_dir, out)
    if args.snippets_tarball:
        path, count, changed = write_snippets_tarball(config.public_dir)
        log.info("mirror: %s %s (%d snippets)", "wrote" if changed else "unchanged", path, count)
    url = config.deploy.mirror.public_url or f"rsync://HOST/{module}/"
    log.info("mirror: download command: rsync --recursive --times %s %s/", url, module)
