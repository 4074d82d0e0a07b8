"""Turn raw model output into a publishable snippet, or say why it is not one.

The rules run in a fixed order, each a small function so that it can be tested alone:

1. cut at the first end-of-text marker and drop everything after it (past the marker the
   model wanders off into unrelated text: sports news, forum footers);
2. strip " (Source: …)" and "[Written by …]" tails, the credit lines of scraped synopses,
   and markdown emphasis, bullets and headings (chat models like them; the page shows plain
   text); reject "Title: … / Genre: … / Setting: …" forms, which are not a story;
3. normalize unicode (NFKC, no control or zero-width characters) and whitespace
   (single spaces, paragraphs separated by one blank line);
   a first line that is only a title ("Title: X" or a quoted line) becomes the page's
   `_X_: ` prefix; a lone unmatched opening quote goes;
4. reject snippets containing a word from reject_words (the page is public);
5. drop a trailing unfinished sentence when what remains is still long enough,
   otherwise end the fragment with an ellipsis;
6. cap the length at a sentence end (or a word end plus an ellipsis);
7. reject snippets that are too short or degenerate (the same phrase over and over);
8. reject snippets that echo the prompt: more than max_echo of the prompt's word n-grams
   (content words only; those inside echo_allow phrases and the stage prefix excepted)
   repeated, e.g. "in this magazine guide to a new summer season's premieres" from a
   prompt asking for "the entry … in a magazine's guide to this season's premieres".

A leading ``_Title_:`` prefix (the two-stage pipeline's format, shown in italics by the
page) survives every rule and is never cut into.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from dataclasses import dataclass

DEFAULT_END_MARKERS = ("<|endoftext|>", "<|im_end|>", "<|end_of_text|>", "</s>")
SENTENCE_END = re.compile(r"""[.!?…。！？]["'”’»)\]]*(?=\s|$)""")
SOURCE_TAIL = re.compile(r"\s*[(\[](?:source|sources|written by)\b[^()\[\]\n]*[)\]]", re.IGNORECASE)
TITLE_PREFIX = re.compile(r"^_[^_\n]{1,300}_:[ \t]*")
MARKDOWN_MARKS = re.compile(r"\*\*|^[ \t]*(?:[*•]|-(?=\s)|#+)[ \t]+", re.MULTILINE)
MARKDOWN_EMPHASIS = re.compile(r"\*(\S[^*\n]*?)\*")
FORM_LINE = re.compile(r"^[ \t]*[A-Z][\w '-]{0,24}:[ \t]*\S", re.MULTILINE)
# A first line that is only a title: 'Title: "X"', 'Title: X', '"X"', or a short line without
# sentence punctuation ("The Last Lantern: Part 1") followed by the story.
TITLE_LINE = re.compile(r"^(?:title:\s*)?([\"“][^\"“”\n_]{2,80}[\"”]|<<[^<>\n_]{2,80}>>|«[^«»\n_]{2,80}»|(?<=:)[ \t]*[^\"“”\n_.!?]{2,80}"
                        r"|[A-Z0-9][^\"“”\n_.!?]{1,99})[ \t]*\n", re.IGNORECASE)
DEFAULT_REJECT_WORDS = ("prostitute", "rape", "porn", "pedophile", "incest", "nazi", "hitler")
# Words too common to make a phrase an echo: an n-gram counts only when none of its words is one.
STOPWORDS = frozenset("""
a about above after again against all also am an and any are as at be because been before being
below between both but by can could did do does doing down during each either every few for from
further had has have having he her here hers herself him himself his how i if in into is it its
itself just me might more most must my myself neither no nor not now of off on once only or other
our ours ourselves out over own same she should so some such than that the their theirs them
themselves then there these they this those through to too under until up upon us very was we
were what when where which while who whom whose why will with would yet you your yours yourself
""".split())
NOT_PLURAL = frozenset({"series", "species", "news", "lens", "chaos", "always", "perhaps", "whereas"})
PHRASE_BREAK = re.compile(r"[^\w\s'’-]+|\s[-–—]\s")  # n-grams do not run across punctuation
INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad"), None)


@dataclass(frozen=True)
class CleanRules:
    min_chars: int = 150
    max_chars: int = 700
    ellipsis: str = "…"
    end_markers: tuple[str, ...] = DEFAULT_END_MARKERS
    repeat_ngram: int = 4
    max_repeat_fraction: float = 0.35
    reject_words: tuple[str, ...] = DEFAULT_REJECT_WORDS
    echo_ngram: int = 2  # 0: no prompt-echo rule
    max_echo: int = 5
    echo_allow: tuple[str, ...] = ()


