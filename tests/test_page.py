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


@pytest.mark.parametrize("size", [(320, 568), (1920, 1080), (3840, 2160)])
def test_noscript_image_has_its_true_size_and_fits_the_screen(browser, site, size):
    """Issue 23 item 10: the noscript image said width="1024" whatever the image; the site's are 256 px."""
    context = browser.new_context(java_script_enabled=False, viewport={"width": size[0], "height": size[1]})
    page = context.new_page()
    page.goto(site)
    img = page.locator("img[src='example-0.jpg']")
    assert (img.get_attribute("width"), img.get_attribute("height")) == ("256", "256")
    page.wait_for_function("() => document.querySelector('img[src=\"example-0.jpg\"]').complete")
    box = img.bounding_box()
    assert abs(box["width"] - box["height"]) < 1  # square, like the image
    assert box["x"] >= 0 and box["x"] + box["width"] <= size[0]
    assert page.evaluate("document.documentElement.scrollWidth") <= size[0]
    if size[0] >= 1200:
        assert box["y"] + box["height"] <= size[1]  # beside the text, within the screen
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


def meta_id(w) -> int:
    return int(re.match(r"#(\d+)", w.page.locator("#meta").text_content()).group(1))


def test_hash_id_shows_that_pair_first_and_address_follows_without_history(browser, site):
    w = Watched(browser, site + "#7")
    assert w.wait_for_pair() == 7 and meta_id(w) == 7
    assert w.page.locator("#meta a").get_attribute("href") == "#7"
    length = w.page.evaluate("history.length")
    w.page.locator("#refresh").click()
    second = w.wait_for_pair(other_than=7)
    assert w.page.url.endswith(f"#{second}")  # replaceState: a permalink to the pair on screen
    w.page.evaluate("location.hash = '#3'")  # an edited address shows that pair
    assert w.wait_for_pair(other_than=second) == 3
    w.page.locator("#meta a").click()  # the permalink to the pair on screen changes nothing
    assert w.page.evaluate("history.length") == length + 1  # only the hand-edited hash above
    assert w.problems == []
    w.close()
    for bad, said in [("#abc", "#abc"), ("#007", "#007"), ("#99", "#99"), ("#-1", "#-1"), ("#1e3", "#1e3"),
                      ("#" + "9" * 40, "#" + "9" * 24 + "…"), ("#<img src=x onerror=alert(1)>", "#<img src=x onerror=alert…")]:
        w = Watched(browser, site + bad)  # says so, then a random pair, whose ID the address takes
        shown = w.wait_for_pair()
        assert 0 <= shown <= 11
        assert w.page.locator("#notice").text_content() == f"Pair {said} does not exist."
        assert w.page.locator("#notice img").count() == 0 and w.page.evaluate("window.__xss") is None
        assert w.page.url.endswith(f"#{shown}")
        assert w.problems == []
        w.close()


def test_an_edited_address_naming_no_pair_says_so_and_keeps_the_pair(browser, site):
    """Issue 23 item 11: `#999` typed into the address bar was left there while the old pair stayed."""
    w = Watched(browser, site + "#4")
    assert w.wait_for_pair() == 4
    notice = w.page.locator("#notice")
    assert notice.is_hidden()  # a good link says nothing
    for bad in ("#999", "#abc"):
        w.page.evaluate(f"location.hash = '{bad}'")
        w.page.wait_for_function("() => !document.getElementById('notice').hidden", timeout=5_000)
        assert notice.text_content() == f"Pair {bad} does not exist." and notice.get_attribute("role") == "status"
        w.page.wait_for_function("() => location.hash === '#4'", timeout=5_000)  # the address names the pair on screen
        assert w.shown() == (4, 4) and meta_id(w) == 4
    w.page.evaluate("location.hash = '#9'")  # a real pair: shown, and the notice goes
    assert w.wait_for_pair(other_than=4) == 9
    assert notice.is_hidden() and w.page.url.endswith("#9")
    w.page.evaluate("location.hash = '#999'")
    w.page.wait_for_function("() => !document.getElementById('notice').hidden", timeout=5_000)
    w.page.clock.run_for(15_500)  # the next pair on the timer clears it
    w.wait_for_pair(other_than=9)
    assert notice.is_hidden()
    assert w.problems == []
    w.close()


def test_psi_choice_restricts_the_main_page_to_that_band(browser, site):
    w = Watched(browser, site + "?psi=1.1")
    assert w.page.locator("#psi").input_value() == "1.1"
    assert w.page.locator("#psi option").all_text_contents() == ["all", "ψ 0.7 · calm", "ψ 1.1 · wild"]
    seen = [w.wait_for_pair()]
    for _ in range(5):
        w.page.locator("#refresh").click()
        seen.append(w.wait_for_pair(other_than=seen[-1]))
    assert all(6 <= i <= 11 for i in seen)
    assert w.page.url.endswith(f"?psi=1.1#{seen[-1]}")
    w.page.locator("#psi").select_option("0.7")
    shown = w.wait_for_pair(other_than=seen[-1])
    assert 0 <= shown <= 5 and w.page.url.endswith(f"?psi=0.7#{shown}")
    assert w.page.evaluate("localStorage.getItem('bakery-psi')") == "0.7"
    w.page.locator("#psi").select_option("all")
    assert "psi" not in w.page.url
    assert w.problems == []
    w.close()
    w = Watched(browser, site + "?psi=0.7x")  # malformed: every band, no errors
    assert w.page.locator("#psi").input_value() == "all"
    assert w.problems == []
    w.close()


