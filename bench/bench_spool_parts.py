"""Where the call log spool's cost per gateway call goes, and what the encoders tried cost.

    python bench/bench_spool_parts.py [--calls N] [--rounds R] [--warmup N] [--sides A,B,...]
                                      [--encoder-loops N] [--skip-gateway] [--labels-calls N]
                                      [--quick]

Three parts, each measured in one run against a baseline of the same run:

* **in the gateway**: the gateway of bench_gateway_overhead.py with a file log per side, as in
  bench_spool.py (flat out, sides taking turns call by call in a new random order every turn,
  median calling-thread CPU per call from ``time.thread_time``, mean process CPU per call
  including each side's flushes). ``none`` is the log without a spool, run twice (the second
  copy is the noise floor); ``os`` is the spool as shipped; every other side is ``os`` with its
  spool's frame writers replaced by a variant that leaves one part out or does it another way:

  - ``no-op frames``: start/end do nothing (left: the gateway's start tuple, the log's lock);
  - ``no timestamp``: the end's datetime not converted to seconds (a constant instead);
  - ``no marshal``: constant payloads of the usual sizes instead of encoding the values;
  - ``no copy``: nothing copied into the mapping (no payload, no header);
  - ``no checksum``: a constant instead of the Adler-32 of the payload;
  - ``joined end``: the end frame reuses the start's payload, already encoded, and encodes
    only the row's other columns (no timestamp conversion either), when the row's start
    fields equal the start's; the design of a frame kind that was tried and not kept;
  - ``bare``: only the encoding and the copies (no timestamp conversion, no checksum, no
    lock or record of the calls in flight on the start): what giving those up would buy;
  - ``tmpfs``: the shipped spool with its segments in /dev/shm (no disk write-back of the
    mapped pages);
  - ``os (bench copy)``: this script's copy of the shipped writers with nothing changed, the
    baseline of the three sides below (the copy has one more Python call level per frame);
  - ``orjson frames``: orjson's JSON arrays instead of marshal (when orjson is installed);
  - ``one copy``: header and payload joined, then copied into the mapping at once;
  - ``stamp from start``: the end's timestamp in seconds taken from its start's values
    instead of converted from the row's datetime.

  The variants that leave something out are not crash-safe; they only show what that part
  costs. Numbers are µs added per call against ``none``.
* **labels**: ``ChatRequest.create`` with experiment-like tags and metadata plus ``chat``, on a
  gateway with a spool, the labels encoded once per request (shipped) against the previous
  way (encoded again for the start frame and for the row), taking turns call by call.
* **encoders alone**: one end frame's row (and one start's values) encoded by marshal and by
  the pure-Python encoders tried instead, timed hot (in a loop) and cold (an 8 MiB sweep
  between calls pushes the code and data out of the CPU caches, as a gateway call's other
  work does). Median µs per encode.
"""

from __future__ import annotations

import argparse
import marshal
import operator
import os
import platform
import random
import shutil
import statistics
import struct
import sys
import tempfile
import time
import types
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from bench_gateway_overhead import MESSAGES, MODEL, make_gateway  # noqa: E402

from aigw_lab.store import CallLog, CallRecord  # noqa: E402
from aigw_lab.store import spool as spool_module  # noqa: E402
from aigw_lab.store.records import CALL_COLUMNS  # noqa: E402
from aigw_lab.store.spool import START_FIELDS, Spool  # noqa: E402

_HEADER_SIZE = spool_module._HEADER_SIZE
_pack_header = spool_module._pack_header


