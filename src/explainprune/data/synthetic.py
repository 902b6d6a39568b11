"""Seeded scene-VQA generator: coloured shapes on textured backgrounds with region-specific questions.

Every sample is a pure function of (split, seed, index): the split selects a disjoint seed stream.
Question types and answers are balanced so that no answer prior can be exploited.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from explainprune.data.sample import Sample

COLOURS = {
    "red": (215, 35, 35),
    "green": (35, 160, 55),
    "blue": (35, 75, 215),
    "yellow": (235, 205, 30),
    "purple": (135, 55, 185),
    "orange": (245, 125, 20),
}
SHAPES = ["circle", "square", "triangle", "diamond", "cross"]
PLURALS = {"circle": "circles", "square": "squares", "triangle": "triangles", "diamond": "diamonds", "cross": "crosses"}
QTYPES = ["colour", "shape", "exists", "count", "left", "above"]
SPLIT_STREAMS = {"train": 0, "val": 1, "test": 2}
MAX_COUNT = 3
OBJECT_SCALE = (0.2, 0.3)  # object side as a fraction of the image side
SPATIAL_MARGIN = 0.25  # minimum centre offset (fraction of the side, two cells at 224 px) for left/above questions


def sample_rng(split: str, seed: int, index: int) -> np.random.Generator:
    """The random stream of one sample; streams of different splits never coincide."""
    return np.random.default_rng(np.random.SeedSequence([SPLIT_STREAMS[split], seed, index]))


def generate_samples(
    split: str,
    seed: int,
    n: int,
    sizes: list[int],
    min_objects: int = 2,
    max_objects: int = 5,
    start: int = 0,
) -> list[Sample]:
    """Samples `start .. start+n-1` of a split; question types cycle so they stay balanced."""
    return [
        generate_sample(split, seed, index, sizes, min_objects, max_objects) for index in range(start, start + n)
    ]


def generate_sample(
    split: str, seed: int, index: int, sizes: list[int], min_objects: int = 2, max_objects: int = 5
) -> Sample:
    """The sample at `index` of a split: a scene built so its question has a balanced target answer."""
    rng = sample_rng(split, seed, index)
    size = int(rng.choice(sizes))
    qtype = QTYPES[index % len(QTYPES)]
    while True:
        specs, question, answer = _plan(rng, qtype, min_objects, max_objects)
        objects = _place(rng, specs, size)
        if objects is None:
            continue
        if qtype in ("left", "above"):
            qa = spatial_question(rng, objects, qtype, answer == "yes", size)
            if qa is None:
                continue
            question, answer = qa
        image, mask = render_scene(rng, objects, size)
        return Sample(f"synthetic-{split}-{seed}-{index}", image, question, answer, qtype, objects, mask)


def _plan(rng: np.random.Generator, qtype: str, min_objects: int, max_objects: int):
    """Object (colour, shape) specs and a question whose answer is drawn uniformly from its answer set."""
    colours, shapes = list(COLOURS), SHAPES
    target_colour, target_shape = str(rng.choice(colours)), str(rng.choice(shapes))
    n = int(rng.integers(min_objects, max_objects + 1))
    if qtype == "colour":
        others = _distinct_specs(rng, n - 1, shapes=[s for s in shapes if s != target_shape])
        return [(target_colour, target_shape)] + others, f"what colour is the {target_shape}?", target_colour
    if qtype == "shape":
        others = _distinct_specs(rng, n - 1, colours=[c for c in colours if c != target_colour])
        return [(target_colour, target_shape)] + others, f"what shape is the {target_colour} object?", target_shape
    if qtype == "exists":
        present = bool(rng.integers(2))
        question = f"is there a {target_colour} {target_shape}?"
        if present:
            others = _distinct_specs(rng, n - 1, exclude={(target_colour, target_shape)})
            return [(target_colour, target_shape)] + others, question, "yes"
        # A near miss: the colour or the shape is present, but not together.
        near = (target_colour, str(rng.choice([s for s in shapes if s != target_shape])))
        if rng.integers(2):
            near = (str(rng.choice([c for c in colours if c != target_colour])), target_shape)
        others = _distinct_specs(rng, n - 1, exclude={(target_colour, target_shape), near})
        return [near] + others, question, "no"
    if qtype == "count":
        count = int(rng.integers(0, min(MAX_COUNT, max_objects) + 1))
        n = max(n, count)
        counted = [(str(c), target_shape) for c in rng.choice(colours, size=count, replace=False)]
        others = _distinct_specs(rng, n - count, shapes=[s for s in shapes if s != target_shape])
        return counted + others, f"how many {PLURALS[target_shape]} are there?", str(count)
    if qtype in ("left", "above"):
        return _distinct_specs(rng, max(n, 2)), "", "yes" if rng.integers(2) else "no"
    raise ValueError(f"unknown question type {qtype!r}")


def _distinct_specs(rng, n, colours=None, shapes=None, exclude=frozenset()):
    """`n` distinct (colour, shape) pairs drawn from the allowed colours and shapes."""
    pool = [(c, s) for c in (colours or list(COLOURS)) for s in (shapes or SHAPES) if (c, s) not in exclude]
    picks = rng.choice(len(pool), size=n, replace=False) if n else []
    return [pool[i] for i in picks]


def _place(rng: np.random.Generator, specs, size: int) -> list[dict] | None:
    """Non-overlapping square bounding boxes for the specs in random order, or None if they do not fit."""
    order = rng.permutation(len(specs))
    objects: list[dict] = []
    gap = max(2, size // 40)
    for i in order:
        colour, shape = specs[i]
        for _ in range(50):
            side = int(size * rng.uniform(*OBJECT_SCALE))
            x0, y0 = (int(v) for v in rng.integers(gap, size - side - gap, size=2))
            box = (x0, y0, x0 + side, y0 + side)
            if all(not overlaps(box, o["bbox"], gap) for o in objects):
                objects.append({"shape": shape, "colour": colour, "bbox": box})
                break
        else:
            return None
    return objects


def overlaps(a, b, gap: int) -> bool:
    return a[0] < b[2] + gap and b[0] < a[2] + gap and a[1] < b[3] + gap and b[1] < a[3] + gap


def centre(obj: dict) -> tuple[float, float]:
    """(x, y) of an object's box centre, in pixels."""
    x0, y0, x1, y1 = obj["bbox"]
    return (x0 + x1) / 2, (y0 + y1) / 2


