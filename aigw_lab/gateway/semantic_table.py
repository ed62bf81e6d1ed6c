"""`EntryTable`: the per-entry bookkeeping of `MemorySemanticStore` (least-recently-used
order, partition, creation and expiry times) in numpy arrays indexed by slot, so that a
million entries add no object the garbage collector walks.

Why: CPython's full (generation 2) collection walks every GC-tracked object; a store that
held one dataclass (and its answer, its usage...) per entry made each full collection of a
1M-entry cache stop every thread for 0.4-1.3 s (docs/performance.md, "A semantic cache of a
million entries"). Arrays of numbers, and dicts whose keys and values are ints, str or bytes,
are not tracked (an ``OrderedDict`` is: 89 ms per full collection at 1M keys, measured).
"""

from __future__ import annotations

import numpy as np

__all__ = ["EntryTable"]

_FIRST = 64
_NONE = -1


class EntryTable:
    """Entry ids in least-recently-used order (a doubly linked list through the ``prev`` and
    ``next`` arrays), with each entry's partition code and times. Not thread-safe: its owner
    locks. O(1) `insert`, `touch`, `remove` and `oldest`."""

    def __init__(self) -> None:
        self._slot_of: dict[int, int] = {}  # entry id -> slot (untracked: ints only)
        self._ids = self._prev = self._next = np.empty(0, np.int64)
        self._partition = np.empty(0, np.int32)
        self._created = self._expires = np.empty(0, np.float64)
        self._grow(_FIRST)
        self._head = self._tail = _NONE  # least / most recently used slot

    def __len__(self) -> int:
        return len(self._slot_of)

    def __contains__(self, entry_id: int) -> bool:
        return entry_id in self._slot_of

    def insert(self, entry_id: int, partition: int, created: float, expires: float | None) -> None:
        """Add ``entry_id`` (new) as the most recently used."""
        if not self._free_count:
            self._grow(2 * len(self._ids))
        self._free_count -= 1
        slot = int(self._free[self._free_count])
        self._slot_of[entry_id] = slot
        self._ids[slot] = entry_id
        self._partition[slot] = partition
        self._created[slot] = created
        self._expires[slot] = np.nan if expires is None else expires
        self._link_last(slot)

    def touch(self, entry_id: int) -> None:
        """Make ``entry_id`` the most recently used (nothing if it is gone)."""
        slot = self._slot_of.get(entry_id)
        if slot is not None and slot != self._tail:
            self._unlink(slot)
            self._link_last(slot)

    def remove(self, entry_id: int) -> int:
        """Forget ``entry_id``; returns its partition code (KeyError if unknown)."""
        slot = self._slot_of.pop(entry_id)
        self._unlink(slot)
        self._ids[slot] = _NONE
        if self._free_count == len(self._free):
            self._free = np.concatenate([self._free, np.empty(len(self._free), np.int64)])
        self._free[self._free_count] = slot
        self._free_count += 1
        return int(self._partition[slot])

    def oldest(self) -> int:
        """The least recently used entry's id (IndexError when empty)."""
        if self._head == _NONE:
            raise IndexError("empty")
        return int(self._ids[self._head])

    def times(self, entry_id: int) -> tuple[float, float | None]:
        """``entry_id``'s (created, expires)."""
        slot = self._slot_of[entry_id]
        expires = float(self._expires[slot])
        return float(self._created[slot]), None if expires != expires else expires

    def partition_of(self, entry_id: int) -> int:
        return int(self._partition[self._slot_of[entry_id]])

    def order(self) -> list[int]:
        """Every entry id, least recently used first."""
        ids, following = self._ids.tolist(), self._next.tolist()  # one conversion each
        out, slot = [], self._head
        while slot != _NONE:
            out.append(ids[slot])
            slot = following[slot]
        return out

    def expired(self, now: float) -> list[int]:
        """The ids whose expiry is at or before ``now``."""
        live = self._ids >= 0
        with np.errstate(invalid="ignore"):  # NaN (no expiry) compares False
            dead = live & (self._expires <= now)
        return self._ids[dead].tolist()

    # --- the list and the arrays ----------------------------------------------------------

    def _link_last(self, slot: int) -> None:
        self._prev[slot], self._next[slot] = self._tail, _NONE
        if self._tail == _NONE:
            self._head = slot
        else:
            self._next[self._tail] = slot
        self._tail = slot

    def _unlink(self, slot: int) -> None:
        before, after = int(self._prev[slot]), int(self._next[slot])
        if before == _NONE:
            self._head = after
        else:
            self._next[before] = after
        if after == _NONE:
            self._tail = before
        else:
            self._prev[after] = before

    def _grow(self, capacity: int) -> None:
        """Arrays of ``capacity`` slots (the old ones copied in, every one in use); the new
        slots make the free stack."""
        old = len(self._ids)
        arrays = {
            "_ids": (np.int64, _NONE),
            "_prev": (np.int64, _NONE),
            "_next": (np.int64, _NONE),
            "_partition": (np.int32, 0),
            "_created": (np.float64, 0.0),
            "_expires": (np.float64, np.nan),
        }
        for name, (dtype, fill) in arrays.items():
            grown = np.full(capacity, fill, dtype=dtype)
            grown[:old] = getattr(self, name)
            setattr(self, name, grown)
        self._free = np.arange(capacity - 1, old - 1, -1, dtype=np.int64)  # lowest on top
        self._free_count = capacity - old
