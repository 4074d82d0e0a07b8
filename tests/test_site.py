"""The site stage: which IDs are published, what index.html holds, and how it is written."""

from __future__ import annotations

import json
import re

import pytest

from bakery.cli import main
from bakery.config import load_config
from bakery.errors import BakeryError
from bakery.site import build
from bakery.site.build import build_site, to_ranges
from tests.conftest import make_pairs, write_project, MINIMAL_BANDS


def page_data(html: str) -> dict:
    m = re.search(r'<script type="application/json" id="bakery-data">(.*?)</script>', html, re.S)
    return json.loads(m.group(1))


def test_to_ranges_compacts_runs():
    assert to_ranges([5, 0, 1, 2, 6, 9]) == [[0, 2], [5, 6], [9, 9]]
    assert to_ranges([]) == []


def test_publishes_only_complete_pairs(project):
    config = load_config(project)
    make_pairs(config, ids=[0, 1, 2, 4, 5], image_ids=[0, 1, 3, 4, 5])
    (config.build_dir / "text" / "snippet-5.txt").write_text("")  # a failed run: empty
    report = build_site(config, quiet=True)
    assert report.published == 3  # 0, 1, 4
    html = (config.public_dir / "index.html").read_text()
    data = page_data(html)
    assert data["refresh_seconds"] == 15
    assert data["bands"] == [
        {"psi": 0.7, "seeds": "0-3", "ranges": [[0, 1]]},
        {"psi": 1.1, "seeds": "4-5", "ranges": [[4, 4]]},
    ]
    published = sorted(p.name for p in config.public_dir.glob("snippet-*.txt"))
    assert published == ["snippet-0.txt", "snippet-1.txt", "snippet-4.txt"]


def test_snippets_are_copied_byte_for_byte_and_not_rewritten(project):
    config = load_config(project)
    make_pairs(config, ids=[0, 1], snippet=lambda i: f"Ünïcode ☃ snippet {i}\n")
    build_site(config, quiet=True)
    target = config.public_dir / "snippet-1.txt"
    assert target.read_bytes() == (config.build_dir / "text" / "snippet-1.txt").read_bytes()
    stamp = target.stat().st_mtime_ns
    build_site(config, quiet=True)
    assert target.stat().st_mtime_ns == stamp


def test_index_escapes_snippets_and_has_strict_csp(project):
    config = load_config(project)
    make_pairs(config, ids=[0], snippet=lambda i: '_Evil <b>Title</b>_: <script>alert(1)</script><img src=x onerror=alert(2)>')
    build_site(config, quiet=True)
    html = (config.public_dir / "index.html").read_text()
    assert "<script>alert(1)" not in html and "onerror=alert(2)>" not in html
    assert "<em>Evil &lt;b&gt;Title&lt;/b&gt;</em>: &lt;script&gt;alert(1)&lt;/script&gt;" in html
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', html).group(1)
    assert "default-src &#39;none&#39;" in csp and "script-src &#39;self&#39;;" in csp
    assert "unsafe-inline" not in csp
    # the only inline <script> is the JSON data block, which browsers never execute
    inline = re.findall(r"<script(?![^>]*\bsrc=)([^>]*)>", html)
    assert inline == [' type="application/json" id="bakery-data"']


def test_assets_are_fingerprinted_and_page_is_light(project):
    config = load_config(project)
    make_pairs(config, ids=[0, 1, 2])
    report = build_site(config, quiet=True)
    html = (config.public_dir / "index.html").read_text()
    css = re.search(r'href="(assets/style\.[0-9a-f]{10}\.css)"', html).group(1)
    js = re.search(r'src="(assets/app\.[0-9a-f]{10}\.js)"', html).group(1)
    assert (config.public_dir / css).is_file() and (config.public_dir / js).is_file()
    assert report.page_bytes < 20 * 1024
    assert "@media" in (config.public_dir / css).read_text()  # compiled from SCSS


def test_analytics_only_when_configured(tmp_path):
    path = write_project(tmp_path, MINIMAL_BANDS)
    config = load_config(path)
    make_pairs(config, ids=[0])
    build_site(config, quiet=True)
    assert "plausible" not in (config.public_dir / "index.html").read_text()

    text = path.read_text().replace("[site]\n", "[site]\nanalytics = { script = \"https://plausible.io/js/script.js\", attributes = { data-domain = \"example.org\" } }\n", 1)
    path.write_text(text)
    config = load_config(path)
    build_site(config, quiet=True)
    html = (config.public_dir / "index.html").read_text()
    assert '<script src="https://plausible.io/js/script.js" defer data-domain="example.org"></script>' in html
    assert "script-src &#39;self&#39; https://plausible.io;" in html


def test_index_is_written_last(project, monkeypatch):
    config = load_config(project)
    make_pairs(config, ids=[0, 1])
    written = []
    for name in ("write_bytes_atomic", "write_text_atomic", "write_json_atomic"):
        original = getattr(build, name)
        monkeypatch.setattr(build, name, lambda path, data, _o=original: (written.append(path.name), _o(path, data)))
    build_site(config, quiet=True)
    assert written[-1] == "index.html"
    assert {"snippet-0.txt", "snippet-1.txt"} <= set(written[:-1])


