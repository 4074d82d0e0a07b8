"""Shared helpers for the deploy tests: a tiny project on disk and a moto S3 server on loopback."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import socket
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from debian import ensure_command

REPO = Path(__file__).resolve().parents[1]
FAKE_AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def write_project(root: Path, deploy_toml: str, site_extra: str = "") -> Path:
    """content/site.toml under root (so root is the project root) with the given [deploy] text."""
    (root / "content" / "prompts").mkdir(parents=True, exist_ok=True)
    (root / "content" / "prompts" / "plot.txt").write_text("A plot summary.\n", encoding="utf-8")
    path = root / "content" / "site.toml"
    path.write_text(f"""[site]
templates_dir = "{REPO / 'templates'}"
static_dir = "{REPO / 'static'}"
{site_extra}

[[images.bands]]
seeds = "0-9"
psi = 0.7

{deploy_toml}
""", encoding="utf-8")
    return path


def fill_public(public: Path, n: int, seed: int = 0, image_bytes: int = 600) -> dict[str, bytes]:
    """A fake baked site: n image/snippet pairs, an asset and index.html; returns rel → bytes."""
    rng = random.Random(seed)
    files = {"index.html": b"<!doctype html><title>t</title>" + str(seed).encode(),
             "assets/style.0123456789.css": b"body{margin:0}"}
    for i in range(n):
        files[f"example-{i}.jpg"] = bytes(rng.getrandbits(8) for _ in range(image_bytes))
        files[f"snippet-{i}.txt"] = f"_Title {i}_: a story number {i} from seed {seed}.\n".encode()
    for rel, data in files.items():
        (public / rel).parent.mkdir(parents=True, exist_ok=True)
        (public / rel).write_bytes(data)
    return files


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*")
            if p.is_file() and p.name != "bakery.lock"}  # the project lock is no output


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_moto():
    """A moto S3 server on 127.0.0.1 (a free port) in this process; returns (server, endpoint)."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    return server, f"http://127.0.0.1:{port}"


def aws_env(monkeypatch, tmp_path: Path) -> None:
    """Fake credentials in this test process only; no user AWS config can leak in."""
    for name, value in FAKE_AWS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # never ask 169.254.169.254 for credentials


def subprocess_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra or {})
    return env


def ensure_rsync() -> None:
    """Debian's rsync; installed here when missing and we may (root + apt-get)."""
    if not ensure_command("rsync", "rsync"):
        pytest.skip("rsync is not installed and cannot be installed here")


@contextlib.contextmanager
def rsync_daemon(folder, modules: str):
    """rsync --daemon on 127.0.0.1:<free port> with the given module text; yields the port."""
    ensure_rsync()
    port = free_port()
    conf = folder / "rsyncd.conf"
    conf.write_text(f"pid file = {folder}/rsyncd.pid\nlog file = {folder}/rsyncd.log\n{modules}")
    proc = subprocess.Popen(["rsync", "--daemon", "--no-detach", f"--config={conf}", f"--port={port}",
                             "--address=127.0.0.1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"rsync daemon did not start: {(folder / 'rsyncd.log').read_text() if (folder / 'rsyncd.log').exists() else ''}")
            time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def writable_module(name, path) -> str:
    return f"[{name}]\n    path = {path}\n    read only = no\n    use chroot = no\n    uid = root\n    gid = root\n"


class FakeCloudflare:
    """Answers POST .../purge_cache with queued (status, body, headers) replies, default success."""

    def __init__(self):
        self.requests: list[dict] = []
        self.replies: list[tuple[int, dict, dict]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                fake.requests.append({"path": self.path, "auth": self.headers.get("Authorization"),
                                      "type": self.headers.get("Content-Type"), "json": json.loads(body)})
                status, doc, headers = fake.replies.pop(0) if fake.replies else (
                    200, {"success": True, "errors": [], "result": {"id": "x"}}, {})
                data = json.dumps(doc).encode()
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/client/v4"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    @property
    def purged(self) -> list[str]:
        return [u for r in self.requests for u in r["json"].get("files", [])]
