"""Reading a server subprocess's start-up lines with a deadline.

``proc.stdout.readline()`` in a loop waits for ever when the line a test waits for never
comes (a worker's announcement lost, a server stuck before listening): the deadline such a
loop checks between lines is never reached, and the whole run hangs. Here a daemon thread
reads the lines, and the test waits for them with a timeout.
"""

from __future__ import annotations

import queue
import subprocess
import threading
import time
from collections.abc import Callable


def lines_until(
    proc: subprocess.Popen[str], done: Callable[[list[str]], bool], timeout: float = 120.0
) -> list[str]:
    """The lines ``proc`` printed on its stdout (a text pipe) until ``done(lines)``; an
    AssertionError naming them (and stderr, if the process ended) when the process ends
    first or ``timeout`` seconds pass. The thread goes on draining stdout afterwards, so a
    chatty process never blocks on a full pipe."""
    assert proc.stdout is not None
    received: queue.Queue[str] = queue.Queue()

    def drain() -> None:
        for line in proc.stdout:  # type: ignore[union-attr]
            received.put(line)
        received.put("")  # end of output

    threading.Thread(target=drain, name="subprocess-lines", daemon=True).start()
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while not done(lines):
        try:
            line = received.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            raise AssertionError(f"no such line within {timeout:.0f} s: {lines}") from None
        if not line:
            error = proc.stderr.read() if proc.stderr is not None else ""
            raise AssertionError(f"the process ended: {lines} {error}")
        lines.append(line)
    return lines
