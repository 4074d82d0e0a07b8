"""Compare public/ with the bucket listing (helped by the state file) → what to do per key.

Kinds of action:
  new      the key is missing remotely: upload
  changed  the remote content differs: upload
  copy     missing remotely, but the same bytes are already stored under another key
           (e.g. after `bakery archive` moved files into v1/): server-side copy, no upload
  headers  same content, but Content-Type/Cache-Control differ from what config asks: copy
           the object onto itself with the new headers
  verify   same content, headers unknown (the state lost track, e.g. a killed deploy): HEAD it
  same     nothing to do
  delete   remote key with no local file (acted on only with --delete)
"""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from bakery.deploy.files import LocalFile
from bakery.deploy.s3list import Remote
from bakery.deploy.s3state import Entry

KINDS = ("new", "changed", "copy", "headers", "verify", "same", "delete")
MAX_PARTS = 10_000
MAX_COPY_SIZE = 5 * 1024**3  # CopyObject's single-request limit


@dataclass(frozen=True)
class Action:
    kind: str
    key: str
    rel: str
    size: int
    local: LocalFile | None = None
    md5: str | None = None  # hex, when known
    etag: str | None = None  # the ETag the uploaded object will have, when known
    source: str | None = None  # copy source key
    content_type: str = ""
    cache_control: str | None = None
    remote_etag: str | None = None


@dataclass
class Plan:
    actions: dict[str, list[Action]] = field(default_factory=lambda: {k: [] for k in KINDS})

    def add(self, action: Action) -> None:
        self.actions[action.kind].append(action)

    def count(self, kind: str) -> int:
        return len(self.actions[kind])

    def bytes(self, kind: str) -> int:
        return sum(a.size for a in self.actions[kind])


def part_size(size: int, chunk: int) -> int:
    """The part size a multipart upload of `size` bytes uses (doubled to stay ≤ 10,000 parts)."""
    while -(-size // chunk) > MAX_PARTS:
        chunk *= 2
    return chunk


def file_digests(path, size: int, threshold: int, chunk: int) -> tuple[str, str]:
    """(MD5 hex of the whole file, the ETag S3 gives it when uploaded our way)."""
    whole = hashlib.md5()
    if size < threshold:
        with open(path, "rb") as fh:
            whole.update(fh.read())
        return whole.hexdigest(), whole.hexdigest()
    step = part_size(size, chunk)
    parts = []
    with open(path, "rb") as fh:
        while block := fh.read(step):
            whole.update(block)
            parts.append(hashlib.md5(block).digest())
    return whole.hexdigest(), f"{hashlib.md5(b''.join(parts)).hexdigest()}-{len(parts)}"


def state_is_current(entry: Entry | None, f: LocalFile) -> bool:
    return entry is not None and entry.size == f.size and entry.mtime_ns == f.mtime_ns


def make_plan(files: list[LocalFile], key_of, headers_of, remote: dict[str, Remote],
              state: dict[str, Entry], threshold: int, chunk: int, delete_protected,
              workers: int = 8) -> Plan:
    """headers_of(rel) → (content_type, cache_control); delete_protected(rel) → bool."""
    keys = {f.rel: key_of(f.rel) for f in files}

    # Hash only files whose content cannot be vouched for by the state file, and only where
    # the answer matters: an existing remote object to compare with, or a possible copy source.
    copy_sources = {r.etag: k for k, r in remote.items() if "-" not in r.etag and r.size < MAX_COPY_SIZE}
    to_hash = [f for f in files if not state_is_current(state.get(keys[f.rel]), f)
               and (keys[f.rel] in remote or copy_sources)]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        digests = dict(zip((f.rel for f in to_hash),
                           pool.map(lambda f: file_digests(f.path, f.size, threshold, chunk), to_hash)))

    plan = Plan()
    for f in files:
        key = keys[f.rel]
        entry, there = state.get(key), remote.get(key)
        ctype, cache = headers_of(f.rel)
        if state_is_current(entry, f):
            md5, etag = entry.md5, entry.etag
        else:
            md5, etag = digests.get(f.rel, (None, None))
        if there is None:
            source = copy_sources.get(md5) if md5 and f.size < threshold else None
            kind = "copy" if source else "new"
        elif etag is None or there.etag != etag or there.size != f.size:
            kind, source = "changed", None
        elif entry is not None and entry.etag == there.etag:
            same_headers = (entry.content_type, entry.cache_control) == (ctype, cache)
            kind, source = ("same" if same_headers else "headers"), None
        else:
            kind, source = "verify", None
        plan.add(Action(kind, key, f.rel, f.size, local=f, md5=md5, etag=etag, source=source,
                        content_type=ctype, cache_control=cache, remote_etag=there.etag if there else None))

    local_keys = set(keys.values())
    root = key_of("")
    for key in sorted(remote.keys() - local_keys):
        rel = key[len(root):]
        if not delete_protected(rel):
            plan.add(Action("delete", key, rel, remote[key].size, remote_etag=remote[key].etag))
    return plan
