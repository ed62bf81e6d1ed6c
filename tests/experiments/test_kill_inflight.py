"""SIGKILL of an experiment run, then resume: only the calls in flight at the kill are paid
again, and the log says which they were.

The upstream is a loopback OpenAI-format fake in this process that records every request it
receives (the provider's own record of what it billed); each unit's prompt names its item, so
the record says how often each unit was paid. A subprocess runs the experiment with
concurrency 4 and is killed at a random moment; this process resumes it against the same
upstream. A unit paid twice must be one the killed run had in flight: its row in the log is
`interrupted` (outcome unknown), and there are at most `CONCURRENCY` of them.
"""

from __future__ import annotations

import collections
import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from aigw_lab.experiments import run_experiment
from aigw_lab.gateway import Gateway
from aigw_lab.testing.fake_upstream import FakeUpstream

UNITS = 40
CONCURRENCY = 4

SCRIPT = textwrap.dedent(
    """
    import sys
    from aigw_lab.datasets.items import Dataset
    from aigw_lab.experiments import Experiment, run_experiment
    from aigw_lab.gateway import Gateway
    from aigw_lab.providers.base import Price, ProviderSpec

    def gateway(url, db):
        spec = ProviderSpec(name="up", kind="openai", base_url=url + "/v1",
                            api_key_env="UP_KEY", models=("m",))
        return Gateway([spec], log=db, env={"UP_KEY": "sk-test"},
                       prices={"up/m": Price(1.0, 2.0)})

    def experiment(units, concurrency):
        items = [{"id": f"item-{i}", "prompt": f"item-{i}"} for i in range(units)]
        return Experiment("inflight", Dataset.from_records("items", items), ["up/m"],
                          concurrency=concurrency)

    if __name__ == "__main__":
        url, db, units, concurrency = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
        with gateway(url, db) as gw:
            run_experiment(gw, experiment(units, concurrency), progress=False)
    """
)
COMPLETION = {
    "id": "chatcmpl-x",
    "model": "m",
    "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}
    ],
    "usage": {"prompt_tokens": 5, "completion_tokens": 1},
}


def paid_per_item(upstream: FakeUpstream) -> collections.Counter[str]:
    return collections.Counter(
        r.json["messages"][-1]["content"] for r in upstream.requests if r.json is not None
    )


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_resume_after_kill_re_pays_only_the_calls_in_flight(tmp_path, monkeypatch, seed):
    rng = random.Random(seed)
    script = tmp_path / "inflight_run.py"
    script.write_text(SCRIPT)
    db = tmp_path / "run.duckdb"
    with FakeUpstream() as upstream:
        for _ in range(UNITS * 3):
            upstream.reply_json(COMPLETION, delay=rng.uniform(0.01, 0.05))
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
        args = [sys.executable, str(script), upstream.url, str(db), str(UNITS), str(CONCURRENCY)]
        process = subprocess.Popen(args, env=env, stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 60
            threshold = rng.randint(8, UNITS - 12)
            while len(upstream.requests) < threshold and time.monotonic() < deadline:
                assert process.poll() is None, process.stderr.read().decode()  # type: ignore[union-attr]
                time.sleep(0.002)
            time.sleep(rng.uniform(0.0, 0.03))
            process.send_signal(signal.SIGKILL)
            process.wait(10)
        finally:
            if process.poll() is None:
                process.kill()
        assert process.returncode == -signal.SIGKILL
        paid_before = paid_per_item(upstream)
        assert 0 < len(paid_before) < UNITS  # killed mid-run

        monkeypatch.syspath_prepend(str(tmp_path))
        import inflight_run

        with inflight_run.gateway(upstream.url, str(db)) as gateway:
            assert isinstance(gateway, Gateway)
            interrupted = set(
                gateway.query("SELECT item_id FROM calls WHERE status = 'interrupted'").item_id
            )
            result = run_experiment(
                gateway, inflight_run.experiment(UNITS, CONCURRENCY), progress=False
            )
            assert result.status == "completed"
            ok = gateway.query("SELECT item_id, count(*) AS n FROM calls WHERE status = 'ok' "
                               "GROUP BY ALL")  # fmt: skip
        paid = paid_per_item(upstream)

    assert len(ok) == UNITS and (ok.n == 1).all()  # every unit answered, and logged, once
    assert set(paid) == {f"item-{i}" for i in range(UNITS)}
    re_paid = {item for item, n in paid.items() if n > 1}
    assert len(re_paid) <= CONCURRENCY
    # Each unit paid twice was in flight at the kill, and the log knew it.
    assert re_paid <= interrupted
    # The killed run had at most CONCURRENCY calls in flight.
    assert len(interrupted) <= CONCURRENCY
