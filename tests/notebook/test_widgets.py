"""The notebook views, driven from code as a notebook user's clicks would drive them: filters
are set, and what the view shows (its summary, figures, tables) must change accordingly."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from types import MappingProxyType

import pytest

pytest.importorskip("ipywidgets")
pytest.importorskip("plotly")

from aigw_lab import Gateway  # noqa: E402
from aigw_lab.analysis import target_summary  # noqa: E402
from aigw_lab.datasets import bundled_dataset  # noqa: E402
from aigw_lab.experiments import Experiment, Target, run_experiment  # noqa: E402
from aigw_lab.experiments.progress import ProgressSnapshot, TargetProgress  # noqa: E402
from aigw_lab.notebook import (  # noqa: E402
    ComparisonDashboard,
    ExperimentProgressView,
    LogExplorer,
)
from aigw_lab.scorers import AutoScorer  # noqa: E402

TARGETS = ("sim-openai/sim-nano", "sim-openai/sim-large", "sim-workers/sim-llamaish-70b")


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A log with two experiments run through the simulated fleet (no simulated waiting):
    "main" (three targets, bundled items of several categories, a tag on one target) and
    "other" (one target)."""
    path = tmp_path_factory.mktemp("widgets") / "calls.duckdb"
    gateway = Gateway.simulated_fleet(seed=0, time_scale=0.0, log=path)
    dataset = bundled_dataset().sample(24, seed=3)
    main = Experiment(
        "main",
        dataset,
        [
            Target(name=TARGETS[0], model=TARGETS[0], params={"tags": {"tier": "cheap"}}),
            Target(model=TARGETS[1]),
            Target(model=TARGETS[2]),
        ],
        scorers=[AutoScorer()],
        params={"tags": {"suite": "widgets"}},
    )
    other = Experiment("other", dataset.head(5), [Target(model="sim-openai/sim-small")])
    run_experiment(gateway, main, progress=False)
    run_experiment(gateway, other, progress=False)
    yield {
        "gateway": gateway,
        "log": gateway.log,
        "path": path,
        "main": main,
        "other": other,
        "dataset": dataset,
    }
    gateway.close()


def category_counts(dataset) -> dict[str, int]:
    counts: dict[str, int] = {}
    for item in dataset.items:
        counts[item.category] = counts.get(item.category, 0) + 1
    return counts


def figure_targets(figure) -> set[str]:
    return {trace.meta["target"] for trace in figure.data if trace.meta}


# --- ComparisonDashboard -------------------------------------------------------------------


def test_dashboard_shows_the_chosen_experiment(lab: dict) -> None:
    dashboard = ComparisonDashboard(lab["log"], experiment_id=lab["main"].id)
    assert dashboard.shown_targets == sorted(TARGETS)
    assert set(dashboard.summary["units"]) == {len(lab["dataset"].items)}
    expected = target_summary(lab["log"], experiment_id=lab["main"].id, n_boot=500)
    assert dashboard.summary["quality_mean"].tolist() == expected["quality_mean"].tolist()
    assert set(dashboard.figures) == {"quality_vs_cost", "cost", "latency", "errors"}
    assert figure_targets(dashboard.figures["quality_vs_cost"]) == set(TARGETS)
    assert "sim-openai/sim-large" in dashboard.table.value


def test_dashboard_target_filter_redraws(lab: dict) -> None:
    dashboard = ComparisonDashboard(lab["log"], experiment_id=lab["main"].id)
    dashboard.targets.value = (TARGETS[0], TARGETS[2])
    assert dashboard.shown_targets == sorted((TARGETS[0], TARGETS[2]))
    assert figure_targets(dashboard.figures["quality_vs_cost"]) == {TARGETS[0], TARGETS[2]}
    assert set(dashboard.figures["cost"].data[0].x) == {TARGETS[0], TARGETS[2]}
    assert set(dashboard.units["target"]) == {TARGETS[0], TARGETS[2]}
    assert "sim-openai/sim-large" not in dashboard.table.value
    dashboard.targets.value = ()
    assert dashboard.shown_targets == sorted(TARGETS)


def test_dashboard_category_filter_requeries(lab: dict) -> None:
    dashboard = ComparisonDashboard(lab["log"], experiment_id=lab["main"].id)
    counts = category_counts(lab["dataset"])
    offered = [value for _, value in dashboard.category.options if value is not None]
    assert offered == sorted(counts)
    category = max(counts, key=counts.get)
    dashboard.category.value = category
    assert set(dashboard.summary["units"]) == {counts[category]}
    assert len(dashboard.units) == counts[category] * len(TARGETS)
    dashboard.category.value = None
    assert set(dashboard.summary["units"]) == {len(lab["dataset"].items)}


