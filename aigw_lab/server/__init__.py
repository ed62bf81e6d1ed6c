"""The HTTP gateway: OpenAI- and Anthropic-compatible endpoints in front of a `Gateway`.

    from aigw_lab.server import GatewayApp, KeyRing, ClientIdentity, BackgroundServer

    keys = KeyRing({"sk-team-a-secret": ClientIdentity("team-a", tenant="a")})
    with BackgroundServer(GatewayApp(gateway, keys)) as server:
        openai.OpenAI(base_url=f"{server.url}/v1", api_key="sk-team-a-secret")

``aigw-lab serve`` runs it from a config file. Timeouts and limits: ``GatewayApp(...,
limits=ServerLimits(header_timeout=..., ...))``. See docs/serving.md.
"""

from aigw_lab.server.app import GatewayApp
from aigw_lab.server.auth import ClientIdentity, KeyRing
from aigw_lab.server.runner import BackgroundServer, serve
from aigw_lab.server_limits import ServerLimits

__all__ = ["GatewayApp", "KeyRing", "ClientIdentity", "BackgroundServer", "serve", "ServerLimits"]
