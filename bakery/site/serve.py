"""`bakery serve`: a local preview of public/ with the headers a CDN would send."""

from __future__ import annotations

import functools
import http.server
import logging
from pathlib import Path

from bakery.errors import BakeryError
from bakery.site.build import content_security_policy

log = logging.getLogger("bakery.serve")

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".json": "application/json",
    ".txt": "text/plain; charset=utf-8",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".svg": "image/svg+xml",
    ".gz": "application/gzip",
    ".mp4": "video/mp4",
    ".webp": "image/webp",
}


class PreviewHandler(http.server.SimpleHTTPRequestHandler):
    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map, **CONTENT_TYPES}
    csp = ""

    def end_headers(self) -> None:
        self.send_header("Content-Security-Policy", self.csp)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Cache-Control", "no-cache")
        super().end_headers()

    def log_message(self, format: str, *args) -> None:
        log.debug("serve: " + format, *args)


def make_server(public_dir: Path, host: str, port: int, csp: str) -> http.server.ThreadingHTTPServer:
    if not (public_dir / "index.html").is_file():
        raise BakeryError(f"{public_dir / 'index.html'}: not found; run `bakery site` (or `make bake`) first")
    handler = functools.partial(type("Handler", (PreviewHandler,), {"csp": csp}), directory=str(public_dir))
    try:
        return http.server.ThreadingHTTPServer((host, port), handler)
    except OSError as exc:
        raise BakeryError(f"cannot listen on {host}:{port}: {exc.strerror}") from None


def run_serve(config, args) -> None:
    server = make_server(config.public_dir, args.host, args.port, content_security_policy(config))
    host, port = server.server_address[:2]
    print(f"Serving {config.public_dir} at http://{host}:{port}/ (Ctrl-C to stop)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        print("Stopped.", flush=True)
