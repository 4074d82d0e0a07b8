"""Upscale + JPEG benchmarks, each side by side with its reference in the same run.

1. waifu2x upconv_7 2x on CPU, 256x256 and 512x512 RGB inputs, whole picture as one tile,
   pre/post-processing included: the bakery's two engines (`ncnn`, the default, and
   `tensorflow`), each through the bakery's own code path (make_waifu2x → upscale_arrays), vs
   plain ncnn (PyPI `ncnn`) called directly on the very same .param/.bin files with the same
   thread count and float32 settings, with NumPy pre/post-processing written out here. Runs
   rotate (ncnn engine, TF engine, plain ncnn, ...) so that load from other processes hits all
   alike; medians are reported, and each engine's ratio against plain ncnn.
   Targets: ncnn engine ≥ 0.95x plain ncnn (the issue asks for ncnn's speed); TF engine ≥ 0.5x.
2. JPEG encoding of 1024x1024 PNGs (what the upscaler produces), file to file: Pillow as the
   compress stage does it vs ImageMagick `convert IN.png -quality 25 OUT.jpg`, one image at a
   time each, plus the stage's thread pool. Target: Pillow ≥ 1x ImageMagick's images/s.

Environment: BENCH_THREADS (default: all cores), BENCH_REPEATS (default 5), BENCH_GPU=1 to let
the engines and plain ncnn use a GPU they find (ncnn: Vulkan, TensorFlow: CUDA; default: CPU).
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bakery.upscale.config import JpegConfig  # noqa: E402
from bakery.upscale.jpeg import write_jpeg  # noqa: E402
from bakery.upscale.ncnn_weights import model_paths  # noqa: E402
from bakery.cpus import usable_cpus  # noqa: E402
from bakery.upscale.engines import gpu_available, make_waifu2x  # noqa: E402

FIXTURE = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "waifu2x" / "test_96x80.png"
THREADS = int(os.environ.get("BENCH_THREADS", 0)) or usable_cpus()
REPEATS = int(os.environ.get("BENCH_REPEATS", 5))
GPU = os.environ.get("BENCH_GPU", "0") == "1"


def say(name: str, value: float, unit: str) -> None:
    print(f"{name}: {value:.3f} {unit}", flush=True)


def test_picture(size: int, seed: int = 0) -> np.ndarray:
    """A drawing-like picture: the fixture's flat fills and outlines, enlarged, plus mild noise."""
    rng = np.random.default_rng(seed)
    base = Image.open(FIXTURE).convert("RGB").resize((size, size), Image.Resampling.BICUBIC)
    noisy = np.asarray(base).astype(np.int16) + rng.integers(-6, 7, (size, size, 3))
    return np.clip(noisy, 0, 255).astype(np.uint8)


class PlainNcnn:
    """The baseline: ncnn used directly, as its own examples do, fp32 (fp16/bf16 off)."""

    def __init__(self, threads: int, gpu: bool):
        import ncnn

        self.ncnn = ncnn
        self.net = net = ncnn.Net()
        net.opt.use_vulkan_compute = gpu and ncnn.get_gpu_count() > 0
        net.opt.num_threads = threads
        for flag in ("use_fp16_packed", "use_fp16_storage", "use_fp16_arithmetic", "use_bf16_storage"):
            setattr(net.opt, flag, False)
        param, weights = model_paths("none")
        net.load_param(str(param))
        net.load_model(str(weights))
        self.input, self.output, self.context = "Input1", "Eltwise4", 7  # from the .param (fixture README)

    def upscale(self, rgb: np.ndarray) -> np.ndarray:
        c = self.context
        x = np.pad(rgb.astype(np.float32) * np.float32(1 / 255), ((c, c), (c, c), (0, 0)), mode="edge")
        chw = np.ascontiguousarray(x.transpose(2, 0, 1))  # ncnn.Mat borrows this buffer: keep it alive
        mat = self.ncnn.Mat(chw)
        ex = self.net.create_extractor()
        ex.input(self.input, mat)
        _, out = ex.extract(self.output)
        y = np.array(out).transpose(1, 2, 0)
        result = np.clip(np.floor(y * np.float32(255) + np.float32(0.5)), 0, 255).astype(np.uint8)
        del ex, mat, chw
        return result


