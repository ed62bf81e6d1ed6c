"""What the budget stage costs per call in each call mode: an earlier tree against this one,
in the same run (issue 11 §1 turned the Budget middleware into a sans-IO primitive run by
the gateway's drivers).

    git archive <rev> aigw_lab | tar -x -C /tmp/old     # the tree to compare with
    python bench/bench_budget_modes.py --old-tree /tmp/old [--rounds R] [--calls N]

Three worker processes, each importing its own ``aigw_lab``: ``old`` (``--old-tree``),
``new`` (this checkout) and ``new, again`` (this checkout once more: how far two identical
sides drift apart on this machine, the noise floor). Each round, every worker runs every
workload once, the workers in a new random order each round; figures are medians over
rounds, per call, wall (``perf_counter``) and CPU (``process_time``, all threads).

Workloads, for each mode (chat, achat, stream, astream): ``bare`` (no middleware) and
``budget`` (one tenant limit far from exhausted: estimate, reserve, settle), both calling
the in-process fake OpenAI server of bench_gateway_overhead.py with logging off. The
budget's own cost is ``budget - bare`` within one worker.

Prints one table; exits 0. Numbers are for this machine only.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _old_vs_new as old_vs_new  # noqa: E402

HERE = Path(__file__).resolve().parent
MODES = ("chat", "achat", "stream", "astream")


# --- the worker: runs in a process whose aigw_lab is one tree ----------------------------


def _stream_body(model: str) -> bytes:
    """A Chat Completions stream answering "Paris." with its usage, as OpenAI sends it."""

    def chunk(delta: dict, finish: str | None = None, usage: dict | None = None) -> str:
        choices = [{"index": 0, "delta": delta, "finish_reason": finish}] if delta else []
        body = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "model": model}
        body |= {"created": 1_700_000_000, "choices": choices, "usage": usage}
        return f"data: {json.dumps(body)}\n\n"

    usage = {"prompt_tokens": 27, "completion_tokens": 2, "total_tokens": 29}
    parts = [
        chunk({"role": "assistant", "content": ""}),
        chunk({"content": "Paris"}),
        chunk({"content": "."}),
        chunk({"content": ""}, finish="stop"),
        chunk({}, usage=usage),
        "data: [DONE]\n\n",
    ]
    return "".join(parts).encode()


def _worker() -> None:
    import asyncio

    import httpx

    sys.path.insert(0, str(HERE))
    from bench_gateway_overhead import BASE_URL, MESSAGES, MODEL, RESPONSE_BODY

    from aigw_lab import Budget, Gateway, HttpClients, Limit, Price, ProviderSpec

    streamed = _stream_body(MODEL)

    def server(request: httpx.Request) -> httpx.Response:
        if json.loads(request.content).get("stream"):
            return httpx.Response(
                200, content=streamed, headers={"content-type": "text/event-stream"}
            )
        return httpx.Response(
            200, content=RESPONSE_BODY, headers={"content-type": "application/json"}
        )

    def make_gateway(*middleware: object) -> Gateway:
        spec = ProviderSpec(name="bench", kind="openai", base_url=BASE_URL, api_key_env="BK")
        clients = HttpClients(
            transport=httpx.MockTransport(server), async_transport=httpx.MockTransport(server)
        )
        return Gateway(
            [spec],
            log=None,
            clients=clients,
            env={"BK": "bench-key"},
            prices={f"bench/{MODEL}": Price(0.15, 0.60)},
            middleware=list(middleware),
        )

    address = f"bench/{MODEL}"
    gateways = {
        "bare": make_gateway(),
        "budget": make_gateway(Budget([Limit("tenant", 1e9, "month")])),
    }

    def block(gw, mode: str, n: int) -> None:
        if mode == "chat":
            for _ in range(n):
                gw.chat(address, MESSAGES, tenant="t1", max_tokens=16)
        elif mode == "stream":
            for _ in range(n):
                for _text in gw.stream(address, MESSAGES, tenant="t1", max_tokens=16):
                    pass
        elif mode == "achat":

            async def calls() -> None:
                for _ in range(n):
                    await gw.achat(address, MESSAGES, tenant="t1", max_tokens=16)

            asyncio.run(calls())
        else:

            async def streams() -> None:
                for _ in range(n):
                    async for _text in gw.astream(address, MESSAGES, tenant="t1", max_tokens=16):
                        pass

            asyncio.run(streams())

    # The stage alone: the budget around a next stage that answers at once (no HTTP, no
    # codec), so what the conversion changed is most of what is timed.
    from aigw_lab.gateway.middleware import CallContext
    from aigw_lab.types import ChatRequest, StreamEnd, TextDelta

    stage = Budget([Limit("tenant", 1e9, "month")])
    answer = gateways["bare"].chat(address, MESSAGES)
    request = ChatRequest.create(MODEL, MESSAGES, max_tokens=16, tenant="t1")
    host = gateways["bare"]

    def ctx() -> CallContext:
        return CallContext(
            request, "bench", MODEL, "t", stream=False, started=0.0, started_wall=0.0, gateway=host
        )

    def answer_now(_ctx: CallContext) -> object:
        return answer

    async def aanswer_now(_ctx: CallContext) -> object:
        return answer

    def events(_ctx: CallContext):
        yield TextDelta("Paris.")
        yield StreamEnd(answer)

    async def aevents(_ctx: CallContext):
        yield TextDelta("Paris.")
        yield StreamEnd(answer)

    def stage_block(mode: str, n: int) -> None:
        if mode == "chat":
            for _ in range(n):
                stage.handle(ctx(), answer_now)
        elif mode == "stream":
            for _ in range(n):
                for _event in stage.handle_stream(ctx(), events):
                    pass
        elif mode == "achat":

            async def calls() -> None:
                for _ in range(n):
                    await stage.ahandle(ctx(), aanswer_now)

            asyncio.run(calls())
        else:

            async def streams() -> None:
                for _ in range(n):
                    async for _event in stage.ahandle_stream(ctx(), aevents):
                        pass

            asyncio.run(streams())

    assert answer.cost_usd
    # Both paths answer in full and are priced, so the budget settles real costs.
    checked = gateways["budget"]
    assert checked.chat(address, MESSAGES, tenant="t1").text == "Paris."
    with checked.stream(address, MESSAGES, tenant="t1") as stream:
        final = stream.until_done()
    assert final.text == "Paris." and final.cost_usd, final
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        n = int(line)
        out: dict[str, list[float]] = {}
        for mode in MODES:
            for side, gw in gateways.items():
                wall, cpu = time.perf_counter(), time.process_time()
                block(gw, mode, n)
                cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
                out[f"{side} {mode}"] = [wall / n * 1e6, cpu / n * 1e6]
            wall, cpu = time.perf_counter(), time.process_time()
            stage_block(mode, n * 10)
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            out[f"stage {mode}"] = [wall / n / 10 * 1e6, cpu / n / 10 * 1e6]
        print(json.dumps(out), flush=True)
    for gw in gateways.values():
        gw.close()


# --- the parent: starts the workers and interleaves them ---------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--old-tree", type=Path, required=True, help="holds the old aigw_lab")
    parser.add_argument("--rounds", type=int, default=9, help="rounds (default 9)")
    parser.add_argument("--calls", type=int, default=500, help="calls per block (500)")
    parser.add_argument("--seed", type=int, default=1, help="order of the sides (default 1)")
    args = parser.parse_args(argv)
    sides = old_vs_new.sides(parser, args.old_tree, "gateway/budget.py")
    results = old_vs_new.run_rounds(
        Path(__file__),
        sides,
        None,
        rounds=args.rounds,
        line=str(args.calls),
        warm_up=str(max(1, args.calls // 10)),
        seed=args.seed,
    )

    def med(name: str, workload: str, i: int) -> float:
        return statistics.median(v[i] for v in results[name][workload])

    print(
        f"bench_budget_modes: {args.rounds} rounds, {args.calls:,} calls per block; Python "
        f"{platform.python_version()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}"
    )
    for i, what in ((0, "wall"), (1, "CPU")):
        print(f"\n{what}, µs per call")
        print(
            f"{'mode':<8} {'stage old':>9} {'new':>7} {'new/old':>8} {'again/new':>9}   "
            f"{'call: bare':>10} {'+bud old':>9} {'+bud new':>9} {'+bud again':>10}"
        )
        for mode in MODES:
            so, sn, sa = (med(side, f"stage {mode}", i) for side in sides)
            ob, nb, ab = (med(side, f"bare {mode}", i) for side in sides)
            obud, nbud, abud = (med(side, f"budget {mode}", i) for side in sides)
            print(
                f"{mode:<8} {so:9.2f} {sn:7.2f} {sn / so:8.3f} {sa / sn:9.3f}   "
                f"{nb:10.1f} {obud - ob:+9.1f} {nbud - nb:+9.1f} {abud - ab:+10.1f}"
            )
    print(
        "\nstage: the budget alone around a next stage that answers at once (new/old: this "
        "tree over the old; again/new: two identical copies of this tree, the noise floor). "
        "call: a whole gateway call to the fake server without a budget (new tree), and "
        "+bud: what the budget added to it in each tree (budget side minus bare side)."
    )
    return 0


if __name__ == "__main__":
    if sys.argv[1:] == ["--worker"]:
        _worker()
    else:
        sys.exit(main())
