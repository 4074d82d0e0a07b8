"""The Ray driver takes from a worker only the integer IDs of the batch it sent, in that
batch's order: a forged or buggy result is one line naming the batch and writes nothing.
No cluster here: the stages' driver loops run against a stand-in executor."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from bakery.config import load_config
from bakery.errors import BakeryError
from bakery.scale import stages
from bakery.scale.executor import accept_ids
from bakery.text.clean import Cleaned
from bakery.text.pipelines import Outcome
from tests.conftest import FIXTURES, write_project

ESCAPE = "x/../../../escaped"


class ForgedRemote:
    """Stands in for RayExecutor: map() yields the given results, one per batch, in order."""

    def __init__(self, *results):
        self.results, self.cfg, self.gpus = list(results), SimpleNamespace(num_cpus=1), 0
        self.sent = []

    def map(self, spec, batches, payload=lambda b: b, shipped=None):
        self.sent.append(list(batches))
        yield from self.results


def files_under(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize("returned", [[0, ESCAPE], [1, 0], [0], [0, 1, 2], [0, True], [0, 1.0], ["0", "1"]])
def test_only_the_sent_integer_ids_in_order_are_accepted(returned):
    accept_ids("generate", 4, [0, 1], [0, 1])  # the batch as sent
    with pytest.raises(BakeryError, match=r"^generate: Ray batch 4 was sent IDs \[0, 1\] but its result names"):
        accept_ids("generate", 4, [0, 1], returned)


@pytest.fixture
def generate_plan(tmp_path):
    from bakery.images.stage import plan_generate

    toml = write_project(tmp_path / "project", f"""
        [images]
        model = "{FIXTURES / 'stylegan2' / 'stylegan2_tf1_synthetic_r64.pkl'}"
        batch_size = 2
        [[images.bands]]
        seeds = "0-3"
        psi = 0.7
    """)
    config = load_config(toml)
    args = SimpleNamespace(batch_size=None, shard=None, quiet=True)
    return config, args, plan_generate(config, args)


GENERATOR = {"kind": "stylegan2", "resolution": 64}


@pytest.mark.parametrize("pngs, generator, problem", [
    ([(0, b"png"), (ESCAPE, b"png")], GENERATOR, "was sent IDs [0, 1] but its result names [0, 'x/../../../escaped']"),
    ([(1, b"png"), (0, b"png")], GENERATOR, "was sent IDs [0, 1] but its result names [1, 0]"),
    ([(0, b"png")], GENERATOR, "was sent IDs [0, 1] but its result names [0]"),
    ([(0, b"png"), (1, "not bytes")], GENERATOR, "an image that is not PNG bytes"),
    ({0: b"png"}, GENERATOR, "not a list of (ID, PNG bytes) pairs"),
    ([(0, b"png"), (1, b"png")], {"kind": "x" * 500, "resolution": 64}, "described its generator as"),
])
def test_a_forged_generate_result_writes_nothing(generate_plan, tmp_path, pngs, generator, problem):
    config, args, plan = generate_plan
    assert plan.batches == [[0, 1], [2, 3]]
    before = files_under(tmp_path)
    remote = ForgedRemote((pngs, generator))
    with pytest.raises(BakeryError) as caught:
        stages.generate_remote(remote, config, args, plan)
    line = str(caught.value)
    assert line.startswith("generate: Ray batch 0 ") and problem in line and "\n" not in line, line
    assert files_under(tmp_path) == before  # no PNG, no manifest, nothing outside the project
    assert not list(tmp_path.rglob("escaped*"))


def test_a_later_forged_batch_keeps_the_earlier_batches(generate_plan, tmp_path):
    config, args, plan = generate_plan
    good = ([(0, b"png-0"), (1, b"png-1")], GENERATOR)
    forged = ([(2, b"png-2"), (ESCAPE, b"png-x")], GENERATOR)
    with pytest.raises(BakeryError, match=r"^generate: Ray batch 1 was sent IDs \[2, 3\]"):
        stages.generate_remote(ForgedRemote(good, forged), config, args, plan)
    assert sorted(p.name for p in plan.raw_dir.glob("*.png")) == ["example-0.png", "example-1.png"]
    assert not list(tmp_path.rglob("escaped*"))


@pytest.mark.parametrize("outputs, problem", [
    ([(0, b"jpg", None), (ESCAPE, b"jpg", None)], "was sent IDs [0, 1] but its result names"),
    ([(1, b"jpg", None), (0, b"jpg", None)], "was sent IDs [0, 1] but its result names [1, 0]"),
    ([(0, b"jpg", None), (1, None, None)], "neither bytes nor an error for ID 1"),
    ([(0, b"jpg")], "not a list of (ID, bytes, error) triples"),
])
def test_a_forged_compress_result_writes_nothing(tmp_path, outputs, problem):
    jobs = [SimpleNamespace(id=i, src=tmp_path / f"example-{i}.png", dst=tmp_path / "out" / f"example-{i}.jpg")
            for i in (0, 1)]
    recorded, failures = [], {}
    manifest = SimpleNamespace(record=lambda job, size: recorded.append(job.id))
    bar = SimpleNamespace(update=lambda n: None)
    with pytest.raises(BakeryError) as caught:
        stages.compress_remote(ForgedRemote(outputs), SimpleNamespace(), jobs, manifest, failures, bar)
    assert str(caught.value).startswith("compress: Ray batch 0 ") and problem in str(caught.value)
    assert not (tmp_path / "out").exists() and recorded == [] and failures == {}
    assert not list(tmp_path.parent.rglob("escaped*"))


def outcome(i, text="A snippet.", seeds=(7,)):
    return Outcome(i, Cleaned(text), seeds)


@pytest.mark.parametrize("outcomes, problem", [
    ([outcome(3), outcome(ESCAPE)], "was sent IDs [3, 4] but its result names [3, 'x/../../../escaped']"),
    ([outcome(4), outcome(3)], "was sent IDs [3, 4] but its result names [4, 3]"),
    ([outcome(3), outcome(4, text=b"bytes")], "a malformed outcome for ID 4"),
    ([outcome(3), outcome(4, seeds=("s",))], "a malformed outcome for ID 4"),
    ([outcome(3), (4, "text")], "not a list of outcomes"),
])
def test_a_forged_text_result_is_refused_before_the_writer_sees_it(monkeypatch, outcomes, problem):
    monkeypatch.setattr(stages, "text_shipment", lambda cfg: {})
    monkeypatch.setattr(stages, "identity_backends", lambda cfg: {})
    _, rounds, tokens = stages.text_remote(ForgedRemote(([outcome(1), outcome(2)], 9), (outcomes, 5)),
                                           SimpleNamespace(), None)
    results = rounds([[1, 2], [3, 4]], 0)
    assert [o.snippet_id for o in next(results)] == [1, 2]  # a good batch goes through
    with pytest.raises(BakeryError) as caught:
        next(results)
    assert str(caught.value).startswith("text: Ray batch 1 ") and problem in str(caught.value)


def test_an_upscale_worker_answers_in_the_batch_order_even_when_a_source_is_broken():
    """A worker's own results must pass the check: a broken source in the middle of a batch
    used to come back first (errors, then the upscaled images)."""
    import io

    from PIL import Image

    from bakery.upscale.stage import Upscaler

    png = io.BytesIO()
    Image.new("RGB", (4, 4), (200, 10, 10)).save(png, format="PNG")
    sources = [(5, "example-5.png", png.getvalue()), (6, "example-6.png", b"broken"),
               (7, "example-7.png", png.getvalue())]
    results = Upscaler(SimpleNamespace(method="lanczos"), 1).compute(sources)
    assert [r[0] for r in results] == [5, 6, 7] and results[1][1] is None and results[1][2]
    stages.accept_outputs("upscale", 0, [SimpleNamespace(id=i) for i in (5, 6, 7)], results)