def spatial_question(rng, objects: list[dict], qtype: str, want_yes: bool, size: int, margin: float = SPATIAL_MARGIN):
    """A left/above question about two objects whose centres are at least `margin` of the side apart, with
    the wanted answer, or None."""
    axis = 0 if qtype == "left" else 1
    pairs = [
        (a, b)
        for a in objects
        for b in objects
        if centre(b)[axis] - centre(a)[axis] >= margin * size  # a is left of / above b
    ]
    if not pairs:
        return None
    a, b = pairs[int(rng.integers(len(pairs)))]
    first, second = (a, b) if want_yes else (b, a)
    relation = "left of" if qtype == "left" else "above"
    question = f"is the {first['colour']} {first['shape']} {relation} the {second['colour']} {second['shape']}?"
    return question, "yes" if want_yes else "no"


def render_scene(rng: np.random.Generator, objects: list[dict], size: int) -> tuple[Image.Image, np.ndarray]:
    """Draw the objects on a lightly textured background; the mask holds object indices (-1 background)."""
    pixels = background(rng, size)
    return draw_scene(pixels, objects, [object_fill(rng, obj["colour"]) for obj in objects])


def object_fill(rng: np.random.Generator, colour: str) -> tuple[int, int, int]:
    """The named colour with a small random jitter per channel."""
    jitter = rng.integers(-18, 19, size=3)
    return tuple(int(v) for v in np.clip(np.array(COLOURS[colour]) + jitter, 0, 255))


