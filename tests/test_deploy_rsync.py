"""`bakery deploy rsync` and `bakery mirror-config` against a real rsync daemon on 127.0.0.1."""

from __future__ import annotations

import re
import subprocess
import tarfile

import pytest

from bakery.cli import main
from bakery.config import load_config
from bakery.deploy.rsync import deploy_rsync, write_snippets_tarball
from bakery.errors import ConfigError, StageFailures
from deploy_support import (ensure_rsync, fill_public, free_port, rsync_daemon, tree_bytes, writable_module,
                            write_project)


def rsync_targets(*targets: str) -> str:
    return 'targets = ["rsync"]\n\n' + "\n".join(f"[[deploy.rsync]]\n{t}\n" for t in targets)


@pytest.fixture
def site(tmp_path):
    ensure_rsync()
    public = tmp_path / "public"
    files = fill_public(public, 5)
    return tmp_path, public, files


def test_push_to_daemon_and_local_path_with_extra_tree(site):
    root, public, files = site
    daemon_dest, local_dest = root / "daemon-dest", root / "local-dest"
    daemon_dest.mkdir()
    old = root / "old-versions"
    (old / "v0").mkdir(parents=True)
    (old / "v0" / "example-0.jpg").write_bytes(b"an old face")
    (public / ".tmp-index.html.x").write_bytes(b"half written")  # never mirrored
    with rsync_daemon(root, writable_module("site", daemon_dest)) as port:
        toml = write_project(root, "[deploy]\n" + rsync_targets(
            f'name = "daemon"\ndestination = "rsync://127.0.0.1:{port}/site/"\n'
            f'extra_trees = {{ "old" = "{old}" }}',
            f'name = "local"\ndestination = "{local_dest}"'))
        config = load_config(toml)
        results = deploy_rsync(config)
        assert [r.ok for r in results] == [True, True]
        assert results[1].files == len(files)
        expected = dict(files, **{"old/v0/example-0.jpg": b"an old face"})
        assert tree_bytes(daemon_dest) == expected
        assert tree_bytes(local_dest) == files
        for rel in files:  # --times: the mirror keeps modification times
            assert int((local_dest / rel).stat().st_mtime) == int((public / rel).stat().st_mtime)
        again = deploy_rsync(config)
        assert [r.files for r in again] == [0, 0]  # quick check: nothing to resend


def test_a_failed_mirror_does_not_stop_the_others(site, capsys):
    root, public, files = site
    dead_port = free_port()  # nothing listens there
    toml = write_project(root, "[deploy]\n" + rsync_targets(
        f'name = "down"\ndestination = "rsync://127.0.0.1:{dead_port}/site/"\ntimeout_seconds = 5',
        f'name = "local"\ndestination = "{root / "local-dest"}"'))
    assert main(["-q", "-c", str(toml), "deploy", "rsync"]) == 1
    assert tree_bytes(root / "local-dest") == files
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert "1 of 2 mirror(s) failed" in last and "down: exit 10" in last and "socket I/O" in last


def test_delete_only_when_configured_and_extra_trees_protected(site):
    root, public, files = site
    dest = root / "dest"
    old = root / "old"
    old.mkdir()
    (old / "a.txt").write_text("old generation")
    keep = rsync_targets(f'name = "m"\ndestination = "{dest}"\nextra_trees = {{ "v0" = "{old}" }}')
    config = load_config(write_project(root, "[deploy]\n" + keep))
    deploy_rsync(config)
    (public / "snippet-1.txt").unlink()
    (public / "snippet-2.txt").unlink()
    deploy_rsync(config)
    assert (dest / "snippet-1.txt").exists()  # delete is off by default

    config = load_config(write_project(root, "[deploy]\n" + keep + "delete = true\n"))
    with pytest.raises(StageFailures, match="2 files would be deleted, more than --max-deletes 1: nothing was changed"):
        deploy_rsync(config, max_deletes=1)
    assert (dest / "snippet-1.txt").exists() and (dest / "snippet-2.txt").exists()
    deploy_rsync(config)
    assert not (dest / "snippet-1.txt").exists() and not (dest / "snippet-2.txt").exists()
    assert (dest / "v0" / "a.txt").read_text() == "old generation"  # not deleted by the main tree


