"""vLLM engines on the embedded model against `Compressor` on the same held-out scenes.

Runs in the vLLM venv only (`make test-vllm`). Telemetry and the hub are off in every process.
"""

from __future__ import annotations

import gc
import os
from contextlib import contextmanager
from dataclasses import dataclass, replace

import pytest
import torch

TELEMETRY_OFF = {
    "VLLM_NO_USAGE_STATS": "1",
    "VLLM_DO_NOT_TRACK": "1",
    "DO_NOT_TRACK": "1",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
}
os.environ.update(TELEMETRY_OFF)
# Engines run inside the test process, so `LLM.apply_model` can read the model's recorded choices.
os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"

from explainprune import Compressor  # noqa: E402
from explainprune.data.prompting import make_inputs, prompt_texts  # noqa: E402
from explainprune.data.specs import load_samples  # noqa: E402
from explainprune.embedded import EMBEDDED_DIR, load_embedded  # noqa: E402

MAX_TOKENS = 12
BLOCK_SIZE = 32  # the CPU backend's smallest; prompts here span a few blocks, so prefix caching engages
CHUNK = 32  # tokens per engine step: images of more placeholders are split across prefill chunks
# Held-out scenes of three sizes (16, 64 and 144 visual tokens), questions of every type.
SCENES = "synthetic:split=test,seed=5,n=6,size=112|224|336"


@pytest.fixture(scope="session")
def reference():
    """(model, processor): the embedded model in float32 through transformers."""
    return load_embedded(torch.float32)


@pytest.fixture(scope="session")
def scenes():
    return load_samples(SCENES)


def engine_options(scorer: str, keep_ratio: float, **overrides) -> dict:
    from explainprune.integrations.vllm import hf_overrides

    options = dict(
        model=str(EMBEDDED_DIR),
        hf_overrides=hf_overrides("qwen2_vl", scorer, keep_ratio),
        dtype="float32",
        max_model_len=1024,
        max_num_seqs=8,
        max_num_batched_tokens=CHUNK,
        enable_chunked_prefill=True,
        enable_prefix_caching=True,
        block_size=BLOCK_SIZE,
        kv_cache_memory_bytes=256 * 2**20,
        enforce_eager=True,
        seed=0,
    )
    return {**options, **overrides}


@contextmanager
def engine(scorer: str, keep_ratio: float, **overrides):
    """A `vllm.LLM` serving the embedded model with explainprune, shut down afterwards."""
    from vllm import LLM

    llm = LLM(**engine_options(scorer, keep_ratio, **overrides))
    try:
        yield llm
    finally:
        llm.llm_engine.engine_core.shutdown()
        del llm
        gc.collect()


def generate(llm, processor, samples):
    """vLLM's outputs for the samples, submitted together (one concurrent batch)."""
    from vllm import SamplingParams

    requests = [{"prompt": text, "multi_modal_data": {"image": s.image}} for text, s in zip(prompt_texts(processor, samples), samples)]
    return llm.generate(requests, SamplingParams(max_tokens=MAX_TOKENS, temperature=0.0), use_tqdm=False)


def selections(llm) -> dict:
    """Kept raster indices per prompt (token ids with one placeholder), as recorded by the model."""
    recorded = llm.apply_model(lambda model: model.explainprune_selections())[0]
    return {prompt: kept for prompt, _, _, kept in recorded}


def selection_key(prompt_token_ids, image_token_id: int) -> tuple[int, ...]:
    """vLLM's prompt ids with the image's run of placeholders collapsed to one (the recorded key)."""
    ids = list(prompt_token_ids)
    first = ids.index(image_token_id)
    last = len(ids) - 1 - ids[::-1].index(image_token_id)
    return tuple(ids[: first + 1] + ids[last + 1 :])


@dataclass(frozen=True)
class Reference:
    """What `Compressor` does with one sample: new token ids up to and with the first end-of-turn,
    the kept raster indices of its image, and the length of the pruned prompt."""

    tokens: list[int]
    kept: list[int]
    prompt_length: int


def compressor_reference(reference, scorer: str, keep_ratio: float, sample, question: str | None = None) -> Reference:
    model, processor = reference
    if question is not None:
        sample = replace(sample, question=question)
    compressor = Compressor(model, processor, scorer=scorer, keep_ratio=keep_ratio)
    encoded = compressor.encode(**make_inputs(processor, [sample]))
    prepared = compressor.prepare_encoded(encoded)
    with torch.no_grad():
        new = model.generate(**prepared, max_new_tokens=MAX_TOKENS, do_sample=False)[0].tolist()
    kept = torch.isin(encoded.spans[0][0].positions, prepared.kept[0]).nonzero().flatten().tolist()
    return Reference(until_end(model, new), kept, int(prepared.attention_mask.sum()))


def until_end(model, tokens: list[int]) -> list[int]:
    """Generated ids up to and with the first end-of-sequence token (as vLLM returns them)."""
    eos = model.generation_config.eos_token_id
    eos = {eos} if isinstance(eos, int) else set(eos)
    return tokens[: next((i + 1 for i, token in enumerate(tokens) if token in eos), len(tokens))]


@pytest.fixture(scope="session")
def small_qwen2_5_vl(tmp_path_factory):
    """(directory, model, processor): a small random-weight Qwen2.5-VL saved with its weights (peaked
    weights, std 0.2, so greedy tokens and attention rankings are far from ties), the embedded
    model's tokenizer and image processor."""
    from transformers import AutoModelForImageTextToText, AutoProcessor, Qwen2_5_VLConfig

    from explainprune.integrations.vllm.bench import EMBEDDED_TOKENS, write_model_dir

    torch.manual_seed(0)
    text = dict(hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=2,
                num_key_value_heads=1, vocab_size=421, max_position_embeddings=2048, initializer_range=0.2,
                rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [8, 12, 12]},
                bos_token_id=0, eos_token_id=2, pad_token_id=0)  # fmt: skip
    vision = dict(depth=2, hidden_size=64, intermediate_size=128, num_heads=1, out_hidden_size=128,
                  window_size=56, fullatt_block_indexes=[1], tokens_per_second=2, initializer_range=0.2)  # fmt: skip
    config = Qwen2_5_VLConfig(text_config=text, vision_config=vision, initializer_range=0.2, **EMBEDDED_TOKENS)
    directory = write_model_dir(config, tmp_path_factory.mktemp("qwen2_5_vl"))
    AutoModelForImageTextToText.from_config(config).save_pretrained(directory)
    model = AutoModelForImageTextToText.from_pretrained(directory, dtype=torch.float32).eval()
    processor = AutoProcessor.from_pretrained(directory)
    processor.tokenizer.padding_side = "left"
    return directory, model, processor
