"""Argument definitions of every subcommand, in light modules (argparse only, no torch).

Each module has HELP, `add_arguments(parser)` and RUN, the "module:function" that runs the
command; `explainprune.cli` imports RUN's module only when the command runs.
"""

COMMANDS = {
    "demo": "explainprune.commands.demo",
    "eval": "explainprune.commands.eval",
    "collect": "explainprune.commands.collect",
    "train": "explainprune.commands.train",
    "bench": "explainprune.commands.bench",
    "export-task": "explainprune.commands.export_task",
    "lmms-eval": "explainprune.commands.lmms_eval",
}
EMBEDDED_COMMANDS = {"train": "explainprune.commands.embedded_train"}
