"""One meaning for deploy flags on every target, a per-file --dry-run, checks before anything is
sent, and a CDN purge that cannot be lost (issue 11 items 3, 4 (deploy side) and 5)."""

from __future__ import annotations

import json
import time

import boto3
import pytest

from bakery.cli import main
from deploy_support import FakeCloudflare, aws_env, ensure_rsync, fill_public, start_moto, tree_bytes, write_project

TOKEN = "cf-test-token-flags-77"

_buckets = iter(range(10_000))


@pytest.fixture(scope="module")
def endpoint():
    server, url = start_moto()
    yield url
    server.stop()


@pytest.fixture
def cf():
    fake = FakeCloudflare()
    yield fake
    fake.stop()


@pytest.fixture
def s3site(tmp_path, monkeypatch, endpoint):
    """A project deploying to a fresh moto bucket, CloudFlare at a fake API; returns a toml maker."""
    aws_env(monkeypatch, tmp_path)
    bucket = f"flags-{next(_buckets)}-{int(time.time() * 1000) % 100000}"
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    client.create_bucket(Bucket=bucket)

    def make(s3_extra: str = "", cloudflare: str = "", rsync: str = "", targets: str = '"s3"'):
        return write_project(tmp_path, f"""[deploy]
targets = [{targets}]
[deploy.s3]
bucket = "{bucket}"
endpoint_url = "{endpoint}"
concurrency = 2
{s3_extra}
{cloudflare}
{rsync}
""", site_extra='base_url = "https://waifus.example.org"')

    def remote():
        return {o["Key"]: client.get_object(Bucket=bucket, Key=o["Key"])["Body"].read()
                for o in client.list_objects_v2(Bucket=bucket).get("Contents", [])}

    return {"make": make, "remote": remote, "public": tmp_path / "public", "root": tmp_path}


def cloudflare_toml(url: str) -> str:
    return f'[deploy.cloudflare]\nzone_id = "zone1"\ntoken_env = "TEST_CF_TOKEN"\napi_url = "{url}"\n'


# ---------------------------------------------------------------- item 3: credentials first, purge kept

def test_a_missing_purge_token_stops_the_deploy_before_any_upload(s3site, cf, monkeypatch, capsys):
    monkeypatch.delenv("TEST_CF_TOKEN", raising=False)
    fill_public(s3site["public"], 3)
    toml = s3site["make"](cloudflare=cloudflare_toml(cf.url))
    assert main(["-q", "-c", str(toml), "deploy"]) == 1
    err = capsys.readouterr().err.strip()
    assert "nothing was sent" in err and "TEST_CF_TOKEN is not set" in err and "\n" not in err
    assert s3site["remote"]() == {}


def test_a_failed_purge_is_kept_on_disk_and_retried_by_a_deploy_that_changes_nothing(s3site, cf, monkeypatch,
                                                                                      capsys):
    monkeypatch.setenv("TEST_CF_TOKEN", TOKEN)
    public = s3site["public"]
    fill_public(public, 3)
    toml = s3site["make"](cloudflare=cloudflare_toml(cf.url))
    queue = s3site["root"] / "build" / "deploy" / "pending-purge.json"
    assert main(["-q", "-c", str(toml), "deploy"]) == 0
    (public / "snippet-1.txt").write_text("a rewritten story")
    cf.replies.append((403, {"success": False, "errors": [{"code": 10000, "message": "Authentication error"}]}, {}))
    assert main(["-q", "-c", str(toml), "deploy"]) == 1  # uploaded, but the purge failed
    assert "the next deploy retries it" in capsys.readouterr().err
    assert s3site["remote"]()["snippet-1.txt"] == b"a rewritten story"
    assert json.loads(queue.read_text())["rels"] == ["snippet-1.txt"]

    cf.requests.clear()
    assert main(["-q", "-c", str(toml), "deploy"]) == 0  # nothing changed, but a purge is owed
    assert cf.purged == ["https://waifus.example.org/snippet-1.txt"]
    assert not queue.exists()
    cf.requests.clear()
    assert main(["-q", "-c", str(toml), "deploy"]) == 0
    assert cf.requests == []  # paid off: nothing more to purge


# ---------------------------------------------------------------- item 4 (deploy side): no empty site

def test_deploy_refuses_a_site_without_index_or_pairs(s3site, capsys):
    toml = s3site["make"]()
    public = s3site["public"]
    public.mkdir()
    (public / "index.html").write_text("<!doctype html><title>0 pairs</title>")
    (public / "example-0.jpg").write_bytes(b"an image without its snippet")
    (public / "snippet-01.txt").write_text("not a canonical name")
    assert main(["-q", "-c", str(toml), "deploy"]) == 1
    assert "no image + snippet pairs" in capsys.readouterr().err
    assert s3site["remote"]() == {}
    assert main(["-q", "-c", str(toml), "deploy", "--allow-empty"]) == 0
    assert "index.html" in s3site["remote"]()
    (public / "index.html").unlink()
    assert main(["-q", "-c", str(toml), "deploy", "--allow-empty"]) == 1
    assert "index.html: not found" in capsys.readouterr().err


# ---------------------------------------------------------------- item 5: one meaning for the flags

