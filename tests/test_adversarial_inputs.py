"""Hostile inputs through the API: image modes, processor outputs with parts missing or not
matching, and option values.

The rule: an input works correctly (the image as a viewer shows it; the unpruned model's own
answer on the same inputs) or is refused with one line of ours (`ExplainPruneError`).
"""

from __future__ import annotations

import io
import math
import os
from fractions import Fraction

import numpy as np
import pytest
import torch
from conftest import image, load_tiny, prompt
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from reference import greedy, new_tokens, small_predictor

from explainprune import Compressor, ExplainPruneError
from explainprune.data.images import read_image, to_rgb
from explainprune.prune import token_budget
from explainprune.tiny import FAMILIES

HYPOTHESIS = settings(
    max_examples=int(os.environ.get("EXPLAINPRUNE_HYPOTHESIS_EXAMPLES", "25")),
    deadline=None,
    derandomize="EXPLAINPRUNE_HYPOTHESIS_EXAMPLES" not in os.environ,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def assert_ours(error: ExplainPruneError) -> None:
    message = str(error)
    assert message and "\n" not in message, message


# --- image modes -------------------------------------------------------------------------------

def over_white(rgba: np.ndarray) -> np.ndarray:
    """The reference: RGBA composited on white, v * a + 255 * (1 - a)."""
    alpha = rgba[..., 3:4] / 255.0
    return np.rint(rgba[..., :3] * alpha + 255 * (1 - alpha))


@st.composite
def pictures(draw):
    """(mode, PIL image) of random content in one of the modes files come in."""
    mode = draw(st.sampled_from(["1", "L", "LA", "P", "P+transparency", "PA", "RGB", "RGBA", "CMYK", "YCbCr",
                                 "I;16", "I;16B", "I", "I-8bit", "F"]))  # fmt: skip
    width, height = draw(st.integers(1, 24)), draw(st.integers(1, 24))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    if mode in ("I;16", "I;16B"):
        return mode, Image.fromarray(rng.integers(0, 65536, (height, width), dtype=np.uint16)).convert(mode)
    if mode in ("I", "I-8bit"):
        top = 65536 if mode == "I" else 256
        return mode, Image.fromarray(rng.integers(0, top, (height, width)).astype(np.int32), mode="I")
    if mode == "F":
        return mode, Image.fromarray(rng.random((height, width)).astype(np.float32), mode="F")
    rgba = Image.fromarray(rng.integers(0, 256, (height, width, 4), dtype=np.uint8), mode="RGBA")
    if mode == "P+transparency":
        picture = rgba.convert("RGB").convert("P")
        picture.info["transparency"] = 0
        return mode, picture
    return mode, rgba.convert(mode) if mode != "RGBA" else rgba


@HYPOTHESIS
@given(case=pictures())
def test_every_image_mode_becomes_the_rgb_a_viewer_shows_or_is_refused(case):
    mode, picture = case
    if mode == "F":
        with pytest.raises(ExplainPruneError, match="floating-point images"):
            to_rgb(picture)
        return
    rgb = to_rgb(picture)
    assert rgb.mode == "RGB" and rgb.size == picture.size
    got = np.asarray(rgb).astype(int)
    if mode.startswith("I;16") or mode == "I":
        values = np.asarray(picture, dtype=np.float64)
        expected = np.rint(values / 257) if mode != "I" or values.max() > 255 else values
        assert np.array_equal(got, np.repeat(expected[..., None], 3, axis=2))
    elif mode == "I-8bit":
        assert np.array_equal(got, np.repeat(np.asarray(picture)[..., None], 3, axis=2))
    elif mode in ("LA", "PA", "RGBA", "P+transparency"):
        assert np.abs(got - over_white(np.asarray(picture.convert("RGBA")).astype(float))).max() <= 1
    else:
        assert np.array_equal(got, np.asarray(picture.convert("RGB")))


def test_a_photo_is_turned_as_its_exif_orientation_says(tmp_path):
    picture = image(40, 20)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to view
    picture.save(tmp_path / "photo.png", exif=exif)
    shown = read_image(tmp_path / "photo.png")
    assert shown.size == (20, 40)
    assert np.array_equal(np.asarray(shown), np.asarray(picture.transpose(Image.Transpose.ROTATE_270)))


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "is not an image file PIL can read"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 20, "is not an image file PIL can read"),
        ("truncated", "could not be read as an image .* truncated"),
    ],
)
def test_unreadable_image_files_are_refused_in_one_line(tmp_path, content, message):
    if content == "truncated":
        buffer = io.BytesIO()
        image(64, 64).save(buffer, format="PNG")
        content = buffer.getvalue()[:200]
    (tmp_path / "x.png").write_bytes(content)
    with pytest.raises(ExplainPruneError, match=message) as error:
        read_image(tmp_path / "x.png")
    assert_ours(error.value)


