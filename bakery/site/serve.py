"""`bakery serve`: a local preview of public/ with the headers a CDN would send.

It serves what a deploy would publish and nothing else: regular files inside public/, each
path opened one component at a time below public/ without following any symbolic link (a
link anywhere on the path is a 404, as is a FIFO or device, a `..`, or a leftover of an
interrupted write), no directory listings (a folder serves its index.html, or is a 404), and
the Content-Type deploy gives each file (bakery/published.py).

Each request is one line on stderr in the Common Log Format, as `python -m http.server` and
most web servers write it (-q hides them). With --watch, content/, templates/ and static/ are
polled; a change rebuilds the site stage in this process once the files have been quiet for a
moment (Pelican's devserver, `hugo server`), one line per rebuild. A rebuild that fails is
one error line, and the last good site stays on line: the site stage writes index.html last.
"""

from __future__ import annotations

import contextlib
import email.utils
import http.server
import logging
import os
import shutil
import signal
import stat
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

from bakery.errors import BakeryError
from bakery.published import ALWAYS_EXCLUDED, DEFAULT_CONTENT_TYPES, content_type, matches_any

log = logging.getLogger("bakery.serve")

WATCH_INTERVAL = 0.5  # seconds between two looks at the sources
WATCH_SETTLE = 0.3  # a change is rebuilt once the sources have not changed for this long
INDEX = "index.html"


# --- finding the file a URL names ------------------------------------------------------------


@dataclass
class Found:
    """What a URL path names inside public/: an open regular file, a redirect, or nothing."""

    fd: int | None = None
    size: int = 0
    mtime: float = 0.0
    rel: str = ""
    redirect: str | None = None  # a folder named without its final "/": where to send the client


def _open_below(dir_fd: int, name: str) -> tuple[int, os.stat_result] | None:
    """Open one path component below dir_fd, never through a symbolic link; None if it is not a
    regular file or folder. lstat first, so a FIFO or device is never even opened; then open
    with O_NOFOLLOW and check that the file opened is the one looked at (nothing swapped in)."""
    try:
        seen = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except (OSError, ValueError):
        return None
    if not (stat.S_ISREG(seen.st_mode) or stat.S_ISDIR(seen.st_mode)):
        return None  # symlinks included
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError:
        return None
    opened = os.fstat(fd)
    if (opened.st_dev, opened.st_ino) != (seen.st_dev, seen.st_ino):
        os.close(fd)
        return None
    return fd, opened


