"""`bakery deploy rsync` (push public/ to mirrors) and `bakery mirror-config` (serve one).

Each tree (public/, then each extra tree into its subfolder) goes up in passes, all with
`rsync --recursive --times --partial-dir=.rsync-partial --delay-updates`: quick-checks by
size and mtime, resumes a broken transfer from the partial-dir, and moves files into place
only at the end of a pass, so a mirror never serves half a file.
  0. with deleting on: a dry run counts the deletions; more than max_deletes stops the
     target before anything changes (the same rule as the S3 deploy);
  1. everything except the entry pages (*.html);
  2. the whole tree again, which now sends only the entry pages, plus the deletions
     (--delete-delay): a new index.html goes live only after every file it references;
  3. a clean-up that deletes nothing but leftovers of killed pushes: the partial-dir and
     rsync's own temp files (.NAME.XXXXXX), which the mirror would otherwise serve.
Deleting follows one rule for every target: --delete/--no-delete when given, else the
target's `delete` key. A failed mirror is reported and the others still run; the command
fails at the end.
"""

from __future__ import annotations

import gzip
import io
import logging
import os
import re
import shutil
import subprocess
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

from bakery.deploy.config import NAME_RE, delete_target_problem, single_line
from bakery.errors import BakeryError, StageFailures
from bakery.fsutil import write_bytes_atomic, write_text_atomic
from bakery.progress import spinner
from bakery.redact import redact, remember
from bakery.sizes import human_bytes

log = logging.getLogger("bakery.deploy")

PARTIAL_DIR = ".rsync-partial"
TEMP_FILES = ".*.??????"  # rsync's in-flight copies, .NAME.XXXXXX beside the file
ENTRY_PAGES = "*.html"  # pushed last: they reference everything else
NEVER_SENT = (".tmp-*", ".archiving-*")  # leftovers of interrupted writes/archives
# Served by nobody: a killed push's leftovers until the next push cleans them.
NEVER_SERVED = NEVER_SENT + (f"{PARTIAL_DIR}/", ".~tmp~/", TEMP_FILES)

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
# --itemize-changes: 11 flag characters and a space, or "*deleting" padded to the same width.
ITEM_RE = re.compile(r"(?P<flags>[<>ch.][fdLDS][^ ]{9}|\*deleting  ) (?P<name>.+)")


@dataclass(frozen=True)
class PushResult:
    target: str
    ok: bool
    files: int = 0
    bytes: int = 0
    deleted: int = 0
    seconds: float = 0.0
    error: str = ""


class PushFailed(Exception):
    pass


def rsync_binary() -> str:
    found = shutil.which("rsync")
    if not found:
        raise BakeryError("rsync: command not found: install it (Debian/Ubuntu: apt-get install rsync)")
    return found


def join_destination(destination: str, sub: str = "") -> str:
    base = destination.rstrip("/")
    return f"{base}/{sub}/" if sub else f"{base}/"


def common_options(target) -> list[str]:
    cmd = [rsync_binary(), "--recursive"]
    if target.timeout_seconds:
        cmd.append(f"--timeout={target.timeout_seconds}")
    return cmd + list(target.extra_args)


def transfer_command(target, source: Path, destination: str, *, delete: bool, max_deletes: int,
                     protect: tuple[str, ...] = (), entry_pages_too: bool = True,
                     dry_run: bool = False) -> list[str]:
    cmd = common_options(target) + ["--times", f"--partial-dir={PARTIAL_DIR}", "--delay-updates", "--stats"]
    cmd += [f"--exclude={p}" for p in NEVER_SENT]
    if not entry_pages_too:
        cmd.append(f"--exclude={ENTRY_PAGES}")
    if delete:
        cmd.append("--delete-delay")
        cmd += [f"--filter=P /{sub}/" for sub in protect]
    if dry_run:
        cmd += ["--dry-run", "--itemize-changes"]  # lists every deletion: they are counted, not capped
    elif delete:
        cmd.append(f"--max-delete={max_deletes}")  # a second guard behind the counted dry run
    return cmd + ["--", f"{source}/", destination]  # "--": nothing after it is an option


def cleanup_command(target, source: Path, destination: str) -> list[str]:
    """Transfers nothing (--existing --ignore-existing) and deletes only what the filters leave
    unprotected: partial-dirs and rsync temp files."""
    return common_options(target) + [
        "--existing", "--ignore-existing", "--delete",
        f"--filter=R {PARTIAL_DIR}/***", f"--filter=R {TEMP_FILES}", "--filter=P *",
        "--", f"{source}/", destination]


