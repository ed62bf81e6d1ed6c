"""Test doubles and fakes for code built on aigw_lab (providers in `aigw_lab.testing.fakes`,
loopback servers, the network tripwire); `MemorySink` is importable from here."""

from aigw_lab.testing.sinks import MemorySink

__all__ = ["MemorySink"]
