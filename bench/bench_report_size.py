"""How big is an experiment's HTML report, and what is it made of?

    python bench/bench_report_size.py [--items 40] [--big-items 10000] [--repeat 3]
                                      [--scale-rows 0]

1. Runs examples/experiment.toml (four simulated targets) on ``--items`` items of the
   bundled dataset (sample, seed 0) through the simulated fleet into a temporary log, and
   writes its report.
2. Builds a log of ``--big-items`` items x 4 targets whose prompts and answers are 3,000
   characters each (a long-text experiment the item browser must cap), and writes its
   report.
3. With ``--scale-rows N``: a log of about N call rows made by bench_analysis_scale.py's
   builder (20,000 items x 4 targets, repetitions to fill it, retries, failures, cache
   hits), and its report.

For each it prints the file's size and its parts (plotly.js as embedded, the item browser's
JSON, the figures' JSON, the rest), beside the baseline measured in the same run: the full
plotly.js bundle the report used to inline as text (what made the old files 4.9 MB). Time
to write the report (wall and CPU, best of ``--repeat``, interleaved with the baseline of
``target_summary`` alone on the same log) is printed as a ratio: a shared 2-core machine
makes absolute times noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from aigw_lab.analysis import target_summary
from aigw_lab.report import write_report

ROOT = Path(__file__).resolve().parents[1]


def run_example(directory: Path, items: int) -> Path:
    """examples/experiment.toml on ``items`` bundled items, logged to a file here."""
    from aigw_lab.experiments import parse_spec, run_experiment

    try:
        import tomllib
    except ModuleNotFoundError:  # pragma: no cover - Python < 3.11
        sys.exit("needs Python 3.11+")
    data = tomllib.loads((ROOT / "examples" / "experiment.toml").read_text(encoding="utf-8"))
    data["experiment"]["sample"] = items
    data["experiment"].pop("budget_usd", None)
    data["gateway"] = {"simulated": {"time_scale": 0.01}}
    spec = parse_spec(data, base_dir=directory, source="examples/experiment.toml")
    db = directory / "example.duckdb"
    gateway = spec.build_gateway(db=db)
    try:
        run_experiment(gateway, spec.build(gateway), progress=False)
    finally:
        gateway.close()
    return db


def long_text_log(directory: Path, items: int) -> Path:
    """``items`` x 4 targets, one ok call each, 3,000-character prompts and answers."""
    from aigw_lab.store import CallLog, CallRecord

    start = datetime(2026, 5, 1, tzinfo=UTC)
    targets = ("a", "b", "c", "d")
    records, scores = [], []
    for i in range(items):
        for t, target in enumerate(targets):
            coords = {"run_id": "r", "item_id": f"i{i}", "target": target, "repetition": 0,
                      "category": f"cat{i % 7}"}  # fmt: skip
            records.append(
                CallRecord(
                    call_id=f"c{i}-{t}", trace_id=f"t{i}-{t}",
                    timestamp=start + timedelta(milliseconds=10 * i),
                    provider_name="sim-openai", request_model="sim-nano",
                    request_json=json.dumps(
                        {"messages": [{"role": "user", "content": f"prompt {i} " + "y" * 3000}]}
                    ),
                    response_text=f"answer {i} " + "x" * 3000,
                    cost_usd=0.00005 * (t + 1), latency_ms=100.0 + t, experiment_id="big",
                    metadata_json=json.dumps({"aigw_experiment": coords}), simulated=True,
                    run_id="r", item_id=f"i{i}", target=target, repetition=0,
                )
            )  # fmt: skip
            scores.append(
                {"score_id": f"s{i}-{t}", "call_id": f"c{i}-{t}", "experiment_id": "big",
                 "scorer": "exact", "kind": "scorer", "value": float((i + t) % 2)}
            )  # fmt: skip
    db = directory / "big.duckdb"
    with CallLog(db) as log:
        log.append_many(records)
        log.flush()
        log.insert("scores", scores)
    return db


def parts(page: str) -> dict[str, int]:
    """Bytes of the page's parts (UTF-8)."""
    size = {"total": len(page.encode("utf-8"))}

    def block(pattern: str) -> int:
        return sum(len(m.encode("utf-8")) for m in re.findall(pattern, page, flags=re.S))

    plotly = r'<script type="text/plain" id="plotly-js">'
    data = r'<script type="application/json" id='
    size["plotly.js (gzip+base64)"] = block(plotly + r".*?</script>")
    size["item browser JSON"] = block(data + r'"items-data">.*?</script>')
    size["figures JSON"] = block(data + r'"chart-[^"]*">.*?</script>')
    size["rest (tables, script, style)"] = size["total"] - sum(list(size.values())[1:])
    return size


def timed(function) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    function()
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=40)
    parser.add_argument("--big-items", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--scale-rows", type=int, default=0)
    args = parser.parse_args()
    from plotly.offline import get_plotlyjs

    baseline = len(get_plotlyjs().encode("utf-8"))
    print(f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.machine()}, {os.cpu_count()} CPUs")
    print(f"baseline: the full plotly.js the report used to inline: {baseline:,} bytes\n")
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        logs = {
            f"example, 4 targets x {args.items} bundled items": run_example(directory, args.items),
            f"long texts, 4 targets x {args.big_items:,} items": long_text_log(
                directory, args.big_items
            ),
        }
        if args.scale_rows:
            sys.path.insert(0, str(Path(__file__).resolve().parent))
            from bench_analysis_scale import build_log

            db = directory / "scale.duckdb"
            built = build_log(db, rows=args.scale_rows, items=20_000, targets=4, seed=0)
            logs[f"scale, {built['rows']:,} call rows, {built['units']:,} units"] = db
        for label, db in logs.items():
            out = directory / "report.html"
            report, summary = [], []
            for _ in range(args.repeat):  # interleaved: the same load for both
                report.append(timed(lambda db=db, out=out: write_report(db, out)))
                summary.append(timed(lambda db=db: target_summary(db)))
            size = parts(out.read_text(encoding="utf-8"))
            print(label)
            for name, value in size.items():
                print(f"  {name:32s} {value:>12,} bytes  {value / 1e6:6.2f} MB")
            print(f"  total / old inlined plotly.js  {size['total'] / baseline:12.2f}x")
            best_report = min(report)
            best_summary = min(summary)
            print(
                f"  write_report: {best_report[0]:.2f} s wall, {best_report[1]:.2f} s CPU; "
                f"{best_report[0] / best_summary[0]:.1f}x the wall time of target_summary "
                f"alone ({best_summary[0]:.2f} s)\n"
            )


if __name__ == "__main__":
    main()
