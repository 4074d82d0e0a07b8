"""The command line as a user meets it: help with examples, commands that validate only what
they use, output folders checked before work, OS errors as one line, spinners."""

from __future__ import annotations

import errno
import os
import re
import time

import pytest

from bakery import cli_help
from bakery.cli import build_parser, main
from bakery.config import load_config
from bakery.errors import ConfigError
from tests.conftest import FIXTURES, MINIMAL_BANDS, REPO

SG2_PKL = FIXTURES / "stylegan2" / "stylegan2_tf1_synthetic_r64.pkl"


def help_text(capsys, argv) -> str:
    with pytest.raises(SystemExit) as stop:
        main(argv + ["--help"])
    assert stop.value.code == 0
    return capsys.readouterr().out


def subcommands() -> list[str]:
    parser = build_parser()
    return list(next(a for a in parser._actions if a.dest == "command").choices)


# --- help -----------------------------------------------------------------------------------

def test_top_help_lists_stages_in_pipeline_order(capsys):
    text = help_text(capsys, [])
    order = ["generate", "upscale", "compress", "text", "site", "serve", "deploy"]
    places = [re.search(rf"^  {name} ", text, re.M).start() for name in order]
    assert places == sorted(places)
    for name in subcommands():  # every command has its one line
        assert re.search(rf"^  {re.escape(name)}\s+\S", text, re.M), name
    assert "bakery generate --model X.pkl --seeds" in text


@pytest.mark.parametrize("command", subcommands())
def test_every_command_help_has_examples_and_a_doc(capsys, command):
    text = help_text(capsys, [command])
    examples = text.split("examples:", 1)[1]
    lines = [ln.strip() for ln in examples.splitlines() if ln.strip().startswith("bakery ")]
    assert len(lines) >= (1 if command == "archive" else 2)
    assert all(ln.split()[1] in (command, "-q", "-c", "-v") for ln in lines)
    doc = re.search(r"^read: (\S+)$", text, re.M).group(1)
    assert (REPO / doc).is_file()
    for line in lines:  # each example parses (what it names need not exist)
        argv = [a for a in line.split("#")[0].split()[1:]]
        build_parser().parse_args(argv)


# --- validate only what a command uses -----------------------------------------------------

def bare_project(tmp_path, extra: str = "") -> os.PathLike:
    """content/site.toml with bands only: no templates/, static/ or prompt files."""
    (tmp_path / "content").mkdir()
    path = tmp_path / "content" / "site.toml"
    path.write_text(f'[images]\nmodel = "{SG2_PKL}"\n' + MINIMAL_BANDS + extra)
    return path


def test_sections_validate_only_when_used(tmp_path):
    path = bare_project(tmp_path, "\n[text]\npipeline = 'prompted'\n[deploy]\ntargets = 'nope'\n")
    config = load_config(path, sections=["images"])
    assert config.images.ids == [0, 1, 2, 3, 4, 5]
    with pytest.raises(ConfigError, match=r"deploy.targets"):  # read anyway: validated then
        config.deploy
    with pytest.raises(ConfigError, match=r"site.templates_dir: directory not found"):
        load_config(path)  # every section, as `bake` asks
    with pytest.raises(ConfigError, match=r"text.generate.prompt: file not found"):
        load_config(path, sections=["text"])


def test_generate_runs_in_a_folder_without_site_files(tmp_path, capsys):
    path = bare_project(tmp_path, "\n[text.generate]\nprompt = 'content/prompts/none.txt'\n")
    assert main(["-q", "-c", str(path), "generate"]) == 0
    assert len(list((tmp_path / "build" / "raw").glob("example-*.png"))) == 6
    assert main(["-q", "-c", str(path), "text"]) == 2  # the stage that needs the prompt says so
    assert "text.generate.prompt: file not found" in capsys.readouterr().err


@pytest.mark.parametrize("argv, usage, error", [
    (["generate", "--bogus"], "usage: bakery generate ", "bakery generate: error: unrecognized arguments: --bogus"),
    (["deploy", "s3", "extra"], "usage: bakery deploy ", "bakery deploy: error: unrecognized arguments: extra"),
    (["--bogus", "site"], "usage: bakery [-h]", "bakery: error: unrecognized arguments: --bogus"),
])
def test_an_unknown_option_gets_the_usage_of_the_command_it_was_given_to(capsys, argv, usage, error):
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith(usage) and err[-1] == error, err


