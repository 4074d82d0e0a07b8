"""The preview server: content types (deploy's table), CSP header, 404s, only regular files
inside public/ (no symlinks, no listings), request log lines, --watch rebuilds, loopback only,
clean Ctrl-C."""

from __future__ import annotations

import http.client
import logging
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import pytest

from bakery.config import load_config
from bakery.deploy.config import DEFAULT_CONTENT_TYPES
from bakery.deploy.files import content_type
from bakery.errors import BakeryError
from bakery.site.build import build_site, content_security_policy
from bakery.site.serve import Rebuilder, Watcher, deploy_content_types, make_server
from tests.conftest import MINIMAL_BANDS, REPO, make_pairs, write_project


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


def status_of(url) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as err:
        return err.code


def raw_get(base, target, method="GET"):
    """A request target sent exactly as written (urllib would not send "/../x" as it is)."""
    host, port = base.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.putrequest(method, target, skip_accept_encoding=True)
        conn.endheaders()
        response = conn.getresponse()
        return response.status, response.getheaders(), response.read()
    finally:
        conn.close()


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


@pytest.mark.parametrize("quiet", [False, True])
def test_ctrl_c_shuts_down_cleanly_and_requests_are_logged(project, quiet):
    config = load_config(project)
    make_pairs(config, ids=[0])
    build_site(config, quiet=True)
    proc = subprocess.Popen([sys.executable, "-m", "bakery", "-c", str(project)] + ["-q"] * quiet +
                            ["serve", "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    assert line.startswith("Serving ") and "http://127.0.0.1:" in line
    url = line.split(" at ")[1].split(" ")[0]
    assert fetch(url)[1].startswith(b"<!doctype html>")
    assert status_of(url + "nothing-here.txt") == 404
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert "Stopped." in out and "Traceback" not in err
    requests = [line for line in err.splitlines() if '"GET ' in line]
    if quiet:  # -q: no request lines
        assert requests == []
    else:  # one line per request, Common Log Format, as python -m http.server and web servers write them
        size = (config.public_dir / "index.html").stat().st_size
        assert len(requests) == 2, err
        assert requests[0].startswith("127.0.0.1 - - [") and requests[0].endswith(f'] "GET / HTTP/1.1" 200 {size}')
        assert requests[1].endswith('"GET /nothing-here.txt HTTP/1.1" 404 -')


# --- issue 20 item 8: only regular files inside public/ ---------------------------------------

def test_symlinks_anywhere_are_404_even_to_published_files(served, tmp_path):
    base, config = served
    public = config.public_dir
    secret = tmp_path / "secret.txt"
    secret.write_text("outside public/")
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "page.html").write_text("<p>from elsewhere</p>")
    os.symlink(secret, public / "leak.txt")  # out of public/
    os.symlink("/etc/passwd", public / "passwd.txt")
    os.symlink(public / "example-0.jpg", public / "example-7.jpg")  # inside public/: still not served
    os.symlink(outside, public / "linked")  # a folder out of public/
    os.symlink(public / "assets", public / "assets-link")  # a folder inside public/
    (public / "v1").mkdir()
    os.symlink(public / "index.html", public / "v1" / "index.html")  # a folder's index.html
    js = next(public.glob("assets/app.*.js")).name
    for target in ("/leak.txt", "/passwd.txt", "/example-7.jpg", "/linked/page.html", "/linked/",
                   f"/assets-link/{js}", "/v1/", "/v1"):
        assert status_of(base + target) == 404, target
    assert status_of(f"{base}/assets/{js}") == 200 and status_of(base + "/example-0.jpg") == 200


def test_no_directory_listings_and_a_folder_serves_its_index(served):
    base, config = served
    public = config.public_dir
    (public / "v1").mkdir()
    (public / "v1" / "example-0.jpg").write_bytes((public / "example-0.jpg").read_bytes())
    (public / "v2").mkdir()
    (public / "v2" / "index.html").write_text("<!doctype html><p>version 2</p>")
    for target in ("/assets/", "/assets", "/v1/", "/v1", "/v1/example-0.jpg/", "/index.html/x"):
        status, _, body = raw_get(base, target)
        assert status == 404 and b"example-0.jpg" not in body, target
    assert status_of(base + "/v1/example-0.jpg") == 200
    status, headers, _ = raw_get(base, "/v2?psi=1.1")
    assert status == 301 and dict(headers)["Location"] == "/v2/?psi=1.1"
    headers, body = fetch(base + "/v2/")
    assert body == b"<!doctype html><p>version 2</p>" and headers["Content-Type"] == "text/html; charset=utf-8"


def test_traversal_leftovers_and_special_files_are_404(served):
    base, config = served
    public = config.public_dir
    (public / ".tmp-index.html.x1").write_text("half a page")  # an interrupted write's leftover
    os.mkfifo(public / "pipe.txt")  # opening it would block a naive server
    for target in ("/../../../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd", "/assets/../../index.html",
                   "/.tmp-index.html.x1", "/pipe.txt", "/snippet-0.txt%00.jpg", "//etc/passwd"):
        assert raw_get(base, target)[0] == 404, target
    assert raw_get(base, "/grid.html?scroll&psi=1.1")[0] == 200  # the query is not part of the path
    status, headers, body = raw_get(base, "/snippet-1.txt", method="HEAD")
    assert status == 200 and body == b"" and dict(headers)["Content-Length"] == str(
        (public / "snippet-1.txt").stat().st_size)


def test_content_types_are_deploy_s(served):
    """serve's old table was a stale subset of deploy's (issue 21): both now use deploy's."""
    base, config = served
    for name in ("favicon.ico", "feed.xml", "clip.webm", "old.tar", "data.json", "page.svg", "a.unknownext"):
        (config.public_dir / name).write_bytes(b"x")
        assert fetch(f"{base}/{name}")[0]["Content-Type"] == content_type(name, DEFAULT_CONTENT_TYPES), name
    assert fetch(f"{base}/favicon.ico")[0]["Content-Type"] == "image/x-icon"  # mimetypes says otherwise


def test_content_types_follow_the_configured_s3_table(tmp_path):
    path = write_project(tmp_path, MINIMAL_BANDS + """
        [deploy.s3]
        bucket = "waifus"
        content_types = { ".txt" = "text/plain; charset=us-ascii" }
    """)
    types = deploy_content_types(load_config(path))
    assert types[".txt"] == "text/plain; charset=us-ascii" and types[".jpg"] == "image/jpeg"
    broken = write_project(tmp_path / "b", MINIMAL_BANDS + "[deploy.s3]\nbucket = \"NO\"\n")
    assert deploy_content_types(load_config(broken, sections=[])) == DEFAULT_CONTENT_TYPES


def test_serve_and_deploy_share_one_table_and_serve_imports_no_deploy_module():
    """The table lives in a core module (bakery.published) that both import; deploy's names still work."""
    import ast

    import bakery.deploy.config
    import bakery.deploy.files
    import bakery.published
    import bakery.site.serve

    assert bakery.deploy.config.DEFAULT_CONTENT_TYPES is bakery.published.DEFAULT_CONTENT_TYPES
    assert bakery.deploy.files.content_type is bakery.published.content_type is bakery.site.serve.content_type
    tree = ast.parse(open(bakery.site.serve.__file__).read())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)} | \
        {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert not {m for m in imported if m and m.startswith("bakery.deploy")}


# --- --watch ----------------------------------------------------------------------------------

def own_project(tmp_path):
    """A project with its own copies of templates/ and static/ (the tests edit them)."""
    shutil.copytree(REPO / "templates", tmp_path / "templates")
    shutil.copytree(REPO / "static", tmp_path / "static")
    path = write_project(tmp_path, MINIMAL_BANDS, with_site_dirs=False)
    config = load_config(path)
    make_pairs(config, ids=[0, 1])
    return path, config


def test_rebuild_failure_keeps_the_last_good_site_and_a_held_lock_waits(tmp_path, caplog):
    from bakery.lock import project_lock

    path, config = own_project(tmp_path)
    rebuild = Rebuilder(path)
    with caplog.at_level(logging.INFO, logger="bakery"):
        assert rebuild([]) is True
    good = (config.public_dir / "index.html").read_bytes()
    template = tmp_path / "templates" / "base.html"  # the page's frame: every page extends it
    template.write_text(template.read_text() + "{% if %}")
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="bakery"):
        assert rebuild([str(template)]) is True
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "\n" not in lines[0]
    assert lines[0].startswith("serve: rebuild after a change to templates/base.html failed: ")
    assert "template error" in lines[0] and lines[0].endswith("still serving the last good site")
    assert (config.public_dir / "index.html").read_bytes() == good
    template.write_text(template.read_text().replace("{% if %}", "<!-- edited -->"))
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="bakery"):
        with project_lock(config.build_dir, "bakery bake"):  # a bake in another terminal
            assert rebuild([str(template)]) is False and rebuild([str(template)]) is False
        assert rebuild([str(template)]) is True
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2 and "another bakery run holds the project" in lines[0]
    assert lines[1].startswith("serve: rebuilt the site in ") and "(2 pairs) after a change to templates/" in lines[1]
    assert b"<!-- edited -->" in (config.public_dir / "index.html").read_bytes()


