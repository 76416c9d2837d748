"""The `paper` profile against PROTOCOLS.md, item by item: "as published" or what differs and why.

The table is data (``conformance.toml`` beside this module, not among the profiles) so whoever changes a protocol's
code edits its row; this module only reads, checks and prints it, so no number is read as the
study's when it is not.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from pytest_visprobe.errors import VisprobeError

TABLE = Path(__file__).with_name("conformance.toml")
STATUSES = ("as published", "differs")


class ConformanceError(VisprobeError):
    """conformance.toml is malformed: a row lacks its section, status or reason."""


@dataclass(frozen=True)
class Row:
    section: str  # PROTOCOLS.md section letter
    item: str  # the protocol bullet's name
    status: str  # "as published" or "differs"
    what: str = ""
    because: str = ""

    def text(self) -> str:
        if self.status == "as published":
            return "as published"
        return f"differs: {self.what}, because {self.because}"


def load_table(path: Path = TABLE) -> tuple[dict[str, str], list[Row]]:
    """Section titles by letter and the rows, checked: every row names a section and says why it differs."""
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    sections = data.get("sections", {})
    rows = []
    for entry in data.get("item", []):
        where = f"{path}: row {entry.get('item')!r}"
        if entry.get("section") not in sections:
            raise ConformanceError(f"{where} names section {entry.get('section')!r}; use one of "
                                   f"{sorted(sections)} (the PROTOCOLS.md sections in [sections]).")
        if entry.get("status") not in STATUSES:
            raise ConformanceError(f"{where} has status {entry.get('status')!r}; use one of {STATUSES}.")
        if entry["status"] == "differs" and not (entry.get("what") and entry.get("because")):
            raise ConformanceError(f"{where} differs but lacks `what` or `because`; say what the code "
                                   f"does and why.")
        unknown = set(entry) - {"section", "item", "status", "what", "because"}
        if unknown:
            raise ConformanceError(f"{where} has unknown keys {sorted(unknown)}; a row has section, item, "
                                   f"status, what, because.")
        rows.append(Row(**entry))
    return sections, rows


def write_table(out: TextIO, path: Path = TABLE) -> None:
    sections, rows = load_table(path)
    for letter, title in sections.items():
        out.write(f"PROTOCOLS.md {letter}. {title}\n")
        for row in rows:
            if row.section == letter:
                out.write(f"    {row.item}: {row.text()}\n")
