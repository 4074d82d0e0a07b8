"""An OpenAI-compatible HTTP API (completions or chat completions), with the stdlib only.

Politeness and robustness, in that order:
- at most `concurrency` requests in flight (a thread pool of that size);
- request starts spaced at least 60/requests_per_minute seconds apart, across all threads;
- 429, 5xx, timeouts and dropped connections are retried up to max_retries times, waiting
  the server's Retry-After when it sends one, otherwise an exponential backoff
  (backoff_s · 2^attempt, capped at max_backoff_s) with full jitter so that many clients
  that failed together do not come back together;
- any other 4xx is final: the request itself is wrong (bad key, unknown model);
- the very first request goes alone, before the pool sends the rest: a wrong base_url (a
  404, typically a missing /v1) stops the bake after one request, not one batch.
The API key travels only in the Authorization header: it is never logged, never put in an
error message and never written to the manifest.
"""

from __future__ import annotations

import email.utils
import json
import logging
import random
import socket
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

from bakery.errors import BakeryError
from bakery.redact import redact
from bakery.text.backends import Progress, Request, finish_completion
from bakery.text.config import OpenAIConfig, StageConfig

log = logging.getLogger("bakery.text")

RETRY_STATUS = {408, 409, 425, 429}
MAX_STOP_STRINGS = 4  # the OpenAI API accepts at most four
RETRY_AFTER_LIMIT = 600.0


class RateLimiter:
    """Spaces request starts at least `interval` seconds apart, shared by all threads."""

    def __init__(self, per_minute: float, clock=time.monotonic, sleep=time.sleep):
        self.interval = 60.0 / per_minute
        self.clock, self.sleep = clock, sleep
        self.lock = threading.Lock()
        self.next_start = 0.0

    def wait(self) -> None:
        with self.lock:  # reserve a slot under the lock, sleep outside it
            now = self.clock()
            start = max(now, self.next_start)
            self.next_start = start + self.interval
        if start > now:
            self.sleep(start - now)


class RetryableError(Exception):
    def __init__(self, what: str, retry_after: float | None = None):
        super().__init__(what)
        self.retry_after = retry_after


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After is either seconds or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def backoff_delay(attempt: int, base: float, cap: float, retry_after: float | None,
                  rng: random.Random) -> float:
    """Full jitter on the exponential step; a server's Retry-After is a floor, not a suggestion
    (up to RETRY_AFTER_LIMIT, so that a broken header cannot park the bake for days)."""
    delay = rng.uniform(0.0, min(cap, base * 2 ** attempt))
    return max(delay, min(retry_after, RETRY_AFTER_LIMIT)) if retry_after is not None else delay


