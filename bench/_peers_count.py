"""``bench_peers.py --count-calls``: Python function calls per call on the calling thread,
by where they run. Kept apart so bench_peers.py stays under ~600 lines; ``run_round`` and
``load`` are bench_peers.py's own, passed in."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

#: Where a profiled function lives, by a fragment of its file's path.
_PLACES = (
    ("aigw_lab", "/aigw_lab/"),
    ("httpx stack", ("/httpx/", "/httpcore/", "/h11/", "/anyio/", "/sniffio/")),
    ("litellm", ("/litellm/", "/openai/")),
)


def _place(filename: str) -> str:
    for name, fragments in _PLACES:
        if any(f in filename for f in ((fragments,) if isinstance(fragments, str) else fragments)):
            return name
    return "other"


def count_calls(
    sides: list[Any],
    runner: asyncio.Runner,
    run_round: Callable[..., Any],
    load: Callable[[], str],
    calls: int = 200,
) -> None:
    """Python function calls per call in the calling thread, per side and mode, and where
    they run (aigw_lab's code, the httpx stack, LiteLLM and the openai SDK, the rest): a
    measure of work that machine load does not change (the log's writer thread is not
    included; the asyncio figures vary a little with how many pooled connections sit idle
    when a request arrives)."""
    import cProfile  # lazy: only this option profiles
    import pstats  # lazy: as above

    print(f"\nPython function calls per call, calling thread only ({calls} calls; {load()})")
    modes = ("sync", "async1", "async16", "async64", "stream")
    places = [name for name, _ in _PLACES] + ["other"]  # other: builtins, stdlib, the rest
    print(f"  {'side':<14} {'mode':<8} {'total':>7}" + "".join(f" {p:>12}" for p in places))
    for side in sides:
        if hasattr(side, "remote_round"):
            continue  # another process (--baseline-tree): run --count-calls on that tree
        for mode in modes:
            run_round(side, mode, 20, runner)
            profile = cProfile.Profile()
            profile.enable()
            run_round(side, mode, calls, runner)
            profile.disable()
            stats = pstats.Stats(profile).stats  # type: ignore[attr-defined]
            where = dict.fromkeys(places, 0)
            for (filename, _, _), (_, ncalls, *_) in stats.items():
                where[_place(filename)] += ncalls
            total = sum(where.values())
            print(
                f"  {side.name:<14} {mode:<8} {total / calls:7.0f}"
                + "".join(f" {where[p] / calls:12.0f}" for p in places)
            )
