"""Where a stage's batches are computed: here (None), or on Ray workers (RayExecutor).

The driver keeps everything that touches the project's disk: planning, reading the inputs,
the atomic writes and the manifest records. A worker gets a batch (IDs, or the input bytes)
and returns its results (PNG or JPEG bytes, outcomes); it never needs the driver's files, so
a cluster with no shared filesystem works. One actor per worker slot and stage holds the
loaded model for the whole stage; the model file itself travels through Ray's object store.
"""

from __future__ import annotations

import collections
import logging
import os
import socket
import tempfile
import time
from pathlib import Path

from bakery.errors import BakeryError
from bakery.testhook import crash_point

log = logging.getLogger("bakery.ray")

INSTALL_HINT = "--ray needs Ray: pip install 'bakery[ray]' (or: pip install 'ray[default]>=2.40')"
BAKERY_DIR = Path(__file__).resolve().parent.parent


def remote_executor(config, args, stage: str, local_only: bool = False):
    """The run's RayExecutor when --ray was given (connected on first use and shared by the
    stages of one command), else None. `local_only`: this stage runs here even with --ray
    (links for upscale.method = "none", an OpenAI-compatible server for text)."""
    address = getattr(args, "ray", None)
    if address is None:
        return None
    if local_only:
        log.info("%s: runs on the driver (nothing for Ray workers to compute)", stage)
        return None
    executor = getattr(args, "ray_executor", None)
    if executor is None:
        executor = RayExecutor(address, config.ray, quiet=args.quiet)
        args.ray_executor = executor
    return executor


def import_ray():
    try:
        import ray
    except ImportError:
        raise BakeryError(INSTALL_HINT) from None
    return ray


class BatchActor:
    """The body of every Ray actor: materialise the shipped files, load the stage's worker once,
    then compute batch after batch. A load error is kept and reported by `ready`, so the driver
    can print it as one line instead of an actor-death traceback."""

    def __init__(self, spec, shipped):
        self.where = f"{socket.gethostname()}:{os.getpid()}"
        self.error = None
        self.folder = tempfile.mkdtemp(prefix="bakery-ray-")
        try:
            self.spec = spec
            self.state = spec.load(Path(self.folder), shipped)
        except BakeryError as exc:
            self.error = str(exc)

    def ready(self):
        return self.where, self.error

    def run(self, number: int, batch):
        # test hook: this worker dies mid-batch (tests/test_ray.py kills a worker node this way)
        crash_point(f"ray:{self.spec.stage}")
        started = time.monotonic()
        out = self.spec.compute(self.state, batch)
        return out, self.where, time.monotonic() - started


