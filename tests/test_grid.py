"""The grid page in a real browser (Playwright's fake clock): tiles per viewport, staggered
atomic swaps, no ID twice on screen while the pool is large enough, stop/resume/refresh,
tile → pair link, the moving wall (moves, recycles rows, pauses when hidden, still under
reduced motion), the psi filter, the CSP; and a wall that stays full for 30 s at phone, 1080p
and 4K with pools smaller than the screen (12, 3, 2 IDs: repeats, never beside or above its
twin). `pytest -s` prints the visible-face series; BAKERY_GRID_SERIES=folder writes them as
JSON. One browser for the whole module."""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

import pytest

from bakery.config import load_config
from bakery.site.build import build_site, content_security_policy
from tests.browser import WatchedPage, serving
from tests.conftest import make_pairs, write_project

pytestmark = [pytest.mark.browser, pytest.mark.slow]

BANDS = {0.6: range(0, 80), 0.8: range(80, 160), 1.1: range(160, 240)}  # more IDs than a 4K grid holds
VIEWPORTS = {"phone": (375, 812), "laptop": (1366, 768), "4k": (3840, 2160)}
EXPECTED_COLUMNS = {"phone": 2, "laptop": 4, "4k": 12}

ON_SCREEN = """() => [...document.querySelectorAll('#track .tile:not([hidden]) img')].map((img) => {
    const r = img.getBoundingClientRect();
    return { id: Number(/example-(\\d+)/.exec(img.src)[1]), top: r.top, bottom: r.bottom,
             href: img.parentElement.getAttribute('href'), loaded: img.complete && img.naturalWidth > 0 };
}).filter((t) => t.bottom > 0 && t.top < innerHeight)"""

# Records every tile swap (an <img> replaced inside a tile) with the fake clock's time.
RECORD_SWAPS = """() => { window.__swaps = [];
  new MutationObserver((records) => { for (const r of records) if (r.addedNodes.length && r.target.classList.contains('tile'))
      window.__swaps.push([performance.now(), Number(/example-(\\d+)/.exec(r.addedNodes[0].src)[1])]); })
    .observe(document.getElementById('track'), { childList: true, subtree: true }); }"""


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    toml = "".join(f'\n[[images.bands]]\nseeds = "{r.start}-{r.stop - 1}"\npsi = {psi}\n' for psi, r in BANDS.items())
    config = load_config(write_project(tmp_path_factory.mktemp("grid"), toml))
    make_pairs(config, ids=range(240), snippet=lambda i: f"Snippet number {i}.", size=64)
    build_site(config, quiet=True)
    return config


@pytest.fixture(scope="module")
def site(config):
    with serving(config) as url:
        yield url


class Grid(WatchedPage):
    def __init__(self, browser, url, size="laptop", **options):
        super().__init__(browser, url, *VIEWPORTS[size], paused=True, **options)
        self.wait_filled()

    def tiles(self) -> list[dict]:
        return self.page.evaluate(ON_SCREEN)

    def ids(self) -> list[int]:
        return [t["id"] for t in self.tiles()]

    def wait_filled(self):
        self.page.wait_for_function("""() => { const t = document.querySelectorAll('#track .tile');
            return t.length > 0 && [...t].every((a) => a.hidden === false && a.firstChild && a.firstChild.complete); }""",
                                    timeout=15_000)

    def columns(self) -> int:
        return self.page.evaluate("getComputedStyle(document.querySelector('.row')).gridTemplateColumns.split(' ').length")

    def swaps(self) -> list:
        return self.page.evaluate("window.__swaps")

    def wait_swaps(self, count: int):
        self.page.wait_for_function("(n) => window.__swaps.length >= n", arg=count, timeout=10_000)

    def transform(self) -> str:
        return self.page.evaluate("document.getElementById('track').style.transform")


def assert_distinct(ids: list[int]):
    assert len(ids) == len(set(ids)), f"an ID twice on screen: {sorted(ids)}"


