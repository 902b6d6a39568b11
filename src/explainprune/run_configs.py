"""The settings of a `collect` run and of a predictor training run, one dataclass each.

Light (no torch): the command line turns every field into an option (`explainprune.configs`), and
each run saves its config verbatim next to its output (collect: in the data directory's
manifest.json; train: as training-config.json in the predictor's directory). Values are checked the
same way from Python and from the command line.
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, field

from .configs import check_config
from .options import ATTN_IMPLEMENTATIONS, DTYPES, fraction, non_negative_int, positive_float, positive_int


def setting(default=MISSING, help: str = "", **metadata):
    """A dataclass field with its option's help and checks (see `explainprune.configs`); no default:
    a required option."""
    return field(default=default, metadata={"help": help, **metadata})


DEVICE_HELP = "torch device, e.g. cuda, cuda:1, cpu (default: cuda if available, else cpu)"
DEVICE_OPTIONS = ("device", "dtype", "attn_implementation")  # options.add_device_options spells these


@dataclass(frozen=True)
class CollectConfig:
    """What `explainprune collect` does. Resuming a data directory needs the same settings, except the
    resumable ones (limit, batch_size, shard_size, device), which only say how much and how fast."""

    model: str = setting(help="save_pretrained directory, or 'embedded'")
    data: str = setting(help="data spec, e.g. synthetic:split=train,n=500 or a .jsonl file")
    limit: int | None = setting(None, "use only the first N samples (raise it to collect more)", type=positive_int, resumable=True)
    explainer: str = setting("gae", "explainer of the targets: gae, rollout or gradxinput")
    variant: str | None = setting(None, "GAE preset the options below start from: default (the best measured) or paper")
    quantity: str | None = setting(None, "GAE: explained quantity of each answer token: logit, logprob or margin")
    gradient: str | None = setting(None, "GAE: probs: dS/dA as the paper; centred: w.r.t. the pre-softmax scores")
    heads: str | None = setting(None, "GAE: aggregation of relu(weighted attention) over heads: mean, sum or max")
    answer_tokens: str | None = setting(None, "GAE: which answer tokens are explained: all, first or no-eos")
    batch_size: int = setting(4, "samples per batch", type=positive_int, resumable=True)
    max_new_tokens: int = setting(8, "answer length limit", type=positive_int)
    keep_incorrect: bool = setting(False, "also keep wrongly answered samples (default: drop them)")
    shard_size: int = setting(256, "records per shard file", type=positive_int, resumable=True)
    device: str | None = setting(None, DEVICE_HELP, resumable=True)
    dtype: str = setting("fp32", "precision", choices=DTYPES)
    attn_implementation: str | None = setting(None, "the model's attention kernel", choices=ATTN_IMPLEMENTATIONS)

    def __post_init__(self):
        check_config(self)


@dataclass(frozen=True)
class PredictorTrainingConfig:
    """What `explainprune train` does: Adam on KL(target || predicted) over the records of `data`."""

    data: str = setting(help="data directory written by `explainprune collect`")
    arch: str = setting("paper", "paper: 1-D convs; grid: 2-D/3-D convs", choices=("paper", "grid"))
    inputs: str | None = setting(
        None,
        "mean: head-mean row-mean attention; heads: per head plus the mean; heads+peaks: also each head's "
        "row-peak (default: mean for paper, heads for grid)",
        choices=("mean", "heads", "heads+peaks"),
    )  # fmt: skip
    target_dilation: int = setting(
        0, "spread each target to the tokens within this many grid steps (max-pooling, renormalised; 0: as collected)",
        type=non_negative_int,
    )  # fmt: skip
    epochs: int = setting(20, "passes over the training records", type=positive_int)
    batch_size: int = setting(128, "records per step", type=positive_int)
    lr: float = setting(1e-3, "Adam learning rate", type=positive_float)
    val_fraction: float = setting(0.1, "share of records held out (chosen by id)", type=fraction)
    seed: int = setting(0, "seed of the initial weights and of the batch order", type=non_negative_int)
    device: str | None = setting(None, DEVICE_HELP)
    dtype: str = setting("fp32", "precision of the forward passes (weights stay fp32)", choices=DTYPES)

    def __post_init__(self):
        check_config(self)