def variant(
    *,
    timestamp: bool = True,
    encode: bool = True,
    copy: bool = True,
    checksum: bool = True,
    joined: bool = False,
    locked: bool = True,
    json: bool = False,
    one_copy: bool = False,
    stamp_from_start: bool = False,
):
    """Frame writers like `Spool.start`/`Spool.write_end`, with one part left out or changed
    (the fast path only: a frame that does not fit goes through the spool's own slow path).
    ``json``: orjson's JSON arrays instead of marshal (the frame kinds a reader would need are
    not written: a measurement only); ``one_copy``: header and payload joined, then copied in
    one slice assignment; ``stamp_from_start``: the end takes its timestamp in seconds from
    its start's values (a dict of them per call) instead of converting the row's datetime."""
    start_payload, end_payload = b"s" * 151, b"e" * 545
    dumps, adler = marshal.dumps, spool_module._checksum
    pack_header = spool_module._HEADER.pack
    if json:
        import orjson  # bench only: the spool itself has no orjson frames (see the docstring)

        json_dumps = orjson.dumps
    start_of = operator.itemgetter(
        *(CALL_COLUMNS.index(n) for n in START_FIELDS if n != "timestamp")
    )
    rest_of = operator.itemgetter(*(i for i, n in enumerate(CALL_COLUMNS) if n not in START_FIELDS))
    pack_length = struct.Struct("<I").pack

    def put(self, kind: bytes, payload: bytes) -> None:
        used = self._used
        end = used + _HEADER_SIZE + len(payload)
        if end > self._limit:
            self._write_slow(kind, payload)
            return
        mapping = self._map
        check = adler(payload) if checksum else 0
        if one_copy:
            mapping[used:end] = pack_header(kind, len(payload), check) + payload
        elif copy:
            mapping[used + _HEADER_SIZE : end] = payload
            _pack_header(mapping, used, kind, len(payload), check)
        self._used = end
        self._dirty = True

    def start(self, values):
        if json:
            payload = json_dumps(values)
        else:
            payload = dumps(values, 2) if encode else start_payload
        if not locked:
            put(self, b"s", payload)
            return
        with self.lock:
            put(self, b"s", payload)
            if joined:
                self._open[values[0]] = payload
                self._joined[values[0]] = (payload, values[:2] + values[3:], values[2])
            else:
                self._open[values[0]] = payload
            if stamp_from_start:
                self._stamps[values[0]] = values[2]

    def write_end(self, record):
        opened = self._joined.pop(record[0], None) if joined else None
        if opened is not None and start_of(record) == opened[1]:
            head = opened[0]
            payload = pack_length(len(head)) + head + dumps(rest_of(record), 2)
        else:
            stamp = self._stamps.pop(record[0], None) if stamp_from_start else None
            if stamp is None:
                stamp = record[2].timestamp() if timestamp else 1765000000.0
            if json:
                payload = json_dumps((stamp, record[:2], record[3:]))
            else:
                payload = dumps((stamp, record[:2], record[3:]), 2) if encode else end_payload
        put(self, b"e", payload)
        if self._open:
            self._open.pop(record[0], None)
        if self._sealed and not self._keep and self._sealed[0][0] <= self._committed():
            self._drop_sealed()

    def install(log: CallLog) -> None:
        spool = log.spool
        spool._joined = {}
        spool._stamps = {}
        spool.start = types.MethodType(start, spool)
        spool.write_end = types.MethodType(write_end, spool)

    return install


def no_op(log: CallLog) -> None:
    log.spool.start = lambda values: None
    log.spool.write_end = lambda record: None


_RAM_FOLDERS: list[Path] = []


def on_tmpfs(log: CallLog) -> None:
    """Swap the log's spool for one whose segments are in /dev/shm (the gateway is made
    after this, so it writes its starts there too)."""
    log.spool.close(delete=True)
    writer = log._writer
    folder = Path(tempfile.mkdtemp(prefix="aigw-bench-spool-", dir="/dev/shm"))
    _RAM_FOLDERS.append(folder)  # removed at the end: /dev/shm is memory
    spool = Spool(
        folder / "tmpfs.spool",
        committed=lambda: spool.ends - writer.pending_rows,
        durability="os",
    )
    log._spool = spool


VARIANTS = {
    "os": None,
    "os (bench copy)": variant(),
    "orjson frames": variant(json=True),
    "one copy": variant(one_copy=True),
    "stamp from start": variant(stamp_from_start=True),
    "no-op frames": no_op,
    "no timestamp": variant(timestamp=False),
    "no marshal": variant(encode=False),
    "no copy": variant(copy=False),
    "no checksum": variant(checksum=False),
    "joined end": variant(joined=True),
    "bare": variant(timestamp=False, checksum=False, locked=False),
    "tmpfs": on_tmpfs,
}


def call_once(gateway) -> None:
    gateway.chat(f"bench/{MODEL}", MESSAGES, temperature=0, max_tokens=16)


