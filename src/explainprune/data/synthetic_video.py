"""Seeded synthetic video QA: clips of the synthetic scenes in which objects move, appear, disappear or
change colour, with questions that need particular frames and places.

Every clip is a pure function of (split, seed, index) on a seed stream of its own (disjoint across splits
and from the image scenes'). A clip has `frames` frames in steps of HOLD = 2 identical frames, so no change
ever falls inside a 2-frame temporal patch (Qwen2-VL, Qwen2.5-VL); frame counts are therefore even. Each
question's answer is drawn uniformly from its type's answer set before the clip is built around it.
"""

from __future__ import annotations

import numpy as np

from explainprune.data.sample import Sample
from explainprune.data.synthetic import (
    COLOURS,
    OBJECT_SCALE,
    SHAPES,
    SPLIT_STREAMS,
    background,
    draw_scene,
    object_fill,
    overlaps,
)

VIDEO_QTYPES = ["moves", "appears", "colour_end", "frames", "direction"]
HOLD = 2  # frames per state
MIN_FRAMES, MAX_FRAMES = 4, 16
MIN_OBJECTS, MAX_OBJECTS = 2, 4
DIRECTIONS = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}
MOVE_DISTANCE = (0.25, 0.4)  # distance a moving object travels, as a fraction of the side
VIDEO_STREAM = 1  # extra seed word that separates clips from the image scenes


def clip_rng(split: str, seed: int, index: int) -> np.random.Generator:
    """The random stream of one clip."""
    return np.random.default_rng(np.random.SeedSequence([SPLIT_STREAMS[split], seed, index, VIDEO_STREAM]))


def generate_clips(split: str, seed: int, n: int, sizes: list[int], frames: list[int], start: int = 0) -> list[Sample]:
    """Clips `start .. start+n-1` of a split; question types cycle so they stay balanced."""
    return [generate_clip(split, seed, index, sizes, frames) for index in range(start, start + n)]


def generate_clip(split: str, seed: int, index: int, sizes: list[int], frames: list[int]) -> Sample:
    """The clip at `index` of a split: frames (PIL images), per-frame masks and object tracks, one question."""
    for count in frames:
        if count % HOLD or not MIN_FRAMES <= count <= MAX_FRAMES:
            raise ValueError(f"frames must be even and between {MIN_FRAMES} and {MAX_FRAMES}, got {count}")
    rng = clip_rng(split, seed, index)
    size, count = int(rng.choice(sizes)), int(rng.choice(frames))
    steps = count // HOLD
    qtype = VIDEO_QTYPES[index % len(VIDEO_QTYPES)]
    while True:
        tracks, question, answer = _plan(rng, qtype, steps)
        if _place_tracks(rng, tracks, size):
            break
    video, mask, objects = _render(rng, tracks, size, steps)
    return Sample(f"synthetic-video-{split}-{seed}-{index}", None, question, answer, qtype, objects, mask, video)


def frame_objects(sample: Sample, frame: int) -> list[dict]:
    """The objects as one frame shows them, image-scene style ({"shape", "colour", "bbox"}, bbox None when
    hidden), indexed like the clip's mask."""
    return [{"shape": o["shape"], "colour": o["colours"][frame], "bbox": o["boxes"][frame]} for o in sample.objects]


def visible_frames(obj: dict) -> list[int]:
    """Frames of a clip in which the object is shown."""
    return [f for f, box in enumerate(obj["boxes"]) if box is not None]


def moves(obj: dict) -> bool:
    """Whether the object changes place during the clip."""
    return len({obj["boxes"][f] for f in visible_frames(obj)}) > 1


def direction(obj: dict) -> str:
    """Where a moving object goes: the larger axis of its shift from first to last shown frame."""
    frames = visible_frames(obj)
    (x0, y0, *_), (x1, y1, *_) = obj["boxes"][frames[0]], obj["boxes"][frames[-1]]
    if abs(x1 - x0) >= abs(y1 - y0):
        return "right" if x1 > x0 else "left"
    return "down" if y1 > y0 else "up"


