"""Command-line options and ini keys: names as constants, values validated at the boundary.

Command line beats ini beats default. Nothing here imports torch.
"""

from __future__ import annotations

import argparse
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pytest

ENCODER_OPTION = "--encoder"
PROFILE_OPTION = "--visprobe-profile"
DATASET_OPTION = "--visprobe-dataset"
REPORT_OPTION = "--visprobe-report"
CACHE_DIR_OPTION = "--visprobe-cache-dir"
NO_CACHE_OPTION = "--visprobe-no-cache"
CACHE_MAX_GB_OPTION = "--visprobe-cache-max-gb"
MAP_DTYPE_OPTION = "--visprobe-map-dtype"
DEVICE_OPTION = "--visprobe-device"
BATCH_SIZE_OPTION = "--visprobe-batch-size"
SEED_OPTION = "--visprobe-seed"
LIMIT_OPTION = "--visprobe-limit"
THRESHOLDS_OPTION = "--visprobe-thresholds"
BASELINE_OPTION = "--visprobe-baseline"
TOLERANCE_OPTION = "--visprobe-tolerance"
DATA_ROOT_OPTION = "--visprobe-data-root"
DOWNLOAD_OPTION = "--visprobe-download"
LIST_OPTION = "--visprobe-list"
SCHEMA_OPTION = "--visprobe-schema"
TEXT_MODEL_OPTION = "--visprobe-text-model"
TRANSFORMATIONS_DATASET_OPTION = "--visprobe-transformations-dataset"
BLESS_OPTION = "--visprobe-bless"
THRESHOLD_ON_OPTION = "--visprobe-threshold-on"
NO_SHEETS_OPTION = "--visprobe-no-sheets"
LAYERS_OPTION = "--visprobe-layers"

DEFAULT_REPORT_DIR = "visprobe-report"
DEFAULT_TOLERANCE = 0.02
THRESHOLDS_FILENAME = "visprobe_thresholds.toml"


def default_cache_dir() -> Path:
    """``$VISPROBE_CACHE_DIR``, else the XDG cache (features outlive a checkout)."""
    if os.environ.get("VISPROBE_CACHE_DIR"):
        return Path(os.environ["VISPROBE_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "pytest-visprobe"


def positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}") from None
    if number <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}")
    return number


def non_negative_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {value!r}") from None
    if number < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {value!r}")
    return number


def threshold_on(value: str) -> str:
    if value not in ("value", "bound"):
        raise argparse.ArgumentTypeError(f"expected value or bound, got {value!r}")
    return value


