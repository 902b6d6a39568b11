"""Wall-clock timing and summaries (median and spread) of repeated measurements."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field

from ..devices import synchronize


def timed(device, function, *args, **kwargs):
    """(seconds, result) of one call on `device`, synchronised before and after (queued GPU work
    is waited for, so the time is the call's own; on the cpu there is nothing to wait for)."""
    synchronize(device)
    start = time.perf_counter()
    result = function(*args, **kwargs)
    synchronize(device)
    return time.perf_counter() - start, result


@dataclass
class Samples:
    """Repeated measurements of one figure."""

    values: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    @property
    def spread(self) -> list[float]:
        """[min, max] of the measurements."""
        return [min(self.values), max(self.values)]
