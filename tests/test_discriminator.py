"""The TF2 discriminators against NVIDIA's own D logits (tests/fixtures/*/d_scores, copied from
the shared fixtures: StyleGAN 1 and 2 TF1 pickles, stylegan2-ada-pytorch, StyleGAN3, a
class-conditional snapshot), NVIDIA's strided minibatch-stddev groups, batching that leaves a
minibatch's logits unchanged, and checkpoints without a usable D."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bakery.images.pickle_loader import CheckpointError, NetworkToSave, dumps_network_pickle
from images_helpers import FIXTURES, SG1_PKL, SG2_PKL, load_tuple, resave
from torch_pickle_helpers import dumps_snapshot, persistent

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

ADA_PKL = FIXTURES / "stylegan2_ada" / "stylegan2_ada_synthetic_r64.pkl"
SG3_PKL = FIXTURES / "stylegan3" / "stylegan3_t_synthetic_r64.pkl"
COND_PKL = FIXTURES / "d_conditional" / "d_only_r64.pkl"  # the shared snapshot's D alone (see its README)
FORMATS = {  # name: (checkpoint, d_scores folder, whether the checkpoint is the fixture's file byte for byte)
    "stylegan1_tf1": (SG1_PKL, FIXTURES / "stylegan1" / "d_scores", True),
    "stylegan2_tf1": (SG2_PKL, FIXTURES / "stylegan2" / "d_scores", True),
    "stylegan2_ada": (ADA_PKL, FIXTURES / "stylegan2_ada" / "d_scores", True),
    "stylegan3": (SG3_PKL, FIXTURES / "stylegan3" / "d_scores", True),
    "conditional": (COND_PKL, FIXTURES / "d_conditional" / "d_scores", False),
}


class Fixture:
    """One d_scores folder: manifest, images by name, one-hot labels by name."""

    def __init__(self, folder: Path, c_dim: int):
        self.folder = folder
        self.manifest = json.loads((folder / "manifest.json").read_text())
        self.tol = self.manifest["tolerances"]
        self.names = [i["name"] for i in self.manifest["images"]]
        self.images = {i["name"]: np.asarray(Image.open(folder / i["file"]).convert("RGB"))
                       for i in self.manifest["images"]}
        self.label = {i["name"]: i.get("label") for i in self.manifest["images"]}
        self.c_dim = c_dim

    def batch(self, names):
        x = np.stack([self.images[n] for n in names])
        if not self.c_dim:
            return x, None
        c = np.zeros((len(names), self.c_dim), np.float32)
        c[np.arange(len(names)), [self.label[n] for n in names]] = 1.0
        return x, c


def _load(name):
    from bakery.images.d_checkpoints import load_discriminator
    from bakery.images.discriminator import DScorer

    pkl, folder, _ = FORMATS[name]
    loaded = load_discriminator(pkl)
    return loaded, DScorer(loaded.discriminator), Fixture(folder, loaded.discriminator.c_dim)


@pytest.fixture(scope="module", params=sorted(FORMATS))
def fmt(request):
    return (request.param, *_load(request.param))


def test_fixture_copies_are_nvidias(fmt):
    name, loaded, _, fx = fmt
    pkl, _, same_file = FORMATS[name]
    for image in fx.manifest["images"]:
        assert hashlib.sha256((fx.folder / image["file"]).read_bytes()).hexdigest() == image["sha256"]
    if same_file:
        assert loaded.sha256 == fx.manifest["pickle"]["sha256"]


def test_every_minibatch_matches_nvidia(fmt):
    """pass, repeat and same4 minibatches, pad slots included: each one NVIDIA call of 4."""
    name, _, scorer, fx = fmt
    worst = 0.0
    for mb in fx.manifest["minibatches"]:
        logits = scorer.run(*fx.batch(mb["images"]))
        worst = max(worst, float(np.abs(logits - np.asarray(mb["logits"])).max()))
    print(f"{name}: minibatches max abs {worst:.2e} (limit {fx.tol['logit_max_abs']:.0e})")
    assert worst <= fx.tol["logit_max_abs"]


def test_group_size_1_and_batch8_match_nvidia(fmt):
    name, _, scorer, fx = fmt
    alone = np.array([scorer.run(*fx.batch([n]))[0] for n in fx.names])
    ref = np.array([fx.manifest["group_size_1"][n] for n in fx.names])
    assert np.abs(alone - ref).max() <= fx.tol["logit_max_abs"]
    b8 = fx.manifest["batch8"]
    logits = scorer.run(*fx.batch(b8["images"]))  # NVIDIA's strided groups {0,2,4,6}, {1,3,5,7}
    assert np.abs(logits - np.asarray(b8["logits"])).max() <= fx.tol["logit_max_abs"]
    npz = np.load(fx.folder / "scores.npz")
    assert np.abs(logits - npz["batch8"]).max() <= fx.tol["logit_max_abs"]


def test_mean_scores_match_nvidia(fmt):
    """Each image's float32 mean over its three non-pad pass logits."""
    _, _, scorer, fx = fmt
    per_image = {n: [] for n in fx.names}
    for mb in fx.manifest["minibatches"]:
        if mb["kind"] != "pass":
            continue
        for n, pad, v in zip(mb["images"], mb["pad"], scorer.run(*fx.batch(mb["images"]))):
            if not pad:
                per_image[n].append(v)
    ours = np.array([np.mean(np.float32(per_image[n]), dtype=np.float32) for n in fx.names])
    ref = np.array([fx.manifest["mean_score"][n] for n in fx.names])
    assert np.abs(ours - ref).max() <= fx.tol["mean_score_max_abs"]
    ranking = [fx.names[i] for i in np.argsort(-ours, kind="stable")]
    assert ranking == fx.manifest["ranking_by_mean_score_high_to_low"]


