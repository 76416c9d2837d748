"""Procedural shape scenes: every target (label, attributes, boxes, masks) known exactly.

Why procedural: the offline default profile needs a dataset with localization targets and
no download. Each scene holds 1-3 objects on a solid, gradient or noisy background. Colour,
size and texture are drawn independently of the class, so the class cannot be read off the
colour and the attribute probe measures something the label probe does not.

Geometry: an object's size ``s`` is the square root of its area, whatever its shape, so "the
largest object" means the same thing for a star as for a square. The *main object* is the
largest and is drawn last (fully visible); it gives the image's ``labels`` and
``attributes``. Other objects are 55-85 % of its size and may be partly hidden behind it
or each other; an object left with too few visible pixels is not drawn at all, so every
drawn pixel belongs to exactly one listed instance.

Per-image lists (``boxes``, ``box_labels``, ``box_attributes``, ``instance_masks``) are in
drawing order, bottom to top: the main object is always the last entry. Boxes are xyxy in
pixel-edge coordinates: a box ``(x1, y1, x2, y2)`` covers columns ``x1 .. x2-1`` and rows
``y1 .. y2-1``, the tight box of the visible pixels.

Each scene also has one caption written from its parameters (``captions``, for the retrieval
probe): every drawn object, the main one first, as size, colour, texture (none for solid),
class and the third of the image its centre lies in, e.g. "a large red striped circle at the
top left and a small blue square in the centre".
"""

from __future__ import annotations

import numpy as np

from pytest_visprobe.datasets.base import ArrayImages, Dataset, Split, check_int, fingerprint_of, rng_for

#: Bumped whenever the generator changes what a seed produces (part of the fingerprint).
GENERATOR_VERSION = 1

CLASS_NAMES = ("circle", "square", "triangle", "star", "cross")
COLOUR_NAMES = ("red", "green", "blue", "yellow", "magenta", "cyan")
SIZE_NAMES = ("small", "large")
TEXTURE_NAMES = ("solid", "striped", "dotted")
ATTRIBUTE_NAMES = (
    [f"colour={c}" for c in COLOUR_NAMES]
    + [f"size={s}" for s in SIZE_NAMES]
    + [f"texture={t}" for t in TEXTURE_NAMES]
)

_COLOURS = np.array(
    [
        [0.90, 0.10, 0.10],
        [0.10, 0.80, 0.15],
        [0.10, 0.20, 0.95],
        [0.95, 0.90, 0.10],
        [0.90, 0.10, 0.90],
        [0.10, 0.90, 0.90],
    ],
    dtype=np.float32,
)

_MAX_OBJECTS = 3
# Size bands of the main object as fractions of the image side; others are derived from it.
_SMALL_BAND = (0.17, 0.23)
_LARGE_BAND = (0.29, 0.38)
_LARGE_THRESHOLD = 0.26  # an object is "large" when s >= this fraction of the image side
_OTHER_SCALE = (0.55, 0.85)

# Shape parameters, in units of s = sqrt(area).
_CIRCLE_R = 1.0 / np.sqrt(np.pi)
_SQUARE_HALF = 0.5
_STAR_INNER = 0.45  # inner/outer radius ratio
_STAR_R = 1.0 / np.sqrt(5.0 * _STAR_INNER * np.sin(np.pi / 5))
_TRIANGLE_R = np.sqrt(4.0 / np.sqrt(3.0)) / np.sqrt(3.0)  # circumradius of an area-1 triangle
_CROSS_HALF = 3.0 / np.sqrt(20.0)  # arm half-length; arm half-width is a third of it
# Farthest point from the centre under any rotation: keeps every object inside the image.
_EXTENT = np.array(
    [
        _CIRCLE_R,
        np.sqrt(2) * _SQUARE_HALF,
        _TRIANGLE_R,
        _STAR_R,
        np.hypot(1.0, 1 / 3) * _CROSS_HALF,
    ],
    dtype=np.float32,
)

_CHUNK_PIXELS = 128 * 64 * 64  # pixels rendered at once: bounds memory whatever n and size

DESCRIPTION = (
    "procedural scenes of 1-3 shapes (circle, square, triangle, star, cross) with colour, "
    "size and texture attributes, boxes and instance/semantic masks; offline, seeded"
)


