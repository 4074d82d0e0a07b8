"""Helpers shared by the text-stage tests: a small project in a temporary folder."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def write_project(root: Path, text_toml: str, seeds: str = "0-3", prompts: dict[str, str] | None = None) -> Path:
    """root/content/site.toml with the given [text...] tables; returns the config path."""
    content = root / "content"
    (content / "prompts").mkdir(parents=True, exist_ok=True)
    for name, body in (prompts or {"plot.txt": "A new anime series begins. Plot summary:"}).items():
        (content / "prompts" / name).write_text(body, encoding="utf-8")
    config = content / "site.toml"
    config.write_text(f"""
[site]
templates_dir = "{REPO / 'templates'}"
static_dir = "{REPO / 'static'}"

[images]
[[images.bands]]
seeds = "{seeds}"
psi = 0.7

{text_toml}
""", encoding="utf-8")
    return config
