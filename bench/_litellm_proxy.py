"""LiteLLM's proxy as a target of bench/bench_serve_workers.py: made in its own virtual
environment (``litellm[proxy]`` from the registry, once), started on a loopback port with one
model pointing at the bench's fake upstream, and aigw's req/s over the proxy's per round."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

LITELLM_VENV = Path.home() / ".cache" / "aigw-lab-bench" / "litellm-proxy-venv"
LITELLM_TARGET = "litellm proxy"
#: Telemetry and network fetches off: its bundled price map, no usage report, no update
#: check, no feedback banner.
LITELLM_ENV = {
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "LITELLM_TELEMETRY": "False",
    "LITELLM_DONT_SHOW_FEEDBACK_BOX": "true",
    "LITELLM_LOG": "ERROR",
    "DISABLE_ADMIN_UI": "True",
    # No key checks, as `serve --no-auth` above; it refuses to start without a master key
    # otherwise. Loopback only.
    "LITELLM_DANGEROUSLY_PERMIT_WEAK_OR_UNSET_MASTER_KEY": "true",
}
LITELLM_CONFIG = """model_list:
  - model_name: up/m
    litellm_params:
      model: openai/m
      api_base: {url}/v1
      api_key: sk-bench
litellm_settings:
  telemetry: false
  set_verbose: false
"""


def _litellm_exe(venv: Path) -> Path:
    """The ``litellm`` command of ``venv``, after making the venv and installing
    ``litellm[proxy]`` into it when it has none (pip from the registry; minutes once)."""
    exe = venv / "bin" / "litellm"
    if exe.exists():
        return exe
    print(f"making {venv} with litellm[proxy] (once)", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "litellm[proxy]"]
    if subprocess.run(pip).returncode or not exe.exists():
        raise SystemExit(f"could not install litellm[proxy] into {venv} (see pip's output)")
    return exe


def _start_litellm_proxy(folder: Path, upstream: str, venv: Path) -> tuple:
    """LiteLLM's proxy on a free loopback port, its one model (``up/m``) at ``upstream``,
    answering a first request before it counts as up."""
    import socket
    import urllib.request

    exe = _litellm_exe(venv)
    config = folder / "litellm.yaml"
    config.write_text(LITELLM_CONFIG.format(url=upstream))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(LITELLM_ENV)
    log = (folder / "litellm.log").open("w")
    argv = [str(exe), "--config", str(config), "--host", "127.0.0.1", "--port", str(port)]
    proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=folder)
    url = f"http://127.0.0.1:{port}"
    body = json.dumps({"model": "up/m", "messages": [{"role": "user", "content": "hi"}]})
    request = urllib.request.Request(
        f"{url}/v1/chat/completions", data=body.encode(), method="POST",
        headers={"content-type": "application/json", "authorization": "Bearer x"},
    )  # fmt: skip
    deadline = time.monotonic() + 180
    tail = (folder / "litellm.log").read_text
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"LiteLLM's proxy exited: {tail()[-3000:]}")
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                if answer.status == 200:
                    return proc, url
        except OSError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            raise SystemExit(f"LiteLLM's proxy never answered: {tail()[-3000:]}")
        time.sleep(0.5)


def _litellm_ratios(results: dict[str, list[dict]]) -> None:
    """aigw's req/s over the proxy's, per round, against the issue's 20x."""
    if LITELLM_TARGET not in results:
        return
    proxy = [r["rps"] for r in results[LITELLM_TARGET]]
    for name, runs in results.items():
        if not name.startswith("serve"):
            continue
        ratios = [round(r["rps"] / p, 1) for r, p in zip(runs, proxy, strict=True)]
        print(f"  {name} / litellm proxy req/s per round: {ratios} (issue 14 target: >= 20x)")