def load_shapes(
    *, seed: int = 0, n_train: int = 600, n_test: int = 300, image_size: int = 64
) -> Dataset:
    """Generate the shapes dataset; the same arguments always give identical arrays."""
    n_train = check_int("shapes", "n_train", n_train, minimum=1)
    n_test = check_int("shapes", "n_test", n_test, minimum=1)
    image_size = check_int("shapes", "image_size", image_size, minimum=32)
    splits = {
        "train": generate_split(rng_for(seed, "shapes", "train"), n_train, image_size),
        "test": generate_split(rng_for(seed, "shapes", "test"), n_test, image_size),
    }
    return Dataset(
        name="shapes",
        splits=splits,
        class_names=list(CLASS_NAMES),
        attribute_names=list(ATTRIBUTE_NAMES),
        targets=frozenset({"label", "attributes", "boxes", "masks", "captions"}),
        fingerprint=fingerprint_of(
            "shapes", GENERATOR_VERSION, seed, n_train, n_test, image_size,
            splits["train"].images.array, splits["test"].images.array,
        ),
        description=DESCRIPTION,
    )


def generate_split(rng: np.random.Generator, n: int, size: int) -> Split:
    """Draw ``n`` scenes of ``size`` pixels from ``rng`` (all parameters first, then render)."""
    k = _MAX_OBJECTS
    main = k - 1  # slot of the main object: drawn last
    n_objects = rng.integers(1, k + 1, n)
    active = np.arange(k)[None, :] >= (k - n_objects)[:, None]

    classes = rng.integers(0, len(CLASS_NAMES), (n, k))
    classes[:, main] = rng.permutation(np.arange(n) % len(CLASS_NAMES))  # balanced labels
    colours = rng.integers(0, len(COLOUR_NAMES), (n, k))
    textures = rng.integers(0, len(TEXTURE_NAMES), (n, k))
    main_large = rng.integers(0, 2, n).astype(bool)
    main_s = np.where(main_large, rng.uniform(*_LARGE_BAND, n), rng.uniform(*_SMALL_BAND, n))
    sizes = main_s[:, None] * rng.uniform(*_OTHER_SCALE, (n, k))
    sizes[:, main] = main_s
    sizes = (sizes * size).astype(np.float32)
    large = sizes >= _LARGE_THRESHOLD * size
    angles = rng.uniform(0.0, 2 * np.pi, (n, k)).astype(np.float32)
    extent = _EXTENT[classes] * sizes
    cx = rng.uniform(extent, size - extent).astype(np.float32)
    cy = rng.uniform(extent, size - extent).astype(np.float32)
    brightness = rng.uniform(0.7, 1.0, (n, k, 1)).astype(np.float32)
    base = _COLOURS[colours] * brightness
    texture_angle = rng.uniform(0.0, np.pi, (n, k)).astype(np.float32)
    texture_phase = rng.uniform(0.0, 1.0, (n, k, 2)).astype(np.float32)
    background = _draw_background_params(rng, n)

    obj_attributes = np.zeros((n, k, len(ATTRIBUTE_NAMES)), dtype=np.uint8)
    rows, slots = np.indices((n, k))
    obj_attributes[rows, slots, colours] = 1
    obj_attributes[rows, slots, len(COLOUR_NAMES) + large.astype(np.int64)] = 1
    obj_attributes[rows, slots, len(COLOUR_NAMES) + len(SIZE_NAMES) + textures] = 1

    images = np.empty((n, size, size, 3), dtype=np.uint8)
    semantic = np.zeros((n, size, size), dtype=np.uint8)
    visible = np.zeros((n, k, size, size), dtype=bool)
    kept = np.zeros((n, k), dtype=bool)
    chunk = max(1, _CHUNK_PIXELS // (size * size))
    for start in range(0, n, chunk):
        sl = slice(start, min(n, start + chunk))
        masks = _object_masks(classes[sl], active[sl], sizes[sl], angles[sl], cx[sl], cy[sl], size)
        visible[sl], kept[sl] = _visibility(masks, active[sl], size)
        canvas = _render_background(rng, background, sl, size)
        for slot in range(k):
            dark = _texture(
                textures[sl, slot], texture_angle[sl, slot], texture_phase[sl, slot], size
            )
            fill = base[sl, slot, None, None, :]
            colour = np.where(dark[..., None], fill * 0.35, fill)
            canvas = np.where(visible[sl, slot, ..., None], colour, canvas)
            semantic[sl] = np.where(
                visible[sl, slot], classes[sl, slot, None, None] + 1, semantic[sl]
            )
        images[sl] = np.round(np.clip(canvas, 0.0, 1.0) * 255.0).astype(np.uint8)

    boxes = _tight_boxes(visible)
    keep_lists = [np.flatnonzero(kept[i]) for i in range(n)]
    return Split(
        images=ArrayImages(images),
        labels=classes[:, main].astype(np.int64),
        attributes=obj_attributes[:, main].copy(),
        boxes=[boxes[i, s] for i, s in enumerate(keep_lists)],
        box_labels=[classes[i, s].astype(np.int64) for i, s in enumerate(keep_lists)],
        box_attributes=[obj_attributes[i, s] for i, s in enumerate(keep_lists)],
        instance_masks=[visible[i, s] for i, s in enumerate(keep_lists)],
        semantic_masks=semantic,
        captions=[[describe_scene(classes[i, s[::-1]], colours[i, s[::-1]], large[i, s[::-1]], textures[i, s[::-1]],
                                  cx[i, s[::-1]] / size, cy[i, s[::-1]] / size)] for i, s in enumerate(keep_lists)],
    )


_ROWS = ("top", "middle", "bottom")
_COLUMNS = ("left", "centre", "right")


def describe_scene(classes, colours, large, textures, x, y) -> str:
    """One caption for the objects given (main first): size, colour, texture, class, position.

    ``x`` and ``y`` are centres as fractions of the image side; the position names the third of
    the image each lies in ("at the top left", "in the centre", "on the right").
    """
    phrases = []
    for cls, colour, big, texture, cx, cy in zip(classes, colours, large, textures, x, y):
        words = [SIZE_NAMES[int(big)], COLOUR_NAMES[colour]]
        if TEXTURE_NAMES[texture] != "solid":
            words.append(TEXTURE_NAMES[texture])
        words.append(CLASS_NAMES[cls])
        row, column = _ROWS[min(2, int(cy * 3))], _COLUMNS[min(2, int(cx * 3))]
        if row == "middle":
            where = "in the centre" if column == "centre" else f"on the {column}"
        else:
            where = f"at the {row}" if column == "centre" else f"at the {row} {column}"
        phrases.append(f"a {' '.join(words)} {where}")
    return phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]


