"""`bakery deploy s3` against a real moto S3 server on 127.0.0.1 (started and stopped here)."""

from __future__ import annotations

import hashlib
import json
import re
import signal
import subprocess
import sys
import time

import boto3
import pytest

import bakery.deploy.s3 as s3mod
from bakery.cli import main
from bakery.config import load_config
from bakery.deploy.s3 import deploy_s3
from bakery.deploy.s3state import state_path
from bakery.errors import BakeryError, ConfigError
from deploy_support import aws_env, fill_public, start_moto, subprocess_env, write_project, FAKE_AWS


@pytest.fixture(scope="module")
def endpoint():
    server, url = start_moto()
    yield url
    server.stop()


_buckets = iter(range(10_000))


@pytest.fixture
def project(tmp_path, monkeypatch, endpoint):
    """A project whose [deploy.s3] points at a fresh bucket on the moto server."""
    aws_env(monkeypatch, tmp_path)
    bucket = f"site-{next(_buckets)}-{int(time.time() * 1000) % 100000}"
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    client.create_bucket(Bucket=bucket)

    def make(extra: str = "", prefix: str = "", concurrency: int = 4):
        toml = write_project(tmp_path, f"""[deploy]
targets = ["s3"]

[deploy.s3]
bucket = "{bucket}"
prefix = "{prefix}"
endpoint_url = "{endpoint}"
region = "us-east-1"
concurrency = {concurrency}
multipart_threshold_mb = 5
multipart_chunk_mb = 5
{extra}
""")
        return load_config(toml), toml

    return {"make": make, "client": client, "bucket": bucket, "public": tmp_path / "public", "root": tmp_path}


@pytest.fixture
def calls(monkeypatch):
    """Every S3 API call the deploy makes: (operation, key)."""
    seen: list[tuple[str, str | None]] = []
    real = s3mod.make_client

    def counting_client(cfg):
        client = real(cfg)
        client.meta.events.register("provide-client-params.s3",
                                    lambda params, model, **_: seen.append((model.name, params.get("Key"))))
        return client

    monkeypatch.setattr(s3mod, "make_client", counting_client)
    return seen


def remote_tree(client, bucket: str, prefix: str = "") -> dict[str, bytes]:
    out = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            out[obj["Key"][len(prefix):]] = client.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
    return out


def ops(calls, name):
    return [key for op, key in calls if op == name]


def fail_upload_of(monkeypatch, rel: str):
    """Make the upload of one file fail like a disk error; returns the real upload method."""
    real_upload = s3mod.Runner.upload

    def flaky(self, action):
        if action.rel == rel:
            raise OSError("disk read error")
        return real_upload(self, action)

    monkeypatch.setattr(s3mod.Runner, "upload", flaky)
    return real_upload


def test_first_sync_noop_resync_and_changed_file(project, calls):
    config, _ = project["make"]()
    files = fill_public(project["public"], 12)
    plan, outcome = deploy_s3(config, quiet=True)
    assert remote_tree(project["client"], project["bucket"]) == files
    assert outcome.done["new"] == len(files)
    assert ops(calls, "PutObject")[-1] == "index.html"  # the page goes live last
    assert state_path(config.build_dir).is_file()

    calls.clear()
    plan, outcome = deploy_s3(config, quiet=True)
    assert ops(calls, "PutObject") == [] and ops(calls, "HeadObject") == []
    assert len(ops(calls, "ListObjectsV2")) == 1
    assert plan.count("same") == len(files)

    calls.clear()
    (project["public"] / "snippet-3.txt").write_bytes(b"a rewritten story\n")
    files["snippet-3.txt"] = b"a rewritten story\n"
    plan, outcome = deploy_s3(config, quiet=True)
    assert ops(calls, "PutObject") == ["snippet-3.txt"]
    assert outcome.purge == ["snippet-3.txt"]
    assert remote_tree(project["client"], project["bucket"]) == files


