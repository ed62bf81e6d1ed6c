"""The replay matrix from a real DuckDB call log: live and shadow rows as cells, scores joined,
empty cells listed, filled through the simulated fleet's batch API at batch prices after an
estimate, and routers trained and evaluated on it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from aigw_lab import Gateway
from aigw_lab.batch import BATCH_DISCOUNT
from aigw_lab.datasets import Dataset
from aigw_lab.datasets.from_log import conversation_id
from aigw_lab.errors import BudgetExceededError, ConfigError, StoreError
from aigw_lab.experiments import ReplayMatrix, fill, plan_fill
from aigw_lab.gateway.middleware import Middleware
from aigw_lab.scorers.base import Score, Scorer
from aigw_lab.store.scores import write_scores

NANO, LARGE, HAIKU = "sim-openai/sim-nano", "sim-openai/sim-large", "sim-anthropic/sim-haikuish"
WORKERS = "sim-workers/sim-llamaish-70b"


class MarkShadow(Middleware):
    """Stands in for the shadow stage: a request whose metadata names ``shadow_of`` is
    logged as the shadow of that call (the row's ``shadow_of`` column)."""

    kind = "route"

    def handle(self, ctx, call_next):
        ctx.shadow_of = ctx.request.metadata.get("shadow_of")
        return call_next(ctx)


class Parity(Scorer):
    """A reference-free scorer: 1.0 when the answer's length is even."""

    name = "parity"

    def score(self, item, response):
        return Score(self.name, float(len(response.text) % 2 == 0))


class Sees:
    """Records what a scorer was shown (the references it got)."""

    def __init__(self):
        self.references = []


def dataset(n=8):
    return Dataset.from_records(
        "sums",
        [
            {"id": f"q{i}", "prompt": f"What is {i} + {i}?", "reference": str(2 * i)}
            for i in range(n)
        ],
        source="test",
    )


@pytest.fixture
def gateway(tmp_path):
    gw = Gateway.simulated_fleet(
        seed=1, time_scale=0.0, log=tmp_path / "calls.duckdb", middleware=[MarkShadow()]
    )
    yield gw
    gw.close()


def traffic(gw, n=8):
    """Live calls: prompt i to NANO (all) and LARGE (even i); a shadow of every third
    NANO call to HAIKU; an error row and a repeated call."""
    responses = {}
    for i, item in enumerate(dataset(n).items):
        live = gw.chat(NANO, item.prompt)
        responses[(i, NANO)] = live
        if i % 2 == 0:
            responses[(i, LARGE)] = gw.chat(LARGE, item.prompt)
        if i % 3 == 0:
            responses[(i, HAIKU)] = gw.chat(
                HAIKU, item.prompt, metadata={"shadow_of": live.call_id}
            )
    gw.chat(NANO, dataset(n).items[0].prompt)  # a second call of a filled cell
    with pytest.raises(Exception):  # noqa: B017,PT011 - any error row: it must not count
        gw.chat("sim-openai/not-a-model", "What is 0 + 0?")
    gw.log.flush()
    return responses


def test_matrix_from_live_and_shadow_rows(gateway):
    responses = traffic(gateway)
    for (i, _target), response in responses.items():
        write_scores(gateway.log, response.call_id, Score("checked", float(i % 2 == 0)))
    # A second scorer with fewer scores is not the default quality.
    write_scores(gateway.log, responses[(0, NANO)].call_id, Score("other", 0.25))
    matrix = ReplayMatrix.from_log(gateway.log)

    assert matrix.shape == (8, 3)
    assert set(matrix.targets) == {NANO, LARGE, HAIKU}
    assert matrix.scorer == "checked"
    cells = matrix.to_frame().set_index(["prompt_id", "target"])
    first = conversation_id(None, [], "What is 0 + 0?")
    assert cells.loc[(first, NANO), "calls"] == 2
    assert cells.loc[(first, NANO), "sources"] == "live"
    assert cells.loc[(first, HAIKU), "sources"] == "shadow"
    assert cells.loc[(first, HAIKU), "answer"] == responses[(0, HAIKU)].text
    assert cells.loc[(first, LARGE), "cost_usd"] == pytest.approx(responses[(0, LARGE)].cost_usd)
    assert cells.loc[(first, NANO), "score"] == 1.0
    # Scores by every call of the cell are averaged: the repeated call has none.
    assert cells.loc[(first, NANO), "scores"] == 1
    empty = set(matrix.empty_cells())
    expected_empty = {(conversation_id(None, [], f"What is {i} + {i}?"), t)
                      for i in range(8) for t in (LARGE, HAIKU)
                      if (i, t) not in responses}  # fmt: skip
    assert empty == expected_empty
    assert len(empty) == 4 + 5
    # Left out on request, shadow rows leave their cells empty.
    no_shadow = ReplayMatrix.from_log(gateway.log, include_shadow=False, targets=[NANO, HAIKU])
    assert len(no_shadow.empty_cells([HAIKU])) == 8
    assert ReplayMatrix.from_log(gateway.log, scorer="other").wide("score").count().sum() == 1


def test_a_target_never_called_is_a_column_of_empty_cells(gateway):
    traffic(gateway, n=4)
    matrix = ReplayMatrix.from_log(gateway.log, targets=[NANO, WORKERS])
    assert matrix.targets == (NANO, WORKERS)
    assert len(matrix.empty_cells([WORKERS])) == 4
    assert matrix.summary().loc[WORKERS, "filled"] == 0
    assert "4 prompts x 2 targets" in matrix.describe()


def test_reading_from_a_path_or_a_snapshot(gateway, tmp_path):
    traffic(gateway, n=3)
    gateway.close()
    from_path = ReplayMatrix.from_log(tmp_path / "calls.duckdb")
    assert from_path.shape == (3, 3)
    with pytest.raises(StoreError, match="no call log"):
        ReplayMatrix.from_log(tmp_path / "missing.duckdb")


def test_hostile_input_is_a_typed_error(gateway):
    traffic(gateway, n=2)
    with pytest.raises(ConfigError, match="provider/model"):
        ReplayMatrix.from_log(gateway.log, targets=["no-slash"])
    with pytest.raises(ConfigError, match="no score by 'nope'"):
        ReplayMatrix.from_log(gateway.log, scorer="nope")
    matrix = ReplayMatrix.from_log(gateway.log)
    with pytest.raises(ConfigError, match="not a cell value"):
        matrix.wide("prompt_id")
    with pytest.raises(ConfigError, match="no scores"):
        matrix.to_recorded_dataset()
    with pytest.raises(ConfigError, match="cannot read"):
        ReplayMatrix.from_log(42)
    with pytest.raises(ConfigError, match="not a provider/model of this gateway"):
        plan_fill(matrix, gateway, targets=["nowhere/x"])


def test_scoring_unscored_cells_with_references(gateway):
    traffic(gateway, n=6)
    matrix = ReplayMatrix.from_log(gateway.log)
    seen = Sees()

    class Reference(Scorer):
        name = "ref"

        def score(self, item, response):
            seen.references.append(item.reference)
            return Score(self.name, float(str(item.reference) in response.text))

    written = matrix.score(gateway.log, Reference(), references=dataset(6))
    assert written == len(matrix.cells)
    # Each score row carries its call's coordinates, as write_scores copies them.
    linked = gateway.query(
        "SELECT count(*) AS n FROM scores s JOIN calls c USING (call_id) "
        "WHERE s.scorer = 'ref' AND s.trace_id = c.trace_id"
    )
    assert linked["n"][0] == written
    assert set(seen.references) == {str(2 * i) for i in range(6)}
    scored = matrix.reload()
    assert scored.scorer == "ref" and scored.unscored_cells() == []
    # Scoring again writes nothing: every cell has its score.
    assert scored.score(gateway.log, Reference()) == 0
    with pytest.raises(ConfigError, match="quality is 'ref'"):
        scored.score(gateway.log, Parity())


def test_plan_shows_the_cost_before_any_request(gateway):
    traffic(gateway)
    matrix = ReplayMatrix.from_log(gateway.log, targets=[NANO, LARGE, HAIKU, WORKERS])
    rows_before = gateway.query("SELECT count(*) AS n FROM calls")["n"][0]
    plan = plan_fill(matrix, gateway)

    assert gateway.query("SELECT count(*) AS n FROM calls")["n"][0] == rows_before
    parts = {p.target: p for p in plan.parts}
    assert parts[LARGE].via == parts[HAIKU].via == "batch"
    assert parts[WORKERS].via == "none" and "no batch API" in parts[WORKERS].reason
    assert len(parts[LARGE].prompt_ids) == 4 and len(parts[HAIKU].prompt_ids) == 5
    assert plan.cells == 9
    for part in (parts[LARGE], parts[HAIKU]):
        assert part.batch_usd == pytest.approx(part.live_usd * BATCH_DISCOUNT)
        assert part.output_sources["target"] == len(part.prompt_ids)
    assert plan.usd == pytest.approx(parts[LARGE].batch_usd + parts[HAIKU].batch_usd)
    text = plan.describe()
    assert "nothing has been sent" in text and "at batch prices" in text
    assert "left out" in text
    live = plan_fill(matrix, gateway, targets=[WORKERS], live_fallback=True)
    assert live.parts[0].via == "live" and live.usd == live.parts[0].live_usd > 0


def test_fill_at_batch_prices_logs_rows_and_fills_the_cells(gateway):
    traffic(gateway)
    matrix = ReplayMatrix.from_log(gateway.log)
    plan = plan_fill(matrix, gateway)
    sleeps = []
    result = fill(plan, gateway, max_cost_usd=1.0, poll_interval=5.0, sleep=sleeps.append)

    assert result.filled == 9 and result.failed == 0 and result.skipped == ()
    assert len(result.jobs) == 2
    assert result.matrix.empty_cells() == []
    rows = gateway.query(
        "SELECT provider_name || '/' || request_model AS target, cost_usd, input_tokens, "
        "output_tokens, tags_json, simulated FROM calls WHERE tags_json LIKE '%aigw_batch%'"
    )
    assert len(rows) == 9 and rows["simulated"].all()
    assert all(json.loads(t)["aigw_fill"] == "replay-matrix" for t in rows["tags_json"])
    assert result.cost_usd == pytest.approx(rows["cost_usd"].sum())
    # Batch prices: half what the same tokens cost live.
    for row in rows.itertuples():
        provider, model = row.target.split("/")
        price = gateway.provider(provider).price_for(model)
        live = (row.input_tokens * price.input_per_mtok + row.output_tokens
                * price.output_per_mtok) / 1e6  # fmt: skip
        assert row.cost_usd == pytest.approx(live * BATCH_DISCOUNT)
    filled = result.matrix.to_frame().set_index(["prompt_id", "target"])
    assert set(filled["sources"]) >= {"batch", "live", "shadow"}
    batch_cells = filled[filled["sources"] == "batch"]
    assert len(batch_cells) == 9
    assert np.allclose(batch_cells["live_cost_usd"], batch_cells["cost_usd"] / BATCH_DISCOUNT)
    # Same answers as a live call: the fleet is deterministic per (model, prompt).
    prompt = dataset().items[1].prompt
    assert filled.loc[(conversation_id(None, [], prompt), LARGE), "answer"] == (
        gateway.chat(LARGE, prompt).text
    )


def test_fill_refuses_an_estimate_over_budget_and_sends_nothing(gateway):
    traffic(gateway)
    matrix = ReplayMatrix.from_log(gateway.log)
    plan = plan_fill(matrix, gateway)
    before = gateway.query("SELECT count(*) AS n FROM calls")["n"][0]
    with pytest.raises(BudgetExceededError, match="nothing was sent"):
        fill(plan, gateway, max_cost_usd=plan.usd / 2)
    assert gateway.query("SELECT count(*) AS n FROM calls")["n"][0] == before
    with pytest.raises(ConfigError):
        fill(plan, gateway, max_cost_usd=float("nan"))


def test_routers_train_and_evaluate_on_the_filled_matrix(gateway):
    from aigw_lab.embeddings import HashingEmbedder
    from aigw_lab.policy.evaluate.offline import evaluate_router, out_of_fold, recorded_arrays
    from aigw_lab.policy.learned import Decision, train_router

    for item in dataset(24).items:
        gateway.chat(NANO, item.prompt)
    matrix = ReplayMatrix.from_log(gateway.log, targets=[NANO, LARGE])
    fill(plan_fill(matrix, gateway), gateway, max_cost_usd=1.0, sleep=lambda s: None)
    matrix = matrix.reload()
    matrix.score(gateway.log, Parity())
    matrix = matrix.reload()

    rec = matrix.to_recorded_dataset(prices=gateway)
    assert rec.models == (NANO, LARGE) and len(rec) == 24
    # The targets' list prices travel, so a lambda router's cost estimates are not 0.
    assert rec.prices[LARGE] == gateway.prices.price("sim-openai", "sim-large")
    assert matrix.to_recorded_dataset().prices == {}
    quality, cost = matrix.arrays()
    q2, c2 = recorded_arrays(rec, [NANO, LARGE])
    order = [rec.ids.index(i) for i in matrix.complete_prompts()]
    assert np.array_equal(quality, q2[order]) and np.allclose(cost, c2[order])
    embedder = HashingEmbedder(dim=32)
    X = embedder.embed([item.prompt for item in rec.items])
    oof = out_of_fold(rec, "knn", X, folds=3, seed=0, strong=LARGE, weak=NANO)
    assert oof.quality.shape == (24, 2) and not np.isnan(oof.quality).any()
    train, test = rec.split(0.25, seed=0)
    router = train_router(train, "knn", strong=LARGE, weak=NANO, embedder=embedder,
                          embeddings=embedder.embed([i.prompt for i in train.items]))  # fmt: skip
    result = evaluate_router(
        router, test, embeddings=embedder.embed([i.prompt for i in test.items])
    )
    assert result.n == len(test)
    lam = train_router(rec, "knn", decision=Decision("lambda", 1.0), embeddings=X)
    costs = lam.expected_costs([item.prompt for item in rec.items])
    assert (costs[:, 1] > costs[:, 0]).all() and (costs > 0).all()
