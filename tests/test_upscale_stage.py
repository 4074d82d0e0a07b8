"""`bakery upscale` / `bakery compress`: config, resumability, corrupt input, kill -9, waifu2x wiring."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bakery.cli import main
from bakery.config import load_config
from bakery.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent
FIXTURE = REPO / "tests" / "fixtures" / "waifu2x" / "test_96x80.png"


def make_project(tmp_path: Path, ids: str = "0-3", upscale: str = 'method = "lanczos"',
                 jpeg: str = "", size: tuple[int, int] = (40, 32)) -> Path:
    """A project in tmp_path with raw PNGs for the given seed range; returns its site.toml."""
    toml = tmp_path / "site.toml"
    toml.write_text(f"""
[site]
templates_dir = "{REPO / 'templates'}"
static_dir = "{REPO / 'static'}"
[images]
[[images.bands]]
seeds = "{ids}"
psi = 0.7
[upscale]
{upscale}
[jpeg]
{jpeg}
[text]
enabled = false
""")
    raw = tmp_path / "build" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    first, _, last = ids.partition("-")
    source = Image.open(FIXTURE).convert("RGB")
    for i in range(int(first), int(last or first) + 1):
        source.rotate(15 * i).resize(size).save(raw / f"example-{i}.png")
    return toml


def run(toml: Path, *command: str) -> int:
    return main(["-q", "-c", str(toml), *command])


def mtimes(folder: Path, pattern: str) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in sorted(folder.glob(pattern))}


def bump(path: Path, seconds: float = 5.0) -> None:
    stamp = time.time() + seconds
    os.utime(path, (stamp, stamp))


# --- config ---------------------------------------------------------------------------------


def test_defaults(tmp_path):
    cfg = load_config(make_project(tmp_path, upscale=""))
    assert (cfg.upscale.method, cfg.upscale.noise, cfg.upscale.tile_size) == ("waifu2x", "none", 512)
    assert (cfg.upscale.workers, cfg.upscale.threads, cfg.upscale.batch_size) == (0, 0, 4)
    assert (cfg.upscale.engine, cfg.upscale.gpu) == ("ncnn", True)
    assert (cfg.jpeg.quality, cfg.jpeg.progressive, cfg.jpeg.optimize, cfg.jpeg.subsampling) == (25, True, True, "4:2:0")


@pytest.mark.parametrize("noise, expected", [("2", "2"), ('"none"', "none"), ("0", "0"), ('"3"', "3")])
def test_noise_accepts_numbers_and_strings(tmp_path, noise, expected):
    assert load_config(make_project(tmp_path, upscale=f"noise = {noise}")).upscale.noise == expected


@pytest.mark.parametrize("section, text, key", [
    ("upscale", 'method = "bicubic"', "upscale.method"),
    ("upscale", "noise = 4", "upscale.noise"),
    ("upscale", 'noise = "low"', "upscale.noise"),
    ("upscale", "noise = true", "upscale.noise"),
    ("upscale", "tile_size = 8", "upscale.tile_size"),
    ("upscale", 'tile_size = "big"', "upscale.tile_size"),
    ("upscale", "workers = -1", "upscale.workers"),
    ("upscale", "threads = 1.5", "upscale.threads"),
    ("upscale", "batch_size = 0", "upscale.batch_size"),
    ("upscale", "scale = 2", "upscale.scale"),
    ("upscale", 'engine = "cuda"', "upscale.engine"),
    ("upscale", "engine = 1", "upscale.engine"),
    ("upscale", 'gpu = "yes"', "upscale.gpu"),
    ("jpeg", "quality = 0", "jpeg.quality"),
    ("jpeg", "quality = 100", "jpeg.quality"),
    ("jpeg", 'progressive = "yes"', "jpeg.progressive"),
    ("jpeg", 'subsampling = "4:1:1"', "jpeg.subsampling"),
    ("jpeg", "optimise = true", "jpeg.optimise"),
])
def test_bad_config_names_the_key(tmp_path, section, text, key):
    kwargs = {"upscale": text} if section == "upscale" else {"jpeg": text}
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(make_project(tmp_path, **kwargs))


# --- lanczos / none end to end, resumability --------------------------------------------------


def test_upscale_then_compress(tmp_path, capsys):
    toml = make_project(tmp_path)
    assert main(["-c", str(toml), "upscale"]) == 0
    assert main(["-c", str(toml), "compress"]) == 0
    err = capsys.readouterr().err
    up = tmp_path / "build" / "upscaled"
    for i in range(4):
        assert Image.open(up / f"example-{i}.png").size == (80, 64)
        jpg = Image.open(tmp_path / "public" / f"example-{i}.jpg")
        assert jpg.format == "JPEG" and jpg.size == (80, 64)
    assert json.loads((up / "manifest.json").read_text())["settings"] == {"method": "lanczos", "scale": 2}
    compress_manifest = json.loads((tmp_path / "build" / "compress" / "manifest.json").read_text())
    assert compress_manifest["settings"]["quality"] == 25 and sorted(compress_manifest["done"]) == ["0", "1", "2", "3"]
    total = sum((tmp_path / "public" / f"example-{i}.jpg").stat().st_size for i in range(4))
    assert f"4 JPEGs, {total:,} bytes in total, mean {total // 4:,} bytes" in err
    assert "upscale: 4 upscaled PNGs" in err


def test_rerun_skips_and_touched_source_is_redone(tmp_path):
    toml = make_project(tmp_path)
    assert run(toml, "upscale") == 0 and run(toml, "compress") == 0
    up, public = tmp_path / "build" / "upscaled", tmp_path / "public"
    before_png, before_jpg = mtimes(up, "example-*.png"), mtimes(public, "*.jpg")
    time.sleep(0.01)
    assert run(toml, "upscale") == 0 and run(toml, "compress") == 0
    assert mtimes(up, "example-*.png") == before_png and mtimes(public, "*.jpg") == before_jpg

    bump(tmp_path / "build" / "raw" / "example-2.png")
    assert run(toml, "upscale") == 0 and run(toml, "compress") == 0
    after_png, after_jpg = mtimes(up, "example-*.png"), mtimes(public, "*.jpg")
    assert [n for n in after_png if after_png[n] != before_png[n]] == ["example-2.png"]
    assert [n for n in after_jpg if after_jpg[n] != before_jpg[n]] == ["example-2.jpg"]


def test_deleted_output_is_redone(tmp_path):
    toml = make_project(tmp_path)
    assert run(toml, "upscale") == 0 and run(toml, "compress") == 0
    (tmp_path / "public" / "example-1.jpg").unlink()
    (tmp_path / "build" / "upscaled" / "example-3.png").unlink()
    assert run(toml, "upscale") == 0 and run(toml, "compress") == 0
    assert (tmp_path / "public" / "example-1.jpg").is_file()
    assert (tmp_path / "build" / "upscaled" / "example-3.png").is_file()


def test_config_change_redoes_every_image(tmp_path):
    toml = make_project(tmp_path)
    assert run(toml, "upscale") == 0 and run(toml, "compress") == 0
    public = tmp_path / "public"
    before = mtimes(public, "*.jpg")
    toml.write_text(toml.read_text().replace("[jpeg]\n", "[jpeg]\nquality = 60\n"))
    assert run(toml, "compress") == 0
    after = mtimes(public, "*.jpg")
    assert all(after[n] != before[n] for n in before)

    toml.write_text(toml.read_text().replace('method = "lanczos"', 'method = "none"'))
    assert run(toml, "upscale") == 0
    for i in range(4):  # method none: the raw PNG itself, not a 2x copy
        raw = tmp_path / "build" / "raw" / f"example-{i}.png"
        assert (tmp_path / "build" / "upscaled" / f"example-{i}.png").read_bytes() == raw.read_bytes()
    assert run(toml, "compress") == 0  # the upscaled PNGs are newer: every JPEG is redone
    assert Image.open(public / "example-0.jpg").size == (40, 32)


def test_corrupt_and_missing_pngs_are_reported_by_id(tmp_path, capsys):
    toml = make_project(tmp_path, ids="0-4")
    raw = tmp_path / "build" / "raw"
    data = (raw / "example-1.png").read_bytes()
    (raw / "example-1.png").write_bytes(data[: len(data) // 2])  # truncated
    (raw / "example-3.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 20)  # corrupt
    (raw / "example-4.png").unlink()  # missing
    assert run(toml, "upscale") == 1
    err = capsys.readouterr().err
    line = [ln for ln in err.splitlines() if ln.startswith("bakery: error:")][0]
    assert "3 of 5 images failed" in line
    assert "ID 1:" in line and "example-1.png: cannot decode PNG" in line
    assert "ID 3:" in line and "1 raw image missing (ID 4): run `bakery generate` first" in line
    up = tmp_path / "build" / "upscaled"
    assert sorted(p.name for p in up.glob("example-*")) == ["example-0.png", "example-2.png"]
    assert sorted(json.loads((up / "manifest.json").read_text())["done"]) == ["0", "2"]

    assert run(toml, "compress") == 1  # the good ones are published, the others named
    assert sorted(p.name for p in (tmp_path / "public").glob("*.jpg")) == ["example-0.jpg", "example-2.jpg"]
    assert "compress: 3 of 5 images failed" in capsys.readouterr().err

    # repaired input: only the repaired image is done on the rerun
    Image.new("RGB", (40, 32), "red").save(raw / "example-1.png")
    assert run(toml, "upscale") == 1
    assert (up / "example-1.png").is_file()


def test_kill_9_leaves_no_partial_file(tmp_path):
    toml = make_project(tmp_path, ids="0-39", size=(320, 320))
    up = tmp_path / "build" / "upscaled"
    proc = subprocess.Popen([sys.executable, "-m", "bakery", "-q", "-c", str(toml), "upscale"],
                            cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(list(up.glob("example-*.png"))) < 3:
            time.sleep(0.005)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    finished = list(up.glob("example-*.png"))
    assert 3 <= len(finished) < 40, "the run should have been killed part-way"
    for path in finished:  # every visible output is a complete PNG
        Image.open(path).load()
    assert run(toml, "upscale") == 0
    assert len(list(up.glob("example-*.png"))) == 40
    assert not list(up.glob(".tmp-*"))
    for path in up.glob("example-*.png"):
        Image.open(path).load()


# --- waifu2x through the stage -------------------------------------------------------------


def test_waifu2x_stage_matches_the_model(tmp_path):
    toml = make_project(tmp_path, ids="0-1", upscale='method = "waifu2x"\nworkers = 1\ntile_size = 24',
                        size=(30, 22))
    raw = tmp_path / "build" / "raw"
    rgba = Image.open(raw / "example-1.png").convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize(rgba.size))
    rgba.save(raw / "example-1.png")
    assert run(toml, "upscale") == 0

    from bakery.upscale.engines import make_waifu2x

    model = make_waifu2x("ncnn", "none", tile_size=512)
    for i, mode in ((0, "RGB"), (1, "RGBA")):
        out = Image.open(tmp_path / "build" / "upscaled" / f"example-{i}.png")
        assert out.mode == mode and out.size == (60, 44)
        expected = np.asarray(model.upscale(Image.open(raw / f"example-{i}.png")))
        diff = np.abs(np.asarray(out).astype(int) - expected.astype(int))
        assert diff.max() <= 1 and diff.mean() < 0.05
    manifest = json.loads((tmp_path / "build" / "upscaled" / "manifest.json").read_text())
    assert manifest["settings"] == {"method": "waifu2x", "engine": "ncnn", "noise": "none", "scale": 2}

    toml.write_text(toml.read_text().replace('method = "waifu2x"', 'method = "waifu2x"\nnoise = 1'))
    before = mtimes(tmp_path / "build" / "upscaled", "example-*.png")
    assert run(toml, "upscale") == 0  # a different noise level is a different picture
    after = mtimes(tmp_path / "build" / "upscaled", "example-*.png")
    assert all(after[n] != before[n] for n in before)


def test_tensorflow_engine_through_the_stage(tmp_path, capsys):
    """engine = "tensorflow" still works; switching engines redoes the images (the engine is in
    the manifest's settings, since the two agree to a level, not bit for bit), switching back too."""
    toml = make_project(tmp_path, ids="0-1", upscale='method = "waifu2x"\nengine = "tensorflow"', size=(26, 20))
    up = tmp_path / "build" / "upscaled"
    assert main(["-c", str(toml), "upscale"]) == 0
    assert "waifu2x upconv_7 (noise none, tensorflow)" in capsys.readouterr().err
    assert json.loads((up / "manifest.json").read_text())["settings"]["engine"] == "tensorflow"

    from bakery.upscale.engines import make_waifu2x

    by_tf = {i: np.asarray(Image.open(up / f"example-{i}.png")).astype(int) for i in range(2)}
    reference = make_waifu2x("ncnn", "none")
    for i in range(2):
        expected = np.asarray(reference.upscale(Image.open(tmp_path / "build" / "raw" / f"example-{i}.png")))
        assert by_tf[i].shape == (40, 52, 3) and np.abs(by_tf[i] - expected).max() <= 1

    before = mtimes(up, "example-*.png")
    assert run(toml, "upscale") == 0 and mtimes(up, "example-*.png") == before  # same engine: skipped
    toml.write_text(toml.read_text().replace('engine = "tensorflow"', 'engine = "ncnn"'))
    assert run(toml, "upscale") == 0
    after = mtimes(up, "example-*.png")
    assert all(after[n] != before[n] for n in before)
    assert json.loads((up / "manifest.json").read_text())["settings"]["engine"] == "ncnn"


@pytest.mark.slow
def test_waifu2x_worker_processes(tmp_path):
    toml = make_project(tmp_path, ids="0-2", upscale='method = "waifu2x"\nworkers = 2\nthreads = 1',
                        size=(20, 16))
    assert run(toml, "upscale") == 0
    (tmp_path / "single").mkdir()
    ours = make_project(tmp_path / "single", ids="0-2", upscale='method = "waifu2x"\nworkers = 1', size=(20, 16))
    assert run(ours, "upscale") == 0
    for i in range(3):
        a = np.asarray(Image.open(tmp_path / "build" / "upscaled" / f"example-{i}.png")).astype(int)
        b = np.asarray(Image.open(tmp_path / "single" / "build" / "upscaled" / f"example-{i}.png")).astype(int)
        assert a.shape == (32, 40, 3) and np.abs(a - b).max() <= 1


def test_truncated_altered_or_replaced_outputs_are_redone(tmp_path):
    """Issue 10 item 2: a done output is verified (size + sha256) before it is skipped."""
    toml = make_project(tmp_path, ids="0-5")
    assert run(toml, "upscale") == 0 and run(toml, "compress") == 0
    up, public = tmp_path / "build" / "upscaled", tmp_path / "public"
    good = {p.name: p.read_bytes() for p in [*up.glob("example-*.png"), *public.glob("example-*.jpg")]}

    def damage(path: Path, how: str) -> None:
        data = path.read_bytes()
        middle = len(data) // 2
        path.write_bytes({"truncate": data[:middle],
                          "alter": data[:middle] + bytes([data[middle] ^ 1]) + data[middle + 1:],
                          "garbage": os.urandom(len(data))}[how])

    for i, how in enumerate(("truncate", "alter", "garbage")):
        damage(up / f"example-{i}.png", how)
        damage(public / f"example-{i + 3}.jpg", how)
    assert run(toml, "upscale") == 0 and run(toml, "compress") == 0
    for path in [*up.glob("example-*.png"), *public.glob("example-*.jpg")]:
        assert path.read_bytes() == good[path.name], path.name
