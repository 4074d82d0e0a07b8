"""The generator interface every architecture implements, the helpers they share when reading a
checkpoint, and NVIDIA-exact sampling and rendering. A leaf: the architectures import it, and
bakery/images/checkpoints.py picks the architecture for a checkpoint.

Sampling follows NVIDIA's run_generator.py exactly, so a seed means the same image here as
in their code: z = RandomState(seed).randn(1, z_dim); in noise mode "seeded" the same
RandomState then fills every noise input, in the order the variables were created. Each
image's inputs depend only on its own seed, never on its batch neighbours, so the batch
size cannot change a picture.
"""

from __future__ import annotations

import math

import numpy as np

from bakery.images.pickle_loader import CheckpointError, Network
from bakery.images.safe_pickle import describe

NOISE_MODES = ("const", "seeded", "random", "none")


class Generator:
    """What a StyleGAN variant provides; see stylegan2.StyleGAN2 and stylegan1.StyleGAN1."""

    kind: str
    z_dim: int
    c_dim: int = 0  # class-label size of a conditional generator (PyTorch snapshots); mapping(z, c)
    w_dim: int
    num_ws: int
    resolution: int
    channels: int
    default_cutoff: int  # W rows truncated when no cutoff is configured (the model's own default)
    noise_shapes: list[tuple[int, int]]  # one (r, r) per noise input, in variable order
    const_noise: list[np.ndarray]  # the stored noise maps, same order
    dlatent_avg: object  # tf.Tensor [w_dim]
    takes_transform: bool = False  # StyleGAN3: synthesis(ws, noise, transform [N, 3, 3])

    def mapping(self, z):
        raise NotImplementedError

    def synthesis(self, ws, noise):
        raise NotImplementedError

    def flops_per_image(self) -> float:
        raise NotImplementedError


# -- helpers the architectures share when reading a checkpoint ------------------------------

class KwargChecker:
    """static_kwargs with NVIDIA's defaults filled in; unknown keys or unsupported values → error."""

    def __init__(self, gs: Network, defaults: dict, runtime_only: set, required: dict, source: str):
        values = dict(defaults)
        for net, where in [(gs, "Gs")] + [(c, f"Gs/{k}") for k, c in gs.components.items()]:
            for key, value in net.static_kwargs.items():
                if key not in defaults and key not in runtime_only:
                    raise CheckpointError(f"{source}: {where} static_kwargs: unknown option {describe(key)}={describe(value)}; "
                                          "this generator cannot promise the right picture with it")
                if key in defaults:
                    check_kwarg_type(key, value, defaults[key], f"{source}: {where} static_kwargs")
                    if where != "Gs" and key in gs.static_kwargs and gs.static_kwargs[key] != value:
                        raise CheckpointError(f"{source}: {where} static_kwargs: {key}={describe(value)} contradicts "
                                              f"Gs ({describe(gs.static_kwargs[key])})")
                    values[key] = value
        for key, wanted in required.items():
            if values[key] != wanted:
                raise CheckpointError(f"{source}: static_kwargs: {key}={describe(values[key])} is not supported "
                                      f"(only {wanted!r})")
        self.values = values


MAX_KWARG_INT = 1 << 31


def check_kwarg_type(key: str, value, default, where: str) -> None:
    """A static_kwargs value must have its default's type (a crafted file may put a string
    where a number belongs): numbers finite and of sane size, kernels lists of numbers.
    A string option may also be a bool (StyleGAN 1's fused_scale is "auto", True or False)."""
    def number_ok(v) -> bool:
        return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) \
            and math.isfinite(float(v)) and abs(float(v)) < MAX_KWARG_INT

    if isinstance(default, bool):
        ok = isinstance(value, (bool, np.bool_))
    elif isinstance(default, int):
        ok = number_ok(value) and float(value) == int(value)
    elif isinstance(default, float):
        ok = number_ok(value)
    elif isinstance(default, str):
        ok = isinstance(value, (str, bool))
    elif isinstance(default, list):
        ok = isinstance(value, (list, tuple)) and 0 < len(value) <= 16 and all(number_ok(v) for v in value)
    else:
        ok = True
    if not ok:
        raise CheckpointError(f"{where}: {key}={describe(value)} is not a valid value "
                              f"(expected {type(default).__name__}, like {default!r})")


def expect_shape(variables: dict, name: str, shape: tuple, source: str) -> np.ndarray:
    if name not in variables:
        raise CheckpointError(f"{source}: variable {name!r} is missing")
    value = variables[name]
    if tuple(value.shape) != tuple(shape):
        raise CheckpointError(f"{source}: variable {name!r} has shape {list(value.shape)}, "
                              f"the static_kwargs imply {list(shape)}")
    if not np.all(np.isfinite(value)):
        raise CheckpointError(f"{source}: variable {name!r} holds NaN or infinite values")
    return value


