"""Per-layer records (``--visprobe-layers``) grouped by the encoder they read, in depth order:
what the Markdown's layer tables and the depth plots (plots/layers.py) show."""

from __future__ import annotations

from dataclasses import dataclass, field

from pytest_visprobe.report.scorecard import LAST, Record, Scorecard


@dataclass
class LayerTable:
    """One encoder's per-layer measurements: ``layers`` in depth order (its own embedding,
    ``last``, at the end), and per (probe, dataset, metric) the record of each layer."""

    encoder: str
    layers: list[str] = field(default_factory=list)
    depths: dict[str, int | None] = field(default_factory=dict)
    rows: dict[tuple[str, str, str], dict[str, Record]] = field(default_factory=dict)


def layer_tables(card: Scorecard) -> list[LayerTable]:
    """A table for every encoder that has layer records (controls excluded), by encoder name."""
    records = [r for r in card.records if r.control_of is None]
    info = {e.name: e for e in card.encoders}
    sources = sorted({r.source_encoder for r in records if r.layer is not None})
    tables = []
    for source in sources:
        table = LayerTable(source)
        mine = [r for r in records if r.source_encoder == source]
        probed = {(r.probe, r.dataset, r.metric) for r in mine if r.layer is not None}
        for r in mine:
            key = (r.probe, r.dataset, r.metric)
            if key in probed:
                table.rows.setdefault(key, {})[r.layer_name] = r
                found = info.get(r.encoder)
                table.depths[r.layer_name] = found.layer_depth if found is not None and r.layer else None
        named = [layer for layer in table.depths if layer != LAST]
        table.layers = sorted(named, key=lambda layer: (table.depths[layer] is None, table.depths[layer] or 0, layer))
        if LAST in table.depths:
            table.layers.append(LAST)
        table.rows = dict(sorted(table.rows.items()))
        tables.append(table)
    return tables
