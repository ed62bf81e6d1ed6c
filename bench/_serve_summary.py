"""The summary bench/bench_serve_workers.py prints: per target medians over rounds, the
ratios between fronts and GC settings, and the verdicts against issue 14 §3's targets."""

from __future__ import annotations

import os
import statistics

from _litellm_proxy import _litellm_ratios


def _per(runs: list[dict], key: str) -> float:
    """Median over rounds of ``key`` in microseconds per request."""
    return statistics.median(1e6 * r[key] / r["requests"] for r in runs)


def _summary(results: dict[str, list[dict]], *, ratios: bool = True) -> None:
    direct = results["fake direct"]
    print(f"\nmedian over rounds [min-max]; loadavg {os.getloadavg()}")
    for name, runs in results.items():
        rps = [r["rps"] for r in runs]
        p99 = [r["p99_ms"] for r in runs]
        share = [r["rps"] / d["rps"] for r, d in zip(runs, direct, strict=True)]
        print(f"  {name:26} {statistics.median(rps):7.0f} req/s [{min(rps):.0f}-{max(rps):.0f}]  "
              f"p50 {statistics.median(r['p50_ms'] for r in runs):6.1f} ms  "
              f"p99 {statistics.median(p99):6.1f} ms [{min(p99):.1f}-{max(p99):.1f}]  "
              f"{100 * statistics.median(share):5.1f}% of direct  "
              f"target cpu {_per(runs, 'server_cpu_s'):5.0f} us/req  "
              f"client cpu {_per(runs, 'client_cpu_s'):4.0f} us/req")  # fmt: skip
    _front_ratios(results)
    _gc_ratios(results)
    if not ratios:
        return
    if "serve N=1 log off" in results and "serve N=2 log off" in results:
        n1 = [r["rps"] for r in results["serve N=1 log off"]]
        n2 = [r["rps"] for r in results["serve N=2 log off"]]
        ratios = [round(b / a, 2) for a, b in zip(n1, n2, strict=True)]
        print(f"  N=2 / N=1 (log off), per round: {ratios}")
    _litellm_ratios(results)
    print("  issue 14 §3 targets (logging on, 2 cores): >= 1500 req/s at 64 clients, "
          "p99 < 100 ms, >= 40% of direct (medians over rounds):")  # fmt: skip
    for name, runs in results.items():
        if not any(word in name for word in ("log on", "log lean", "team")):
            continue
        rps = statistics.median(r["rps"] for r in runs)
        p99 = statistics.median(r["p99_ms"] for r in runs)
        share = statistics.median(r["rps"] / d["rps"] for r, d in zip(runs, direct, strict=True))
        verdict = [
            f"{rps:.0f} req/s {'met' if rps >= 1500 else 'NOT met'}",
            f"p99 {p99:.0f} ms {'met' if p99 < 100 else 'NOT met'}",
            f"{100 * share:.1f}% of direct {'met' if share >= 0.4 else 'NOT met'}",
        ]
        print(f"    {name:26} " + "; ".join(verdict))


def _front_ratios(results: dict[str, list[dict]]) -> None:
    """For targets run on several fronts (--fronts), each front against the first one, per
    round: req/s and the target's CPU per request."""
    groups: dict[str, list[str]] = {}
    for name in results:
        base, _, front = name.rpartition(" ")
        if base.startswith("serve") and " lean" in base:
            groups.setdefault(base, []).append(name)
    for names in groups.values():
        first = results[names[0]]
        for name in names[1:]:
            runs = results[name]
            rps = [round(r["rps"] / f["rps"], 2) for r, f in zip(runs, first, strict=True)]
            cpu = [round(r["server_cpu_s"] * f["requests"] / (f["server_cpu_s"] * r["requests"]), 2)
                   for r, f in zip(runs, first, strict=True)]  # fmt: skip
            print(f"  {name} / {names[0].rpartition(' ')[2]}, per round: req/s x{rps}, "
                  f"target cpu/req x{cpu}")  # fmt: skip


def _gc_ratios(results: dict[str, list[dict]]) -> None:
    """For targets run with and without serve's gc.freeze (--gc-compare), frozen over not
    frozen, per round: req/s, p99 and the target's CPU per request."""
    for name, off in results.items():
        on = results.get(name.removesuffix(" nogc")) if name.endswith(" nogc") else None
        if on is None:
            continue
        pairs = list(zip(on, off, strict=True))
        rps = [round(a["rps"] / b["rps"], 2) for a, b in pairs]
        p99 = [round(a["p99_ms"] / b["p99_ms"], 2) for a, b in pairs]
        cpu = [round(a["server_cpu_s"] * b["requests"] / (b["server_cpu_s"] * a["requests"]), 2)
               for a, b in pairs]  # fmt: skip
        print(f"  {name.removesuffix(' nogc')} frozen / nogc, per round: req/s x{rps}, "
              f"p99 x{p99}, target cpu/req x{cpu}")  # fmt: skip