def log2_resolution(resolution: int, source: str) -> int:
    r = int(round(math.log2(resolution))) if resolution > 0 else 0
    if resolution < 4 or 2 ** r != resolution:
        raise CheckpointError(f"{source}: resolution {resolution} is not a power of two ≥ 4")
    return r


# -- sampling -------------------------------------------------------------------------------

def seed_inputs(gen: Generator, seed: int, noise_mode: str,
                fresh: np.random.Generator | None = None) -> tuple[np.ndarray, list[np.ndarray]]:
    """z [z_dim] and the noise maps for one seed, exactly as NVIDIA's run_generator.py draws them."""
    rnd = np.random.RandomState(seed)
    z = rnd.randn(1, gen.z_dim)[0].astype(np.float32)  # drawn float64, fed as float32
    if noise_mode == "const":
        noise = gen.const_noise
    elif noise_mode == "seeded":  # run_generator.py: tflib.set_vars({var: rnd.randn(*shape)}) in order
        noise = [rnd.randn(1, 1, h, w)[0, 0].astype(np.float32) for h, w in gen.noise_shapes]
    elif noise_mode == "random":  # TF1's randomize_noise=True: fresh every time, not reproducible
        fresh = fresh or np.random.default_rng()
        noise = [fresh.standard_normal((h, w), dtype=np.float32) for h, w in gen.noise_shapes]
    elif noise_mode == "none":  # NVIDIA's PyTorch noise_mode='none': no noise at all
        noise = [np.zeros((h, w), np.float32) for h, w in gen.noise_shapes]
    else:
        raise ValueError(f"unknown noise mode {noise_mode!r} (one of {', '.join(NOISE_MODES)})")
    return z, noise


def input_transform(translate=None, rotate=None) -> np.ndarray:
    """NVIDIA's gen_images.py: the StyleGAN3 input layer gets inv(make_transform(translate, rotate)),
    make_transform = [[cos a, sin a, tx], [−sin a, cos a, ty], [0, 0, 1]] with a in degrees."""
    tx, ty = (0.0, 0.0) if translate is None else (float(translate[0]), float(translate[1]))
    a = math.radians(0.0 if rotate is None else float(rotate))
    m = np.array([[math.cos(a), math.sin(a), tx], [-math.sin(a), math.cos(a), ty], [0.0, 0.0, 1.0]])
    return np.linalg.inv(m)


def record_transform(record: dict) -> np.ndarray | None:
    """The input transform a render record asks for (its translate/rotate keys), None if none."""
    if "translate" not in record and "rotate" not in record:
        return None
    return input_transform(record.get("translate"), record.get("rotate"))


def check_transforms(gen: Generator, transforms) -> None:
    """Only StyleGAN3 has an input layer to transform; asking another model for it is an error."""
    if not gen.takes_transform and transforms is not None \
            and any(t is not None and not np.array_equal(t, np.eye(3)) for t in transforms):
        raise CheckpointError(f"translate/rotate: only StyleGAN3 models take an input transform; "
                              f"this model is {gen.kind}")


