"""The generate stage: a 3-band bake that is deterministic, batch-size independent and resumes
after kill -9; manifest-driven redo; the [images] config section's validation; figures."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bakery.cli import main
from images_helpers import SG1_PKL, SG2_PKL

REPO = Path(__file__).resolve().parent.parent


def project(root: Path, images: str) -> Path:
    """A project folder with content/site.toml holding the given [images] section."""
    (root / "content" / "prompts").mkdir(parents=True, exist_ok=True)
    (root / "content" / "prompts" / "plot.txt").write_text("Plot summary of a new anime:\n")
    (root / "templates").mkdir(exist_ok=True)
    (root / "static").mkdir(exist_ok=True)
    path = root / "content" / "site.toml"
    path.write_text(textwrap.dedent(images))
    return path


def three_bands(model: Path, last: int = 11, psi3: float = -0.5) -> str:
    return f"""
    [images]
    model = "{model}"
    batch_size = 4

    [[images.bands]]
    seeds = "0-3"
    psi = 0.7

    [[images.bands]]
    seeds = "4-7"
    psi = 1.1
    noise = "seeded"

    [[images.bands]]
    seeds = "8-{last}"
    psi = {psi3}
    noise = "seeded"
    """


def digests(raw: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(raw.glob("example-*.png"))}


def generate(config: Path, *extra: str) -> int:
    return main(["-q", "-c", str(config), "generate", *extra])


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory) -> dict[str, str]:
    """The reference: one uninterrupted run of the 3-band project at batch size 4."""
    root = tmp_path_factory.mktemp("clean")
    assert generate(project(root, three_bands(SG2_PKL))) == 0
    return digests(root / "build" / "raw")


def test_three_band_bake_writes_every_id_and_manifest(clean_run, tmp_path):
    assert sorted(clean_run) == sorted(f"example-{i}.png" for i in range(12))
    config = project(tmp_path, three_bands(SG2_PKL))
    assert generate(config) == 0
    raw = tmp_path / "build" / "raw"
    assert digests(raw) == clean_run  # deterministic across runs
    manifest = json.loads((raw / "manifest.json").read_text())
    assert manifest["model_sha256"] == hashlib.sha256(SG2_PKL.read_bytes()).hexdigest()
    assert manifest["images"]["5"] == {"seed": 5, "psi": 1.1, "noise": "seeded", "truncation_cutoff": None,
                                       "model_sha256": manifest["model_sha256"],
                                       "bytes": (raw / "example-5.png").stat().st_size,
                                       "sha256": hashlib.sha256((raw / "example-5.png").read_bytes()).hexdigest()}
    assert manifest["images"]["0"]["noise"] == "const"
    with Image.open(raw / "example-0.png") as img:
        assert img.size == (64, 64) and img.mode == "RGB"


@pytest.mark.parametrize("batch", ["1", "5", "12"])
def test_batch_size_does_not_change_any_image(clean_run, tmp_path, batch):
    assert generate(project(tmp_path, three_bands(SG2_PKL)), "--batch-size", batch) == 0
    assert digests(tmp_path / "build" / "raw") == clean_run


def test_rerun_skips_done_and_redoes_changed_or_broken(clean_run, tmp_path):
    config = project(tmp_path, three_bands(SG2_PKL))
    raw = tmp_path / "build" / "raw"
    assert generate(config) == 0
    before = {p.name: p.stat().st_mtime_ns for p in raw.glob("example-*.png")}
    time.sleep(0.01)
    (raw / "example-2.png").write_bytes((raw / "example-2.png").read_bytes()[:100])  # broken file
    (raw / "example-3.png").unlink()
    config.write_text(config.read_text().replace("psi = -0.5", "psi = 0.5"))  # band 3 changes
    assert generate(config) == 0
    after = {p.name: p.stat().st_mtime_ns for p in raw.glob("example-*.png")}
    redone = sorted(int(n[8:-4]) for n in after if after[n] != before.get(n))
    assert redone == [2, 3, 8, 9, 10, 11]
    assert {n: d for n, d in digests(raw).items() if int(n[8:-4]) < 8} == \
        {n: d for n, d in clean_run.items() if int(n[8:-4]) < 8}
    assert json.loads((raw / "manifest.json").read_text())["images"]["9"]["psi"] == 0.5
    # another model: everything is redone
    config.write_text(config.read_text().replace(str(SG2_PKL), str(SG1_PKL)))
    assert generate(config) == 0
    manifest = json.loads((raw / "manifest.json").read_text())
    assert {r["model_sha256"] for r in manifest["images"].values()} == {
        hashlib.sha256(SG1_PKL.read_bytes()).hexdigest()}


@pytest.mark.slow
def test_resumes_after_kill_9_with_no_partial_file(tmp_path):
    last = 199  # enough images that the kill lands mid-run
    reference_root, killed_root = tmp_path / "reference", tmp_path / "killed"
    assert generate(project(reference_root, three_bands(SG2_PKL, last)), "--batch-size", "8") == 0
    config = project(killed_root, three_bands(SG2_PKL, last))
    raw = killed_root / "build" / "raw"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-m", "bakery", "-q", "-c", str(config), "generate",
                             "--batch-size", "1"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while len(list(raw.glob("example-*.png"))) < 20 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    done = list(raw.glob("example-*.png"))
    assert 20 <= len(done) < last + 1, "the kill should land mid-run"
    for png in done:  # every file that exists is whole
        with Image.open(png) as img:
            img.load()
    assert generate(config) == 0
    assert not list(raw.glob(".tmp-*"))
    assert digests(raw) == digests(reference_root / "build" / "raw")
    manifest = json.loads((raw / "manifest.json").read_text())
    assert sorted(map(int, manifest["images"])) == list(range(last + 1))


def _cli_error(tmp_path, capsys, images: str, *args: str) -> tuple[int, str]:
    config = project(tmp_path, images)
    code = main(["-q", "-c", str(config), *(args or ("generate",))])
    err = capsys.readouterr().err.strip()
    assert not (tmp_path / "build").exists(), "nothing may be written on a config error"
    assert len(err.splitlines()) == 1, err
    return code, err


BAND = '\n[[images.bands]]\nseeds = "0-3"\npsi = 0.7\n'


@pytest.mark.parametrize("images, key, problem", [
    ('[images]\nmodle = "embedded"\n' + BAND, "images.modle", "unknown key"),
    ('[images]\nbatch_size = "8"\n' + BAND, "images.batch_size", "must be an integer"),
    ('[images]\nbatch_size = 0\n' + BAND, "images.batch_size", "out of range"),
    ('[images]\nbatch_size = 65\n' + BAND, "images.batch_size", "out of range"),
    ('[images]\n' + BAND + '[[images.bands]]\nseeds = "2-5"\npsi = 0.5\n', "images.bands[1]", "overlap"),
    ('[images]\n' + BAND + '[[images.bands]]\nseeds = "6-9"\npsi = 0.5\n', "images.bands[1]", "gap"),
    ('[images]\n[[images.bands]]\nseeds = "0-3"\npsi = 2.5\n', "images.bands[0].psi", "out of range"),
    ('[images]\n[[images.bands]]\nseeds = "0-3"\npsi = -2.01\n', "images.bands[0].psi", "out of range"),
    ('[images]\n[[images.bands]]\nseeds = "3-1"\npsi = 0.7\n', "images.bands[0].seeds", "A ≤ B"),
    ('[images]\n[[images.bands]]\nseeds = "0-3"\npsi = 0.7\nnoise = "loud"\n', "images.bands[0].noise",
     "must be one of"),
    ('[images]\n[[images.bands]]\nseeds = "0-3"\npsi = 0.7\ncolour = 1\n', "images.bands[0].colour", "unknown key"),
    ('[images]\nmodel = "models/missing.pkl"\n' + BAND, "images.model", "file not found"),
    ('[images]\ntruncation_cutoff = 0\n' + BAND, "images.truncation_cutoff", "out of range"),
    ('[images]\nbands = []\n', "images.bands", "at least one band"),
])
def test_bad_images_config_exits_2_naming_the_key(tmp_path, capsys, images, key, problem):
    code, err = _cli_error(tmp_path, capsys, images)
    assert code == 2 and f"{key}:" in err and problem in err, err


def test_bad_checkpoint_and_batch_override_are_one_line_errors(tmp_path, capsys):
    bad = tmp_path / "bad.pkl"
    bad.write_bytes(b"\x80\x03cos\nsystem\nq\x00X\x04\x00\x00\x00trueq\x01\x85q\x02Rq\x03.")
    config = project(tmp_path, f'[images]\nmodel = "{bad}"\n' + BAND)
    assert main(["-q", "-c", str(config), "generate"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "os.system" in err and "bad.pkl" in err
    assert not list((tmp_path / "build" / "raw").glob("example-*"))
    for bad_batch in ("0", "65"):
        assert main(["-q", "-c", str(config), "generate", "--batch-size", bad_batch]) == 1
        assert "--batch-size must be between 1 and 64" in capsys.readouterr().err


def test_figures_contact_sheet_and_truncation_sweep(tmp_path):
    config = project(tmp_path, three_bands(SG2_PKL))
    assert main(["-q", "-c", str(config), "figures", "--seed", "3"]) == 0
    sheet = np.asarray(Image.open(tmp_path / "build" / "figures" / "contact-sheet.png"))
    sweep = np.asarray(Image.open(tmp_path / "build" / "figures" / "truncation-sweep.png"))
    # the 64 px model is shown in 128 px cells (pixels doubled); the sweep has a label strip on top
    cell, strip = 128, sweep.shape[0] - 6 * 128
    assert sheet.shape == (1280, 1280, 3) and sweep.shape[1:] == (8 * 128, 3) and 24 <= strip <= 40
    assert (sweep[:strip] < 128).any() and (sweep[:strip] > 250).mean() > 0.8  # dark labels on white
    faces = sweep[strip:, ::2][::2]  # back to 64 px cells
    col = faces[:, 4 * 64:5 * 64]  # column 5 of the sweep is psi = 0: the same average image in every row
    assert all(np.abs(col[r * 64:(r + 1) * 64].astype(int) - col[:64]).max() <= 1 for r in range(6))
    assert np.abs(faces[:64, :64].astype(int) - faces[64:128, :64]).mean() > 5  # psi 1: seeds differ
    # seed 3 at psi 0.7 (band 1's psi) is the sheet's first cell and the image the stage renders
    main(["-q", "-c", str(config), "generate"])
    np.testing.assert_array_equal(sheet[:cell:2, :cell:2], np.asarray(Image.open(tmp_path / "build/raw/example-3.png")))
    out = tmp_path / "elsewhere"
    assert main(["-q", "-c", str(config), "figures", "--out", str(out)]) == 0
    assert (out / "contact-sheet.png").is_file() and (out / "truncation-sweep.png").is_file()