def min_visible_pixels(size: int) -> int:
    """Fewest visible pixels an object needs to count: 20 at 64 px, scaled with the area."""
    return max(4, int(round(20 * (size / 64) ** 2)))


def _object_masks(classes, active, sizes, angles, cx, cy, size):
    """Full (un-occluded) masks ``[B, K, S, S]``, each class by its implicit inside-test."""
    b, k = classes.shape
    masks = np.zeros((b * k, size, size), dtype=bool)
    coords = np.arange(size, dtype=np.float32) + 0.5  # pixel centres
    flat = classes.reshape(-1)
    live = active.reshape(-1)
    for cls in range(len(CLASS_NAMES)):
        idx = np.flatnonzero(live & (flat == cls))
        if idx.size == 0:
            continue
        s = sizes.reshape(-1)[idx][:, None, None]
        cos = np.cos(angles.reshape(-1)[idx])[:, None, None]
        sin = np.sin(angles.reshape(-1)[idx])[:, None, None]
        dx = coords[None, None, :] - cx.reshape(-1)[idx][:, None, None]
        dy = coords[None, :, None] - cy.reshape(-1)[idx][:, None, None]
        u = dx * cos + dy * sin
        v = dy * cos - dx * sin
        masks[idx] = _INSIDE[cls](u, v, s)
    return masks.reshape(b, k, size, size)


def _inside_circle(u, v, s):
    return u * u + v * v <= (_CIRCLE_R * s) ** 2


def _inside_square(u, v, s):
    return np.maximum(np.abs(u), np.abs(v)) <= _SQUARE_HALF * s


def _inside_triangle(u, v, s):
    inradius = 0.5 * _TRIANGLE_R * s
    inside = v <= inradius  # edge normals at 90, 210 and 330 degrees
    for phi in (7 * np.pi / 6, 11 * np.pi / 6):
        inside &= u * np.float32(np.cos(phi)) + v * np.float32(np.sin(phi)) <= inradius
    return inside


def _inside_star(u, v, s):
    # Fold the plane onto one half-spike: angle 0 = an outer tip, 36 degrees = an inner corner.
    sector = np.float32(2 * np.pi / 5)
    a = np.mod(np.arctan2(v, u), sector)
    a = np.minimum(a, sector - a)
    rho = np.hypot(u, v)
    px, py = rho * np.cos(a), rho * np.sin(a)
    outer = _STAR_R * s
    inner = _STAR_INNER * outer
    ex = inner * np.float32(np.cos(np.pi / 5)) - outer  # edge from the tip to the inner corner
    ey = inner * np.float32(np.sin(np.pi / 5))
    return ex * py - ey * (px - outer) >= 0