@pytest.mark.parametrize("size", VIEWPORTS)
def test_tiles_fill_the_viewport(browser, site, size):
    width, height = VIEWPORTS[size]
    g = Grid(browser, site + "grid.html", size)
    assert g.columns() == EXPECTED_COLUMNS[size]
    tiles = g.tiles()
    wall_top = g.page.evaluate("document.getElementById('wall').getBoundingClientRect().top")
    tile = width / EXPECTED_COLUMNS[size]
    rows = math.ceil((height - wall_top) / tile)
    assert len(tiles) == rows * EXPECTED_COLUMNS[size]
    assert all(t["loaded"] for t in tiles)
    assert_distinct([t["id"] for t in tiles])
    assert len(set(g.images)) == len(tiles), "downloaded more than the tiles on screen"
    assert g.page.evaluate("document.documentElement.scrollWidth") <= width  # no horizontal scroll
    assert g.problems == []
    g.close()


def test_swaps_are_staggered_one_tile_at_a_time_without_duplicates(browser, site):
    g = Grid(browser, site + "grid.html")
    g.page.evaluate(RECORD_SWAPS)
    count = len(g.tiles())
    step = max(200, 15_000 / count)
    for n in range(1, 13):
        g.page.clock.run_for(int(step) + 1)
        g.wait_swaps(n)
        assert_distinct(g.ids())
    swaps = g.swaps()
    times = [t for t, _ in swaps]
    assert len(set(times)) == len(times), f"two tiles swapped in the same tick: {times}"
    assert all(b - a >= step - 1 for a, b in zip(times, times[1:]))
    assert g.problems == []
    g.close()


def test_stop_resume_and_refresh(browser, site):
    g = Grid(browser, site + "grid.html")
    g.page.evaluate(RECORD_SWAPS)
    toggle = g.page.locator("#toggle")
    toggle.click()
    assert toggle.text_content() == "Resume" and toggle.get_attribute("aria-pressed") == "true"
    g.page.clock.run_for(60_000)
    assert g.swaps() == []
    toggle.click()
    g.page.clock.run_for(2_000)
    g.wait_swaps(1)
    before = set(g.ids())
    g.page.locator("#refresh").click()
    g.page.wait_for_function("(old) => { const ids = [...document.querySelectorAll('#track .tile img')].map((i) => i.src);"
                             " return ids.every((s) => !old.some((o) => s.endsWith('example-' + o + '.jpg'))); }",
                             arg=sorted(before), timeout=10_000)
    after = g.ids()
    assert_distinct(after)
    assert not before & set(after), "Refresh kept faces although the pool has plenty"
    assert g.problems == []
    g.close()


def test_clicking_a_tile_opens_that_pair(browser, site):
    g = Grid(browser, site + "grid.html")
    first = g.tiles()[0]
    assert first["href"] == f"index.html#{first['id']}"
    g.page.locator("#track .tile").first.click()
    g.page.wait_for_function("(id) => document.getElementById('meta').textContent.startsWith('#' + id)",
                             arg=first["id"], timeout=10_000)
    assert g.page.url.endswith(f"index.html#{first['id']}")
    assert g.page.locator("#frame img").get_attribute("src") == f"example-{first['id']}.jpg"
    assert g.problems == []
    g.close()


