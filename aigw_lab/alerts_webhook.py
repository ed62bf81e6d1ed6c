"""Where fired alerts go: a webhook (a JSON ``POST``), its URL and optional bearer token read
from environment variables only (``[alerts] webhook_url_env`` / ``webhook_token_env``), so
no secret sits in a config file or a command line.

The body::

    {"source": "aigw-lab", "evaluated_at": "...", "firing": [{rule, state, current,
     baseline, threshold, window_start, window_end, message}, ...]}
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import httpx

from aigw_lab.alerts import AlertResult
from aigw_lab.errors import ConfigError
from aigw_lab.gateway.observe_settings import check_env_name, check_http_url

__all__ = ["Webhook", "WebhookError"]


class WebhookError(Exception):
    """The webhook could not be delivered (connection refused, timeout, non-2xx answer)."""


class Webhook:
    """A JSON webhook target. ``url`` is checked (http(s), a host, no credentials in it);
    ``token``: sent as ``Authorization: Bearer``; ``client``: the httpx client to post with
    (default: one of its own, closed after each send)."""

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        timeout_s: float = 10.0,
        client: httpx.Client | None = None,
    ) -> None:
        self.url = check_http_url(url, "the webhook URL")
        self._token = token
        self.timeout_s = timeout_s
        self._client = client

    @classmethod
    def from_env(
        cls, url_env: str, token_env: str | None, env: Mapping[str, str], **kwargs: Any
    ) -> Webhook:
        """The webhook whose URL (and token) the named variables of ``env`` hold."""
        check_env_name(url_env, "[alerts] webhook_url_env")
        if not env.get(url_env):
            raise ConfigError(
                f"[alerts] webhook_url_env: the environment variable {url_env} is not set",
                hint=f"export {url_env}=https://... (the webhook URL), or pass --no-webhook",
            )
        token = None
        if token_env is not None:
            check_env_name(token_env, "[alerts] webhook_token_env")
            if not env.get(token_env):
                raise ConfigError(
                    f"[alerts] webhook_token_env: the environment variable {token_env} is not set",
                    hint=f"export {token_env}=... (the webhook's bearer token)",
                )
            token = env[token_env]
        return cls(env[url_env], token=token, **kwargs)

    def send(self, results: Sequence[AlertResult], evaluated_at: str) -> None:
        """POST the firing results; `WebhookError` (never showing the URL's path or the
        token) when it is not delivered."""
        body = {
            "source": "aigw-lab",
            "evaluated_at": evaluated_at,
            "firing": [r.as_dict() for r in results if r.firing],
        }
        headers = {"content-type": "application/json"}
        if self._token:
            headers["authorization"] = f"Bearer {self._token}"
        client = self._client or httpx.Client(timeout=self.timeout_s)
        host = httpx.URL(self.url).host
        try:
            answer = client.post(self.url, content=json.dumps(body), headers=headers)
        except httpx.HTTPError as exc:
            raise WebhookError(
                f"the webhook at {host} was not reached ({type(exc).__name__})"
            ) from exc
        finally:
            if self._client is None:
                client.close()
        if not 200 <= answer.status_code < 300:
            raise WebhookError(f"the webhook at {host} answered HTTP {answer.status_code}")
