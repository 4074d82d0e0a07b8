"""`bakery video`: W-space rendering, the four kinds of video on the fixture checkpoint
(frame count, size, fps, codec checked on the decoded MP4), loop seamlessness, style mixing
on W, equal circular steps, determinism, resume after a crash, bad options, and the
style-mixing figure."""

from __future__ import annotations

import numpy as np
import pytest

from bakery.cli import main
from images_helpers import SG2_PKL

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

MODEL = ["--model", str(SG2_PKL)]


@pytest.fixture(scope="module")
def renderer():
    from bakery.images.checkpoints import load_generator
    from bakery.images.generator import Renderer

    return Renderer(load_generator(SG2_PKL).generator)


def decode(path):
    """MP4 → (metadata, frames [N, H, W, 3] uint8), through the same ffmpeg."""
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    w, h = meta["size"]
    return meta, np.stack([np.frombuffer(f, np.uint8).reshape(h, w, 3) for f in reader])


def rms(a, b) -> float:
    return float(np.sqrt(np.mean(np.square(a.astype(np.float64) / 255 - b.astype(np.float64) / 255))))


def video(tmp_path, *options, name="v.mp4"):
    out = tmp_path / name
    assert main(["-q", "video", *options, *MODEL, "--out", str(out)]) == 0
    return decode(out)


# -- W-space rendering -----------------------------------------------------------------------

def test_mapping_then_synthesis_gives_the_fused_pass_bits_at_any_batch(renderer):
    from bakery.images.generator import seed_inputs

    seeds, psis = [0, 1, 2, 3], np.array([0.7, 1.0, -0.5, 1.2], np.float32)
    fused = renderer.render_seeds(seeds, psis, ["seeded"] * 4)
    inputs = [seed_inputs(renderer.gen, s, "seeded") for s in seeds]
    z = np.stack([i[0] for i in inputs])
    noise = [np.stack([i[1][k] for i in inputs]) for k in range(len(renderer.gen.noise_shapes))]
    ws = renderer.map(z, psis)
    np.testing.assert_array_equal(ws, fused["ws"])
    for batch in (1, 4):
        parts = [renderer.synthesize(ws[i:i + batch], [n[i:i + batch] for n in noise])
                 for i in range(0, 4, batch)]
        np.testing.assert_array_equal(np.concatenate([p["image"] for p in parts]), fused["image"])
        np.testing.assert_array_equal(np.concatenate([p["uint8"] for p in parts]), fused["uint8"])


# -- the latent maths --------------------------------------------------------------------------

def test_smoothed_walk_loops_and_has_unit_rms():
    from bakery.video.latents import smooth_walk

    walk = smooth_walk(np.random.RandomState(5), 200, (3, 16), sigma=10.0)
    assert walk.shape == (200, 3, 16) and walk.dtype == np.float32
    assert abs(np.sqrt(np.mean(np.square(walk))) - 1.0) < 1e-5
    steps = np.linalg.norm(np.diff(walk, axis=0), axis=-1)
    wrap = np.linalg.norm(walk[0] - walk[-1], axis=-1)
    assert (wrap <= steps.max(axis=0)).all()  # the last → first step is an ordinary step
    # unsmoothed white noise would jump ~sqrt(2·16) per step; smoothed it creeps
    assert steps.mean() < 0.2 * np.sqrt(2 * 16)
    np.testing.assert_array_equal(walk, smooth_walk(np.random.RandomState(5), 200, (3, 16), sigma=10.0))


@pytest.mark.parametrize("frames, shape, sigma, block", [
    (200, (3, 16), 10.0, 16),   # windows reach 90 frames past a 16-frame block, both ends wrap
    (200, (3, 16), 0.0, 16),    # no smoothing: the draws, scaled
    (1000, (2, 8), 30.0, 64),   # the default smoothing at 30 fps
    (301, (1, 5), 2.5, 7),      # odd sizes: a short last block, an odd count of draws per frame
])
def test_the_walk_in_blocks_is_the_whole_walk(frames, shape, sigma, block):
    """Block by block (forced here on short walks) gives exactly smooth_walk's latents, read
    in any order: the wrap-mode smoothing at the loop's ends, the same draws, the same scale."""
    from bakery.video.latents import Walk, smooth_walk

    whole = smooth_walk(np.random.RandomState(5), frames, shape, sigma)
    walk = Walk(np.random.RandomState(5), frames, shape, sigma, whole_bytes=0, block=block)
    assert walk.whole is None  # really the block path
    ahead = np.concatenate([walk.frames(a, min(a + 13, frames)) for a in range(0, frames, 13)])
    np.testing.assert_array_equal(ahead, whole)
    for start in np.random.RandomState(1).permutation(frames)[:25]:  # seeks back and forth
        stop = min(int(start) + 9, frames)
        np.testing.assert_array_equal(walk.frames(int(start), stop), whole[start:stop])
    # a walk that fits in memory is still computed whole, bit for bit as before
    np.testing.assert_array_equal(Walk(np.random.RandomState(5), frames, shape, sigma).frames(0, frames), whole)


