"""StyleGAN 1 (G_style): NVIDIA parity, a pickle made here in that format, the fused 128 px+ path."""

from __future__ import annotations

import numpy as np
import pytest

from bakery.images.pickle_loader import CheckpointError, dumps_network_pickle
from images_helpers import SG1_DIR, SG1_PKL, check_case, fixture_cases, load_tuple, resave, tolerances


@pytest.fixture(scope="module")
def sg1():
    from bakery.images.checkpoints import load_generator

    return load_generator(SG1_PKL).generator


def test_fixture_parity_within_readme_tolerances(sg1):
    from bakery.images.generator import Renderer

    cases = fixture_cases(SG1_DIR)
    assert len(cases) == 16
    tol = tolerances(SG1_DIR)
    default, off = Renderer(sg1), Renderer(sg1, 0)
    assert default.cutoff == 8  # G_style's own default: only the first 8 W rows are truncated
    for case in cases:
        # cutoff None in NVIDIA's G_style means "no truncation at all" (not "all rows")
        check_case(default if case["truncation_cutoff"] == 8 else off, case, SG1_DIR, tol)


def sg1_synthesis_shapes(kw):
    """NVIDIA's G_synthesis (networks_stylegan.py) variables, in creation order."""
    r_log2, d = int(np.log2(kw["resolution"])), kw["dlatent_size"]
    nf = lambda stage: min(int(kw["fmap_base"] / 2.0 ** stage), kw["fmap_max"])
    epi = lambda s, c: [(f"{s}/Noise/weight", (c,)), (f"{s}/bias", (c,)),
                        (f"{s}/StyleMod/weight", (d, 2 * c)), (f"{s}/StyleMod/bias", (2 * c,))]
    shapes = [("lod", ())] + [(f"noise{i}", (1, 1, 2 ** (i // 2 + 2), 2 ** (i // 2 + 2)))
                              for i in range(2 * r_log2 - 2)]
    shapes += [("4x4/Const/const", (1, nf(1), 4, 4))] + epi("4x4/Const", nf(1))
    shapes += [("4x4/Conv/weight", (3, 3, nf(1), nf(1)))] + epi("4x4/Conv", nf(1))
    shapes += [(f"ToRGB_lod{r_log2 - 2}/weight", (1, 1, nf(1), 3)), (f"ToRGB_lod{r_log2 - 2}/bias", (3,))]
    for res in range(3, r_log2 + 1):
        s = f"{2 ** res}x{2 ** res}"
        shapes += [(f"{s}/Conv0_up/weight", (3, 3, nf(res - 2), nf(res - 1)))] + epi(f"{s}/Conv0_up", nf(res - 1))
        shapes += [(f"{s}/Conv1/weight", (3, 3, nf(res - 1), nf(res - 1)))] + epi(f"{s}/Conv1", nf(res - 1))
        shapes += [(f"ToRGB_lod{r_log2 - res}/weight", (1, 1, nf(res - 1), 3)),
                   (f"ToRGB_lod{r_log2 - res}/bias", (3,))]
    return shapes


def make_sg1_pickle(path, resolution=128, lod=0.0):
    from bakery.images.make_checkpoint import generator_network, random_init

    kw = {"num_channels": 3, "resolution": resolution, "label_size": 0, "latent_size": 32,
          "dlatent_size": 32, "mapping_fmaps": 32, "fmap_base": 256, "fmap_max": 16}
    base = random_init(5)
    init = lambda p, s: np.float32(lod) if p.endswith("lod") else base(p, s)
    gs = generator_network("Gs", kw, init, top_build="G_style", synthesis_build="G_synthesis",
                           synthesis_shapes=sg1_synthesis_shapes, version=3)
    path.write_bytes(dumps_network_pickle(gs, protocol=4))  # Gs alone, protocol 4 like NVIDIA's 2019 files
    return path


def test_gs_only_protocol4_pickle_made_here_matches_the_reference(tmp_path):
    """The fixture's Gs re-written by our writer (protocol 4, no G/D) renders NVIDIA's images."""
    from bakery.images.checkpoints import load_generator
    from bakery.images.generator import Renderer

    _, _, gs = load_tuple(SG1_PKL)
    path = tmp_path / "sg1_gs.pkl"
    path.write_bytes(dumps_network_pickle(resave(gs), protocol=4))
    gen = load_generator(path).generator
    assert gen.kind == "StyleGAN 1"
    case = next(c for c in fixture_cases(SG1_DIR) if c["noise_mode"] == "run_generator" and c["psi"] == 0.5)
    check_case(Renderer(gen), case, SG1_DIR, tolerances(SG1_DIR))


def _numpy_fused_reference(x, weight, blur):
    """README: the fused layer equals nearest upscaling, then a 3×3 SAME cross-correlation with
    the weight flipped spatially, then the blur. Plain numpy, NHWC."""
    up = x.repeat(2, axis=1).repeat(2, axis=2)
    w = weight[::-1, ::-1]
    pad = np.pad(up, [(0, 0), (1, 1), (1, 1), (0, 0)])
    h = up.shape[1]
    y = sum(np.einsum("nhwi,io->nhwo", pad[:, i:i + h, j:j + h], w[i, j]) for i in range(3) for j in range(3))
    pad = np.pad(y, [(0, 0), (1, 1), (1, 1), (0, 0)])
    return sum(pad[:, i:i + h, j:j + h] * blur[i, j] for i in range(3) for j in range(3))


def test_128px_model_made_here_uses_the_fused_upsampling_correctly(tmp_path):
    from bakery.images.checkpoints import load_generator
    from bakery.images.generator import Renderer

    gen = load_generator(make_sg1_pickle(tmp_path / "sg1_128.pkl")).generator
    fused = [c for c in gen.convs if c["fused"]]
    assert len(fused) == 1 and gen.convs[-2] is fused[0]  # only the 64 → 128 px layer
    x = np.random.RandomState(0).randn(2, 64, 64, fused[0]["weight"].shape[2]).astype(np.float32)
    ours = gen._conv_up(x, fused[0]).numpy()
    ref = _numpy_fused_reference(x.astype(np.float64), fused[0]["weight"].numpy().astype(np.float64),
                                 np.outer([1, 2, 1], [1, 2, 1]) / 16.0)
    assert np.abs(ours - ref).max() < 1e-4 * np.abs(ref).max()
    unflipped = _numpy_fused_reference(x.astype(np.float64), fused[0]["weight"].numpy()[::-1, ::-1],
                                       np.outer([1, 2, 1], [1, 2, 1]) / 16.0)
    assert np.abs(ours - unflipped).max() > 0.1 * np.abs(ref).max()  # the test can tell the two apart
    out = Renderer(gen).render_seeds([0, 1, 2], [0.7, 0.7, 1.0], ["seeded"] * 3)
    assert out["uint8"].shape == (3, 128, 128, 3) and np.isfinite(out["image"]).all()
    one = Renderer(gen).render_seeds([2], [1.0], ["seeded"])
    np.testing.assert_array_equal(one["image"][0], out["image"][2])


def test_progressive_growing_snapshot_is_refused(tmp_path):
    from bakery.images.checkpoints import load_generator

    with pytest.raises(CheckpointError, match="lod"):
        load_generator(make_sg1_pickle(tmp_path / "lod.pkl", resolution=32, lod=1.0))
