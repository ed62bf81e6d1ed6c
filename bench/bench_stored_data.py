"""What protecting stored data costs: body modes and an encrypted call log.

    python bench/bench_stored_data.py [--rows N] [--rounds R]

Each round appends the same N realistic rows (a chat request of ~600 characters with an
e-mail address and a card number, an answer of ~400 characters) to a fresh `CallLog` on a
temporary file, flushes and closes it, once per configuration, in interleaved order:

* ``full``: the log as it always was (the baseline);
* ``redacted`` / ``hash`` / ``none``: `BodyPolicy` applied in `CallLog.append`;
* ``encrypted``: DuckDB's encrypted database with its built-in crypto (this machine has no
  httpfs extension, so OpenSSL is not available; see docs/security.md).

Wall time and process CPU time are reported as rows/s and as a ratio to ``full`` measured in
the same round (median over rounds). A last section times the server's authentication of
one request in-process (bearer key from an env var, bearer key from the key file, HMAC-signed
request with a 2 KB body), interleaved; and one times redaction of ~10 KB texts shaped to
make regular expressions backtrack (what a hostile client could send), against ~10 KB of
prose. Exits 0; nothing is enforced.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from aigw_lab.store import CallLog, CallRecord
from aigw_lab.store.encryption import Encryption
from aigw_lab.store.redact import BodyPolicy

_T0 = datetime(2025, 1, 1, tzinfo=UTC)
_PROMPT = (
    "Hello, I am writing about order 1234567890123. Please charge card 4111 1111 1111 1111 "
    "and send the receipt to jane.doe@example.org. "
) * 4
_ANSWER = "Thank you. Your order has been updated and a receipt is on its way. " * 6


def make_rows(n: int) -> list[CallRecord]:
    request = json.dumps(
        {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": _PROMPT}]}
    )
    return [
        CallRecord(
            call_id=f"c{i}",
            trace_id=f"t{i}",
            timestamp=_T0 + timedelta(milliseconds=i),
            provider_name="openai",
            request_model="gpt-4o-mini",
            request_json=request + " " * (i % 3),  # not all identical
            response_text=_ANSWER,
            input_tokens=150,
            output_tokens=100,
            cost_usd=0.0001,
            latency_ms=812.0,
        )
        for i in range(n)
    ]


def run_once(rows: list[CallRecord], folder: Path, name: str, options: dict) -> tuple[float, float]:
    path = folder / f"{name}-{time.monotonic_ns()}.duckdb"
    wall0, cpu0 = time.perf_counter(), time.process_time()
    log = CallLog(path, **options)
    for row in rows:
        log.append(row)
    log.close()
    return time.perf_counter() - wall0, time.process_time() - cpu0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    key = Encryption("bench key " * 4, "AIGW_LOG_KEY", "builtin")
    configs = {
        "full": {},
        "redacted": {"bodies": BodyPolicy("redacted")},
        "hash": {"bodies": BodyPolicy("hash", hash_key=b"k")},
        "none": {"bodies": BodyPolicy("none")},
        "encrypted": {"encryption": key},
    }
    rows = make_rows(args.rows)
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in configs}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for r in range(args.rounds):
            order = list(configs) if r % 2 == 0 else list(reversed(configs))
            for name in order:
                results[name].append(run_once(rows, folder, name, configs[name]))
    base_wall = statistics.median(w for w, _ in results["full"])
    base_cpu = statistics.median(c for _, c in results["full"])
    print(f"stored-data benchmark: {args.rows:,} rows x {args.rounds} rounds, interleaved")
    print(
        f"{datetime.now(UTC):%Y-%m-%d} | {platform.machine()} | {os.cpu_count()} cores | "
        f"Python {sys.version.split()[0]} | {platform.system()}"
    )
    print()
    print("| mode      |  rows/s (wall) | wall vs full | CPU s | CPU vs full |")
    print("|-----------|---------------:|-------------:|------:|------------:|")
    for name, samples in results.items():
        wall = statistics.median(w for w, _ in samples)
        cpu = statistics.median(c for _, c in samples)
        print(
            f"| {name:<9} | {args.rows / wall:>14,.0f} | {wall / base_wall:>11.2f}x "
            f"| {cpu:>5.2f} | {cpu / base_cpu:>10.2f}x |"
        )
    auth_bench(args.rounds)
    hostile_bench(args.rounds)
    return 0


def hostile_bench(rounds: int) -> None:
    """Milliseconds to redact ~10 KB texts built to make patterns backtrack."""
    from aigw_lab.store.redact import Redactor

    redactor = Redactor()
    texts = {
        "prose (baseline)": "Explain how a rainbow forms, in three short paragraphs. " * 180,
        "'+' then 40 digits, x200": ("+" + "1" * 40 + "x ") * 200,
        "'1 ' x5000": "1 " * 5000,
        "'1234 ' x2000": "1234 " * 2000,
        "a x5000 @ 'b.' x2000": "a" * 5000 + "@" + "b." * 2000,
        "'a.' x5000 @": "a." * 5000 + "@",
    }
    timings: dict[str, list[float]] = {name: [] for name in texts}
    for _ in range(rounds):
        for name, text in texts.items():
            start = time.perf_counter()
            redactor.text(text)
            timings[name].append((time.perf_counter() - start) * 1000)
    base = statistics.median(timings["prose (baseline)"])
    print()
    print("| redaction of a hostile text   | chars |     ms | vs prose |")
    print("|-------------------------------|------:|-------:|---------:|")
    for name, samples in timings.items():
        ms = statistics.median(samples)
        print(f"| {name:<29} | {len(texts[name]):>5} | {ms:>6.2f} | {ms / base:>7.1f}x |")


def auth_bench(rounds: int, n: int = 5_000) -> None:
    """Microseconds per `KeyRing.authenticate` call, by kind of credential."""
    from aigw_lab.server import ClientIdentity, KeyRing
    from aigw_lab.server.keyfile import KeyFile
    from aigw_lab.server.signing import sign_request

    body = b"x" * 2048
    with tempfile.TemporaryDirectory() as tmp:
        key_file = KeyFile(Path(tmp) / "keys.json")
        file_secret, _ = key_file.create("filed")
        signed_secret, stored = key_file.create("signed", signing="required")
        env_secret = "env-secret-0123456789abcdef"
        ring = KeyRing({env_secret: ClientIdentity("env")}, key_file=key_file)
        bearer_env = {b"authorization": f"Bearer {env_secret}".encode()}
        bearer_file = {b"authorization": f"Bearer {file_secret}".encode()}

        def signed_headers() -> dict[bytes, bytes]:
            raw = sign_request(signed_secret, "POST", "/v1/chat/completions", body)
            return {k.encode(): v.encode() for k, v in raw.items()}

        pre_signed = [signed_headers() for _ in range(n * rounds)]  # fresh nonce each
        kinds = {
            "bearer, env key": lambda i: ring.authenticate(bearer_env, "POST", "/", body),
            "bearer, key file": lambda i: ring.authenticate(bearer_file, "POST", "/", body),
            "HMAC-signed, 2 KB body": lambda i: ring.authenticate(
                pre_signed[i], "POST", "/v1/chat/completions", body
            ),
        }
        timings: dict[str, list[float]] = {k: [] for k in kinds}
        for r in range(rounds):
            for name, call in kinds.items():
                start = time.perf_counter()
                for i in range(r * n, (r + 1) * n):
                    call(i)
                timings[name].append((time.perf_counter() - start) / n * 1e6)
        print()
        print("| authentication of one request | us (median of rounds) |")
        print("|-------------------------------|----------------------:|")
        for name, samples in timings.items():
            print(f"| {name:<29} | {statistics.median(samples):>21.1f} |")


if __name__ == "__main__":
    sys.exit(main())
