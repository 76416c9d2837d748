"""The paper profile's conformance table: printed by --visprobe-list, one row per PROTOCOLS.md item."""

from __future__ import annotations

import io

import pytest

from pytest_visprobe.conformance import ConformanceError, load_table, write_table

#: PROTOCOLS.md's sections and the protocol items each must cover (the bullets as written there).
PROTOCOL_ITEMS = {
    "A": ["Features", "Datasets", "Few-shot", "Clustering", "Transfer", "Robustness (RPGD)", "RSA"],
    "B": ["Attribute prediction", "Object-label prediction", "Object detection", "Instance segmentation",
          "Semantic segmentation"],
    "C": ["Transformations", "Tasks", "Images"],
}


def test_every_row_names_a_protocols_section_and_every_item_has_a_row():
    sections, rows = load_table()
    assert sorted(sections) == sorted(PROTOCOL_ITEMS)
    assert sections["A"].startswith("Generalization") and sections["B"].startswith("Localization")
    assert sections["C"].startswith("Transformation")
    for letter, items in PROTOCOL_ITEMS.items():
        names = [row.item for row in rows if row.section == letter]
        for item in items:
            assert any(name.startswith(item) for name in names), f"{letter}: no row for {item!r}"
    assert all(row.status in ("as published", "differs") for row in rows)
    assert all(row.what and row.because for row in rows if row.status == "differs")


def test_rows_that_are_not_built_say_they_differ():
    _, rows = load_table()
    status = {row.item: row.status for row in rows}
    assert status["Transfer (linear probe)"] == "differs"
    # the study trained CLIP's linear head on ImageNet train, which we do not load
    assert status["Robustness (RPGD): success-rate denominator, target rule and classifier"] == "differs"


def test_listing_prints_the_table_under_the_paper_profile(pytester_listing):
    out = pytester_listing("paper")
    assert "conformance of the paper profile with PROTOCOLS.md" in out
    _, rows = load_table()
    for row in rows:
        assert f"    {row.item}: {row.text()}" in out
    assert "PROTOCOLS.md B. Localization vs semantics" in out
    assert "conformance of the paper profile" not in pytester_listing("quick")


@pytest.fixture
def pytester_listing():
    from pytest_visprobe.runner.listing import write_listing
    from pytest_visprobe.runner.options import RunSettings

    def listing(profile: str) -> str:
        out = io.StringIO()
        write_listing(out, RunSettings(profile=profile))
        return out.getvalue()

    return listing


@pytest.mark.parametrize("row, message", [
    ('section = "Z"\nitem = "x"\nstatus = "as published"', "names section 'Z'"),
    ('section = "A"\nitem = "x"\nstatus = "close enough"', "has status 'close enough'"),
    ('section = "A"\nitem = "x"\nstatus = "differs"\nwhat = "y"', "lacks `what` or `because`"),
])
def test_a_malformed_row_says_what_to_fix(tmp_path, row, message):
    path = tmp_path / "table.toml"
    path.write_text(f'[sections]\nA = "Generalization"\n\n[[item]]\n{row}\n')
    with pytest.raises(ConformanceError, match=message):
        write_table(io.StringIO(), path)
