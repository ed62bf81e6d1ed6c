"""The order in which xdist hands out the suite's work: the longest work units first.

With ``--dist loadgroup`` (tests/conftest.py) a work unit is an ``xdist_group`` (its tests run
on one worker, in order) or a single ungrouped test. xdist queues the units by their number of
tests, largest first, and each worker takes the next unit when it runs low. A group of many
millisecond tests (the official SDKs' 145) then went before a group of ten tests of tens of
seconds each (Ray's), and slow ungrouped tests came in collection order, some of them in the
last minute: the run ended with one worker still busy and the others done (docs/performance.md,
"The suite's schedule, session 12"). Scheduling the longest units first (the classic rule for
spreading jobs over a few machines) leaves only short units for the end, where they even out.

The length of a unit is estimated from what the suite already says about its tests: a test
marked ``slow`` costs seconds (`SLOW_COST`), any other milliseconds (`FAST_COST`); no timings
are kept between runs (a fresh clone has none). Every worker sorts its collection the same way
(the controller checks that they agree), and tests/conftest.py turns off xdist's own reordering
so that the controller queues the units in this order.

A fast test that is in no group is scheduled with the rest of its file's fast tests
(`file_unit_scheduling`): xdist otherwise hands out single tests in collection order, so all
four workers ran the same file at once, and a file whose tests wait (timeouts, servers shutting
down, late clients) left the 2-core box idle for seconds at a time while every worker waited in
it; each worker also built that file's module fixtures again. With one file per worker, a file
that waits runs beside files that compute. A slow test stays a unit of its own, so that the
slow tests of one file still spread over the workers. The controller sees only node ids, not
marks: each worker writes the ids of its ungrouped slow tests to a folder the controller made
(`write_slow_ids`), and the controller reads them before it hands out the first unit.
"""

from __future__ import annotations

import json
import os
from collections.abc import Collection, Sequence
from pathlib import Path

import pytest

#: The estimated seconds of a test marked slow, and of any other test. Only their ratio matters:
#: the suite's slow tests take 1-40 s each on the 2-core machine, its fast ones mostly
#: milliseconds (docs/performance.md, "The test suite's time").
SLOW_COST = 3.0
FAST_COST = 0.02


def work_unit(item: pytest.Item, *, by_file: bool = False) -> str:
    """The unit xdist's loadgroup schedules ``item`` in: its group, or else the test itself (or,
    ``by_file`` and the test is not slow, its file: `file_unit_scheduling`)."""
    mark = item.get_closest_marker("xdist_group")
    if mark is None:
        slow = item.get_closest_marker("slow") is not None
        return item.nodeid.split("::", 1)[0] if by_file and not slow else item.nodeid
    return str(mark.args[0] if mark.args else mark.kwargs.get("name", "default"))


def estimated_cost(item: pytest.Item) -> float:
    return SLOW_COST if item.get_closest_marker("slow") is not None else FAST_COST


def longest_units_first(
    items: Sequence[pytest.Item], *, by_file: bool = False
) -> list[pytest.Item]:
    """``items`` with the units of the largest estimated cost first; ties, and the tests of
    one unit, keep their collection order (a document's blocks must run in order)."""
    totals: dict[str, float] = {}
    units = [work_unit(item, by_file=by_file) for item in items]
    for unit, item in zip(units, items, strict=True):
        totals[unit] = totals.get(unit, 0.0) + estimated_cost(item)
    order = sorted(range(len(items)), key=lambda i: -totals[units[i]])
    return [items[i] for i in order]


#: File units need files enough to go round: a run of fewer files than this per worker (one
#: big file, a folder of three) keeps single tests as units, or one worker would run it alone.
MIN_FILES_PER_WORKER = 4


def schedules_by_file(nodeids: Sequence[str], workers: int) -> bool:
    """Whether a run of these tests on ``workers`` workers gets file units."""
    files = {nodeid.split("::", 1)[0] for nodeid in nodeids}
    return len(files) >= MIN_FILES_PER_WORKER * workers


def scope_of(nodeid: str, group_scope: str, slow: Collection[str], by_file: bool) -> str:
    """The controller's unit of a test: its group (``group_scope``, xdist's loadgroup scope:
    the group, or the node id itself for a test in no group); else, ``by_file`` and the test is
    not in ``slow``, its file; else the test."""
    if by_file and group_scope == nodeid and nodeid not in slow:
        return nodeid.split("::", 1)[0]
    return group_scope


def write_slow_ids(folder: str, worker: str, items: Sequence[pytest.Item]) -> None:
    """A worker's part of the hand-over: the node ids of its ungrouped slow tests, in
    ``folder``, written whole (a temporary file renamed) so the controller never reads half."""
    ids = [
        item.nodeid
        for item in items
        if item.get_closest_marker("slow") is not None
        and item.get_closest_marker("xdist_group") is None
    ]
    path = Path(folder, f"slow-{worker}.json")
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(ids), encoding="utf-8")
    os.replace(temporary, path)


def read_slow_ids(folder: str) -> frozenset[str] | None:
    """The slow ids one worker wrote (every worker collects the same tests), or None when
    none has: then the controller keeps single tests as units."""
    for path in sorted(Path(folder).glob("slow-*.json")):
        return frozenset(json.loads(path.read_text(encoding="utf-8")))
    return None


def file_unit_scheduling(config: pytest.Config, log: object, folder: str) -> object:
    """xdist's loadgroup scheduler, with the fast tests that are in no group scheduled by file
    (`scope_of`), when the run has files enough (`schedules_by_file`) and the workers said
    which of their tests are slow (`write_slow_ids` into ``folder``)."""
    from xdist.scheduler import LoadGroupScheduling

    class FileUnitScheduling(LoadGroupScheduling):
        by_file = False  # decided in `schedule`, once every worker has collected
        slow: frozenset[str] = frozenset()

        def schedule(self) -> None:
            if self.collection is None and self.collection_is_completed:
                collected = next(iter(self.registered_collections.values()), [])
                slow = read_slow_ids(folder)
                if slow is not None and schedules_by_file(collected, len(self.nodes)):
                    self.by_file, self.slow = True, slow
            super().schedule()

        def _split_scope(self, nodeid: str) -> str:
            return scope_of(nodeid, super()._split_scope(nodeid), self.slow, self.by_file)

    return FileUnitScheduling(config, log)  # type: ignore[arg-type]
