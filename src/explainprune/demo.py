"""`explainprune demo`: the method on the embedded model, end to end, in under three minutes.

Prints one held-out question with the answers at keep 1.0 and 0.25, writes the image with the
predicted relevance overlaid and the pruned tokens greyed out, then the eval table on held-out
questions for learned, layer0, uniform and random.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from PIL import Image

DEMO_DATA = "synthetic:split=test,seed=1,n={n},size=224"
DEMO_SCORERS = ["learned", "layer0", "uniform", "random"]
DEMO_KEEPS = [1.0, 0.5, 0.25, 0.1]


def relevance_overlay(image: Image.Image, relevance: torch.Tensor, kept: torch.Tensor, grid) -> Image.Image:
    """The image with relevance as a red heat map; tokens not kept are greyed out."""
    _, rows, cols = grid
    heat = relevance.float().view(rows, cols).cpu().numpy()
    heat = heat / heat.max() if heat.max() > 0 else heat
    keep = kept.view(rows, cols).cpu().numpy()
    size = image.size
    heat = np.asarray(Image.fromarray((heat * 255).astype(np.uint8)).resize(size, Image.NEAREST)) / 255.0
    keep = np.asarray(Image.fromarray(keep.astype(np.uint8) * 255).resize(size, Image.NEAREST)) > 0
    pixels = np.asarray(image.convert("RGB")).astype(float)
    red = np.zeros_like(pixels)
    red[..., 0] = 255.0
    blended = pixels * (1 - 0.55 * heat[..., None]) + red * 0.55 * heat[..., None]
    grey = pixels.mean(-1, keepdims=True) * 0.3 + 60
    blended = np.where(keep[..., None], blended, grey)
    return Image.fromarray(blended.clip(0, 255).astype(np.uint8)).resize((size[0] * 2, size[1] * 2), Image.NEAREST)


def _answer(compressor, inputs) -> str:
    output = compressor.generate(**inputs, max_new_tokens=6, do_sample=False)
    return compressor.processor.batch_decode(output[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)[0]


def main(args: argparse.Namespace) -> int:
    from . import Compressor
    from .bench.quality import evaluate, format_table, plot_retention
    from .data import load_samples, make_inputs
    from .embedded import load_embedded

    started = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    model, processor = load_embedded(args.dtype, args.device, args.attn_implementation)
    samples = load_samples(DEMO_DATA.format(n=args.n))
    example = samples[0]
    inputs = make_inputs(processor, [example], device=model.device)
    full = Compressor(model, processor, scorer="learned", keep_ratio=1.0)
    pruned = Compressor(model, processor, scorer="learned", keep_ratio=0.25)
    print(f"question: {example.question}   (truth: {example.answer})")
    print(f"answer with all visual tokens : {_answer(full, inputs)}")
    encoded = pruned.encode(**inputs)
    scores = pruned.score(encoded)
    prepared = pruned.prepare_encoded(encoded, scores)
    kept_positions = prepared.kept[0]
    span = encoded.spans[0][0]
    print(f"answer with 25% of the tokens : {_answer(pruned, inputs)}   ({prepared.stats.visual_after[0]} of {span.num_tokens} kept)")
    kept = torch.isin(span.positions.to(kept_positions.device), kept_positions)
    overlay = relevance_overlay(example.image, scores[0][0], kept, span.grids[0])
    overlay_path = args.out / "relevance.png"
    overlay.save(overlay_path)
    print(f"wrote {overlay_path}: predicted relevance in red, pruned tokens greyed out\n")

    report = {"model": "embedded", "data": DEMO_DATA.format(n=args.n), "device": str(model.device), "dtype": args.dtype}
    report |= evaluate(model, processor, samples, DEMO_SCORERS, DEMO_KEEPS)
    print(format_table(report))
    (args.out / "eval.json").write_text(json.dumps(report, indent=2))
    plot_retention(report, args.out / "retention.png")
    print(f"\nwrote {args.out / 'eval.json'} and {args.out / 'retention.png'}")
    print(f"demo took {time.perf_counter() - started:.0f} s")
    return 0