def test_delete_flag_and_key_combine_the_same_way_for_s3_and_rsync(s3site):
    ensure_rsync()
    public, root = s3site["public"], s3site["root"]
    files = fill_public(public, 3)
    dest = root / "mirror"

    def toml(delete_key: str):
        return s3site["make"](s3_extra=delete_key, targets='"s3", "rsync"',
                              rsync=f'[[deploy.rsync]]\nname = "m"\ndestination = "{dest}"\n{delete_key}')

    plain = toml("")
    assert main(["-q", "-c", str(plain), "deploy"]) == 0
    (public / "example-2.jpg").unlink()
    del files["example-2.jpg"]
    assert main(["-q", "-c", str(plain), "deploy"]) == 0  # neither key nor flag: nothing deleted
    assert "example-2.jpg" in s3site["remote"]() and (dest / "example-2.jpg").exists()
    assert main(["-q", "-c", str(toml("delete = true")), "deploy", "--no-delete"]) == 0  # the flag wins
    assert "example-2.jpg" in s3site["remote"]() and (dest / "example-2.jpg").exists()
    assert main(["-q", "-c", str(plain), "deploy", "--delete", "--max-deletes", "0"]) == 1  # cap for both
    assert "example-2.jpg" in s3site["remote"]() and (dest / "example-2.jpg").exists()
    assert main(["-q", "-c", str(plain), "deploy", "--delete"]) == 0  # the flag, for every target
    assert s3site["remote"]() == files and tree_bytes(dest) == files
    (public / "snippet-2.txt").unlink()
    del files["snippet-2.txt"]
    assert main(["-q", "-c", str(toml("delete = true")), "deploy"]) == 0  # the key, for every target
    assert s3site["remote"]() == files and tree_bytes(dest) == files


@pytest.mark.parametrize("spelling", ["--dry-run", "--dryrun"])
def test_dry_run_lists_each_file_like_aws_s3_sync(s3site, spelling, capsys):
    ensure_rsync()
    public, root = s3site["public"], s3site["root"]
    fill_public(public, 2)
    dest = root / "mirror"
    toml = s3site["make"](targets='"s3", "rsync"', rsync=f'[[deploy.rsync]]\nname = "m"\ndestination = "{dest}"')
    assert main(["-q", "-c", str(toml), "deploy"]) == 0
    (public / "snippet-1.txt").write_text("a changed story, longer than before")
    (public / "example-5.jpg").write_bytes(b"a new face")
    (public / "example-0.jpg").unlink()
    capsys.readouterr()
    assert main(["-q", "-c", str(toml), "deploy", spelling, "--delete"]) == 0
    out = capsys.readouterr().out.splitlines()
    for line in ("upload: snippet-1.txt", "upload: example-5.jpg", "delete: example-0.jpg"):
        assert out.count(line) == 2, (line, out)  # once per target
    assert not any(line.startswith(("upload: index.html", "upload: example-1.jpg")) for line in out)
    assert "example-0.jpg" in s3site["remote"]() and (dest / "example-0.jpg").exists()  # nothing changed


# ---------------------------------------------------------------- issue 21 item 5: one preflight

def test_deploy_s3_runs_the_same_preflight_as_deploy(s3site, cf, monkeypatch, capsys):
    monkeypatch.delenv("TEST_CF_TOKEN", raising=False)
    public = s3site["public"]
    fill_public(public, 3)
    toml = s3site["make"](cloudflare=cloudflare_toml(cf.url), targets="")
    assert main(["-q", "-c", str(toml), "deploy", "s3"]) == 1
    err = capsys.readouterr().err.strip()
    assert "nothing was sent" in err and "TEST_CF_TOKEN is not set" in err and "\n" not in err
    (public / "index.html").unlink()
    monkeypatch.setenv("TEST_CF_TOKEN", TOKEN)
    assert main(["-q", "-c", str(toml), "deploy", "s3"]) == 1
    assert "nothing was sent" in capsys.readouterr().err
    assert s3site["remote"]() == {} and cf.requests == []


def test_each_targets_checks_run_once(s3site, monkeypatch):
    """The preflight asks each chosen target once (rsync's checks used to run twice)."""
    from bakery.deploy import rsync, s3

    ensure_rsync()
    fill_public(s3site["public"], 2)
    dest = s3site["root"] / "mirror"
    toml = s3site["make"](targets='"s3", "rsync"', rsync=f'[[deploy.rsync]]\nname = "m"\ndestination = "{dest}"')
    asked = []
    for module in (s3, rsync):
        monkeypatch.setattr(module, "problems", lambda config, options, real=module.problems, name=module.__name__:
                            asked.append(name) or real(config, options))
    assert main(["-q", "-c", str(toml), "deploy", "rsync"]) == 0
    assert asked == ["bakery.deploy.rsync"] and (dest / "index.html").is_file()
    asked.clear()
    assert main(["-q", "-c", str(toml), "deploy"]) == 0
    assert sorted(asked) == ["bakery.deploy.rsync", "bakery.deploy.s3"] and "index.html" in s3site["remote"]()


def test_no_target_imports_the_preflight_and_no_import_circle_in_deploy_or_site():
    import ast
    from pathlib import Path

    import bakery

    root = Path(bakery.__file__).parent
    graph = {}
    for path in sorted([*root.glob("deploy/*.py"), *root.glob("site/*.py"), root / "published.py"]):
        name = ".".join(path.relative_to(root.parent).with_suffix("").parts).removesuffix(".__init__")
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                found.add(node.module)
            elif isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
        graph[name] = {m for m in found if m.startswith("bakery.")}
    assert [m for m, deps in graph.items() if "bakery.deploy.preflight" in deps] == ["bakery.deploy.run"]
    assert not {m for m in graph["bakery.deploy.preflight"] if m.startswith("bakery.deploy")}

    def reaches(start, goal, seen):
        return any(dep == goal or (dep in graph and dep not in seen and reaches(dep, goal, seen | {dep}))
                   for dep in graph[start])

    assert [m for m in graph if reaches(m, m, {m})] == []
