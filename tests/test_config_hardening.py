"""Issue 10 items 7, 10, 11 and 15: hostile and odd input is one clear error line, never a
traceback, never a NaN that slips through; plus hostile network pickles."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest

from bakery.cli import main
from bakery.config import load_config, script_origin
from bakery.errors import ConfigError
from bakery.fsutil import write_json_atomic
from tests.conftest import MINIMAL_BANDS, write_project


def refused(tmp_path, capsys, toml: str, *, bands: bool = True, command: str = "site") -> str:
    """Run `bakery COMMAND` on the config: it must exit 2 with one line and write nothing."""
    path = write_project(tmp_path, toml + (MINIMAL_BANDS if bands else ""), with_site_dirs=False)
    before = sorted(tmp_path.rglob("*"))
    assert main(["-q", "-c", str(path), command]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("bakery: error:") and "\n" not in err and "Traceback" not in err
    assert sorted(tmp_path.rglob("*")) == before
    return err


# -- item 11: NaN and infinities -----------------------------------------------------------------

OPENAI = '[text.openai]\nbase_url = "http://127.0.0.1:9/v1"\nmodel = "m"\n'
FLOAT_KEYS = [
    ("[[images.bands]]\nseeds = '0-3'\npsi = {v}\n", "images.bands[0].psi", False),
    ("[text.generate]\ntemperature = {v}\n", "text.generate.temperature", True),
    ("[text.generate]\ntop_p = {v}\n", "text.generate.top_p", True),
    ("[text.generate]\nrepetition_penalty = {v}\n", "text.generate.repetition_penalty", True),
    (OPENAI + "requests_per_minute = {v}\n", "text.openai.requests_per_minute", True),
    (OPENAI + "timeout_s = {v}\n", "text.openai.timeout_s", True),
    (OPENAI + "backoff_s = {v}\n", "text.openai.backoff_s", True),
    (OPENAI + "max_backoff_s = {v}\n", "text.openai.max_backoff_s", True),
    ("[text.clean]\nmax_repeat_fraction = {v}\n", "text.clean.max_repeat_fraction", True),
    ("[deploy.cloudflare]\nzone_id = 'z'\ntimeout_seconds = {v}\n", "deploy.cloudflare.timeout_seconds", True),
]


@pytest.mark.parametrize("value", ["nan", "+inf", "-inf"])
@pytest.mark.parametrize("toml, key, bands", FLOAT_KEYS, ids=[k for _, k, _ in FLOAT_KEYS])
def test_non_finite_floats_are_refused_for_every_key(tmp_path, toml, key, bands, value):
    path = write_project(tmp_path, toml.format(v=value) + (MINIMAL_BANDS if bands else ""), with_site_dirs=False)
    with pytest.raises(ConfigError, match=re.escape(f"{key}: must be a finite number")):
        load_config(path)


def test_nan_is_refused_by_the_cli_and_never_written_as_json(tmp_path, capsys):
    assert "psi: must be a finite number, got nan" in refused(
        tmp_path, capsys, "[[images.bands]]\nseeds = '0-3'\npsi = nan\n", bands=False)
    target = tmp_path / "out.json"
    with pytest.raises(ValueError):
        write_json_atomic(target, {"psi": math.nan})
    assert not target.exists() and not list(tmp_path.glob(".tmp-*"))


# -- item 7: the analytics URL -------------------------------------------------------------------

@pytest.mark.parametrize("script, problem", [
    ("https://x.example 'unsafe-inline' 'unsafe-eval' *;/a.js", "without spaces"),
    ("https://x.example/'unsafe-inline';/a.js", "characters a script URL does not need"),
    ("https://*.example/a.js", "valid host name"),
    ("https://user:pw@x.example/a.js", "user:password@"),
    ("https://x.example:99999/a.js", "invalid port"),
    ("https://x.example:80a/a.js", "invalid port"),
    ("https://x.example/a.js#frag", "#fragment"),
    ("https://10.0.0.1/a.js", "valid host name"),
    ("https://-x.example/a.js", "valid host name"),
    ("http://x.example/a.js", "must be an https:// URL"),
    ("https://x.example/a.js,https://evil.example", "characters a script URL does not need"),
    ("https://x.exámple/a.js", "plain ASCII"),
])
def test_analytics_url_is_parsed_strictly(tmp_path, capsys, script, problem):
    err = refused(tmp_path, capsys, f"[site.analytics]\nscript = {json.dumps(script)}\n")
    assert "site.analytics.script: " + problem in err or problem in err


def test_analytics_origin_is_rebuilt_from_host_and_port(tmp_path):
    path = write_project(tmp_path, "[site.analytics]\nscript = 'https://Stats.Example.com:8443/js/s.js?site=a1'\n"
                         + MINIMAL_BANDS, with_site_dirs=False)
    assert load_config(path).site.analytics.origin == "https://stats.example.com:8443"
    assert script_origin("https://plausible.io/js/script.js") == "https://plausible.io"


# -- item 10: tracebacks from bad input ------------------------------------------------------------

def test_output_folders_that_cannot_be_folders(tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    cases = [
        ("[site]\nbuild_dir = 'afile'\n", "site.build_dir: ", "is a file, not a folder"),
        ("[site]\npublic_dir = 'afile/public'\n", "site.public_dir: ", "which is a file"),
        ("[site]\npublic_dir = '/proc'\n", "site.public_dir: /proc is inside /proc", "system folder"),
        ("[site]\nbuild_dir = '/proc/self/x'\n", "site.build_dir: ", "system folder"),
        ('[site]\nbuild_dir = "bu\\u0000ild"\n', "site.build_dir: must not contain control characters", ""),
        ("[site]\npublic_dir = '~nosuchuser-xyz/public'\n", "site.public_dir: cannot expand", "no such user"),
        ("[text.generate]\nprompt = '~nosuchuser-xyz/p.txt'\n", "text.generate.prompt: cannot expand", ""),
    ]
    for toml, key, problem in cases:
        # Each command validates only the sections it uses: the text prompt is checked by `bakery text`.
        err = refused(tmp_path, capsys, toml, command="text" if toml.startswith("[text") else "site")
        assert key in err and problem in err, (toml, err)


def test_deeply_nested_toml_is_one_line(tmp_path, capsys):
    path = tmp_path / "deep.toml"
    path.write_text("x = " + "[" * 5000 + "]" * 5000 + "\n")
    assert main(["-c", str(path), "site"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("deep.toml: invalid TOML: arrays or tables nested too deeply") and "\n" not in err


@pytest.mark.parametrize("seeds, problem", [
    ("0-4294967296", "seed 4294967296 is above 2**32-1 = 4294967295"),
    ("4294967296", "is above 2**32-1 = 4294967295"),
    ("0-99999999999999999999999", "is above 2**32-1 = 4294967295"),
    ("0-4294967295", "4,294,967,296 IDs in all: at most 10,000,000"),
])
def test_seeds_beyond_numpy_range_are_refused_at_config_time(tmp_path, capsys, seeds, problem):
    err = refused(tmp_path, capsys, f"[[images.bands]]\nseeds = '{seeds}'\npsi = 0.7\n", bands=False)
    assert "images.bands" in err and problem in err


# -- item 10: crafted network pickles -----------------------------------------------------------

def _crafted(tmp_path, mutate):
    from bakery.images.pickle_loader import dumps_network_pickle
    from images_helpers import SG2_PKL, load_tuple, resave

    _, _, gs = load_tuple(SG2_PKL)
    net = resave(gs)
    mutate(net)
    path = tmp_path / "crafted.pkl"
    path.write_bytes(dumps_network_pickle(net))
    return path


def _self_containing(net):
    net.state["components"]["synthesis"].state["components"] = {"again": net}


@pytest.mark.parametrize("mutate, message", [
    (lambda n: n.state.update(components="synthesis"), "components must be a dict with string keys, got str"),
    (lambda n: n.state.update(static_kwargs=["resolution"]), "static_kwargs must be a dict"),
    (lambda n: n.state["components"].update(mapping=n), "nest in a loop"),
    (_self_containing, "nest in a loop"),
    (lambda n: n.state.update(name=7), "name must be a string"),
    (lambda n: n.state.update(variables=[("x", np.array(["a"]))]), "numeric array"),
])
def test_crafted_network_structure_is_one_clear_error(tmp_path, mutate, message):
    from bakery.images.pickle_loader import CheckpointError, load_network_pickle

    path = _crafted(tmp_path, mutate)
    with pytest.raises(CheckpointError, match=message) as err:
        load_network_pickle(path)
    assert str(path) in str(err.value) and err.value.exit_code == 1


@pytest.mark.parametrize("kwargs, message", [
    ({"latent_size": "512"}, "latent_size='512' is not a valid value"),
    ({"mapping_lrmul": "fast"}, "mapping_lrmul='fast' is not a valid value"),
    ({"fmap_base": float("nan")}, "fmap_base=nan is not a valid value"),
    ({"resample_kernel": "1331"}, "resample_kernel='1331' is not a valid value"),
    ({"resample_kernel": [1, "3", 3, 1]}, "resample_kernel="),
    ({"normalize_latents": "yes"}, "normalize_latents='yes' is not a valid value"),
    ({"mapping_layers": 1e300}, "mapping_layers=1e+300 is not a valid value"),
])
def test_string_where_a_number_belongs_in_static_kwargs(tmp_path, kwargs, message):
    from bakery.images.checkpoints import load_generator
    from bakery.images.pickle_loader import CheckpointError

    path = _crafted(tmp_path, lambda n: n.state["static_kwargs"].update(kwargs))
    with pytest.raises(CheckpointError, match=re.escape(message)) as err:
        load_generator(path)
    assert str(path) in str(err.value)


# -- item 15: names and folders ------------------------------------------------------------------

@pytest.mark.parametrize("name", ["v1\n", "Assets", "ASSETS", "Index.html", "v1\nx", "Archive"])
def test_archive_names_are_matched_whole_and_reserved_names_in_any_case(name):
    from bakery.deploy.archive import check_name
    from bakery.errors import BakeryError

    with pytest.raises(BakeryError, match="invalid version name"):
        check_name(name)
    check_name("v1")
    check_name("v2.old_1")


@pytest.mark.parametrize("toml, message", [
    ("[site]\npublic_dir = 'build'\n", ["site.public_dir: is the same folder as site.build_dir"]),
    ("[site]\npublic_dir = 'static'\n", ["site.static_dir: is the same folder as site.public_dir"]),
    ("[site]\nbuild_dir = 'public/build'\n", ["site.build_dir: ", "is inside site.public_dir"]),
    ("[site]\npublic_dir = '.'\n", ["site.build_dir: ", "is inside site.public_dir"]),
    ("[site]\nstatic_dir = 'templates'\n", ["site.templates_dir: is the same folder as site.static_dir"]),
    ("[site]\nbuild_dir = 'templates/b'\n", ["site.build_dir: ", "is inside site.templates_dir"]),
])
def test_overlapping_or_nested_folders_are_refused(tmp_path, capsys, toml, message):
    err = refused(tmp_path, capsys, toml)
    assert all(m in err for m in message), err


def test_page_json_never_holds_non_finite_numbers(tmp_path):
    from bakery.site.build import make_environment

    (tmp_path / "t.html").write_text("{{ data | tojson }}")
    template = make_environment(tmp_path).get_template("t.html")
    assert "0.7" in template.render(data={"psi": 0.7})
    with pytest.raises(ValueError):
        template.render(data={"psi": math.nan})
