"""One listing of the bucket prefix, fetched as parallel key ranges.

ListObjectsV2 returns at most 1000 keys per request, so 100k keys are 100 round trips when
paged one after another. Split at every 1000th *local* key instead: the ranges
(-inf, b1], (b1, b2], ..., (bm, +inf) cover the whole key space exactly once, and each range
is listed on its own thread with StartAfter=b_i and Prefix=commonprefix(b_i, b_i+1) (every
key between two keys starts with their common prefix, so nothing is lost and the store
filters early). A remote key in any range is found whether or not it exists locally, so
the result is the same complete listing a sequential walk would give.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

PAGE = 1000


@dataclass(frozen=True)
class Remote:
    etag: str  # without quotes
    size: int


def list_range(client, bucket: str, prefix: str, start_after: str | None,
               stop_after: str | None) -> dict[str, Remote]:
    """Keys k with start_after < k <= stop_after (None: unbounded) under prefix."""
    kwargs = {"Bucket": bucket, "Prefix": prefix, "MaxKeys": PAGE}
    if start_after is not None:
        kwargs["StartAfter"] = start_after
    found: dict[str, Remote] = {}
    while True:
        page = client.list_objects_v2(**kwargs)
        for obj in page.get("Contents", ()):
            key = obj["Key"]
            if stop_after is not None and key > stop_after:
                return found
            found[key] = Remote(obj["ETag"].strip('"'), obj["Size"])
            if key == stop_after:
                return found  # listings are ordered: the range is complete
        if not page.get("IsTruncated"):
            return found
        kwargs["ContinuationToken"] = page["NextContinuationToken"]


def key_ranges(root_prefix: str, sorted_keys: list[str]) -> list[tuple[str, str | None, str | None]]:
    """(prefix, start_after, stop_after) triples that together cover every key under root_prefix."""
    bounds = sorted_keys[PAGE::PAGE]
    if not bounds:
        return [(root_prefix, None, None)]
    ranges = [(root_prefix, None, bounds[0])]
    for low, high in zip(bounds, bounds[1:]):
        ranges.append((os.path.commonprefix([low, high]), low, high))
    ranges.append((root_prefix, bounds[-1], None))
    return ranges


def list_remote(client, bucket: str, root_prefix: str, sorted_local_keys: list[str],
                workers: int) -> dict[str, Remote]:
    ranges = key_ranges(root_prefix, sorted_local_keys)
    if len(ranges) == 1 or workers == 1:
        found: dict[str, Remote] = {}
        for r in ranges:
            found.update(list_range(client, bucket, *r))
        return found
    with ThreadPoolExecutor(max_workers=min(workers, len(ranges))) as pool:
        parts = list(pool.map(lambda r: list_range(client, bucket, *r), ranges))
    found = {}
    for part in parts:
        found.update(part)
    return found
