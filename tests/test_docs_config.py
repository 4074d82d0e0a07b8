"""Every config key the code reads is documented (datasette's rule): each string key passed to
a `tables.Table` reader anywhere in bakery/ appears in README.md or docs/ — a key in
backticks or as `key = ...` in an example, a table as `[section.name]` / `[[section.name]]`."""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
READERS = {"str", "bool", "int", "float", "str_list", "str_map", "path_value", "raw", "has"}
TABLE_READERS = {"table", "tables"}
NOT_CONFIG = {"bakery/scale/shard.py"}  # reads shard.json with a Table, not site.toml


def keys_read() -> dict[str, tuple[str, set[str]]]:
    """key → (reader kind, where it is read), for every `x.READER("key", ...)` call."""
    found: dict[str, tuple[str, set[str]]] = {}
    for py in sorted((REPO / "bakery").rglob("*.py")):
        rel = py.relative_to(REPO).as_posix()
        if rel in NOT_CONFIG:
            continue
        for node in ast.walk(ast.parse(py.read_text(encoding="utf-8"))):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr in READERS | TABLE_READERS and isinstance(node.func.value, ast.Name)
                    and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
                continue
            kind = "table" if node.func.attr in TABLE_READERS else "key"
            found.setdefault(node.args[0].value, (kind, set()))[1].add(f"{rel}:{node.lineno}")
    return found


def documented(key: str, kind: str, docs: str) -> bool:
    if kind == "table":
        return re.search(rf"\[\[?[\w.]*\b{re.escape(key)}\]\]?", docs) is not None
    return f"`{key}`" in docs or re.search(rf"^\s*{re.escape(key)}\s*=", docs, re.M) is not None


def test_every_config_key_the_code_reads_is_documented():
    docs = "\n".join(p.read_text(encoding="utf-8") for p in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))])
    keys = keys_read()
    assert len(keys) > 80, "the config readers were not found: is the scan broken?"
    missing = [f"{key} (read at {', '.join(sorted(where))})" for key, (kind, where) in sorted(keys.items())
               if not documented(key, kind, docs)]
    assert not missing, "undocumented config keys:\n" + "\n".join(missing)
