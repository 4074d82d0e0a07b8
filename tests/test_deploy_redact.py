"""No secret on stderr (issue 10 item 14): one redaction helper, tested on each backend's error path."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from bakery.cli import main
from bakery.config import load_config
from deploy_support import (FakeCloudflare, aws_env, ensure_rsync, fill_public, free_port, write_project)


class EchoServer:
    """Answers every request with `status` and a body that quotes the request's headers back,
    as careless servers and proxies do; `body(headers_text)` shapes that body."""

    def __init__(self, status: int, body, content_type: str = "application/json"):
        class Handler(BaseHTTPRequestHandler):
            def answer(self):
                self.rfile.read(int(self.headers.get("Content-Length", 0) or 0))
                data = body(str(self.headers).replace("\n", " ")).encode()
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_HEAD = answer

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_redact_masks_url_credentials_headers_and_registered_secrets():
    from bakery.redact import redact, remember

    remember("registered-secret-value-42")
    text = ("connect to http://alice:pa55word@example.org:8080/x failed; rsync://bob:pw@h/m/ too; "
            "echo Authorization: Bearer abc.def-123; header {'Authorization': 'token zzzz9999'}; "
            "leaked registered-secret-value-42; user@web1:/srv and s3://bucket/key stay")
    out = redact(text, ["extra-secret"])
    for secret in ("pa55word", "alice:", "bob:pw", "abc.def-123", "zzzz9999", "registered-secret-value-42"):
        assert secret not in out
    assert "http://***@example.org:8080/x" in out and "rsync://***@h/m/" in out
    assert "user@web1:/srv and s3://bucket/key stay" in out
    assert redact("an extra-secret here", ["extra-secret"]) == "an *** here"
    assert redact("a key of 3 chars would mangle messages", ["key"]) == "a key of 3 chars would mangle messages"


# ---------------------------------------------------------------- S3

def test_s3_errors_hide_the_session_token_and_endpoint_credentials(tmp_path, monkeypatch, capsys):
    from botocore.exceptions import EndpointConnectionError

    from bakery.deploy.s3 import describe_error

    aws_env(monkeypatch, tmp_path)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s3-secret-key-value-1")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "s3-session-token-value-2")
    server = EchoServer(403, lambda headers: "<?xml version='1.0'?><Error><Code>AccessDenied</Code>"
                        f"<Message>denied: {headers} (secret s3-secret-key-value-1)</Message></Error>",
                        "application/xml")
    try:
        fill_public(tmp_path / "public", 2)
        toml = write_project(tmp_path, f'[deploy]\ntargets = ["s3"]\n[deploy.s3]\nbucket = "b-1"\n'
                                       f'endpoint_url = "http://127.0.0.1:{server.port}"\n')
        assert main(["-q", "-c", str(toml), "deploy"]) == 1
    finally:
        server.close()
    err = capsys.readouterr().err
    assert "AccessDenied" in err and "X-Amz-Security-Token" in err  # the echo did come back...
    assert "s3-session-token-value-2" not in err and "s3-secret-key-value-1" not in err  # ...without secrets

    code, message = describe_error(EndpointConnectionError(endpoint_url="http://AKIAX:url-password-3@127.0.0.1:9/b"))
    assert "url-password-3" not in message and "http://***@127.0.0.1:9/b" in message


# ---------------------------------------------------------------- CloudFlare

def test_cloudflare_errors_hide_the_token_even_when_the_api_echoes_it(tmp_path, monkeypatch, capsys):
    token = "cf-token-echoed-back-0a1b2c3d"
    monkeypatch.setenv("TEST_CF_TOKEN", token)
    cf = FakeCloudflare()
    try:
        config = load_config(write_project(tmp_path, f"""[deploy.cloudflare]
zone_id = "z"
token_env = "TEST_CF_TOKEN"
api_url = "{cf.url}"
base_url = "https://waifus.example.org"
"""))
        cf.replies.append((400, {"success": False, "errors": [
            {"code": 6003, "message": f"Invalid request headers: Authorization: Bearer {token}"},
            {"code": 6111, "message": f"Invalid format for Authorization header ({token})"}]}, {}))
        from bakery.deploy.cloudflare import PurgeError, purge_after_deploy

        with pytest.raises(PurgeError) as info:
            purge_after_deploy(config, ["index.html"])
    finally:
        cf.stop()
    assert "Invalid request headers" in str(info.value) and token not in str(info.value)


@pytest.mark.parametrize("pasted", ["cf-0a1b2c3d4e5f-6a7b8c9d", "Zx8vQ2mN4pL6tR9sW1yB3dF5hJ7kC0gE"])
def test_a_token_pasted_as_the_variable_name_is_not_printed_back(tmp_path, pasted, capsys):
    toml = write_project(tmp_path, f'[deploy.cloudflare]\nzone_id = "z"\ntoken_env = "{pasted}"\n')
    assert main(["-q", "-c", str(toml), "deploy"]) == 2
    err = capsys.readouterr().err
    assert "token_env: must be the NAME of an environment variable" in err and pasted not in err


# ---------------------------------------------------------------- rsync

def test_rsync_errors_hide_destination_credentials(tmp_path, capsys):
    ensure_rsync()
    fill_public(tmp_path / "public", 1)
    dest = f"rsync://mirror:rsync-url-pass-4@127.0.0.1:{free_port()}/site/"
    toml = write_project(tmp_path, f'[deploy]\ntargets = ["rsync"]\n[[deploy.rsync]]\nname = "m"\n'
                                   f'destination = "{dest}"\ntimeout_seconds = 5\n')
    assert main(["-c", str(toml), "deploy"]) == 1
    err = capsys.readouterr().err
    assert "rsync m: FAILED" in err and "rsync://***@127.0.0.1" in err and "rsync-url-pass-4" not in err


# ---------------------------------------------------------------- the text stage's OpenAI-compatible backend

def openai_backend(tmp_path, base_url: str, key: str):
    from bakery.text.backends.openai_backend import OpenAIBackend

    toml = write_project(tmp_path, f"""[text.openai]
base_url = "{base_url}"
model = "m"
api_key_env = "TEST_OPENAI_KEY"
max_retries = 0
timeout_s = 5
""")
    return OpenAIBackend(load_config(toml).text.openai, key)


def test_openai_errors_hide_the_key_and_base_url_credentials(tmp_path):
    from bakery.errors import BakeryError

    key = "sk-openai-key-echoed-5e6f"
    server = EchoServer(401, lambda headers: json.dumps({"error": {"message": f"bad key in {headers}"}}))
    try:
        base = f"http://127.0.0.1:{server.port}/v1"
        backend = openai_backend(tmp_path, base, key)
        with pytest.raises(BakeryError) as info:
            backend.post_with_retries({"model": "m", "prompt": "x"}, f"{base}/completions")
    finally:
        server.close()
    assert "HTTP 401" in str(info.value) and key not in str(info.value)

    base = f"http://user:oa-url-pass-6@127.0.0.1:{free_port()}/v1"
    backend = openai_backend(tmp_path, base, key)
    t0 = time.monotonic()
    with pytest.raises(BakeryError) as info:
        backend.post_with_retries({"model": "m", "prompt": "x"}, f"{base}/completions")
    assert time.monotonic() - t0 < 10
    assert "giving up" in str(info.value) and "oa-url-pass-6" not in str(info.value)
    assert "http://***@127.0.0.1" in str(info.value)