def tolerance(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {value!r}") from None
    if not number >= 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {value!r}")
    return number


def positive_float(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {value!r}") from None
    if not number > 0 or number == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {value!r}")
    return number


MAP_DTYPES = ("float16", "float32")


def map_dtype(value: str) -> str:
    if value not in MAP_DTYPES:
        raise argparse.ArgumentTypeError(f"expected one of {', '.join(MAP_DTYPES)}, got {value!r}")
    return value


_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def device(value: str) -> str:
    if not _DEVICE.match(value):
        raise argparse.ArgumentTypeError(
            f"expected auto, cpu, cuda, cuda:N or mps, got {value!r}"
        )
    return value


def text_model(value: str) -> str:
    """A label-text model spec, NAME or NAME:ARG. Whether NAME is registered is checked at
    configure time, after conftests and plugins had the chance to register their own."""
    spec = value.strip()
    if not spec or spec.startswith(":"):
        raise argparse.ArgumentTypeError(
            f"expected a text model as NAME or NAME:ARG (e.g. minilm, open_clip:ViT-B-32/openai, "
            f"hf:bert-base-uncased), got {value!r}"
        )
    return spec


LAST = "last"  # the encoder's own embedding
ALL = "all"
LAST4 = "last4"
CLS_AVGPOOL = "last4_cls_avgpool"  # DINOv2's linear evaluation
LAYER_KEYWORDS = (LAST, ALL, LAST4, CLS_AVGPOOL)


def layer_tokens(raw: str) -> list[str | int]:
    """``--visprobe-layers`` as tokens: keywords, block indices (negative from the end) or module
    names. Syntax only: which exist depends on the encoder (encoders/layers.py resolves them)."""
    tokens: list[str | int] = []
    for part in raw.split(","):
        part = part.strip()
        if not part:
            raise ValueError(f"empty item in {raw!r}; give comma-separated items without gaps")
        if re.fullmatch(r"[+-]?\d+", part):
            tokens.append(int(part))
        elif re.fullmatch(r"[A-Za-z_]\w*(\.\w+)*", part):
            tokens.append(part)
        else:
            raise ValueError(f"{part!r} is neither {', '.join(LAYER_KEYWORDS)}, a block index (e.g. -1) "
                             f"nor a module name (e.g. stages.2)")
    return tokens


def layers(value: str) -> str:
    """``--visprobe-layers``, normalised (``last``, ``all``, ``-1,-4``, ``stages.2,head.global_pool``)."""
    try:
        return ",".join(map(str, layer_tokens(value)))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def existing_file(value: str) -> Path:
    path = Path(value)
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"file not found: {value}")
    return path


@dataclass(frozen=True)
class Option:
    """One option: its flag, ini key, parser, default and help (the help states the default)."""

    flag: str
    help: str
    parse: Callable[[str], Any] | None = None
    default: Any = None
    repeatable: bool = False
    flag_only: bool = False
    metavar: str | None = None

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")

    @property
    def ini(self) -> str:
        return "visprobe_encoders" if self.flag == ENCODER_OPTION else self.dest


OPTIONS: tuple[Option, ...] = (
    Option(ENCODER_OPTION, "encoder to probe, repeatable: FILE.py, FILE.py::FACTORY, timm:NAME, "
           "timm:NAME@WEIGHTS_FILE, open_clip:ARCH/PRETRAINED (PRETRAINED may be a local "
           "checkpoint), hf:MODEL_OR_DIR or torchvision:NAME[@WEIGHTS]. Default: none (visprobe tests are skipped).", repeatable=True, metavar="REF"),
    Option(PROFILE_OPTION, "sizes, datasets and probe settings: quick (default, offline, CPU), standard, paper, "
           "or the path of your own TOML profile (it may extend one).",
           default="quick", metavar="NAME|FILE"),
    Option(DATASET_OPTION, "dataset for the label, few-shot, clustering, similarity and robustness "
           "probes instead of the profile's, repeatable: a registered name (shapes, digits, ...), "
           "imagefolder:PATH or coco:IMAGES_DIR:ANNOTATIONS.json; ROLE=SPEC sets one probe role's "
           "instead (e.g. localization=coco:..., attributes=cub).", repeatable=True,
           metavar="[ROLE=]SPEC"),
    Option(REPORT_OPTION, f"directory for scorecard.json and scorecard.md (default: "
           f"{DEFAULT_REPORT_DIR}).", default=DEFAULT_REPORT_DIR, metavar="DIR"),
    Option(CACHE_DIR_OPTION, "on-disk feature cache (default: $VISPROBE_CACHE_DIR or "
           "~/.cache/pytest-visprobe).", metavar="DIR"),
    Option(NO_CACHE_OPTION, "do not read or write the on-disk feature cache (default: off).",
           default=False, flag_only=True),
    Option(CACHE_MAX_GB_OPTION, "size limit of the feature cache in GB (10^9 bytes): after each write "
           "the least-recently-used feature files are deleted until it fits, never one this run uses "
           "(default: no limit).", parse=positive_float, metavar="GB"),
    Option(MAP_DTYPE_OPTION, "how feature maps (the dense probes' input) are stored in the cache and "
           "in memory: float32 (default) or float16 (half the memory and disk; dense probe numbers may move "
           "slightly). Pooled embeddings are always float32.", parse=map_dtype, default="float32", metavar="DTYPE"),
    Option(DEVICE_OPTION, "auto (default: CUDA with bf16 autocast when present, else CPU), "
           "cpu, cuda, cuda:N or mps.", parse=device, default="auto", metavar="DEVICE"),
    Option(BATCH_SIZE_OPTION, "images per forward pass (default: the profile's, 64).",
           parse=positive_int, metavar="N"),
    Option(SEED_OPTION, "seed for data, splits and probes (default: 0).", parse=non_negative_int,
           default=0, metavar="N"),
    Option(LIMIT_OPTION, "cap every dataset split at N samples (a seeded subset keeping every "
           "class) for smoke runs; recorded in the scorecard (default: no cap).", parse=positive_int,
           metavar="N"),
    Option(THRESHOLDS_OPTION, f"thresholds TOML file (default: the nearest {THRESHOLDS_FILENAME} "
           f"beside or above each test file).", parse=existing_file, metavar="FILE"),
    Option(BASELINE_OPTION, "accepted scorecard.json to compare with; a metric fails when it is worse "
           "than the baseline by more than the tolerance and by more than the noise explains (a paired "
           "bootstrap or McNemar test where both runs saw the same units, else the 95 percent "
           "intervals); a baseline measured with other probe settings or data is not compared: the "
           "test fails naming each difference (default: none).",
           parse=Path, metavar="FILE"),
    Option(TOLERANCE_OPTION, f"allowed drop against the baseline, absolute (default: "
           f"{DEFAULT_TOLERANCE}).", parse=tolerance, default=DEFAULT_TOLERANCE, metavar="X"),
    Option(THRESHOLD_ON_OPTION, "what a threshold is asserted on: value (the point value, default) "
           "or bound (the 95 percent interval's lower bound, upper for lower-is-better metrics), so a "
           "metric only luckily above its floor fails.", parse=threshold_on, default="value",
           metavar="value|bound"),
    Option(DATA_ROOT_OPTION, "folder holding the real datasets (CIFAR-10, CUB_200_2011, ...) in "
           "their usual layouts (default: $VISPROBE_DATA_ROOT or ~/.cache/pytest-visprobe/data).",
           metavar="DIR"),
    Option(DOWNLOAD_OPTION, "download missing real datasets into the data root; without it their "
           "tests are skipped, saying how to get them (default: off).", default=False, flag_only=True),
    Option(TEXT_MODEL_OPTION, "text model whose embeddings of 'a photo of {label}.' the similarity "
           "probe compares with each encoder: minilm (default, offline), open_clip:ARCH/PRETRAINED, "
           "hf:MODEL (mean over the prompt's tokens) or hf-token:MODEL (the class name's token, as "
           "Devillers et al.); profiles naming text_models (paper) use theirs instead.", parse=text_model, default="minilm", metavar="SPEC"),
    Option(TRANSFORMATIONS_DATASET_OPTION, "source images for the transformation probes instead "
           "of the profile's (quick: photos, shapes), repeatable: a registered name or "
           "imagefolder:PATH.", repeatable=True, metavar="SPEC"),
    Option(NO_SHEETS_OPTION, "do not draw the contact sheets (the worst and best test images of the label, "
           "segmentation, detection, region and transformation probes, in sheets/ beside the scorecard) "
           "(default: drawn).", default=False, flag_only=True),
    Option(LAYERS_OPTION, "which layers the label, attribute, few-shot, k-NN and transformation probes "
           "read, comma-separated: last (default: the encoder's embedding only), all (every block), last4, "
           "block indices (0 first, -1 last), module names (e.g. stages.2,head.global_pool) or "
           "last4_cls_avgpool (DINOv2's linear evaluation: the class tokens of the last 4 blocks and the "
           "last block's mean patch token). Every layer is read in one forward pass and cached per layer; "
           "records of a layer are named ENCODER@LAYER.", parse=layers, default=LAST, metavar="LAYERS"),
    Option(BLESS_OPTION, f"write this run's scorecard as the accepted baseline to the {BASELINE_OPTION} "
           f"path, if the run completed: no interrupt, collection error, test error or failure other "
           f"than a threshold/baseline verdict (default: off).", default=False, flag_only=True),
)


#: option dest -> RunSettings field, where the field's name is not the dest without "visprobe_"
_FIELD_OF = {"encoder": "encoders", "visprobe_dataset": "datasets",
             "visprobe_transformations_dataset": "transformations_datasets"}


@dataclass(frozen=True)
class RunSettings:
    """Every option's resolved value (command line > ini > default), typed."""

    encoders: tuple[str, ...] = ()
    profile: str = "quick"
    datasets: tuple[str, ...] = ()
    report: str = DEFAULT_REPORT_DIR
    cache_dir: str | None = None
    no_cache: bool = False
    cache_max_gb: float | None = None
    map_dtype: str = "float32"
    device: str = "auto"
    batch_size: int | None = None
    seed: int = 0
    limit: int | None = None
    thresholds: Path | None = None
    baseline: Path | None = None
    tolerance: float = DEFAULT_TOLERANCE
    threshold_on: str = "value"
    data_root: str | None = None
    download: bool = False
    text_model: str = "minilm"
    transformations_datasets: tuple[str, ...] = ()
    bless: bool = False
    no_sheets: bool = False
    layers: str = LAST

    @classmethod
    def from_dests(cls, values: dict[str, Any]) -> "RunSettings":
        """From ``{option dest: value}`` (what argparse and ini give)."""
        fields = {}
        for dest, value in values.items():
            name = _FIELD_OF.get(dest, dest.removeprefix("visprobe_"))
            fields[name] = tuple(value) if isinstance(value, list) else value
        return cls(**fields)


def add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup("visprobe", "probe frozen vision encoders (pytest-visprobe)")
    for option in OPTIONS:
        if option.flag_only:
            group.addoption(option.flag, action="store_true", default=None, dest=option.dest,
                            help=option.help)
            parser.addini(option.ini, option.help, type="bool", default=None)
        elif option.repeatable:
            group.addoption(option.flag, action="append", default=None, dest=option.dest,
                            metavar=option.metavar, help=option.help)
            parser.addini(option.ini, option.help, type="linelist", default=[])
        else:
            group.addoption(option.flag, action="store", default=None, dest=option.dest,
                            metavar=option.metavar, type=option.parse, help=option.help)
            parser.addini(option.ini, option.help, type="string", default="")


def read_options(config: pytest.Config) -> RunSettings:
    """Resolve every option (command line > ini > default); bad ini values are usage errors."""
    values: dict[str, Any] = {}
    for option in OPTIONS:
        value = config.getoption(option.dest)
        if value is None:
            ini_value = config.getini(option.ini)
            if ini_value not in (None, "", []):
                if isinstance(ini_value, str) and option.parse is not None:
                    try:
                        ini_value = option.parse(ini_value)
                    except argparse.ArgumentTypeError as exc:
                        raise pytest.UsageError(f"ini key {option.ini}: {exc}") from None
                value = ini_value
        if value is None:
            value = [] if option.repeatable else option.default
        values[option.dest] = value
    return RunSettings.from_dests(values)


def add_commands(parser: pytest.Parser) -> None:
    """Options that run a command and exit, like ``--fixtures``: not settings, so no ini key."""
    group = parser.getgroup("visprobe")
    group.addoption(LIST_OPTION, action="store_true", default=False, dest="visprobe_list",
                    help="list registered datasets (and whether each is under the data root), "
                         "probes with their metrics and settings (for --visprobe-profile), "
                         "transformations and profiles, then exit.")
    group.addoption(SCHEMA_OPTION, action="store_true", default=False, dest="visprobe_schema",
                    help="print the JSON schema of scorecard.json (what --visprobe-baseline reads), then exit.")