def bench_upscaler() -> None:
    print(f"threads: {THREADS} (ncnn num_threads = TensorFlow intra-op threads), GPU allowed: {GPU}")
    contenders, loads = {}, {}
    for name, engine in (("ncnn_engine", "ncnn"), ("tf_engine", "tensorflow")):
        start = time.perf_counter()  # the TF engine's figure includes importing TensorFlow
        contenders[name] = make_waifu2x(engine, "none", tile_size=512, threads=THREADS, gpu=GPU)
        loads[name] = time.perf_counter() - start
    start = time.perf_counter()
    plain = PlainNcnn(THREADS, GPU)
    loads["plain_ncnn"] = time.perf_counter() - start
    print(f"devices: ncnn engine {'Vulkan GPU' if contenders['ncnn_engine'].on_gpu else 'CPU'}, "
          f"plain ncnn {'Vulkan GPU' if plain.net.opt.use_vulkan_compute else 'CPU'}, TF engine "
          f"{'CUDA GPU' if GPU and gpu_available('tensorflow') else 'CPU'}")
    for name, seconds in loads.items():
        say(f"load_s_{name}", seconds, "s (model ready to run, first use in this process)")
    runs = {name: (lambda picture, m=model: m.upscale_arrays([picture])[0]) for name, model in contenders.items()}
    runs["plain_ncnn"] = plain.upscale
    for size in (256, 512):
        picture = test_picture(size)
        outputs = {name: run(picture) for name, run in runs.items()}  # warm-up (TF graph tracing)
        times = {name: [] for name in runs}
        cpu = {name: [] for name in runs}
        repeats = REPEATS if size <= 256 else max(2, REPEATS - 2)
        for _ in range(repeats):
            for name, run in runs.items():
                start, start_cpu = time.perf_counter(), time.process_time()
                run(picture)
                times[name].append(time.perf_counter() - start)
                cpu[name].append(time.process_time() - start_cpu)
        rate = {name: 1 / statistics.median(t) for name, t in times.items()}
        cpu_s = {name: statistics.median(c) for name, c in cpu.items()}
        tag = f"{size}x{size}"
        for name in runs:
            say(f"waifu2x_{name}_{tag}", rate[name], "images/s")
        for name, target in (("ncnn_engine", 0.95), ("tf_engine", 0.5)):
            say(f"ratio_{name}_vs_plain_ncnn_{tag}", rate[name] / rate["plain_ncnn"], f"x (target >= {target})")
            say(f"best_case_ratio_{name}_vs_plain_ncnn_{tag}", min(times["plain_ncnn"]) / min(times[name]),
                "x (fastest runs)")
        # CPU seconds per image: less sensitive than wall time to other jobs on a shared machine
        for name in runs:
            say(f"cpu_s_per_image_{name}_{tag}", cpu_s[name], "s")
        for name in contenders:
            say(f"cpu_time_ratio_{name}_vs_plain_ncnn_{tag}", cpu_s["plain_ncnn"] / cpu_s[name],
                "x (throughput per CPU-second)")
            diff = np.abs(outputs[name].astype(int) - outputs["plain_ncnn"].astype(int))
            say(f"max_abs_diff_{name}_vs_plain_ncnn_{tag}", float(diff.max()), "levels")


def imagemagick() -> str | None:
    """A real ImageMagick binary (not a wrapper script); apt-get installs it if we are root."""
    def find() -> str | None:
        for name in ("magick", "convert", "convert-im6.q16"):
            for folder in os.environ.get("PATH", "").split(os.pathsep):
                path = Path(folder) / name
                if path.is_file() and os.access(path, os.X_OK):
                    with open(path.resolve(), "rb") as fh:
                        if fh.read(4) == b"\x7fELF":  # skip shell/python wrappers: they add start-up time
                            return str(path.resolve())
        return None

    found = find()
    if found is None and hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get"):
        print("imagemagick: not found, installing the Debian package with apt-get", flush=True)
        subprocess.run(["apt-get", "install", "-y", "-q", "imagemagick"], check=False,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        found = find()
    return found


def bench_jpeg() -> None:
    cfg = JpegConfig(quality=25, progressive=True, optimize=True, subsampling="4:2:0", workers=0)
    count = 8
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        sources = []
        for i in range(count):  # 1024x1024 PNGs, as build/upscaled holds them
            path = tmp / f"example-{i}.png"
            big = Image.fromarray(test_picture(512, seed=i)).resize((1024, 1024), Image.Resampling.LANCZOS)
            big.save(path, compress_level=1)
            sources.append(path)

        def pillow_one(src: Path) -> int:
            with Image.open(src) as img:
                img.load()
                return write_jpeg(img, tmp / f"pil-{src.stem}.jpg", cfg)

        convert = imagemagick()

        def convert_one(src: Path) -> int:
            out = tmp / f"im-{src.stem}.jpg"
            subprocess.run([convert, str(src), "-quality", "25", str(out)], check=True)
            return out.stat().st_size

        pillow_one(sources[0])
        runs = {"pillow": [], "imagemagick": []}
        sizes = {"pillow": 0, "imagemagick": 0}
        for _ in range(3):
            for name, one in (("pillow", pillow_one), ("imagemagick", convert_one)):
                if name == "imagemagick" and convert is None:
                    continue
                start = time.perf_counter()
                sizes[name] = sum(one(src) for src in sources)
                runs[name].append(time.perf_counter() - start)
        pil_rate = count / statistics.median(runs["pillow"])
        say("jpeg_pillow_1024x1024_1thread", pil_rate, "images/s")
        say("jpeg_pillow_mean_size", sizes["pillow"] / count / 1024, "KiB")

        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(usable_cpus()) as pool:
            start = time.perf_counter()
            list(pool.map(pillow_one, sources * 2))
            say(f"jpeg_pillow_1024x1024_{usable_cpus()}threads", 2 * count / (time.perf_counter() - start), "images/s")
        if convert is None:
            print("jpeg_imagemagick: skipped (ImageMagick's convert not found and not installable here; "
                  "install the Debian package imagemagick)")
            return
        im_rate = count / statistics.median(runs["imagemagick"])
        say("jpeg_imagemagick_1024x1024", im_rate, "images/s")
        say("jpeg_imagemagick_mean_size", sizes["imagemagick"] / count / 1024, "KiB")
        say("ratio_pillow_vs_imagemagick", pil_rate / im_rate, "x (target >= 1, one image at a time each)")


if __name__ == "__main__":
    which = sys.argv[1:] or ["upscale", "jpeg"]
    if "jpeg" in which:
        bench_jpeg()
    if "upscale" in which:
        bench_upscaler()