def in_gateway(args) -> None:
    folder = Path(tempfile.mkdtemp(prefix="aigw-bench-spool-parts-"))
    chosen = args.sides.split(",") if args.sides else list(VARIANTS)
    if "tmpfs" in chosen and not Path("/dev/shm").is_dir():
        chosen.remove("tmpfs")
    names = ["none", "none, again (noise floor)", *chosen]
    sides = {}
    for i, name in enumerate(names):
        log = CallLog(folder / f"side{i}.duckdb", durability="none" if i < 2 else "os")
        # The variants change the finished-row end frame (`write_end`): every spooled side
        # keeps rows finished on the calling thread, the spool as before session 9 (the
        # unfinished-row frames are measured by bench_spool_threads.py).
        log._unfinished_ends = False
        setup = VARIANTS.get(name)
        if setup is not None:
            setup(log)
        sides[name] = (make_gateway(log), log)
    for gateway, log in sides.values():
        for i in range(args.warmup):
            call_once(gateway)
            if i % 500 == 499:
                log.flush()
        log.flush()
    caller: dict[str, list[float]] = {name: [] for name in names}
    process = {name: 0.0 for name in names}
    rng = random.Random(0)
    thread_clock, clock = time.thread_time, time.process_time
    for _ in range(args.rounds):
        for _ in range(args.calls):
            for name in rng.sample(names, len(names)):
                gateway = sides[name][0]
                p, t = clock(), thread_clock()
                call_once(gateway)
                t1, p1 = thread_clock(), clock()
                caller[name].append(t1 - t)
                process[name] += p1 - p
        for name in names:
            p = clock()
            sides[name][1].flush()
            process[name] += clock() - p
    n = args.calls * args.rounds
    base_t = statistics.median(caller["none"]) * 1e6
    base_p = process["none"] / n * 1e6
    print(
        f"\nin the gateway, flat out: {n} calls per side ({args.rounds} rounds), sides taking "
        "turns in random order; µs per call"
    )
    print("| side                       | caller CPU | added | process CPU |  added |")
    print("|----------------------------|------------|-------|-------------|--------|")
    for name in names:
        t = statistics.median(caller[name]) * 1e6
        p = process[name] / n * 1e6
        print(
            f"| {name:<26} | {t:>10.1f} | {t - base_t:>+5.1f} | {p:>11.1f} | {p - base_p:>+6.1f} |"
        )
    for gateway, log in sides.values():
        gateway.close()
        log.close()
    while _RAM_FOLDERS:
        shutil.rmtree(_RAM_FOLDERS.pop(), ignore_errors=True)


# --- labels: encoded once per request, or at each use ---------------------------------------

#: Labels like an experiment unit's (`aigw_lab.experiments.runner`), plus a tag.
TAGS = {"suite": "bench"}
METADATA = {
    "aigw_experiment": {
        "run_id": "run-0123456789abcdef",
        "item_id": "item-00042",
        "target": f"bench/{MODEL}",
        "repetition": 0,
    },
    "note": "labels like an experiment call's",
}


def labels(args) -> None:
    """Calling-thread CPU per call of ``ChatRequest.create`` with labels plus ``chat``, on a
    gateway with a spool: the labels encoded once (`ChatRequest.labels_json`, shipped)
    against the previous way (encoded again by the start frame and by the row), the two
    taking turns call by call in random order."""
    from aigw_lab.gateway.records import to_json
    from aigw_lab.types import ChatRequest

    def per_use(self):
        return (to_json(self.tags), to_json(self.metadata))

    shipped = ChatRequest.labels_json
    ways = {"labels encoded at each use (before)": per_use, "labels encoded once": shipped}
    folder = Path(tempfile.mkdtemp(prefix="aigw-bench-spool-labels-"))
    log = CallLog(folder / "labels.duckdb", durability="os")
    log._unfinished_ends = False  # as measured in session 8: rows finished on this thread
    gateway = make_gateway(log)
    caller: dict[str, list[float]] = {name: [] for name in ways}
    rng = random.Random(1)
    thread_clock = time.thread_time
    try:
        for turn in range(args.warmup + args.labels_calls):
            for name in rng.sample(list(ways), len(ways)):
                ChatRequest.labels_json = ways[name]
                t = thread_clock()
                request = ChatRequest.create(
                    f"bench/{MODEL}",
                    MESSAGES,
                    temperature=0,
                    max_tokens=16,
                    tags=TAGS,
                    metadata=METADATA,
                )
                gateway.chat(request)
                spent = thread_clock() - t
                if turn >= args.warmup:
                    caller[name].append(spent)
            if turn % 500 == 499:
                log.flush()
    finally:
        ChatRequest.labels_json = shipped
        gateway.close()
        log.close()
        shutil.rmtree(folder, ignore_errors=True)
    base = statistics.median(caller["labels encoded at each use (before)"]) * 1e6
    print(
        f"\nlabels (experiment-like tags and metadata), spool on, flat out: {args.labels_calls} "
        "calls per side, taking turns in random order; calling-thread CPU µs per call "
        "(create + chat), median, and the middle half of the calls"
    )
    print("| side                                 | caller CPU | added | 25%-75%       |")
    print("|--------------------------------------|------------|-------|---------------|")
    for name, samples in caller.items():
        q = statistics.quantiles(samples, n=4)
        t = statistics.median(samples) * 1e6
        print(
            f"| {name:<36} | {t:>10.1f} | {t - base:>+5.1f} | "
            f"{q[0] * 1e6:>6.1f}-{q[2] * 1e6:<6.1f} |"
        )


