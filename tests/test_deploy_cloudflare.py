"""CloudFlare purge against a local HTTP server on 127.0.0.1 that records every request."""

from __future__ import annotations

import re

import boto3
import pytest

from bakery.cli import main
from bakery.config import load_config
from bakery.deploy.cloudflare import PurgeError, purge_after_deploy, urls_for
from deploy_support import FakeCloudflare, aws_env, fill_public, free_port, start_moto, write_project

TOKEN = "cf-test-token-3f9a"


@pytest.fixture
def cf():
    fake = FakeCloudflare()
    yield fake
    fake.stop()


def cf_config(tmp_path, api_url: str, extra: str = ""):
    return load_config(write_project(tmp_path, f"""[deploy.cloudflare]
zone_id = "0123456789abcdef0123456789abcdef"
token_env = "TEST_CF_TOKEN"
api_url = "{api_url}"
base_url = "https://waifus.example.org"
{extra}
"""))


def test_changed_urls_are_purged_in_batches_of_30_with_bearer_token(tmp_path, cf, monkeypatch):
    monkeypatch.setenv("TEST_CF_TOKEN", TOKEN)
    config = cf_config(tmp_path, cf.url)
    rels = ["index.html"] + [f"snippet-{i}.txt" for i in range(63)]
    purge_after_deploy(config, rels)
    assert [len(r["json"]["files"]) for r in cf.requests] == [30, 30, 5]  # 65 URLs: page twice (/ and /index.html)
    assert sorted(cf.purged) == sorted(urls_for("https://waifus.example.org", rels))
    assert "https://waifus.example.org/" in cf.purged
    for r in cf.requests:
        assert r["path"] == "/client/v4/zones/0123456789abcdef0123456789abcdef/purge_cache"
        assert r["auth"] == f"Bearer {TOKEN}" and r["type"] == "application/json"


def test_purge_everything_and_the_max_urls_fallback(tmp_path, cf, monkeypatch):
    monkeypatch.setenv("TEST_CF_TOKEN", TOKEN)
    config = cf_config(tmp_path, cf.url, "max_urls = 10")
    purge_after_deploy(config, [], everything=True)
    purge_after_deploy(config, [f"example-{i}.jpg" for i in range(11)])  # too many URLs: everything
    assert [r["json"] for r in cf.requests] == [{"purge_everything": True}, {"purge_everything": True}]
    purge_after_deploy(config, [])  # nothing changed, nothing asked: no request
    assert len(cf.requests) == 2


def test_api_error_is_one_line_with_status_and_message_and_no_token(tmp_path, cf, monkeypatch):
    monkeypatch.setenv("TEST_CF_TOKEN", TOKEN)
    config = cf_config(tmp_path, cf.url)
    cf.replies.append((403, {"success": False, "errors": [{"code": 10000, "message": "Authentication error"}]}, {}))
    with pytest.raises(PurgeError) as info:
        purge_after_deploy(config, ["snippet-1.txt"])
    text = str(info.value)
    assert text == "cloudflare: purge failed: HTTP 403: Authentication error (code 10000)"
    assert TOKEN not in text

    cf.replies.append((200, {"success": False, "errors": [{"code": 1012, "message": "Request must contain one of"}]}, {}))
    with pytest.raises(PurgeError, match=r"HTTP 200: Request must contain one of \(code 1012\)"):
        purge_after_deploy(config, ["snippet-1.txt"])


def test_rate_limit_is_retried(tmp_path, cf, monkeypatch):
    monkeypatch.setenv("TEST_CF_TOKEN", TOKEN)
    config = cf_config(tmp_path, cf.url)
    cf.replies.append((429, {"success": False, "errors": [{"code": 971, "message": "throttled"}]}, {"Retry-After": "0"}))
    purge_after_deploy(config, ["snippet-1.txt"])
    assert len(cf.requests) == 2 and cf.purged == ["https://waifus.example.org/snippet-1.txt"] * 2


def test_missing_token_and_unreachable_api(tmp_path, monkeypatch):
    monkeypatch.delenv("TEST_CF_TOKEN", raising=False)
    config = cf_config(tmp_path, f"http://127.0.0.1:{free_port()}/client/v4")
    with pytest.raises(PurgeError, match="environment variable TEST_CF_TOKEN is not set"):
        purge_after_deploy(config, ["index.html"])
    monkeypatch.setenv("TEST_CF_TOKEN", TOKEN)
    with pytest.raises(PurgeError, match=r"cannot reach http://127\.0\.0\.1:\d+/client/v4"):
        purge_after_deploy(config, ["index.html"])


