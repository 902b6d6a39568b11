"""The video peers `fastvid` and `holitom`: hand-made clips with known answers, then tiny Qwen2-VL videos
(exact budgets, deterministic, a batch chooses what each sample alone chooses)."""

import pytest
import torch
from conftest import load_tiny, video, video_inputs

from explainprune import Compressor, ExplainPruneError
from explainprune.prune import token_budget
from explainprune.scoring import make_scorer
from explainprune.scoring.fastvid import FastVIDScorer, merge_into_anchors, segment_sizes
from explainprune.scoring.holitom import HoliTomScorer, static_windows

PEERS = ("fastvid", "holitom")


def scene(seed: int, n: int = 16, width: int = 8) -> torch.Tensor:
    return torch.randn(n, width, generator=torch.Generator().manual_seed(seed))


def test_holitom_keeps_one_averaged_token_per_position_of_a_static_clip():
    frames = scene(0).expand(4, -1, -1)  # four identical frames of 16 tokens
    indices, embeds = HoliTomScorer().choose_grid(frames, 16)
    assert indices.tolist() == list(range(16))  # each position once, at the first frame
    torch.testing.assert_close(embeds, frames[0])


def test_holitom_keeps_the_moving_position_in_every_frame():
    frames = scene(0).repeat(4, 1, 1)
    frames[:, 5] = torch.stack([scene(10 + f, 1)[0] for f in range(4)])  # position 5 changes every frame
    indices, embeds = HoliTomScorer().choose_grid(frames, 16 + 3)
    assert indices.tolist() == list(range(16)) + [16 + 5, 32 + 5, 48 + 5]
    torch.testing.assert_close(embeds[-3:], frames[1:, 5])
    torch.testing.assert_close(embeds[:16], frames[0])


def test_holitom_windows_follow_the_scenes():
    a, b = scene(0), scene(1)
    frames = torch.stack([a, a, b, b, b])
    similarity = torch.nn.functional.cosine_similarity(frames[:-1], frames[1:], dim=-1)
    assert static_windows(similarity, 0.8) == [(0, 1), (2, 4)]


def test_holitom_splits_static_positions_back_when_the_budget_is_larger():
    frames = scene(0).expand(4, -1, -1)
    indices, embeds = HoliTomScorer().choose_grid(frames, 40)
    assert indices.numel() == 40 == indices.unique().numel() and embeds.shape == (40, 8)


def test_fastvid_cuts_a_two_scene_clip_at_the_cut():
    a, b = scene(0), scene(1)
    two_scenes = torch.stack([a, a, b, b])
    assert segment_sizes(two_scenes, 1, 0.9) == [2, 2]
    assert segment_sizes(torch.stack([a, a, a, a]), 1, 0.9) == [4]
    assert segment_sizes(two_scenes, 4, 0.9) == [1, 1, 1, 1]  # at least 4 segments: every transition cut


def test_fastvid_anchor_averages_its_members_with_weight_beta():
    anchor, near, far = torch.tensor([1.0, 0.0]), torch.tensor([0.9, 0.1]), torch.tensor([0.0, 1.0])
    merged = merge_into_anchors(torch.stack([anchor, near, far]), torch.stack([anchor, far]), beta=0.6)
    torch.testing.assert_close(merged[0], 0.6 * anchor + 0.4 * (anchor + near) / 2)  # w = max(1/3, 0.6)
    torch.testing.assert_close(merged[1], far)  # joined only by itself: 0.6 * far + 0.4 * far

def test_fastvid_keeps_the_odd_token_out_of_each_frame():
    background = torch.ones(16, 8) + 0.01 * scene(0)
    frames = background.repeat(2, 1, 1)
    frames[0, 3] = scene(1, 1)[0] * 5
    frames[1, 9] = scene(2, 1)[0] * 5
    indices, embeds = FastVIDScorer().choose_grid(frames, 4)
    assert indices.numel() == 4 and {3, 16 + 9} <= set(indices.tolist())
    torch.testing.assert_close(embeds[indices.tolist().index(3)], frames[0, 3])


@pytest.mark.parametrize("name", PEERS)
def test_peers_refuse_bad_options(name):
    with pytest.raises(ExplainPruneError, match="tau"):
        make_scorer(name, tau=2.0)


@pytest.mark.parametrize("name", PEERS)
@pytest.mark.parametrize("keep", [0.5, 0.25, 0.1])
def test_peers_on_tiny_qwen_videos(tiny_dirs, name, keep):
    model, processor = load_tiny(tiny_dirs, "qwen2-vl")
    clips = [video(8, 112, seed=0), video(6, 112, seed=1)]
    compressor = Compressor(model, processor, name, keep_ratio=keep)
    batch = compressor.encode(**video_inputs(processor, clips))
    choices = compressor.choose(batch)
    again = compressor.choose(compressor.encode(**video_inputs(processor, clips)))
    for b, clip in enumerate(clips):
        (span,) = batch.spans[b]
        (choice,) = choices[b]
        assert span.modality == "video" and span.grids[0][0] == len(clip) // 2
        assert choice.indices.numel() == token_budget(keep, span.num_tokens) == choice.embeds.shape[0]
        assert torch.equal(choice.indices, again[b][0].indices) and torch.equal(choice.embeds, again[b][0].embeds)
        (alone,) = compressor.choose(compressor.encode(**video_inputs(processor, [clip])))[0]
        assert torch.equal(alone.indices, choice.indices)
        torch.testing.assert_close(alone.embeds, choice.embeds)
    prepared = compressor.prepare(**video_inputs(processor, clips))
    assert prepared.stats.visual_after == [token_budget(keep, s[0].num_tokens) for s in batch.spans]
    output = compressor.generate(**video_inputs(processor, clips), max_new_tokens=2, do_sample=False)
    assert output.shape[0] == 2
