"""Zero-shot prompt templates: which sentences stand for a class name, per dataset.

CLIP classifies by comparing an image with the text embeddings of its classes, each the mean
over an ensemble of prompts. The templates here are CLIP_benchmark's English ones
(``en_zeroshot_classification_templates.json``, MIT licence) for the datasets this project
loads; ImageNet's 80 come from open_clip itself (``OPENAI_IMAGENET_TEMPLATES``) and are the
default for any other real dataset. The embedded datasets (shapes, digits) are not photographs
of named things, so they get the single plain prompt ``a photo of a {c}.``.
"""

from __future__ import annotations

from typing import Callable, Sequence

_CIFAR = (
    "a photo of a {c}.", "a blurry photo of a {c}.", "a black and white photo of a {c}.",
    "a low contrast photo of a {c}.", "a high contrast photo of a {c}.", "a bad photo of a {c}.",
    "a good photo of a {c}.", "a photo of a small {c}.", "a photo of a big {c}.", "a photo of the {c}.",
    "a blurry photo of the {c}.", "a black and white photo of the {c}.", "a low contrast photo of the {c}.",
    "a high contrast photo of the {c}.", "a bad photo of the {c}.", "a good photo of the {c}.",
    "a photo of the small {c}.", "a photo of the big {c}.",
)

#: CLIP_benchmark's templates for the datasets this project registers
DATASET_TEMPLATES: dict[str, tuple[str, ...]] = {
    "cifar10": _CIFAR,
    "cifar100": _CIFAR,
    "mnist": ('a photo of the number: "{c}".',),
    "stl10": ("a photo of a {c}.", "a photo of the {c}."),
    "svhn": (
        "a photo of the number {c} written on a sign", "an outdoor house number {c}",
        "the number {c} in the center of the image", "an outdoor number {c} writte on a sign",
        "an outdoor number {c}", "a centered image of the number {c}",  # "writte" (sic): kept as published
    ),
}

SIMPLE_TEMPLATE = "a photo of a {c}."
#: embedded datasets: one plain prompt
SIMPLE_DATASETS = ("shapes", "digits")

Template = str | Callable[[str], str]


def imagenet_templates() -> tuple[Template, ...]:
    """CLIP's 80 ImageNet prompts, from open_clip (callables of the class name)."""
    from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES

    return tuple(OPENAI_IMAGENET_TEMPLATES)


def templates_for(dataset: str, choice: str | Sequence[str] = "dataset") -> tuple[tuple[Template, ...], str]:
    """The templates and a name saying which: ``choice`` is ``"dataset"`` (the dataset's own,
    else ImageNet's 80), ``"imagenet"``, ``"simple"`` or a list of ``"...{c}..."`` strings."""
    if not isinstance(choice, str):
        return tuple(choice), "custom"
    if choice == "imagenet":
        return imagenet_templates(), "imagenet (80, open_clip)"
    if choice == "simple" or (choice == "dataset" and dataset in SIMPLE_DATASETS):
        return (SIMPLE_TEMPLATE,), "simple"
    if dataset in DATASET_TEMPLATES:
        return DATASET_TEMPLATES[dataset], f"{dataset} (CLIP_benchmark)"
    return imagenet_templates(), "imagenet (80, open_clip)"


def prompt_name(class_name: str) -> str:
    """The class name as a prompt says it: underscores as spaces, MNIST's "3 - three" as "3"."""
    name = class_name.replace("_", " ").strip()
    head, sep, _ = name.partition(" - ")
    return head if sep and head.isdigit() else name