def video_focus(qtype: str, question: str, objects: list[dict]) -> list[list[tuple[int, int]]]:
    """Per attention head, the (frame, object) pairs a video question is about: the mover in every frame
    it is shown; the last-appearing object where it appears; the named object in the last frame, in every
    frame it is shown, or (direction) where it starts and, on a second head, where it ends."""
    words = question.rstrip("?").split()

    def named() -> int:
        return next(
            i for i, o in enumerate(objects) if o["shape"] in words and (o["colour"] in words or qtype == "colour_end")
        )

    if qtype == "moves":
        (index,) = [i for i, o in enumerate(objects) if moves(o)]
        return [[(f, index) for f in visible_frames(objects[index])]]
    if qtype == "appears":
        first_seen = [visible_frames(o)[0] for o in objects]
        index = first_seen.index(max(first_seen))
        return [[(first_seen[index], index)]]
    index = named()
    frames = visible_frames(objects[index])
    if qtype == "colour_end":
        return [[(frames[-1], index)]]
    if qtype == "frames":
        return [[(f, index) for f in frames]]
    if qtype == "direction":
        return [[(frames[0], index)], [(frames[-1], index)]]
    raise ValueError(f"unknown video question type {qtype!r}")


def clip_question_relevance(sample: Sample) -> np.ndarray:
    """(frames, H, W) pixel relevance for the oracle: 1 on the objects the question is about in the
    frames it is about them (`video_focus`), 0 elsewhere."""
    if sample.mask is None or sample.objects is None or sample.video is None:
        raise ValueError(f"sample {sample.id!r} has no per-frame object mask: only synthetic clips carry one")
    relevance = np.zeros(sample.mask.shape, dtype=np.float32)
    for head in video_focus(sample.qtype, sample.question, sample.objects):
        for frame, index in head:
            relevance[frame][sample.mask[frame] == index] = 1.0
    return relevance


def _track(colour: str, shape: str, steps: int) -> dict:
    """A static object visible in every step; events are set on the returned dict."""
    return {"colour": colour, "shape": shape, "span": (0, steps), "change": None, "move": None}


def _specs(rng: np.random.Generator, n: int, distinct_shapes: bool) -> list[tuple[str, str]]:
    """`n` distinct (colour, shape) pairs; with `distinct_shapes`, no two share a shape."""
    if distinct_shapes:
        shapes = rng.choice(SHAPES, size=n, replace=False)
        return [(str(rng.choice(list(COLOURS))), str(s)) for s in shapes]
    pool = [(c, s) for c in COLOURS for s in SHAPES]
    return [pool[i] for i in rng.choice(len(pool), size=n, replace=False)]


def _other_colour(rng: np.random.Generator, colour: str) -> str:
    return str(rng.choice([c for c in COLOURS if c != colour]))


def _distractor(rng: np.random.Generator, track: dict, steps: int, kinds: tuple[str, ...]) -> None:
    """Give a non-target object one event of the allowed kinds (or none)."""
    kind = str(rng.choice(["none", *kinds]))
    if kind == "change":
        track["change"] = (int(rng.integers(1, steps)), _other_colour(rng, track["colour"]))
    elif kind == "appear":
        track["span"] = (int(rng.integers(1, steps)), steps)
    elif kind == "disappear":
        track["span"] = (0, int(rng.integers(1, steps)))
    elif kind == "move":
        track["move"] = str(rng.choice(list(DIRECTIONS)))


