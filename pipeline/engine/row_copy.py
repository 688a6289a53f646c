"""A copy of some streams' state as it was at one moment, made a few rows at a time.

A local snapshot needs every owned stream's state at its checkpoint, while the scorer goes
on changing it. Copying 100k streams' rows at once holds the poll loop for 0.3-1.1 s (300
MB); a :class:`RowCopy` is filled in chunks between batches instead, and whatever is
about to change or free rows not copied yet copies them first (copy on write, as the
deferred changelog frames of :mod:`pipeline.scorer.checkpoint` are written first).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from pipeline.engine.state import StateStore

__all__ = ["RowCopy"]

I64 = npt.NDArray[np.int64]


class RowCopy:
    """Rows ``slots`` of ``source`` as they are when it is made: row i of :attr:`copy`
    is ``slots[i]``, complete once :attr:`done`. ``prepare`` is called with the slots
    about to be copied first (a served model's rebuild of streams a swap left stale)."""

    def __init__(
        self, source: StateStore, slots: I64, prepare: Callable[[I64], None] | None = None
    ) -> None:
        self.source = source
        self.prepare = prepare
        self.copy = source.blank_copy(slots)
        self.slots = slots
        self._left = np.ones(len(slots), np.bool_)
        self._row = np.full(source.capacity, -1, np.int64)  # slot → row (-1: not copied)
        self._row[slots] = np.arange(len(slots))
        self._at = 0  # rows before it are copied (or were copied out of turn)

    @property
    def done(self) -> bool:
        return self._at >= len(self.slots)

    def advance(self, budget: int) -> int:
        """Copy up to ``budget`` of the rows still to be copied, in order; returns how many."""
        copied = 0
        while self._at < len(self.slots) and copied < budget:
            rows = np.arange(self._at, min(self._at + budget - copied, len(self.slots)))
            self._at = int(rows[-1]) + 1
            rows = rows[self._left[rows]]
            self._take(rows)
            copied += len(rows)
        return copied

    def before_update(self, slots: I64) -> None:
        """These slots are about to change or be freed: copy those not copied yet."""
        if self.done or not len(slots):
            return
        slots = slots[(slots >= 0) & (slots < len(self._row))]  # newer slots: not ours
        rows = self._row[slots]
        rows = np.unique(rows[rows >= 0])
        self._take(rows[self._left[rows]])

    def finish(self) -> None:
        """Copy every row still to be copied."""
        self.advance(len(self.slots))

    def _take(self, rows: I64) -> None:
        if len(rows):
            if self.prepare is not None:
                self.prepare(self.slots[rows])
            self.source.copy_rows(self.copy, rows, self.slots[rows])
            self._left[rows] = False