def test_moving_grid_moves_recycles_and_pauses_when_hidden(browser, site):
    g = Grid(browser, site + "grid.html?scroll")
    width, height = VIEWPORTS["laptop"]
    tile = width / 4
    wall_top = g.page.evaluate("document.getElementById('wall').getBoundingClientRect().top")
    visible_rows = math.ceil((height - wall_top) / tile) + 1  # a scrolled wall shows parts of one more row
    assert len(set(g.images)) <= (visible_rows + 1) * 4, "loads more than the screen plus one row ahead"
    first_row = g.page.evaluate("document.querySelector('#track .row').firstChild.firstChild.src")
    g.page.evaluate("document.querySelector('#track .row').firstChild.firstChild.dataset.old = '1'")
    g.page.clock.run_for(3_000)
    moved = g.transform()
    assert re.fullmatch(r"translate3d\(0px, -\d+(\.\d+)?px, 0px\)", moved) and moved != "translate3d(0px, 0px, 0px)"
    g.page.clock.run_for(5_000)  # past one row (one row per 6 s): the top row went to the bottom
    g.page.wait_for_function("(src) => document.querySelector('#track .row').firstChild.firstChild.src !== src",
                             arg=first_row, timeout=10_000)
    g.page.wait_for_function("() => document.querySelector('#track .row:last-child .tile img') && "
                             "[...document.querySelectorAll('#track .row:last-child .tile img')].every((i) => i.complete)")
    all_ids = g.page.evaluate("[...document.querySelectorAll('#track .tile img')].map((i) => /example-(\\d+)/.exec(i.src)[1])")
    assert_distinct(all_ids)
    # The recycled row keeps its old faces until the new ones have loaded: wait for the swap
    # (by element, not by URL: the freed ID may fairly be picked again).
    g.page.wait_for_function("() => !document.querySelector('#track img[data-old]')", timeout=10_000)
    # hidden tab: the loop stops; visible again: it goes on
    g.page.evaluate("Object.defineProperty(document, 'hidden', { configurable: true, get: () => true });"
                    "document.dispatchEvent(new Event('visibilitychange'))")
    paused = g.transform()
    g.page.clock.run_for(3_000)
    assert g.transform() == paused
    g.page.evaluate("Object.defineProperty(document, 'hidden', { configurable: true, get: () => false });"
                    "document.dispatchEvent(new Event('visibilitychange'))")
    g.page.clock.run_for(1_000)
    assert g.transform() != paused
    g.page.locator("#toggle").click()  # Stop halts the wall too
    stopped = g.transform()
    g.page.clock.run_for(3_000)
    assert g.transform() == stopped
    assert g.problems == []
    g.close()


def test_moving_grid_stands_still_under_reduced_motion(browser, site):
    g = Grid(browser, site + "grid.html?scroll", reduced_motion="reduce")
    g.page.clock.run_for(10_000)
    assert g.transform() == ""
    assert g.page.locator("#mode").is_hidden()
    assert g.problems == []
    g.close()


