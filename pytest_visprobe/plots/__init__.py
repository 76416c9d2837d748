"""PNG plots written beside the scorecard, drawn from its records by the controller.

A plot is a function ``plot(card, directory) -> list[Path]`` registered for a probe name as a
lazy ``"module:function"`` string, so matplotlib (and the module) load only when a session
recorded that probe. Probes put what their plot needs in their records' ``details``. A plot
that fails is reported as a warning and never fails the run or loses the scorecard.
"""

from __future__ import annotations

import importlib
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from ..scorecard import Scorecard

PlotFn = Callable[["Scorecard", Path], list[Path]]

#: probe name -> "module:function"; one plot function per probe family.
PLOTTERS: dict[str, str] = {}


def register_plot(probe: str, target: str) -> None:
    """Draw ``target`` ("package.module:function") when a session has records of ``probe``."""
    PLOTTERS[probe] = target


def _resolve(target: str) -> PlotFn:
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def write_plots(card: "Scorecard", directory: Path) -> list[Path]:
    """Every registered plot whose probe has records; paths of the PNGs written."""
    probes = {record.probe for record in card.records}
    written: list[Path] = []
    for target in dict.fromkeys(t for p, t in PLOTTERS.items() if p in probes):
        try:
            import matplotlib

            matplotlib.use("Agg", force=True)
            directory.mkdir(parents=True, exist_ok=True)
            written += _resolve(target)(card, directory)
        except Exception as exc:  # a plot is a convenience: never fail the run for it
            warnings.warn(f"visprobe: plot {target} could not be drawn ({type(exc).__name__}: {exc}); "
                          f"the scorecard is unaffected.", stacklevel=2)
    return written


register_plot("fewshot", "pytest_visprobe.plots.generalization:plot_fewshot")
register_plot("similarity", "pytest_visprobe.plots.generalization:plot_similarity")
register_plot("transformation_linear", "pytest_visprobe.plots.transformations:plot_confusion")
register_plot("transformation_mlp", "pytest_visprobe.plots.transformations:plot_confusion")
register_plot("region_label_probe", "pytest_visprobe.plots.localization:plot_localization")  # every dense dataset has boxes
register_plot("rpgd", "pytest_visprobe.plots.robustness:plot_attack_success")
