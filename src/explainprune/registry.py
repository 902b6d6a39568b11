"""`Registry`: names -> classes for scorers, explainers and adapters, with entry-point plug-ins.

A third party adds one without editing the package: in its own pyproject,
`[project.entry-points."explainprune.scorers"] my-scorer = "my_package.module:MyScorer"`;
the entry point is loaded the first time any name is looked up.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Generic, Iterator, TypeVar

from .errors import ExplainPruneError

T = TypeVar("T")


class Registry(Generic[T]):
    """Named entries of one kind; refuses duplicate names, lists the known ones on a miss."""

    def __init__(self, kind: str, entry_point_group: str | None = None):
        self.kind = kind
        self.entry_point_group = entry_point_group
        self._entries: dict[str, T] = {}
        self._plugins_loaded = entry_point_group is None

    def add(self, name: str, entry: T) -> T:
        """Register `entry` under `name`; a name already taken by another entry is refused."""
        if not isinstance(name, str) or not name:
            raise ExplainPruneError(f"a {self.kind} needs a non-empty string name, got {name!r}")
        if name in self._entries and self._entries[name] is not entry:
            raise ExplainPruneError(f"a {self.kind} named {name!r} is already registered ({self._entries[name]!r})")
        self._entries[name] = entry
        return entry

    def register(self, entry: T) -> T:
        """Class decorator: register a class under its `name` attribute."""
        return self.add(getattr(entry, "name", None), entry)

    def get(self, name: str) -> T:
        """The entry called `name`, or an error listing the known names."""
        self._load_plugins()
        if not isinstance(name, str) or name not in self._entries:
            raise ExplainPruneError(f"unknown {self.kind} {name!r}; known {self.kind}s: {', '.join(sorted(self._entries))}")
        return self._entries[name]

    def _load_plugins(self) -> None:
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        for point in entry_points(group=self.entry_point_group):
            try:
                self.add(point.name, point.load())
            except ExplainPruneError:
                raise
            except Exception as error:
                raise ExplainPruneError(
                    f"the {self.kind} plug-in {point.name!r} ({point.value}) failed to load: {error}"
                ) from error

    def __contains__(self, name: object) -> bool:
        self._load_plugins()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        self._load_plugins()
        return iter(sorted(self._entries))

    def __len__(self) -> int:
        self._load_plugins()
        return len(self._entries)

    def items(self):
        """(name, entry) pairs in registration order."""
        self._load_plugins()
        return list(self._entries.items())
