"""``pytest --visprobe-list``: what is registered and what each part needs, without torch.

Datasets (targets, splits, options, and whether a real one is under the data root), probes
and their metrics (the metric registry), transformations by family, and profiles with their
datasets per probe role.
"""

from __future__ import annotations

from typing import Any, TextIO

from .options import DATA_ROOT_OPTION, DOWNLOAD_OPTION


def write_listing(out: TextIO, options: dict[str, Any]) -> None:
    from .datasets import imagefolder_options, list_datasets
    from .datasets.storage import default_data_root, resolve_root
    from .profiles import PROFILES
    from .results import all_metric_specs
    from .transformations import list_families, list_transformations

    raw_root = options.get("visprobe_data_root")
    data_root = resolve_root(raw_root) if raw_root else default_data_root()

    _heading(out, f"datasets (data root: {data_root}; {DATA_ROOT_OPTION} changes it)")
    for entry in list_datasets():
        if entry.present is None:
            where = "embedded"
        elif entry.present(data_root):
            where = "present"
        else:
            where = f"absent: its tests skip; {DOWNLOAD_OPTION} fetches it where it can be downloaded"
        out.write(f"{entry.name} [{', '.join(sorted(entry.targets))}; splits "
                  f"{', '.join(entry.splits)}] -- {where}\n")
        out.write(f"    {entry.description}\n")
        shown = [o for o in (entry.options or ()) if o not in ("root", "download")]
        if shown:
            out.write(f"    options: {', '.join(shown)}\n")
    out.write("imagefolder:PATH [label; splits train, test] -- any folder\n")
    out.write("    class-per-folder images (PATH/<class>/... or PATH/train|test/<class>/...)\n")
    out.write(f"    options: {', '.join(imagefolder_options())}\n")

    _heading(out, "probes and metrics")
    by_probe: dict[str, list] = {}
    for spec in all_metric_specs():
        by_probe.setdefault(spec.probe, []).append(spec)
    for probe in sorted(by_probe):
        out.write(f"{probe}\n")
        for spec in by_probe[probe]:
            direction = "higher is better" if spec.higher_is_better else "lower is better"
            out.write(f"    {spec.metric} ({direction}): {spec.description}\n")

    _heading(out, "transformations")
    for family in list_families():
        names = [t.name for t in list_transformations(family)]
        out.write(f"{family}: {', '.join(names)}\n")

    _heading(out, "profiles (--visprobe-profile)")
    for profile in PROFILES.values():
        out.write(f"{profile.name} -- {profile.description}\n")
        for role, specs in profile.datasets.items():
            out.write(f"    {role}: {', '.join(specs)}\n")


def _heading(out: TextIO, title: str) -> None:
    out.write(f"{'=' * 10} {title} {'=' * 10}\n")


__all__ = ["write_listing"]