# --- encoders alone --------------------------------------------------------------------------

_TYPE_CODES = {str: "s", type(None): "n", int: "q", float: "d", bool: "?"}


def shape_encoder():
    """A pure-Python encoder of a row: one `struct` pack of its numbers and of its texts'
    lengths, then the texts' UTF-8, laid out per shape (which fields hold which type), with
    a compiled `struct.Struct` and `operator.itemgetter` per shape."""
    shapes: dict[tuple[type, ...], tuple] = {}

    def build(key):
        codes, texts, numbers, fmt = [], [], [], ""
        for i, kind in enumerate(key):
            code = _TYPE_CODES[kind]
            codes.append(code)
            if code == "s":
                texts.append(i)
            elif code != "n":
                numbers.append(i)
                fmt += code
        code_bytes = "".join(codes).encode()
        pack = struct.Struct(f"<B{len(code_bytes)}s{fmt}{'I' * len(texts)}").pack
        return code_bytes, operator.itemgetter(*texts), operator.itemgetter(*numbers), pack

    def encode(values):
        key = (*map(type, values),)
        shape = shapes.get(key)
        if shape is None:
            shape = shapes[key] = build(key)
        code, texts_of, numbers_of, pack = shape
        texts = texts_of(values)
        head = pack(len(code), code, *numbers_of(values), *map(len, texts))
        return head + "".join(texts).encode("utf-8", "surrogatepass")

    return encode


def join_encoder(values_example):
    """Texts joined with NUL (a row holding a NUL would fall back), a bitmask of the Nones,
    the numbers by marshal."""
    texts_at = [i for i, v in enumerate(values_example) if type(v) is str or v is None]
    numbers_at = [i for i in range(len(values_example)) if i not in texts_at]
    texts_of = operator.itemgetter(*texts_at)
    numbers_of = operator.itemgetter(*numbers_at)
    nones, separators, is_ = (None,) * len(texts_at), len(texts_at) - 1, operator.is_

    def encode(values):
        texts = texts_of(values)
        joined = "\0".join(map(str, texts))
        if joined.count("\0") != separators:
            raise ValueError("a NUL in a text")
        head = marshal.dumps((numbers_of(values), bytes(map(is_, texts, nones))), 2)
        return head + joined.encode("utf-8", "surrogatepass")

    return encode