# --- processor outputs with parts missing or not matching ---------------------------------------

def batch_of(processor, n_images: int):
    texts = [prompt(processor, "what colour is the circle?"), prompt(processor, "how many?", ("image",) * n_images)]
    images = [image(84, 56, seed=0), *[image(56, 112, seed=1 + i) for i in range(n_images)]]
    return processor(text=texts, images=images, padding=True, return_tensors="pt")


def clone(inputs) -> dict:
    return {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in inputs.items()}


def first_image_token(inputs, token_id) -> tuple[int, int]:
    sample, position = (inputs["input_ids"] == token_id).nonzero()[0].tolist()
    return sample, position


CORRUPTIONS = {
    "drop attention_mask": lambda x, m: x.pop("attention_mask"),
    "drop pixel_values": lambda x, m: x.pop("pixel_values"),
    "drop image_grid_thw": lambda x, m: x.pop("image_grid_thw", None),
    "drop mm_token_type_ids": lambda x, m: x.pop("mm_token_type_ids", None),
    "drop image_sizes": lambda x, m: x.pop("image_sizes", None),
    "drop batch_num_images": lambda x, m: x.pop("batch_num_images", None),
    "grids of another order": lambda x, m: x.__setitem__("image_grid_thw", x["image_grid_thw"].flip(0)) if "image_grid_thw" in x else None,
    "grid doubled": lambda x, m: x["image_grid_thw"][0].mul_(torch.tensor([1, 2, 1])) if "image_grid_thw" in x else None,
    "grid zero": lambda x, m: x["image_grid_thw"][0].mul_(torch.tensor([0, 1, 1])) if "image_grid_thw" in x else None,
    "image sizes of another order": lambda x, m: x.__setitem__("image_sizes", x["image_sizes"].flip(0)) if "image_sizes" in x else None,
    "image size zero": lambda x, m: x["image_sizes"][0].zero_() if "image_sizes" in x else None,
    "half the pixel rows": lambda x, m: x.__setitem__("pixel_values", x["pixel_values"][: max(1, x["pixel_values"].shape[0] // 2)]),
    "pixels of one image more": lambda x, m: x.__setitem__("pixel_values", torch.cat([x["pixel_values"], x["pixel_values"][:1]])),
    "one image token less": lambda x, m: x["input_ids"].__setitem__(first_image_token(x, m.config.image_token_id), 1),
    "attention_mask one column short": lambda x, m: x.__setitem__("attention_mask", x["attention_mask"][:, 1:]),
    "attention_mask of one sample": lambda x, m: x.__setitem__("attention_mask", x["attention_mask"][:1]),
    "attention_mask with a hole": lambda x, m: x["attention_mask"][1, -2].zero_(),
    "attention_mask all zero": lambda x, m: x["attention_mask"][0].zero_(),
    "attention_mask of 2s": lambda x, m: x["attention_mask"].mul_(2),
    "input_ids as floats": lambda x, m: x.__setitem__("input_ids", x["input_ids"].float()),
    "input_ids as a list": lambda x, m: x.__setitem__("input_ids", x["input_ids"].tolist()),
    "input_ids of one dimension": lambda x, m: x.__setitem__("input_ids", x["input_ids"][1]),
    "unknown input": lambda x, m: x.__setitem__("keep_ratio", 0.1),
}


BROKEN = {
    "family": st.sampled_from(FAMILIES),
    "corruption": st.sampled_from(sorted(CORRUPTIONS)),
    "n_images": st.integers(1, 2),
    "scorer": st.sampled_from(["layer0", "uniform", "fastv"]),
    "keep_ratio": st.sampled_from([1.0, 0.5]),
}


@HYPOTHESIS
@given(**BROKEN)
def test_a_processor_output_with_a_part_missing_or_wrong_is_refused_or_runs_as_the_model(tiny_dirs, **case):
    check_broken_inputs(tiny_dirs, **case)


@pytest.mark.slow
@settings(HYPOTHESIS, max_examples=300, derandomize=False)
@given(**BROKEN)
def test_broken_processor_outputs_searched_longer(tiny_dirs, **case):
    check_broken_inputs(tiny_dirs, **case)


def check_broken_inputs(tiny_dirs, family, corruption, n_images, scorer, keep_ratio):
    """Refused in one line of ours, or, when it runs, at keep 1.0 the unpruned model's own answer on
    the same inputs (or on the intact ones when the model itself cannot run these)."""
    model, processor = load_tiny(tiny_dirs, family)
    intact = batch_of(processor, n_images)
    broken = clone(intact)
    CORRUPTIONS[corruption](broken, model)
    options = {"layer": 1} if scorer == "fastv" else {}
    compressor = Compressor(model, processor, scorer=scorer, keep_ratio=keep_ratio, **options)
    try:
        output = greedy(compressor, broken, 2)
    except ExplainPruneError as error:
        assert_ours(error)
        return
    if keep_ratio < 1.0:
        assert output.shape[0] == 2
        return
    try:
        reference = new_tokens(greedy(model, broken, 2), broken)
    except Exception:
        reference = new_tokens(greedy(model, intact, 2), intact)
    assert torch.equal(output[:, -2:], reference), corruption


# --- option values ----------------------------------------------------------------------------

KEEP_RATIOS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-3, 3),
    st.sampled_from([np.float32(0.5), np.float64(0.25), np.int64(1), Fraction(1, 3), True, None, "0.5", [0.5], torch.tensor(0.5)]),
)


@HYPOTHESIS
@given(keep_ratio=KEEP_RATIOS, scorer=st.sampled_from(["layer0", "random", "uniform"]))
def test_a_keep_ratio_is_a_real_number_in_0_1_or_refused(tiny_dirs, keep_ratio, scorer):
    model, processor = load_tiny(tiny_dirs, "llava")
    inputs = batch_of(processor, 1)
    try:
        compressor = Compressor(model, processor, scorer=scorer, keep_ratio=keep_ratio)
    except ExplainPruneError as error:
        assert_ours(error)
        assert isinstance(keep_ratio, (bool, str, list, torch.Tensor, type(None))) or not 0 < float(keep_ratio) <= 1 or math.isnan(float(keep_ratio))
        return
    ratio = float(keep_ratio)
    assert 0 < ratio <= 1 and compressor.keep_ratio == ratio
    encoded = compressor.encode(**inputs)
    prepared = compressor.prepare_encoded(encoded)
    for b, spans in enumerate(encoded.spans):
        for span in spans:
            assert int(torch.isin(span.positions, prepared.kept[b]).sum()) == token_budget(ratio, span.num_tokens)


SCORER_OPTIONS = {
    "random": st.fixed_dictionaries({"seed": st.one_of(st.integers(-5, 2**64), st.floats(), st.text(max_size=2), st.none())}),
    "fastv": st.fixed_dictionaries({"layer": st.one_of(st.integers(-2, 4), st.floats(), st.none(), st.booleans())}),
    "gae": st.fixed_dictionaries(
        {},
        optional={
            "max_new_tokens": st.one_of(st.integers(-1, 3), st.floats(0, 3)),
            "variant": st.sampled_from(["default", "paper", "best", ""]),
            "quantity": st.sampled_from(["logit", "logprob", "margin", "prob", 3]),
            "heads": st.sampled_from(["mean", "sum", "max", "min"]),
            "answer_tokens": st.sampled_from(["all", "no-eos", "first", "last"]),
        },
    ),
    "learned": st.fixed_dictionaries({"predictor": st.sampled_from([3, "no-such-directory", None, "fits", "nan"])}),
    "uniform": st.dictionaries(st.sampled_from(["k", "seed"]), st.integers(0, 3), max_size=1),
    "layer0": st.dictionaries(st.sampled_from(["layer", "heads", "rows"]), st.sampled_from([0, 3, "mean", "peak", "max"]), max_size=1),
}


@HYPOTHESIS
@given(data=st.data(), scorer=st.sampled_from(sorted(SCORER_OPTIONS)))
def test_scorer_options_work_or_are_refused_in_one_line(tiny_dirs, data, scorer):
    model, processor = load_tiny(tiny_dirs, "qwen2-vl")
    options = dict(data.draw(SCORER_OPTIONS[scorer]))
    if options.get("predictor") in ("fits", "nan"):
        predictor = small_predictor(model)
        if options["predictor"] == "nan":
            with torch.no_grad():
                predictor.head.bias.fill_(float("nan"))
        options["predictor"] = predictor
    inputs = batch_of(processor, 1)
    try:
        compressor = Compressor(model, processor, scorer=scorer, keep_ratio=0.5, **options)
        output = greedy(compressor, inputs, 2)
    except ExplainPruneError as error:
        assert_ours(error)
        return
    assert output.shape == (2, inputs["input_ids"].shape[1] + 2)
    if scorer == "random":  # the seed reproduces the choice
        again = Compressor(model, processor, scorer=scorer, keep_ratio=0.5, **options)
        assert torch.equal(greedy(again, inputs, 2), output)


GENERATE_OPTIONS = st.fixed_dictionaries(
    {"max_new_tokens": st.one_of(st.integers(-1, 3), st.floats(-1, 3), st.none())},
    optional={
        "num_beams": st.integers(0, 2),
        "do_sample": st.booleans(),
        "temperature": st.floats(-1, 2),
        "max_length": st.integers(1, 5),
        "return_dict_in_generate": st.booleans(),
        "output_scores": st.booleans(),
        "typo_option": st.just(1),
        "inputs_embeds": st.just(torch.zeros(1)),
        "token_type_ids": st.just(None),
    },
)


@HYPOTHESIS
@given(options=GENERATE_OPTIONS, scorer=st.sampled_from(["layer0", "fastv"]), family=st.sampled_from(FAMILIES))
def test_generate_options_work_as_model_generate_or_are_refused_in_one_line(tiny_dirs, options, scorer, family):
    """At keep 1.0, greedy generation with the options equals model.generate with them."""
    model, processor = load_tiny(tiny_dirs, family)
    inputs = batch_of(processor, 1)
    compressor = Compressor(model, processor, scorer=scorer, keep_ratio=1.0, **({"layer": 1} if scorer == "fastv" else {}))
    options = {k: v for k, v in options.items() if v is not None}
    try:
        with torch.no_grad():
            output = compressor.generate(**inputs, **options)
    except ExplainPruneError as error:
        assert_ours(error)
        return
    sequences = output.sequences if options.get("return_dict_in_generate") else output
    assert torch.equal(sequences[:, : inputs["input_ids"].shape[1]], inputs["input_ids"])
    if not options.get("do_sample"):
        with torch.no_grad():
            reference = model.generate(**inputs, **{k: v for k, v in options.items() if k != "token_type_ids"})
        reference = reference.sequences if options.get("return_dict_in_generate") else reference
        assert torch.equal(sequences, reference)


# --- JSON-lines records ------------------------------------------------------------------------

JSON_VALUES = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.floats(), st.text(max_size=8),
                        st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=2), st.integers(), max_size=1))  # fmt: skip