def test_dashboard_tag_filter(lab: dict) -> None:
    dashboard = ComparisonDashboard(lab["log"], experiment_id=lab["main"].id)
    assert set(dashboard.tags.options) == {"suite=widgets", "tier=cheap"}
    dashboard.tags.value = ("tier=cheap",)
    assert dashboard.shown_targets == [TARGETS[0]]
    dashboard.tags.value = ("suite=widgets",)
    assert dashboard.shown_targets == sorted(TARGETS)


def test_dashboard_experiment_switch_reloads_the_filters(lab: dict) -> None:
    dashboard = ComparisonDashboard(lab["path"])  # a log file's path works too
    assert dashboard.experiment.value == lab["other"].id  # the latest experiment
    assert dashboard.shown_targets == ["sim-openai/sim-small"]
    dashboard.targets.value = ("sim-openai/sim-small",)
    dashboard.experiment.value = lab["main"].id
    assert dashboard.targets.value == ()
    assert list(dashboard.targets.options) == sorted(TARGETS)
    assert dashboard.shown_targets == sorted(TARGETS)
    dashboard.experiment.value = None  # all calls
    assert set(dashboard.shown_targets) == {*TARGETS, "sim-openai/sim-small"}


def test_dashboard_over_calls_outside_experiments() -> None:
    gateway = Gateway.simulated_fleet(seed=0, time_scale=0.0)
    try:
        gateway.chat("sim-openai/sim-nano", "hi", tags={"team": "a"})
        gateway.chat("sim-openai/sim-small", "hi", tags={"team": "b"})
        dashboard = ComparisonDashboard(gateway.log)
        assert dashboard.experiment.value is None  # no experiment: all calls
        assert dashboard.shown_targets == ["sim-openai/sim-nano", "sim-openai/sim-small"]
        dashboard.tags.value = ("team=b",)
        assert dashboard.shown_targets == ["sim-openai/sim-small"]
        dashboard.tags.value = ("team=a", "team=b")  # no call has both
        assert dashboard.shown_targets == []
        assert "No calls match" in dashboard.table.value
    finally:
        gateway.close()