class OpenAIBackend:
    def __init__(self, cfg: OpenAIConfig, api_key: str | None, sleep=time.sleep):
        self.cfg = cfg
        self._api_key = api_key
        self.limiter = RateLimiter(cfg.requests_per_minute, sleep=sleep)
        self.sleep = sleep
        self.rng = random.Random()
        self.requests_sent = 0
        self.retries = 0
        self._count_lock = threading.Lock()
        self.answered: set[str] = set()  # URLs that have answered once: base_url is right

    def __repr__(self) -> str:  # never show the key
        return f"OpenAIBackend({self.cfg.base_url!r}, endpoint={self.cfg.endpoint!r})"

    def redact(self, message) -> str:
        """Every error message: without the key (a server may echo it) or base_url's user:password@."""
        return redact(message, [self._api_key])

    def identity(self) -> dict:
        return {"backend": "openai", "base_url": self.redact(self.cfg.base_url), "endpoint": self.cfg.endpoint or "auto",
                "extra_body": self.cfg.extra_body}

    def generate(self, requests: list[Request], stage: StageConfig, progress: Progress | None = None) -> list[str]:
        def complete(request: Request) -> str:
            text = self.complete(request, stage)
            if progress is not None:
                progress(1.0)  # from the pool's threads: ItemProgress takes a lock
            return text

        first: list[str] = []
        if requests and self.url_for(stage) not in self.answered:
            first = [complete(requests[0])]  # alone: checks base_url and endpoint
            requests = requests[1:]
        with ThreadPoolExecutor(max_workers=self.cfg.concurrency, thread_name_prefix="openai") as pool:
            return first + list(pool.map(complete, requests))

    def complete(self, request: Request, stage: StageConfig) -> str:
        chat = self.cfg.endpoint_for(stage) == "chat"
        body = self.payload(request, stage)
        answer = self.post_with_retries(body, self.url_for(stage))
        self.answered.add(self.url_for(stage))
        return finish_completion(self.extract_text(answer, self.url_for(stage)), stage, chat)

    def payload(self, request: Request, stage: StageConfig) -> dict:
        body: dict = {
            **self.cfg.extra_body,  # first: the keys the bakery sets are refused there anyway
            "model": str(stage.model),
            "max_tokens": stage.max_new_tokens,
            "temperature": stage.temperature,
            "top_p": stage.top_p,
            "seed": request.seed,
            "n": 1,
        }
        if stage.stop:
            body["stop"] = list(stage.stop[:MAX_STOP_STRINGS])
        if self.cfg.endpoint_for(stage) == "chat":
            # A chat endpoint cannot be pre-filled portably: ask for the prefix as the start.
            content = request.prompt + (f"\n\nBegin with: {stage.prefix}" if stage.prefix else "")
            body["messages"] = [{"role": "user", "content": content}]
        else:
            body["prompt"] = request.prompt + stage.prefix
        return body

    def url_for(self, stage: StageConfig) -> str:
        """The endpoint decides the request shape: explicitly set, or the stage's `chat`."""
        path = "chat/completions" if self.cfg.endpoint_for(stage) == "chat" else "completions"
        return f"{self.cfg.base_url}/{path}"

    def extract_text(self, answer: dict, url: str) -> str:
        try:
            choice = answer["choices"][0]
            text = choice["message"]["content"] if "message" in choice else choice["text"]
        except (KeyError, IndexError, TypeError):
            raise BakeryError(self.redact(f"text.openai: {url}: the answer has no choices[0] text or message")) from None
        if not isinstance(text, str):
            raise BakeryError(self.redact(f"text.openai: {url}: the answer's text is not a string"))
        return text

    def post_with_retries(self, body: dict, url: str) -> dict:
        data = json.dumps(body, allow_nan=False).encode("utf-8")
        for attempt in range(self.cfg.max_retries + 1):
            self.limiter.wait()
            try:
                return self.post_once(data, url)
            except RetryableError as exc:
                if attempt == self.cfg.max_retries:
                    raise BakeryError(self.redact(f"text.openai: {url}: giving up after "
                                                  f"{attempt + 1} tries: {exc}")) from None
                delay = backoff_delay(attempt, self.cfg.backoff_s, self.cfg.max_backoff_s,
                                      exc.retry_after, self.rng)
                log.debug("text.openai: %s; retry %d in %.2fs", self.redact(exc), attempt + 1, delay)
                with self._count_lock:
                    self.retries += 1
                self.sleep(delay)
        raise AssertionError("unreachable")

    def post_once(self, data: bytes, url: str) -> dict:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        req = urllib.request.Request(url, data=data, headers=headers, method="POST")
        with self._count_lock:
            self.requests_sent += 1
        try:
            with urllib.request.urlopen(req, timeout=self.cfg.timeout_s) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            detail = self.redact(server_message(exc))
            if exc.code in RETRY_STATUS or exc.code >= 500:
                raise RetryableError(f"HTTP {exc.code}{detail}",
                                     parse_retry_after(exc.headers.get("Retry-After"))) from None
            if exc.code == 404 and url not in self.answered:
                raise BakeryError(self.redact(not_found_message(url, self.cfg.base_url, detail))) from None
            raise BakeryError(self.redact(f"text.openai: {url}: HTTP {exc.code}{detail}")) from None
        except (TimeoutError, socket.timeout):
            raise RetryableError(f"no answer within {self.cfg.timeout_s:g}s") from None
        except (urllib.error.URLError, ConnectionError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            if isinstance(reason, (TimeoutError, socket.timeout)):
                raise RetryableError(f"no answer within {self.cfg.timeout_s:g}s") from None
            raise RetryableError(self.redact(f"connection failed: {reason}")) from None
        try:
            return json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise RetryableError("the answer is not JSON") from None


def not_found_message(url: str, base_url: str, detail: str = "") -> str:
    """The server's own words stay (an unknown model is a 404 at OpenAI too)."""
    hint = ("does base_url need /v1?" if not base_url.rstrip("/").endswith("/v1")
            else "is base_url right, and do the server and model offer this endpoint (text.openai.endpoint)?")
    return f"text.openai: the server answered 404 at {url}{detail}; {hint}"


def server_message(exc: urllib.error.HTTPError) -> str:
    """The server's own error message, shortened (it never contains our key: we do not echo it)."""
    try:
        body = json.loads(exc.read() or b"{}")
        message = body.get("error", {}).get("message") if isinstance(body.get("error"), dict) else body.get("error")
    except (json.JSONDecodeError, AttributeError, OSError, UnicodeDecodeError):
        message = None
    return f" ({str(message)[:200]})" if message else ""
