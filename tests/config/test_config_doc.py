"""docs/CONFIG.md is generated from the comments of vmb/config/defaults_*.py: every key has one, and the file is
current."""
from __future__ import annotations

import pathlib

import pytest

from vmb.config import doc, flat_items, get_defaults, load
from vmb import rules

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
CONFIG_MD = REPO_ROOT / "docs" / "CONFIG.md"


def test_config_md_is_current():
    assert CONFIG_MD.read_text(encoding="utf-8") == doc.config_doc(), f"docs/CONFIG.md is stale; run: {doc.COMMAND}"


def test_every_key_and_section_has_a_comment():
    comments = doc.defaults_comments()
    keys = list(flat_items(get_defaults()))
    sections = {key.split(".")[0] for key in keys if "." in key}
    assert [name for name in [*keys, *sorted(sections)] if not comments.get(name)] == []
    # And no comment describes a key that is gone.
    assert set(comments) == set(keys) | sections


@pytest.mark.parametrize("key", sorted(load._CHOICES))
def test_comments_name_every_allowed_value(key):
    comment = doc.defaults_comments()[key]
    assert [choice for choice in load._CHOICES[key] if f'"{choice}"' not in comment] == []


def test_source_comments_above_and_beside():
    source = (
        "def add(cfg):\n"
        "    # The section.\n"
        "    cfg.S = CfgNode()\n"
        "    cfg.S.A = 1  # beside\n"
        "    # Above, first line\n"
        "    # and second.\n"
        "    cfg.S.B = [\n"
        "        1, 2]  # and beside\n"
        "    # Not B's: a blank line follows.\n"
        "\n"
        "    cfg.S.C = 3\n"
        "    x = 4  # not a config key\n"
    )
    comments = doc.source_comments(source)
    assert comments == {"S": "The section.", "S.A": "beside",
                        "S.B": "Above, first line and second. and beside", "S.C": ""}


def test_table_rows_mark_resource_keys():
    text = doc.config_doc()
    assert text.startswith("# Config keys\n") and doc.COMMAND in text.splitlines()[2]
    keys_part = text.split("## Ignored combinations")[0]
    rows = {line.split(" | ")[0].strip("| `"): line for line in keys_part.splitlines() if line.startswith("| `")}
    for key in flat_items(get_defaults()):
        assert (" | resource | " in rows[key]) == (key in rules.RESOURCE_KEYS), rows[key]


def test_main_writes_the_doc(capsys):
    doc.main()
    assert capsys.readouterr().out == doc.config_doc()