class Renderer:
    """A compiled (tf.function) z, psi, noise → image pass for one generator and cutoff."""

    def __init__(self, gen: Generator, truncation_cutoff: int | None = None):
        from bakery.images.tfsetup import device_name, import_tf

        tf = self.tf = import_tf()
        self.gen = gen
        cutoff = gen.default_cutoff if truncation_cutoff is None else truncation_cutoff
        self.cutoff = min(max(int(cutoff), 0), gen.num_ws)
        self.device = device_name()
        with tf.device(self.device):
            self.row_mask = tf.constant((np.arange(gen.num_ws) < self.cutoff).astype(np.float32)[None, :, None])
        # No input signature: one graph is traced per batch size (a run needs two at most, the
        # batch size and the last partial batch), since layers.per_image needs a static batch.
        self._run = tf.function(self._forward)
        # The same two halves compiled apart, for callers that edit W between them (videos,
        # style mixing); per-image ops keep the bits equal to the fused pass.
        self._map = tf.function(self._mapping_half)
        self._synthesize = tf.function(self._synthesis_half)

    def _mapping_half(self, z, psi, c):
        tf, gen = self.tf, self.gen
        w = gen.mapping(z, c) if gen.c_dim else gen.mapping(z)
        ws = tf.tile(w[:, None, :], [1, gen.num_ws, 1])
        # lerp(avg, w, t) with t = psi on the truncated rows and 1 elsewhere (NVIDIA's tflib.lerp)
        t = 1.0 + (psi[:, None, None] - 1.0) * self.row_mask
        return gen.dlatent_avg + (ws - gen.dlatent_avg) * t

    def _synthesis_half(self, ws, transform, *noise):
        if self.gen.takes_transform:
            image = self.gen.synthesis(ws, list(noise), transform)
        else:
            image = self.gen.synthesis(ws, list(noise))
        uint8 = self.tf.saturate_cast(image * 127.5 + 128.0, self.tf.uint8)  # NVIDIA's convert_images_to_uint8
        return image, uint8

    def _forward(self, z, psi, c, transform, *noise):
        ws = self._mapping_half(z, psi, c)
        return (ws, *self._synthesis_half(ws, transform, *noise))

    def _transform_feed(self, n: int, transforms):
        """[N, 3, 3] float32 input transforms (identity where None; NVIDIA's float32 buffer)."""
        check_transforms(self.gen, transforms)
        eye = np.eye(3)
        t = np.stack([eye if m is None else np.asarray(m, np.float64) for m in (transforms or [None] * n)])
        return self.tf.constant(t.astype(np.float32))

    def render(self, z: np.ndarray, psi: np.ndarray, noise: list[np.ndarray],
               c: np.ndarray | None = None, transforms=None) -> dict[str, np.ndarray]:
        """z [N, z_dim], psi [N], noise[k] [N, r, r] (c [N, c_dim]: one-hot classes of a
        conditional generator; transforms: N StyleGAN3 input transforms [3, 3] or None)
        → ws, image (NHWC float), uint8 (NHWC)."""
        tf = self.tf
        c = np.zeros((len(z), self.gen.c_dim), np.float32) if c is None else c
        with tf.device(self.device):
            feeds = [tf.constant(np.asarray(z, np.float32)), tf.constant(np.asarray(psi, np.float32)),
                     tf.constant(np.asarray(c, np.float32)), self._transform_feed(len(z), transforms)]
            feeds += [tf.constant(np.asarray(n, np.float32)[..., None]) for n in noise]
            ws, image, uint8 = self._run(*feeds)
        return {"ws": ws.numpy(), "image": image.numpy(), "uint8": uint8.numpy()}

    def render_seeds(self, seeds, psis, noise_modes, fresh=None, classes=None,
                     transforms=None) -> dict[str, np.ndarray]:
        """One batch: each seed with its own psi and noise mode (and class, for a conditional model;
        and input transform, `input_transform(translate, rotate)`, for a StyleGAN3 one)."""
        inputs = [seed_inputs(self.gen, s, m, fresh) for s, m in zip(seeds, noise_modes)]
        z = np.stack([zi for zi, _ in inputs])
        noise = [np.stack([ns[k] for _, ns in inputs]) for k in range(len(self.gen.noise_shapes))]
        c = class_labels(self.gen, classes if classes is not None else [None] * len(z))
        return self.render(z, np.asarray(psis, np.float32), noise, c, transforms)

    def map(self, z: np.ndarray, psi: np.ndarray, c: np.ndarray | None = None) -> np.ndarray:
        """Mapping half: z [N, z_dim], psi [N] (c [N, c_dim] one-hot) → truncated ws [N, num_ws, w_dim]."""
        tf = self.tf
        c = np.zeros((len(z), self.gen.c_dim), np.float32) if c is None else c
        with tf.device(self.device):
            ws = self._map(tf.constant(np.asarray(z, np.float32)), tf.constant(np.asarray(psi, np.float32)),
                           tf.constant(np.asarray(c, np.float32)))
        return ws.numpy()

    def synthesize(self, ws: np.ndarray, noise: list[np.ndarray], transforms=None) -> dict[str, np.ndarray]:
        """Synthesis half: ws [N, num_ws, w_dim], noise[k] [N, r, r] → image (NHWC float), uint8."""
        tf = self.tf
        with tf.device(self.device):
            feeds = [tf.constant(np.asarray(ws, np.float32)), self._transform_feed(len(ws), transforms)]
            feeds += [tf.constant(np.asarray(n, np.float32)[..., None]) for n in noise]
            image, uint8 = self._synthesize(*feeds)
        return {"image": image.numpy(), "uint8": uint8.numpy()}


def class_labels(gen: Generator, classes) -> np.ndarray:
    """One-hot labels [N, c_dim] as NVIDIA's generate.py builds them (`label[:, class_idx] = 1`);
    an unconditional generator takes no class, a conditional one needs one per image."""
    c = np.zeros((len(classes), gen.c_dim), np.float32)
    for i, k in enumerate(classes):
        if gen.c_dim == 0 and k is not None:
            raise CheckpointError(f"class {k}: this model is not class-conditional; remove the class")
        if gen.c_dim > 0 and k is None:
            raise CheckpointError(f"this model is class-conditional ({gen.c_dim} classes): every image "
                                  f"needs a class (0-{gen.c_dim - 1})")
        if k is not None:
            if not 0 <= int(k) < gen.c_dim:
                raise CheckpointError(f"class {k} is out of range: this model has classes 0-{gen.c_dim - 1}")
            c[i, int(k)] = 1.0
    return c
