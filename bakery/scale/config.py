"""The [ray] section: how `--ray` sizes its workers (read only when --ray is given)."""

from __future__ import annotations

from dataclasses import dataclass

from bakery.tables import Table


@dataclass(frozen=True)
class RayConfig:
    workers: int | None      # actors per stage; None: one per GPU, else one per num_cpus CPUs
    num_cpus: float          # CPUs each actor reserves (and its torch/TF thread count)
    use_gpus: bool           # one GPU per actor when the cluster has GPUs
    max_retries: int         # times one batch is sent again after its worker died
    batches_in_flight: int   # batches queued per actor, so none idles while the driver writes


def parse_ray(t: Table) -> RayConfig:
    cfg = RayConfig(
        workers=t.int("workers", None, min=1, max=10_000),
        num_cpus=t.float("num_cpus", 1.0, min=0.01, max=1024),
        use_gpus=t.bool("use_gpus", True),
        max_retries=t.int("max_retries", 3, min=0, max=100),
        batches_in_flight=t.int("batches_in_flight", 2, min=1, max=64),
    )
    t.finish()
    return cfg