def draw_scene(pixels: np.ndarray, objects: list[dict], fills: list[tuple[int, int, int]]) -> tuple[Image.Image, np.ndarray]:
    """The objects (each a shape in its `bbox`) drawn with their fills over a copy of `pixels`, and the mask of
    object indices (int8, -1 background: a large spec stays in memory); an object with `bbox` None is skipped."""
    image = Image.fromarray(pixels)
    mask_image = Image.new("L", image.size, 0)
    draw, mask_draw = ImageDraw.Draw(image), ImageDraw.Draw(mask_image)
    for index, (obj, fill) in enumerate(zip(objects, fills)):
        if obj["bbox"] is not None:
            draw_shape(draw, obj["shape"], obj["bbox"], fill)
            draw_shape(mask_draw, obj["shape"], obj["bbox"], index + 1)
    return image, np.asarray(mask_image, dtype=np.int8) - 1


def background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A pale tinted background with a soft gradient, faint stripes and pixel noise."""
    base = rng.uniform(200, 240) + rng.uniform(-12, 12, size=3)
    ys, xs = np.mgrid[0:size, 0:size] / size
    angle = rng.uniform(0, np.pi)
    gradient = rng.uniform(-15, 15) * (np.cos(angle) * xs + np.sin(angle) * ys)
    stripes = rng.uniform(0, 5) * np.sin(2 * np.pi * rng.uniform(4, 12) * (np.sin(angle) * xs - np.cos(angle) * ys))
    noise = rng.normal(0, 4, size=(size, size, 3))
    pixels = base + (gradient + stripes)[..., None] + noise
    return np.clip(pixels, 0, 255).astype(np.uint8)


def draw_shape(draw: ImageDraw.ImageDraw, shape: str, bbox, fill) -> None:
    x0, y0, x1, y1 = bbox
    cx, cy, w = (x0 + x1) / 2, (y0 + y1) / 2, x1 - x0
    if shape == "circle":
        draw.ellipse(bbox, fill=fill)
    elif shape == "square":
        draw.rectangle((x0 + w * 0.08, y0 + w * 0.08, x1 - w * 0.08, y1 - w * 0.08), fill=fill)
    elif shape == "triangle":
        draw.polygon([(cx, y0), (x1, y1), (x0, y1)], fill=fill)
    elif shape == "diamond":
        draw.polygon([(cx, y0), (x1, cy), (cx, y1), (x0, cy)], fill=fill)
    elif shape == "cross":
        t = w * 0.17
        draw.rectangle((cx - t, y0, cx + t, y1), fill=fill)
        draw.rectangle((x0, cy - t, x1, cy + t), fill=fill)
    else:
        raise ValueError(f"unknown shape {shape!r}")


def question_objects(sample: Sample) -> list[int]:
    """Indices into `sample.objects` of the objects the question is about: the named shape (colour and
    count questions), the named colour (shape questions), everything sharing the colour or the shape
    (existence: the object or its near misses), the two named objects (left/above)."""
    words = sample.question.rstrip("?").replace("left of", "left").split()
    colours = [w for w in words if w in COLOURS]
    shapes = [s for w in words for s in SHAPES if w in (s, PLURALS[s])]
    objects = sample.objects or []
    if sample.qtype in ("left", "above"):
        pairs = set(zip(colours, shapes))
        return [i for i, o in enumerate(objects) if (o["colour"], o["shape"]) in pairs]
    if sample.qtype in ("colour", "shape", "exists", "count"):
        return [i for i, o in enumerate(objects) if o["colour"] in colours or o["shape"] in shapes]
    raise ValueError(f"sample {sample.id!r} has no synthetic question type (got {sample.qtype!r})")


def question_relevance(sample: Sample) -> np.ndarray:
    """(H, W) pixel relevance for the oracle: 1 on the question's objects, 0 elsewhere (other objects are
    not ranked before the background: that cost the oracle most at 448 px, docs/eval/peers.md)."""
    if sample.mask is None or sample.objects is None:
        raise ValueError(f"sample {sample.id!r} has no object mask: only synthetic samples carry one")
    relevant = np.isin(sample.mask, question_objects(sample))
    return relevant.astype(np.float32)
