"""The openai backend against a local OpenAI-shaped server that misbehaves on purpose."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from bakery.cli import main
from bakery.text.backends.openai_backend import RateLimiter, backoff_delay, parse_retry_after
from text_support import REPO, write_project

KEY = "sk-test-0123456789-do-not-log"
WHO = ["Akari", "Sora", "Ren", "the student council president", "a cat who speaks in haiku", "the new idol",
       "Captain Hoshino", "the shrine maiden", "a retired mecha pilot", "the transfer student", "Professor Kuroda",
       "the baker's daughter"]
DOES = ["inherits", "discovers", "repairs", "steals", "guards", "loses", "paints", "rebuilds", "sells", "hides",
        "follows", "dreams about"]
WHAT = ["a bakery whose ovens open onto another century", "a forgotten mecha", "the last lighthouse",
        "a festival lantern", "the colony's artificial sun", "a haunted vending machine", "a map of the moon",
        "a violin made of glass", "the school's clock tower", "a train that runs only on Sundays",
        "an umbrella that remembers rain", "a letter from the future"]
WHERE = ["behind the school", "in Neo-Kyoto", "on the night of the summer festival", "before the exams",
         "during the first snow", "under the harbour", "after the last train", "on a floating island",
         "in the abandoned arcade", "at the edge of the desert", "inside the old library", "beyond the rice fields"]


def story(seed: int) -> str:
    """A different story per seed (four random sentences), so that real samples never look
    like duplicates of each other."""
    rng = random.Random(f"story {seed}")
    sentences = [f"{rng.choice(WHO)} {rng.choice(DOES)} {rng.choice(WHAT)} {rng.choice(WHERE)} "
                 f"for {rng.randint(2, 99)} days."
                 for _ in range(4)]
    return " ".join(s[0].upper() + s[1:] for s in sentences) + " (Source: Test Server)"


class FakeOpenAI:
    """A scripted server: `faults` are applied to the next requests, one each, in order."""

    def __init__(self, delay: float = 0.0, short_seeds: tuple[int, ...] = ()):
        self.delay, self.short_seeds = delay, set(short_seeds)
        self.ignore_sampling = False       # answer every request with the same text, like a greedy server
        self.texts: dict[int, str] = {}    # seed → a scripted answer
        self.faults: list[str] = []
        self.log: list[dict] = []
        self.inflight = self.max_inflight = 0
        self.busy: set[int] = set()
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                fake.handle(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def handle(self, h: BaseHTTPRequestHandler) -> None:
        body = json.loads(h.rfile.read(int(h.headers["Content-Length"])))
        with self.lock:
            fault = self.faults.pop(0) if self.faults else ""
            self.inflight += 1
            self.busy.add(threading.get_ident())
            self.max_inflight = max(self.max_inflight, self.inflight)
            self.log.append({"t": time.monotonic(), "path": h.path, "seed": body.get("seed"), "fault": fault,
                             "auth": h.headers.get("Authorization"), "body": body})
        try:
            if not h.path.startswith("/v1/"):
                return self.reply(h, 404, {"detail": "Not Found"})
            if h.headers.get("Authorization") != f"Bearer {KEY}":
                return self.reply(h, 401, {"error": {"message": "Incorrect API key provided"}})
            if fault == "429":
                return self.reply(h, 429, {"error": {"message": "Rate limit reached"}}, {"Retry-After": "1"})
            if fault == "500":
                return self.reply(h, 500, {"error": {"message": "The server had an error"}})
            if fault == "nochoices":
                return self.reply(h, 200, {"id": "cmpl-1", "object": "text_completion", "choices": []})
            time.sleep(2.0 if fault == "slow" else self.delay)
            seed = body["seed"]
            text = "Too short." if seed in self.short_seeds else story(seed)
            text = story(0) if self.ignore_sampling else self.texts.get(seed, text)
            if h.path.endswith("/chat/completions"):
                choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
            else:
                choice = {"index": 0, "text": text, "finish_reason": "stop"}
            self.leave()  # before answering: the client may send its next request at once
            self.reply(h, 200, {"id": "cmpl-1", "object": "text_completion", "model": body["model"],
                                "choices": [choice]})
        finally:
            self.leave()

    def leave(self) -> None:
        with self.lock:
            if threading.get_ident() in self.busy:
                self.busy.discard(threading.get_ident())
                self.inflight -= 1

    @staticmethod
    def reply(h, status: int, payload: dict, headers: dict | None = None) -> None:
        data = json.dumps(payload).encode()
        try:
            h.send_response(status)
            h.send_header("Content-Type", "application/json")
            h.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                h.send_header(k, v)
            h.end_headers()
            h.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up on a slow answer

    def seeds(self) -> list[int]:
        return [e["seed"] for e in self.log if not e["fault"]]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def server():
    fake = FakeOpenAI()
    yield fake
    fake.close()


@pytest.fixture(autouse=True)
def api_key(monkeypatch):
    monkeypatch.setenv("TEST_OPENAI_KEY", KEY)


def openai_toml(url: str, *, concurrency=1, rpm=60000.0, timeout=0.5, batch_size=4, endpoint="completions",
                chat=False, extra="") -> str:
    endpoint_line = f'endpoint = "{endpoint}"' if endpoint else ""
    return f"""
