"""`explainprune demo`: the method on the embedded model, end to end, in under three minutes.

Prints one held-out image question and one held-out clip question with the answers at keep 1.0 and
0.25, writes each with the predicted relevance overlaid and the pruned tokens greyed out (a clip: one
panel per temporal patch), then the eval table on held-out questions for learned, layer0, uniform
and random.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from PIL import Image

DEMO_DATA = "synthetic:split=test,seed=1,n={n},size=224"
DEMO_VIDEO = "synthetic-video:split=test,seed=1,n=1,size=224,frames=8"
DEMO_SCORERS = ["learned", "layer0", "uniform", "random"]
DEMO_KEEPS = [1.0, 0.5, 0.25, 0.1]


def relevance_picture(frames: list[Image.Image], relevance: torch.Tensor, kept: torch.Tensor, grid) -> Image.Image:
    """Relevance as a red heat map over an image (one frame) or a clip, pruned tokens greyed out.

    `grid` is the span's (t, h, w) token grid: a clip shows the first frame of each of its t
    temporal patches, left to right, each with the relevance and kept tokens of its own t-slice.
    """
    steps, rows, cols = grid
    heat = relevance.float().view(steps, rows, cols).cpu().numpy()
    heat = heat / heat.max() if heat.max() > 0 else heat
    keep = kept.view(steps, rows, cols).cpu().numpy()
    size = frames[0].size
    panels = []
    for step in range(steps):
        frame = frames[step * len(frames) // steps]
        step_heat = np.asarray(Image.fromarray((heat[step] * 255).astype(np.uint8)).resize(size, Image.NEAREST)) / 255.0
        step_keep = np.asarray(Image.fromarray(keep[step].astype(np.uint8) * 255).resize(size, Image.NEAREST)) > 0
        pixels = np.asarray(frame.convert("RGB")).astype(float)
        red = np.zeros_like(pixels)
        red[..., 0] = 255.0
        blended = pixels * (1 - 0.55 * step_heat[..., None]) + red * 0.55 * step_heat[..., None]
        grey = pixels.mean(-1, keepdims=True) * 0.3 + 60
        panels.append(np.where(step_keep[..., None], blended, grey))
    gap = np.full((size[1], 4 if steps > 1 else 0, 3), 255.0)
    strip = np.concatenate([part for panel in panels for part in (panel, gap)][:-1], axis=1)
    picture = Image.fromarray(strip.clip(0, 255).astype(np.uint8))
    return picture.resize((picture.width * 2, picture.height * 2), Image.NEAREST)


def _answer(compressor, inputs) -> str:
    output = compressor.generate(**inputs, max_new_tokens=6, do_sample=False)
    return compressor.processor.batch_decode(output[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)[0]


def show_example(model, processor, sample, path) -> None:
    """Print one question answered with all and with 25% of the visual tokens; save its relevance picture."""
    from . import Compressor
    from .data import make_inputs

    inputs = make_inputs(processor, [sample], device=model.device)
    full = Compressor(model, processor, scorer="learned", keep_ratio=1.0)
    pruned = Compressor(model, processor, scorer="learned", keep_ratio=0.25)
    print(f"{sample.modality} question: {sample.question}   (truth: {sample.answer})")
    print(f"answer with all visual tokens : {_answer(full, inputs)}")
    encoded = pruned.encode(**inputs)
    scores = pruned.score(encoded)
    prepared = pruned.prepare_encoded(encoded, scores)
    kept_positions = prepared.kept[0]
    span = encoded.spans[0][0]
    print(f"answer with 25% of the tokens : {_answer(pruned, inputs)}   ({prepared.stats.visual_after[0]} of {span.num_tokens} kept)")
    kept = torch.isin(span.positions.to(kept_positions.device), kept_positions)
    frames = sample.video if sample.video is not None else [sample.image]
    relevance_picture(frames, scores[0][0], kept, span.grids[0]).save(path)
    print(f"wrote {path}: predicted relevance in red, pruned tokens greyed out\n")


def main(args: argparse.Namespace) -> int:
    from .bench.quality import evaluate, format_table, plot_retention
    from .data import load_samples
    from .embedded import VIDEO_PREDICTOR_DIR, load_embedded

    started = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    model, processor = load_embedded(args.dtype, args.device, args.attn_implementation)
    samples = load_samples(DEMO_DATA.format(n=args.n))
    show_example(model, processor, samples[0], args.out / "relevance.png")
    if (VIDEO_PREDICTOR_DIR / "config.json").is_file():
        show_example(model, processor, load_samples(DEMO_VIDEO)[0], args.out / "video-relevance.png")
    else:
        print(f"no video predictor is shipped yet ({VIDEO_PREDICTOR_DIR.name}/): the clip example is skipped (docs/video.md)\n")

    report = {"model": "embedded", "data": DEMO_DATA.format(n=args.n), "device": str(model.device), "dtype": args.dtype}
    report |= evaluate(model, processor, samples, DEMO_SCORERS, DEMO_KEEPS)
    print(format_table(report))
    (args.out / "eval.json").write_text(json.dumps(report, indent=2))
    plot_retention(report, args.out / "retention.png")
    print(f"\nwrote {args.out / 'eval.json'} and {args.out / 'retention.png'}")
    print(f"demo took {time.perf_counter() - started:.0f} s")
    return 0
