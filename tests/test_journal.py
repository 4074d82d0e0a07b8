"""Per-stage journals (bakery/journal.py) and output verification (bakery/verify.py)."""

from __future__ import annotations

import json

from bakery.journal import Journal, replay, replay_any
from bakery.verify import record_file, record_of, verifies


def test_journal_records_each_item_at_once_and_ignores_a_torn_line(tmp_path):
    path = tmp_path / "journal.jsonl"
    journal = Journal(path, {"settings": {"quality": 25}}, "compress")
    journal.add(3, {"bytes": 10, "sha256": "a" * 64})
    # readable before the journal is closed: a kill right now loses nothing recorded
    assert replay(path, {"settings": {"quality": 25}}) == {"3": {"bytes": 10, "sha256": "a" * 64}}
    journal.add(4, {"bytes": 11, "sha256": "b" * 64})
    journal.close()
    with open(path, "a", encoding="utf-8") as fh:
        fh.write('{"id": "5", "record": {"bytes": 1')  # a kill mid-write
    assert sorted(replay(path, {"settings": {"quality": 25}})) == ["3", "4"]
    assert replay(path, {"settings": {"quality": 60}}) == {}  # made with other settings: not done
    assert sorted(replay_any(path)) == ["3", "4"]
    Journal(path, {"settings": {"quality": 60}}, "compress").remove()
    assert not path.exists() and replay(path, {}) == {}


def test_verify_catches_truncated_altered_and_replaced_files(tmp_path):
    path = tmp_path / "example-0.png"
    data = bytes(range(256)) * 8
    path.write_bytes(data)
    record = record_of(data)
    assert record == record_file(path) and verifies(path, record)
    for damaged in (data[:100], data[:1000] + b"\0" + data[1001:], bytes(len(data))):
        path.write_bytes(damaged)
        assert not verifies(path, record)
    path.unlink()
    assert not verifies(path, record)
    assert not verifies(path, None) and not verifies(path, {"bytes": 2048})


def test_upscale_manifest_takes_journal_records_only_under_the_same_settings(tmp_path):
    from bakery.upscale.stage import Manifest

    out = tmp_path / "upscaled"
    out.mkdir()
    Journal(out / "journal.jsonl", {"settings": {"method": "lanczos", "scale": 2}}, "upscale").add(
        1, {"bytes": 3, "sha256": "c" * 64, "source": [1, 2]})
    m = Manifest(out / "manifest.json", {"method": "lanczos", "scale": 2}, "upscale")
    assert set(m.done) == {"1"}  # compacted into the manifest before the new journal starts
    assert set(json.loads((out / "manifest.json").read_text())["done"]) == {"1"}
    m.close()
    assert not (out / "journal.jsonl").exists()
    Journal(out / "journal.jsonl", {"settings": {"method": "lanczos", "scale": 2}}, "upscale").add(
        2, {"bytes": 3, "sha256": "c" * 64, "source": [1, 2]})
    m = Manifest(out / "manifest.json", {"method": "none", "scale": 1}, "upscale")
    assert m.done == {}
    m.close()
