"""Build the embedded model's tokenizer, processor and (untrained) Qwen2-VL model."""

from __future__ import annotations

import easy_vqa
from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration, Qwen2VLImageProcessor, Qwen2VLProcessor
from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

from explainprune.data.synthetic import COLOURS, PLURALS, SHAPES
from explainprune.data.synthetic_video import DIRECTIONS, MAX_FRAMES
from explainprune.embedded.conversations import caption_text
from explainprune.tokenizer import QWEN_CHAT_TEMPLATE, QWEN_SPECIAL_TOKENS, train_bpe_tokenizer

VOCAB_SIZE = 512
MIN_PIXELS, MAX_PIXELS = 112 * 112, 448 * 448
VISION = {"depth": 4, "embed_dim": 192, "num_heads": 3, "mlp_ratio": 4}
TEXT = {"hidden_size": 256, "num_hidden_layers": 4, "num_attention_heads": 4, "num_key_value_heads": 2}
TEXT_INTERMEDIATE = 768
MROPE_SECTION = [8, 12, 12]  # sums to head_dim / 2 = 32


def tokenizer_corpus() -> list[str]:
    """Every question template and answer the model is trained on (scenes and clips), plus easy-vqa's questions."""
    colours, shapes = list(COLOURS), SHAPES
    texts = ["user", "assistant", "system", "yes", "no", "0", "1", "2", "3"]
    texts += [f"what colour is the {s}?" for s in shapes]
    texts += [f"what shape is the {c} object?" for c in colours]
    texts += [f"is there a {c} {s}?" for c in colours for s in shapes]
    texts += [f"how many {PLURALS[s]} are there?" for s in shapes]
    texts += [f"is the {c} {s} {rel} the {c} {s}?" for c in colours for s in shapes for rel in ("left of", "above")]
    texts += [caption_text([{"colour": c, "shape": s, "bbox": (0, 0, 1, 1)} for s in shapes]) for c in colours]
    texts += ["which shape moves?", "which shape appears last?", *DIRECTIONS]
    texts += [str(n) for n in range(MAX_FRAMES + 1)]
    texts += [f"what colour is the {s} at the end?" for s in shapes]
    texts += [f"in how many frames is the {c} {s} visible?" for c in colours for s in shapes]
    texts += [f"where does the {c} {s} go?" for c in colours for s in shapes]
    questions, answers, _ = easy_vqa.get_train_questions()
    texts += sorted(set(questions)) + easy_vqa.get_answers()
    return texts


def build_processor() -> Qwen2VLProcessor:
    """The stock Qwen2-VL processor around a BPE tokenizer trained on the corpus."""
    tokenizer = train_bpe_tokenizer(tokenizer_corpus(), QWEN_SPECIAL_TOKENS, VOCAB_SIZE)
    processor = Qwen2VLProcessor(
        image_processor=Qwen2VLImageProcessor(min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS),
        tokenizer=tokenizer,
        video_processor=Qwen2VLVideoProcessor(min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS, cap_pixels_per_frame=False),
        chat_template=QWEN_CHAT_TEMPLATE,
    )
    processor.tokenizer.padding_side = "left"
    return processor


def build_model(processor: Qwen2VLProcessor) -> Qwen2VLForConditionalGeneration:
    """A small randomly initialised Qwen2-VL whose special token ids match the processor's tokenizer."""
    tok = processor.tokenizer
    ids = {name: tok.convert_tokens_to_ids(name) for name in QWEN_SPECIAL_TOKENS}
    head_dim = TEXT["hidden_size"] // TEXT["num_attention_heads"]
    if sum(MROPE_SECTION) != head_dim // 2:
        raise ValueError(f"mrope_section {MROPE_SECTION} must sum to head_dim/2 = {head_dim // 2}")
    config = Qwen2VLConfig(
        text_config={
            **TEXT,
            "vocab_size": len(tok),
            "intermediate_size": TEXT_INTERMEDIATE,
            "max_position_embeddings": 2048,
            "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": MROPE_SECTION},
            "bos_token_id": ids["<|endoftext|>"],
            "eos_token_id": ids["<|im_end|>"],
            "pad_token_id": ids["<|endoftext|>"],
        },
        vision_config={
            **VISION,
            "hidden_size": TEXT["hidden_size"],
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "rope_parameters": {"rope_type": "axial", "rope_theta": 10000.0},
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=ids["<|im_end|>"],
        pad_token_id=ids["<|endoftext|>"],
    )
    model = Qwen2VLForConditionalGeneration(config)
    model.generation_config.eos_token_id = ids["<|im_end|>"]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    model.generation_config.bos_token_id = ids["<|endoftext|>"]
    return model
