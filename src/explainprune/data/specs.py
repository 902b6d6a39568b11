"""Parse data spec strings such as `synthetic:split=test,seed=7,n=500,size=112|224` or
`synthetic-video:split=test,seed=7,n=300,size=224,frames=8` into samples."""

from __future__ import annotations

from explainprune.data.easyvqa import load_easy_vqa
from explainprune.errors import ExplainPruneError
from explainprune.data.jsonl import load_jsonl
from explainprune.data.sample import Sample
from explainprune.data.synthetic import SPLIT_STREAMS, generate_samples
from explainprune.data.synthetic_video import HOLD, MAX_FRAMES, MIN_FRAMES, generate_clips

SOURCES = ("synthetic", "synthetic-video", "easy-vqa", "jsonl")
SYNTHETIC_KEYS = ("split", "seed", "n", "size", "min_objects", "max_objects")
VIDEO_KEYS = ("split", "seed", "n", "size", "frames")
DEFAULT_FRAMES = 8
MIN_SIZE, MAX_SIZE = 112, 448
DEFAULT_SIZE = 224


def load_samples(spec: str) -> list[Sample]:
    """Load the samples a spec names; raises ValueError naming the problem for a bad spec."""
    spec = spec.strip()
    if spec.endswith(".jsonl") and not spec.startswith("jsonl:"):
        return load_jsonl(spec)
    source, _, rest = spec.partition(":")
    if source == "jsonl":
        if not rest:
            raise ExplainPruneError(f"spec {spec!r}: jsonl needs a path, e.g. jsonl:data/questions.jsonl")
        return load_jsonl(rest)
    if source == "synthetic":
        return _load_synthetic(spec, _options(spec, rest, SYNTHETIC_KEYS))
    if source == "synthetic-video":
        return _load_synthetic_video(spec, _options(spec, rest, VIDEO_KEYS))
    if source == "easy-vqa":
        return _load_easy_vqa(spec, rest)
    raise ExplainPruneError(f"spec {spec!r}: unknown source {source!r} (expected one of {', '.join(SOURCES)} or a .jsonl path)")


def _options(spec: str, text: str, allowed: tuple[str, ...]) -> dict[str, str]:
    options = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, eq, value = part.partition("=")
        if not eq:
            raise ExplainPruneError(f"spec {spec!r}: expected key=value, got {part!r}")
        if key not in allowed:
            raise ExplainPruneError(f"spec {spec!r}: unknown key {key!r} (allowed: {', '.join(allowed)})")
        options[key] = value
    return options


def _integer(spec: str, key: str, value: str, minimum: int = 0) -> int:
    try:
        number = int(value)
    except ValueError:
        raise ExplainPruneError(f"spec {spec!r}: {key} must be an integer, got {value!r}") from None
    if number < minimum:
        raise ExplainPruneError(f"spec {spec!r}: {key} must be at least {minimum}, got {number}")
    return number


def _split(spec: str, options: dict[str, str]) -> str:
    split = options.get("split", "train")
    if split not in SPLIT_STREAMS:
        raise ExplainPruneError(f"spec {spec!r}: split must be one of {', '.join(SPLIT_STREAMS)}, got {split!r}")
    return split


def _sizes(spec: str, options: dict[str, str]) -> list[int]:
    sizes = [_integer(spec, "size", s) for s in options.get("size", str(DEFAULT_SIZE)).split("|")]
    for size in sizes:
        if not MIN_SIZE <= size <= MAX_SIZE:
            raise ExplainPruneError(f"spec {spec!r}: size must be between {MIN_SIZE} and {MAX_SIZE}, got {size}")
    return sizes


def _load_synthetic(spec: str, options: dict[str, str]) -> list[Sample]:
    split, sizes = _split(spec, options), _sizes(spec, options)
    min_objects = _integer(spec, "min_objects", options.get("min_objects", "2"), minimum=1)
    max_objects = _integer(spec, "max_objects", options.get("max_objects", "5"), minimum=2)
    if min_objects > max_objects or max_objects > 6:
        raise ExplainPruneError(f"spec {spec!r}: need 1 <= min_objects <= max_objects <= 6")
    return generate_samples(
        split,
        _integer(spec, "seed", options.get("seed", "0")),
        _integer(spec, "n", options.get("n", "100"), minimum=1),
        sizes,
        min_objects,
        max_objects,
    )


def _load_synthetic_video(spec: str, options: dict[str, str]) -> list[Sample]:
    frames = [_integer(spec, "frames", f) for f in options.get("frames", str(DEFAULT_FRAMES)).split("|")]
    for count in frames:
        if count % HOLD or not MIN_FRAMES <= count <= MAX_FRAMES:
            raise ValueError(
                f"spec {spec!r}: frames must be even and between {MIN_FRAMES} and {MAX_FRAMES}, got {count}"
            )
    return generate_clips(
        _split(spec, options),
        _integer(spec, "seed", options.get("seed", "0")),
        _integer(spec, "n", options.get("n", "100"), minimum=1),
        _sizes(spec, options),
        frames,
    )


def _load_easy_vqa(spec: str, rest: str) -> list[Sample]:
    split, _, option_text = rest.partition(",")
    if split.startswith("split="):
        split = split.removeprefix("split=")
    if split not in ("train", "test"):
        raise ExplainPruneError(f"spec {spec!r}: easy-vqa split must be 'train' or 'test', got {split!r}")
    options = _options(spec, option_text, ("n",))
    n = _integer(spec, "n", options["n"], minimum=1) if "n" in options else None
    return load_easy_vqa(split, n)