def test_touched_file_with_same_bytes_is_not_uploaded(project, calls):
    config, _ = project["make"]()
    fill_public(project["public"], 3)
    deploy_s3(config, quiet=True)
    target = project["public"] / "example-1.jpg"
    target.write_bytes(target.read_bytes())  # new mtime, same content
    calls.clear()
    deploy_s3(config, quiet=True)
    assert ops(calls, "PutObject") == [] and ops(calls, "HeadObject") == []
    calls.clear()
    deploy_s3(config, quiet=True)  # the state now knows the new mtime: not even hashed again
    assert ops(calls, "PutObject") == []


def test_content_type_and_cache_control_seen_with_head(project):
    config, _ = project["make"](extra='cache_control = { "snippet-7.txt" = "no-cache" }')
    fill_public(project["public"], 8)
    (project["public"] / "snippets.tar.gz").write_bytes(b"\x1f\x8b fake")
    deploy_s3(config, quiet=True)
    client, bucket = project["client"], project["bucket"]

    def head(key):
        h = client.head_object(Bucket=bucket, Key=key)
        return h["ContentType"], h.get("CacheControl")

    assert head("index.html") == ("text/html; charset=utf-8", "public, max-age=300")
    assert head("example-0.jpg") == ("image/jpeg", "public, max-age=2592000")
    assert head("snippet-0.txt") == ("text/plain; charset=utf-8", "public, max-age=2592000")
    assert head("snippet-7.txt") == ("text/plain; charset=utf-8", "no-cache")  # config rule first
    assert head("assets/style.0123456789.css") == ("text/css; charset=utf-8", "public, max-age=31536000, immutable")
    assert head("snippets.tar.gz") == ("application/gzip", "public, max-age=86400")


def test_changed_cache_rule_updates_headers_without_upload(project, calls):
    config, _ = project["make"]()
    fill_public(project["public"], 2)
    deploy_s3(config, quiet=True)
    config, _ = project["make"](extra='cache_control = { "example-*.jpg" = "public, max-age=60" }')
    calls.clear()
    plan, outcome = deploy_s3(config, quiet=True)
    assert sorted(ops(calls, "CopyObject")) == ["example-0.jpg", "example-1.jpg"]
    assert ops(calls, "PutObject") == []
    h = project["client"].head_object(Bucket=project["bucket"], Key="example-1.jpg")
    assert h["CacheControl"] == "public, max-age=60"


