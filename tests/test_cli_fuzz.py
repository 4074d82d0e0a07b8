"""Every command's numeric options (issue 23, item 7), each given inf, -inf, nan, 1e400, a
20-digit number, -1 and 0: the command either refuses the value with one error line that
names the option and exits non-zero, or accepts it and goes on to end as it would with any
value (here: at the broken checkpoint, the empty input folder, the missing upscaled images,
a served and stopped preview), never with a traceback. The config-file side of the same
fuzz is tests/test_config_fuzz.py.

Each option has the range a value must be in to be accepted; a value outside it must be
refused naming the option. `ANY` marks options whose range depends on the model (a class
index, a video cell size): the model refuses those, after loading, and here the broken
checkpoint answers first.
"""

from __future__ import annotations

import http.server
import math

import pytest

from bakery.cli import main
from tests.conftest import REPO

VALUES = ["inf", "-inf", "nan", "1e400", "99999999999999999999", "-1", "0"]
ANY = None


def between(low, high):
    def accepts(text: str) -> bool:
        try:
            value = float(text)
        except ValueError:
            return False
        return math.isfinite(value) and low <= value <= high and (value == int(value) or isinstance(low, float))
    return accepts


def refuse_all(text: str) -> bool:
    return False


def one_of(*texts):
    return lambda text: text in texts


BROKEN = "{root}/models/broken.pkl"
GEN = ["generate", "--model", BROKEN, "--seeds", "0"]
FIG = ["figures", "--model", BROKEN]
VIDEO = ["video", "grid", "--model", BROKEN]
COARSE = ["video", "coarse", "--model", BROKEN]
UPSCALE_FOLDER = ["upscale", "-i", "{root}/in", "-o", "{root}/out"]
RANK = ["rank", "--model", BROKEN, "-i", "{root}/in"]

# (command line before the option, the option, which values it accepts)
OPTIONS = [
    (["serve"], "--port", between(0, 65535)),
    (GEN, "--psi", between(-2.0, 2.0)),
    (GEN, "--rotate", between(-360.0, 360.0)),
    (GEN, "--class", ANY),
    (GEN, "--batch-size", between(1, 64)),
    (GEN, "--translate", refuse_all),  # TX,TY: one number is not a pair
    (["generate", "--model", BROKEN], "--seeds", between(0, 2 ** 32 - 1)),
    (["generate"], "--batch-size", between(1, 64)),
    (["generate"], "--shard", refuse_all),  # I/N
    (["images"], "--batch-size", between(1, 64)),
    (["bake"], "--batch-size", between(1, 64)),
    (["bake"], "--text-batch-size", between(1, 1024)),
    (["text"], "--text-batch-size", between(1, 1024)),
    (["compress"], "--batch-size", between(1, 64)),
    (["upscale"], "--batch-size", between(1, 64)),
    (UPSCALE_FOLDER, "--scale", refuse_all),  # 2, 4, 8...
    (UPSCALE_FOLDER, "--noise", one_of("-1", "0")),
    (FIG, "--seed", between(0, 2 ** 32 - 100)),
    (FIG, "--psi", between(-2.0, 2.0)),
    (FIG, "--class", ANY),
    (FIG, "--batch-size", between(1, 64)),
    (["figures"], "--seed", between(0, 2 ** 32 - 100)),
    (RANK, "--shuffles", between(1, 1000)),
    (RANK, "--minibatch", between(1, 64)),
    (RANK, "--seed", between(0, 2 ** 32 - 1001)),
    (RANK, "--class", ANY),
    (RANK, "--show", between(0, math.inf)),
    ([*RANK, "--sheet", "{root}/sheet.png"], "--sheet-count", between(1, math.inf)),
    (["figures"], "--psi", between(-2.0, 2.0)),
    (["deploy", "rsync"], "--max-deletes", between(0, math.inf)),
    (VIDEO, "--seed", between(0, 2 ** 32 - 1)),
    (VIDEO, "--psi", between(-2.0, 2.0)),
    (VIDEO, "--seconds", between(0.001, 86400.0)),
    (VIDEO, "--fps", between(1, 120)),
    (VIDEO, "--size", ANY),
    (VIDEO, "--smoothing", between(0.0, 600.0)),
    (VIDEO, "--radius", refuse_all),  # `video circular` only
    (VIDEO, "--class", ANY),
    (VIDEO, "--crf", between(0, 51)),
    (VIDEO, "--batch-size", between(1, 64)),
    (VIDEO, "--grid", ANY),
    (COARSE, "--rows", ANY),
    (COARSE, "--targets", ANY),
]


