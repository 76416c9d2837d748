"""Few-shot prototypes: can N labelled images per class name the rest? (PROTOCOLS.md A)

Per trial, N training images per class are drawn (seeded from the session seed and the trial),
their L2-normalised features are averaged into class prototypes, and every test image goes to
the prototype with the largest dot product. The metric is the mean top-1 over the trials, with
the std over trials as its spread and a bootstrap over test images and support sets together
as its interval.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field

from pytest_visprobe.probes.spec import Metric, MetricSpec, ProbeSpec

if TYPE_CHECKING:
    from pytest_visprobe.runner.context import ProbeContext

#: Shot counts the shipped suite runs (the study's); any N gives a ``top1_{N}shot`` metric.
SHOTS = (1, 5, 10)


class FewShotConfig(BaseModel):
    """Nearest-prototype few-shot (PROTOCOLS.md A)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    trials: int = Field(10, gt=0)  # support sets drawn per N, each seeded from (session seed, trial)
    ddof: Literal[0, 1] = 1  # std over trials: 1 = sample std; the study's code used 0 (np.std)


class FewShotDetails(BaseModel):
    model_config = ConfigDict(extra="forbid")

    n_shot: int
    trials: int
    per_trial: list[float]
    n_test: int


def metric_name(n_shot: int) -> str:
    return f"top1_{n_shot}shot"


def run(ctx: "ProbeContext", n_shot: int) -> list[Metric]:
    import numpy as np

    from pytest_visprobe.kernels.chance import majority_share
    from pytest_visprobe.kernels.fewshot import fewshot_accuracy
    from pytest_visprobe.report.units import UnitStats

    config: FewShotConfig = ctx.settings
    train, test = ctx.dataset.split("train"), ctx.dataset.split("test")
    fewest = int(np.unique(train.labels, return_counts=True)[1].min())
    if fewest < n_shot:
        ctx.skip(f"{n_shot}-shot needs {n_shot} training images per class, but {ctx.dataset.name!r} has a class "
                 f"with {fewest} in its train split; raise --visprobe-limit or use a larger dataset.")
    result = fewshot_accuracy(ctx.features("train").numpy(), train.labels, ctx.features("test").numpy(), test.labels,
                              n_shot=n_shot, trials=config.trials, seed=ctx.seed, ddof=config.ddof)
    details = FewShotDetails(n_shot=n_shot, trials=config.trials, per_trial=[round(a, 6) for a in result.per_trial],
                             n_test=int(len(test.labels)))
    # test images × support sets, both resampled (and paired): the interval carries the trial
    # variance as well as the test set's
    units = UnitStats("mean", "test image", {"value": result.outcomes}, columns="support set")
    return [Metric("fewshot", metric_name(n_shot), result.mean, spread=result.std, details=details,
                   units=units, chance=majority_share(test.labels))]


FEWSHOT = ProbeSpec(
    name="fewshot",
    description="nearest-prototype classification from N labelled images per class",
    metrics=(MetricSpec("top1_{n}shot", True,
                        "nearest-prototype top-1 with N training image(s) per class; mean over trials",
                        chance="the majority class's share of the test split"),),
    run=run,
    settings=FewShotConfig,
    details=FewShotDetails,
    role="fewshot",
    targets=("label",),
    plot="pytest_visprobe.report.plots.generalization:plot_fewshot",
    per_layer=True,
)
