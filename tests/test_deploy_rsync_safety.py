"""rsync pushes that cannot go live in the wrong order, leave served leftovers, be steered by a
hostile value or delete the wrong folder (issue 10 items 4, 8, 9)."""

from __future__ import annotations

import os
import re
import subprocess
import time

import pytest

import bakery.deploy.rsync as rsyncmod
from bakery.cli import main
from bakery.config import load_config
from bakery.deploy.rsync import deploy_rsync
from bakery.errors import ConfigError, StageFailures
from deploy_support import ensure_rsync, fill_public, rsync_daemon, tree_bytes, write_project


def rsync_project(root, target: str, extra: str = ""):
    return write_project(root, f'[deploy]\ntargets = ["rsync"]\n[[deploy.rsync]]\nname = "m"\n{target}\n{extra}')


@pytest.fixture
def site(tmp_path):
    ensure_rsync()
    return tmp_path, tmp_path / "public", fill_public(tmp_path / "public", 4)


def test_index_html_goes_live_only_after_everything_it_references(site, monkeypatch):
    root, public, files = site
    dest = root / "dest"
    config = load_config(rsync_project(root, f'destination = "{dest}"'))
    deploy_rsync(config)
    new = fill_public(public, 4, seed=1)  # a new generation: every file changes
    for rel in new:  # same sizes as before: a later mtime is what rsync's quick check sees
        os.utime(public / rel, (time.time() + 100, time.time() + 100))
    seen_after_pass = []
    real = rsyncmod.run_rsync

    def spy(cmd, what):
        out = real(cmd, what)
        seen_after_pass.append((what, tree_bytes(dest)))
        return out

    monkeypatch.setattr(rsyncmod, "run_rsync", spy)
    deploy_rsync(config)
    what, after_first = seen_after_pass[0]
    assert what.startswith("pass 1")
    assert after_first["index.html"] == files["index.html"]  # the old page is still live...
    assert all(after_first[rel] == data for rel, data in new.items() if rel != "index.html")  # ...the rest is new
    assert tree_bytes(dest) == new


def test_leftovers_of_a_killed_push_are_cleaned_and_never_served(site):
    root, public, files = site
    dest = root / "dest"
    (dest / ".rsync-partial").mkdir(parents=True)
    (dest / ".rsync-partial" / "example-0.jpg").write_bytes(b"half")  # a killed push's partial file
    (dest / ".example-1.jpg.Xy12Ab").write_bytes(b"half")  # rsync's own temp file
    (dest / "theirs.txt").write_bytes(b"not ours, and delete is off")
    deploy_rsync(load_config(rsync_project(root, f'destination = "{dest}"')))
    assert tree_bytes(dest) == {**files, "theirs.txt": b"not ours, and delete is off"}

    # The served mirror skips the same leftovers while they exist.
    (public / ".rsync-partial").mkdir()
    (public / ".rsync-partial" / "snippet-0.txt").write_bytes(b"half")
    (public / ".snippet-1.txt.Qw34Er").write_bytes(b"half")
    toml = write_project(root, '[deploy.mirror]\nmodule = "faces"\nuid = "root"\ngid = "root"\nuse_chroot = false')
    assert main(["-q", "-c", str(toml), "mirror-config"]) == 0
    with rsync_daemon(root, (root / "build" / "rsyncd.conf").read_text()) as port:
        got = subprocess.run(["rsync", "--recursive", f"rsync://127.0.0.1:{port}/faces/", f"{root / 'download'}/"],
                             capture_output=True, text=True)
    assert got.returncode == 0, got.stderr
    assert tree_bytes(root / "download") == files


@pytest.mark.parametrize("destination, problem", [
    ("-n", "must not begin with '-'"),
    ("--rsh=evil", "must not begin with '-'"),
    ("user@-oProxyCommand=sh:/srv", "the host part must not be empty or begin with '-'"),
    ("-oProxyCommand=x:/srv", "must not begin with '-'"),
    (":/srv", "the host part must not be empty"),
])
def test_destinations_that_rsync_or_ssh_would_read_as_options_are_refused(tmp_path, destination, problem):
    with pytest.raises(ConfigError, match=re.escape(f"deploy.rsync[0].destination: {problem}")):
        load_config(rsync_project(tmp_path, f'destination = "{destination}"'))


@pytest.mark.parametrize("destination", ["/", ".", "./", "..", "content/..", "web1:/", "web1:", "user@web1:~/"])
def test_delete_into_root_or_the_project_is_refused(tmp_path, destination):
    with pytest.raises(ConfigError, match=r"deploy\.rsync\[0\]\.destination: with delete = true: refusing"):
        load_config(rsync_project(tmp_path, f'destination = "{destination}"\ndelete = true'))
    load_config(rsync_project(tmp_path, f'destination = "{destination}"'))  # no delete: allowed


@pytest.mark.parametrize("folder", ["public", "build", "build/deploy", "content"])
def test_the_delete_flag_is_refused_into_the_projects_own_folders(site, folder, capsys):
    root, public, files = site
    (root / "build").mkdir(exist_ok=True)
    toml = rsync_project(root, f'destination = "{folder}"')
    before = tree_bytes(root)
    assert main(["-q", "-c", str(toml), "deploy", "--delete"]) == 1
    err = capsys.readouterr().err
    assert "nothing was sent" in err and "refusing to delete into" in err and f"this project's {folder.split('/')[0]}" in err
    assert tree_bytes(root) == before


