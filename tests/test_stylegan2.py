"""StyleGAN 2: parity with NVIDIA's reference images, exact sampling, clear errors, demo model."""

from __future__ import annotations

import numpy as np
import pytest

from bakery.images.pickle_loader import CheckpointError, dumps_network_pickle
from images_helpers import SG2_DIR, SG2_PKL, check_case, fixture_cases, load_tuple, resave, tolerances

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def sg2():
    from bakery.images.checkpoints import load_generator

    return load_generator(SG2_PKL).generator


def test_fixture_parity_within_readme_tolerances(sg2):
    from bakery.images.generator import Renderer

    cases = fixture_cases(SG2_DIR)
    assert len(cases) == 16 and {c["noise_mode"] for c in cases} == {"const", "run_generator"}
    renderers = {}
    tol = tolerances(SG2_DIR)
    for case in cases:
        cutoff = case["truncation_cutoff"]  # None = every layer in StyleGAN 2
        renderer = renderers.setdefault(cutoff, Renderer(sg2, cutoff))
        check_case(renderer, case, SG2_DIR, tol)


def test_shapes_and_defaults_come_from_the_pickle(sg2):
    assert (sg2.z_dim, sg2.w_dim, sg2.num_ws, sg2.resolution) == (128, 128, 10, 64)
    assert sg2.default_cutoff == 10
    assert sg2.noise_shapes == [(4, 4), (8, 8), (8, 8), (16, 16), (16, 16), (32, 32), (32, 32), (64, 64), (64, 64)]


def test_same_seed_same_image_for_any_batch_size(sg2):
    from bakery.images.generator import Renderer

    renderer = Renderer(sg2)
    seeds = list(range(11))
    psis = [0.5, 0.7, 1.1, -0.5, 1.0, 0.0, 0.8, 0.6, 1.2, 2.0, -2.0]
    modes = ["seeded", "const", "seeded", "const", "seeded", "seeded", "const", "seeded", "const", "seeded", "const"]
    full = renderer.render_seeds(seeds, psis, modes)
    for batch in (1, 2, 3, 4, 5, 8):
        parts = [renderer.render_seeds(seeds[i:i + batch], psis[i:i + batch], modes[i:i + batch])
                 for i in range(0, len(seeds), batch)]
        np.testing.assert_array_equal(np.concatenate([p["image"] for p in parts]), full["image"])
    # psi = 0 is the average image: every seed's truncated rows equal dlatent_avg
    np.testing.assert_allclose(full["ws"][5], np.tile(sg2.dlatent_avg.numpy(), (10, 1)), atol=1e-6)


def test_random_noise_mode_draws_fresh_noise(sg2):
    from bakery.images.generator import Renderer

    renderer = Renderer(sg2)
    a = renderer.render_seeds([3], [0.7], ["random"])["image"]
    b = renderer.render_seeds([3], [0.7], ["random"])["image"]
    c = renderer.render_seeds([3], [0.7], ["const"])["image"]
    assert np.abs(a - b).mean() > 1e-3 and np.abs(a - c).mean() > 1e-3


def _all_kwargs(net, **changes):
    for n in [net] + list(net.state["components"].values()):
        n.state["static_kwargs"].update(changes)


def _variant(tmp_path, mutate):
    _, _, gs = load_tuple(SG2_PKL)
    net = resave(gs)
    mutate(net)
    path = tmp_path / "variant.pkl"
    path.write_bytes(dumps_network_pickle(net))
    return path


@pytest.mark.parametrize("mutate, message", [
    (lambda n: n.state["static_kwargs"].update(architecture="resnet"), "architecture='resnet' is not supported"),
    (lambda n: n.state["static_kwargs"].update(conv_clamp=256), "unknown option 'conv_clamp'"),
    (lambda n: _all_kwargs(n, fmap_max=64), "has shape"),
    (lambda n: n.state["static_kwargs"].update(fmap_max=64), "fmap_max=32 contradicts Gs"),
    (lambda n: n.state.update(build_func_name="G_paper"), "unsupported generator architecture G_paper"),
    (lambda n: n.state["components"]["synthesis"].state.update(build_func_name="G_synthesis_stylegan_revE"),
     "unsupported generator architecture"),
    (lambda n: _all_kwargs(n, resolution=48), "not a power of two"),
])
def test_unknown_architecture_or_kwarg_is_a_clear_error(tmp_path, mutate, message):
    from bakery.images.checkpoints import load_generator

    with pytest.raises(CheckpointError, match=message.replace("(", r"\(").replace(")", r"\)")) as err:
        load_generator(_variant(tmp_path, mutate))
    assert "variant.pkl" in str(err.value)


def test_default_kwargs_apply_when_the_pickle_omits_them(tmp_path):
    """fmap_min=1, fmap_decay=1, mapping_layers=8 ... missing from static_kwargs: NVIDIA's defaults."""
    from bakery.images.checkpoints import load_generator
    from bakery.images.generator import Renderer

    def add_defaults(net):
        _all_kwargs(net, mapping_layers=8, fmap_decay=1.0, fmap_min=1, resample_kernel=[1, 3, 3, 1],
                    randomize_noise=True)

    a = Renderer(load_generator(SG2_PKL).generator).render_seeds([1], [0.7], ["seeded"])["image"]
    b = Renderer(load_generator(_variant(tmp_path, add_defaults)).generator).render_seeds([1], [0.7], ["seeded"])
    np.testing.assert_array_equal(a, b["image"])


def test_embedded_demo_checkpoint_is_reproducible_and_renders():
    from bakery.images.checkpoints import load_generator
    from bakery.images.generator import Renderer
    from bakery.images.make_checkpoint import demo_checkpoint_bytes
    from bakery.images.stage import EMBEDDED_PATH

    assert EMBEDDED_PATH.read_bytes() == demo_checkpoint_bytes()  # the script made the shipped file
    assert EMBEDDED_PATH.stat().st_size < 3_000_000
    g, d, gs = load_tuple(EMBEDDED_PATH)
    assert (g.name, d.name, gs.name) == ("G", "D", "Gs")
    gen = load_generator(EMBEDDED_PATH).generator
    assert gen.resolution == 256
    out = Renderer(gen).render_seeds([0, 1], [0.8, 0.8], ["const", "const"])["uint8"]
    assert out.shape == (2, 256, 256, 3)
    assert out.std() > 20 and np.abs(out[0].astype(int) - out[1]).mean() > 5  # colourful, seed-dependent
