"""The docs and the command line agree: every `bakery ...` command line quoted in README.md
and docs/ names a real command and real options, and every option that `--help` lists is
documented in docs/cli.md under its command's heading."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from bakery.cli import build_parser

REPO = Path(__file__).resolve().parent.parent
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
REFERENCE = REPO / "docs" / "cli.md"
GLOBAL_OPTIONS = {"-h", "--help", "-c", "--config", "-q", "--quiet", "-v", "--verbose", "--version"}
# Where a quoted command line ends: a comment, a pipe or another command, an arrow, prose.
LINE_END = re.compile(r"\s(#|\||&&|;|→|->|>|\()\s?.*$")


def commands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def options_of(parser: argparse.ArgumentParser) -> set[str]:
    return {s for a in parser._actions for s in a.option_strings}


def documented_options(parser: argparse.ArgumentParser) -> list[list[str]]:
    """Each option of a command beyond the global ones, as its list of spellings."""
    return [a.option_strings for a in parser._actions
            if a.option_strings and not set(a.option_strings) & GLOBAL_OPTIONS]


def quoted_command_lines() -> list[tuple[str, str]]:
    """(where, text after `bakery `) for each bakery command line in a code block or code span."""
    found = []
    for doc in DOCS:
        in_block = False
        for number, line in enumerate(doc.read_text(encoding="utf-8").splitlines(), 1):
            where = f"{doc.relative_to(REPO)}:{number}"
            if line.lstrip().startswith("```"):
                in_block = not in_block
                continue
            spans = [line] if in_block else re.findall(r"`([^`]+)`", line)
            for span in spans:
                for match in re.finditer(r"(?:^|[\s$(])bakery\s+(.*)$", span):
                    found.append((where, LINE_END.sub("", match.group(1)).strip()))
    return found


def invocation(text: str) -> tuple[str | None, list[str]]:
    """The command and the option words of one quoted command line (`[--a B]` → `--a`)."""
    words = [w.strip("[]()…,:") for w in text.split()]
    words = [w.rstrip(".") if not w.startswith(".") else w for w in words]
    command, options, skip_value = None, [], False
    for word in words:
        if skip_value:
            skip_value = False
            continue
        if word in ("-c", "--config"):
            skip_value = True  # -c FILE before the command
            continue
        if word.startswith("-") and len(word) > 1 and not re.fullmatch(r"-\d[\d.]*", word):
            options.append(word.split("=", 1)[0])
        elif command is None and re.fullmatch(r"[a-z][a-z-]*", word):
            command = word
    return command, options


def test_every_quoted_command_line_names_a_real_command_and_real_options():
    known = commands()
    anywhere = set().union(*map(options_of, known.values()))
    lines = quoted_command_lines()
    assert len(lines) > 50, "the docs' command lines were not found: is the extraction broken?"
    problems = []
    for where, text in lines:
        command, options = invocation(text)
        if command is None:
            wildcard = text.startswith(("...", "…"))  # `bakery ... --ray`: any command
            if not set(options) <= GLOBAL_OPTIONS | (anywhere if wildcard else set()):
                problems.append(f"{where}: `bakery {text}`: options without a command")
            continue
        if command not in known:
            problems.append(f"{where}: `bakery {text}`: no command {command!r}")
            continue
        unknown = [o for o in options if o not in options_of(known[command]) | GLOBAL_OPTIONS]
        if unknown:
            problems.append(f"{where}: `bakery {text}`: {command} has no {', '.join(unknown)}")
    assert not problems, "\n".join(problems)


def reference_sections() -> dict[str, str]:
    """docs/cli.md's text under each `## bakery COMMAND` heading."""
    sections, current = {}, None
    for line in REFERENCE.read_text(encoding="utf-8").splitlines():
        heading = re.fullmatch(r"##\s+`?bakery ([a-z-]+)`?.*", line)
        if heading:
            current = heading.group(1)
            sections[current] = ""
        elif line.startswith("## "):
            current = None
        elif current:
            sections[current] += line + "\n"
    return sections


@pytest.mark.parametrize("name", sorted(commands()))
def test_every_command_and_option_in_help_is_in_the_reference(name):
    sections = reference_sections()
    assert name in sections, f"docs/cli.md has no '## bakery {name}' section"
    missing = [spellings[0] for spellings in documented_options(commands()[name])
               if not any(f"`{s}" in sections[name] for s in spellings)]
    assert not missing, f"docs/cli.md, bakery {name}: undocumented {', '.join(missing)}"


def test_the_reference_documents_no_option_a_command_lacks():
    known = commands()
    problems = []
    for name, text in reference_sections().items():
        if name not in known:
            problems.append(f"docs/cli.md documents a command {name!r} that does not exist")
            continue
        for option in re.findall(r"`(--?[a-zA-Z][\w-]*)", text):
            if option not in options_of(known[name]) | GLOBAL_OPTIONS:
                problems.append(f"docs/cli.md, bakery {name}: {option} does not exist")
    assert not problems, "\n".join(problems)
