"""``pytest --visprobe-list``: what is registered and what each part needs, without torch.

Datasets (targets, splits, options, and whether a real one is under the data root), probes
and their metrics (the metric registry), transformations by family, and profiles with their
datasets per probe role; under ``--visprobe-profile=paper`` also the conformance table
(conformance.toml): per PROTOCOLS.md item, "as published" or what differs and why.
"""

from __future__ import annotations

from typing import Any, TextIO

from pytest_visprobe.runner.options import DATA_ROOT_OPTION, DOWNLOAD_OPTION, RunSettings


def write_listing(out: TextIO, options: "RunSettings") -> None:
    from pytest_visprobe.datasets import imagefolder_options, list_datasets
    from pytest_visprobe.datasets.storage import default_data_root, resolve_root
    from pytest_visprobe.datasets.transformations import list_families, list_transformations

    raw_root = options.data_root
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
    from pytest_visprobe.datasets.specs import DATASET_KINDS

    for name in DATASET_KINDS.names():
        out.write(f"{DATASET_KINDS.get(name).description}\n")
        if name == "imagefolder":
            out.write(f"    options: {', '.join(imagefolder_options())}\n")

    from pytest_visprobe.encoders.kinds import ENCODER_KINDS

    _heading(out, "encoder kinds (--encoder)")
    out.write("FILE.py or FILE.py::FACTORY -- a factory returning an Encoder or a torch.nn.Module\n")
    for name in ENCODER_KINDS.names():
        out.write(f"{ENCODER_KINDS.get(name).description}\n")

    from pytest_visprobe.probes.spec import list_probes
    from pytest_visprobe.profiles import PROFILES, get_profile

    profile = get_profile(options.profile)
    _heading(out, f"probes, their metrics and settings (--visprobe-profile={options.profile})")
    for spec in list_probes():
        needs = ", ".join(spec.targets) or "images"
        if spec.needs_feature_map:
            needs += ", feature_map"
        layers = "; per layer" if spec.per_layer else "; with --visprobe-layers only" if spec.layers_only else ""
        out.write(f"{spec.name} [role {spec.role}; needs {needs}{layers}] -- {spec.description}\n")
        for metric in spec.metrics:
            direction = "higher is better" if metric.higher_is_better else "lower is better"
            chance = f"; chance: {metric.chance}" if metric.chance else ""
            out.write(f"    {metric.name} ({direction}{chance}): {metric.description}\n")
        settings = profile.settings_for(spec.name).model_dump(mode="json")
        if settings:
            out.write(f"    settings: {_flat(settings)}\n")

    _heading(out, "transformations")
    for family in list_families():
        names = [t.name for t in list_transformations(family)]
        out.write(f"{family}: {', '.join(names)}\n")

    _heading(out, "profiles (--visprobe-profile NAME or a TOML file)")
    for name in PROFILES.names():
        found = get_profile(name)
        out.write(f"{found.name} -- {found.description} ({found.source})\n")
        for role, specs in found.datasets.items():
            out.write(f"    {role}: {', '.join(specs)}\n")
    if options.profile not in PROFILES:
        out.write(f"{profile.name} -- {profile.description} ({profile.source})\n")
        for role, specs in profile.datasets.items():
            out.write(f"    {role}: {', '.join(specs)}\n")
    if profile.name == "paper":
        from pytest_visprobe.conformance import TABLE, write_table

        _heading(out, f"conformance of the paper profile with PROTOCOLS.md ({TABLE.name})")
        write_table(out)


def _flat(values: dict[str, Any], prefix: str = "") -> str:
    """``a=1, head.recipe=lbfgs``: nested settings on one line."""
    parts = []
    for key, value in values.items():
        if isinstance(value, dict):
            parts.append(_flat(value, f"{prefix}{key}."))
        else:
            parts.append(f"{prefix}{key}={value}")
    return ", ".join(parts)


def _heading(out: TextIO, title: str) -> None:
    out.write(f"{'=' * 10} {title} {'=' * 10}\n")


__all__ = ["write_listing"]