def find(public_dir: Path, url: str) -> Found:
    """The regular file inside public_dir that the request target `url` names (query ignored)."""
    path = unquote(urlsplit(url).path)
    parts = [p for p in path.split("/") if p]
    if any(p in (".", "..") or "\0" in p for p in parts) or matches_any(ALWAYS_EXCLUDED, "/".join(parts)):
        return Found()
    try:
        fd = os.open(public_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return Found()
    info = os.fstat(fd)
    try:
        for part in parts:
            if not stat.S_ISDIR(info.st_mode):
                return Found()  # a file named as if it were a folder ("/index.html/x")
            step = _open_below(fd, part)
            if step is None:
                return Found()
            os.close(fd)
            fd, info = step
        if stat.S_ISDIR(info.st_mode):
            index = _open_below(fd, INDEX)
            if index is None:
                return Found()  # no listings: a folder without its index.html is not a page
            os.close(fd)
            fd, info = index
            if not stat.S_ISREG(info.st_mode):
                return Found()
            if parts and not path.endswith("/"):  # "/v1" → "/v1/", so the page's relative links resolve
                return Found(redirect=quote("/" + "/".join(parts) + "/"))
            parts = parts + [INDEX]
        elif path.endswith("/"):  # "/example-1.jpg/": a file is not a folder
            return Found()
        found = Found(fd, info.st_size, info.st_mtime, "/".join(parts))
        fd = None  # the caller's now
        return found
    finally:
        if fd is not None:
            os.close(fd)


# --- the request handler ---------------------------------------------------------------------


class PreviewHandler(http.server.BaseHTTPRequestHandler):
    """GET and HEAD of public/'s files with the CDN's headers; everything else is refused.
    The server object carries the settings (public_dir, csp, content_types, log_requests), so
    a --watch rebuild can change them while the server runs."""

    server_version = "bakery-serve"

    def do_GET(self) -> None:
        self.respond(body=True)

    def do_HEAD(self) -> None:
        self.respond(body=False)

    def respond(self, body: bool) -> None:
        found = find(self.server.public_dir, self.path)
        if found.redirect is not None:
            query = urlsplit(self.path).query
            self.send_response(301)
            self.send_header("Location", found.redirect + (f"?{query}" if query else ""))
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if found.fd is None:
            self.send_error(404, "Not Found")
            return
        with open(found.fd, "rb") as fh:
            last_modified = email.utils.formatdate(found.mtime, usegmt=True)
            if self.not_modified(found.mtime):
                self.send_response(304)
                self.send_header("Last-Modified", last_modified)
                self.end_headers()
                return
            self.log_request(200, found.size)
            self.send_response_only(200)
            self.send_header("Server", self.version_string())
            self.send_header("Date", self.date_time_string())
            self.send_header("Content-Type", content_type(found.rel, self.server.content_types))
            self.send_header("Content-Length", str(found.size))
            self.send_header("Last-Modified", last_modified)
            self.end_headers()
            if body:
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    shutil.copyfileobj(fh, self.wfile)

    def not_modified(self, mtime: float) -> bool:
        since = self.headers.get("If-Modified-Since")
        if not since or self.headers.get("If-None-Match"):
            return False
        try:
            return int(mtime) <= email.utils.parsedate_to_datetime(since).timestamp()
        except (TypeError, ValueError, IndexError, OverflowError):
            return False

    def end_headers(self) -> None:
        self.send_header("Content-Security-Policy", self.server.csp)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Cache-Control", "no-cache")
        super().end_headers()

    def log_request(self, code="-", size="-") -> None:
        """One line per request, Common Log Format: host - - [time] "request" status bytes."""
        if self.server.log_requests:
            code = getattr(code, "value", code)
            when = time.strftime("%d/%b/%Y:%H:%M:%S %z")
            log.info('%s - - [%s] "%s" %s %s', self.client_address[0], when,
                     self.requestline.encode("unicode_escape").decode("ascii"), code, size)

    def log_error(self, format: str, *args) -> None:
        log.debug("serve: " + format, *args)  # the request's own line already says what went wrong

    def log_message(self, format: str, *args) -> None:
        log.debug("serve: " + format, *args)


def deploy_content_types(config) -> dict[str, str]:
    """The Content-Type table the deploy would use: [deploy.s3] content_types where an S3 target
    is configured, else deploy's defaults. A [deploy] section that does not validate is not
    serve's business: the defaults, and a warning."""
    try:
        s3 = config.deploy.s3
    except BakeryError as exc:
        log.warning("serve: [deploy] does not validate (%s); using deploy's default content types", exc)
        return dict(DEFAULT_CONTENT_TYPES)
    return dict(s3.content_types) if s3 is not None else dict(DEFAULT_CONTENT_TYPES)


def make_server(public_dir: Path, host: str, port: int, csp: str, content_types: dict[str, str] | None = None,
                log_requests: bool = False) -> http.server.ThreadingHTTPServer:
    if not (public_dir / INDEX).is_file():
        raise BakeryError(f"{public_dir / INDEX}: not found; run `bakery site` (or `make bake`) first")
    try:
        server = http.server.ThreadingHTTPServer((host, port), PreviewHandler)
    except OSError as exc:
        raise BakeryError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    server.daemon_threads = True
    server.public_dir = Path(public_dir)
    server.csp = csp
    server.content_types = dict(DEFAULT_CONTENT_TYPES if content_types is None else content_types)
    server.log_requests = log_requests
    return server


# --- --watch ---------------------------------------------------------------------------------


def snapshot(folders: list[Path]) -> dict[str, tuple[int, int]]:
    """path → (mtime_ns, size) of every file below the folders; dot-files (editor swap files,
    our own .tmp-* leftovers) and backups ending in "~" are not sources."""
    files: dict[str, tuple[int, int]] = {}
    for folder in folders:
        for dirpath, dirnames, filenames in os.walk(folder):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            for name in filenames:
                if name.startswith(".") or name.endswith("~"):
                    continue
                path = os.path.join(dirpath, name)
                with contextlib.suppress(OSError):
                    st = os.stat(path)
                    files[path] = (st.st_mtime_ns, st.st_size)
    return files


def changed_paths(before: dict, after: dict) -> list[str]:
    return sorted(p for p in before.keys() | after.keys() if before.get(p) != after.get(p))


class Watcher(threading.Thread):
    """Polls `folders` and calls rebuild(changed paths) once a change has settled.

    rebuild returns False to be called again at the next look (another run held the project);
    `retry` set before the start does the same for a first build that had to wait.
    """

    def __init__(self, folders: list[Path], rebuild=None, interval: float = WATCH_INTERVAL,
                 settle: float = WATCH_SETTLE):
        super().__init__(name="bakery-serve-watch", daemon=True)
        self.folders, self.rebuild = folders, rebuild
        self.interval, self.settle = interval, settle
        self.stopped = threading.Event()
        self.last = snapshot(folders)
        self.retry = False

    def run(self) -> None:
        pending: list[str] = []
        while not self.stopped.wait(self.interval):
            now = snapshot(self.folders)
            if now == self.last and not pending and not self.retry:
                continue
            while not self.stopped.wait(self.settle):  # debounce: an editor's save is several writes
                later = snapshot(self.folders)
                if later == now:
                    break
                now = later
            if self.stopped.is_set():
                return
            pending = sorted(set(pending) | set(changed_paths(self.last, now)))
            self.last = now
            done = self.rebuild(pending)
            self.retry = not done
            if done:
                pending = []

    def stop(self, timeout: float = 60.0) -> None:
        """Ask the thread to stop and wait for a rebuild in progress to finish (never cut short)."""
        self.stopped.set()
        if self.is_alive():
            self.join(timeout)


def watched_folders(config) -> list[Path]:
    """content/ (the folder of site.toml), templates/ and static/: what the site stage reads."""
    folders = [Path(config.source).resolve().parent, config.site.templates_dir, config.site.static_dir]
    return list(dict.fromkeys(Path(f).resolve() for f in folders))


def describe_changes(paths: list[str], root: Path) -> str:
    if not paths:
        return "start"
    names = []
    for p in paths[:3]:
        with contextlib.suppress(ValueError):
            p = os.path.relpath(p, root)
        names.append(p)
    return ", ".join(names) + (f" and {len(paths) - 3} more" if len(paths) > 3 else "")


class Rebuilder:
    """Runs the site stage in this process for --watch, under the project lock, and hands the
    server (once there is one) the new CSP and content types. A failure is one line and
    changes nothing served."""

    def __init__(self, config_path: Path):
        self.config_path = Path(config_path)
        self.server = None
        self.waiting_logged = False

    def build(self):
        """The site stage; raises BakeryError/OSError as it does, LockHeld while another run works."""
        from bakery.config import load_config
        from bakery.lock import command_line, project_lock
        from bakery.site.build import build_site, content_security_policy

        config = load_config(self.config_path, sections=["site", "images"])
        with project_lock(config.build_dir, command_line(["serve", "--watch"])):
            report = build_site(config, quiet=True)
        if self.server is not None:
            if config.public_dir.resolve() != Path(self.server.public_dir).resolve():
                log.warning("serve: site.public_dir is now %s; still serving %s (restart to switch)",
                            config.public_dir, self.server.public_dir)
            self.server.csp = content_security_policy(config)
            self.server.content_types = deploy_content_types(config)
        return report

    def __call__(self, changed: list[str]) -> bool:
        """Build and log one line; False when another run holds the project (try again later)."""
        from bakery.lock import LockHeld
        from bakery.preflight import describe_os_error

        started = time.monotonic()
        what = describe_changes(changed, self.config_path.resolve().parent.parent)
        try:
            report = self.build()
        except LockHeld:
            if not self.waiting_logged:
                log.warning("serve: another bakery run holds the project; the site is rebuilt when it is done")
                self.waiting_logged = True
            return False
        except (BakeryError, OSError) as exc:
            reason = describe_os_error(exc) if isinstance(exc, OSError) else exc
            log.error("serve: rebuild after a change to %s failed: %s; still serving the last good site",
                      what, reason)
            return True
        self.waiting_logged = False
        log.info("serve: rebuilt the site in %.1f s (%d pairs) after a change to %s",
                 time.monotonic() - started, report.published, what)
        return True


# --- the command -----------------------------------------------------------------------------


def run_serve(config, args) -> None:
    from bakery.site.build import content_security_policy

    watcher = None
    if getattr(args, "watch", False):
        watcher = start_watching(config, args)
    server = make_server(config.public_dir, args.host, args.port, content_security_policy(config),
                         deploy_content_types(config), log_requests=True)
    host, port = server.server_address[:2]
    print(f"Serving {config.public_dir} at http://{host}:{port}/ (Ctrl-C to stop)", flush=True)
    if watcher is not None:
        watcher.rebuild.server = server
        watcher.start()
        log.info("serve: watching %s for changes", ", ".join(str(f) for f in watcher.folders))
    try:
        with stop_on_sigterm():
            server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        if watcher is not None:
            watcher.stop()
        server.server_close()
        print("Stopped.", flush=True)


@contextlib.contextmanager
def stop_on_sigterm():
    """`kill PID` (a service manager, a background job, which ignores Ctrl-C) stops the server as
    Ctrl-C does: a rebuild in progress finishes, then "Stopped."."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def start_watching(config, args) -> Watcher:
    """--watch: the sources' folders (checked to exist), then a first build, as `hugo server`
    does, so what is served matches the sources from the start. A first build that fails with
    an earlier site in public/ serves that one (one error line); with none, it is the error."""
    from bakery.config import load_config
    from bakery.lock import LockHeld

    watcher = Watcher(watched_folders(load_config(args.config, sections=["site", "images"])),
                      Rebuilder(args.config))
    started = time.monotonic()
    try:
        report = watcher.rebuild.build()
    except LockHeld:
        log.warning("serve: another bakery run holds the project; the site is rebuilt when it is done")
        watcher.retry = watcher.rebuild.waiting_logged = True
    except BakeryError as exc:
        if not (config.public_dir / INDEX).is_file():
            raise
        log.error("serve: the site does not build: %s; serving the last good site", exc)
    else:
        log.info("serve: built the site in %.1f s (%d pairs)", time.monotonic() - started, report.published)
    return watcher
