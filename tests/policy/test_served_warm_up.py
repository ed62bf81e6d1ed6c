"""A served learned policy is ready when the server is: `GatewayApp` loads and runs every
policy's embedder at lifespan startup, before uvicorn accepts connections, so
`BackgroundServer.start` (and ``/health``) return only once the first request is fast."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from aigw_lab.embeddings import HashingEmbedder
from aigw_lab.errors import ConfigError
from aigw_lab.gateway import Gateway
from aigw_lab.policy.learned import train_router
from aigw_lab.policy.router import warm_up_policies
from aigw_lab.server.app import GatewayApp
from aigw_lab.server.runner import BackgroundServer

from ._learned_data import synthetic

STRONG, WEAK = "sim-openai/sim-large", "sim-openai/sim-nano"


class SlowToLoad(HashingEmbedder):
    """A HashingEmbedder standing in for a model that takes a while to load on first use."""

    def __init__(self, load_seconds: float = 0.3, fail: bool = False) -> None:
        super().__init__(64)
        self.load_seconds = load_seconds
        self.fail = fail
        self.loaded_at: float | None = None
        self.loads = 0
        self._lock = threading.Lock()

    def embed(self, texts):
        with self._lock:
            if self.loaded_at is None:
                if self.fail:
                    raise ConfigError("cannot load the embedding model", hint="install it")
                time.sleep(self.load_seconds)
                self.loads += 1
                self.loaded_at = time.monotonic()
        return super().embed(texts)


def learned_policy(embedder: HashingEmbedder):
    data = synthetic(20)
    # Trained with a plain embedder of the same name, so training does not load `embedder`.
    policy = train_router(
        data,
        "knn",
        name="cheap-or-strong",
        embedder=HashingEmbedder(64),
        targets={"big-model": STRONG, "small-model": WEAK},
        params={"k": 5},
    )
    policy.embedder = embedder
    return policy


def test_the_server_is_ready_only_after_the_policy_embedder_is_loaded():
    embedder = SlowToLoad()
    gateway = Gateway.simulated_fleet(policies=[learned_policy(embedder)], time_scale=0.0)
    server = BackgroundServer(GatewayApp(gateway, None, close_gateway=True))
    with server:
        started = time.monotonic()
        assert embedder.loaded_at is not None and embedder.loaded_at <= started
        assert httpx.get(f"{server.url}/health").json() == {"status": "ok"}
        reply = httpx.post(
            f"{server.url}/v1/chat/completions",
            json={
                "model": "cheap-or-strong",
                "messages": [{"role": "user", "content": "compute the integral of x^3 sin(x)"}],
            },
        )
        assert reply.status_code == 200, reply.text
        assert reply.json()["model"] == STRONG
    assert embedder.loads == 1


def test_a_policy_that_cannot_warm_up_stops_the_server_from_starting():
    embedder = SlowToLoad(fail=True)
    gateway = Gateway.simulated_fleet(policies=[learned_policy(embedder)], time_scale=0.0)
    try:
        with pytest.raises(ConfigError, match="did not start"):
            BackgroundServer(GatewayApp(gateway, None)).start(timeout_s=30)
    finally:
        gateway.close()


def test_warm_up_policies_names_what_it_warmed():
    embedder = SlowToLoad(load_seconds=0.0)
    gateway = Gateway.simulated_fleet(policies=[learned_policy(embedder)], time_scale=0.0)
    try:
        assert warm_up_policies(gateway) == ["cheap-or-strong"]
        assert embedder.loads == 1
        assert warm_up_policies(Gateway.simulated_fleet(time_scale=0.0)) == []
    finally:
        gateway.close()


def test_a_loaded_policy_embeds_a_repeated_prompt_once_and_writes_nothing_to_disk(
    tmp_path, monkeypatch
):
    from aigw_lab.embedding_cache import CachedEmbedder
    from aigw_lab.policy.policyfile import load_policy, save_policy
    from aigw_lab.types import ChatRequest, Message

    monkeypatch.setenv("AIGW_LAB_CACHE", str(tmp_path / "train-cache"))
    save_policy(learned_policy(HashingEmbedder(64)), tmp_path / "p.json")
    monkeypatch.setenv("AIGW_LAB_CACHE", str(tmp_path / "cache"))
    policy = load_policy(tmp_path / "p.json")  # builds its embedder from the name it saved
    seen: list[str] = []
    original = HashingEmbedder.embed
    monkeypatch.setattr(
        HashingEmbedder, "embed", lambda self, texts: seen.extend(texts) or original(self, texts)
    )
    request = ChatRequest(
        model="cheap-or-strong", messages=(Message("user", "compute the integral of x^2"),)
    )
    first, again = policy.decide(request), policy.decide(request)
    assert first == again and first.target == STRONG
    assert seen == ["compute the integral of x^2"]  # the second decision: an in-memory hit
    assert isinstance(policy.embedder, CachedEmbedder) and policy.embedder.cache is None
    assert not (tmp_path / "cache").exists()  # served prompts never reach the disk cache


class WaitsForOthers(HashingEmbedder):
    """Embeds a prompt containing "hold" only once another request was answered meanwhile
    (or after 10 s): if embedding blocked the server's event loop, nothing else could be."""

    def __init__(self) -> None:
        super().__init__(64)
        self.entered = threading.Event()
        self.others_done = threading.Event()
        self.saw_others: list[bool] = []

    def embed(self, texts):
        if any("hold" in t for t in texts):
            self.entered.set()
            self.saw_others.append(self.others_done.wait(timeout=10))
        return super().embed(texts)