def _inside_cross(u, v, s):
    half = _CROSS_HALF * s
    width = half / 3.0
    au, av = np.abs(u), np.abs(v)
    return ((au <= half) & (av <= width)) | ((au <= width) & (av <= half))


_INSIDE = (_inside_circle, _inside_square, _inside_triangle, _inside_star, _inside_cross)


def _visibility(masks, active, size):
    """Visible pixels, top object first; objects left with too few pixels are not drawn."""
    b, k = active.shape
    threshold = min_visible_pixels(size)
    covered = np.zeros((b, size, size), dtype=bool)
    visible = np.zeros_like(masks)
    kept = np.zeros((b, k), dtype=bool)
    for slot in range(k - 1, -1, -1):
        vis = masks[:, slot] & ~covered
        ok = active[:, slot] & (vis.sum(axis=(1, 2)) >= threshold)
        if slot == k - 1:
            ok = active[:, slot]  # the main object is always kept: it is the image's label
        vis &= ok[:, None, None]
        visible[:, slot] = vis
        covered |= vis
        kept[:, slot] = ok
    return visible, kept


def _draw_background_params(rng, n):
    """Greyish backgrounds with a slight tint, so an object's colour is never the background's."""
    kind = rng.integers(0, 3, n)  # 0 solid, 1 gradient, 2 noise
    grey = rng.uniform(0.15, 0.85, (n, 2, 1))
    tint = rng.uniform(-0.08, 0.08, (n, 2, 3))
    ends = np.clip(grey + tint, 0.0, 1.0).astype(np.float32)
    angle = rng.uniform(0.0, 2 * np.pi, n).astype(np.float32)
    sigma = rng.uniform(0.04, 0.12, n).astype(np.float32)
    return kind, ends, angle, sigma


def _render_background(rng, params, sl, size):
    kind, ends, angle, sigma = (p[sl] for p in params)
    coords = (np.arange(size, dtype=np.float32) + 0.5) / size - 0.5
    t = (
        coords[None, None, :] * np.cos(angle)[:, None, None]
        + coords[None, :, None] * np.sin(angle)[:, None, None]
    )
    t = np.clip(t / np.float32(np.sqrt(0.5)) * 0.5 + 0.5, 0.0, 1.0)
    t = np.where((kind == 1)[:, None, None], t, 0.0).astype(np.float32)[..., None]
    canvas = ends[:, 0, None, None, :] * (1.0 - t) + ends[:, 1, None, None, :] * t
    noisy = np.flatnonzero(kind == 2)
    noise = rng.standard_normal((noisy.size, size, size, 3), dtype=np.float32)
    canvas[noisy] += noise * sigma[noisy, None, None, None]
    return canvas


def _texture(texture, angle, phase, size):
    """Dark-pixel pattern ``[B, S, S]``: stripes or a dot grid; nothing for solid objects."""
    coords = np.arange(size, dtype=np.float32) + 0.5
    period = max(3.0, size / 14.0)
    along = (
        coords[None, None, :] * np.cos(angle)[:, None, None]
        + coords[None, :, None] * np.sin(angle)[:, None, None]
    ) / period + phase[:, 0, None, None]
    stripes = np.mod(along, 1.0) < 0.5
    spacing = max(4.0, size / 10.0)
    gx = np.mod(coords[None, None, :] + phase[:, 0, None, None] * spacing, spacing) - spacing / 2
    gy = np.mod(coords[None, :, None] + phase[:, 1, None, None] * spacing, spacing) - spacing / 2
    dots = gx * gx + gy * gy <= (0.28 * spacing) ** 2
    return np.where(
        (texture == 1)[:, None, None], stripes, (texture == 2)[:, None, None] & dots
    )


def _tight_boxes(visible):
    """xyxy pixel-edge boxes ``[B, K, 4]`` of the visible pixels (zeros for empty masks)."""
    size = visible.shape[-1]
    rows = visible.any(axis=3)
    cols = visible.any(axis=2)
    y1 = rows.argmax(axis=2)
    y2 = size - rows[..., ::-1].argmax(axis=2)
    x1 = cols.argmax(axis=2)
    x2 = size - cols[..., ::-1].argmax(axis=2)
    boxes = np.stack([x1, y1, x2, y2], axis=-1).astype(np.float32)
    boxes[~rows.any(axis=2)] = 0.0
    return boxes