def test_relative_destination_is_resolved_against_the_project_root(site, monkeypatch, tmp_path_factory):
    root, public, files = site
    config = load_config(rsync_project(root, 'destination = "mirror/"'))
    assert config.deploy.rsync[0].destination == f"{root}/mirror/"
    monkeypatch.chdir(tmp_path_factory.mktemp("elsewhere"))
    deploy_rsync(config)
    assert tree_bytes(root / "mirror") == files


def test_max_deletes_has_a_default_for_rsync_and_refuses_before_any_change(site):
    root, public, files = site
    dest = root / "dest"
    config = load_config(rsync_project(root, f'destination = "{dest}"\ndelete = true'))
    assert config.deploy.rsync[0].max_deletes == 1000
    deploy_rsync(config)
    config = load_config(rsync_project(root, f'destination = "{dest}"\ndelete = true\nmax_deletes = 1'))
    for i in range(3):
        (public / f"example-{i}.jpg").unlink()
    (public / "snippet-0.txt").write_bytes(b"a changed story\n")
    with pytest.raises(StageFailures, match="3 files would be deleted, more than --max-deletes 1: nothing was changed"):
        deploy_rsync(config)
    assert tree_bytes(dest) == files  # not even the changed snippet went up


# Every value that reaches rsyncd.conf, an HTTP header or a command line, with a control character.
CONTROL_KEYS = [
    ('[deploy.mirror]\nhosts_allow = ["127.0.0.1\\n[root]\\npath = /"]', "deploy.mirror.hosts_allow[0]"),
    ('[deploy.mirror]\npath = "/srv/www\\n[root]"', "deploy.mirror.path"),
    ('[deploy.mirror]\ncomment = "x\\r\\n[root]"', "deploy.mirror.comment"),
    ('[deploy.mirror]\nuid = "nobody\\nread only = no"', "deploy.mirror.uid"),
    ('[deploy.mirror]\ngid = "nogroup\\u2028"', "deploy.mirror.gid"),
    ('[deploy.mirror]\nmodule = "waifus\\n"', "deploy.mirror.module"),
    ('[deploy.mirror]\npublic_url = "rsync://h/m/\\n[root]"', "deploy.mirror.public_url"),
    ('[[deploy.rsync]]\nname = "m\\n"\ndestination = "/x"', "deploy.rsync[0].name"),
    ('[[deploy.rsync]]\nname = "m"\ndestination = "/x\\u0000"', "deploy.rsync[0].destination"),
    ('[[deploy.rsync]]\nname = "m"\ndestination = "/x"\nextra_args = ["--bwlimit=1\\n"]', "deploy.rsync[0].extra_args[0]"),
    ('[[deploy.rsync]]\nname = "m"\ndestination = "/x"\nextra_trees = { "old" = "/d\\u001b[2J" }',
     "deploy.rsync[0].extra_trees.old"),
    ('[[deploy.rsync]]\nname = "m"\ndestination = "/x"\nextra_trees = { "o\\nld" = "/d" }',
     "deploy.rsync[0].extra_trees"),
    ('[deploy.s3]\nbucket = "b-1"\nprefix = "site\\n"', "deploy.s3.prefix"),
    ('[deploy.s3]\nbucket = "b-1"\nregion = "us-east-1\\t"', "deploy.s3.region"),
    ('[deploy.s3]\nbucket = "b-1\\n"', "deploy.s3.bucket"),
    ('[deploy.s3]\nbucket = "b-1"\nendpoint_url = "http://h/\\r\\nX-Evil: 1"', "deploy.s3.endpoint_url"),
    ('[deploy.s3]\nbucket = "b-1"\ncache_control = { "*.jpg" = "max-age=1\\r\\nX-Evil: 1" }',
     "deploy.s3.cache_control.*.jpg"),
    ('[deploy.s3]\nbucket = "b-1"\ncontent_types = { ".jpg" = "image/jpeg\\n" }', "deploy.s3.content_types..jpg"),
    ('[deploy.s3]\nbucket = "b-1"\nexclude = ["a\\u0085"]', "deploy.s3.exclude[0]"),
    ('[deploy.cloudflare]\nzone_id = "z\\n"', "deploy.cloudflare.zone_id"),
    ('[deploy.cloudflare]\nzone_id = "z"\nbase_url = "https://a.example\\n"', "deploy.cloudflare.base_url"),
    ('[deploy.cloudflare]\nzone_id = "z"\napi_url = "https://a.example/\\u007f"', "deploy.cloudflare.api_url"),
    ('[deploy.archive]\nbuild_dirs = ["raw\\n"]', "deploy.archive.build_dirs[0]"),
]


@pytest.mark.parametrize("snippet, key", CONTROL_KEYS, ids=[k for _, k in CONTROL_KEYS])
def test_control_characters_are_refused_in_every_value(tmp_path, snippet, key):
    with pytest.raises(ConfigError, match=re.escape(f"{key}: contains the control character U+")):
        load_config(write_project(tmp_path, snippet))


def test_control_characters_from_outside_deploy_never_reach_rsyncd_conf(site, capsys):
    root, public, files = site
    toml = write_project(root, "", site_extra='public_dir = "pub\\n[root]"')
    assert main(["-q", "-c", str(toml), "mirror-config"]) != 0
    assert "public_dir" in capsys.readouterr().err  # refused here, or earlier by the site config
    toml = write_project(root, "")
    assert main(["-q", "-c", str(toml), "mirror-config", "--module", "faces\n"]) == 1
    assert "--module: use letters" in capsys.readouterr().err
    assert not (root / "build" / "rsyncd.conf").exists()