@pytest.mark.parametrize("stream", [False, True])
def test_a_learned_decision_does_not_hold_up_other_requests(stream):
    embedder = WaitsForOthers()
    gateway = Gateway.simulated_fleet(policies=[learned_policy(embedder)], time_scale=0.0)
    with BackgroundServer(GatewayApp(gateway, None, close_gateway=True)) as server:
        url = f"{server.url}/v1/chat/completions"

        def ask(model: str, text: str) -> httpx.Response:
            body = {"model": model, "messages": [{"role": "user", "content": text}]}
            return httpx.post(url, json={**body, "stream": stream}, timeout=30)

        routed: list[httpx.Response] = []
        learned = threading.Thread(
            target=lambda: routed.append(ask("cheap-or-strong", "hold: integral of x^2"))
        )
        learned.start()
        assert embedder.entered.wait(timeout=30)  # the policy is embedding the prompt now
        plain = ask("sim-openai/sim-nano", "hi")  # answered while it embeds
        embedder.others_done.set()
        learned.join(timeout=30)
        assert plain.status_code == 200 and routed[0].status_code == 200
    assert embedder.saw_others == [True]


def test_the_deciding_thread_uses_one_torch_thread_and_leaves_others_alone(monkeypatch):
    import asyncio

    from aigw_lab.types import ChatRequest, Message

    torch = pytest.importorskip("torch")
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    original = torch.get_num_threads()
    # As on a 2-core machine, whatever this process started with (the suite's xdist workers
    # start numerical libraries on one thread): a count other than 1 to leave alone.
    torch.set_num_threads(2)
    before = torch.get_num_threads()
    try:
        policy = learned_policy(HashingEmbedder(64))
        request = ChatRequest(model="cheap-or-strong", messages=(Message("user", "integral"),))
        assert asyncio.run(policy.adecide(request)).target == STRONG
        assert policy._decider().submit(torch.get_num_threads).result() == 1
        assert torch.get_num_threads() == before == 2  # this thread's setting
        later: list[int] = []
        thread = threading.Thread(target=lambda: later.append(torch.get_num_threads()))
        thread.start()
        thread.join()
        assert later == [before]  # and the default of threads started later
    finally:
        torch.set_num_threads(original)
