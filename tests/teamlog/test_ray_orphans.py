"""A Ray shard's spool housekeeping (`aigw_lab.experiments.ray_worker`): rows a killed shard
left in the spool directory of an index no shard of this run has are sent by the one shard
whose index they map to, before it asks what is done (a call it had in flight as an
``interrupted`` row); other shards leave them alone."""

from __future__ import annotations

import warnings

from aigw_lab.datasets import Dataset
from aigw_lab.experiments import Experiment
from aigw_lab.experiments.ray_worker import ShardJob, WorkerGateway, _Shard
from aigw_lab.store.team_log import TeamLogSink, TeamLogWarning

from .conftest import make_rows, psycopg


def _job(shard: int, shards: int, root) -> ShardJob:
    experiment = Experiment(
        "x", Dataset.from_records("s", [{"id": "i", "prompt": "p"}]), ["sim-openai/sim-small"]
    )
    return ShardJob(shard=shard, experiment=experiment, keys=(), run_id="r", resume=True,
                    gateway=WorkerGateway(), url_env="UNUSED", spool_dir=str(root),
                    shards=shards)  # fmt: skip


def test_orphaned_shard_spools_are_sent_by_exactly_one_shard(team_url, tmp_path):
    root = tmp_path / "spool"
    # A shard 5 of an earlier, wider run died with 7 rows unsent (PostgreSQL unreachable
    # from it): closing while unreachable leaves the rows in its spool, unlocked.
    dead = TeamLogSink("postgresql://x@127.0.0.1:9/none", spool_dir=root / "shard-5",
                       flush_timeout=0.2, retry_interval=0.05)  # fmt: skip
    for row in make_rows(7, prefix="orphan"):
        dead.append(row)
    # ... and one call in flight when it died: its start, with no row.
    dead.start_spool.start(
        ("in-flight", "t", 1767225600.0, "up", "m1", "openai", False, "miss", 1, None, None,
         None, "x", None, None, False, "r", "i", "up/m1", 0, None)
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TeamLogWarning)
        dead.close()
    assert list((root / "shard-5").iterdir())

    def count() -> int:
        with psycopg.connect(team_url) as conn:
            if conn.execute("SELECT to_regclass('calls')").fetchone()[0] is None:
                return 0
            return conn.execute("SELECT count(*) FROM calls").fetchone()[0]

    _Shard(_job(0, 2, root))._send_orphans(team_url, root)  # 5 % 2 == 1: not shard 0's
    assert count() == 0
    _Shard(_job(1, 2, root))._send_orphans(team_url, root)
    assert count() == 8
    with psycopg.connect(team_url) as conn:
        assert conn.execute(
            "SELECT status, item_id FROM calls WHERE call_id = 'in-flight'"
        ).fetchall() == [("interrupted", "i")]
    _Shard(_job(1, 2, root))._send_orphans(team_url, root)  # nothing twice
    assert count() == 8


def test_a_resuming_driver_sends_every_local_shard_spool_before_it_reads_what_is_done(
    team_url, tmp_path
):
    """A killed run's worker may finish a paid call after the kill, leaving its row only in
    its shard's spool; the resumed run deals units anew, so another shard could pay for
    that unit again before the first shard's folder is replayed. The driver sends every
    local shard folder first (`RayExecutor.send_local_leftovers`)."""
    from aigw_lab.experiments.ray_executor import RayExecutor

    root = tmp_path / "spool"
    for shard, prefix in ((0, "zero"), (1, "one")):
        dead = TeamLogSink("postgresql://x@127.0.0.1:9/none", spool_dir=root / f"shard-{shard}",
                           flush_timeout=0.2, retry_interval=0.05)  # fmt: skip
        for row in make_rows(3, prefix=prefix):
            dead.append(row)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", TeamLogWarning)
            dead.close()
    executor = RayExecutor(spool_dir=str(root), url_env="UNUSED")
    executor.send_local_leftovers(team_url)
    with psycopg.connect(team_url) as conn:
        assert conn.execute("SELECT count(*) FROM calls").fetchone()[0] == 6
    executor.send_local_leftovers(team_url)  # nothing twice
    with psycopg.connect(team_url) as conn:
        assert conn.execute("SELECT count(*) FROM calls").fetchone()[0] == 6