def test_psi_filter_shows_only_that_band_and_persists(browser, site):
    g = Grid(browser, site + "grid.html?psi=1.1")
    g.page.evaluate(RECORD_SWAPS)
    assert g.page.locator("#psi").input_value() == "1.1"
    labels = g.page.locator("#psi option").all_text_contents()
    assert labels == ["all", "ψ 0.6 · calm", "ψ 0.8", "ψ 1.1 · wild"]
    step = max(200, 15_000 // len(g.tiles())) + 1
    for n in range(1, 5):
        g.page.clock.run_for(step)
        g.wait_swaps(n)
    assert all(i in BANDS[1.1] for i in g.ids() + [i for _, i in g.swaps()])
    assert all(t["href"].startswith("index.html?psi=1.1#") for t in g.tiles())
    g.page.locator("#psi").select_option("0.6")
    g.page.wait_for_function("() => [...document.querySelectorAll('#track .tile img')].every((i) => "
                             "Number(/example-(\\d+)/.exec(i.src)[1]) < 80)", timeout=10_000)
    assert g.page.url.endswith("grid.html?psi=0.6")
    assert g.page.evaluate("localStorage.getItem('bakery-psi')") == "0.6"
    g.page.goto(site + "grid.html")  # no ?psi: the stored choice
    g.wait_filled()
    assert g.page.locator("#psi").input_value() == "0.6"
    assert all(i in BANDS[0.6] for i in g.ids())
    for bad in ("banana", "0.7", "1e999", "", "0.6<script>"):  # unknown or malformed: every band
        g.page.evaluate("localStorage.clear()")
        g.page.goto(site + f"grid.html?psi={bad}")
        g.wait_filled()
        assert g.page.locator("#psi").input_value() == "all"
    assert g.problems == []
    g.close()


def test_csp_is_unchanged_and_enforced(browser, site, config):
    g = Grid(browser, site + "grid.html")
    meta = g.page.locator("meta[http-equiv='Content-Security-Policy']").get_attribute("content")
    assert meta == content_security_policy(config)
    violated = g.page.evaluate("""() => new Promise((done) => {
        document.addEventListener('securitypolicyviolation', (e) => done(e.violatedDirective));
        const s = document.createElement('script'); s.textContent = 'window.__inline = 1'; document.body.append(s);
        setTimeout(() => done(null), 0); })""")
    g.page.clock.run_for(10)
    assert violated and violated.startswith("script-src")
    assert g.page.evaluate("window.__inline") is None
    g.close()


def test_screenshots(browser, site, tmp_path):
    """The grid on a phone and a desktop; BAKERY_SCREENSHOTS=docs writes the README's copies
    (point BAKERY_SCREENSHOT_URL at a served real bake for those)."""
    out = Path(os.environ.get("BAKERY_SCREENSHOTS", tmp_path))
    url = os.environ.get("BAKERY_SCREENSHOT_URL", site)
    for name, (width, height) in {"phone": (375, 812), "desktop": (1920, 1080)}.items():
        g = WatchedPage(browser, url + "grid.html", width, height, paused=True)
        Grid.wait_filled(g)
        target = out / f"screenshot-grid-{name}.png"
        g.page.screenshot(path=str(target))
        assert target.stat().st_size > 5_000
        assert g.problems == []
        g.close()


# --- A wall stays full (issue 23, item 1) --------------------------------------------------
# The shipped default has 12 IDs per band: a phone shows ~12 tiles, 1080p ~24, 4K ~84. A wall
# fuller than its pool repeats IDs, never two copies side by side or one above the other.

SMALL_BANDS = {0.8: range(0, 12), 0.6: range(12, 24), 1.1: range(24, 36),  # the default site's shape
               0.5: range(36, 39), 0.4: range(39, 41), 0.3: range(41, 42)}  # and tiny pools: 3, 2, 1 IDs
WALL_VIEWPORTS = {"phone": (390, 844), "1080p": (1920, 1080), "4k": (3840, 2160)}
SERIES_SECONDS = 30

# Per sample: tile slots on screen (intersecting the wall's visible area), how many of them show
# a loaded face, the share of the wall's visible area covered by loaded faces, and every pair
# of neighbouring tiles (left/right, above/below, across the whole track) showing the same ID.
WALL_STATE = """() => {
  const wall = document.getElementById('wall').getBoundingClientRect();
  const top = Math.max(wall.top, 0), bottom = Math.min(wall.bottom, innerHeight);
  const left = Math.max(wall.left, 0), right = Math.min(wall.right, innerWidth);
  let slots = 0, shown = 0, covered = 0;
  const grid = [...document.querySelectorAll('#track .row')].map((row) => [...row.children].map((a) => {
    const img = a.querySelector('img');
    const loaded = !a.hidden && getComputedStyle(a).visibility !== 'hidden' && !!img && img.complete && img.naturalWidth > 0;
    const r = a.getBoundingClientRect();
    const w = Math.min(r.right, right) - Math.max(r.left, left), h = Math.min(r.bottom, bottom) - Math.max(r.top, top);
    if (w > 0.5 && h > 0.5) { slots++; if (loaded) { shown++; covered += w * h; } }
    return loaded ? Number(/example-(\\d+)/.exec(img.src)[1]) : null;
  }));
  const adjacent = [];
  grid.forEach((row, r) => row.forEach((id, c) => {
    if (id === null) return;
    if (row[c + 1] === id) adjacent.push([id, r, c, 'right']);
    if (grid[r + 1] && grid[r + 1][c] === id) adjacent.push([id, r, c, 'below']);
  }));
  return { slots, shown, coverage: covered / Math.max(1, (right - left) * (bottom - top)), adjacent,
           distinct: new Set(grid.flat().filter((i) => i !== null)).size, ids: grid.flat() };
}"""


@pytest.fixture(scope="module")
def small_site(tmp_path_factory):
    """The default site's shape (three bands of 12 IDs) plus bands of 3, 2 and 1 IDs."""
    toml = "".join(f'\n[[images.bands]]\nseeds = "{r.start}-{r.stop - 1}"\npsi = {psi}\n' for psi, r in SMALL_BANDS.items())
    config = load_config(write_project(tmp_path_factory.mktemp("small-grid"), toml))
    make_pairs(config, ids=range(42), snippet=lambda i: f"Snippet number {i}.", size=64)
    build_site(config, quiet=True)
    with serving(config) as url:
        yield url


def wall_series(browser, url: str, size: str, seconds: int = SERIES_SECONDS) -> list[dict]:
    """Open the grid, then sample the wall once a second (Playwright's clock) for `seconds`."""
    g = WatchedPage(browser, url, *WALL_VIEWPORTS[size], paused=True)
    g.page.wait_for_function("() => document.querySelectorAll('#track .tile img').length > 0", timeout=15_000)
    g.page.wait_for_timeout(300)  # the first fill's decodes
    series = []
    for second in range(seconds + 1):
        for _ in range(4 if second else 0):
            # a quarter second of page time, then real time for the images it asked for (a
            # still-grid swap schedules the next one only once its image has decoded)
            g.page.clock.run_for(250)
            g.page.wait_for_timeout(25)
        series.append(g.page.evaluate(WALL_STATE))
    assert g.problems == []
    g.close()
    return series


def record_series(name: str, series: list[dict]) -> None:
    """Printed (pytest -s) and, with BAKERY_GRID_SERIES=folder, written as JSON for the notes."""
    counts = [s["shown"] for s in series]
    print(f"\n{name}: visible faces per second over {len(series) - 1} s: {counts} "
          f"(tile slots on screen {min(s['slots'] for s in series)}-{max(s['slots'] for s in series)}, "
          f"min coverage {min(s['coverage'] for s in series):.3f}, distinct IDs {series[-1]['distinct']}, "
          f"tiles changed first to last {sum(a != b for a, b in zip(series[0]['ids'], series[-1]['ids']))}"
          f"/{len(series[0]['ids'])})")
    folder = os.environ.get("BAKERY_GRID_SERIES")
    if folder:
        import json
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / f"{name}.json").write_text(json.dumps([{k: v for k, v in s.items() if k != "ids"} for s in series]))


