"""The transformation bank: every member keeps the image contract, is seeded, and really edits.

Natural photos are crops of scikit-image's bundled sample images (no download). The flat-ish
image is a smooth colour ramp with no texture: transformations that only average or resample
neighbourhoods cannot change such an image, or barely; they are listed in FLAT_EXEMPT with the
reason and must change the photos instead.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pytest_visprobe.errors import RegistryError, UnknownNameError, VisprobeError
from pytest_visprobe.datasets.transformations import (
    FAMILIES,
    Transformation,
    TransformationError,
    apply_transformation,
    generalization_split,
    get_transformation,
    list_families,
    list_transformations,
    register_transformation,
    unregister_transformation,
)

ROOT = Path(__file__).resolve().parents[1]
BUILTINS = [t.name for t in list_transformations()]

#: No parameters, so every seed gives the same output.
PARAMETERLESS = {
    "identity",
    "grayscale",
    "invert",
    "equalize",
    "flip_horizontal",
    "flip_vertical",
    "contour",
}

#: Cannot change a smooth ramp, or not by MIN_CHANGE at every seed, and why. Each of these
#: must still change the photos (test_changes_natural_photos).
FLAT_EXEMPT = {
    "gaussian_blur": "a symmetric local average of a linear ramp is the ramp: no change",
    "box_blur": "a symmetric local average of a linear ramp is the ramp: no change",
    "motion_blur": "a symmetric local average of a linear ramp is the ramp: no change",
    "defocus_blur": "a symmetric local average of a linear ramp is the ramp: no change",
    "sharpen": "a linear ramp has no curvature to amplify: no change",
    "oil_paint": "all four Kuwahara quadrants of a ramp vary alike: a 1-2 px shift of the ramp",
    "pixelate": "block means of a shallow ramp stay within half a grey level of it on average",
    "downscale": "a shallow ramp sampled every 2-4 pixels and repeated moves by about a grey level or less",
    "shear": "a sheared ramp is a ramp of slightly other slope: ~0.5 levels at small angles",
    "perspective": "a mild homography shifts a shallow ramp by a few pixels: ~0.3-1 levels",
}

SEEDS = range(6)
#: "Changes the image": the mean absolute difference is at least this many grey levels.
MIN_CHANGE = 0.5


def _resized(array: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return np.array(Image.fromarray(array).resize(size, Image.Resampling.BICUBIC))


@pytest.fixture(scope="module")
def photos() -> dict[str, np.ndarray]:
    from skimage import data

    return {
        "astronaut": _resized(data.astronaut()[0:300, 100:400], (64, 64)),
        "chelsea": _resized(data.chelsea()[50:250, 100:300], (64, 64)),
    }


@pytest.fixture(scope="module")
def flat() -> np.ndarray:
    """An orange-brown ramp, ±10-20 grey levels across: colour, no texture."""
    yy, xx = np.mgrid[0:64, 0:64] / 63.0
    ramp = np.stack([190 + 20 * xx, 120 + 15 * yy, 60 + 5 * (xx + yy)], axis=-1)
    return np.rint(ramp).astype(np.uint8)


@pytest.fixture(scope="module")
def odd_images(photos) -> dict[str, np.ndarray]:
    """Shapes and contents that break careless code: non-square, tiny, constant, extremes."""
    return {
        "non_square": _resized(photos["chelsea"], (72, 40)),
        "tiny": np.full((5, 7, 3), 100, dtype=np.uint8),
        "single_pixel": np.full((1, 1, 3), 200, dtype=np.uint8),
        "black": np.zeros((32, 32, 3), dtype=np.uint8),
        "white": np.full((32, 32, 3), 255, dtype=np.uint8),
    }


def _change(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


@pytest.fixture
def registered():
    """Register user transformations for one test and remove them afterwards."""
    added: list[str] = []

    def add(name, family, fn=None, **kwargs):
        fn = fn or (lambda image, rng: 255 - image)
        entry = register_transformation(name, family, fn, description="test", **kwargs)
        added.append(name)
        return entry

    yield add
    for name in added:
        if name in {t.name for t in list_transformations()}:
            unregister_transformation(name)


# --- The bank ---------------------------------------------------------------------------------


def test_bank_covers_the_protocol_families():
    assert len(BUILTINS) >= 30
    assert list_families()[: len(FAMILIES)] == list(FAMILIES)
    by_family = {f: {t.name for t in list_transformations(f)} for f in FAMILIES}
    assert by_family["identity"] == {"identity"}
    expected = {
        "colour": {"brightness", "contrast", "saturation", "hue_shift", "grayscale", "invert",
                   "posterize", "palette_quantize", "solarize"},
        "quality": {"jpeg", "pixelate", "downscale"},
        "noise": {"gaussian_noise", "impulse_noise", "speckle_noise"},
        "blur": {"gaussian_blur", "motion_blur", "box_blur", "sharpen"},
        "overlay": {"text", "shape", "border"},
        "geometry": {"rotate_90", "rotate", "flip_horizontal", "flip_vertical", "crop_zoom",
                     "shear", "perspective"},
        "style": {"emboss", "edges", "contour", "cartoon", "oil_paint"},
    }  # fmt: skip
    for family, names in expected.items():
        assert names <= by_family[family], family


@pytest.mark.parametrize("name", BUILTINS)
def test_description_states_the_parameter_range(name):
    entry = get_transformation(name)
    assert isinstance(entry, Transformation) and entry.name == name
    assert "\n" not in entry.description
    if name in PARAMETERLESS:
        assert "no parameters" in entry.description
    else:
        assert re.search(r"\[\S+, \S+\]", entry.description), "no [low, high] range given"


@pytest.mark.parametrize("name", BUILTINS)
def test_same_seed_same_output(name, photos):
    for seed in (0, 7):
        first = apply_transformation(name, photos["astronaut"], seed=seed)
        again = apply_transformation(name, photos["astronaut"].copy(), seed=seed)
        np.testing.assert_array_equal(first, again)


@pytest.mark.parametrize("name", BUILTINS)
def test_seed_draws_the_parameters(name, photos):
    outputs = [apply_transformation(name, photos["astronaut"], seed=s).tobytes() for s in SEEDS]
    if name in PARAMETERLESS:
        assert len(set(outputs)) == 1, "documented as parameterless, yet the seed matters"
    else:
        assert len(set(outputs)) >= 2, f"{name}: six seeds gave one output"


@pytest.mark.parametrize("name", BUILTINS)
def test_contract_shape_dtype_and_input_untouched(name, photos, flat, odd_images):
    images = {**photos, "flat": flat, **odd_images}
    for label, image in images.items():
        before = image.copy()
        out = apply_transformation(name, image, seed=3)
        assert out.shape == image.shape and out.dtype == np.uint8, label
        assert out.flags.writeable, label
        np.testing.assert_array_equal(image, before)


@pytest.mark.parametrize("name", BUILTINS)
def test_changes_natural_photos(name, photos):
    for label, image in photos.items():
        for seed in SEEDS:
            change = _change(apply_transformation(name, image, seed=seed), image)
            if name == "identity":
                assert change == 0.0
            else:
                assert change >= MIN_CHANGE, f"{name} barely changed {label} at seed {seed}"


@pytest.mark.parametrize("name", BUILTINS)
def test_changes_flat_image(name, flat):
    changes = [_change(apply_transformation(name, flat, seed=s), flat) for s in SEEDS]
    if name == "identity":
        assert max(changes) == 0.0
    elif name in FLAT_EXEMPT:
        # Keeps the exemption honest: if this starts failing, remove the name from FLAT_EXEMPT.
        assert min(changes) < MIN_CHANGE, f"{name} now changes flat images"
    else:
        assert min(changes) >= MIN_CHANGE, f"{name} barely changed the flat image: {changes}"


@pytest.mark.parametrize("name", ["rotate", "shear", "perspective"])
@pytest.mark.parametrize("shape", [(64, 64), (8, 96), (96, 8)], ids=str)
def test_warps_mirror_the_border_instead_of_filling(name, shape):
    """A constant image stays constant: no fill colour leaks in, whatever the aspect ratio
    (and, as the module says, no geometric transformation can change a constant image)."""
    image = np.full(shape + (3,), (30, 200, 90), dtype=np.uint8)
    for seed in SEEDS:
        np.testing.assert_array_equal(apply_transformation(name, image, seed=seed), image)


def test_parameters_are_independent_across_transformations(registered, flat):
    """The name is mixed into the seed, so one seed does not hand every transformation the
    same draws (which would tie, e.g., brightness and contrast strengths together)."""
    draws: dict[str, float] = {}

    def recorder(name):
        def fn(image, rng):
            draws[name] = rng.random()
            return image.copy()

        return fn

    for name in ("probe_a", "probe_b"):
        registered(name, "colour", recorder(name))
        apply_transformation(name, flat, seed=5)
    assert draws["probe_a"] != draws["probe_b"]


def test_seeding_does_not_depend_on_python_hash_randomisation(photos):
    code = (
        "import sys, numpy as np; "
        "from pytest_visprobe.datasets.transformations import apply_transformation; "
        "img = np.arange(16 * 16 * 3, dtype=np.uint8).reshape(16, 16, 3); "
        "sys.stdout.write(apply_transformation('gaussian_noise', img, seed=11).tobytes().hex())"
    )
    runs = {
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
            env={**os.environ, "PYTHONHASHSEED": str(h)},
        ).stdout
        for h in (1, 2)
    }
    assert len(runs) == 1
    img = np.arange(16 * 16 * 3, dtype=np.uint8).reshape(16, 16, 3)
    assert runs.pop() == apply_transformation("gaussian_noise", img, seed=11).tobytes().hex()


def test_module_imports_without_torch_or_heavy_libraries():
    code = (
        "import sys; import pytest_visprobe.datasets.transformations; "
        "print(sorted(m for m in ('torch', 'skimage', 'scipy') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert out.stdout.strip() == "[]"


# --- apply_transformation boundaries ------------------------------------------------------------


@pytest.mark.parametrize("seed", [-1, 1.5, True, "3", None])
def test_bad_seed_is_rejected(seed, flat):
    with pytest.raises(TransformationError, match="seed"):
        apply_transformation("jpeg", flat, seed=seed)


@pytest.mark.parametrize(
    "image",
    [
        np.zeros((8, 8), dtype=np.uint8),
        np.zeros((8, 8, 4), dtype=np.uint8),
        np.zeros((8, 8, 3), dtype=np.float32),
        np.zeros((0, 8, 3), dtype=np.uint8),
        [[0, 0, 0]],
    ],
    ids=["2d", "rgba", "float", "empty", "list"],
)
def test_bad_image_is_rejected(image):
    with pytest.raises(TransformationError, match=r"uint8 \[H, W, 3\]"):
        apply_transformation("invert", image, seed=0)


def test_a_transformation_breaking_the_contract_is_reported(registered, flat):
    registered("halve", "geometry", lambda image, rng: image[::2])
    registered("to_float", "colour", lambda image, rng: image / 255.0)
    for name in ("halve", "to_float"):
        with pytest.raises(TransformationError, match=f"{name}.*must return uint8"):
            apply_transformation(name, flat, seed=0)


def test_a_transformation_cannot_edit_its_input(registered, flat):
    def in_place(image, rng):
        image[0, 0] = 0
        return image

    registered("in_place", "colour", in_place)
    before = flat.copy()
    with pytest.raises(ValueError, match="read-only"):
        apply_transformation("in_place", flat, seed=0)
    np.testing.assert_array_equal(flat, before)


# --- Registry ---------------------------------------------------------------------------------


def test_register_list_get_unregister(registered, flat):
    entry = registered("channel_swap", "colour", lambda image, rng: image[..., ::-1].copy())
    assert get_transformation("channel_swap") is entry
    assert list_transformations("colour")[-1] is entry
    out = apply_transformation("channel_swap", flat, seed=0)
    np.testing.assert_array_equal(out, flat[..., ::-1])
    assert unregister_transformation("channel_swap") is entry
    assert "channel_swap" not in {t.name for t in list_transformations()}


def test_transformation_record_is_frozen():
    entry = get_transformation("jpeg")
    with pytest.raises(AttributeError):
        entry.name = "png"


def test_duplicate_name_is_an_error_unless_replaced(registered):
    registered("mine", "noise")
    with pytest.raises(RegistryError, match="already registered.*replace=True"):
        registered("mine", "blur")
    with pytest.raises(RegistryError, match="already registered"):
        register_transformation("jpeg", "quality", lambda i, r: i, description="again")
    replaced = register_transformation("mine", "blur", lambda i, r: i, description="the blur one", replace=True)
    assert get_transformation("mine") is replaced and replaced.family == "blur"


def test_unknown_family_is_an_error_unless_created(registered):
    with pytest.raises(TransformationError, match=r"family 'colur'.*did you mean 'colour'"):
        registered("tint", "colur")
    registered("vignette", "lighting", new_family=True)
    assert list_families()[-1] == "lighting"
    assert [t.name for t in list_transformations("lighting")] == ["vignette"]
    registered("spotlight", "lighting")  # the family now exists
    unregister_transformation("vignette")
    unregister_transformation("spotlight")
    assert "lighting" not in list_families()


@pytest.mark.parametrize(
    ("name", "fn", "description", "match"),
    [
        ("", lambda i, r: i, "d", "invalid transformation name"),
        ("two words", lambda i, r: i, "d", "invalid transformation name"),
        ("ok_name", "not callable", "d", "must be callable"),
        ("ok_name", lambda i, r: i, "  ", "description"),
    ],
)
def test_invalid_registration(name, fn, description, match):
    with pytest.raises(TransformationError, match=match):
        register_transformation(name, "colour", fn, description=description)
    assert "ok_name" not in {t.name for t in list_transformations()}


def test_unknown_name_suggests_close_ones():
    with pytest.raises(UnknownNameError, match=r"Did you mean 'gaussian_blur'"):
        get_transformation("gausian_blur")
    with pytest.raises(UnknownNameError, match="list_transformations"):
        apply_transformation("nothing_like_it", np.zeros((4, 4, 3), np.uint8), seed=0)
    with pytest.raises(TransformationError, match="unknown family 'noize'.*did you mean 'noise'"):
        list_transformations("noize")
    assert issubclass(TransformationError, VisprobeError)


# --- Generalization split ---------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_generalization_split_properties(seed):
    train, held = generalization_split(seed)
    assert set(train).isdisjoint(held)
    assert sorted(train + held) == sorted(BUILTINS)
    assert "identity" in train
    for family in FAMILIES:
        members = {t.name for t in list_transformations(family)}
        assert members & set(train), f"{family} has no training member"
        if family != "identity" and len(members) >= 2:
            assert members & set(held), f"{family} has no held-out member"
    # Bank order, so labels derived from either list are stable.
    assert train == [n for n in BUILTINS if n in train]
    assert held == [n for n in BUILTINS if n in held]


def test_generalization_split_rejects_a_bad_seed():
    with pytest.raises(TransformationError, match="seed"):
        generalization_split(-1)


def test_generalization_split_is_seeded():
    assert generalization_split(0) == generalization_split(0)
    assert generalization_split() == generalization_split(0)
    assert len({tuple(generalization_split(s)[1]) for s in range(5)}) > 1


def test_generalization_split_includes_user_families(registered):
    registered("vignette", "lighting", new_family=True)
    registered("spotlight", "lighting")
    train, held = generalization_split(0)
    assert len({"vignette", "spotlight"} & set(held)) == 1
    assert len({"vignette", "spotlight"} & set(train)) == 1
