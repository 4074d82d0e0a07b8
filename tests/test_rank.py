"""`bakery rank`: the fixtures' conventions (sorted files, pass p in RandomState(seed + p) order,
wrap-around minibatches of 4 whose pad slots are not counted, float32 mean), reproduced on
folders of the fixture PNGs for every D format; ranks.csv, the contact sheet, labels, and one
clear line for every kind of bad input."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bakery.cli import main
from bakery.images import rank
from images_helpers import FIXTURES, SG2_PKL, load_tuple, resave
from test_discriminator import ADA_PKL, FORMATS

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
ROOT = Path(__file__).resolve().parents[1]


def fixture_folder(tmp_path: Path, name: str, labels: bool = True) -> tuple[Path, dict, list[str]]:
    """The fixture's 10 PNGs named so that sorted file-name order is the manifest's list order
    (its pass 0); for the conditional fixture, NVIDIA's dataset.json with each image's class."""
    _, folder, _ = FORMATS[name]
    manifest = json.loads((folder / "manifest.json").read_text())
    out = tmp_path / name
    out.mkdir()
    files = []
    for i, image in enumerate(manifest["images"]):
        files.append(f"{i:02d}_{image['name']}.png")
        shutil.copyfile(folder / image["file"], out / files[-1])
    if labels and "label" in manifest["images"][0]:
        (out / "dataset.json").write_text(json.dumps(
            {"labels": [[f, image["label"]] for f, image in zip(files, manifest["images"])]}))
    return out, manifest, files


def test_pass_orders_and_wrapped_minibatches():
    orders = rank.pass_orders(10, 3, seed=0)
    assert list(orders[0]) == list(range(10))
    assert [list(o) for o in orders[1:]] == [list(np.random.RandomState(p).permutation(10)) for p in (1, 2)]
    assert list(rank.pass_orders(7, 2, seed=5)[1]) == list(np.random.RandomState(6).permutation(7))
    slots, pads = rank.minibatch_slots(np.arange(10), 4)
    assert slots.tolist() == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 0, 1]]
    assert pads.tolist() == [[False] * 4, [False] * 4, [False, False, True, True]]
    slots, pads = rank.minibatch_slots(np.array([5, 3]), 4)  # fewer images than a minibatch
    assert slots.tolist() == [[5, 3, 5, 3]] and pads.tolist() == [[False, False, True, True]]


def test_the_fixture_passes_are_the_rank_passes():
    """The manifests spell out their passes; ours with seed 0 are the same lists and minibatches."""
    manifest = json.loads((FORMATS["stylegan2_ada"][1] / "manifest.json").read_text())
    names = [i["name"] for i in manifest["images"]]
    orders = rank.pass_orders(len(names), 3, seed=0)
    for spec, order in zip(manifest["conventions"]["passes"], orders):
        assert spec["order"] == [names[i] for i in order]
        slots, pads = rank.minibatch_slots(order, 4)
        mbs = [mb for mb in manifest["minibatches"] if mb["id"].startswith(f"pass{spec['index']}_")]
        assert [[names[i] for i in row] for row in slots] == [mb["images"] for mb in mbs]
        assert pads.tolist() == [mb["pad"] for mb in mbs]


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_rank_reproduces_nvidias_mean_scores(tmp_path, name):
    folder, manifest, files = fixture_folder(tmp_path, name)
    pkl = FORMATS[name][0]
    ranking, _, _ = rank.rank_folder(pkl, folder, rank.RankOptions(shuffles=3, seed=0))
    assert ranking.files == files
    tol = manifest["tolerances"]
    ref = np.array([manifest["mean_score"][i["name"]] for i in manifest["images"]])
    assert ranking.scores.dtype == np.float32
    worst = float(np.abs(ranking.scores - ref).max())
    print(f"{name}: rank mean scores max abs {worst:.2e} (limit {tol['mean_score_max_abs']:.0e})")
    assert worst <= tol["mean_score_max_abs"]
    names = [i["name"] for i in manifest["images"]]
    for mb in manifest["minibatches"]:  # every counted logit is the fixture's
        if mb["kind"] == "pass":
            for image, pad, logit in zip(mb["images"], mb["pad"], mb["logits"]):
                if not pad:
                    assert abs(ranking.logits[mb["pass"], names.index(image)] - logit) <= tol["logit_max_abs"]
    assert [names[i] for i in ranking.order()] == manifest["ranking_by_mean_score_high_to_low"]


def test_how_many_minibatches_share_a_call_does_not_change_a_bit(tmp_path, monkeypatch):
    folder, _, _ = fixture_folder(tmp_path, "stylegan2_ada")
    options = rank.RankOptions(shuffles=4, seed=3)
    wide, _, _ = rank.rank_folder(ADA_PKL, folder, options)
    monkeypatch.setattr(rank, "CALL_MINIBATCHES", 1)
    narrow, _, _ = rank.rank_folder(ADA_PKL, folder, options)
    assert np.array_equal(wide.logits, narrow.logits) and not np.isnan(wide.logits).any()


def test_class_option_labels_every_image(tmp_path):
    """--class N: every image gets class N (here checked against a dataset.json saying the same)."""
    folder, _, files = fixture_folder(tmp_path, "conditional", labels=False)
    pkl = FORMATS["conditional"][0]
    by_option, _, _ = rank.rank_folder(pkl, folder, rank.RankOptions(shuffles=2, class_index=2))
    (folder / "dataset.json").write_text(json.dumps({"labels": [[f, 2] for f in files]}))
    by_file, _, _ = rank.rank_folder(pkl, folder, rank.RankOptions(shuffles=2))
    assert np.array_equal(by_option.logits, by_file.logits)
    (folder / "dataset.json").write_text(json.dumps({"labels": [[f, 0] for f in files]}))
    other, _, _ = rank.rank_folder(pkl, folder, rank.RankOptions(shuffles=2))
    assert np.abs(other.scores - by_file.scores).max() > 1e-3


def test_bakery_rank_writes_the_csv_and_the_sheet(tmp_path):
    folder, manifest, files = fixture_folder(tmp_path, "stylegan2_ada")
    out, sheet = tmp_path / "out" / "scores.csv", tmp_path / "sheet.png"
    proc = subprocess.run([sys.executable, "-m", "bakery", "-q", "rank", "--model", str(ADA_PKL), "--in", str(folder),
                           "--shuffles", "3", "--out", str(out), "--sheet", str(sheet), "--sheet-count", "3",
                           "--show", "2"], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.reader(out.open()))
    assert rows[0] == ["file", "score", "pass0", "pass1", "pass2"]
    scores = {r[0]: r for r in rows[1:]}
    assert sorted(scores) == files
    assert [float(r[1]) for r in rows[1:]] == sorted((float(r[1]) for r in rows[1:]), reverse=True)
    for image, f in zip(manifest["images"], files):
        row = scores[f]
        assert abs(float(row[1]) - manifest["mean_score"][image["name"]]) <= 5e-6
        assert all(len(v.lstrip("-").replace(".", "").lstrip("0")) <= 9 for v in row[1:])  # 9 significant digits
        assert np.float32(np.mean(np.float32(row[2:]), dtype=np.float32)) == pytest.approx(float(row[1]), abs=2e-9)
    lines = proc.stdout.splitlines()
    best, worst = rows[1][0], rows[-1][0]
    assert lines[1] == "lowest 2:" and worst in lines[2] and best in lines[5]
    assert lines[-1] == f"wrote {out}"
    im = Image.open(sheet)
    im.load()
    assert im.width > 3 * 128 and im.height >= 2 * 128
    assert not list(folder.glob("ranks.csv")) and not list(out.parent.glob(".tmp-*"))


def test_default_output_is_ranks_csv_in_the_folder(tmp_path, capsys):
    folder, _, _ = fixture_folder(tmp_path, "stylegan2_ada")
    assert main(["-q", "rank", "--model", str(ADA_PKL), "--in", str(folder), "--shuffles", "1"]) == 0
    rows = list(csv.reader((folder / "ranks.csv").open()))
    assert rows[0] == ["file", "score", "pass0"] and len(rows) == 11
    assert "ranked 10 images" in capsys.readouterr().out


def test_resize_scales_other_sizes_with_lanczos(tmp_path, capsys):
    folder, _, files = fixture_folder(tmp_path, "stylegan2_ada")
    big = folder / files[3]
    Image.open(big).resize((96, 80), Image.Resampling.LANCZOS).save(big)
    assert main(["-q", "rank", "--model", str(ADA_PKL), "--in", str(folder)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and files[3] in err and "96×80" in err and "--resize" in err
    assert not (folder / "ranks.csv").exists()
    assert main(["-q", "rank", "--model", str(ADA_PKL), "--in", str(folder), "--resize", "--shuffles", "1"]) == 0
    assert (folder / "ranks.csv").exists()


def _one_line_error(capsys, argv, *needles):
    assert main(argv) != 0
    err = capsys.readouterr().err.strip()
    assert err.startswith("bakery: error: ") and "\n" not in err and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err
    return err


def test_bad_input_is_one_line(tmp_path, capsys):
    folder, _, files = fixture_folder(tmp_path, "stylegan2_ada")
    ada = ["-q", "rank", "--model", str(ADA_PKL), "--in"]
    empty = tmp_path / "empty"
    empty.mkdir()
    _one_line_error(capsys, ada + [str(empty)], "no images")
    _one_line_error(capsys, ada + [str(tmp_path / "nope")], "folder not found")
    _one_line_error(capsys, ["rank", "--model", str(tmp_path / "x.pkl"), "--in", str(folder)], "file not found")
    _one_line_error(capsys, ada + [str(folder), "--class", "1"], "not class-conditional")
    _one_line_error(capsys, ada + [str(folder), "--minibatch", "6"], "--minibatch 6", "groups of 4")
    _one_line_error(capsys, ada + [str(folder), "--shuffles", "0"], "--shuffles")
    _one_line_error(capsys, ada + [str(folder), "--sheet", str(tmp_path / "s.gif")], "--sheet")
    (folder / "zz_garbage.png").write_bytes(b"not a png at all")
    _one_line_error(capsys, ada + [str(folder)], "zz_garbage.png", "not a readable image")
    (folder / "zz_garbage.png").write_bytes((folder / files[0]).read_bytes()[:200])  # header fine, data cut
    _one_line_error(capsys, ada + [str(folder)], "zz_garbage.png", "cannot decode")
    assert not (folder / "ranks.csv").exists() and not list(folder.glob(".tmp-*"))


def test_models_without_a_usable_d_are_one_line(tmp_path, capsys):
    from bakery.images.pickle_loader import dumps_network_pickle

    folder, _, _ = fixture_folder(tmp_path, "stylegan2_tf1")
    _, _, gs = load_tuple(SG2_PKL)
    bare = tmp_path / "gs.pkl"
    bare.write_bytes(dumps_network_pickle(resave(gs)))
    _one_line_error(capsys, ["rank", "--model", str(bare), "--in", str(folder)], "without a discriminator")
    export = FIXTURES / "stylegan2_ada_variants" / "resnet_c0_r32.pkl"
    _one_line_error(capsys, ["rank", "--model", str(export), "--in", str(folder)], "no discriminator 'D'")


def test_conditional_labels_are_required_and_checked(tmp_path, capsys):
    folder, _, files = fixture_folder(tmp_path, "conditional", labels=False)
    cond = ["-q", "rank", "--model", str(FORMATS["conditional"][0]), "--in", str(folder)]
    _one_line_error(capsys, cond, "class-conditional (3 classes)", "--class N", "dataset.json")
    _one_line_error(capsys, cond + ["--class", "3"], "out of range", "0-2")
    (folder / "dataset.json").write_text(json.dumps({"labels": [[f, 1] for f in files[1:]]}))
    _one_line_error(capsys, cond, "no label for " + files[0])
    (folder / "dataset.json").write_text(json.dumps({"labels": [[f, 7] for f in files]}))
    _one_line_error(capsys, cond, "labels[0]", "not a class 0-2")
    (folder / "dataset.json").write_text("{not json")
    _one_line_error(capsys, cond, "dataset.json", "not NVIDIA's dataset format")


def test_minibatch_8_is_nvidias_call_on_8(tmp_path):
    """--minibatch 8: each minibatch is one NVIDIA call on 8 images (strided groups of 4), so
    pass 0's first minibatch gives the fixture's batch8 logits."""
    folder, manifest, _ = fixture_folder(tmp_path, "stylegan2_tf1")
    ranking, _, _ = rank.rank_folder(FORMATS["stylegan2_tf1"][0], folder, rank.RankOptions(shuffles=1, minibatch=8))
    names = [i["name"] for i in manifest["images"]]
    b8 = manifest["batch8"]
    ours = [ranking.logits[0, names.index(n)] for n in b8["images"]]
    assert np.abs(np.array(ours) - b8["logits"]).max() <= manifest["tolerances"]["logit_max_abs"]


def test_the_embedded_demo_checkpoint_has_a_discriminator_that_builds_and_scores():
    """The shipped demo's D follows from its static_kwargs (fmap_min included), so `bakery rank`
    works on the default model's images."""
    from bakery.images.stage import EMBEDDED_PATH
    from bakery.images.d_checkpoints import load_discriminator
    from bakery.images.discriminator import DScorer

    loaded = load_discriminator(EMBEDDED_PATH)
    d = loaded.discriminator
    assert d.resolution == 256
    images = np.random.RandomState(0).randint(0, 256, (4, 256, 256, 3)).astype(np.uint8)
    logits = DScorer(d).run(images)
    assert logits.shape[0] == 4 and np.isfinite(logits).all() and len(set(np.ravel(logits).tolist())) == 4
