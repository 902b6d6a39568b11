"""Exceptions raised for bad input: each names the problem and how to fix it."""


class ExplainPruneError(ValueError):
    """Base class of every error explainprune raises for bad input."""


class UnsupportedModelError(ExplainPruneError):
    """The model's family has no adapter."""


class InputMismatchError(ExplainPruneError):
    """The inputs do not belong to the model (ids out of range, missing pixels, token counts)."""


class MissingFileError(ExplainPruneError, FileNotFoundError):
    """A file or directory the user named is not there (also a FileNotFoundError)."""
