"""`run_experiment` is `arun_experiment` made blocking: the same parameters (stated once), the
same result, from a script (no event loop) and from inside a running loop (a notebook)."""

from __future__ import annotations

import asyncio
import inspect

from aigw_lab.experiments import Experiment, Target, arun_experiment, run_experiment

from .conftest import small_dataset


def _experiment(name: str) -> Experiment:
    return Experiment(name, small_dataset(4), targets=[Target(model="fake/m")])


def test_the_blocking_entry_point_takes_the_async_ones_parameters():
    blocking, awaited = inspect.signature(run_experiment), inspect.signature(arun_experiment)
    assert list(blocking.parameters.values()) == list(awaited.parameters.values())
    assert "output_tokens" in blocking.parameters and "on_progress" in blocking.parameters
    assert run_experiment.__name__ == "run_experiment"
    assert not inspect.iscoroutinefunction(run_experiment)
    assert "notebooks" in (run_experiment.__doc__ or "")


def test_it_passes_every_keyword_on_and_returns_the_result(make_gateway):
    gateway = make_gateway()
    seen = []
    result = run_experiment(
        gateway, _experiment("kw"), progress=False, on_progress=seen.append, resume=False
    )
    assert (result.status, result.completed) == ("completed", 4)
    assert seen and seen[-1].done == 4 and seen[-1].status == "completed"
    again = run_experiment(gateway, _experiment("kw"), progress=False, resume=True)
    assert again.skipped == 4  # resume reached the runner: nothing sent twice


async def test_inside_a_running_loop_it_runs_on_a_helper_thread(make_gateway):
    gateway = make_gateway()
    assert asyncio.get_running_loop() is not None
    result = run_experiment(gateway, _experiment("nb"), progress=False)
    assert (result.status, result.completed) == ("completed", 4)
    awaited = await arun_experiment(gateway, _experiment("nb"), progress=False)
    assert awaited.skipped == 4
