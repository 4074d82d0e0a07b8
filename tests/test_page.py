"""The page in a real browser: pairing, timed swaps (Playwright's clock), stop/resume,
refresh, no errors, responsive layout, XSS-safe snippets, `_Title_` in italics."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from bakery.config import load_config
from bakery.site.build import build_site, content_security_policy
from tests.browser import WatchedPage, serving
from tests.conftest import make_pairs, write_project

pytestmark = [pytest.mark.browser, pytest.mark.slow]

XSS = '<script>window.__xss=1</script><img src=x onerror="window.__xss=2">'

BANDS = """
[site]
refresh_seconds = 15

[[images.bands]]
seeds = "0-5"
psi = 0.7

[[images.bands]]
seeds = "6-11"
psi = 1.1
"""


def snippet_for(i: int) -> str:
    title = f"_Show {i}_: " if i % 2 == 0 else ""
    return f"{title}Snippet number {i}. {XSS} A transfer student arrives at the shrine."


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("site")
    path = write_project(root, "")
    path.write_text(path.read_text().replace("[site]\n", "") .replace(
        "templates_dir", "[site]\ntemplates_dir", 1) + BANDS.replace("[site]\n", ""))
    config = load_config(path)
    make_pairs(config, ids=range(12), snippet=snippet_for, size=256)
    build_site(config, quiet=True)
    with serving(config) as url:
        yield url


class Watched(WatchedPage):
    """The pair page, opened and waited on until its first pair shows."""

    def __init__(self, browser, url, width=1280, height=800, synthetic=True, **context_options):
        self.synthetic = synthetic  # the test-made site, whose snippets name their ID
        super().__init__(browser, url, width, height, **context_options)
        self.wait_for_pair()

    def shown(self) -> tuple[int, int]:
        """(ID in the image URL, ID in the snippet text)."""
        src = self.page.locator("#frame img").get_attribute("src")
        text = self.page.locator("#snippet").text_content()
        return int(re.search(r"example-(\d+)\.jpg", src).group(1)), int(re.search(r"Snippet number (\d+)", text).group(1))

    def wait_for_pair(self, other_than: int | None = None) -> int:
        self.page.wait_for_function(
            """(old) => { const img = document.querySelector('#frame img');
                          if (!img || !img.complete || img.naturalWidth === 0) return false;
                          const m = /example-(\\d+)/.exec(img.src);
                          return old === null || Number(m[1]) !== old; }""",
            arg=other_than, timeout=10_000)
        if not self.synthetic:
            return -1
        image_id, snippet_id = self.shown()
        assert image_id == snippet_id
        return image_id



def test_image_and_snippet_share_one_id_and_swap_on_timer(browser, site):
    w = Watched(browser, site)
    first = w.wait_for_pair()
    w.page.clock.run_for(14_000)
    assert w.shown()[0] == first, "swapped before refresh_seconds"
    w.page.clock.run_for(1_500)
    second = w.wait_for_pair(other_than=first)
    assert second != first
    w.page.clock.run_for(15_500)
    w.wait_for_pair(other_than=second)
    assert w.problems == []
    w.close()


def test_stop_halts_and_resume_restarts(browser, site):
    w = Watched(browser, site)
    first = w.wait_for_pair()
    toggle = w.page.locator("#toggle")
    toggle.click()
    assert toggle.text_content() == "Resume" and toggle.get_attribute("aria-pressed") == "true"
    w.page.clock.run_for(120_000)
    assert w.shown()[0] == first
    toggle.click()
    assert toggle.text_content() == "Stop" and toggle.get_attribute("aria-pressed") == "false"
    w.page.clock.run_for(15_500)
    assert w.wait_for_pair(other_than=first) != first
    assert w.problems == []
    w.close()


def test_refresh_swaps_at_once_and_works_from_keyboard(browser, site):
    w = Watched(browser, site)
    first = w.wait_for_pair()
    w.page.locator("#refresh").click()
    second = w.wait_for_pair(other_than=first)
    w.page.keyboard.press("Tab")  # keyboard users reach the buttons
    w.page.locator("#refresh").focus()
    w.page.keyboard.press("Enter")
    w.wait_for_pair(other_than=second)
    outline = w.page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert w.page.evaluate("document.activeElement.id") == "refresh" and outline != "none"
    assert w.problems == []
    w.close()


def test_snippets_render_as_text_and_title_in_italics(browser, site):
    w = Watched(browser, site)
    seen_title = seen_plain = False
    for _ in range(12):
        image_id = w.wait_for_pair()
        snippet = w.page.locator("#snippet")
        assert XSS in snippet.text_content()
        assert snippet.locator("img, script").count() == 0
        if image_id % 2 == 0:
            assert snippet.locator("em").text_content() == f"Show {image_id}"
            assert not snippet.text_content().startswith("_")
            seen_title = True
        else:
            assert snippet.locator("em").count() == 0
            seen_plain = True
        if seen_title and seen_plain:
            break
        w.page.locator("#refresh").click()
        w.wait_for_pair(other_than=image_id)
    assert seen_title and seen_plain
    assert w.page.evaluate("window.__xss") is None
    assert w.problems == []
    w.close()


def test_phone_layout_fits_without_horizontal_scroll(browser, site):
    for width, height in [(320, 568), (375, 667), (414, 896)]:
        w = Watched(browser, site, width, height)
        assert w.page.evaluate("document.documentElement.scrollWidth") <= width
        box = w.page.locator("#frame img").bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= width and box["width"] >= width * 0.8
        snippet = w.page.locator("#snippet").bounding_box()
        assert snippet["y"] >= box["y"] + box["height"] - 1  # text below the image
        w.close()


def test_desktop_layout_is_side_by_side(browser, site):
    for width, height in [(1920, 1080), (3840, 2160)]:
        w = Watched(browser, site, width, height)
        img = w.page.locator("#frame img").bounding_box()
        text = w.page.locator("#snippet").bounding_box()
        assert text["x"] >= img["x"] + img["width"]  # right of the image
        assert text["y"] < img["y"] + img["height"]  # and beside it, not below
        assert img["y"] + img["height"] <= height  # the face fits the screen
        assert w.page.evaluate("document.documentElement.scrollWidth") <= width
        w.close()


def test_noscript_fallback_shows_one_fixed_pair(browser, site):
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    page.goto(site)
    img = page.locator("img[src='example-0.jpg']")
    assert img.is_visible()
    assert page.locator("figcaption em").first.text_content() == "Show 0"
    assert not page.locator("#refresh").is_visible()
    context.close()


def test_screenshots(browser, site, tmp_path):
    """Phone and desktop screenshots; BAKERY_SCREENSHOTS=docs writes the README's copies
    (point BAKERY_SCREENSHOT_URL at a served real bake for those)."""
    out = Path(os.environ.get("BAKERY_SCREENSHOTS", tmp_path))
    url = os.environ.get("BAKERY_SCREENSHOT_URL", site)
    for name, (width, height) in {"phone": (375, 667), "desktop": (1920, 1080)}.items():
        w = Watched(browser, url, width, height, synthetic=url == site)
        target = out / f"screenshot-{name}.png"
        w.page.screenshot(path=str(target))
        assert target.stat().st_size > 5_000
        assert w.problems == []
        w.close()