def cases():
    for prefix, option, accepts in OPTIONS:
        for value in VALUES:
            yield pytest.param(prefix, option, accepts, value, id=f"{form(prefix)} {option}={value}")


def form(prefix: list[str]) -> str:
    """"figures --model", "upscale -i/-o", "video grid --model": a readable test ID."""
    words = [p for p in prefix[:2] if not p.startswith("-")]
    words += [flag for flag in ("--model", "-i/-o") if flag.split("/")[0] in prefix]
    return " ".join(words)


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A project whose checkpoint is a broken file, whose text API is a closed local port and
    whose rsync target is a local folder: every stage ends early and in one line."""
    root = tmp_path_factory.mktemp("cli-fuzz")
    (root / "content" / "prompts").mkdir(parents=True)
    (root / "content" / "prompts" / "plot.txt").write_text("Plot summary of a new anime:\n")
    (root / "models").mkdir()
    (root / "models" / "broken.pkl").write_bytes(b"\x80\x03not a network")
    (root / "in").mkdir()
    (root / "public").mkdir()
    (root / "public" / "index.html").write_text("<!doctype html><title>t</title>")
    (root / "mirror").mkdir()
    config = root / "content" / "site.toml"
    config.write_text(f"""
[site]
templates_dir = "{REPO / 'templates'}"
static_dir = "{REPO / 'static'}"

[images]
model = "{root / 'models' / 'broken.pkl'}"
[[images.bands]]
seeds = "0-3"
psi = 0.7

[text.openai]
base_url = "http://127.0.0.1:9/v1"
model = "m"
api_key_env = ""
max_retries = 0
[text.generate]
backend = "openai"
prompt = "content/prompts/plot.txt"

[deploy]
targets = ["rsync"]
[[deploy.rsync]]
name = "local"
destination = "{root / 'mirror'}/"
""", encoding="utf-8")
    return root, config


@pytest.fixture(autouse=True)
def no_serving(monkeypatch):
    """`bakery serve` with an accepted port binds it, then returns at once instead of serving."""
    monkeypatch.setattr(http.server.ThreadingHTTPServer, "serve_forever", lambda self, *a, **k: None)


@pytest.mark.parametrize("prefix, option, accepts, value", list(cases()))
def test_numeric_option_is_refused_in_one_line_or_accepted(project, capsys, monkeypatch, prefix, option, accepts,
                                                           value):
    root, config = project
    monkeypatch.chdir(root)
    argv = ["-q", "-c", str(config), *[p.format(root=root) for p in prefix], f"{option}={value}"]
    try:
        code = main(argv)
    except SystemExit as stop:  # argparse refused the value
        code = stop.code
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    assert code in (0, 1, 2), (code, err)
    errors = [line for line in err.splitlines() if ": error: " in line]
    others = [line for line in err.splitlines() if ": error: " not in line]
    if code:
        assert len(errors) == 1, err
        # argparse prints its usage (which may wrap) above its one error line
        assert all(line.startswith(("usage:", " ")) for line in others), err
    if accepts is not ANY and not accepts(value):
        assert code != 0, f"{option}={value} was accepted"
        assert option.lstrip("-") in errors[0], f"the error does not name {option}: {errors[0]}"
