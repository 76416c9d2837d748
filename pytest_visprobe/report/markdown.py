"""The scorecard's Markdown and terminal views: one row per metric, one column per encoder,
then each encoder's layers (--visprobe-layers), the controls (chance, random-init floor, shuffled-label control), failing metrics, heads
that did not fit their training data, plots and encoders."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from pytest_visprobe.report.scorecard import Record, Scorecard


def format_delta(record: Record) -> str:
    """▲ better / ▼ worse than the baseline (by the metric's direction), ``=`` when unchanged."""
    assert record.baseline is not None
    delta = record.value - record.baseline
    if abs(delta) < 5e-4:
        return "= 0.000"
    better = (delta > 0) == record.higher_is_better
    return f"{'▲' if better else '▼'} {abs(delta):.3f}"


def format_cell(record: Record) -> str:
    """``value [95 % interval] (± trial std) ▲/▼ Δ vs baseline ✓/✗``."""
    text = f"{record.value:.3f}"
    if record.interval is not None:
        text += f" [{record.interval.low:.3f}, {record.interval.high:.3f}]"
    if record.spread is not None:
        text += f" ± {record.spread:.3f}"
    if record.baseline is not None:
        text += f" {format_delta(record)}"
    if record.threshold is not None or record.baseline is not None:
        text += " ✓" if record.passed else " ✗"
    return text


def measured(card: Scorecard) -> list[Record]:
    """The encoders' own records (control records are shown beside them, not as columns)."""
    return [r for r in card.sorted().records if r.control_of is None]


def layer_sections(card: Scorecard) -> list[str]:
    """Per encoder read at several layers: a metric × layer table (depth order, ``last`` = the
    encoder's embedding) and a link to its depth plot."""
    from tabulate import tabulate

    from pytest_visprobe.report.layers import layer_tables
    from pytest_visprobe.report.plots.layers import depth_plot_name

    lines: list[str] = []
    for table in layer_tables(card):
        body = [[*key, *(format_cell(cells[layer]) if layer in cells else "—" for layer in table.layers)]
                for key, cells in table.rows.items()]
        lines += ["", f"### `{table.encoder}`", ""]
        plot = depth_plot_name(table.encoder)
        if plot in card.plots:
            lines += [f"Each metric against depth: [{plot}]({plot}).", ""]
        lines.append(tabulate(body, headers=["probe", "dataset", "metric", *table.layers], tablefmt="github",
                              disable_numparse=True))
    return ["", "## Layers", "", "Per-layer probes (--visprobe-layers) on each layer, in depth order; `last` is "
            "the encoder's own embedding. Layers are compared with the same layer's baseline, and only the "
            "embedding is held to thresholds.", *lines] if lines else []


def table_rows(card: Scorecard) -> tuple[list[str], list[list[str]]]:
    """Metrics as rows, encoders as columns (the comparison view)."""
    records = [r for r in measured(card) if r.layer is None]  # layers: in their own tables (layer_sections)
    encoders = sorted({r.encoder for r in records})
    rows: dict[tuple[str, str, str], dict[str, str]] = {}
    for record in records:
        rows.setdefault((record.probe, record.dataset, record.metric), {})[record.encoder] = format_cell(record)
    headers = ["probe", "dataset", "metric", *encoders]
    body = [[*key, *(cells.get(e, "—") for e in encoders)] for key, cells in rows.items()]
    return headers, body


def control_rows(card: Scorecard) -> tuple[list[str], list[list[str]]]:
    """Each metric between its chance level, its random-init floor and the measured value.

    Chance comes from the probe (``Record.chance``), the floor from the random-init control
    run, the shuffled-label control from the probe's selectivity record.
    """
    records = measured(card)
    selectivity = {(r.encoder, r.probe, r.dataset): r for r in records if r.metric == "selectivity"}
    body = []
    for r in records:
        if r.metric == "selectivity":
            continue
        chance = r.chance
        control = selectivity.get((r.encoder, r.probe, r.dataset))
        if chance is None and r.floor is None and control is None:
            continue
        fmt = lambda v: "—" if v is None else f"{v:.3f}"  # noqa: E731
        body.append([r.encoder, r.probe, r.dataset, r.metric, fmt(chance), fmt(r.floor),
                     fmt(control.details.get("control") if control else None), fmt(r.value),
                     fmt(control.value if control else None)])
    headers = ["encoder", "probe", "dataset", "metric", "chance", "random-init floor",
               "shuffled-label control", "measured", "selectivity"]
    return headers, body


def verdict_rows(card: Scorecard) -> tuple[list[str], list[list[str]]]:
    """Each failing baseline comparison: obtained, baseline, the drop with its interval, the
    test used, its p-value and the unit resampled or paired."""
    body = []
    for r in measured(card):
        c = r.comparison
        if r.passed or c is None or r.baseline is None:
            continue
        drop = f"{c.drop:+.4f}"
        if c.drop_low is not None and c.drop_high is not None:
            drop += f" [{c.drop_low:+.4f}, {c.drop_high:+.4f}]"
        elif c.noise is not None:
            drop += f" (noise ±{c.noise:.4f})"
        test = {"paired_bootstrap": "paired bootstrap", "paired_sign_flip": "paired sign-flip", "mcnemar": "McNemar exact", "intervals": "95 % intervals",
                "tolerance": "tolerance only"}[c.method]
        body.append([r.encoder, f"{r.probe}.{r.metric}", r.dataset, f"{r.value:.4f}", f"{r.baseline:.4f}", drop,
                     test, "—" if c.p_value is None else f"{c.p_value:.3g}", c.unit or c.note or "—"])
    headers = ["encoder", "metric", "dataset", "obtained", "baseline", "drop [95 % interval]", "test", "p",
               "unit (or why unpaired)"]
    return headers, body


def comparison_caveats(card: Scorecard) -> list[str]:
    """Baseline comparisons that were not paired, or that could not reach significance, and why
    (records sharing a reason merged), so a gate that cannot see a metric says so."""
    seen: dict[tuple[str, str, str, str], list[str]] = {}
    for r in measured(card):
        if r.comparison is not None and r.comparison.note:
            seen.setdefault((r.probe, r.metric, r.dataset, r.comparison.note), []).append(r.encoder)
    return [f"- {probe}.{metric} on {dataset} ({', '.join(f'`{e}`' for e in encoders)}): {note}"
            for (probe, metric, dataset, note), encoders in seen.items()]


def uncertainty_notes(card: Scorecard) -> list[str]:
    """How each interval was made, and which metrics have none and why (once per probe and metric)."""
    seen: dict[tuple[str, str], str] = {}
    for r in measured(card):
        if r.interval is not None:
            how = r.interval.method if r.interval.method != "probe" else "computed by the probe"
        else:
            how = f"none — {r.uncertainty}" if r.uncertainty else "none"
        seen.setdefault((r.probe, r.metric), how)
    return [f"- {probe}.{metric}: {how}" for (probe, metric), how in sorted(seen.items())]


#: share of the way from the constant guess to a perfect fit a head must cover on its own train split
FIT_MARGIN = 0.1


def did_not_fit(details: dict) -> str | None:
    """Why a head did not fit its training data (its record's ``train_*`` details), or None.

    Rule: on its own train split the head covers less than ``FIT_MARGIN`` (a tenth) of the way
    from the best constant guess to a perfect fit — ``train_score < chance + 0.1·(1 − chance)``
    for a score bounded by 1 (top-1, mAP, mIoU), and for a head reporting only a loss
    (detection) ``train_loss > 0.9 · constant_loss`` (a perfect loss being 0). Why on train, not
    test: a weak representation still lets a head memorise its training data (train ≫ test),
    while a head that cannot even beat a constant there is either held back (decay too strong,
    too few steps) or reads features that separate nothing even on the data it trained on; its
    test number alone cannot say which. The margin keeps a head that gains a hair over chance
    from passing for fitted; it is not tuned to any data.
    """
    loss, score, chance = details.get("train_loss"), details.get("train_score"), details.get("train_chance")
    constant = details.get("train_constant_loss")
    if score is not None and chance is not None and chance < 1.0:
        if score < chance + FIT_MARGIN * (1.0 - chance):
            text = f"train {score:.3f} vs chance {chance:.3f}"
            return text + (f", train loss {loss:.3f}" if loss is not None else "")
    elif score is None and loss is not None and constant is not None and constant > 0:
        if loss > (1.0 - FIT_MARGIN) * constant:
            return f"train loss {loss:.3f} vs {constant:.3f} of a constant head"
    return None


def unfit_heads(card: Scorecard) -> list[str]:
    """One line per head that did not fit its training data (records sharing a head merged)."""
    lines: dict[tuple, list[str]] = {}
    for r in measured(card):
        why = did_not_fit(r.details)
        if why is not None:
            key = (r.encoder, r.probe, r.dataset, why)
            lines.setdefault(key, []).append(f"{r.metric} {r.value:.3f}")
    return [f"- `{encoder}` {probe} on {dataset}: {why}; test {', '.join(tests)}"
            for (encoder, probe, dataset, why), tests in lines.items()]


def sheet_lines(sheets: Sequence[str]) -> list[str]:
    """One link per contact sheet, named by its probe · encoder · dataset."""
    return [f"- [{Path(name).stem.replace('-', ' · ')}]({name})" for name in sheets]


def to_markdown(card: Scorecard, sheets: Sequence[str] = ()) -> str:
    from tabulate import tabulate

    p = card.provenance
    headers, body = table_rows(card)
    layer_notes = layer_sections(card)
    lines = [
        "# pytest-visprobe scorecard",
        "",
        f"profile `{p.profile}` · seed {p.seed}" + (f" · limit {p.limit}/split" if p.limit else "") + f" · device `{p.device}` · "
        f"{p.created.isoformat(timespec='seconds')}" + (f" · commit `{p.git_commit[:10]}`" if p.git_commit else ""),
        "",
        f"tests: {card.outcome.passed} passed, {card.outcome.failed} failed, "
        f"{card.outcome.errors} errors, {card.outcome.skipped} skipped · feature sets: "
        f"{p.features.get('computed', 0)} computed, {p.features.get('from_disk', 0)} from cache",
        "",
    ]
    if body:
        lines.append(tabulate(body, headers=headers, tablefmt="github", disable_numparse=True))
    else:
        lines.append("_No metrics were recorded._")
    notes = ["", "Cells: value [95 % interval] (± std over trials) ▲/▼ change vs baseline (▲ better) "
                 "✓/✗ against threshold and baseline."]
    if p.baseline:
        notes.append(f"Baseline: `{p.baseline}`, tolerance {p.tolerance}; a metric fails only when it "
                     f"drops by more than the tolerance and by more than the noise explains.")
    failing = [r for r in measured(card) if not r.passed]
    if failing:
        notes += ["", "## Failing metrics", ""]
        for r in failing:
            notes.append(f"- `{r.encoder}` {r.probe}.{r.metric} on {r.dataset}: {r.value:.4f} "
                         f"(threshold {r.threshold}, baseline {r.baseline}) — `{r.nodeid}`")
    verdict_headers, verdict_body = verdict_rows(card)
    if verdict_body:
        notes += ["", "## Gate verdicts", "",
                  "Each failing comparison with the baseline: the drop (positive: worse) with its 95 % interval "
                  "where the test gives one, the test, its two-sided p-value and the unit it resampled or paired.",
                  "", tabulate(verdict_body, headers=verdict_headers, tablefmt="github", disable_numparse=True)]
    caveats = comparison_caveats(card)
    if caveats:
        notes += ["", "## Comparisons with a caveat", "",
                  "Compared with the baseline by a weaker rule than a paired test, or by a paired test that "
                  "cannot reach significance, and why:", "", *caveats]
    notes += layer_notes
    control_headers, control_body = control_rows(card)
    if control_body:
        notes += ["", "## Controls", "",
                  "Each metric between chance, the same architecture re-initialised at random, the same "
                  "probe trained on permuted labels, and the encoder itself.", "",
                  tabulate(control_body, headers=control_headers, tablefmt="github", disable_numparse=True)]
    unfit = unfit_heads(card)
    if unfit:
        notes += ["", "## Heads that did not fit their training data", "",
                  f"On its own train split the head covers less than {FIT_MARGIN:.0%} of the way from the best "
                  "constant guess to a perfect fit: it is held back (decay, steps) or the features separate "
                  "nothing even on the data it trained on.", "", *unfit]
    intervals = uncertainty_notes(card)
    if intervals:
        notes += ["", "## Intervals", "", "How each metric's 95 % interval was made (the unit resampled), or why "
                  "it has none:", "", *intervals]
    if card.plots:
        notes += ["", "## Plots", ""]
        notes += [f"![{Path(name).stem}]({name})" for name in card.plots]
    if sheets:
        notes += ["", "## What the probes saw", "", "The worst and best test images of each probe run "
                  "(image, target, prediction):", "", *sheet_lines(sheets)]
    if card.encoders:
        notes += ["", "## Encoders", ""]
        notes += [f"- `{e.name}` ← `{e.ref}` · fingerprint `{e.fingerprint[:12]}` · input "
                  f"{e.input_size or 'as given'} · {e.parameters:,} parameters" for e in card.sorted().encoders]
    return "\n".join(lines + notes) + "\n"