@pytest.mark.parametrize("snippet, problem", [
    ('zone_id = "z"\npurge = "some"', "deploy.cloudflare.purge: must be one of"),
    ('zone_id = "z"\ntoken_env = "MY TOKEN"', "deploy.cloudflare.token_env: must be the NAME of an environment variable"),
    ('zone_id = "z"\nbatch_size = 0', "deploy.cloudflare.batch_size: 0 is out of range"),
    ('token_env = "X"', "deploy.cloudflare.zone_id: is required but missing"),
    ('zone_id = "z"\ntoken = "secret"', "deploy.cloudflare.token: unknown key"),
])
def test_cloudflare_config_errors_name_the_key(tmp_path, snippet, problem):
    with pytest.raises(Exception, match=re.escape(problem)):
        load_config(write_project(tmp_path, f"[deploy.cloudflare]\n{snippet}\n"))


def test_deploy_purges_what_it_overwrote(tmp_path, cf, monkeypatch, capsys):
    server, endpoint = start_moto()
    try:
        aws_env(monkeypatch, tmp_path)
        monkeypatch.setenv("TEST_CF_TOKEN", TOKEN)
        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket="cf-site")
        toml = write_project(tmp_path, f"""[deploy]
targets = ["s3"]
[deploy.s3]
bucket = "cf-site"
endpoint_url = "{endpoint}"
[deploy.cloudflare]
zone_id = "zone1"
token_env = "TEST_CF_TOKEN"
api_url = "{cf.url}"
""", site_extra='base_url = "https://waifus.example.org"')
        fill_public(tmp_path / "public", 3)
        assert main(["-q", "-c", str(toml), "deploy"]) == 0
        assert cf.requests == []  # first deploy: nothing was cached before, nothing to purge
        (tmp_path / "public" / "snippet-2.txt").write_text("new text")
        (tmp_path / "public" / "index.html").write_text("<!doctype html><title>new</title>")
        assert main(["-q", "-c", str(toml), "deploy"]) == 0
        assert sorted(cf.purged) == ["https://waifus.example.org/", "https://waifus.example.org/index.html",
                                     "https://waifus.example.org/snippet-2.txt"]
        assert main(["-q", "-c", str(toml), "deploy", "s3", "--purge-everything"]) == 0
        assert cf.requests[-1]["json"] == {"purge_everything": True}
        cf.replies.append((500, {"success": False, "errors": [{"code": 1, "message": "boom"}]}, {}))
        cf.replies.extend([(500, {"success": False, "errors": [{"code": 1, "message": "boom"}]}, {"Retry-After": "0"})] * 3)
        assert main(["-q", "-c", str(toml), "deploy", "--purge-everything"]) == 1
        err = capsys.readouterr().err
        assert "HTTP 500: boom (code 1)" in err and TOKEN not in err
    finally:
        server.stop()


@pytest.mark.parametrize("url", [
    "http://api.cloudflare.com/client/v4",      # the token would cross the network in clear
    "http://127.0.0.1.evil.example/client/v4",  # a host name that only starts like loopback
    "http://127.0.0.1@evil.example/client/v4",  # loopback as user info, the real host elsewhere
    "http://localhost:8080/client/v4",          # a name: the hosts file can point it anywhere
    "ftp://api.cloudflare.com/client/v4",
    "http://[::1",
])
def test_api_url_must_be_https_except_loopback(tmp_path, url):
    with pytest.raises(Exception, match=r"deploy\.cloudflare\.api_url: must be an (http:// or )?https:// URL"):
        load_config(write_project(tmp_path, f'[deploy.cloudflare]\nzone_id = "z"\napi_url = "{url}"\n'))


@pytest.mark.parametrize("url", ["https://api.cloudflare.com/client/v4", "http://127.0.0.1:8787/client/v4",
                                 "http://[::1]:8787/client/v4"])
def test_api_url_accepts_https_and_loopback_http(tmp_path, url):
    config = load_config(write_project(tmp_path, f'[deploy.cloudflare]\nzone_id = "z"\napi_url = "{url}"\n'))
    assert config.deploy.cloudflare.api_url == url


def test_http_api_url_is_one_line_through_the_cli(tmp_path, capsys):
    toml = write_project(tmp_path, '[deploy.cloudflare]\nzone_id = "z"\napi_url = "http://api.example/v4"\n')
    assert main(["-c", str(toml), "deploy", "--dry-run"]) != 0
    err = capsys.readouterr().err.strip()
    assert "deploy.cloudflare.api_url: must be an https:// URL" in err and "\n" not in err