def test_dry_run_changes_nothing(site, capsys):
    root, public, files = site
    toml = write_project(root, "[deploy]\n" + rsync_targets(f'name = "m"\ndestination = "{root / "dest"}"'))
    assert main(["-c", str(toml), "deploy", "rsync", "--dry-run"]) == 0
    assert "example-0.jpg" in capsys.readouterr().out
    assert not (root / "dest").exists() or tree_bytes(root / "dest") == {}


def test_mirror_config_serves_public_read_only_with_snippet_tarball(site):
    root, public, files = site
    toml = write_project(root, '[deploy.mirror]\nmodule = "faces"\nuid = "root"\ngid = "root"\n'
                               'public_url = "rsync://mirror.example.org/faces/"')
    assert main(["-q", "-c", str(toml), "mirror-config", "--snippets-tarball"]) == 0
    module = (root / "build" / "rsyncd.conf").read_text()
    assert "[faces]" in module and "read only = yes" in module and f"path = {public}" in module
    with tarfile.open(public / "snippets.tar.gz") as tar:
        names = sorted(tar.getnames())
        assert names == sorted(f"snippets/{rel}" for rel in files if rel.startswith("snippet-"))
        assert tar.extractfile("snippets/snippet-3.txt").read() == files["snippet-3.txt"]
    stamp = (public / "snippets.tar.gz").stat().st_mtime_ns
    assert write_snippets_tarball(public)[2] is False  # same snippets: same bytes, file untouched
    assert (public / "snippets.tar.gz").stat().st_mtime_ns == stamp

    with rsync_daemon(root, module) as port:
        download = root / "download"
        got = subprocess.run(["rsync", "--recursive", "--times", f"rsync://127.0.0.1:{port}/faces/", f"{download}/"],
                             capture_output=True, text=True)
        assert got.returncode == 0, got.stderr
        assert tree_bytes(download) == tree_bytes(public)
        (root / "intruder.txt").write_text("x")
        push = subprocess.run(["rsync", str(root / "intruder.txt"), f"rsync://127.0.0.1:{port}/faces/"],
                              capture_output=True, text=True)
        assert push.returncode != 0 and "read only" in push.stderr
        assert not (public / "intruder.txt").exists()


@pytest.mark.parametrize("snippet, problem", [
    ('[[deploy.rsync]]\nname = "a"\ndestination = "/x"\n[[deploy.rsync]]\nname = "a"\ndestination = "/y"',
     "deploy.rsync: two targets are named 'a'"),
    ('[[deploy.rsync]]\nname = "a"\ndestination = "/x"\nextra_trees = { "../up" = "/tmp" }',
     "deploy.rsync[0].extra_trees: destination subfolder '../up'"),
    ('[[deploy.rsync]]\nname = "a"\ndestination = "/x"\ndelete = "yes"', "deploy.rsync[0].delete: must be true or false"),
    ('[deploy.mirror]\npublic_url = "https://x/"', "deploy.mirror.public_url: must start with rsync://"),
    ('targets = ["rsync"]', "deploy.targets: names 'rsync' but there is no [[deploy.rsync]] target"),
])
def test_rsync_config_errors_name_the_key(tmp_path, snippet, problem):
    with pytest.raises(ConfigError, match=re.escape(problem)):
        load_config(write_project(tmp_path, "[deploy]\n" + snippet))


def test_each_pass_shows_a_spinner_on_a_terminal_and_nothing_when_quiet(site, monkeypatch):
    import bakery.deploy.rsync as rsync_module
    from terminal_support import eager_spinner, fake_terminal

    root, public, files = site
    config = load_config(write_project(root, "[deploy]\n" + rsync_targets(
        f'name = "local"\ndestination = "{root / "dest"}"')))
    steps: list[str] = []
    eager_spinner(rsync_module, monkeypatch, steps)
    with fake_terminal() as drawn:
        deploy_rsync(config, quiet=True)
    assert steps == ["rsync local: pass 1, all but *.html", "rsync local: pass 2, *.html",
                     "rsync local: clean-up of .rsync-partial and temp files"]
    assert drawn == [""]
    assert tree_bytes(root / "dest") == files

    with fake_terminal() as drawn:
        deploy_rsync(config, quiet=False)
    assert "rsync local: pass 1, all but *.html 0 s" in drawn[0]
