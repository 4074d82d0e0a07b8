"""`bakery deploy s3`: incremental, parallel, crash-safe sync of public/ to a bucket.

Order of work, chosen so that the live site never points at a missing file:
  1. list the bucket once (parallel key ranges) and plan against public/ and the state file
     (with --trust-state, the state of the last complete deploy stands in for the listing);
  2. server-side copies and header updates, then uploads of everything except `upload_last`;
  3. only if all of that succeeded: the `upload_last` files (index.html);
  4. only with --delete, and at most --max-deletes: remote keys that public/ no longer has;
  5. the optional CloudFlare purge of what was overwritten or deleted.
The state file is saved every few seconds and at the end, so a killed deploy resumes where
it stopped; the listing is the source of truth, so a rerun converges to an exact copy.
Credentials come only from boto3's standard chain and are never logged or written.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from urllib.parse import urlsplit

from bakery.deploy.files import ALWAYS_EXCLUDED, cache_control, content_type, matches_any, scan_tree
from bakery.deploy.s3list import Remote, list_remote
from bakery.deploy.s3plan import Action, Plan, file_digests, make_plan, part_size
from bakery.deploy.s3state import Entry, State, load_state, save_state, state_path, target_id
from bakery.errors import BakeryError, StageFailures
from bakery.progress import progress, spinner
from bakery.redact import redact, remember
from bakery.sizes import human_bytes

log = logging.getLogger("bakery.deploy")

SAVE_EVERY_S = 5.0
# Parallel listing ranges: enough to hide round trips to a remote store; more only adds
# contention (and a single-process store such as moto gains nothing from them).
LIST_WORKERS = 8
# Errors that will fail every other request the same way: stop at the first one.
FATAL_CODES = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "NoSuchBucket",
               "ExpiredToken", "InvalidToken", "AllAccessDisabled", "AuthorizationHeaderMalformed"}


# ---------------------------------------------------------------- client and errors

def aws_session(s3cfg):
    """A boto3 session whose credentials were found; BakeryError (one line) when there are none.

    The secret key and session token it found are registered for redaction (the access key
    ID is an identifier, shown by AWS itself in error messages, so it is left readable).
    """
    import boto3
    import botocore.session

    session = botocore.session.get_session()
    # Keep LastModified as the raw string: parsing 100k timestamps with dateutil is the
    # slowest part of a listing on the client side, and the sync never looks at them.
    session.get_component("response_parser_factory").set_parser_defaults(timestamp_parser=str)
    boto = boto3.Session(botocore_session=session, region_name=s3cfg.region)
    try:
        credentials = boto.get_credentials()
        frozen = credentials.get_frozen_credentials() if credentials is not None else None
    except Exception as exc:  # a broken profile or SSO cache: botocore raises many kinds
        raise BakeryError(f"s3: cannot read AWS credentials: {redact(describe_error(exc)[1])}") from None
    if frozen is None or not frozen.access_key or not frozen.secret_key:
        raise BakeryError("s3: no AWS credentials found by boto3's standard chain (set AWS_ACCESS_KEY_ID "
                          "and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE, or use an instance role)")
    remember(frozen.secret_key, frozen.token)
    return boto


def make_client(s3cfg):
    """A boto3 S3 client from the standard credential chain; fails early without credentials."""
    from botocore.config import Config

    boto = aws_session(s3cfg)
    config = Config(max_pool_connections=s3cfg.concurrency + 8,
                    retries={"max_attempts": 5, "mode": "standard"},
                    request_checksum_calculation="when_required",
                    response_checksum_validation="when_required",
                    connect_timeout=10, read_timeout=120)
    return boto.client("s3", endpoint_url=s3cfg.endpoint_url, config=config)


def resolved_endpoint(s3cfg, client) -> str | None:
    """The endpoint the client really talks to: `endpoint_url`, else what boto3 took from
    AWS_ENDPOINT_URL(_S3) or the profile, so a deploy state made against one store is never
    trusted for another. AWS itself stays None (the id older state files carry)."""
    if s3cfg.endpoint_url:
        return s3cfg.endpoint_url
    url = getattr(getattr(client, "meta", None), "endpoint_url", None)
    if not url or urlsplit(url).hostname.endswith(".amazonaws.com"):
        return None
    return url


def describe_error(exc: Exception) -> tuple[str, str]:
    """(error code, one-line message) for a botocore exception, redacted: a connection error
    quotes the endpoint URL (with any user:password@), a server may echo what it was sent."""
    from botocore.exceptions import ClientError

    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        code = str(err.get("Code") or exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", "error"))
        message = err.get("Message") or exc.__class__.__name__
        return code, redact(f"{code}: {message}")
    return exc.__class__.__name__, redact(str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__)


def where(s3cfg, key: str = "") -> str:
    return f"s3://{s3cfg.bucket}/{key}"


# ---------------------------------------------------------------- planning

def key_maker(prefix: str):
    return (lambda rel: f"{prefix}/{rel}") if prefix else (lambda rel: rel)


def remote_from_state(state: State) -> dict[str, Remote]:
    """What the bucket holds if nothing but our own complete deploys ever wrote to it."""
    return {key: Remote(e.etag, e.size) for key, e in state.entries.items()}


def plan_deploy(config, client, state: State, quiet: bool, trust_state: bool = False) -> tuple[Plan, list[str]]:
    s3cfg = config.deploy.s3
    public = config.public_dir
    if not (public / "index.html").is_file():
        raise BakeryError(f"{public / 'index.html'}: not found: run `bakery site` (or `make bake`) before deploying")
    files = scan_tree(public, s3cfg.exclude)
    key_of = key_maker(s3cfg.prefix)
    local_keys = [key_of(f.rel) for f in files]
    if trust_state and not state.complete:
        log.info("s3: --trust-state: the state file is not from a complete deploy, so the bucket is listed")
        trust_state = False
    if trust_state:
        remote = remote_from_state(state)
        log.info("s3: %d local files, %d remote objects as the last complete deploy left them "
                 "(--trust-state: no listing; changes made to the bucket by others go unnoticed)",
                 len(files), len(remote))
    else:
        # A big bucket takes many round trips to list: say so while it runs.
        with spinner(f"s3: listing {where(s3cfg, key_of(''))}", quiet=quiet) as listing:
            try:
                remote = list_remote(client, s3cfg.bucket, key_of(""), local_keys,
                                     workers=min(s3cfg.concurrency, LIST_WORKERS))
            except Exception as exc:  # botocore's errors share no useful base class with connection errors
                raise BakeryError(f"{where(s3cfg, key_of(''))}: cannot list the bucket: "
                                  f"{describe_error(exc)[1]}") from None
        log.info("s3: %d local files, %d remote objects listed in %.1f s", len(files), len(remote),
                 listing.elapsed)

    def headers_of(rel: str) -> tuple[str, str | None]:
        return content_type(rel, s3cfg.content_types), cache_control(rel, s3cfg.cache_control)

    def protected(rel: str) -> bool:
        return matches_any(ALWAYS_EXCLUDED + s3cfg.exclude, rel)

    plan = make_plan(files, key_of, headers_of, remote, state.entries, s3cfg.multipart_threshold,
                     s3cfg.multipart_chunk, protected)
    return plan, local_keys


def resolve_verifications(client, s3cfg, plan: Plan, quiet: bool) -> None:
    """HEAD the objects whose headers the state lost track of: `same` or `headers` each."""
    todo = plan.actions["verify"]
    if not todo:
        return

    def check(a: Action) -> Action:
        head = client.head_object(Bucket=s3cfg.bucket, Key=a.key)
        ok = (head.get("ContentType") == a.content_type and head.get("CacheControl") == a.cache_control)
        return replace(a, kind="same" if ok else "headers")

    with ThreadPoolExecutor(max_workers=s3cfg.concurrency) as pool:
        futures = [pool.submit(check, a) for a in todo]
        for fut in progress(as_completed(futures), "s3: checking headers", total=len(futures),
                            unit="obj", quiet=quiet):
            try:
                plan.add(fut.result())
            except Exception as exc:
                raise BakeryError(f"{where(s3cfg)}: HEAD failed: {describe_error(exc)[1]}") from None
    plan.actions["verify"] = []


PLAN_ROWS = (("new", "upload (new)"), ("changed", "upload (changed)"), ("copy", "copy (same bytes elsewhere)"),
             ("headers", "update headers"), ("verify", "check headers"), ("same", "unchanged"),
             ("delete", "delete"))


def format_plan(plan: Plan, s3cfg, dry_run: bool, delete: bool) -> str:
    title = f"s3 plan for {where(s3cfg, s3cfg.prefix + '/' if s3cfg.prefix else '')}"
    lines = [title + (" (dry run: nothing changes)" if dry_run else "")]
    for kind, label in PLAN_ROWS:
        note = "" if kind != "delete" or delete else "   (not deleted: pass --delete)"
        lines.append(f"  {label:<28}{plan.count(kind):>9} files {human_bytes(plan.bytes(kind)):>10}{note}")
    return "\n".join(lines)


# ---------------------------------------------------------------- execution

@dataclass
class Outcome:
    done: dict[str, int] = field(default_factory=dict)  # kind → count
    failures: list[str] = field(default_factory=list)
    purge: list[str] = field(default_factory=list)  # rel paths whose cached copy is stale
    bytes_sent: int = 0


class Runner:
    """Carries out a plan with a thread pool; records every success in the state as it lands."""

    def __init__(self, config, client, state: State, quiet: bool):
        self.s3cfg = config.deploy.s3
        self.client = client
        self.state = state.entries
        self.complete_on_disk = state.complete
        self.quiet = quiet
        self.path = state_path(config.build_dir)
        self.target = target_id(resolved_endpoint(self.s3cfg, client), self.s3cfg.bucket, self.s3cfg.prefix)
        self.outcome = Outcome()
        self.last_save = time.monotonic()
        self.dirty = False
        self.stop = threading.Event()
        self.bar_lock = threading.Lock()
        self.bar = None

    # -- state

    def record(self, a: Action, md5: str, etag: str, size: int, mtime_ns: int) -> None:
        self.state[a.key] = Entry(size, mtime_ns, md5, etag, a.content_type, a.cache_control)
        self.dirty = True
        if time.monotonic() - self.last_save > SAVE_EVERY_S:
            self.save()

    def save(self, complete: bool = False) -> None:
        """Mid-deploy saves are never `complete`, so a killed deploy is never trusted."""
        if self.dirty or complete != self.complete_on_disk:
            save_state(self.path, self.target, self.state, complete)
            self.dirty, self.complete_on_disk = False, complete
        self.last_save = time.monotonic()

    def advance(self, n: int) -> None:
        with self.bar_lock:
            self.outcome.bytes_sent += n
            if self.bar is not None:
                self.bar.update(n)

    # -- single operations (run on pool threads; return what record() needs)

    def headers(self, a: Action) -> dict:
        extra = {"ContentType": a.content_type}
        if a.cache_control:
            extra["CacheControl"] = a.cache_control
        return extra

    def upload(self, a: Action):
        st = os.stat(a.local.path)  # before reading: a file changed meanwhile is rechecked next time
        if st.st_size < self.s3cfg.multipart_threshold:
            with open(a.local.path, "rb") as fh:
                data = fh.read()
            digest = hashlib.md5(data)
            resp = self.client.put_object(Bucket=self.s3cfg.bucket, Key=a.key, Body=data,
                                          ContentMD5=base64.b64encode(digest.digest()).decode(),
                                          **self.headers(a))
            self.advance(len(data))
            return digest.hexdigest(), resp["ETag"].strip('"'), len(data), st.st_mtime_ns
        return self.upload_multipart(a, st)

    def upload_multipart(self, a: Action, st):
        from boto3.s3.transfer import TransferConfig

        chunk = part_size(st.st_size, self.s3cfg.multipart_chunk)
        transfer = TransferConfig(multipart_threshold=self.s3cfg.multipart_threshold, multipart_chunksize=chunk,
                                  max_concurrency=4)
        self.client.upload_file(a.local.path, self.s3cfg.bucket, a.key, ExtraArgs=self.headers(a),
                                Config=transfer, Callback=self.advance)
        md5, _ = file_digests(a.local.path, st.st_size, self.s3cfg.multipart_threshold, chunk)
        etag = self.client.head_object(Bucket=self.s3cfg.bucket, Key=a.key)["ETag"].strip('"')
        return md5, etag, st.st_size, st.st_mtime_ns

    def copy(self, a: Action, source: str):
        resp = self.client.copy_object(Bucket=self.s3cfg.bucket, Key=a.key, MetadataDirective="REPLACE",
                                       CopySource={"Bucket": self.s3cfg.bucket, "Key": source}, **self.headers(a))
        etag = resp["CopyObjectResult"]["ETag"].strip('"')
        return a.md5, etag, a.size, a.local.mtime_ns

    def do(self, a: Action):
        if self.stop.is_set():
            return None
        if a.kind in ("new", "changed"):
            return self.upload(a)
        if a.kind == "copy":
            return self.copy(a, a.source)
        if a.kind == "headers":
            if a.size >= 5 * 1024**3 or "-" in (a.etag or ""):
                return self.upload(a)  # multipart objects: CopyObject would change their ETag form
            return self.copy(a, a.key)
        raise AssertionError(a.kind)

    # -- phases

    def run_batch(self, actions: list[Action]) -> None:
        if not actions:
            return
        with ThreadPoolExecutor(max_workers=self.s3cfg.concurrency) as pool:
            futures = {pool.submit(self.do, a): a for a in actions}
            try:
                for fut in as_completed(futures):
                    a = futures[fut]
                    self.finish(a, fut)
            except BaseException:
                self.stop.set()
                raise
            finally:
                self.save()

    def finish(self, a: Action, fut) -> None:
        try:
            result = fut.result()
        except Exception as exc:
            code, message = describe_error(exc)
            self.outcome.failures.append(f"{where(self.s3cfg, a.key)}: {message}")
            if code in FATAL_CODES:
                self.stop.set()
            return
        if result is None:
            return  # skipped after a fatal error
        self.record(a, *result)
        self.outcome.done[a.kind] = self.outcome.done.get(a.kind, 0) + 1
        if a.kind in ("changed", "headers"):
            self.outcome.purge.append(a.rel)

    def record_unchanged(self, plan: Plan) -> None:
        """Unchanged files whose mtime moved (touched, same bytes): refresh their state entry."""
        for a in plan.actions["same"]:
            e = self.state.get(a.key)
            if e is None or e.mtime_ns != a.local.mtime_ns or e.size != a.size or e.etag != a.remote_etag:
                self.state[a.key] = Entry(a.size, a.local.mtime_ns, a.md5, a.remote_etag, a.content_type,
                                          a.cache_control)
                self.dirty = True

    def delete(self, actions: list[Action]) -> None:
        keys = [a.key for a in actions]
        for start in range(0, len(keys), 1000):  # DeleteObjects takes up to 1000 keys
            batch = keys[start:start + 1000]
            try:
                resp = self.client.delete_objects(Bucket=self.s3cfg.bucket, Delete={
                    "Objects": [{"Key": k} for k in batch], "Quiet": True})
            except Exception as exc:
                self.outcome.failures.append(f"{where(self.s3cfg)}: delete failed: {describe_error(exc)[1]}")
                return
            failed = {e["Key"]: f"{e.get('Code')}: {e.get('Message')}" for e in resp.get("Errors", [])}
            for k in batch:
                if k in failed:
                    self.outcome.failures.append(redact(f"{where(self.s3cfg, k)}: delete failed: {failed[k]}"))
                else:
                    self.state.pop(k, None)
                    self.dirty = True
            self.outcome.done["delete"] = self.outcome.done.get("delete", 0) + len(batch) - len(failed)
        self.outcome.purge.extend(a.rel for a in actions)
        self.save()

    def execute(self, plan: Plan, delete: bool) -> Outcome:
        s3cfg = self.s3cfg
        transfers = [a for kind in ("copy", "headers", "new", "changed") for a in plan.actions[kind]]
        last = [a for a in transfers if matches_any(s3cfg.upload_last, a.rel)]
        first = [a for a in transfers if not matches_any(s3cfg.upload_last, a.rel)]
        copies = [a for a in first if a.kind in ("copy", "headers")]
        uploads = [a for a in first if a.kind in ("new", "changed")]
        total = sum(a.size for a in uploads + last if a.kind in ("new", "changed"))
        self.record_unchanged(plan)
        with progress(None, "s3: upload", total=total, unit="B", quiet=self.quiet, unit_scale=True,
                      unit_divisor=1024) as self.bar:
            self.run_batch(copies)  # before uploads: a copy source may be overwritten next
            if not self.stop.is_set():
                self.run_batch(uploads)
            if last and not self.outcome.failures:
                self.run_batch(last)
            elif last:
                self.outcome.failures.append(
                    f"{', '.join(a.rel for a in last)} not uploaded because other transfers failed "
                    "(the live page must not point at missing files)")
        if delete and plan.actions["delete"] and not self.outcome.failures:
            self.delete(plan.actions["delete"])
        self.save(complete=not self.outcome.failures)
        return self.outcome


# ---------------------------------------------------------------- entry point

def check_deletes(plan: Plan, s3cfg, delete: bool, max_deletes: int | None) -> None:
    cap = s3cfg.max_deletes if max_deletes is None else max_deletes
    n = plan.count("delete")
    if delete and n > cap:
        raise BakeryError(f"{where(s3cfg, s3cfg.prefix)}: {n} remote files would be deleted, more than "
                          f"--max-deletes {cap}: nothing was changed (raise the cap, or check the bucket/prefix)")


def summary(outcome: Outcome, plan: Plan, seconds: float) -> str:
    done = outcome.done
    rate = outcome.bytes_sent / seconds if seconds > 0 else 0
    return (f"s3: {done.get('new', 0)} new and {done.get('changed', 0)} changed files uploaded "
            f"({human_bytes(outcome.bytes_sent)}, {human_bytes(rate)}/s), {done.get('copy', 0)} copied, "
            f"{done.get('headers', 0)} header updates, {done.get('delete', 0)} deleted, "
            f"{plan.count('same')} unchanged, in {seconds:.1f} s")


def planned_changes(plan: Plan, s3cfg, delete: bool) -> list[str]:
    """One line per file the deploy would change, like `aws s3 sync --dryrun` (paths below public/)."""
    root = key_maker(s3cfg.prefix)("")
    lines = [f"copy: {a.source[len(root):]} to {a.rel}" for a in plan.actions["copy"]]
    lines += [f"copy: {a.rel} (new headers)" for a in plan.actions["headers"]]
    lines += [f"upload: {a.rel}" for kind in ("new", "changed") for a in plan.actions[kind]]
    if delete:
        lines += [f"delete: {a.rel}" for a in plan.actions["delete"]]
    return lines


def overwritten_by(plan: Plan, delete: bool) -> list[str]:
    """Paths whose cached copies the plan makes stale (new keys were never cached)."""
    kinds = ("changed", "headers") + (("delete",) if delete else ())
    return [a.rel for kind in kinds for a in plan.actions[kind]]


def owe_cdn_purge(config, plan: Plan, delete: bool) -> None:
    cf = config.deploy.cloudflare
    if cf is not None and cf.purge != "none" and overwritten_by(plan, delete):
        from bakery.deploy.purgequeue import owe_purge

        owe_purge(config.build_dir, cf.zone_id, overwritten_by(plan, delete))


def deploy_s3(config, dry_run: bool = False, delete: bool | None = None, max_deletes: int | None = None,
              quiet: bool = False, trust_state: bool = False) -> tuple[Plan, Outcome | None]:
    """delete/max_deletes: None takes deploy.s3.delete/max_deletes (the flag wins when given)."""
    s3cfg = config.deploy.s3
    if s3cfg is None:
        raise BakeryError(f"{config.source}: deploy.s3: no [deploy.s3] section: nothing to deploy to")
    delete = s3cfg.delete if delete is None else delete
    t0 = time.monotonic()
    client = make_client(s3cfg)
    path = state_path(config.build_dir)
    state = load_state(path, target_id(resolved_endpoint(s3cfg, client), s3cfg.bucket, s3cfg.prefix))
    plan, _ = plan_deploy(config, client, state, quiet, trust_state or s3cfg.trust_state)
    resolve_verifications(client, s3cfg, plan, quiet)
    if dry_run:
        for line in planned_changes(plan, s3cfg, delete):
            print(line)
    check_deletes(plan, s3cfg, delete, max_deletes)
    if dry_run:
        print(format_plan(plan, s3cfg, dry_run=True, delete=delete))
        return plan, None
    log.info("%s", format_plan(plan, s3cfg, dry_run=False, delete=delete))
    owe_cdn_purge(config, plan, delete)  # on disk before the first overwrite
    runner = Runner(config, client, state, quiet)
    try:
        outcome = runner.execute(plan, delete)
    except KeyboardInterrupt:
        runner.save()
        raise
    log.info("%s", summary(outcome, plan, time.monotonic() - t0))
    if outcome.failures:
        failure = StageFailures(redact(f"s3: {len(outcome.failures)} operation(s) failed; "
                                       f"first: {outcome.failures[0]}"))
        failure.outcome = outcome  # what did change still needs its CDN purge
        raise failure
    return plan, outcome


def problems(config, options) -> list[str]:
    """What would stop this target (bakery.deploy.preflight asks before anything is sent): no
    [deploy.s3] section, no AWS credentials, and what the CDN purge after it would lack. A dry
    run purges nothing, so the purge's problems are only warnings there."""
    from bakery.deploy.cloudflare import purge_problems

    found = []
    if config.deploy.s3 is None:
        found.append(f"{config.source}: deploy.s3: no [deploy.s3] section: nothing to deploy to")
    else:
        try:
            aws_session(config.deploy.s3)
        except BakeryError as exc:
            found.append(str(exc))
    purge = purge_problems(config, options.purge_everything)
    if options.dry_run:  # the plan can still be shown; the real deploy will refuse
        for problem in purge:
            log.warning("deploy: the real deploy would stop here: %s", problem)
        return found
    return found + purge


