"""Pipelines with a scripted backend: prompt rendering, the two-stage format, sub-seeds."""

from __future__ import annotations

from bakery.config import load_config
from bakery.text.pipelines import TwoStage, Prompted, split_title_synopsis, sub_seed
from text_support import write_project

SYNOPSIS = ("A shy lantern maker's daughter follows a lantern that drifts upstream and finds a boy who "
            "insists it is still 1962, while the river town prepares for its festival of the dead.")
EPISODE = ("Hina sneaks out during the festival, loses her sandal in the river and meets Kenta, who "
           "has never heard of television. By dawn the lantern has gone out and he is still there.")


class Scripted:
    """Answers by seed; records every request it saw."""

    def __init__(self, answers: dict[int, str], default: str = ""):
        self.answers, self.default, self.seen = answers, default, []

    def generate(self, requests, stage, progress=None):
        self.seen += [(r.prompt, r.seed, stage.name) for r in requests]
        for _ in requests if progress is not None else ():
            progress(1.0)
        return [self.answers.get(r.seed, self.default) for r in requests]


def two_stage_config(tmp_path, clean: str = "", episode_prompt: str = "{header}\n\nPlot summary. {title}!"):
    return load_config(write_project(tmp_path, """
[text]
pipeline = "two_stage"
[text.synopsis]
stop = ["\\n"]
min_chars = 100
[text.episode]
prefix = "In the first episode,"
min_chars = 100
[text.clean]
min_chars = 150
max_chars = 700
""" + clean, prompts={"synopsis.txt": "Catalogue #{id}\n", "episode.txt": episode_prompt})).text


def test_split_title_synopsis():
    assert split_title_synopsis("  Lanterns of _Kurokawa_ | A girl. ") == ("Lanterns of Kurokawa", "A girl.")
    assert split_title_synopsis("no separator here") is None
    assert split_title_synopsis("|synopsis without title") is None


def test_sub_seeds_are_distinct_and_start_at_the_id():
    assert sub_seed(7, 0) == 7
    seeds = {sub_seed(i, a, s) for i in range(50) for a in range(4) for s in range(2)}
    assert len(seeds) == 50 * 4 * 2


def test_two_stage_formats_title_and_episode(tmp_path):
    cfg = two_stage_config(tmp_path)
    synopsis = Scripted({3: f"Lanterns of Kurokawa|{SYNOPSIS}",
                         4: "Too Short|Nope.",                       # rejected: synopsis too short
                         sub_seed(4, 1): f"Steel Gale|{SYNOPSIS}"})  # the resample works
    episode = Scripted({}, default=f" {EPISODE}<|endoftext|>Sports results follow.")
    pipeline = TwoStage(cfg, {"synopsis": synopsis, "episode": episode})
    first = pipeline.run([(3, 0), (4, 0)])
    assert first[0].ok and first[0].cleaned.text == f"_Lanterns of Kurokawa_: {SYNOPSIS}\n\nIn the first episode, {EPISODE}"
    assert not first[1].ok and first[1].cleaned.reason.startswith("synopsis: too short")
    assert synopsis.seen[0][0] == "Catalogue #3\n"
    prompt, seed, _ = episode.seen[0]
    assert prompt == f"_Lanterns of Kurokawa_: {SYNOPSIS}\n\nPlot summary. Lanterns of Kurokawa!"
    assert seed == sub_seed(3, 0, 1) and len(episode.seen) == 1  # ID 4 never reached stage 2
    retry = pipeline.run([(4, 1)])
    assert retry[0].ok and retry[0].cleaned.text.startswith("_Steel Gale_: ")
    assert retry[0].seeds == (sub_seed(4, 1, 0), sub_seed(4, 1, 1))