def encoders(loops: int) -> None:
    record = CallRecord(
        call_id="0123456789abcdef0123456789abcdef",
        trace_id="0123456789abcdef0123456789abcdee",
        timestamp=datetime.now(UTC),
        provider_name="bench",
        request_model=MODEL,
        response_model=MODEL,
        response_id="chatcmpl-bench",
        api_format="openai",
        request_json='{"model":"gpt-4o-mini","messages":[{"role":"system","content":"You are '
        'a terse assistant."},{"role":"user","content":"What is the capital of France? '
        'Answer in one word."}],"temperature":0,"max_tokens":16}',
        response_text="Paris.",
        finish_reason="stop",
        http_status_code=200,
        input_tokens=27,
        output_tokens=2,
        cost_usd=5.25e-06,
        latency_ms=1.2,
        ttfb_ms=0.9,
        ttft_ms=1.1,
        upstream_ms=1.0,
        overhead_ms=0.2,
    )
    stamp = record.timestamp.timestamp()
    row = (stamp, *record[:2], *record[3:])
    start = tuple(getattr(record, n) for n in START_FIELDS)
    start = start[:2] + (stamp,) + start[3:]
    shape = shape_encoder()
    joined = join_encoder(row)
    start_numbers = struct.Struct("<d??q")

    def start_fixed():
        # The usual start (no labels, no experiment): six texts and four numbers.
        cid, tid, when, provider, model, fmt, stream, cache, attempt = start[:9]
        text = f"{cid}\0{tid}\0{provider}\0{model}\0{fmt}\0{cache}".encode("utf-8", "surrogatepass")
        return start_numbers.pack(when, stream, False, attempt) + text

    cases = {
        "end: marshal v2 (shipped)": lambda: marshal.dumps((stamp, record[:2], record[3:]), 2),
        "end: marshal v4": lambda: marshal.dumps((stamp, record[:2], record[3:]), 4),
        "end: struct per shape": lambda: shape(row),
        "end: NUL-joined texts": lambda: joined(row),
        "end: datetime.timestamp()": record.timestamp.timestamp,
        "start: marshal v2 (shipped)": lambda: marshal.dumps(start, 2),
        "start: struct per shape": lambda: shape(start),
        "start: f-string + struct": start_fixed,
        "nothing (the timer)": lambda: None,
    }
    try:
        import orjson  # bench only: JSON frames were measured, not shipped
    except ImportError:
        orjson = None
    if orjson is not None:
        json_dumps = orjson.dumps
        cases["end: orjson (with timestamp)"] = lambda: json_dumps(
            (record.timestamp.timestamp(), record[:2], record[3:])
        )
        cases["end: marshal v2 (with timestamp)"] = lambda: marshal.dumps(
            (record.timestamp.timestamp(), record[:2], record[3:]), 2
        )
        cases["start: orjson"] = lambda: json_dumps(start)
    sweep = bytearray(8 << 20)
    clock = time.perf_counter_ns
    print(f"\nencoders alone: median µs per encode over {loops} calls (cold: 8 MiB sweep between)")
    print("| encoder                       |   hot |  cold | bytes |")
    print("|-------------------------------|-------|-------|-------|")
    for name, encode in cases.items():
        timings: dict[bool, list[int]] = {False: [], True: []}
        for i in range(2 * loops):  # hot and cold interleaved, so drift hits both
            cold = bool(i % 2)
            if cold:
                sweep[::64] = bytes(len(sweep) // 64)
            t = clock()
            encode()
            timings[cold].append(clock() - t)
        out = encode()
        size = len(out) if isinstance(out, bytes) else 0
        hot, cold_us = (statistics.median(timings[c]) / 1000 for c in (False, True))
        print(f"| {name:<29} | {hot:5.2f} | {cold_us:5.2f} | {size:>5} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=500, help="turns between flushes")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=2_000, help="calls per side first")
    parser.add_argument("--sides", help=f"comma-separated, of: {', '.join(VARIANTS)}")
    parser.add_argument("--encoder-loops", type=int, default=3_000)
    parser.add_argument("--skip-gateway", action="store_true", help="encoders alone only")
    parser.add_argument("--labels-calls", type=int, default=4_000, help="0: no labels part")
    parser.add_argument(
        "--quick", action="store_true", help="fewer calls: the headline sides in ~2 minutes"
    )
    args = parser.parse_args(argv)
    print(
        f"spool parts benchmark: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC | {platform.machine()} "
        f"| {os.cpu_count()} cores | Python {platform.python_version()} | {platform.system()}"
    )
    print("load average (1, 5, 15 min) at the start: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    if args.quick:
        args.rounds, args.warmup, args.encoder_loops = min(args.rounds, 6), 1_000, 500
        args.labels_calls = min(args.labels_calls, 2_000)
        args.sides = args.sides or "os,no-op frames,orjson frames"
    if not args.skip_gateway:
        in_gateway(args)
        if args.labels_calls:
            labels(args)
    encoders(args.encoder_loops)
    print("load average (1, 5, 15 min) at the end: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