def parse_stats(output: str) -> dict[str, int]:
    stats = {}
    for name, pattern in STAT_PATTERNS.items():
        m = pattern.search(output)
        stats[name] = int(re.sub(r"[,.]", "", m.group(1))) if m else 0
    return stats


def planned_changes(output: str, sub: str = "") -> list[str]:
    """`upload: REL` / `delete: REL` lines from a dry run's itemized output, like `aws s3 sync --dryrun`."""
    lines = []
    for line in output.splitlines():
        m = ITEM_RE.fullmatch(line)
        if not m or m.group("name").endswith("/"):
            continue  # folders, and --stats
        rel = f"{sub}/{m.group('name')}" if sub else m.group("name")
        if m.group("flags").startswith("*"):
            lines.append(f"delete: {rel}")
        elif m.group("flags")[1] == "f" and m.group("flags")[0] in "<>":
            lines.append(f"upload: {rel}")
    return lines


def failure_text(code: int, stderr: str) -> str:
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    detail = next((line for line in lines if not line.startswith("rsync error:")), lines[-1] if lines else "")
    return redact(f"exit {code} ({EXIT_MEANINGS.get(code, 'rsync error')}){': ' + detail if detail else ''}")


def run_rsync(cmd: list[str], what: str) -> str:
    """rsync's stdout; PushFailed naming the pass when it fails."""
    log.debug("rsync: %s", redact(" ".join(cmd)))
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, errors="replace")
    if proc.returncode != 0:
        raise PushFailed(f"{failure_text(proc.returncode, proc.stderr)} ({what})")
    return proc.stdout


def push_tree(target, local: Path, sub: str, *, delete: bool, max_deletes: int,
              protect: tuple[str, ...], dry_run: bool, quiet: bool = False) -> dict[str, int]:
    """One tree, in the passes described at the top; returns transferred files, bytes, deletions."""
    destination = join_destination(target.destination, sub)
    where = f" (extra tree {sub!r})" if sub else ""

    def run_pass(cmd: list[str], what: str) -> str:
        # A pass over a slow link is silent for minutes: a spinner with elapsed time per pass,
        # and its duration in the debug log.
        with spinner(f"rsync {target.name}: {what}", quiet=quiet) as pass_time:
            out = run_rsync(cmd, what)
        log.debug("rsync %s: %s took %.1f s", target.name, what, pass_time.elapsed)
        return out

    def command(**kw):
        return transfer_command(target, local, destination, delete=delete, max_deletes=max_deletes,
                                protect=protect, **kw)

    if dry_run or delete:
        out = run_pass(command(dry_run=True), f"dry run{where}")
        changes = planned_changes(out, sub)
        deletions = sum(line.startswith("delete: ") for line in changes)
        if dry_run:
            for line in changes:
                print(line)
        if delete and deletions > max_deletes:
            raise PushFailed(f"{deletions} files would be deleted{where}, more than --max-deletes "
                             f"{max_deletes}: nothing was changed (raise the cap, or check the destination)")
        if dry_run:
            stats = parse_stats(out)
            return {"files": stats["files"], "bytes": stats["bytes"], "deleted": deletions}
    totals = {"files": 0, "bytes": 0, "deleted": 0}
    for what, cmd in ((f"pass 1, all but {ENTRY_PAGES}", command(entry_pages_too=False)),
                      (f"pass 2, {ENTRY_PAGES}{' and deletions' if delete else ''}", command())):
        for name, value in parse_stats(run_pass(cmd, what + where)).items():
            totals[name] += value
    run_pass(cleanup_command(target, local, destination), f"clean-up of {PARTIAL_DIR} and temp files{where}")
    return totals


def push_target(target, public: Path, dry_run: bool, delete: bool, max_deletes: int,
                quiet: bool = False) -> PushResult:
    """public/ first, then each extra tree into its subfolder; stops at the first failure."""
    t0 = time.monotonic()
    trees = [(public, "")] + [(local, sub) for sub, local in sorted(target.extra_trees.items())]
    totals = {"files": 0, "bytes": 0, "deleted": 0}
    for local, sub in trees:
        protect = tuple(sorted(target.extra_trees)) if not sub else ()
        try:
            done = push_tree(target, local, sub, delete=delete, max_deletes=max_deletes,
                             protect=protect, dry_run=dry_run, quiet=quiet)
        except PushFailed as exc:
            return PushResult(target.name, False, seconds=time.monotonic() - t0, error=str(exc))
        for name, value in done.items():
            totals[name] += value
    return PushResult(target.name, True, seconds=time.monotonic() - t0, **totals)


