"""PNG plots written beside the scorecard, drawn from its records by the controller.

A probe names its plot in its spec (``ProbeSpec.plot``: a function ``plot(card, directory) ->
list[Path]`` or a lazy ``"module:function"``), so matplotlib and the plot module load only when
a session recorded that probe. Plots read records' typed details (``details_of``). A plot that
fails is reported as a warning and never fails the run or loses the scorecard.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pytest_visprobe.report.scorecard import Record, Scorecard


def details_of(record: "Record") -> Any:
    """The record's details as its probe's typed details model."""
    from pytest_visprobe.probes.spec import get_probe

    model = get_probe(record.probe).details
    return model.model_validate(record.details) if model is not None else record.details


def write_plots(card: "Scorecard", directory: Path) -> list[Path]:
    """Every plot named by a probe that has records; paths of the PNGs written."""
    from pytest_visprobe.probes.spec import PROBES
    from pytest_visprobe.registry import resolve

    probes = dict.fromkeys(record.probe for record in card.records)
    targets = dict.fromkeys(PROBES.get(p).plot for p in probes if p in PROBES and PROBES.get(p).plot)
    if any(record.layer is not None for record in card.records):  # --visprobe-layers: metrics against depth
        targets["pytest_visprobe.report.plots.layers:plot_layers"] = None
    written: list[Path] = []
    for target in targets:
        try:
            import matplotlib

            matplotlib.use("Agg", force=True)
            directory.mkdir(parents=True, exist_ok=True)
            plot = resolve(target) if isinstance(target, str) else target
            written += plot(card, directory)
        except Exception as exc:  # a plot is a convenience: never fail the run for it
            warnings.warn(f"visprobe: plot {target} could not be drawn ({type(exc).__name__}: {exc}); "
                          f"the scorecard is unaffected.", stacklevel=2)
    return written