class RayExecutor:
    """One connection to a Ray cluster for the command; `map` runs one stage's batches."""

    def __init__(self, address: str, cfg, quiet: bool = False):
        ray = self.ray = import_ray()
        self.cfg, self.quiet = cfg, quiet
        target = None if address in ("", "auto") else address
        if target is not None and not target.startswith("ray://"):
            check_reachable(target)
        if not ray.is_initialized():
            try:
                # The package travels with the job (py_modules): workers run the driver's code.
                ray.init(address=target, runtime_env={"py_modules": [str(BAKERY_DIR)]},
                         logging_level=logging.WARNING, log_to_driver=not quiet, include_dashboard=False)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise BakeryError(f"--ray {address}: cannot connect to the Ray cluster ({exc})") from None
        resources = ray.cluster_resources()
        self.gpus = int(resources.get("GPU", 0)) if cfg.use_gpus else 0
        self.cpus = resources.get("CPU", 0)
        log.info("ray: cluster with %g CPU(s), %d GPU(s) used", self.cpus, self.gpus)

    def slots(self) -> int:
        """Actors per stage: [ray] workers, else one per GPU, else one per num_cpus CPUs."""
        if self.cfg.workers:
            return self.cfg.workers
        if self.gpus:
            return self.gpus
        return max(1, int(self.cpus // self.cfg.num_cpus))

    def start_actors(self, spec, shipped_ref) -> list:
        ray = self.ray
        options = {"num_cpus": self.cfg.num_cpus, "num_gpus": 1 if self.gpus else 0,
                   # a dead actor is not restarted in place: map() sends its batch to a live one
                   "max_restarts": 0, "max_task_retries": 0, "scheduling_strategy": "SPREAD"}
        remote = ray.remote(BatchActor).options(**options)
        actors = [remote.remote(spec, shipped_ref) for _ in range(self.slots())]
        live = []
        for actor in actors:
            try:
                where, error = ray.get(actor.ready.remote())
            except ray.exceptions.RayActorError as exc:
                log.warning("ray: a %s worker failed to start: %s", spec.stage, first_line(exc))
                continue
            if error:
                for other in actors:
                    ray.kill(other)
                raise BakeryError(error)
            live.append(actor)
        if not live:
            raise BakeryError(f"{spec.stage}: no Ray worker could start (see the Ray logs)")
        return live

    def pool(self, spec, shipped: dict | None) -> list:
        """The stage's actors, started on its first batches and kept for its later ones (the
        text stage's resampling rounds); another stage's actors are ended first, freeing their
        CPUs and GPUs."""
        pools = self.__dict__.setdefault("pools", {})
        for stage in [s for s in pools if s != spec.stage]:
            for actor in pools.pop(stage):
                self.ray.kill(actor)
        if not pools.get(spec.stage):
            pools[spec.stage] = self.start_actors(spec, self.ray.put(shipped or {}))
        return pools[spec.stage]

    def map(self, spec, batches: list, payload=lambda batch: batch, shipped: dict | None = None):
        """Each batch's result, in batch order, computed by the stage's actors. `payload(batch)`
        is what travels (read when the batch is sent, so only the batches in flight are held
        in memory). A batch whose worker died is sent to another one, up to max_retries times."""
        ray = self.ray
        actors = self.pool(spec, shipped)
        free = collections.deque(a for a in actors for _ in range(self.cfg.batches_in_flight))
        queue = collections.deque(enumerate(batches))
        inflight, results, retries = {}, {}, collections.Counter()
        stats: dict[str, list[float]] = collections.defaultdict(lambda: [0, 0.0])
        started, first = time.monotonic(), None
        self.first_result_s = None
        following = 0
        try:
            while queue or inflight:
                while queue and free:
                    number, batch = queue.popleft()
                    actor = free.popleft()
                    inflight[actor.run.remote(number, payload(batch))] = (number, batch, actor)
                ready, _ = ray.wait(list(inflight), num_returns=1)
                for ref in ready:
                    number, batch, actor = inflight.pop(ref)
                    try:
                        out, where, seconds = ray.get(ref)
                    except ray.exceptions.RayTaskError as exc:  # the stage's own code raised
                        cause = getattr(exc, "cause", None)
                        if isinstance(cause, BakeryError):
                            raise BakeryError(str(cause)) from None
                        raise BakeryError(f"{spec.stage}: a Ray worker failed: {first_line(exc)}") from None
                    except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError,
                            ray.exceptions.ObjectLostError) as exc:
                        self.lost(spec.stage, actor, actors, free, number, exc)
                        retries[number] += 1
                        if retries[number] > self.cfg.max_retries:
                            raise BakeryError(f"{spec.stage}: batch {number} lost its worker "
                                              f"{retries[number]} times; rerun to continue") from None
                        queue.appendleft((number, batch))
                        continue
                    free.append(actor)
                    stats[where][0] += len(batch)
                    stats[where][1] += seconds
                    if first is None:
                        first = self.first_result_s = time.monotonic() - started
                    results[number] = out
                while following in results:
                    yield results.pop(following)
                    following += 1
        finally:
            self.summary(spec.stage, stats, time.monotonic() - started)

    def lost(self, stage: str, actor, actors: list, free, number: int, exc) -> None:
        if actor in actors:
            actors.remove(actor)
            log.warning("ray: a %s worker died (%s); its batch %d goes to another worker",
                        stage, first_line(exc), number)
        for slot in [a for a in free if a == actor]:
            free.remove(slot)
        if not actors:
            raise BakeryError(f"{stage}: every Ray worker died; rerun to continue (finished items are kept)")

    def summary(self, stage: str, stats: dict, wall: float) -> None:
        """Per-worker throughput: items, busy seconds and items per busy second."""
        if not stats:
            return
        lines = [f"{where}: {int(n)} item(s), {busy:.1f} s busy, {n / busy if busy else 0:.2f}/s"
                 for where, (n, busy) in sorted(stats.items())]
        total = sum(n for n, _ in stats.values())
        log.info("ray %s: %d item(s) on %d worker(s) in %.1f s (%.2f/s): %s", stage, total, len(stats), wall,
                 total / wall if wall else 0, "; ".join(lines))
        self.last_stats = {"stage": stage, "wall_s": wall, "workers": {k: list(v) for k, v in stats.items()}}

    def close(self) -> None:
        for actors in self.__dict__.get("pools", {}).values():
            for actor in actors:
                self.ray.kill(actor)
        self.ray.shutdown()


def accept_ids(stage: str, number: int, sent: list[int], returned: list) -> None:
    """A worker's result names the IDs it computed; the driver builds file paths and records
    from them, so it takes only the integer IDs of the batch it sent, in that batch's order.
    (A hostile worker is out of scope: Ray unpickles its results. This stops a buggy or
    mismatched one from writing outside the project or over another batch's files.)"""
    sent = list(sent)
    if len(returned) == len(sent) and all(type(r) is int for r in returned) and list(returned) == sent:
        return
    raise BakeryError(f"{stage}: Ray batch {number} was sent IDs {short(sent)} but its result names "
                      f"{short(returned)}: refused, nothing of that batch is written (do the workers run "
                      "the same bakery as the driver?)")


def short(value, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "…"


def check_reachable(address: str, timeout: float = 5.0) -> None:
    """One clear line for a wrong or stopped head, where ray.init would keep retrying."""
    import socket

    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise BakeryError(f"--ray {address}: expected HOST:PORT of the cluster's head (e.g. 10.0.0.5:6379), "
                          "or no address")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        raise BakeryError(f"--ray {address}: no Ray head answers there ({exc.strerror or exc}); start one with "
                          "`ray start --head` or check the address") from None


def first_line(exc) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def pack(path: Path) -> list[tuple[str, bytes]]:
    """A model file or folder as (relative name, bytes) pairs, for the object store."""
    path = Path(path)
    if path.is_file():
        return [(path.name, path.read_bytes())]
    return [(p.relative_to(path).as_posix(), p.read_bytes()) for p in sorted(path.rglob("*")) if p.is_file()]


def unpack(entries: list[tuple[str, bytes]], folder: Path, was_file: bool) -> Path:
    """The shipped pairs written under `folder` on the worker; returns the file or the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in entries:
        target = folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return folder / entries[0][0] if was_file else folder
