"""Shared pieces of the HTTP gateway tests: keys, the base config, and `Served`, a running
server with SDK clients (retries off, so every error reaches the test as the SDK's own)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from aigw_lab.gateway.gateway import Gateway
from aigw_lab.server import BackgroundServer
from tests._sdks import anthropic, openai

KEY_A = "sk-gw-team-a-0123456789"
KEY_B = "sk-gw-team-b-9876543210"
ENV = {"AIGW_KEY_TEAM_A": KEY_A, "AIGW_KEY_TEAM_B": KEY_B}

#: Two simulated providers (one per wire format) and two gateway keys.
BASE_CONFIG = """
[providers.sim-openai]
kind = "simulated"
format = "openai"
time_scale = 0.0

[providers.sim-anthropic]
kind = "simulated"
format = "anthropic"
time_scale = 0.0

[server]
keys = [
  { key_env = "AIGW_KEY_TEAM_A", name = "team-a", tenant = "a" },
  { key_env = "AIGW_KEY_TEAM_B", name = "team-b", tenant = "b", user = "bob" },
]
"""


@dataclass
class Served:
    """A running server, its gateway and where its log is."""

    server: BackgroundServer
    gateway: Gateway
    db: Path

    @property
    def url(self) -> str:
        return self.server.url

    def openai(self, key: str = KEY_A) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.url}/v1", api_key=key, max_retries=0)

    def anthropic(self, key: str = KEY_A) -> anthropic.Anthropic:
        return anthropic.Anthropic(base_url=self.url, api_key=key, max_retries=0)

    def rows(self, sql: str) -> list[tuple]:
        log = self.gateway.log
        assert log is not None
        return [tuple(r) for r in log.query(sql).itertuples(index=False)]