def effective_delete(target, delete: bool | None, max_deletes: int | None) -> tuple[bool, int]:
    """The one rule for every target: a flag given on the command line wins over the config key."""
    return (target.delete if delete is None else delete,
            target.max_deletes if max_deletes is None else max_deletes)


def problems(config, options) -> list[str]:
    """What would stop this target (bakery.deploy.preflight asks before anything is sent): no
    mirror configured, no rsync binary, a missing extra tree, or deleting (--delete or the
    target's key) into this project's own folders."""
    found = []
    if not config.deploy.rsync:
        found.append(f"{config.source}: deploy.rsync: no [[deploy.rsync]] target configured")
    try:
        rsync_binary()
    except BakeryError as exc:
        found.append(str(exc))
    own = [("content", config.root / "content"), ("build", config.build_dir), ("public", config.public_dir),
           ("static", config.site.static_dir), ("templates", config.site.templates_dir)]
    for i, target in enumerate(config.deploy.rsync):
        key = f"{config.source}: deploy.rsync[{i}]"
        for sub, local in target.extra_trees.items():
            if not local.is_dir():
                found.append(f"{key}.extra_trees.{sub}: folder not found: {local}")
        deleting, _ = effective_delete(target, options.delete, None)
        problem = delete_target_problem(target.destination, config.root, own) if deleting else None
        if problem:
            found.append(f"{key}.destination: with --delete: {problem}")
    return found


def deploy_rsync(config, dry_run: bool = False, max_deletes: int | None = None,
                 delete: bool | None = None, quiet: bool = False) -> list[PushResult]:
    """Push public/ (and the extra trees) to every mirror. problems() is the check before it
    (bakery.deploy.run asks it, once, before any target sends anything)."""
    remember(os.environ.get("RSYNC_PASSWORD"))  # rsync reads it itself; we only keep it out of messages
    targets = config.deploy.rsync
    if not targets:
        raise BakeryError(f"{config.source}: deploy.rsync: no [[deploy.rsync]] target configured")
    results = []
    for target in targets:
        deleting, cap = effective_delete(target, delete, max_deletes)
        if dry_run:
            print(f"rsync {target.name} → {redact(target.destination)} (dry run: nothing changes)")
        result = push_target(target, config.public_dir, dry_run, deleting, cap, quiet=quiet)
        results.append(result)
        if result.ok:
            log.info("rsync %s: %d files (%s) %s, %d %s, %.1f s → %s", target.name, result.files,
                     human_bytes(result.bytes), "would be sent" if dry_run else "sent", result.deleted,
                     "would be deleted" if dry_run else "deleted", result.seconds, redact(target.destination))
        else:
            log.error("rsync %s: FAILED, %s → %s", target.name, result.error, redact(target.destination))
    failed = [r for r in results if not r.ok]
    if failed:
        raise StageFailures(f"rsync: {len(failed)} of {len(results)} mirror(s) failed: "
                            + "; ".join(f"{r.target}: {r.error}" for r in failed))
    return results


def push(config, options) -> None:
    """deploy_rsync with the `bakery deploy` flags (bakery.deploy.run)."""
    deploy_rsync(config, dry_run=options.dry_run, max_deletes=options.max_deletes, delete=options.delete,
                 quiet=options.quiet)


# ---------------------------------------------------------------- serving a mirror

def module_text(config, module: str) -> str:
    m = config.deploy.mirror
    path = m.path or config.public_dir
    url = m.public_url or f"rsync://HOST/{module}/"
    for key, value in (("deploy.mirror.path" if m.path else "site.public_dir", str(path)),
                       ("deploy.mirror.module / --module", module), ("deploy.mirror.comment", m.comment),
                       ("deploy.mirror.public_url", url), ("deploy.mirror.uid", m.uid),
                       ("deploy.mirror.gid", m.gid), ("config file name", str(config.source)),
                       *(("deploy.mirror.hosts_allow", h) for h in m.hosts_allow)):
        single_line(f"{config.source}: {key}", value)  # a newline would write whole config lines
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
        f"    exclude = {' '.join(NEVER_SERVED)}",
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
    if not NAME_RE.fullmatch(module):
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
