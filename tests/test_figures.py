"""`bakery figures`' style-mixing grid with NVIDIA's style_mixing.py options: --rows and --cols
(seed lists), --styles (the W rows taken from the column seeds)."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from bakery.cli import main
from images_helpers import SG2_PKL

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def renderer():
    from bakery.images.checkpoints import load_generator
    from bakery.images.generator import Renderer

    return Renderer(load_generator(SG2_PKL).generator)


def nvidia_grid(renderer, row_seeds, col_seeds, styles, psi, noise="const") -> np.ndarray:
    """The canvas of NVIDIA's style_mixing.py, written out from its loop: top row the column
    seeds' images, left column the row seeds', cell (row, col) = the row seed's W with
    `styles` rows from the column seed's W; black top-left corner. The bakery keeps each
    cell's noise the row seed's (with "const" noise, the model's own maps, as NVIDIA's)."""
    from bakery.images.generator import seed_inputs

    gen = renderer.gen
    seeds = list(dict.fromkeys(row_seeds + col_seeds))
    z = np.stack([seed_inputs(gen, s, noise)[0] for s in seeds])
    w = dict(zip(seeds, renderer.map(z, np.full(len(seeds), psi, np.float32))))
    noise_of = {s: seed_inputs(gen, s, noise)[1] for s in seeds}

    def image(ws, seed):
        return renderer.synthesize(ws[None], [n[None] for n in noise_of[seed]])["uint8"][0]

    res = gen.resolution
    canvas = np.zeros(((1 + len(row_seeds)) * res, (1 + len(col_seeds)) * res, 3), np.uint8)
    for r, row_seed in enumerate([None] + row_seeds):
        for c, col_seed in enumerate([None] + col_seeds):
            if r == 0 and c == 0:
                continue
            if r == 0:
                cell = image(w[col_seed], col_seed)
            elif c == 0:
                cell = image(w[row_seed], row_seed)
            else:
                mixed = w[row_seed].copy()
                mixed[styles] = w[col_seed][styles]
                cell = image(mixed, row_seed)
            canvas[r * res:(r + 1) * res, c * res:(c + 1) * res] = cell
    return canvas


def test_mix_takes_any_w_rows_as_nvidia_indexes_them():
    from bakery.images.figures import mix_w_rows

    rng = np.random.default_rng(0)
    targets, styles = rng.normal(size=(2, 10, 4)), rng.normal(size=(3, 10, 4))
    mixed = mix_w_rows(targets, styles, [0, 2, 4, 5])
    assert mixed.shape == (2, 3, 10, 4)
    for t in range(2):
        for s in range(3):
            expected = targets[t].copy()
            expected[[0, 2, 4, 5]] = styles[s][[0, 2, 4, 5]]
            np.testing.assert_array_equal(mixed[t, s], expected)


def test_rows_cols_styles_draw_nvidia_s_grid(renderer, tmp_path):
    from bakery.images.figures import write_style_mixing

    rows, cols, styles = [7, 2], [11, 3, 5], [0, 2, 4, 5, 6]  # not contiguous, not sorted seeds
    write_style_mixing(renderer, rows, cols, styles, 0.7, "const", batch=4, cell=64, out_dir=tmp_path)
    ours = np.asarray(Image.open(tmp_path / "style-mixing.png"))
    expected = nvidia_grid(renderer, rows, cols, styles, 0.7)
    assert ours.shape == expected.shape == (3 * 64, 4 * 64, 3)
    np.testing.assert_array_equal(ours, expected)
    coarse = nvidia_grid(renderer, rows, cols, [0, 1, 2, 3], 0.7)  # the default rows mix otherwise
    assert not np.array_equal(ours[64:, 64:], coarse[64:, 64:])


@pytest.mark.slow
def test_figures_command_takes_the_options(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["figures", "--model", str(SG2_PKL), "--rows", "85,100,75", "--cols", "55,821",
                 "--styles", "0-6", "--out", "figs"]) == 0
    err = capsys.readouterr().err
    assert "rows: seeds 85,100,75; columns: seeds 55,821; W rows 0-6 from the columns" in err
    sheet = Image.open(tmp_path / "figs" / "style-mixing.png")
    assert sheet.size == (3 * 128, 4 * 128)  # 64 px model in 128 px cells, one extra row and column
    assert sorted(os.listdir(tmp_path / "figs")) == ["contact-sheet.png", "style-mixing.png",
                                                     "truncation-sweep.png"]


@pytest.mark.parametrize("argv,message", [
    (["--rows", "0-99"], "--rows 0-99: 100 seeds; the style-mixing figure takes at most 16"),
    (["--cols", "0-4000000000"], "--cols 0-4000000000: 4000000001 seeds"),
    (["--rows", "5-3"], "--rows: must look like"),
    (["--cols", "a"], "--cols: must look like"),
    (["--styles", "0-x"], "--styles: must look like"),
    (["--styles", "0-10"], "--styles 0-10: W row 10 does not exist: this model has 10 W rows (0-9)"),
    (["--styles", "0-4000000000"], "--styles 0-4000000000: W row 4000000000 does not exist"),
])
def test_bad_mixing_options_are_one_line_and_write_nothing(tmp_path, monkeypatch, capsys, argv, message):
    monkeypatch.chdir(tmp_path)
    assert main(["-q", "figures", "--model", str(SG2_PKL), "--out", "figs"] + argv) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("bakery: error:") and "\n" not in err and message in err, err
    assert list(tmp_path.iterdir()) == []
