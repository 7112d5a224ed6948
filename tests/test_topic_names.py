"""Topic names are spelled once, as constants of the topic table (perception/drives/topics.py): a string
literal equal to a topic name anywhere else in the code is a second spelling that can drift."""

from __future__ import annotations

import io
import tokenize
from pathlib import Path

from perception.drives.topics import TOPICS

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("nodes", "perception", "localization", "sim_data")
TABLE = ROOT / "perception" / "drives" / "topics.py"


def _topic_literals(path: Path, root: Path = ROOT) -> list[str]:
    """'file:line: "name"' for each string token whose value is a topic name (docstrings and comments,
    which name topics in prose, are not such tokens)."""
    found = []
    tokens = tokenize.generate_tokens(io.StringIO(path.read_text()).readline)
    for tok in tokens:
        if tok.type != tokenize.STRING:
            continue
        text = tok.string.lstrip("rbuRBU")
        for quote in ('"""', "'''", '"', "'"):
            if text.startswith(quote) and text.endswith(quote) and len(text) >= 2 * len(quote):
                value = text[len(quote):-len(quote)]
                break
        else:
            continue
        if value in TOPICS:
            found.append(f"{path.relative_to(root)}:{tok.start[0]}: {tok.string}")
    return found


def test_no_topic_name_literal_outside_the_table():
    found = [hit for package in PACKAGES for path in sorted((ROOT / package).rglob("*.py")) if path != TABLE
             for hit in _topic_literals(path)]
    assert not found, "topic names spelled outside perception/drives/topics.py (use its constants):\n" + "\n".join(found)


def test_the_check_finds_a_literal_but_not_prose(tmp_path):
    path = tmp_path / "probe.py"
    path.write_text('"""Reads camera/image."""\nTOPIC = "camera/image"  # "gps/fix" in a comment\nNAME = f"x"\n')
    assert _topic_literals(path, tmp_path) == ['probe.py:2: "camera/image"']