@pytest.mark.parametrize("size", WALL_VIEWPORTS)
@pytest.mark.parametrize("mode", ["moving", "still"])
def test_a_wall_of_a_12_id_band_stays_full_for_30_seconds(browser, small_site, size, mode):
    query = "?scroll&psi=1.1" if mode == "moving" else "?psi=1.1"
    series = wall_series(browser, small_site + "grid.html" + query, size)
    record_series(f"{mode}-{size}-12ids", series)
    for second, sample in enumerate(series):
        assert sample["shown"] == sample["slots"] and sample["coverage"] > 0.999, (second, sample)
        assert sample["adjacent"] == [], f"{second} s: the same face side by side: {sample['adjacent']}"
    # every ID of the band takes its turn: a wall with more tiles than IDs shows all 12
    assert all(s["distinct"] >= min(12, s["slots"]) for s in series), [s["distinct"] for s in series]
    if mode == "still":  # and the faces keep changing (each tile about every refresh_seconds = 15 s)
        first, last = series[0]["ids"], series[-1]["ids"]
        assert sum(a != b for a, b in zip(first, last)) >= len(first) // 2, (first, last)


def test_still_grid_fills_4k_with_every_band(browser, small_site):
    """42 IDs, 84 tiles at 4K: the still grid fills the screen (36 IDs showed 36 tiles and left the rest empty)."""
    series = wall_series(browser, small_site + "grid.html?psi=all", "4k", seconds=5)
    record_series("still-4k-42ids", series)
    for sample in series:
        assert sample["shown"] == sample["slots"] >= 12 * 6 and sample["coverage"] > 0.999, sample
        assert sample["adjacent"] == []


@pytest.mark.parametrize("psi, ids", [(0.5, 3), (0.4, 2), (0.3, 1)])
@pytest.mark.parametrize("mode", ["moving", "still"])
def test_tiny_pools_never_put_a_face_beside_its_twin(browser, small_site, mode, psi, ids):
    """3 or 2 IDs still fill the wall (2: a checkerboard); 1 ID cannot, so every other tile stays empty."""
    query = f"?scroll&psi={psi}" if mode == "moving" else f"?psi={psi}"
    series = wall_series(browser, small_site + "grid.html" + query, "1080p", seconds=14)
    record_series(f"{mode}-1080p-{ids}ids", series)
    for second, sample in enumerate(series):
        assert sample["adjacent"] == [], (second, sample["adjacent"])
        assert sample["distinct"] == ids
        if ids > 1:
            assert sample["shown"] == sample["slots"] and sample["coverage"] > 0.999, (second, sample)
        else:
            assert sample["shown"] >= sample["slots"] // 2 - 1, (second, sample)