def push(config, options) -> None:
    """The S3 deploy and the CDN purge after it, with the `bakery deploy` flags (bakery.deploy.run);
    problems() has been answered first."""
    everything = options.purge_everything
    try:
        plan, outcome = deploy_s3(config, dry_run=options.dry_run, delete=options.delete,
                                  max_deletes=options.max_deletes, quiet=options.quiet,
                                  trust_state=options.trust_state)
    except StageFailures:
        # Objects overwritten before the failure will look unchanged on the rerun: purge them now
        # (what stays owed remains in the queue on disk for the next deploy).
        if config.deploy.cloudflare is not None:
            try:
                purge(config, everything=False)
            except BakeryError as exc:  # report it, but the deploy's own failure is the error
                log.error("%s", exc)
        raise
    if outcome is not None:
        purge(config, everything)
    elif config.deploy.cloudflare is not None:
        show_pending_purge(config, everything)


def purge(config, everything: bool) -> None:
    """Everything the queue on disk owes (this deploy's changes and earlier failed purges)."""
    from bakery.deploy.cloudflare import purge_after_deploy
    from bakery.deploy.purgequeue import owe_purge, purge_done, queue_path

    cf = config.deploy.cloudflare
    if cf is None:
        if everything:
            purge_after_deploy(config, [], everything=True)  # the one-line error: no section
        return
    pending = owe_purge(config.build_dir, cf.zone_id, [], everything)
    if not pending:
        log.info("cloudflare: nothing to purge")
        return
    try:
        purge_after_deploy(config, pending.rels, everything=pending.everything)
    except BakeryError as exc:
        owed = "everything" if pending.everything else f"{len(pending.rels)} path(s)"
        raise type(exc)(f"{exc} (the purge of {owed} is kept in {queue_path(config.build_dir)}: "
                        "the next deploy retries it)") from None
    purge_done(config.build_dir)


def show_pending_purge(config, everything: bool) -> None:
    """--dry-run: the purges an earlier deploy still owes, which the real deploy would send."""
    from bakery.deploy.purgequeue import load_pending

    pending = load_pending(config.build_dir, config.deploy.cloudflare.zone_id)
    if everything or pending.everything:
        print("purge: everything")
    for rel in pending.rels:
        print(f"purge: {rel} (owed by an earlier deploy)")
