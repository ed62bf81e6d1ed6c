"""The policy file: one versioned, self-contained JSON document per policy, with any learned
artifact (weights, embeddings) in files beside it.

    save_policy(policy, "policies/cheap-or-strong.json")
    policy = load_policy("policies/cheap-or-strong.json")

and in a gateway config::

    [policies]
    cheap-or-strong = "policies/cheap-or-strong.json"   # relative to the config file

The document::

    {"format": "aigw-policy", "version": 1, "name": ..., "aigw_lab_version": ...,
     "created_at": ISO-8601, "policy": policy.to_dict(), "evaluation": {...} | null}

A file written by a newer aigw_lab (a higher ``version``) is refused with a clear error
rather than half-read: its policy could route differently from the one that was evaluated.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aigw_lab.errors import ConfigError
from aigw_lab.policy.base import Policy, policy_from_dict

__all__ = ["save_policy", "load_policy", "read_policy_document", "POLICY_FILE_VERSION"]

#: The format version this aigw_lab writes and the highest it reads.
POLICY_FILE_VERSION = 1
_FORMAT = "aigw-policy"


def _library_version() -> str:
    # lazy: importlib.metadata costs ~20 ms; only this lookup needs it
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("aigw_lab")
    except PackageNotFoundError:  # running from a source tree that is not installed
        return "unknown"


def save_policy(
    policy: Policy,
    path: str | os.PathLike[str],
    *,
    evaluation: Mapping[str, Any] | None = None,
    now: datetime | None = None,
) -> Path:
    """Write ``policy`` to ``path`` (JSON) and its artifacts into the same folder; return the
    path. ``evaluation`` (metrics measured on held-out data) is stored alongside, for the
    record. The JSON is written to a temporary file and renamed, so a reader never sees half
    a policy."""
    if not isinstance(policy, Policy):
        raise ConfigError(
            f"save_policy needs a Policy, got {type(policy).__name__}",
            hint="pass a Rules, WeightedSplit, Cascade, ... object",
        )
    target = Path(path)
    folder = target.parent
    folder.mkdir(parents=True, exist_ok=True)
    spec = policy.to_dict()
    policy.save_artifacts(folder)
    document = {
        "format": _FORMAT,
        "version": POLICY_FILE_VERSION,
        "name": policy.name,
        "aigw_lab_version": _library_version(),
        "created_at": (now or datetime.now(UTC)).isoformat(),
        "policy": spec,
        "evaluation": dict(evaluation) if evaluation is not None else None,
    }
    try:
        text = json.dumps(document, indent=2, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            f"policy {policy.name!r} cannot be written as JSON: {exc}",
            hint="to_dict() and evaluation must hold only JSON values (finite numbers)",
        ) from exc
    temporary = target.with_name(f".{target.name}.tmp")
    temporary.write_text(text + "\n", encoding="utf-8")
    os.replace(temporary, target)
    return target


def read_policy_document(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The policy file's JSON document, checked for format and version (not yet built)."""
    source = Path(path)
    try:
        document = json.loads(source.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(
            f"policy file {str(source)!r} does not exist",
            hint="write it with save_policy, or fix the path",
        ) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read policy file {str(source)!r}: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"policy file {str(source)!r} is not valid JSON: {exc}",
            hint="rewrite it with save_policy",
        ) from exc
    except RecursionError as exc:
        raise ConfigError(
            f"policy file {str(source)!r} holds JSON nested too deeply to read",
            hint="it is not a policy file written by save_policy: check the path",
        ) from exc
    if not isinstance(document, dict) or document.get("format") != _FORMAT:
        raise ConfigError(
            f'{source} is not an aigw policy file (no "format": "{_FORMAT}")',
            hint="write policy files with aigw_lab.policy.save_policy",
        )
    version = document.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ConfigError(f"{source}: policy file version {version!r} is invalid")
    if version > POLICY_FILE_VERSION:
        raise ConfigError(
            f"{source}: policy file version {version} is newer than this aigw_lab reads "
            f"(up to {POLICY_FILE_VERSION}); it was written by aigw_lab "
            f"{document.get('aigw_lab_version', '?')}",
            hint="upgrade aigw_lab to load it",
        )
    if not isinstance(document.get("policy"), dict):
        raise ConfigError(f'{source}: the policy file has no "policy" object')
    return document


def load_policy(path: str | os.PathLike[str]) -> Policy:
    """The policy saved at ``path`` by `save_policy`, artifacts read from its folder."""
    source = Path(path)
    document = read_policy_document(source)
    try:
        return policy_from_dict(document["policy"], artifacts=source.parent)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc.message}", hint=exc.hint) from exc
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        # A field of the wrong shape deep in the document (edited by hand, or truncated):
        # the file is at fault, not the code reading it.
        raise ConfigError(
            f"{source}: the policy document is malformed ({type(exc).__name__}: {exc})",
            hint="rewrite it with save_policy (`aigw-lab policy train`) rather than by hand",
        ) from exc
