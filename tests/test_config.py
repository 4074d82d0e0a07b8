"""Config validation: good input parses; each kind of bad input names its key, exits 2, writes nothing."""

from __future__ import annotations

import textwrap

import pytest

from bakery.cli import main
from bakery.config import load_config
from bakery.errors import ConfigError
from tests.conftest import MINIMAL_BANDS, write_project


def test_minimal_config_has_documented_defaults(project):
    config = load_config(project)
    assert config.site.refresh_seconds == 15
    assert config.site.title == "This Waifu Does Not Exist"
    assert config.public_dir == project.parent.parent / "public"
    assert config.build_dir == project.parent.parent / "build"
    assert [(b.first, b.last, b.psi) for b in config.images.bands] == [(0, 3, 0.7), (4, 5, 1.1)]
    assert config.images.ids == [0, 1, 2, 3, 4, 5]
    assert config.jpeg.quality == 25
    assert config.upscale.method == "waifu2x"


def test_shipped_default_config_is_valid():
    from tests.conftest import REPO

    config = load_config(REPO / "content" / "site.toml")
    assert len(config.images.bands) == 3
    assert len({b.psi for b in config.images.bands}) == 3
    assert 24 <= len(config.images.ids) <= 100


def test_bands_may_be_listed_in_any_order(tmp_path):
    path = write_project(tmp_path, """
        [[images.bands]]
        seeds = "10-19"
        psi = 1.0
        [[images.bands]]
        seeds = "0-9"
        psi = 0.5
    """)
    assert [b.first for b in load_config(path).images.bands] == [0, 10]


BAD_INPUTS = [
    ("unknown key", "[site]\ntitel = 'x'\n", "site.titel: unknown key (did you mean 'title'?)"),
    ("unknown section", "[sight]\ntitle = 'x'\n", "sight: unknown key"),
    ("wrong type", "[site]\nrefresh_seconds = '15'\n", "site.refresh_seconds: must be an integer, got a string ('15')"),
    ("bool is not int", "[site]\nrefresh_seconds = true\n", "site.refresh_seconds: must be an integer"),
    ("negative refresh", "[site]\nrefresh_seconds = -5\n", "site.refresh_seconds: -5 is out of range"),
    ("zero refresh", "[site]\nrefresh_seconds = 0\n", "site.refresh_seconds: 0 is out of range"),
    ("psi too high", "[[images.bands]]\nseeds = '0-3'\npsi = 2.5\n", "images.bands[0].psi: 2.5 is out of range (must be [-2.0, 2.0])"),
    ("psi too low", "[[images.bands]]\nseeds = '0-3'\npsi = -3\n", "images.bands[0].psi: -3 is out of range"),
    ("bad seed range", "[[images.bands]]\nseeds = '5-2'\npsi = 0.5\n", "images.bands[0].seeds: must look like \"A-B\""),
    ("seed range not numbers", "[[images.bands]]\nseeds = 'a-b'\npsi = 0.5\n", "images.bands[0].seeds: must look like"),
    ("overlap", "[[images.bands]]\nseeds = '0-9'\npsi = 0.5\n[[images.bands]]\nseeds = '5-12'\npsi = 0.7\n",
     "images.bands[1]: seeds 5-12 overlap bands[0] (0-9)"),
    ("gap", "[[images.bands]]\nseeds = '0-9'\npsi = 0.5\n[[images.bands]]\nseeds = '20-29'\npsi = 0.7\n",
     "images.bands[1]: seeds 20-29 leave a gap after bands[0] (0-9): seeds 10-19 belong to no band"),
    ("one-seed gap", "[[images.bands]]\nseeds = '0-5'\npsi = 0.5\n[[images.bands]]\nseeds = '7'\npsi = 0.7\n",
     "images.bands[1]: seed 7 leaves a gap after bands[0] (0-5): seed 6 belongs to no band"),
    ("one-seed overlap", "[[images.bands]]\nseeds = '0-5'\npsi = 0.5\n[[images.bands]]\nseeds = '5'\npsi = 0.7\n",
     "images.bands[1]: seed 5 overlaps bands[0] (0-5)"),
    ("no bands", "[images]\nbatch_size = 4\n", "images.bands: at least one band"),
    ("missing model", "[images]\nmodel = 'models/nope.pkl'\n" + MINIMAL_BANDS, "images.model: file not found"),
    ("missing prompt", "[text.generate]\nprompt = 'content/prompts/nope.txt'\n" + MINIMAL_BANDS, "text.generate.prompt: file not found"),
    ("bad choice", "[upscale]\nmethod = 'bicubic'\n" + MINIMAL_BANDS, "upscale.method: must be one of 'waifu2x', 'lanczos', 'none', got 'bicubic'"),
    ("jpeg quality", "[jpeg]\nquality = 0\n" + MINIMAL_BANDS, "jpeg.quality: 0 is out of range"),
    ("analytics not https", "[site.analytics]\nscript = 'http://x.example/a.js'\n", "site.analytics.script: must be an https:// URL"),
    ("band unknown key", "[[images.bands]]\nseeds = '0-3'\npsi = 0.5\nnoize = 'const'\n", "images.bands[0].noize: unknown key"),
]


@pytest.mark.parametrize("label,toml,message", BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_bad_input_names_key_and_problem(tmp_path, label, toml, message):
    if "[images" not in toml and "[[images" not in toml:
        toml += MINIMAL_BANDS  # every config needs bands; these cases are about other keys
    path = write_project(tmp_path, toml, with_site_dirs=False)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert message in str(err.value)
    assert str(path) in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("label,toml,message", BAD_INPUTS[:6], ids=[b[0] for b in BAD_INPUTS[:6]])
def test_cli_exits_2_with_one_line_and_writes_nothing(tmp_path, capsys, label, toml, message):
    path = write_project(tmp_path, toml + ("" if "images" in toml else MINIMAL_BANDS), with_site_dirs=False)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    assert main(["-c", str(path), "site"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and message in err and err.startswith("bakery: error:")
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_invalid_toml_and_missing_file(tmp_path, capsys):
    assert main(["-c", str(tmp_path / "none.toml"), "site"]) == 2
    assert "none.toml: config file not found" in capsys.readouterr().err
    bad = tmp_path / "bad.toml"
    bad.write_text("[site\n")
    assert main(["-c", str(bad), "site"]) == 2
    assert "bad.toml: invalid TOML" in capsys.readouterr().err


def test_missing_templates_dir_is_named(tmp_path):
    path = write_project(tmp_path, "[site]\ntemplates_dir = 'nowhere'\n" + MINIMAL_BANDS, with_site_dirs=False)
    with pytest.raises(ConfigError, match=r"site.templates_dir: directory not found"):
        load_config(path)


def test_config_outside_content_dir_is_relative_to_its_folder(tmp_path):
    path = tmp_path / "alt.toml"
    path.write_text(textwrap.dedent(MINIMAL_BANDS) + "\n[text.generate]\nprompt = 'p.txt'\n")
    (tmp_path / "p.txt").write_text("x")
    (tmp_path / "templates").mkdir()
    (tmp_path / "static").mkdir()
    config = load_config(path)
    assert config.public_dir == tmp_path / "public"
