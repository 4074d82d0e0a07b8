"""Where a stage's batches are computed: here (None), or on Ray workers (RayExecutor).

The driver keeps everything that touches the project's disk: planning, reading the inputs,
the atomic writes and the manifest records. A worker gets a batch (IDs, or the input bytes)
and returns its results (PNG or JPEG bytes, outcomes); it never needs the driver's files, so
a cluster with no shared filesystem works. One actor per worker slot and stage holds the
loaded model for the whole stage; the model file itself travels through Ray's object store.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import socket
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

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
        executor = RayExecutor(address, config.ray, quiet=args.quiet,
                               verbose=getattr(args, "verbosity", 0) > 0)
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

    POLL_S = 0.5  # how often a wait on the cluster looks at the head's watch

    def __init__(self, address: str, cfg, quiet: bool = False, verbose: bool = False):
        ray = self.ray = import_ray()
        self.cfg, self.quiet = cfg, quiet
        self.watch = None
        head = find_head(address)
        if head.address is not None:
            check_reachable(head)
        if not ray.is_initialized():
            quiet_ray_notices(ray, verbose and not quiet)
            # ray.init has no timeout of its own: a port that answers but is no Ray head of
            # this version (or a loopback head Ray swaps for the outward IP) retries for ever.
            with deadline(INIT_LIMIT_S, f"{head.name}: no connection to the Ray cluster within "
                          f"{INIT_LIMIT_S} s (Ray keeps retrying); check that a Ray head of this "
                          "version listens there (docs/scale-out.md)"):
                try:
                    # The package travels with the job (py_modules): workers run the driver's code.
                    # Workers' own output (Ray's log_to_driver) only with -v: Ray's logs keep it.
                    ray.init(address=head.init_address, runtime_env={"py_modules": [str(BAKERY_DIR)]},
                             logging_level=logging.WARNING, log_to_driver=verbose and not quiet,
                             include_dashboard=False)
                except (ConnectionError, RuntimeError, ValueError) as exc:
                    raise BakeryError(f"{head.name}: cannot connect to the Ray cluster ({first_line(exc)})") from None
        self.watch = HeadWatch(gcs_address(ray) or head.address)
        with self.watch.using("connecting"):
            resources = ray.cluster_resources()
        self.gpus = int(resources.get("GPU", 0)) if cfg.use_gpus else 0
        self.cpus = resources.get("CPU", 0)
        log.info("ray: cluster with %g CPU(s), %d GPU(s) used", self.cpus, self.gpus)

    def wait(self, refs: list, stage: str) -> list:
        """ray.wait for at least one of `refs`, looking at the head's watch every POLL_S: a
        vanished head ends the stage with HeadLost instead of Ray's minutes of retries."""
        while True:
            self.check_head(stage)
            ready, _ = self.ray.wait(refs, num_returns=1, timeout=self.POLL_S)
            if ready:
                return ready

    def check_head(self, stage: str, confirm: bool = False, probe: bool = False) -> None:
        """Raise HeadLost when the head stopped answering. `confirm`: probe it now (after a
        worker died: when the head went, every worker went with it; that is not a batch to
        send elsewhere). `probe`: one probe now, retried only if it fails (before a batch)."""
        if self.watch is None:
            return
        gone = self.watch.lost.is_set() or (confirm and not self.watch.answers_now()) or \
            (probe and self.watch.gone_now())
        if gone:
            raise self.watch.head_lost(stage)

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
                where, error = ray.get(self.wait([actor.ready.remote()], spec.stage)[0])
            except ray.exceptions.RayActorError as exc:
                self.check_head(spec.stage, confirm=True)
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
            self.check_head(spec.stage)
            pools[spec.stage] = self.start_actors(spec, self.ray.put(shipped or {}))
        return pools[spec.stage]

    def map(self, spec, batches: list, payload=lambda batch: batch, shipped: dict | None = None):
        """Each batch's result, in batch order, computed by the stage's actors. `payload(batch)`
        is what travels (read when the batch is sent, so only the batches in flight are held
        in memory). A batch whose worker died is sent to another one, up to max_retries times;
        a head that stopped answering ends the stage (HeadWatch)."""
        with self.watch.using(spec.stage):
            yield from self._map(spec, batches, payload, shipped)

    def _map(self, spec, batches: list, payload, shipped: dict | None):
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
                    self.check_head(spec.stage, probe=True)  # a big payload goes through the head's object store
                    inflight[actor.run.remote(number, payload(batch))] = (number, batch, actor)
                ready = self.wait(list(inflight), spec.stage)
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
                        self.check_head(spec.stage, confirm=True)
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
        """After the command's error line, if any: end the actors and leave the cluster."""
        if self.watch is not None and self.watch.lost.is_set():
            self.watch.closing.set()  # bounds the shutdown below
            self.ray.shutdown()  # no head to end the actors: they ended with it
            return
        if self.watch is not None:
            self.watch.stop()
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