[text]
max_attempts = 3
[text.openai]
base_url = "{url}"
model = "test-model"
api_key_env = "TEST_OPENAI_KEY"
{endpoint_line}
{extra}
concurrency = {concurrency}
requests_per_minute = {rpm}
timeout_s = {timeout}
max_retries = 4
backoff_s = 0.05
max_backoff_s = 0.2
[text.generate]
backend = "openai"
chat = {str(chat).lower()}
batch_size = {batch_size}
max_new_tokens = 200
temperature = 0.9
top_p = 0.98
[text.clean]
min_chars = 100
max_chars = 600
"""


def snippets(root: Path) -> dict[int, str]:
    return {int(p.stem.split("-")[1]): p.read_text(encoding="utf-8") for p in (root / "build/text").glob("snippet-*.txt")}


def test_retries_429_500_and_timeouts_then_resamples(tmp_path, server, capsys):
    server.faults = ["429", "500", "slow"]
    server.short_seeds = {2}  # ID 2's first sample is too short: resampled with the next sub-seed
    config = write_project(tmp_path, openai_toml(server.url), seeds="0-3")
    assert main(["-v", "-c", str(config), "text"]) == 0
    got = snippets(tmp_path)
    assert sorted(got) == [0, 1, 2, 3]
    assert all("(Source:" not in s and len(s) >= 100 for s in got.values())
    faults = [e["fault"] for e in server.log]
    assert faults[:3] == ["429", "500", "slow"]
    # Retry-After: 1 was honoured: the retry came at least a second after the 429.
    assert server.log[1]["t"] - server.log[0]["t"] >= 0.95
    assert sorted(server.seeds()) == [0, 1, 2, 3, 2 + (1 << 32)]
    first = server.log[0]["body"]
    assert first["model"] == "test-model" and first["top_p"] == 0.98 and first["max_tokens"] == 200
    manifest = (tmp_path / "build/text/manifest.json").read_text()
    assert json.loads(manifest)["snippets"]["2"]["attempts"] == 2
    logs = capsys.readouterr()
    assert KEY not in manifest and KEY not in logs.err + logs.out and "retry" in logs.err


def test_rate_limit_and_concurrency(tmp_path):
    server = FakeOpenAI(delay=0.3)
    try:
        config = write_project(tmp_path, openai_toml(server.url, concurrency=2, rpm=600, timeout=5, batch_size=8),
                               seeds="0-7")
        assert main(["-q", "-c", str(config), "text"]) == 0
    finally:
        server.close()
    starts = [e["t"] for e in server.log]
    gaps = [b - a for a, b in zip(starts, starts[1:])]
    # 600 per minute: one start per 0.1 s at most (arrival times jitter a little on a busy machine;
    # without the limiter the two slots would start in pairs, gaps near 0).
    assert len(starts) == 8 and min(gaps) >= 0.05 and starts[-1] - starts[0] >= 0.65
    assert server.max_inflight == 2  # the pool used its two slots, never more


def test_chat_endpoint(tmp_path, server):
    config = write_project(tmp_path, openai_toml(server.url, endpoint="chat", chat=True), seeds="5-6")
    assert main(["-q", "-c", str(config), "text"]) == 0
    assert sorted(snippets(tmp_path)) == [5, 6]
    assert all(e["path"] == "/v1/chat/completions" and e["body"]["messages"][0]["role"] == "user"
               for e in server.log)


def test_bad_key_is_final_and_not_echoed(tmp_path, server, monkeypatch, capsys):
    monkeypatch.setenv("TEST_OPENAI_KEY", "sk-wrong-key-abcdef")
    config = write_project(tmp_path, openai_toml(server.url), seeds="0-1")
    assert main(["-c", str(config), "text"]) == 1
    err = capsys.readouterr().err
    assert "HTTP 401" in err and "sk-wrong-key-abcdef" not in err
    assert len(server.log) <= 2  # no retries on a 4xx other than 429


def test_missing_key_variable_names_it(tmp_path, server, monkeypatch, capsys):
    monkeypatch.delenv("TEST_OPENAI_KEY")
    config = write_project(tmp_path, openai_toml(server.url), seeds="0-1")
    assert main(["-q", "-c", str(config), "text"]) == 1
    assert "TEST_OPENAI_KEY is not set" in capsys.readouterr().err and not server.log


def test_an_answer_without_choices_is_one_line(tmp_path, server, capsys):
    server.faults = ["nochoices"]
    config = write_project(tmp_path, openai_toml(server.url), seeds="0-1")
    assert main(["-q", "-c", str(config), "text"]) == 1
    err = capsys.readouterr().err
    assert "the answer has no choices[0] text or message" in err and "NameError" not in err, err


def test_some_fail_the_rest_are_kept(tmp_path, server, capsys):
    server.short_seeds = {1 + (a << 32) for a in range(3)}  # ID 1 is always too short
    config = write_project(tmp_path, openai_toml(server.url), seeds="0-2")
    assert main(["-q", "-c", str(config), "text"]) == 1
    assert sorted(snippets(tmp_path)) == [0, 2]
    assert "ID 1: too short" in capsys.readouterr().err


@pytest.mark.slow
def test_resume_after_sigkill(tmp_path):
    server = FakeOpenAI(delay=0.25)
    try:
        config = write_project(tmp_path, openai_toml(server.url, batch_size=1, timeout=5), seeds="0-11")
        env = {**os.environ, "PYTHONPATH": str(REPO), "TEST_OPENAI_KEY": KEY}
        proc = subprocess.Popen([sys.executable, "-m", "bakery", "-q", "-c", str(config), "text"], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while len(snippets(tmp_path)) < 4 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        done_before = snippets(tmp_path)
        assert 4 <= len(done_before) < 12, "the run was not killed mid-way"
        for i, text in done_before.items():  # every file on disk is whole
            assert text.endswith("\n") and len(text) > 100
        requests_before = len(server.log)

        assert main(["-q", "-c", str(config), "text"]) == 0
        done_after = snippets(tmp_path)
        assert sorted(done_after) == list(range(12))
        assert all(done_after[i] == text for i, text in done_before.items())
        asked_again = {s for s in (e["seed"] for e in server.log[requests_before:])}
        assert not asked_again & set(done_before)  # finished IDs were not requested again
        assert not list((tmp_path / "build/text").glob(".tmp-*"))
    finally:
        server.close()


def test_backoff_honours_retry_after_and_jitters():
    rng = random.Random(1)
    delays = [backoff_delay(a, base=1.0, cap=8.0, retry_after=None, rng=rng) for a in range(6)]
    assert all(0 <= d <= min(8.0, 2 ** a) for a, d in enumerate(delays)) and len(set(delays)) == 6
    assert backoff_delay(0, base=0.1, cap=1.0, retry_after=5.0, rng=rng) == 5.0
    assert parse_retry_after("3") == 3.0 and parse_retry_after("soon") is None
    assert 50 < parse_retry_after(time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 60))) <= 61


def test_rate_limiter_spaces_starts():
    now = [0.0]
    waits = []
    limiter = RateLimiter(120, clock=lambda: now[0], sleep=lambda s: waits.append(s))
    for _ in range(3):
        limiter.wait()
    assert waits == [0.5, 1.0]  # 120 per minute: starts at 0, 0.5, 1.0


# -- issue 11 item 1: honest text from servers that ignore sampling ----------------------------

def test_server_ignoring_sampling_stops_with_a_clear_message(tmp_path, server, capsys):
    """The duplicate-snippet test: a local OpenAI-shaped server that answers every seed with
    the same text (as transformers serve decodes greedily). Before: exit 0, N equal snippets."""
    server.ignore_sampling = True
    config = write_project(tmp_path, openai_toml(server.url, batch_size=8), seeds="0-15")
    assert main(["-q", "-c", str(config), "text"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "ignores the sampling parameters" in err and "extra_body" in err
    assert len(server.log) == 8  # stopped after the first batch, not after 16 IDs × max_attempts
    got = snippets(tmp_path)
    assert len(set(got.values())) == len(got) <= 1  # nothing identical was published


def test_exact_and_near_duplicates_are_resampled_and_counted(tmp_path, server, capsys):
    first = story(1)
    server.texts = {
        3: first.upper().replace(".", "!"),                          # same words: an exact duplicate
        5: first.replace("for", "during", 1).replace(" days", " nights", 1),  # a few words changed
    }
    config = write_project(tmp_path, openai_toml(server.url), seeds="0-7")
    assert main(["-c", str(config), "text"]) == 0
    got = snippets(tmp_path)
    assert sorted(got) == list(range(8)) and len(set(got.values())) == 8
    manifest = json.loads((tmp_path / "build/text/manifest.json").read_text())["snippets"]
    assert manifest["3"]["rejected"] == ["duplicate of ID 1"] and manifest["3"]["attempts"] == 2
    assert manifest["5"]["rejected"] == ["duplicate of ID 1"] and manifest["5"]["attempts"] == 2
    assert sorted(server.seeds())[-2:] == [3 + (1 << 32), 5 + (1 << 32)]  # resampled with the next sub-seed
    assert "2 duplicate snippet(s) caught and resampled" in capsys.readouterr().err


def test_duplicates_of_snippets_kept_from_an_earlier_run(tmp_path, server):
    config = write_project(tmp_path, openai_toml(server.url), seeds="0-3")
    assert main(["-q", "-c", str(config), "text"]) == 0
    (tmp_path / "build/text/snippet-2.txt").unlink()
    server.texts = {2: story(0)}  # ID 2's first sample now repeats ID 0's kept snippet
    assert main(["-q", "-c", str(config), "text"]) == 0
    assert snippets(tmp_path)[2] != snippets(tmp_path)[0]
    assert json.loads((tmp_path / "build/text/manifest.json").read_text())["snippets"]["2"]["rejected"] \
        == ["duplicate of ID 0"]


def test_extra_body_is_merged_into_every_request(tmp_path, server):
    extra = """extra_body = { top_k = 30, repetition_penalty = 1.1, generation_config = '{"do_sample": true}' }"""
    config = write_project(tmp_path, openai_toml(server.url, extra=extra), seeds="0-2")
    assert main(["-q", "-c", str(config), "text"]) == 0
    for entry in server.log:
        body = entry["body"]
        assert body["top_k"] == 30 and body["repetition_penalty"] == 1.1
        assert body["generation_config"] == '{"do_sample": true}' and body["temperature"] == 0.9
    settings = json.loads((tmp_path / "build/text/manifest.json").read_text())["settings"]
    assert settings["stages"][0]["extra_body"]["top_k"] == 30  # it shapes the text: recorded


@pytest.mark.parametrize("extra, problem", [
    ('extra_body = { seed = 1 }', "text.openai.extra_body.seed: is sent by the bakery already"),
    ('extra_body = { temperature = 1.0 }', "extra_body.temperature: is sent by the bakery already: set the stage's"),
    ('extra_body = { x = { y = nan } }', "text.openai.extra_body.x.y: must be a finite number"),
    ('extra_body = { when = 1979-05-27 }', "text.openai.extra_body.when: must be a string, number"),
    ('extra_body = 3', "text.openai.extra_body: must be a table"),
])
def test_bad_extra_body_is_refused(tmp_path, capsys, extra, problem):
    config = write_project(tmp_path, openai_toml("http://127.0.0.1:9/v1", extra=extra), seeds="0-2")
    assert main(["-q", "-c", str(config), "text"]) == 2
    assert problem in capsys.readouterr().err


def test_base_url_without_v1_fails_after_one_request(tmp_path, server, capsys):
    url = server.url.removesuffix("/v1")
    config = write_project(tmp_path, openai_toml(url, concurrency=4, batch_size=8), seeds="0-7")
    assert main(["-q", "-c", str(config), "text"]) == 1
    err = capsys.readouterr().err.strip()
    assert err == f"bakery: error: text.openai: the server answered 404 at {url}/completions; does base_url need /v1?"
    assert len(server.log) == 1  # checked once, not the whole batch


@pytest.mark.parametrize("chat, path", [(True, "/v1/chat/completions"), (False, "/v1/completions")])
def test_endpoint_follows_the_prompt_style_by_default(tmp_path, server, chat, path):
    config = write_project(tmp_path, openai_toml(server.url, endpoint=None, chat=chat), seeds="0-1")
    assert main(["-q", "-c", str(config), "text"]) == 0
    assert {e["path"] for e in server.log} == {path}
    assert ("messages" in server.log[0]["body"]) == chat


# -- issue 10 item 1: a resumed text stage does not claim the settings changed ------------------

def test_resume_and_moved_project_keep_settings_but_a_real_change_is_reported(tmp_path, server, capsys):
    import shutil

    first = tmp_path / "first"
    config = write_project(first, openai_toml(server.url), seeds="0-3")
    assert main(["-q", "-c", str(config), "text"]) == 0
    written = json.loads((first / "build/text/manifest.json").read_text())["settings"]
    assert written["stages"][0]["prompt"] == "content/prompts/plot.txt"  # root-relative

    def rerun(root: Path) -> tuple[str, dict]:
        (root / "build/text/snippet-1.txt").unlink()  # as if the run had been interrupted
        assert main(["-c", str(root / "content/site.toml"), "text"]) == 0
        return capsys.readouterr().err, json.loads((root / "build/text/manifest.json").read_text())

    err, manifest = rerun(first)
    assert "other settings" not in err and "earlier_settings" not in manifest
    moved = tmp_path / "moved"
    shutil.copytree(first, moved)  # the project folder moves: absolute paths differ
    err, manifest = rerun(moved)
    assert "other settings" not in err and "earlier_settings" not in manifest

    toml = moved / "content/site.toml"
    toml.write_text(toml.read_text().replace("temperature = 0.9", "temperature = 0.8"))
    err, manifest = rerun(moved)
    assert "3 snippet(s) made with other settings are kept" in err
    assert manifest["earlier_settings"]["stages"][0]["temperature"] == 0.9


def test_each_answer_is_reported_as_progress(tmp_path, server):
    from bakery.config import load_config
    from bakery.text.backends import Request
    from bakery.text.backends.openai_backend import OpenAIBackend

    cfg = load_config(write_project(tmp_path, openai_toml(server.url, concurrency=3), seeds="0-4")).text
    calls = []
    answers = OpenAIBackend(cfg.openai, KEY).generate([Request("Plot:", seed) for seed in range(5)], cfg.stages[0],
                                                      calls.append)
    assert len(answers) == 5 and calls == [1.0] * 5  # from the pool's threads too
