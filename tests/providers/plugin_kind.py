"""A third-party provider kind as a package would ship it: a module and a ``.dist-info``
folder declaring it in the ``aigw_lab.provider_kinds`` entry-point group, written to a folder
that a test puts on ``sys.path`` (importlib.metadata finds it there as if it were installed)."""

from __future__ import annotations

from pathlib import Path

MODULE = "aigw_echo_kind"
DIST = "aigw-echo-kind"

# The plugin's whole source: a provider writing two methods, and its kind.
SOURCE = '''
from aigw_lab.providers.base_provider import BaseProvider
from aigw_lab.providers.kinds import OPENAI_COMPATIBLE, ConfigKey, HttpKind, ProviderKind
from aigw_lab.types import ChatResponse, Usage


class EchoProvider(BaseProvider):
    """Answers with the last user message after a prefix."""

    def __init__(self, name, prefix, models=()):
        self.name = name
        self.prefix = prefix
        self.models = tuple(models)

    def chat(self, request):
        text = self.prefix + request.messages[-1].text
        return ChatResponse(
            text=text,
            finish_reason="stop",
            usage=Usage(input_tokens=len(request.messages), output_tokens=len(text.split())),
            provider=self.name,
            model=request.model,
        )

    async def achat(self, request):
        return self.chat(request)


def _build(spec, clients, env):
    return EchoProvider(spec.name, spec.options.get("prefix", "echo: "), spec.models)


KIND = ProviderKind(
    name="echo",
    summary="repeats the prompt (a test plugin)",
    config_keys=(ConfigKey(name="prefix", types=(str,), what="a string"),),
    local=True,
    factory=_build,
)

# An HTTP API speaking a wire format aigw_lab knows: facts only, no code.
GROQISH = HttpKind(
    name="groqish",
    summary="an OpenAI-compatible API with its own default URL and key (a test plugin)",
    api_format="openai",
    default_base_url="https://api.groqish.invalid/openai/v1",
    api_key_env="GROQISH_API_KEY",
    codec=OPENAI_COMPATIBLE.codec,
)
'''


def write_plugin(folder: Path, entry_points: str | None = None, source: str = SOURCE) -> Path:
    """Write the plugin's module and dist-info into ``folder`` and return it. ``entry_points``
    replaces the declared entry points (to declare broken ones)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{MODULE}.py").write_text(source, encoding="utf-8")
    info = folder / f"{MODULE}-0.1.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {DIST}\nVersion: 0.1\n", encoding="utf-8"
    )
    declared = entry_points or f"echo = {MODULE}:KIND\ngroqish = {MODULE}:GROQISH\n"
    (info / "entry_points.txt").write_text(
        f"[aigw_lab.provider_kinds]\n{declared}", encoding="utf-8"
    )
    return folder