def test_minibatches_batched_give_the_logits_of_each_alone(fmt):
    """Eleven minibatches in one call (laid out for NVIDIA's strided groups) = each alone, bit for bit."""
    _, _, scorer, fx = fmt
    mbs = fx.manifest["minibatches"]
    parts = [fx.batch(mb["images"]) for mb in mbs]
    x = np.concatenate([p[0] for p in parts])
    c = None if fx.c_dim == 0 else np.concatenate([p[1] for p in parts])
    together = scorer.minibatches(x, c, 4)
    alone = np.concatenate([scorer.run(*p) for p in parts])
    assert np.array_equal(together, alone)
    assert np.abs(together - np.concatenate([mb["logits"] for mb in mbs])).max() <= fx.tol["logit_max_abs"]


def test_a_plain_batch_of_8_is_not_two_minibatches(fmt):
    """The trap the fixtures measure: NVIDIA's call on 8 images groups them strided, so its logits
    differ from the two consecutive minibatches of 4 (the layout `minibatches` takes care of)."""
    _, _, scorer, fx = fmt
    x, c = fx.batch(fx.manifest["batch8"]["images"])
    assert np.abs(scorer.run(x, c) - scorer.minibatches(x, c, 4)).max() > 100 * fx.tol["logit_max_abs"]
    strided = np.array([0, 2, 4, 6, 1, 3, 5, 7])
    reordered = scorer.minibatches(x[strided], None if c is None else c[strided], 4)
    assert np.abs(reordered - scorer.run(x, c)[strided]).max() <= fx.tol["logit_max_abs"]