def test_template_error_leaves_previous_index(tmp_path):
    import shutil
    from tests.conftest import REPO

    templates = tmp_path / "tpl"
    shutil.copytree(REPO / "templates", templates)
    path = write_project(tmp_path, MINIMAL_BANDS)
    path.write_text(path.read_text().replace(str(REPO / "templates"), str(templates)))
    config = load_config(path)
    make_pairs(config, ids=[0])
    build_site(config, quiet=True)
    before = (config.public_dir / "index.html").read_bytes()
    (templates / "index.html").write_text("{% if %}")
    with pytest.raises(BakeryError, match=r"index.html:1: template error"):
        build_site(config, quiet=True)
    assert (config.public_dir / "index.html").read_bytes() == before
    assert not list(config.public_dir.glob(".tmp-*"))


def test_non_utf8_snippet_is_named(project):
    config = load_config(project)
    make_pairs(config, ids=[0])
    (config.build_dir / "text" / "snippet-0.txt").write_bytes(b"\xff\xfe bad")
    with pytest.raises(BakeryError, match=r"snippet-0.txt: not valid UTF-8"):
        build_site(config, quiet=True)
    assert not (config.public_dir / "index.html").exists()


def test_cli_site_runs(project, capsys):
    config = load_config(project)
    make_pairs(config, ids=[0, 1, 2, 3])
    assert main(["-c", str(project), "site"]) == 0
    assert "published 4 pairs" in capsys.readouterr().err


def test_mirror_download_command_only_when_configured(tmp_path):
    path = write_project(tmp_path, MINIMAL_BANDS)
    config = load_config(path)
    make_pairs(config, ids=[0])
    build_site(config, quiet=True)
    assert "rsync --recursive" not in (config.public_dir / "index.html").read_text()
    path.write_text(path.read_text() + '\n[deploy.mirror]\nmodule = "waifus"\npublic_url = "rsync://mirror.example.org/waifus/"\n')
    build_site(load_config(path), quiet=True)
    assert ("<code>rsync --recursive --times rsync://mirror.example.org/waifus/ waifus/</code>"
            in (config.public_dir / "index.html").read_text())


def test_empty_site_is_refused_unless_allowed(project, capsys):
    assert main(["-c", str(project), "site"]) == 2
    err = capsys.readouterr().err
    assert "no complete pairs to publish" in err and "--allow-empty" in err and len(err.strip().splitlines()) == 1
    config = load_config(project)
    assert not (config.public_dir / "index.html").exists()
    assert main(["-c", str(project), "site", "--allow-empty"]) == 0
    assert page_data((config.public_dir / "index.html").read_text())["bands"] == []


def test_ids_outside_the_bands_are_not_published(project, capsys):
    config = load_config(project)  # bands 0-3 and 4-5
    make_pairs(config, ids=[0, 5, 6, 40])  # 6 and 40 left the config when the bands shrank
    assert main(["-c", str(project), "site"]) == 0
    assert "2 pair(s) outside the configured bands" in capsys.readouterr().err
    data = page_data((config.public_dir / "index.html").read_text())
    assert [b["ranges"] for b in data["bands"]] == [[[0, 0]], [[5, 5]]]
    assert sorted(p.name for p in config.public_dir.glob("snippet-*")) == ["snippet-0.txt", "snippet-5.txt"]


def test_unverified_pairs_are_not_also_counted_outside_the_bands(project, capsys):
    from bakery.verify import record_file

    config = load_config(project)  # bands 0-3 and 4-5
    make_pairs(config, ids=[0, 1, 2, 6])  # 6 left the bands; 1 and 2 are not what `text` recorded
    text = config.build_dir / "text"
    (text / "manifest.json").write_text(json.dumps({"snippets": {"0": record_file(text / "snippet-0.txt"),
                                                                 "6": record_file(text / "snippet-6.txt")}}))
    report = build_site(config, quiet=True)
    assert (report.published, report.outside_bands, report.unverified) == (1, 1, 2)
    assert main(["-c", str(project), "site"]) == 0
    err = capsys.readouterr().err
    assert "2 pair(s) not published: the image or snippet is not what its stage wrote" in err
    assert "1 pair(s) outside the configured bands" in err


def test_only_canonical_names_are_published(project):
    config = load_config(project)
    make_pairs(config, ids=[1, 2])
    text = config.build_dir / "text"
    (text / "snippet-0001.txt").write_text("leading zeros must not stand in for ID 1")
    (text / "snippet-\u0662.txt").write_text("Arabic-Indic two must not stand in for ID 2")
    (text / "snippet-3.txt ").write_text("a trailing space")
    (text / "snippet-3.txt\n").write_text("a trailing newline")
    (config.public_dir / "example-3.jpg").write_bytes((config.public_dir / "example-1.jpg").read_bytes())
    (config.public_dir / "example-03.jpg").write_bytes(b"x")
    build_site(config, quiet=True)
    assert page_data((config.public_dir / "index.html").read_text())["bands"][0]["ranges"] == [[1, 2]]
    assert (config.public_dir / "snippet-1.txt").read_text() == "Snippet number 1."
    assert (config.public_dir / "snippet-2.txt").read_text() == "Snippet number 2."
    assert sorted(p.name for p in config.public_dir.glob("snippet-*")) == ["snippet-1.txt", "snippet-2.txt"]


