"""Headless Debian Chromium driven by Playwright (its own browser download does not work here)."""

from __future__ import annotations

import contextlib
import shutil
import threading

from tests.debian import ensure_command

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-quic", "--no-first-run", "--disable-sync"]


def chromium_path() -> str:
    """Debian's chromium; installed on the spot (as root) when missing."""
    path = ensure_command("chromium", "chromium") or shutil.which("chromium-browser")
    if not path:
        raise RuntimeError("chromium is missing and could not be installed: apt-get install chromium")
    return path


def launch(playwright):
    return playwright.chromium.launch(executable_path=chromium_path(), headless=True, args=CHROMIUM_ARGS)


START = 1_700_000_000  # the fake clock's start (seconds since the epoch)


class WatchedPage:
    """A page in its own context (viewport, media options) with Playwright's fake clock, plus
    every console error, page error, failed request and HTTP error it produced."""

    def __init__(self, browser, url, width=1280, height=800, paused=False, **context_options):
        self.context = browser.new_context(viewport={"width": width, "height": height}, **context_options)
        self.page = self.context.new_page()
        self.problems: list[str] = []
        self.images: list[str] = []  # every example-*.jpg requested, in order
        self.page.on("console", lambda m: m.type == "error" and self.problems.append(f"console: {m.text}"))
        self.page.on("pageerror", lambda e: self.problems.append(f"pageerror: {e}"))
        self.page.on("requestfailed", lambda r: self.problems.append(f"failed: {r.url}"))
        self.page.on("response", lambda r: r.status >= 400 and self.problems.append(f"{r.status}: {r.url}"))
        self.page.on("request", lambda r: "/example-" in r.url and self.images.append(r.url))
        self.page.clock.install(time=START)
        if paused:  # timers then fire only in clock.run_for(), never by real time passing
            self.page.clock.pause_at(START + 1)
        self.page.goto(url)

    def close(self):
        self.context.close()


@contextlib.contextmanager
def serving(config):
    """public/ on a local server with the CSP header a CDN would send; yields the base URL."""
    from bakery.site.build import content_security_policy
    from bakery.site.serve import make_server

    server = make_server(config.public_dir, "127.0.0.1", 0, content_security_policy(config))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