def _plan(rng: np.random.Generator, qtype: str, steps: int) -> tuple[list[dict], str, str]:
    """Object tracks (target first) and a question whose answer was drawn uniformly."""
    n = int(rng.integers(MIN_OBJECTS, MAX_OBJECTS + 1))
    if qtype == "moves":
        tracks = [_track(c, s, steps) for c, s in _specs(rng, n, distinct_shapes=True)]
        tracks[0]["move"] = str(rng.choice(list(DIRECTIONS)))
        for track in tracks[1:]:
            _distractor(rng, track, steps, ("change", "appear", "disappear"))
        return tracks, "which shape moves?", tracks[0]["shape"]
    if qtype == "appears":
        tracks = [_track(c, s, steps) for c, s in _specs(rng, n, distinct_shapes=True)]
        last = int(rng.integers(1, steps))
        tracks[0]["span"] = (last, steps)
        for track in tracks[1:]:
            _distractor(rng, track, steps, ("change", "move", "disappear"))
            if last > 1 and rng.integers(2):
                track["span"] = (int(rng.integers(1, last)), steps)  # appears too, but earlier
        return tracks, "which shape appears last?", tracks[0]["shape"]
    if qtype == "colour_end":
        tracks = [_track(c, s, steps) for c, s in _specs(rng, n, distinct_shapes=True)]
        end = str(rng.choice(list(COLOURS)))
        target = tracks[0]
        target["colour"], target["change"] = _other_colour(rng, end), (int(rng.integers(1, steps)), end)
        for track in tracks[1:]:
            _distractor(rng, track, steps, ("change", "move"))
        return tracks, f"what colour is the {target['shape']} at the end?", end
    if qtype == "frames":
        tracks = [_track(c, s, steps) for c, s in _specs(rng, n, distinct_shapes=False)]
        shown = int(rng.integers(1, steps))
        first = int(rng.integers(0, steps - shown + 1))
        target = tracks[0]
        target["span"] = (first, first + shown)
        for track in tracks[1:]:
            _distractor(rng, track, steps, ("appear", "disappear", "move"))
        question = f"in how many frames is the {target['colour']} {target['shape']} visible?"
        return tracks, question, str(HOLD * shown)
    if qtype == "direction":
        tracks = [_track(c, s, steps) for c, s in _specs(rng, n, distinct_shapes=False)]
        target = tracks[0]
        target["move"] = str(rng.choice(list(DIRECTIONS)))
        for track in tracks[1:]:
            _distractor(rng, track, steps, ("move", "change"))
        return tracks, f"where does the {target['colour']} {target['shape']} go?", target["move"]
    raise ValueError(f"unknown video question type {qtype!r}")


def _place_tracks(rng: np.random.Generator, tracks: list[dict], size: int) -> bool:
    """Give each track a side, a start corner and a travel offset so that the boxes its object sweeps never
    meet another's; False when they do not fit."""
    gap = max(2, size // 40)
    swept: list[tuple[int, int, int, int]] = []
    for i in rng.permutation(len(tracks)):
        track = tracks[i]
        for _ in range(50):
            side = int(size * rng.uniform(*OBJECT_SCALE))
            distance = int(size * rng.uniform(*MOVE_DISTANCE)) if track["move"] else 0
            ux, uy = DIRECTIONS[track["move"]] if track["move"] else (0, 0)
            width, height = side + abs(ux) * distance, side + abs(uy) * distance
            x, y = int(rng.integers(gap, size - width - gap)), int(rng.integers(gap, size - height - gap))
            box = (x, y, x + width, y + height)
            if all(not overlaps(box, other, gap) for other in swept):
                swept.append(box)
                start = (x + (distance if ux < 0 else 0), y + (distance if uy < 0 else 0))
                track.update(side=side, start=start, offset=(ux * distance, uy * distance))
                break
        else:
            return False
    return True


def _state(track: dict, step: int, steps: int) -> tuple[tuple[int, int, int, int] | None, str | None]:
    """(bbox, colour) of a track at a step; (None, None) while it is hidden. A mover travels evenly from its
    first to its last step."""
    first, end = track["span"]
    if not first <= step < end:
        return None, None
    fraction = step / (steps - 1)
    x, y = (round(s + o * fraction) for s, o in zip(track["start"], track["offset"]))
    colour = track["colour"]
    if track["change"] is not None and step >= track["change"][0]:
        colour = track["change"][1]
    return (x, y, x + track["side"], y + track["side"]), colour


def _render(rng: np.random.Generator, tracks: list[dict], size: int, steps: int):
    """Frames, (frames, H, W) masks of object indices (-1 background) and per-frame object tracks."""
    pixels = background(rng, size)
    fills = [{track["colour"]: object_fill(rng, track["colour"])} for track in tracks]
    for track, fill in zip(tracks, fills):
        if track["change"] is not None:
            fill[track["change"][1]] = object_fill(rng, track["change"][1])
    objects = [{"shape": t["shape"], "colour": t["colour"], "boxes": [], "colours": []} for t in tracks]
    video, masks = [], []
    for step in range(steps):
        states = [_state(track, step, steps) for track in tracks]
        shown = [{"shape": t["shape"], "bbox": box} for t, (box, _) in zip(tracks, states)]
        image, mask = draw_scene(pixels, shown, [fill.get(colour) for fill, (_, colour) in zip(fills, states)])
        video += [image] * HOLD
        masks += [mask] * HOLD
        for obj, (box, colour) in zip(objects, states):
            obj["boxes"] += [box] * HOLD
            obj["colours"] += [colour] * HOLD
    return video, np.stack(masks), objects