def test_a_log_line_is_never_glued_to_a_progress_bar(monkeypatch):
    """The Ray per-worker summary is logged while the stage's bar is still open (issue 23):
    the line goes above the bar, starting a line of its own."""
    import io
    import logging
    import sys

    from bakery.progress import progress, setup_logging

    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    setup_logging(0)
    bar = progress(None, desc="images", total=10, unit="img", mininterval=0)
    bar.update(9)
    logging.getLogger("bakery.ray").info("ray generate: 10 item(s) on 2 worker(s)")
    bar.update(1)
    bar.close()
    text = stream.getvalue()
    assert "90%" in text  # the bar was drawn before the line
    assert re.search(r"(^|\r|\n)ray generate: 10 item\(s\) on 2 worker\(s\)\n", text), repr(text)


# --- output folders and OS errors ------------------------------------------------------------

def test_unwritable_output_is_one_line_before_any_work(tmp_path, capsys):
    path = bare_project(tmp_path)
    (tmp_path / "build").mkdir()
    (tmp_path / "build" / "raw").write_text("a file where the stage's output folder belongs")
    started = time.monotonic()
    assert main(["-c", str(path), "generate"]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "cannot write the output folder" in err and str(tmp_path / "build" / "raw") in err
    assert time.monotonic() - started < 5  # no model was loaded


@pytest.mark.parametrize("code,words", [(errno.EACCES, "permission denied"), (errno.EROFS, "read-only file system"),
                                        (errno.ENOSPC, "no space left on device")])
def test_os_errors_during_a_stage_are_one_line(tmp_path, capsys, monkeypatch, code, words):
    import bakery.cli

    def fail(config, args):
        raise OSError(code, os.strerror(code), str(tmp_path / "public" / "example-3.jpg"))

    monkeypatch.setattr(bakery.cli, "action", lambda name: fail)
    path = bare_project(tmp_path)
    assert main(["-c", str(path), "compress"]) == 1
    err = capsys.readouterr().err.strip()
    assert err == f"bakery: error: compress: {tmp_path / 'public' / 'example-3.jpg'}: {words}"


def test_ensure_writable_probe(tmp_path, monkeypatch):
    import tempfile

    from bakery.preflight import OutputNotWritable, ensure_writable

    assert ensure_writable(tmp_path / "new" / "deeper") == tmp_path / "new" / "deeper"
    assert list(tmp_path.iterdir()) == []  # probing creates nothing

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    with pytest.raises(OutputNotWritable, match=rf"{re.escape(str(tmp_path))}: read-only file system"):
        ensure_writable(tmp_path / "public", "site folder")


def test_compress_before_upscale_is_one_summary_line(tmp_path, capsys):
    path = bare_project(tmp_path)
    path.write_text(path.read_text().replace('seeds = "4-5"', 'seeds = "4-35"'))
    assert main(["-c", str(path), "compress"]) == 1
    err = capsys.readouterr().err.strip()
    assert err == "bakery: error: compress: 36 upscaled images missing (IDs 0-35): run `bakery upscale` first"


# --- spinner ----------------------------------------------------------------------------------

def test_spinner_shows_elapsed_time_on_a_terminal(monkeypatch):
    import sys

    from bakery.progress import spinner

    import fcntl
    import struct
    import termios

    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))  # a new pty is 0 columns wide
    with open(slave, "w", closefd=True) as tty:
        monkeypatch.setattr(sys, "stderr", tty)
        with spinner("loading model", delay=0.0) as s:
            time.sleep(0.6)
        with spinner("quick step", delay=5.0):  # done before its delay: prints nothing
            pass
        with spinner("quiet step", quiet=True, delay=0.0):
            time.sleep(0.3)
        import select

        assert select.select([master], [], [], 2)[0], "the spinner wrote nothing"
        shown = os.read(master, 65536).decode("utf-8", "replace")  # before the terminal closes
    os.close(master)
    assert "loading model 0 s" in shown and s.elapsed >= 0.6
    assert "quick step" not in shown and "quiet step" not in shown


def test_no_project_hints_at_the_quick_path(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["figures"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("bakery: error: content/site.toml: config file not found "
                   "(no project here? try: bakery figures --model X.pkl)")