def test_watcher_debounces_a_burst_into_one_rebuild(tmp_path):
    folder = tmp_path / "templates"
    folder.mkdir()
    (folder / "a.html").write_text("0")
    calls = queue.Queue()
    watcher = Watcher([folder], lambda changed: calls.put(changed) or True, interval=0.05, settle=1.0)
    watcher.start()
    try:
        for i in range(5):  # an editor saving: several writes in a row
            (folder / "a.html").write_text(f"version {i}")
        (folder / "b.html").write_text("new")
        (folder / ".a.html.swp").write_text("editor scratch")  # not a source
        assert calls.get(timeout=20) == [str(folder / "a.html"), str(folder / "b.html")]
        time.sleep(1.5)
        assert calls.empty()
        (folder / "b.html").unlink()
        assert calls.get(timeout=20) == [str(folder / "b.html")]
    finally:
        watcher.stop()
    assert not watcher.is_alive()


def read_lines(stream, sink: queue.Queue) -> None:
    for line in stream:
        sink.put(line.rstrip("\n"))


def wait_for_line(lines: queue.Queue, seen: list, needle: str, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.2)
        except queue.Empty:
            continue
        seen.append(line)
        if needle in line:
            return line
    raise AssertionError(f"no line with {needle!r} in {seen}")