@dataclass(frozen=True)
class Head:
    """The cluster `--ray` joins: `address` to check (None: ray.init starts a private local
    cluster), `init_address` for ray.init, `name` for messages, `hint` for when it is gone."""

    address: str | None
    init_address: str | None
    name: str
    hint: str


def find_head(address: str) -> Head:
    """Which cluster `--ray [ADDRESS]` joins, looked up the way ray.init() looks (one lookup,
    so each source gets the reachability check): the explicit address; else $RAY_ADDRESS;
    else the head that the last `ray start --head` on this machine recorded in Ray's
    ray_current_cluster file; else none, and ray.init starts a local cluster for this command.
    For the last two, ray.init gets no address and finds the same one itself (it then also
    picks up that cluster's token authentication)."""
    if address not in ("", "auto"):
        return Head(address, address, f"--ray {address}", "start one with `ray start --head` or check the address")
    env = os.environ.get("RAY_ADDRESS", "").strip()
    if env == "local":
        return Head(None, None, "--ray (RAY_ADDRESS=local)", "")
    if env and env != "auto":
        return Head(env, None, f"--ray: $RAY_ADDRESS {env}",
                    "start one with `ray start --head`, or unset RAY_ADDRESS")
    recorded_in = ray_address_file()
    try:
        recorded = recorded_in.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        recorded = ""
    if recorded:
        return Head(recorded, None, f"--ray: the head in {recorded_in} ({recorded}, from the last `ray start --head` "
                    "on this machine)", f"start it again, name another with --ray HOST:PORT, or delete {recorded_in} "
                    "to let --ray start a local cluster")
    return Head(None, None, "--ray (a local cluster for this command)", "")


def ray_address_file() -> Path:
    """Where `ray start --head` records its address ($RAY_TMPDIR, else $TMPDIR, else /tmp, then
    ray/ray_current_cluster), asked of Ray itself where it tells."""
    try:
        from ray._common.utils import get_ray_address_file

        return Path(get_ray_address_file(None))
    except (ImportError, AttributeError):
        base = os.environ.get("RAY_TMPDIR") or os.environ.get("TMPDIR") or "/tmp"
        return Path(base) / "ray" / "ray_current_cluster"


def host_port(address: str) -> tuple[str, int] | None:
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        return None
    return host.strip("[]"), int(port)


def answers(address: str, timeout: float = 2.0) -> str | None:
    """None when something accepts a TCP connection at HOST:PORT, else why not."""
    target = host_port(address)
    if target is None:
        return "not HOST:PORT"
    try:
        socket.create_connection(target, timeout=timeout).close()
    except OSError as exc:
        return exc.strerror or str(exc) or type(exc).__name__
    return None


def check_reachable(head: Head, timeout: float = 5.0) -> None:
    """One clear line for a wrong or stopped head, where ray.init would keep retrying."""
    if host_port(head.address) is None:
        raise BakeryError(f"{head.name}: expected HOST:PORT of the cluster's head (e.g. 10.0.0.5:6379), "
                          "or no address")
    why = answers(head.address, timeout)
    if why is not None:
        raise BakeryError(f"{head.name}: no Ray head answers there ({why}); {head.hint}")


def gcs_address(ray) -> str | None:
    """The head's GCS HOST:PORT as the connected driver knows it (None for a Ray client)."""
    try:
        address = ray.get_runtime_context().gcs_address
    except Exception:  # noqa: BLE001 -- a Ray client connection has no GCS address to give
        return None
    return address if address and host_port(address) else None


INIT_LIMIT_S = 120


class HeadLost(BakeryError):
    """The cluster's head stopped answering mid-command."""