@dataclass(frozen=True)
class Cleaned:
    """The cleaned text, or None with the reason it was rejected."""

    text: str | None
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.text is not None


def cut_at_end_marker(text: str, markers: tuple[str, ...]) -> str:
    positions = [i for i in (text.find(m) for m in markers if m) if i >= 0]
    return text[:min(positions)] if positions else text


def strip_source_tails(text: str) -> str:
    return SOURCE_TAIL.sub("", text)


def strip_markdown(text: str) -> str:
    """**bold**, *emphasis*, bullets and headings → plain text (single underscores stay:
    `_Title_` is the page's own markup)."""
    return MARKDOWN_EMPHASIS.sub(r"\1", MARKDOWN_MARKS.sub("", text))


def looks_like_form(text: str, max_fields: int = 2) -> bool:
    """Three or more "Label: value" lines: a fact sheet, not a plot."""
    return len(FORM_LINE.findall(text)) > max_fields


def normalize(text: str) -> str:
    """NFKC, no control characters, single spaces, paragraphs split by exactly one blank line."""
    text = unicodedata.normalize("NFKC", text).translate(INVISIBLE)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = "".join(ch if ch == "\n" or unicodedata.category(ch)[0] != "C" else " " for ch in text)
    paragraphs = re.split(r"\n\s*\n", text)
    lines = (" ".join(p.split()) for p in paragraphs)
    return "\n\n".join(line for line in lines if line)


def promote_title(text: str) -> str:
    """'Title: "Night Bloom"\n\nStory…' or '"Night Bloom"\nStory…' → '_Night Bloom_: Story…'."""
    if TITLE_PREFIX.match(text):
        return text
    m = TITLE_LINE.match(text)
    if not m or not text[m.end():].strip():
        return text
    title = m.group(1).strip().strip("\"“”<>«»").strip()
    return f"_{title}_: {text[m.end():].lstrip()}"


def drop_unmatched_quote(text: str) -> str:
    """Models often open a quotation they never close; an odd leading quote goes."""
    head, body = split_title(text)
    if body.startswith(("\"", "“")) and (body.count("\"") + body.count("“") + body.count("”")) % 2:
        return head + body[1:]
    return text


def rejected_word(text: str, words: tuple[str, ...]) -> str:
    for word in words:
        if re.search(rf"\b{re.escape(word)}", text, re.IGNORECASE):
            return word
    return ""


def split_title(text: str) -> tuple[str, str]:
    """('_Title_: ', rest) when the text starts with the page's title prefix, else ('', text)."""
    m = TITLE_PREFIX.match(text)
    return (text[:m.end()], text[m.end():]) if m else ("", text)


def last_sentence_end(text: str, limit: int | None = None) -> int:
    """Index just past the last sentence end at or before `limit` (0 if there is none)."""
    best = 0
    for m in SENTENCE_END.finditer(text):
        if limit is not None and m.end() > limit:
            break
        best = m.end()
    return best


def finish_sentence(text: str, min_chars: int, ellipsis: str) -> str:
    """Drop an unfinished last sentence if enough text remains, else mark it with an ellipsis."""
    head, body = split_title(text)
    if not body or last_sentence_end(body) == len(body):
        return text
    end = last_sentence_end(body)
    if end and len(head) + end >= min_chars:
        return head + body[:end]
    return head + body.rstrip(" ,;:-—") + ellipsis


def cap_length(text: str, max_chars: int, ellipsis: str) -> str:
    """At most max_chars: cut at the last sentence end that fits, else at a word end + ellipsis."""
    if len(text) <= max_chars:
        return text
    head, body = split_title(text)
    room = max_chars - len(head)
    end = last_sentence_end(body, room)
    if end >= room // 2:  # a sentence end reasonably close to the limit
        return head + body[:end]
    room -= len(ellipsis)
    cut = body.rfind(" ", 0, room + 1)
    cut = cut if cut > 0 else room
    return head + body[:cut].rstrip(" ,;:-—") + ellipsis


