"""A full disk (issue 23, item 3): one line naming the stage, the file being written, the
space it needed and the space there was; never `?: no space left on device`.

The disk is a real one: a small tmpfs mounted for the test (which needs root, or a user
allowed to mount; the tests are skipped with that reason otherwise), filled to a few KB.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from bake_support import bakery_process
from bakery.cli import main
from bakery.fsutil import WriteError, atomic_open, write_bytes_atomic
from bakery.journal import Journal
from bakery.preflight import describe_stage_os_error
from tests.conftest import FIXTURES, make_pairs, write_project


@pytest.fixture
def small_disk():
    """A 1 MB tmpfs, unmounted afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="bakery-disk-"))
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(folder)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        folder.rmdir()
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.strip() or 'mount failed'}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=False)
        folder.rmdir()


def fill(disk: Path, leave: int) -> None:
    """A filler file that leaves about `leave` bytes free on `disk`."""
    with open(disk / "filler", "wb") as fh:
        fh.write(b"\0" * max(0, shutil.disk_usage(disk).free - leave))


def test_a_write_that_does_not_fit_names_the_file_and_the_space(small_disk):
    target = small_disk / "out" / "example-1.png"
    (small_disk / "out").mkdir()
    target.write_bytes(b"the old version")
    fill(small_disk, 16 * 1024)
    with pytest.raises(WriteError) as caught:
        write_bytes_atomic(target, b"x" * 100_000)
    error = caught.value
    assert error.errno == errno.ENOSPC and error.filename == str(target)
    assert error.needed == 100_000 and error.needed_exact
    assert 0 <= error.free <= 16 * 1024
    assert target.read_bytes() == b"the old version"  # untouched
    assert sorted(p.name for p in target.parent.iterdir()) == ["example-1.png"]  # no temp file left
    line = describe_stage_os_error(error, "upscale")
    assert re.fullmatch(rf"upscale: cannot write {re.escape(str(target))}: no space left on device "
                        r"\(it needed 97\.7 KB; \d+(\.\d)? (KB|bytes) free there\)", line), line


def test_a_streamed_write_gives_a_lower_bound(small_disk):
    fill(small_disk, 8 * 1024)
    with pytest.raises(WriteError) as caught:
        with atomic_open(small_disk / "big.bin") as fh:
            for _ in range(64):
                fh.write(b"y" * 4096)
    assert not caught.value.needed_exact and caught.value.needed >= 4096
    assert "it needed more than" in describe_stage_os_error(caught.value, "site")


def test_a_journal_line_that_does_not_fit_names_the_journal(small_disk):
    journal = Journal(small_disk / "journal.jsonl", {"v": 1}, "generate")
    fill(small_disk, 0)
    with pytest.raises(OSError) as caught:
        for n in range(10_000):
            journal.add(n, {"sha256": "0" * 64})
    journal.close()
    assert caught.value.errno == errno.ENOSPC and caught.value.filename == str(small_disk / "journal.jsonl")


def test_an_error_without_a_file_names_the_stage_folders():
    error = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    line = describe_stage_os_error(error, "compress", [Path("/")])
    assert re.fullmatch(r"compress: no space left on device while writing into / \(\d+(\.\d)? \w+ free\)", line)


def test_site_on_a_full_disk_is_one_line_naming_stage_file_and_space(small_disk, capsys):
    config = write_project(small_disk / "p", """
        [[images.bands]]
        seeds = "0-2"
        psi = 0.7
    """)
    from bakery.config import load_config

    make_pairs(load_config(config), ids=[0, 1, 2], size=16)
    fill(small_disk, 4096)
    for verbosity in ("-q", "-v"):
        assert main([verbosity, "-c", str(config), "site"]) == 1
        err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("bakery: error:")]
        assert len(err) == 1, err
        assert re.fullmatch(rf"bakery: error: site: cannot write {re.escape(str(small_disk / 'p' / 'public'))}/\S+: "
                            r"no space left on device \(it needed [^;]+; \d+(\.\d)? (KB|bytes) free there\)",
                            err[0]), err[0]
    assert not list((small_disk / "p").rglob(".tmp-*"))


@pytest.mark.slow
def test_generate_on_a_full_disk_names_the_image_then_resumes(small_disk, tmp_path):
    """The real stage in a child process, with and without -v; the first write that failed is
    reported (the manifest that the stage's cleanup could not save either is not)."""
    build = small_disk / "build"
    config = write_project(tmp_path, f"""
        [site]
        build_dir = "{build}"
        public_dir = "{small_disk / 'public'}"
        [images]
        model = "{FIXTURES / 'stylegan2' / 'stylegan2_tf1_synthetic_r64.pkl'}"
        batch_size = 2
        [[images.bands]]
        seeds = "0-5"
        psi = 0.7
    """, with_site_dirs=False)
    fill(small_disk, 24 * 1024)
    result = bakery_process(config, "generate", timeout=300)
    assert result.returncode == 1
    assert re.fullmatch(rf"bakery: error: generate: cannot write {re.escape(str(build / 'raw'))}/example-\d\.png: "
                        r"no space left on device \(it needed \d+\.\d KB; \d+(\.\d)? (KB|bytes) free there\)\n",
                        result.stderr), result.stderr
    (small_disk / "filler").unlink()
    kept = {p.name: p.stat().st_mtime_ns for p in (build / "raw").glob("example-*.png")}
    result = bakery_process(config, "generate", timeout=300)
    assert result.returncode == 0, result.stderr
    assert len(list((build / "raw").glob("example-*.png"))) == 6
    assert all((build / "raw" / name).stat().st_mtime_ns == mtime for name, mtime in kept.items())
    assert not list(small_disk.rglob(".tmp-*"))