def test_two_stage_reports_half_an_item_per_stage(tmp_path):
    cfg = two_stage_config(tmp_path)
    synopsis = Scripted({1: f"Lanterns|{SYNOPSIS}", 2: "Too Short|Nope.", 3: f"Gale|{SYNOPSIS}"})
    episode = Scripted({}, default=f" {EPISODE}")
    calls = []
    outcomes = TwoStage(cfg, {"synopsis": synopsis, "episode": episode}).run([(1, 0), (2, 0), (3, 0)], calls.append)
    assert [o.ok for o in outcomes] == [True, False, True]
    # 3 synopses (half each), ID 2's episode that never runs (its half at once), 2 episodes.
    assert calls == [0.5, 0.5, 0.5, 0.5, 0.5, 0.5] and sum(calls) == 3


def test_two_stage_rejects_short_episode(tmp_path):
    cfg = two_stage_config(tmp_path)
    pipeline = TwoStage(cfg, {"synopsis": Scripted({}, default=f"T|{SYNOPSIS}"),
                              "episode": Scripted({}, default=" she sleeps.")})
    [outcome] = pipeline.run([(1, 0)])
    assert outcome.cleaned.reason.startswith("episode: too short")


def test_prompted_fills_the_id_and_keeps_the_prefix(tmp_path):
    cfg = load_config(write_project(tmp_path, '[text.generate]\nprefix = "This season:"\nchat = false\n'
                                              '[text.clean]\nmin_chars = 50',
                                    prompts={"plot.txt": "Entry {id} {unknown}"})).text
    backend = Scripted({5: f" {EPISODE}"})
    [outcome] = Prompted(cfg, {"generate": backend}).run([(5, 0)])
    assert outcome.cleaned.text == f"This season: {EPISODE}"
    assert backend.seen == [("Entry 5 {unknown}", 5, "generate")]


def test_stages_naming_the_same_model_share_one_backend(tmp_path, monkeypatch):
    from bakery.text import stage as text_stage

    loads = []
    monkeypatch.setattr(text_stage, "load_backend", lambda cfg, stage, quiet: loads.append(stage.name) or object())
    backends = text_stage.build_backends(two_stage_config(tmp_path), quiet=True)
    assert loads == ["synopsis"] and backends["synopsis"] is backends["episode"]


def test_prompted_rejects_an_echo_of_its_own_rendered_prompt(tmp_path):
    cfg = load_config(write_project(tmp_path, '[text.generate]\nchat = false\n[text.clean]\nmin_chars = 50\nmax_echo = 1',
                                    prompts={"plot.txt": "Catalogue entry {id}: a haunted lighthouse keeper."})).text
    echo = " Catalogue entry 5 tells of a haunted lighthouse keeper who waits for a ship that never comes."
    [outcome] = Prompted(cfg, {"generate": Scripted({5: echo})}).run([(5, 0)])
    # the rendered prompt: {id} filled in
    assert outcome.cleaned.reason.startswith("echoes the prompt: repeats 'catalogue entry', 'entry 5', 'haunted")


def test_two_stage_episode_may_continue_its_synopsis_but_not_echo_its_instructions(tmp_path):
    cfg = two_stage_config(tmp_path, "max_echo = 0\n", episode_prompt="{header}\n\nPlot summary of the pilot "
                                                                     "episode. In the first episode of this anime,")
    synopsis = Scripted({}, default=f"Lanterns of Kurokawa|{SYNOPSIS}")
    continuing = f" the shy lantern maker's daughter follows the lantern upstream. {EPISODE}"
    echoing = f" the plot summary of the pilot episode goes like this. {EPISODE}"
    ok, echoed = TwoStage(cfg, {"synopsis": synopsis, "episode": Scripted({sub_seed(1, 0, 1): continuing,
                                                                          sub_seed(2, 0, 1): echoing})}
                          ).run([(1, 0), (2, 0)])
    assert ok.ok  # "lantern maker", "shy lantern" come from the synopsis it continues: material
    assert echoed.cleaned.reason.startswith("episode: echoes the prompt: repeats 'pilot episode', 'plot summary'")