def repeat_fraction(text: str, n: int) -> float:
    """Share of word n-grams that repeat an earlier one (0: all distinct, → 1: one loop)."""
    words = re.findall(r"\w+", text.lower())
    grams = [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]
    if len(grams) < 2:
        return 0.0
    return 1.0 - len(Counter(grams)) / len(grams)


def is_degenerate(text: str, rules: CleanRules) -> str:
    """Why the text is a degenerate loop, or '' if it reads as text."""
    fraction = repeat_fraction(text, rules.repeat_ngram)
    if fraction > rules.max_repeat_fraction:
        return f"degenerate repetition ({fraction:.0%} of {rules.repeat_ngram}-word phrases repeat)"
    if re.search(r"(\S)\1{15,}", text):
        return "degenerate repetition (a character repeated 16+ times)"
    lines = [line for line in text.split("\n") if line.strip()]
    if len(lines) >= 3 and Counter(lines).most_common(1)[0][1] >= 3:
        return "degenerate repetition (the same paragraph 3+ times)"
    return ""


def fold(word: str) -> str:
    """One spelling per word for comparing phrases: "premieres" = "premiere", "entries" = "entry"."""
    if word in NOT_PLURAL or len(word) <= 3 or word.endswith(("ss", "us", "is")):
        return word
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    return word[:-1] if word.endswith("s") else word


def content_ngrams(text: str, n: int) -> set[tuple[str, ...]]:
    """The word n-grams of `text` without a stopword, within punctuation-free stretches,
    lowercased, possessives and plurals folded ("a magazine's guide" → ("magazine", "guide"))."""
    grams = set()
    for stretch in PHRASE_BREAK.split(text.lower().replace("’", "'")):
        words = [w[:-2] if w.endswith("'s") else w for w in re.findall(r"[^\W_]+(?:'[^\W_]+)*", stretch)]
        for i in range(len(words) - n + 1):
            gram = words[i:i + n]
            if not any(w in STOPWORDS or "'" in w for w in gram):
                grams.add(tuple(fold(w) for w in gram))
    return grams


def prompt_echo(text: str, prompt: str, rules: CleanRules, prefix: str = "") -> list[str]:
    """The prompt's phrases (word n-grams) that the text repeats, sorted; phrases inside
    echo_allow and the stage's own prefix (which every snippet starts with) do not count."""
    n = rules.echo_ngram
    allowed = set().union(*(content_ngrams(phrase, n) for phrase in (*rules.echo_allow, prefix)))
    echoed = (content_ngrams(prompt, n) - allowed) & content_ngrams(text, n)
    return sorted(" ".join(gram) for gram in echoed)


def echo_reason(text: str, prompt: str, rules: CleanRules, prefix: str = "") -> str:
    """Why the text counts as an echo of its prompt, or '' if it does not."""
    if not rules.echo_ngram or not prompt:
        return ""
    echoed = prompt_echo(text, prompt, rules, prefix)
    if len(echoed) <= rules.max_echo:
        return ""
    shown = ", ".join(repr(e) for e in echoed[:4]) + (", …" if len(echoed) > 4 else "")
    return (f"echoes the prompt: repeats {shown} ({len(echoed)} of its {rules.echo_ngram}-word phrases; "
            f"max_echo = {rules.max_echo})")


def clean(raw: str, rules: CleanRules, prompt: str = "", prefix: str = "") -> Cleaned:
    """`prompt`: the text the model was given (checked for echoes, rule 8); `prefix`: the
    stage prefix the text starts with (exempt from that check)."""
    text = cut_at_end_marker(raw, rules.end_markers)
    text = strip_markdown(strip_source_tails(text))
    if looks_like_form(text):
        return Cleaned(None, "a list of labelled fields, not a story")
    # an unmatched quote goes first, so that '"Title\n\nStory' still yields a title
    text = normalize(promote_title(drop_unmatched_quote(text.strip())))
    if not text:
        return Cleaned(None, "empty output")
    word = rejected_word(text, rules.reject_words)
    if word:
        return Cleaned(None, f"contains a rejected word ({word!r})")
    text = finish_sentence(text, rules.min_chars, rules.ellipsis)
    text = cap_length(text, rules.max_chars, rules.ellipsis)
    if len(text) < rules.min_chars:
        return Cleaned(None, f"too short ({len(text)} < {rules.min_chars} characters)")
    reason = is_degenerate(text, rules) or echo_reason(text, prompt, rules, prefix)
    if reason:
        return Cleaned(None, reason)
    return Cleaned(text)