RECORDS = st.fixed_dictionaries(
    {},
    optional={
        "image": st.one_of(st.sampled_from(["a.png", "missing.png", "fake.png", "", "."]), JSON_VALUES),
        "question": st.one_of(st.sampled_from(["what colour?", "  "]), JSON_VALUES),
        "answer": st.one_of(st.sampled_from(["Red ", "3"]), JSON_VALUES),
        "id": st.one_of(st.sampled_from(["x", "y"]), JSON_VALUES),
        "qtype": JSON_VALUES,
    },
)


@HYPOTHESIS
@given(records=st.lists(st.one_of(RECORDS, JSON_VALUES), min_size=1, max_size=3))
def test_a_jsonl_record_is_read_as_written_or_refused_with_its_line(tmp_path_factory, records):
    import json

    from explainprune.data import load_samples

    directory = tmp_path_factory.mktemp("jsonl")
    image(8, 8).save(directory / "a.png")
    (directory / "fake.png").write_text("not an image")
    path = directory / "q.jsonl"
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    try:
        samples = load_samples(str(path))
    except ExplainPruneError as error:
        assert_ours(error)
        assert str(error).startswith(f"{path}:") or "holds no samples" in str(error)
        return
    assert len(samples) == len(records)
    for line, (record, sample) in enumerate(zip(records, samples), start=1):
        assert record["image"] == "a.png" and sample.image.size == (8, 8)
        assert isinstance(record["question"], str) and sample.question == record["question"]
        assert isinstance(record["answer"], (str, int, float)) and not isinstance(record["answer"], bool)
        assert not isinstance(record["answer"], float) or math.isfinite(record["answer"])
        assert sample.answer == str(record["answer"]).strip().lower()
        assert sample.id == str(record.get("id", f"q-{line}"))


def test_a_jsonl_that_is_not_text_or_holds_a_decompression_bomb_is_refused(tmp_path, monkeypatch):
    from explainprune.data import load_samples

    (tmp_path / "binary.jsonl").write_bytes(b"\xff\xfe\x00{")
    with pytest.raises(ExplainPruneError, match="is not a UTF-8 text file"):
        load_samples(str(tmp_path / "binary.jsonl"))
    image(64, 64).save(tmp_path / "big.png")
    (tmp_path / "q.jsonl").write_text('{"image": "big.png", "question": "q", "answer": "a"}\n')
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 64 x 64 is then more than twice the limit
    with pytest.raises(ExplainPruneError, match=r"q.jsonl:1: .*big.png: .*downscale the image"):
        load_samples(str(tmp_path / "q.jsonl"))
