"""The README's configuration table is generated from the settings and must stay true."""

from __future__ import annotations

from pathlib import Path

from deploy.settings import markdown_table

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_configuration_table_matches_the_settings() -> None:
    text = README.read_text()
    start = text.index("<!-- settings-table:start -->") + len("<!-- settings-table:start -->")
    end = text.index("<!-- settings-table:end -->")
    assert text[start:end].strip() == markdown_table().strip(), (
        "README's configuration table is stale: regenerate it with `python -m deploy.settings`"
    )
