"""Tests of the synthetic video QA clips: determinism, disjoint splits, answers read back from the masks,
and evaluation end to end on a tiny Qwen2-VL with video input."""

import json

import numpy as np
import pytest
import torch

from explainprune.cli import main as cli_main
from explainprune.data import Sample, load_samples, make_inputs
from explainprune.data.synthetic import COLOURS
from explainprune.data.synthetic_video import DIRECTIONS, HOLD, VIDEO_QTYPES, frame_objects

from conftest import load_tiny

SPEC = "synthetic-video:split=test,seed=7,n=60,size=112|224,frames=4|8"


def _fingerprint(sample: Sample) -> tuple:
    return sample.question, sample.answer, b"".join(np.asarray(f).tobytes() for f in sample.video)


@pytest.fixture(scope="module")
def clips() -> list[Sample]:
    return load_samples(SPEC)


def test_clips_are_deterministic_per_seed(clips):
    again = load_samples(SPEC)
    other_seed = load_samples(SPEC.replace("seed=7", "seed=8"))
    assert [_fingerprint(s) for s in clips] == [_fingerprint(s) for s in again]
    assert all(np.array_equal(a.mask, b.mask) for a, b in zip(clips, again))
    assert not {_fingerprint(s) for s in clips} & {_fingerprint(s) for s in other_seed}


def test_splits_are_disjoint():
    splits = {
        split: {_fingerprint(s) for s in load_samples(f"synthetic-video:split={split},seed=0,n=40,size=112,frames=4")}
        for split in ("train", "val", "test")
    }
    assert not splits["train"] & splits["test"]
    assert not splits["val"] & splits["test"]
    assert not splits["train"] & splits["val"]


def test_clips_are_well_formed(clips):
    assert {s.qtype for s in clips} == set(VIDEO_QTYPES)
    for sample in clips:
        assert sample.modality == "video" and sample.image is None
        frames, size = len(sample.video), sample.frame_size[0]
        assert frames in (4, 8) and size in (112, 224)
        assert sample.mask.shape == (frames, size, size)
        for first in range(0, frames, HOLD):  # a state never changes inside a 2-frame temporal patch
            assert np.array_equal(np.asarray(sample.video[first]), np.asarray(sample.video[first + 1]))
        assert sample.answer == sample.answer.lower() and " " not in sample.answer


def _visible_frames(sample: Sample, index: int) -> list[int]:
    return [f for f in range(len(sample.video)) if (sample.mask[f] == index).any()]


def _centre(sample: Sample, index: int, frame: int) -> np.ndarray:
    ys, xs = np.nonzero(sample.mask[frame] == index)
    return np.array([xs.mean(), ys.mean()])


def _named(sample: Sample) -> list[int]:
    """Indices of the objects the question names by colour and shape, or by shape alone."""
    words = sample.question.rstrip("?").split()
    return [
        i
        for i, obj in enumerate(sample.objects)
        if obj["shape"] in words and (obj["colour"] in words or not set(words) & set(COLOURS))
    ]


def test_answers_follow_from_the_masks(clips):
    """Each answer is recomputed from the per-frame masks and pixels alone."""
    for sample in clips:
        n = len(sample.objects)
        if sample.qtype == "moves":
            movers = [
                i for i in range(n) if len({tuple(_centre(sample, i, f).round()) for f in _visible_frames(sample, i)}) > 1
            ]
            assert [sample.objects[i]["shape"] for i in movers] == [sample.answer]
        elif sample.qtype == "appears":
            first_seen = [_visible_frames(sample, i)[0] for i in range(n)]
            last = max(first_seen)
            assert last > 0 and first_seen.count(last) == 1
            assert sample.objects[first_seen.index(last)]["shape"] == sample.answer
        elif sample.qtype == "colour_end":
            (index,) = _named(sample)
            pixels = np.asarray(sample.video[-1]).astype(float)[sample.mask[-1] == index].mean(0)
            nearest = min(COLOURS, key=lambda c: np.abs(pixels - COLOURS[c]).sum())
            first = np.asarray(sample.video[0]).astype(float)[sample.mask[0] == index].mean(0)
            assert nearest == sample.answer and np.abs(first - COLOURS[sample.answer]).max() > 25
        elif sample.qtype == "frames":
            (index,) = _named(sample)
            assert len(_visible_frames(sample, index)) == int(sample.answer) < len(sample.video)
        elif sample.qtype == "direction":
            (index,) = _named(sample)
            frames = _visible_frames(sample, index)
            shift = _centre(sample, index, frames[-1]) - _centre(sample, index, frames[0])
            axis = int(np.abs(shift).argmax())
            assert np.abs(shift[axis]) >= 0.2 * sample.frame_size[0]
            assert DIRECTIONS[sample.answer][axis] == np.sign(shift[axis])


def test_frame_objects_match_each_frames_mask(clips):
    for sample in clips[:10]:
        for frame in range(len(sample.video)):
            for index, obj in enumerate(frame_objects(sample, frame)):
                shown = (sample.mask[frame] == index).any()
                assert shown == (obj["bbox"] is not None)
                if shown:
                    ys, xs = np.nonzero(sample.mask[frame] == index)
                    x0, y0, x1, y1 = obj["bbox"]
                    assert x0 <= xs.min() and xs.max() <= x1 and y0 <= ys.min() and ys.max() <= y1


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("synthetic-video:frames=7", "frames must be even"),
        ("synthetic-video:frames=18", "frames must be even and between 4 and 16"),
        ("synthetic-video:objects=3", "unknown key"),
        ("synthetic-video:split=holdout", "split must be one of"),
    ],
)
def test_bad_video_specs_raise_clear_errors(spec, message):
    with pytest.raises(ValueError, match=message):
        load_samples(spec)


def test_images_and_videos_share_a_batch(tiny_dirs):
    """A mixed batch gives each sample the next-token logits it gets alone."""
    model, processor = load_tiny(tiny_dirs, "qwen2-vl")
    clip = load_samples("synthetic-video:split=val,seed=0,n=1,size=112,frames=4")[0]
    scene = load_samples("synthetic:split=val,seed=0,n=1,size=112")[0]
    batch = make_inputs(processor, [scene, clip])
    merge = processor.video_processor.merge_size ** 2
    assert int((batch["input_ids"] == model.config.video_token_id).sum()) == batch["video_grid_thw"].prod() // merge
    with torch.no_grad():
        together = model(**batch).logits[:, -1]
        alone = [model(**make_inputs(processor, [s])).logits[0, -1] for s in (scene, clip)]
    torch.testing.assert_close(together, torch.stack(alone), atol=1e-4, rtol=1e-4)


def test_eval_runs_on_video_clips(tiny_dirs, tmp_path):
    report_path = tmp_path / "report.json"
    spec = "synthetic-video:split=test,seed=7,n=4,size=112,frames=8"
    code = cli_main(
        ["eval", "--model", str(tiny_dirs["qwen2-vl"]), "--data", spec, "--scorers", "uniform,random",
         "--keep", "1,0.5", "--json", str(report_path)]
    )  # fmt: skip
    assert code == 0
    report = json.loads(report_path.read_text())
    model, processor = load_tiny(tiny_dirs, "qwen2-vl")
    grid = make_inputs(processor, load_samples(spec)[:1])["video_grid_thw"][0]
    tokens = int(grid.prod()) // processor.video_processor.merge_size**2
    assert report["n"] == 4 and grid[0] == 4  # 8 frames -> 4 temporal patches
    for row in report["rows"]:
        assert row["visual_tokens"] == (tokens if row["keep_ratio"] == 1 else round(tokens / 2))
