"""Collect and predictor-training settings: dataclasses, their generated options, checked values."""

from __future__ import annotations

import dataclasses

import pytest

from explainprune.cli import build_parser
from explainprune.configs import config_from_arguments
from explainprune.errors import ExplainPruneError
from explainprune.run_configs import CollectConfig, PredictorTrainingConfig


def subparser(name):
    parser = build_parser()
    return parser._subparsers._group_actions[0].choices[name]


@pytest.mark.parametrize("command, cls", [("collect", CollectConfig), ("train", PredictorTrainingConfig)])
def test_every_field_is_an_option_with_the_fields_default(command, cls):
    options = {action.dest: action for action in subparser(command)._actions}
    for field in dataclasses.fields(cls):
        assert field.name in options, field.name
        if field.default is not dataclasses.MISSING:
            assert options[field.name].default == field.default
        else:
            assert options[field.name].required


def test_options_fill_the_config_as_python_would():
    args = build_parser().parse_args(
        ["collect", "--model", "m", "--data", "synthetic:n=3", "--out", "o", "--limit", "2", "--keep-incorrect",
         "--heads", "max", "--dtype", "bf16", "--batch-size", "3"]  # fmt: skip
    )
    expected = CollectConfig(model="m", data="synthetic:n=3", limit=2, keep_incorrect=True, heads="max", dtype="bf16", batch_size=3)
    assert config_from_arguments(CollectConfig, args) == expected
    args = build_parser().parse_args(["train", "--data", "d", "--out", "o", "--lr", "0.01", "--val-fraction", "0.3"])
    assert config_from_arguments(PredictorTrainingConfig, args) == PredictorTrainingConfig(data="d", lr=0.01, val_fraction=0.3)


@pytest.mark.parametrize(
    "cls, values, message",
    [
        (CollectConfig, {"batch_size": 0}, "--batch-size must be an integer >= 1, got 0"),
        (CollectConfig, {"max_new_tokens": 2.0}, "--max-new-tokens must be an integer >= 1, got 2.0"),
        (CollectConfig, {"model": None}, "--model must be a string, got None"),
        (CollectConfig, {"attn_implementation": "fast"}, "--attn-implementation must be one of sdpa"),
        (PredictorTrainingConfig, {"lr": float("inf")}, "--lr must be a finite number > 0, got inf"),
        (PredictorTrainingConfig, {"val_fraction": 0.0}, "--val-fraction must be"),
        (PredictorTrainingConfig, {"batch_size": "8"}, "--batch-size must be an integer >= 1, got '8'"),
    ],
)
def test_values_from_python_are_checked_as_the_options_are(cls, values, message):
    required = {"model": "m", "data": "d"} if cls is CollectConfig else {"data": "d"}
    with pytest.raises(ExplainPruneError, match=message):
        cls(**{**required, **values})
