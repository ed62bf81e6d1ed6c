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

In the fast lane (``-m "not slow"``) a test that is in no group is scheduled with the rest of
its file (`FileUnitScheduling`): xdist otherwise hands out single tests in collection order, so
all four workers ran the same file at once, and a file whose tests wait (timeouts, servers
shutting down, late clients) left the 2-core box idle for seconds at a time while every worker
waited in it; each worker also built that file's module fixtures again. With one file per
worker, a file that waits runs beside files that compute. The full suite keeps single tests as
units: there the slow tests of one file must still spread over the workers.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest

#: The estimated seconds of a test marked slow, and of any other test. Only their ratio matters:
#: the suite's slow tests take 1-40 s each on the 2-core machine, its fast ones mostly
#: milliseconds (docs/performance.md, "The test suite's time").
SLOW_COST = 3.0
FAST_COST = 0.02


def work_unit(item: pytest.Item, *, by_file: bool = False) -> str:
    """The unit xdist's loadgroup schedules ``item`` in: its group, or else the test itself (or,
    ``by_file``, its file: `FileUnitScheduling`)."""
    mark = item.get_closest_marker("xdist_group")
    if mark is None:
        return item.nodeid.split("::", 1)[0] if by_file else item.nodeid
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


def fast_lane(config: pytest.Config) -> bool:
    """Whether this run is the fast lane: exactly ``-m "not slow"``."""
    return (config.option.markexpr or "").strip() == "not slow"


#: File units need files enough to go round: a run of fewer files than this per worker (one
#: big file, a folder of three) keeps single tests as units, or one worker would run it alone.
MIN_FILES_PER_WORKER = 4


def schedules_by_file(nodeids: Sequence[str], workers: int) -> bool:
    """Whether a fast-lane run of these tests on ``workers`` workers gets file units."""
    files = {nodeid.split("::", 1)[0] for nodeid in nodeids}
    return len(files) >= MIN_FILES_PER_WORKER * workers


def file_unit_scheduling(config: pytest.Config, log: object) -> object:
    """xdist's loadgroup scheduler, with a test that is in no group scheduled together with
    the rest of its file (the controller sees only node ids: a group is the ``@name`` xdist
    appends to a grouped test's id), when the run has files enough (`schedules_by_file`)."""
    from xdist.scheduler import LoadGroupScheduling

    class FileUnitScheduling(LoadGroupScheduling):
        by_file = False  # decided in `schedule`, once every worker has collected

        def schedule(self) -> None:
            if self.collection is None and self.collection_is_completed:
                collected = next(iter(self.registered_collections.values()), [])
                self.by_file = schedules_by_file(collected, len(self.nodes))
            super().schedule()

        def _split_scope(self, nodeid: str) -> str:
            scope = super()._split_scope(nodeid)
            if self.by_file and scope == nodeid:
                return nodeid.split("::", 1)[0]
            return scope

    return FileUnitScheduling(config, log)  # type: ignore[arg-type]