class HeadWatch:
    """The head's GCS port, probed every INTERVAL_S from a daemon thread while the command
    runs.

    When a head goes away, Ray waits in its GCS reconnect loop for minutes, or ends a driver
    on that node without a word (its object store went too). So a head that misses LOST_AFTER
    probes in a row is lost, and the command ends within a bounded time with one line:

    - the stage's next wait on the cluster (or its next check) raises HeadLost, whose line
      the CLI prints; the stage's finally blocks save its manifest on the way out;
    - if the stage is inside a call into Ray that does not come back (`busy`), this thread
      prints the line itself GRACE_S after the loss and ends the process, as a kill would;
    - Ray's shutdown can retry the lost head for a while too: once the executor closes,
      the process ends at the latest SHUTDOWN_S later.

    Every write is atomic and journaled, so what was written stays and a rerun resumes. A
    head lost while no stage uses the cluster (a bake's local site stage) ends nothing.
    """

    INTERVAL_S = 0.5
    LOST_AFTER = 3
    GRACE_S = 10.0
    SHUTDOWN_S = 3.0

    def __init__(self, address: str | None):
        self.address = address
        self.lost = threading.Event()
        self.closing = threading.Event()
        self.stage = "ray"
        self.busy = 0
        self._stopped = threading.Event()
        if address is not None:
            threading.Thread(target=self._run, name="bakery: ray head watch", daemon=True).start()

    def _run(self) -> None:
        misses = 0
        while not self.lost.is_set():
            if self._stopped.wait(self.INTERVAL_S):
                return
            misses = misses + 1 if answers(self.address, timeout=1.0) else 0
            if misses >= self.LOST_AFTER:
                self.lost.set()
        stuck = 0.0
        while not self.closing.wait(0.1):
            if self._stopped.is_set():
                return
            stuck = stuck + 0.1 if self.busy else 0.0
            if stuck >= self.GRACE_S:
                say_and_exit(self.message())
        time.sleep(self.SHUTDOWN_S)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(1)

    @contextlib.contextmanager
    def using(self, stage: str):
        """The block calls into Ray for `stage`."""
        self.stage = stage
        self.busy += 1
        try:
            yield
        finally:
            self.busy -= 1

    def gone_now(self) -> bool:
        """One probe now (a TCP connect: cheap on a healthy head); a failed one is retried as
        the watch thread would, so only a head that misses LOST_AFTER probes in a row is gone.
        Checked before each batch is sent: without it a fast stage could finish its batches
        on actors that outlive their head before the watch thread counts its misses."""
        if self.address is None or self.lost.is_set() or answers(self.address, timeout=1.0) is None:
            return self.lost.is_set()
        for _ in range(self.LOST_AFTER - 1):
            time.sleep(self.INTERVAL_S)
            if answers(self.address, timeout=1.0) is None:
                return False
        self.lost.set()
        return True

    def answers_now(self, tries: int = 3, spacing: float = 0.3) -> bool:
        """Probe now, a few times (a head being stopped may still accept for a moment)."""
        if self.address is None:
            return True
        for attempt in range(tries):
            if attempt:
                time.sleep(spacing)
            if answers(self.address, timeout=1.0):
                self.lost.set()
                return False
        return True

    def head_lost(self, stage: str) -> HeadLost:
        self.stage = stage
        self.lost.set()
        return HeadLost(self.message())

    def message(self) -> str:
        return (f"--ray: the Ray cluster's head {self.address} stopped answering during {self.stage}; "
                "stopped (what was written is kept: rerun to continue)")

    def stop(self) -> None:
        self._stopped.set()

@contextlib.contextmanager
def deadline(seconds: float, message: str):
    """End the process with `message` as its one error line if the block (a call into Ray
    that cannot be interrupted) has not returned within `seconds`."""
    done = threading.Event()

    def expire():
        if not done.wait(seconds):
            say_and_exit(message)

    threading.Thread(target=expire, name="bakery: deadline", daemon=True).start()
    try:
        yield
    finally:
        done.set()


def say_and_exit(message: str) -> None:
    """The CLI's one error line, from a thread the main thread cannot hear, then the exit a
    kill would give (no cleanup that could block inside Ray). tqdm is imported with this
    module: an import here could wait for the import lock that a stuck main thread holds."""
    tqdm.write(f"bakery: error: {message}", file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(1)


def quiet_token_notice(record: logging.LogRecord) -> bool:
    """Ray announces at WARNING level that a new local cluster uses token authentication, the
    safe default: said at -v only."""
    if record.getMessage().startswith("Token authentication is enabled"):
        log.debug("ray: %s", record.getMessage())
        return False
    return True


def quiet_ray_notices(ray, verbose: bool) -> None:
    """Ray's own notices on the driver's terminal only with -v. Besides the token notice, the
    driver prints the cluster's error reports ("(raylet) Raylet is terminated ... Last 20 lines
    of the Raylet logs") to stdout from a thread of its own; the bakery reports what they mean
    (a worker died, the head stopped answering) in its own lines, so without -v they go to
    Ray's logs only. That printer is a private function: when a Ray release renames it, its
    notices simply show again."""
    notices = logging.getLogger("ray._private.authentication.authentication_token_setup")
    if quiet_token_notice not in notices.filters:
        notices.addFilter(quiet_token_notice)
    worker = getattr(getattr(ray, "_private", None), "worker", None)
    if not verbose and callable(getattr(worker, "print_to_stdstream", None)):
        worker.print_to_stdstream = lambda data, ignore_prefix=False: None


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