def test_a_long_walk_keeps_its_memory_flat():
    """A walk much larger than its blocks: peak traced memory stays a small fraction of the
    whole walk's, and frames from the start, the middle and the end are read without it."""
    import tracemalloc

    from bakery.video.latents import Walk

    frames, shape = 200_000, (1, 32)  # 51 MB of float64 draws whole
    tracemalloc.start()
    try:
        walk = Walk(np.random.RandomState(0), frames, shape, 30.0, whole_bytes=0)
        parts = [walk.frames(0, 300), walk.frames(frames // 2, frames // 2 + 300), walk.frames(frames - 300, frames)]
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert walk.whole is None and peak < frames * 32 * 8 / 10, peak
    assert all(p.shape == (300, 1, 32) and p.dtype == np.float32 for p in parts)
    steps = np.linalg.norm(np.diff(np.concatenate([parts[2], parts[0]]), axis=0), axis=-1)
    assert steps.max() < 0.5  # smooth, across the loop's end too


def test_a_day_of_8x8_grid_is_planned_in_blocks_not_whole():
    """`grid --seconds 86400 --fps 30 --grid 8x8` (z_dim 512) asked for hundreds of GiB up
    front; its plan now holds well under 1 GiB, and the bound refuses what it cannot hold."""
    from bakery.errors import BakeryError
    from bakery.video.latents import Walk

    how, needed = Walk.plan(86400 * 30, 64 * 512, sigma=30.0)
    assert how == "blocks" and needed < 2 ** 30, needed
    assert Walk.plan(60 * 30, 4 * 512, sigma=30.0)[0] == "whole"  # the default video, as before
    with pytest.raises(BakeryError, match=r"needs \d+\.\d GiB of memory, more than 4 GiB: lower --smoothing"):
        Walk(np.random.RandomState(0), 86400 * 30, (64, 512), sigma=600.0 * 30)


def test_named_and_parsed_rows():
    from bakery.errors import BakeryError
    from bakery.video.latents import named_rows, parse_rows

    assert (named_rows("coarse", 14), named_rows("middle", 14), named_rows("fine", 14)) == \
        (range(0, 4), range(4, 8), range(8, 14))
    assert named_rows("fine", 8) == range(4, 8)  # a 32 px model has no 64² rows
    assert parse_rows("2-5", 10) == range(2, 6) and parse_rows("9", 10) == range(9, 10)
    for bad in ("5-2", "0-10", "x", "-1-3"):
        with pytest.raises(BakeryError, match="--rows"):
            parse_rows(bad, 10)


# -- the videos ----------------------------------------------------------------------------

@pytest.mark.slow
def test_grid_video_size_fps_codec_seamless_loop_and_determinism(tmp_path):
    options = ["grid", "--seconds", "1.2", "--fps", "10", "--smoothing", "0.2", "--seed", "3",
               "--batch-size", "4"]
    meta, frames = video(tmp_path, *options)
    assert frames.shape == (12, 128, 128, 3)  # 2x2 cells of 64 px, 1.2 s × 10 fps
    assert meta["fps"] == 10 and meta["codec"] == "h264" and meta["pix_fmt"].startswith("yuv420p")
    steps = [rms(a, b) for a, b in zip(frames, frames[1:])]
    assert min(steps) > 0.002  # it moves
    assert rms(frames[-1], frames[0]) <= 1.5 * max(steps)  # and the loop has no jump
    assert [p.name for p in tmp_path.glob(".*")] == [".v.mp4.json"]  # its record; no chunk folder or temp
    _, again = video(tmp_path, *options, name="again.mp4")
    np.testing.assert_array_equal(again, frames)  # same seed and options → same frames
    _, other = video(tmp_path, *options[:-3], "4", "--batch-size", "4", name="other.mp4")
    assert rms(other[0], frames[0]) > 0.01  # another seed, another walk


@pytest.mark.slow
def test_a_crash_resumes_from_the_encoded_chunks(tmp_path, monkeypatch):
    import bakery.video.encode as encode
    from bakery.video.frames import GridWalk

    monkeypatch.setattr(encode, "CHUNK_SECONDS", 0.4)  # 4 frames a chunk at 10 fps
    options = ["grid", "--grid", "1x1", "--seconds", "1.2", "--fps", "10", "--batch-size", "2"]
    rendered, crash = [], {"at": 8}
    real = GridWalk.render_frames

    def crash_in_third_chunk(self, start, stop):
        if start >= crash["at"]:
            raise KeyboardInterrupt  # as if killed mid-chunk
        rendered.append((start, stop))
        return real(self, start, stop)

    monkeypatch.setattr(GridWalk, "render_frames", crash_in_third_chunk)
    out = tmp_path / "walk.mp4"
    assert main(["-q", "video", *options, *MODEL, "--out", str(out)]) == 130
    parts = tmp_path / ".walk.mp4.parts"
    assert not out.exists() and sorted(p.name for p in parts.glob("chunk-*")) == ["chunk-00000.mp4", "chunk-00001.mp4"]
    assert not list(parts.glob(".tmp-*"))
    rendered[:], crash["at"] = [], 10 ** 6
    assert main(["-q", "video", *options, *MODEL, "--out", str(out)]) == 0
    assert rendered == [(8, 10), (10, 12)]  # only the missing chunk was rendered
    assert not parts.exists()
    monkeypatch.setattr(GridWalk, "render_frames", real)
    _, resumed = decode(out)
    _, whole = video(tmp_path, *options, name="whole.mp4")
    np.testing.assert_array_equal(resumed, whole)


def test_style_mixing_changes_only_the_chosen_w_rows(renderer):
    from bakery.video.frames import Look, StyleMix
    from bakery.video.latents import named_rows

    look = Look(seed=7, psi=0.7, noise="const", size=64, batch=6, frames=5, fps=10)
    for rows in (named_rows("coarse", 10), named_rows("fine", 10), range(3, 6)):
        kind = StyleMix(renderer, look, [1, 2], rows, smoothing=0.5)
        source, mixed = kind.ws(0, 5)
        outside = [r for r in range(10) if r not in rows]
        for f in range(5):
            for t in range(2):
                np.testing.assert_array_equal(mixed[f, t][outside], kind.target_ws[t][outside])
                np.testing.assert_array_equal(mixed[f, t][list(rows)], source[f][list(rows)])
        assert np.abs(np.diff(source[:, rows.start], axis=0)).max() > 0  # the source walks


@pytest.mark.slow
def test_a_finished_video_is_verified_and_not_rendered_again(tmp_path, monkeypatch, capsys):
    """A rerun with the same model and options keeps the verified output; changed options, a
    damaged file or a missing record render it again."""
    from bakery.video.frames import GridWalk

    options = ["grid", "--grid", "1x1", "--seconds", "0.3", "--fps", "10", "--batch-size", "2"]
    out = tmp_path / "walk.mp4"
    rendered = []
    real = GridWalk.render_frames

    def counted(self, start, stop):
        rendered.append((start, stop))
        return real(self, start, stop)

    monkeypatch.setattr(GridWalk, "render_frames", counted)

    def run(*extra):
        rendered.clear()
        assert main(["video", *options, *extra, *MODEL, "--out", str(out)]) == 0
        return bool(rendered)

    assert run()
    first = out.read_bytes()
    record = tmp_path / ".walk.mp4.json"
    assert record.is_file()
    capsys.readouterr()
    assert not run() and out.read_bytes() == first  # same options: kept, nothing rendered
    assert "already rendered with this model and these options (verified)" in capsys.readouterr().err
    assert run("--seed", "1") and out.read_bytes() != first  # other options: rendered again
    assert not run("--seed", "1")
    second = out.read_bytes()
    out.write_bytes(second[:-10])  # damaged: fails the size/hash check
    assert run("--seed", "1") and out.read_bytes() == second
    out.write_bytes(first)  # another valid video under the same name: its hash is not the recorded one
    assert run("--seed", "1") and out.read_bytes() == second
    record.unlink()  # no record: nothing vouches for the file
    assert run("--seed", "1") and out.read_bytes() == second
    assert sorted(p.name for p in tmp_path.iterdir()) == [".walk.mp4.json", "walk.mp4"]


@pytest.mark.slow
def test_coarse_and_fine_videos_keep_the_targets_fixed(tmp_path):
    for kind in ("coarse", "fine"):
        meta, frames = video(tmp_path, kind, "--targets", "1,2", "--seconds", "0.6", "--fps", "10", "--smoothing", "0.1",
                             "--batch-size", "3", name=f"{kind}.mp4")
        assert frames.shape == (6, 128, 192, 3) and meta["fps"] == 10  # 2 rows × (source + 2 targets)
        top, bottom = frames[:, :64, 64:], frames[:, 64:, :]
        assert max(rms(t, top[0]) for t in top) < 0.01  # the targets stay put
        assert max(rms(b, bottom[0]) for b in bottom) > 0.005  # the source and the mixes move


@pytest.mark.slow
def test_circular_steps_have_equal_mse(tmp_path, renderer):
    """Bound: the largest step's MSE within 1.5× the smallest (measured ~1.1×); evenly spaced
    angles on the same circle give ~3.5× (MSE), so the planning is what does it."""
    from bakery.video.frames import CircularWalk, Look
    from bakery.video.latents import loop_distances

    meta, frames = video(tmp_path, "circular", "--seconds", "1.2", "--fps", "10", "--crf", "10",
                         "--batch-size", "4")
    assert frames.shape == (12, 64, 64, 3) and meta["fps"] == 10
    mse = loop_distances(frames) ** 2  # every step, the last → first one included
    assert mse.max() <= 1.5 * mse.min(), mse
    kind = CircularWalk(renderer, Look(seed=0, psi=0.7, noise="const", size=64, batch=4, frames=12, fps=10), 0.5)
    even = loop_distances(kind.images_at(np.arange(12) / 12)) ** 2
    assert even.max() > 2.5 * even.min()


@pytest.mark.parametrize("options, message", [
    (["grid", "--grid", "0x2"], "--grid: columns and rows must be 1 to 8"),
    (["grid", "--grid", "big"], "--grid: expected COLSxROWS"),
    (["grid", "--rows", "0-3"], "--rows applies to `video coarse|fine` only"),
    (["circular", "--smoothing", "1"], "--smoothing applies to"),
    (["grid", "--seconds", "0"], "--seconds must be positive"),
    (["grid", "--seconds", "inf"], "--seconds must be a finite number of seconds, got inf"),
    (["grid", "--seconds", "1e400"], "--seconds must be a finite number of seconds, got inf"),
    (["grid", "--seconds", "nan"], "--seconds must be a finite number of seconds, got nan"),
    (["grid", "--seconds", "1e308"], "--seconds 1e+308 is more than a day: at most 86400"),
    (["grid", "--seconds", "86401"], "--seconds 86401 is more than a day"),
    (["grid", "--fps", "1000000000000"], "--fps must be between 1 and 120"),
    (["grid", "--grid", "1000000000x2"], "--grid: columns and rows must be 1 to 8"),
    (["grid", "--smoothing", "nan"], "--smoothing must be between 0.0 and 600.0, got nan"),
    (["grid", "--psi", "inf"], "--psi must be between -2.0 and 2.0, got inf"),
    (["circular", "--radius", "nan"], "--radius must be between"),
    (["grid", "--fps", "0"], "--fps must be between 1 and 120"),
    (["grid", "--psi", "3"], "--psi must be between -2.0 and 2.0"),
    (["grid", "--out", "x.avi"], "must end in .mp4"),
    (["coarse", "--targets", "3-1"], "--targets: '3-1' is not a range"),
    (["grid", "--size", "63"], "--size must be an even number of px from 16 to the model's 64"),
    (["fine", "--rows", "2-10"], "--rows: rows '2-10' must satisfy 0 ≤ A ≤ B ≤ 9"),
])
def test_bad_options_give_one_clear_line(tmp_path, capsys, options, message):
    out = tmp_path / "v.mp4"
    # the options under test come last, so they override these defaults
    argv = ["-q", "video", options[0], *MODEL, "--seconds", "0.2", "--fps", "10", "--out", str(out), *options[1:]]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not out.exists() and not list(tmp_path.glob(".*"))


def test_missing_model_and_project_free_run(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no content/site.toml here: --model needs no project
    assert main(["-q", "video", "grid", "--model", "nope.pkl"]) == 1
    assert capsys.readouterr().err.strip() == "bakery: error: --model nope.pkl: file not found"


# -- the style-mixing figure -----------------------------------------------------------------

def test_style_mixing_figure_layout_and_w_rows(renderer):
    from bakery.images.figures import style_mixing

    cells, mixed = style_mixing(renderer, [0, 1], [2, 3, 4], range(0, 4), 0.7, "const", batch=4)
    assert cells.shape == (3 * 4, 64, 64, 3) and mixed.shape == (2, 3, 10, 128)
    assert not cells[0].any()  # the top-left corner is blank
    alone = renderer.render_seeds([0, 1, 2, 3, 4], [0.7] * 5, ["const"] * 5)
    np.testing.assert_array_equal(cells[1:4], alone["uint8"][2:])  # top row: the styles
    np.testing.assert_array_equal(cells[4], alone["uint8"][0])  # left column: the targets
    np.testing.assert_array_equal(cells[8], alone["uint8"][1])
    np.testing.assert_array_equal(mixed[1, 2, 4:], alone["ws"][1, 4:])  # fine rows: the target's
    np.testing.assert_array_equal(mixed[1, 2, :4], alone["ws"][4, :4])  # coarse rows: the style's
    assert rms(cells[5], cells[4]) > 0.005 and rms(cells[5], cells[1]) > 0.005  # a real mix


# -- --class for a class-conditional checkpoint ------------------------------------------------

COND_PKL = SG2_PKL.parents[1] / "stylegan2_ada_variants" / "orig_c4_r16.pkl"  # 4 classes


def test_video_frames_of_a_class_are_generate_s_images_of_that_class():
    from bakery.images.checkpoints import load_generator
    from bakery.images.generator import Renderer, seed_inputs
    from bakery.video.frames import Kind, Look

    renderer = Renderer(load_generator(COND_PKL).generator)
    look = Look(seed=5, psi=0.7, noise="const", size=16, batch=2, frames=2, fps=10, class_index=2)
    kind = Kind(renderer, look)
    ws = kind.map(seed_inputs(renderer.gen, 5, "const")[0][None])
    frame = kind.synthesize(ws, [kind.noise_of(5)])
    fused = renderer.render_seeds([5], [0.7], ["const"], classes=[2])["uint8"]
    np.testing.assert_array_equal(frame, fused)
    assert not np.array_equal(fused, renderer.render_seeds([5], [0.7], ["const"], classes=[0])["uint8"])


@pytest.mark.parametrize("model,options,message", [
    (COND_PKL, [], "--model orig_c4_r16.pkl: the model is class-conditional (4 classes): pass --class N, N in 0-3"),
    (SG2_PKL, ["--class", "1"], f"--class 1: {SG2_PKL.name} is not class-conditional; drop --class"),
])
def test_video_class_errors(tmp_path, capsys, model, options, message):
    out = tmp_path / "v.mp4"
    assert main(["-q", "video", "grid", "--model", str(model), "--seconds", "0.2", "--fps", "10",
                 "--out", str(out), *options]) == 1
    assert capsys.readouterr().err.strip() == f"bakery: error: {message}"
    assert not out.exists()


@pytest.mark.slow
def test_video_with_another_class_is_rendered_again(tmp_path):
    out = tmp_path / "walk.mp4"
    argv = ["-q", "video", "grid", "--model", str(COND_PKL), "--grid", "1x1", "--seconds", "0.2", "--fps", "10",
            "--out", str(out)]
    assert main(argv + ["--class", "1"]) == 0
    _, class1 = decode(out)
    assert main(argv + ["--class", "3"]) == 0
    meta, class3 = decode(out)
    assert meta["size"] == (16, 16) and len(class3) == 2
    assert rms(class1, class3) > 0.02  # the chunks of class 1 were not reused