@pytest.mark.slow
def test_serve_watch_rebuilds_on_content_and_template_changes(tmp_path):
    path, config = own_project(tmp_path)
    proc = subprocess.Popen([sys.executable, "-m", "bakery", "-c", str(path), "serve", "--port", "0", "--watch"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    lines, seen = queue.Queue(), []
    threading.Thread(target=read_lines, args=(proc.stderr, lines), daemon=True).start()
    try:
        url = proc.stdout.readline().split(" at ")[1].split(" ")[0]
        wait_for_line(lines, seen, "serve: built the site in ")  # as hugo server: a build first
        wait_for_line(lines, seen, "serve: watching ")
        site_toml = tmp_path / "content" / "site.toml"
        site_toml.write_text(site_toml.read_text() + '\n[site]\ntitle = "Watched Waifus"\n')
        line = wait_for_line(lines, seen, "serve: rebuilt the site")
        assert "after a change to content/site.toml" in line
        assert b"Watched Waifus" in fetch(url)[1]
        template = tmp_path / "templates" / "base.html"  # the page's frame: every page extends it
        good = template.read_text()
        template.write_text(good + "{% endif %}")
        line = wait_for_line(lines, seen, "failed")
        assert line.startswith("serve: rebuild after a change to templates/base.html failed: ")
        assert b"Watched Waifus" in fetch(url)[1]  # the last good site, still served
        template.write_text(good + "<!-- watched -->")
        wait_for_line(lines, seen, "serve: rebuilt the site")
        assert b"<!-- watched -->" in fetch(url)[1]
    finally:
        proc.send_signal(signal.SIGTERM)  # as `kill PID`: stops as Ctrl-C does
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0 and "Stopped." in out
    assert "Traceback" not in "\n".join(seen) + err