def test_group_layout_reproduces_each_minibatch_alone():
    """Brute force: NVIDIA's layer puts position p in group p mod (N/G); the layout must make
    those groups the minibatches' own, members in the order each alone would have them."""
    from bakery.images.discriminator import group_layout

    for minibatches, size, group in [(1, 4, 4), (3, 4, 4), (5, 4, 2), (2, 8, 4), (4, 6, 3), (3, 4, 1)]:
        order = group_layout(minibatches, size, group)
        assert sorted(order) == list(range(minibatches * size))
        total_groups = minibatches * size // group
        batched = {}
        for p, image in enumerate(order):
            batched.setdefault(p % total_groups, []).append(int(image))
        alone = {}
        for m in range(minibatches):
            for j in range(size):
                alone.setdefault((m, j % (size // group)), []).append(m * size + j)
        assert sorted(batched.values()) == sorted(alone.values())


# -- stored mbstd settings and other variants --------------------------------------------------

def _resaved_torch(tmp_path, edit, src=ADA_PKL, name="variant.pkl"):
    from bakery.images.torch_pickle import load_torch_pickle

    d = load_torch_pickle(src).networks["D"]
    edit(d)
    path = tmp_path / name
    path.write_bytes(dumps_snapshot({"D": persistent(d)}))
    return path


@pytest.mark.parametrize("group, channels", [(2, 1), (None, 1), (4, 2), (1, 1)])
def test_stored_mbstd_settings_are_used(tmp_path, group, channels):
    """group_size and num_channels come from the b4.mbstd state: with group 2 a minibatch of 4
    is NVIDIA's {0, 2}, {1, 3}; with None the whole minibatch; F channels widen b4.conv."""
    from bakery.images.d_checkpoints import load_discriminator
    from bakery.images.discriminator import DScorer

    def edit(d):
        b4 = d.children["b4"]
        b4.children["mbstd"].attrs.update(group_size=group, num_channels=channels)
        w = b4.children["conv"].params["weight"]
        extra = np.random.RandomState(0).randn(w.shape[0], channels - 1, 3, 3).astype(np.float32)
        b4.children["conv"].params["weight"] = np.concatenate([w, extra], axis=1)

    d = load_discriminator(_resaved_torch(tmp_path, edit)).discriminator
    assert (d.mbstd_group_size, d.mbstd_num_channels) == (group, channels)
    scorer, fx = DScorer(d), Fixture(FORMATS["stylegan2_ada"][1], 0)
    x, _ = fx.batch(fx.names[:8])
    four = scorer.run(x[:4])
    if group == 2:
        pair = scorer.run(x[[0, 2]])
        assert np.array_equal(four[[0, 2]], pair)
    if group == 1:
        assert np.array_equal(four, np.concatenate([scorer.run(x[i:i + 1]) for i in range(4)]))
    else:
        assert not np.allclose(four, np.concatenate([scorer.run(x[i:i + 1]) for i in range(4)]), atol=1e-4)
    assert np.array_equal(scorer.minibatches(x, None, 4), np.concatenate([four, scorer.run(x[4:])]))


def test_stylegan1_fused_scale_agrees(tmp_path):
    """fused_scale=True (the stride-2 4×4 conv NVIDIA uses from 128 px up) on the 64 px fixture:
    the README measures 1.5e-7 between NVIDIA's two forms."""
    from bakery.images.d_checkpoints import load_discriminator
    from bakery.images.discriminator import DScorer

    g, d, gs = load_tuple(SG1_PKL)
    d.state["static_kwargs"]["fused_scale"] = True
    path = tmp_path / "fused.pkl"
    path.write_bytes(dumps_network_pickle((resave(g), resave(d), resave(gs))))
    scorer = DScorer(load_discriminator(path).discriminator)
    fx = Fixture(FORMATS["stylegan1_tf1"][1], 0)
    for mb in fx.manifest["minibatches"]:
        assert np.abs(scorer.run(fx.batch(mb["images"])[0]) - mb["logits"]).max() <= fx.tol["logit_max_abs"]


# -- no usable D, hostile files ----------------------------------------------------------------

def test_bare_gs_says_there_is_no_discriminator(tmp_path):
    from bakery.images.d_checkpoints import load_discriminator

    _, _, gs = load_tuple(SG2_PKL)
    path = tmp_path / "gs.pkl"
    path.write_bytes(dumps_network_pickle(resave(gs)))
    with pytest.raises(CheckpointError, match="without a discriminator"):
        load_discriminator(path)


def test_generator_only_snapshot_says_there_is_no_discriminator():
    from bakery.images.d_checkpoints import load_discriminator

    with pytest.raises(CheckpointError, match="holds no discriminator 'D'"):
        load_discriminator(FIXTURES / "stylegan2_ada_variants" / "resnet_c0_r32.pkl")


def test_tf1_d_with_a_wrong_shape_names_the_variable(tmp_path):
    from bakery.images.d_checkpoints import load_discriminator

    g, d, gs = load_tuple(SG2_PKL)
    d.state["variables"] = [(n, v[:, :, :, :16] if n == "32x32/Conv0/weight" else v) for n, v in d.state["variables"]]
    path = tmp_path / "bad.pkl"
    path.write_bytes(dumps_network_pickle((resave(g), resave(d), resave(gs))))
    with pytest.raises(CheckpointError, match=r"'32x32/Conv0/weight' has shape \[3, 3, 32, 16\]"):
        load_discriminator(path)


def test_tf1_d_with_an_unknown_option_is_refused(tmp_path):
    from bakery.images.d_checkpoints import load_discriminator

    g, d, gs = load_tuple(SG2_PKL)
    d.state["static_kwargs"]["label_size"] = 2
    path = tmp_path / "cond.pkl"
    path.write_bytes(dumps_network_pickle((resave(g), resave(d), resave(gs))))
    with pytest.raises(CheckpointError, match="label_size=2 is not supported"):
        load_discriminator(path)


def test_torch_d_with_a_wrong_shape_names_the_tensor(tmp_path):
    from bakery.images.d_checkpoints import load_discriminator

    def edit(d):
        layer = d.children["b16"].children["conv1"]
        layer.params["weight"] = layer.params["weight"][:16]

    with pytest.raises(CheckpointError, match="b16.conv1"):
        load_discriminator(_resaved_torch(tmp_path, edit))


def test_torch_d_with_an_unknown_tensor_is_refused(tmp_path):
    from bakery.images.d_checkpoints import load_discriminator

    def edit(d):
        d.children["b4"].children["out"].params["extra"] = np.zeros(3, np.float32)

    with pytest.raises(CheckpointError, match="b4.out.extra"):
        load_discriminator(_resaved_torch(tmp_path, edit))


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_pickle_that_runs_code_is_refused_unrun(tmp_path):
    from bakery.images.d_checkpoints import load_discriminator
    from bakery.images.pickle_loader import UnsafePickleError

    marker = tmp_path / "ran"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps((NetworkToSave({}), _Exploit(marker), NetworkToSave({})), protocol=2))
    with pytest.raises(UnsafePickleError, match="refusing to load"):
        load_discriminator(path)
    assert not marker.exists()


# -- NVIDIA-made variants: orig / skip / clamp / stored mbstd settings / TF1 skip and orig -------

VARIANTS = FIXTURES / "d_variants"
VARIANT_NAMES = sorted(json.loads((VARIANTS / "manifest.json").read_text())["variants"])


@pytest.mark.parametrize("name", VARIANT_NAMES)
def test_variants_match_nvidia(name):
    """Minibatches of 4, a batch of 8 (NVIDIA's strided groups; group None: all 8 in one) and
    each image alone, against NVIDIA's stylegan2-ada-pytorch (TF1 ones through its converter)."""
    from bakery.images.d_checkpoints import load_discriminator
    from bakery.images.discriminator import DScorer

    spec = json.loads((VARIANTS / "manifest.json").read_text())
    tol = spec["tolerances"]["logit_max_abs"]
    d = load_discriminator(VARIANTS / f"{name}.pkl").discriminator
    settings = spec["variants"][name].get("settings") or spec["variants"][name]["static_kwargs"]
    assert d.architecture == settings["architecture"]
    ref = np.load(VARIANTS / f"{name}.npz")
    x, labels = ref["images"], ref["labels"]

    def onehot(idx):
        if not d.c_dim:
            return None
        c = np.zeros((len(idx), d.c_dim), np.float32)
        c[np.arange(len(idx)), labels[idx]] = 1.0
        return c

    scorer = DScorer(d)
    minibatches = np.concatenate([scorer.run(x[g:g + 4], onehot(np.arange(g, g + 4))) for g in (0, 4, 8)])
    errors = {"minibatches": np.abs(minibatches - ref["minibatches"]).max(),
              "batch8": np.abs(scorer.run(x[:8], onehot(np.arange(8))) - ref["batch8"]).max(),
              "group_size_1": max(abs(scorer.run(x[i:i + 1], onehot(np.array([i])))[0] - ref["group_size_1"][i])
                                  for i in range(len(x)))}
    print(name, {k: f"{v:.1e}" for k, v in errors.items()})
    assert max(errors.values()) <= tol, errors
    assert np.array_equal(scorer.minibatches(x, onehot(np.arange(len(x))), 4), minibatches)