def test_dashboard_shows_a_failed_query_instead_of_raising_into_the_void(
    lab: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    import aigw_lab.analysis
    from aigw_lab.errors import StoreError

    dashboard = ComparisonDashboard(lab["log"], experiment_id=lab["main"].id)

    def broken(*args: object, **kwargs: object) -> None:
        raise StoreError("query on the call log failed: disk on fire")

    monkeypatch.setattr(aigw_lab.analysis, "target_summary", broken)
    dashboard.targets.value = (TARGETS[0],)  # a widget event: reported, not raised
    assert "disk on fire" in dashboard.status.value
    with pytest.raises(StoreError):  # a direct call raises as usual
        dashboard.refresh()


def test_dashboard_rejects_an_unknown_experiment(lab: dict) -> None:
    with pytest.raises(ValueError, match="no experiment 'nope'"):
        ComparisonDashboard(lab["log"], experiment_id="nope")


def pane_figure_json(pane_widget) -> dict:
    """The plotly figure JSON an Output pane holds (exactly one display_data output)."""
    (output,) = pane_widget.outputs
    assert output["output_type"] == "display_data"
    return output["data"]["application/vnd.plotly.v1+json"]


def test_dashboard_panes_hold_the_shown_figure_as_plotly_json(lab: dict) -> None:
    import ipywidgets

    dashboard = ComparisonDashboard(lab["log"], experiment_id=lab["main"].id)
    assert all(isinstance(p.widget, ipywidgets.Output) for p in dashboard._panes.values())
    dashboard.targets.value = (TARGETS[1],)
    shown = pane_figure_json(dashboard._panes["quality_vs_cost"].widget)
    # What the browser gets is the figure the view holds, redrawn for the new filter.
    assert {t["meta"]["target"] for t in shown["data"] if t.get("meta")} == {TARGETS[1]}
    assert figure_targets(dashboard.figures["quality_vs_cost"]) == {TARGETS[1]}


def saved_widget_state_bytes(widget) -> int:
    """How many bytes ``widget`` and the widgets it holds add to a notebook saved with its
    widget state (what JupyterLab's "save widget state" and nbclient write)."""
    import json

    from ipywidgets.embed import dependency_state

    return len(json.dumps(dependency_state(widget, drop_defaults=False)))


def test_dashboard_saved_state_stays_small(lab: dict) -> None:
    # Fails on FigureWidget panes: each carried plotly.js (~5 MB) in its widget state.
    dashboard = ComparisonDashboard(lab["log"], experiment_id=lab["main"].id)
    for chosen in ((TARGETS[0],), (TARGETS[1], TARGETS[2]), ()):
        dashboard.targets.value = chosen
    assert saved_widget_state_bytes(dashboard.widget) < 300_000


def test_dashboard_redraws_leave_no_widgets_behind(lab: dict) -> None:
    # Fails when each redraw builds a new widget without closing the last: a kernel (and a
    # notebook saved with widget state) kept every figure ever drawn.
    from ipywidgets.widgets.widget import _instances

    dashboard = ComparisonDashboard(lab["log"], experiment_id=lab["main"].id)
    before = len(_instances)
    for chosen in ((TARGETS[0],), (TARGETS[1],), (TARGETS[2],), ()):
        dashboard.targets.value = chosen
    assert len(_instances) == before


def test_dashboard_is_displayable(lab: dict) -> None:
    dashboard = ComparisonDashboard(lab["log"], experiment_id=lab["main"].id)
    bundle = dashboard._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle


# --- ExperimentProgressView ----------------------------------------------------------------


def snapshot(done: int, *, errors: int = 0, status: str = "running") -> ProgressSnapshot:
    per_target = MappingProxyType(
        {
            "a": TargetProgress(done=done, total=10, errors=errors, cost_usd=0.001 * done),
            "b": TargetProgress(done=0, total=10, errors=0, cost_usd=0.0),
        }
    )
    return ProgressSnapshot(
        experiment_id="e",
        run_id="r",
        done=done,
        total=20,
        skipped=0,
        errors=errors,
        cost_usd=0.001 * done,
        elapsed_s=1.5,
        per_target=per_target,
        status=status,
    )


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_progress_view_reflects_snapshots() -> None:
    view = ExperimentProgressView(min_interval=0.0)
    view.update(snapshot(5, errors=1))
    assert view.bar.value == pytest.approx(0.25)
    assert "5/20" in view.headline.value and "<b>1</b> errors" in view.headline.value
    assert "$0.0050" in view.headline.value
    assert "<td>a</td><td>5</td><td>10</td><td>1</td>" in view.table.value
    view.update(snapshot(20, status="completed"))
    assert view.bar.value == 1.0 and view.bar.bar_style == "success"
    assert "completed" in view.headline.value


def test_progress_view_throttles_but_always_draws_the_end() -> None:
    clock = FakeClock()
    view = ExperimentProgressView(min_interval=1.0, clock=clock)
    view.update(snapshot(1))
    view.update(snapshot(2))  # too soon: kept, not drawn
    assert view.draws == 1 and view.snapshot.done == 2 and "1/20" in view.headline.value
    clock.now = 1.5
    view.update(snapshot(3))
    assert view.draws == 2 and "3/20" in view.headline.value
    view.update(snapshot(4, status="failed"))  # final: drawn even though it is soon
    assert view.draws == 3 and view.bar.bar_style == "danger"
    view.update(snapshot(5))
    view.flush()
    assert "5/20" in view.headline.value


def test_progress_view_takes_updates_from_several_threads() -> None:
    view = ExperimentProgressView(min_interval=0.0)
    threads = [
        threading.Thread(target=lambda: [view.update(snapshot(i % 20)) for i in range(50)])
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert view.draws == 200


def test_progress_view_as_the_runners_callback(tmp_path) -> None:
    gateway = Gateway.simulated_fleet(seed=0, time_scale=0.0, log=tmp_path / "run.duckdb")
    experiment = Experiment(
        "progress", bundled_dataset().head(6), [Target(model=t) for t in TARGETS[:2]]
    )
    view = ExperimentProgressView(min_interval=0.0)
    try:
        run_experiment(gateway, experiment, progress=False, on_progress=view.update)
    finally:
        gateway.close()
    assert view.snapshot.status == "completed"
    assert view.snapshot.done == view.snapshot.total == 12
    assert view.bar.value == 1.0
    assert all(f"<td>{t}</td><td>6</td><td>6</td>" in view.table.value for t in TARGETS[:2])


# --- LogExplorer ---------------------------------------------------------------------------


@pytest.fixture
def chats() -> Gateway:
    gateway = Gateway.simulated_fleet(seed=0, time_scale=0.0)
    gateway.chat("sim-openai/sim-nano", "Why is the sky blue over Lisbon?")
    gateway.chat(
        "sim-anthropic/sim-haikuish",
        [{"role": "user", "content": "Name a 100% cotton fabric"}],
        system="Answer briefly.",
    )
    gateway.chat("sim-openai/sim-small", "Tell me about tides")
    yield gateway
    gateway.close()


def test_explorer_finds_a_call_by_a_word_of_its_prompt(chats: Gateway) -> None:
    explorer = LogExplorer(chats.log)
    assert len(explorer.results) == 3
    explorer.search.value = "lisbon"
    assert explorer.results["prompt"].tolist() == ["Why is the sky blue over Lisbon?"]
    assert explorer.results["model"].tolist() == ["sim-openai/sim-nano"]
    assert len(explorer.calls.options) == 1
    explorer.search.value = "sky tides"  # every word must appear
    assert explorer.results.empty
    assert "No call matches" in explorer.table.value


def test_explorer_search_takes_like_wildcards_literally(chats: Gateway) -> None:
    explorer = LogExplorer(chats.log)
    explorer.search.value = "100%"
    assert explorer.results["model"].tolist() == ["sim-anthropic/sim-haikuish"]
    explorer.search.value = "1_0"
    assert explorer.results.empty


def test_explorer_shows_one_call(chats: Gateway) -> None:
    explorer = LogExplorer(chats.log)
    explorer.search.value = "cotton"
    call_id = explorer.results["call_id"].iloc[0]
    explorer.calls.value = call_id  # what clicking the row does
    assert explorer.selected["call_id"] == call_id
    messages = explorer.messages()
    assert messages[-1] == {"role": "user", "content": "Name a 100% cotton fabric"}
    assert [m["role"] for m in messages] == ["system", "user"]
    assert "Answer briefly." in explorer.detail.value
    assert "100% cotton" in explorer.detail.value
    response = explorer.selected["response_text"]
    assert response and response[:20] in explorer.detail.value
    with pytest.raises(KeyError):
        explorer.select("no-such-call")


def test_explorer_filters(chats: Gateway) -> None:
    explorer = LogExplorer(chats.log)
    models = [value for _, value in explorer.model.options if value]
    assert models == sorted(
        ["sim-openai/sim-nano", "sim-anthropic/sim-haikuish", "sim-openai/sim-small"]
    )
    explorer.model.value = "sim-openai/sim-small"
    assert explorer.results["prompt"].tolist() == ["Tell me about tides"]
    explorer.model.value = None
    explorer.status.value = "ok"
    assert len(explorer.results) == 3
    explorer.since.value = datetime.now(UTC) + timedelta(hours=1)
    assert explorer.results.empty
    explorer.since.value = None
    explorer.until.value = datetime.now(UTC) + timedelta(hours=1)
    assert len(explorer.results) == 3


def test_explorer_filters_by_experiment(lab: dict) -> None:
    explorer = LogExplorer(lab["log"])
    assert {v for _, v in explorer.experiment.options} == {None, lab["main"].id, lab["other"].id}
    explorer.experiment.value = lab["other"].id
    assert len(explorer.results) == 5
    assert set(explorer.results["experiment_id"]) == {lab["other"].id}
    assert explorer.results["simulated"].all()


def test_views_keep_answering_after_their_gateway_is_closed(tmp_path) -> None:
    # A notebook's last cell closes its gateway; the views above it must still filter.
    # Fails when the views query the closed CallLog ("call log ... is closed").
    gateway = Gateway.simulated_fleet(seed=0, time_scale=0.0, log=tmp_path / "calls.duckdb")
    experiment = Experiment(
        "closing",
        bundled_dataset().sample(12, seed=1),
        [Target(model=TARGETS[0]), Target(model=TARGETS[1])],
        scorers=[AutoScorer()],
    )
    run_experiment(gateway, experiment, progress=False)
    dashboard = ComparisonDashboard(gateway.log, experiment_id=experiment.id)
    explorer = LogExplorer(gateway.log)
    gateway.close()

    dashboard.targets.value = (TARGETS[1],)
    assert "Could not" not in dashboard.status.value
    assert dashboard.shown_targets == [TARGETS[1]]
    dashboard.category.value = dashboard.category.options[1][1]  # the in-memory copy path
    assert "Could not" not in dashboard.status.value
    assert dashboard.shown_targets == [TARGETS[1]]
    explorer.status.value = "ok"
    assert len(explorer.results) == 24
    assert explorer.select(explorer.results["call_id"].iloc[0])["status"] == "ok"
