"""The preview server: content types, CSP header, 404s, loopback only, clean Ctrl-C."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request

import pytest

from bakery.config import load_config
from bakery.errors import BakeryError
from bakery.site.build import build_site, content_security_policy
from bakery.site.serve import make_server
from tests.conftest import make_pairs


@pytest.fixture
def served(project):
    config = load_config(project)
    make_pairs(config, ids=[0, 1])
    build_site(config, quiet=True)
    server = make_server(config.public_dir, "127.0.0.1", 0, content_security_policy(config))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", config
    server.shutdown()
    server.server_close()


def fetch(url):
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.headers, response.read()


def test_content_types_and_headers(served):
    base, config = served
    headers, body = fetch(base + "/")
    assert headers["Content-Type"] == "text/html; charset=utf-8"
    assert "default-src 'none'" in headers["Content-Security-Policy"]
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert fetch(base + "/snippet-1.txt")[0]["Content-Type"] == "text/plain; charset=utf-8"
    assert fetch(base + "/example-0.jpg")[0]["Content-Type"] == "image/jpeg"
    js = next(config.public_dir.glob("assets/app.*.js")).name
    css = next(config.public_dir.glob("assets/style.*.css")).name
    assert fetch(f"{base}/assets/{js}")[0]["Content-Type"] == "text/javascript; charset=utf-8"
    assert fetch(f"{base}/assets/{css}")[0]["Content-Type"] == "text/css; charset=utf-8"


def test_missing_file_is_404(served):
    base, _ = served
    with pytest.raises(urllib.error.HTTPError) as err:
        fetch(base + "/example-999.jpg")
    assert err.value.code == 404


def test_refuses_to_serve_an_unbaked_site(tmp_path):
    with pytest.raises(BakeryError, match=r"index.html: not found; run `bakery site`"):
        make_server(tmp_path, "127.0.0.1", 0, "")


def test_ctrl_c_shuts_down_cleanly(project):
    config = load_config(project)
    make_pairs(config, ids=[0])
    build_site(config, quiet=True)
    proc = subprocess.Popen([sys.executable, "-m", "bakery", "-c", str(project), "serve", "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    assert line.startswith("Serving ") and "http://127.0.0.1:" in line
    url = line.split(" at ")[1].split(" ")[0]
    assert fetch(url)[1].startswith(b"<!doctype html>")
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert "Stopped." in out and "Traceback" not in err
