"""Deploy benchmark: `bakery deploy s3` vs `aws s3 sync` on the same files, same server, same run.

A moto S3 server runs in its own process on 127.0.0.1; N small files (half fake JPEGs of
~1.5 KB, half snippets of ~300 B, plus index.html) are synced to two fresh buckets, one per
tool: first a full upload, then a no-change resync (interleaved, best of three). Both tools are timed as
whole commands (interpreter start-up included). Targets: first sync ≥ 1x awscli's speed,
no-change resync ≥ 3x faster than awscli. The no-change resync is measured twice for the
bakery: as it runs by default (one listing, checked against the state file) and with
--trust-state (the state of the last complete deploy stands in for the listing).

Note: moto is a Python server and is itself the bottleneck for uploads and listings (its
ListObjectsV2 serialiser costs ~0.3 ms per key), which both tools pay alike.

    python bench/bench_deploy.py [--files 20000]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

SERVER = """
import logging, sys, time
logging.getLogger("werkzeug").setLevel(logging.ERROR)
from moto.server import ThreadedMotoServer
server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
server.start()
print(server.get_host_and_port()[1], flush=True)
sys.stdin.read()  # runs until the benchmark closes our stdin
"""


def make_files(public: Path, n: int) -> int:
    rng = random.Random(0)
    public.mkdir(parents=True)
    total = 0
    for i in range(n // 2):
        image = rng.randbytes(1000 + rng.randrange(1000))
        text = f"_Title {i}_: " + " ".join(rng.choice(("magic", "girl", "school", "mecha", "isekai", "idol"))
                                          for _ in range(40)) + "\n"
        (public / f"example-{i}.jpg").write_bytes(image)
        (public / f"snippet-{i}.txt").write_text(text)
        total += len(image) + len(text)
    (public / "index.html").write_text("<!doctype html><title>bench</title>")
    return total


def timed(cmd: list[str], env: dict) -> float:
    t0 = time.perf_counter()
    result = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - t0
    if result.returncode != 0:
        sys.exit(f"bench_deploy: {cmd[0]} failed ({result.returncode}): {result.stderr.strip()[-500:]}")
    return seconds


def count_keys(client, bucket: str) -> int:
    return sum(len(p.get("Contents", [])) for p in client.get_paginator("list_objects_v2").paginate(Bucket=bucket))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=16, help="bakery's deploy.s3.concurrency")
    args = parser.parse_args()

    from deploy_support import FAKE_AWS, write_project

    env = {**os.environ, **FAKE_AWS, "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
           "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    os.environ.update({k: env[k] for k in FAKE_AWS})
    work = Path(tempfile.mkdtemp(prefix="bench-deploy-"))
    server = subprocess.Popen([sys.executable, "-c", SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        endpoint = f"http://127.0.0.1:{int(server.stdout.readline())}"
        import boto3

        client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
        for bucket in ("bench-aws", "bench-bakery"):
            client.create_bucket(Bucket=bucket)
        public = work / "public"
        total_bytes = make_files(public, args.files)
        n = len(os.listdir(public))
        toml = write_project(work, f"""[deploy.s3]
bucket = "bench-bakery"
endpoint_url = "{endpoint}"
region = "us-east-1"
concurrency = {args.concurrency}
""")
        aws = [str(Path(sys.executable).with_name("aws")), "--endpoint-url", endpoint, "s3", "sync", str(public),
               "s3://bench-aws/", "--only-show-errors", "--no-progress"]
        bakery = [sys.executable, "-m", "bakery", "-q", "-c", str(toml), "deploy", "s3"]
        bakery_trusting = bakery + ["--trust-state"]

        first_aws = timed(aws, env)
        first_bakery = timed(bakery, env)
        assert count_keys(client, "bench-aws") == count_keys(client, "bench-bakery") == n, "buckets differ"
        # Interleaved, best of three each: the machine is shared, and load spikes hit both tools.
        re_aws, re_bakery, re_trusting = [], [], []
        for _ in range(3):
            re_aws.append(timed(aws, env))
            re_bakery.append(timed(bakery, env))
            re_trusting.append(timed(bakery_trusting, env))
        re_aws, re_bakery, re_trusting = min(re_aws), min(re_bakery), min(re_trusting)
        # The floor any listing-based sync pays here: one plain sequential listing of the bucket.
        t0 = time.perf_counter()
        count_keys(client, "bench-bakery")
        floor = time.perf_counter() - t0

        print(f"deploy_files: {n} files")
        print(f"deploy_bytes: {total_bytes / 1e6:.1f} MB")
        print(f"deploy_first_sync_awscli: {first_aws:.2f} s")
        print(f"deploy_first_sync_bakery: {first_bakery:.2f} s")
        print(f"deploy_first_sync_bakery_rate: {n / first_bakery:.0f} files/s")
        print(f"deploy_first_sync_speedup_vs_awscli: {first_aws / first_bakery:.2f} x (target >= 1)")
        print(f"deploy_resync_awscli: {re_aws:.2f} s")
        print(f"deploy_resync_bakery: {re_bakery:.2f} s")
        print(f"deploy_resync_speedup_vs_awscli: {re_aws / re_bakery:.2f} x (target >= 3)")
        print(f"deploy_resync_bakery_trust_state: {re_trusting:.2f} s")
        print(f"deploy_resync_trust_state_speedup_vs_awscli: {re_aws / re_trusting:.2f} x (target >= 3)")
        print(f"deploy_listing_floor_boto3: {floor:.2f} s (one plain listing of {n} keys from this server)")
    finally:
        server.stdin.close()
        server.terminate()
        server.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