@pytest.mark.parametrize("folder", ["text", "public"])
def test_symlinked_pair_files_are_refused_by_name(project, tmp_path, folder):
    config = load_config(project)
    make_pairs(config, ids=[0, 1])
    secret = tmp_path / "secret.txt"
    secret.write_text("root:x:0:0")
    directory = config.build_dir / "text" if folder == "text" else config.public_dir
    name = "snippet-3.txt" if folder == "text" else "example-3.jpg"
    (directory / name).symlink_to(secret)
    with pytest.raises(BakeryError, match=rf"{name}: is a symbolic link \(to {secret}\)"):
        build_site(config, quiet=True)
    assert not (config.public_dir / "index.html").exists()
    assert not (config.public_dir / "snippet-3.txt").exists() or folder == "public"


def test_snippet_over_max_chars_is_refused_naming_the_id(tmp_path):
    path = write_project(tmp_path, MINIMAL_BANDS + "\n[text.clean]\nmin_chars = 10\nmax_chars = 100\n")
    config = load_config(path)
    make_pairs(config, ids=[0, 1, 2], snippet=lambda i: "x" * (100 if i != 2 else 100_000))
    with pytest.raises(BakeryError, match=r"snippet 2 \(.*snippet-2.txt\): 100000 characters, over text.clean.max_chars \(100\)"):
        build_site(config, quiet=True)
    assert not list(config.public_dir.glob("snippet-*"))  # checked before anything is published
    (config.build_dir / "text" / "snippet-2.txt").write_text("é" * 100)  # characters, not bytes
    assert build_site(config, quiet=True).published == 3


def test_grid_page_is_written_before_index_and_both_are_light(project):
    config = load_config(project)
    make_pairs(config, ids=range(6))
    report = build_site(config, quiet=True)
    grid = (config.public_dir / "grid.html").read_text()
    index = (config.public_dir / "index.html").read_text()
    assert re.search(r'src="assets/grid\.[0-9a-f]{10}\.js"', grid) and 'href="grid.html"' in index
    assert page_data(grid) == page_data(index)
    assert (config.public_dir / "index.html").stat().st_mtime_ns >= (config.public_dir / "grid.html").stat().st_mtime_ns
    assert set(report.pages) == {"grid.html", "index.html"}
    assert all(size < 20 * 1024 for size in report.pages.values()), report.pages
    assert report.page_bytes == report.pages["index.html"]


def test_publish_model_copies_a_versioned_checkpoint_with_its_sha256(tmp_path):
    import hashlib

    model = tmp_path / "models" / "anime portraits.pkl"
    model.parent.mkdir()
    model.write_bytes(b"pretend checkpoint " * 1000)
    toml = MINIMAL_BANDS + f'\n[images]\nmodel = "{model}"\n'
    path = write_project(tmp_path, toml)
    path.write_text(path.read_text().replace("[site]\n", "[site]\npublish_model = true\n", 1))
    config = load_config(path)
    make_pairs(config, ids=[0])
    (config.public_dir / "snippets.tar.gz").write_bytes(b"t" * 3000)
    build_site(config, quiet=True)
    digest = hashlib.sha256(model.read_bytes()).hexdigest()
    name = f"model-anime_portraits-{digest[:12]}.pkl"
    assert (config.public_dir / name).read_bytes() == model.read_bytes()
    downloads = json.loads((config.public_dir / "downloads.json").read_text())
    assert downloads == {"model": {"file": name, "bytes": 19000, "sha256": digest},
                         "snippets": {"file": "snippets.tar.gz", "bytes": 3000}}
    html = (config.public_dir / "index.html").read_text()
    assert f'<a href="{name}" download>the model</a> (18.6 KB' in html
    assert '<a href="snippets.tar.gz" download>every snippet</a> (2.9 KB)' in html
    model.write_bytes(b"a newer checkpoint")  # a new version replaces the old file
    build_site(config, quiet=True)
    assert [p.name for p in config.public_dir.glob("model-*")] == [
        f"model-anime_portraits-{hashlib.sha256(b'a newer checkpoint').hexdigest()[:12]}.pkl"]


def test_no_model_published_by_default(project):
    config = load_config(project)
    make_pairs(config, ids=[0])
    build_site(config, quiet=True)
    assert not list(config.public_dir.glob("model-*"))
    assert json.loads((config.public_dir / "downloads.json").read_text()) == {}
    assert "Downloads:" not in (config.public_dir / "index.html").read_text()