def test_delete_only_with_flag_and_capped(project, calls, capsys):
    config, toml = project["make"]()
    files = fill_public(project["public"], 6)
    deploy_s3(config, quiet=True)
    for i in (0, 1, 2):
        (project["public"] / f"example-{i}.jpg").unlink()
        del files[f"example-{i}.jpg"]
    (project["public"] / ".tmp-index.html.abc").write_bytes(b"half written")  # never uploaded

    plan, _ = deploy_s3(config, quiet=True)  # no --delete: remote copies stay
    assert plan.count("delete") == 3
    assert len(remote_tree(project["client"], project["bucket"])) == len(files) + 3

    calls.clear()
    assert main(["-q", "-c", str(toml), "deploy", "s3", "--delete", "--max-deletes", "2"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "3 remote files would be deleted" in err and "--max-deletes 2" in err
    assert ops(calls, "DeleteObjects") == [] and ops(calls, "PutObject") == []

    assert main(["-q", "-c", str(toml), "deploy", "s3", "--delete", "--max-deletes", "3"]) == 0
    assert remote_tree(project["client"], project["bucket"]) == files


def test_dry_run_prints_plan_and_changes_nothing(project, capsys):
    config, toml = project["make"]()
    files = fill_public(project["public"], 5, image_bytes=1000)
    assert main(["-q", "-c", str(toml), "deploy", "s3", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "dry run" in out
    new_line = next(line for line in out.splitlines() if "upload (new)" in line)
    assert f"{len(files)} files" in new_line
    assert remote_tree(project["client"], project["bucket"]) == {}
    assert not state_path(config.build_dir).exists()


def test_prefix_and_multipart(project, calls):
    config, _ = project["make"](prefix="site/v")
    files = fill_public(project["public"], 2)
    big = bytes(range(256)) * (6 * 1024 * 4 + 7)  # ~6 MB: two 5 MB parts
    (project["public"] / "video.mp4").write_bytes(big)
    files["video.mp4"] = big
    deploy_s3(config, quiet=True)
    assert remote_tree(project["client"], project["bucket"], "site/v/") == files
    head = project["client"].head_object(Bucket=project["bucket"], Key="site/v/video.mp4")
    assert head["ETag"].strip('"').endswith("-2") and head["ContentType"] == "video/mp4"
    calls.clear()
    state_path(config.build_dir).unlink()  # even without state, the multipart ETag is recomputed locally
    plan, _ = deploy_s3(config, quiet=True)
    assert ops(calls, "PutObject") == [] and ops(calls, "UploadPart") == []
    assert plan.count("same") == len(files)


def test_missing_bucket_and_missing_credentials_are_one_line_errors(project, monkeypatch, capsys):
    config, toml = project["make"]()
    fill_public(project["public"], 1)
    text = toml.read_text().replace(project["bucket"], "no-such-bucket-here")
    toml.write_text(text)
    assert main(["-q", "-c", str(toml), "deploy", "s3"]) == 1
    err = capsys.readouterr().err.strip()
    assert "s3://no-such-bucket-here/" in err and "NoSuchBucket" in err and "\n" not in err

    for name in FAKE_AWS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    assert main(["-q", "-c", str(toml), "deploy", "s3"]) == 1
    assert "no AWS credentials" in capsys.readouterr().err


@pytest.mark.parametrize("snippet, problem", [
    ('bucket = "Bad_Name"', "deploy.s3.bucket: not a valid bucket name"),
    ('bucket = "ok-bucket"\nconcurency = 3', "deploy.s3.concurency: unknown key (did you mean 'concurrency'?)"),
    ('bucket = "ok-bucket"\nconcurrency = 0', "deploy.s3.concurrency: 0 is out of range"),
    ('bucket = "ok-bucket"\nendpoint_url = "127.0.0.1:9000"', "deploy.s3.endpoint_url: must be an http://"),
    ('bucket = "ok-bucket"\ncontent_types = { txt = "text/plain" }', "deploy.s3.content_types: keys are file extensions"),
])
def test_s3_config_errors_name_the_key(tmp_path, snippet, problem):
    toml = write_project(tmp_path, f"[deploy.s3]\n{snippet}\n")
    with pytest.raises(ConfigError, match=re.escape(problem)):
        load_config(toml)


@pytest.mark.slow
def test_killed_sync_then_rerun_converges_to_exact_copy(project, endpoint, calls):
    config, toml = project["make"](concurrency=1)
    files = fill_public(project["public"], 150, image_bytes=200)
    client, bucket = project["client"], project["bucket"]
    client.put_object(Bucket=bucket, Key="stale-old-file.txt", Body=b"old")  # will be deleted
    proc = subprocess.Popen([sys.executable, "-m", "bakery", "-q", "-c", str(toml), "deploy", "s3"],
                            env=subprocess_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if client.list_objects_v2(Bucket=bucket, MaxKeys=1000).get("KeyCount", 0) >= 40:
                break
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()
    partial = remote_tree(client, bucket)
    assert 40 <= len(partial) < len(files) + 1, "the deploy should have been killed mid-way"
    assert "index.html" not in partial  # uploaded last, so never before the rest

    calls.clear()
    plan, outcome = deploy_s3(config, delete=True, quiet=True)
    uploaded = ops(calls, "PutObject")
    assert len(uploaded) <= len(files) - (len(partial) - 2), "a rerun must not redo finished uploads"
    assert remote_tree(client, bucket) == files
    for rel in ("index.html", "snippet-0.txt", "example-149.jpg"):
        head = client.head_object(Bucket=bucket, Key=rel)
        assert head["ETag"].strip('"') == hashlib.md5(files[rel]).hexdigest()
    calls.clear()
    deploy_s3(config, quiet=True)
    assert ops(calls, "PutObject") == []
    state = json.loads(state_path(config.build_dir).read_text())
    assert set(state["objects"]) == set(files)


def test_archived_generation_is_copied_server_side_not_uploaded(project, calls):
    from bakery.deploy.archive import archive

    config, _ = project["make"]()
    old = fill_public(project["public"], 5)
    deploy_s3(config, quiet=True)
    archive(config, "v1")
    new = fill_public(project["public"], 5, seed=1)  # the next generation reuses the names
    calls.clear()
    deploy_s3(config, quiet=True)
    moved = {f"v1/{k}": v for k, v in old.items() if k.startswith(("example-", "snippet-"))}
    assert sorted(ops(calls, "CopyObject")) == sorted(moved)
    assert not any(k.startswith("v1/") for k in ops(calls, "PutObject"))
    assert remote_tree(project["client"], project["bucket"]) == {**new, **moved}


def test_a_failed_upload_keeps_index_html_back_and_the_rerun_finishes(project, monkeypatch, calls):
    config, toml = project["make"]()
    files = fill_public(project["public"], 6)
    real_upload = fail_upload_of(monkeypatch, "example-4.jpg")
    with pytest.raises(BakeryError, match="example-4.jpg: disk read error"):
        deploy_s3(config, quiet=True)
    partial = remote_tree(project["client"], project["bucket"])
    assert "index.html" not in partial and "example-4.jpg" not in partial
    assert len(partial) == len(files) - 2

    monkeypatch.setattr(s3mod.Runner, "upload", real_upload)
    calls.clear()
    deploy_s3(config, quiet=True)
    assert sorted(ops(calls, "PutObject")) == ["example-4.jpg", "index.html"]  # state kept the rest
    assert remote_tree(project["client"], project["bucket"]) == files


def test_trust_state_plans_from_the_last_complete_deploy_without_listing(project, calls):
    config, toml = project["make"]()
    files = fill_public(project["public"], 5)
    deploy_s3(config, quiet=True)
    assert json.loads(state_path(config.build_dir).read_text())["complete"] is True

    calls.clear()
    (project["public"] / "snippet-2.txt").write_bytes(b"another story\n")
    (project["public"] / "example-9.jpg").write_bytes(b"a new face")
    (project["public"] / "example-0.jpg").unlink()
    plan, outcome = deploy_s3(config, quiet=True, delete=True, trust_state=True)
    assert ops(calls, "ListObjectsV2") == [] and ops(calls, "HeadObject") == []
    assert sorted(ops(calls, "PutObject")) == ["example-9.jpg", "snippet-2.txt"]
    assert [a.key for a in plan.actions["delete"]] == ["example-0.jpg"]
    files.update({"snippet-2.txt": b"another story\n", "example-9.jpg": b"a new face"})
    del files["example-0.jpg"]
    assert remote_tree(project["client"], project["bucket"]) == files

    # The price: a change someone else made to the bucket goes unnoticed; a listing finds it.
    project["client"].delete_object(Bucket=project["bucket"], Key="snippet-4.txt")
    calls.clear()
    assert main(["-q", "-c", str(toml), "deploy", "s3", "--trust-state"]) == 0
    assert ops(calls, "PutObject") == []
    calls.clear()
    assert main(["-q", "-c", str(toml), "deploy", "s3"]) == 0
    assert ops(calls, "PutObject") == ["snippet-4.txt"] and len(ops(calls, "ListObjectsV2")) == 1


def test_trust_state_lists_after_a_failed_deploy(project, monkeypatch, calls):
    config, _ = project["make"]("trust_state = true")
    files = fill_public(project["public"], 3)
    real_upload = fail_upload_of(monkeypatch, "example-1.jpg")
    with pytest.raises(BakeryError):
        deploy_s3(config, quiet=True)
    assert json.loads(state_path(config.build_dir).read_text())["complete"] is False
    project["client"].delete_object(Bucket=project["bucket"], Key="snippet-0.txt")  # lost meanwhile

    monkeypatch.setattr(s3mod.Runner, "upload", real_upload)
    calls.clear()
    deploy_s3(config, quiet=True)  # trust_state from the config, but the state is not complete
    assert len(ops(calls, "ListObjectsV2")) == 1
    assert sorted(ops(calls, "PutObject")) == ["example-1.jpg", "index.html", "snippet-0.txt"]
    assert remote_tree(project["client"], project["bucket"]) == files
    assert json.loads(state_path(config.build_dir).read_text())["complete"] is True


@pytest.mark.parametrize("link,target", [("etc", "/etc"), ("loop", "."), ("passwd.txt", "/etc/passwd"),
                                         ("v0/broken.jpg", "nowhere.jpg")])
def test_symlinks_out_of_public_or_to_folders_stop_the_deploy_before_anything_is_sent(project, calls, link, target):
    config, _ = project["make"]()
    fill_public(project["public"], 4)
    path = project["public"] / link
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to(target)
    with pytest.raises(BakeryError, match=rf"{re.escape(link)} is a symlink to .*refusing to follow it"):
        deploy_s3(config, quiet=True)
    assert ops(calls, "PutObject") == []
    assert remote_tree(project["client"], project["bucket"]) == {}


def test_a_symlink_to_a_file_inside_public_is_published_as_that_file(project):
    config, _ = project["make"]()
    files = fill_public(project["public"], 4)
    (project["public"] / "same.txt").symlink_to(project["public"] / "snippet-1.txt")
    deploy_s3(config, quiet=True)
    assert remote_tree(project["client"], project["bucket"]) == {**files, "same.txt": files["snippet-1.txt"]}


def test_listing_shows_a_spinner_on_a_terminal_and_nothing_when_quiet(project, monkeypatch):
    from terminal_support import eager_spinner, fake_terminal

    config, _ = project["make"]()
    fill_public(project["public"], 3)
    steps: list[str] = []
    eager_spinner(s3mod, monkeypatch, steps)
    with fake_terminal() as drawn:
        deploy_s3(config, quiet=True)
    assert steps == [f"s3: listing s3://{project['bucket']}/"]
    assert drawn == [""]  # -q: neither the spinner nor the upload bar

    (project["public"] / "snippet-1.txt").write_bytes(b"a rewritten story\n")
    with fake_terminal() as drawn:
        deploy_s3(config, quiet=False)
    assert f"s3: listing s3://{project['bucket']}/ 0 s" in drawn[0]
    assert "s3: upload" in drawn[0]


def test_aws_endpoint_url_from_the_environment_is_used_and_keys_the_state(project, monkeypatch, calls):
    """No endpoint_url in site.toml: boto3's AWS_ENDPOINT_URL decides where the files go, and
    the deploy state is kept for that endpoint, so a state made against one store is never
    trusted for another."""
    config, toml = project["make"]()
    text = toml.read_text()
    toml.write_text("\n".join(line for line in text.splitlines() if not line.startswith("endpoint_url")))
    endpoint = project["client"].meta.endpoint_url
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    files = fill_public(project["public"], 3)
    assert main(["-q", "-c", str(toml), "deploy", "s3"]) == 0
    assert remote_tree(project["client"], project["bucket"]) == files
    assert json.loads(state_path(config.build_dir).read_text())["target"].startswith(endpoint)

    calls.clear()
    assert main(["-q", "-c", str(toml), "deploy", "s3", "--trust-state"]) == 0
    assert ops(calls, "ListObjectsV2") == []  # same endpoint: the complete state is trusted

    # Another endpoint (a second moto server: in one process it shares the first one's store,
    # which is fine here: what matters is that the state is not trusted, so the bucket is listed).
    other, other_url = start_moto()
    try:
        monkeypatch.setenv("AWS_ENDPOINT_URL", other_url)
        calls.clear()
        assert main(["-q", "-c", str(toml), "deploy", "s3", "--trust-state"]) == 0
        assert len(ops(calls, "ListObjectsV2")) == 1
    finally:
        other.stop()