def test_single_band_hides_the_creativity_control(browser, tmp_path):
    config = load_config(write_project(tmp_path, '[[images.bands]]\nseeds = "0-3"\npsi = 0.7\n'))
    make_pairs(config, ids=range(4))
    build_site(config, quiet=True)
    with serving(config) as url:
        w = Watched(browser, url + "?psi=0.7", synthetic=False)
        assert w.page.locator("#creativity").is_hidden()
        assert w.page.locator("#refresh").is_visible()
        assert w.problems == []
        w.close()


def test_4k_caps_the_image_at_twice_its_pixels_and_centres_it(browser, site):
    w = Watched(browser, site, 3840, 2160)
    img = w.page.locator("#frame img").bounding_box()
    assert w.page.evaluate("document.querySelector('#frame img').naturalWidth") == 256
    assert 500 <= img["width"] <= 512  # 2 x 256 px, not stretched to the screen height
    pair = w.page.locator("#pair").bounding_box()
    text = w.page.locator("#snippet").bounding_box()
    left, right = img["x"], text["x"] + text["width"]
    assert abs((left + right) / 2 - pair["x"] - pair["width"] / 2) < 0.05 * pair["width"]  # centred
    assert text["x"] >= img["x"] + img["width"] and text["y"] < img["y"] + img["height"]
    assert w.page.evaluate("document.documentElement.scrollWidth") <= 3840
    assert w.problems == []
    w.close()


@pytest.mark.parametrize("size", [(390, 844), (1000, 800), (1366, 768), (1920, 1080), (3840, 2160)])
def test_title_controls_and_footer_line_up_with_the_image(browser, site, size):
    """Issue 23 item 11: at 4K the controls row sat at the screen's left while the image was centred."""
    w = Watched(browser, site, *size)
    img = w.page.locator("#frame img").bounding_box()
    lefts = {name: w.page.locator(selector).bounding_box()["x"] for name, selector in
             {"title": ".title", "controls": "#controls", "footer": ".footer p"}.items()}
    assert all(abs(x - img["x"]) <= 1 for x in lefts.values()), (img["x"], lefts)
    pair = w.page.locator("#pair").bounding_box()
    text = w.page.locator("#snippet").bounding_box()
    right = text["x"] + text["width"] if size[0] >= 1200 else img["x"] + img["width"]
    assert abs((img["x"] + right) / 2 - size[0] / 2) <= 2, "the image and text are not centred on the screen"
    assert abs(pair["x"] + pair["width"] - right) <= 1  # the column ends where the text ends
    assert w.page.evaluate("document.documentElement.scrollWidth") <= size[0]
    assert w.problems == []
    w.close()


def test_footer_above_the_fold_at_1366x768_and_phone_fits(browser, site):
    for address in ("", "#999"):  # also with the "does not exist" notice up (beside the title)
        w = Watched(browser, site + address, 1366, 768)
        assert w.page.locator("#notice").is_visible() == bool(address)
        footer = w.page.locator(".footer").bounding_box()
        assert footer["y"] + footer["height"] <= 768, (address, footer)
        w.close()
    w = Watched(browser, site, 375, 812)
    assert w.page.evaluate("document.documentElement.scrollWidth") <= 375
    assert w.page.locator("#frame img").bounding_box()["width"] >= 300
    w.close()


@pytest.mark.parametrize("size", [(375, 812), (1366, 768)])
def test_one_long_word_shows_quickly_and_stays_inside(browser, tmp_path, size):
    """A 100,000-character word (a published file the site stage would now refuse) must not
    freeze the page: it shows within seconds and wraps inside the viewport."""
    import time

    config = load_config(write_project(tmp_path, BANDS.replace("[site]\nrefresh_seconds = 15\n", "")))
    make_pairs(config, ids=range(2))
    build_site(config, quiet=True)
    (config.public_dir / "snippet-1.txt").write_text("W" * 100_000)
    with serving(config) as url:
        started = time.monotonic()
        w = Watched(browser, url + "#1", *size, synthetic=False)
        w.page.wait_for_function("document.getElementById('snippet').textContent.length === 100000")
        w.page.evaluate("document.body.offsetHeight")
        assert time.monotonic() - started < 5
        assert w.page.evaluate("document.documentElement.scrollWidth") <= size[0]
        assert w.problems == []
        w.close()
