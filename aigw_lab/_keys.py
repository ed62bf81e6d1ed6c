"""The one check every config table goes through: no key it does not know. Kept for the
modules that check a table by its key names alone (`aigw_lab.experiments.spec`); the check
itself is the config schema validator's (`aigw_lab.config_schema`)."""

from __future__ import annotations

from aigw_lab.config_schema import reject_unknown_keys

__all__ = ["reject_unknown_keys"]
