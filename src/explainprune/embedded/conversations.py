"""Training questions about a synthetic scene (several per image, plus an object-listing caption) or a
synthetic clip (several per clip), and the objects each question is about."""

from __future__ import annotations

import numpy as np

from explainprune.data.synthetic import COLOURS, MAX_COUNT, PLURALS, QTYPES, SHAPES, SPATIAL_MARGIN, spatial_question
from explainprune.data.synthetic_video import VIDEO_QTYPES, direction, moves, visible_frames

CAPTION_QUESTIONS = ("list the objects from left to right.", "list the objects from top to bottom.")
# Extra training questions lean to the types that need two objects' positions or several objects
# (`LEANING_WEIGHTS`), or draw every type equally often (`EVEN_WEIGHTS`, the early curriculum).
LEANING_WEIGHTS = {"colour": 1.0, "shape": 1.0, "exists": 1.0, "count": 1.5, "left": 2.0, "above": 2.0}
EVEN_WEIGHTS = dict.fromkeys(QTYPES, 1.0)


def caption_text(objects: list[dict], axis: int = 0) -> str:
    """The objects as 'colour shape' phrases ordered by their centre's x (axis 0) or y (axis 1) coordinate."""
    ordered = sorted(objects, key=lambda o: o["bbox"][axis] + o["bbox"][axis + 2])
    return ", ".join(f"{o['colour']} {o['shape']}" for o in ordered)


def extra_question(
    rng: np.random.Generator,
    objects: list[dict],
    size: int,
    spatial_margin: float = SPATIAL_MARGIN,
    type_weights: dict[str, float] = LEANING_WEIGHTS,
) -> tuple[str, str, str] | None:
    """A random (qtype, question, answer) answerable on the scene, the type drawn by `type_weights`, or None if
    the drawn type does not fit; left/above questions compare objects at least `spatial_margin` of the side apart."""
    weights = np.array([type_weights[qtype] for qtype in QTYPES])
    qtype = str(rng.choice(QTYPES, p=weights / weights.sum()))
    shapes = [o["shape"] for o in objects]
    colours = [o["colour"] for o in objects]
    if qtype == "colour":
        unique = [o for o in objects if shapes.count(o["shape"]) == 1]
        if not unique:
            return None
        obj = unique[int(rng.integers(len(unique)))]
        return qtype, f"what colour is the {obj['shape']}?", obj["colour"]
    if qtype == "shape":
        unique = [o for o in objects if colours.count(o["colour"]) == 1]
        if not unique:
            return None
        obj = unique[int(rng.integers(len(unique)))]
        return qtype, f"what shape is the {obj['colour']} object?", obj["shape"]
    if qtype == "exists":
        present = {(o["colour"], o["shape"]) for o in objects}
        if rng.integers(2):
            colour, shape = sorted(present)[int(rng.integers(len(present)))]
            return qtype, f"is there a {colour} {shape}?", "yes"
        absent = [(c, s) for c in COLOURS for s in SHAPES if (c, s) not in present and (c in colours or s in shapes)]
        colour, shape = absent[int(rng.integers(len(absent)))]
        return qtype, f"is there a {colour} {shape}?", "no"
    if qtype == "count":
        shape = str(rng.choice(shapes if rng.random() < 0.7 else SHAPES))
        if shapes.count(shape) > MAX_COUNT:
            return None
        return qtype, f"how many {PLURALS[shape]} are there?", str(shapes.count(shape))
    qa = spatial_question(rng, objects, qtype, bool(rng.integers(2)), size, spatial_margin)
    return None if qa is None else (qtype, *qa)


def relevant_objects(qtype: str, question: str, objects: list[dict]) -> list[int]:
    """Indices of the objects a synthetic question is about (empty when no object is, e.g. a zero count);
    for a spatial question the two objects in the order the question names them."""
    words = question.rstrip("?.").split()
    named = {w for w in words if w in COLOURS or w in SHAPES} | {s for s, p in PLURALS.items() if p in words}
    if qtype == "colour":
        return [i for i, o in enumerate(objects) if o["shape"] in named]
    if qtype == "shape":
        return [i for i, o in enumerate(objects) if o["colour"] in named]
    if qtype == "count":
        return [i for i, o in enumerate(objects) if o["shape"] in named]
    if qtype == "exists":
        exact = [i for i, o in enumerate(objects) if o["colour"] in named and o["shape"] in named]
        return exact or [i for i, o in enumerate(objects) if o["colour"] in named or o["shape"] in named]
    if qtype in ("left", "above"):
        pairs = [(words[2], words[3]), (words[-2], words[-1])]
        return [i for pair in pairs for i, o in enumerate(objects) if (o["colour"], o["shape"]) == pair]
    return []


def extra_video_question(rng: np.random.Generator, objects: list[dict]) -> tuple[str, str, str] | None:
    """A random (qtype, question, answer) answerable on a clip's object tracks, or None if the drawn type
    does not fit."""
    qtype = str(rng.choice(VIDEO_QTYPES))
    movers = [o for o in objects if moves(o)]
    shapes = [o["shape"] for o in objects]
    if qtype == "moves":
        return (qtype, "which shape moves?", movers[0]["shape"]) if len(movers) == 1 else None
    if qtype == "appears":
        first_seen = [visible_frames(o)[0] for o in objects]
        last = max(first_seen)
        if last == 0 or first_seen.count(last) > 1:
            return None
        return qtype, "which shape appears last?", objects[first_seen.index(last)]["shape"]
    if qtype == "colour_end":
        shown = [o for o in objects if o["boxes"][-1] is not None and shapes.count(o["shape"]) == 1]
        if not shown:
            return None
        obj = shown[int(rng.integers(len(shown)))]
        return qtype, f"what colour is the {obj['shape']} at the end?", obj["colours"][-1]
    if qtype == "frames":
        obj = objects[int(rng.integers(len(objects)))]
        return qtype, f"in how many frames is the {obj['colour']} {obj['shape']} visible?", str(len(visible_frames(obj)))
    if not movers:
        return None
    obj = movers[int(rng.integers(len(movers)))]
    return "direction", f"where does the {obj['colour']} {obj['shape']} go?", direction(obj)
