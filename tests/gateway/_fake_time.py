"""Time that never really passes, for the retry tests: a clock that moves only when a fake
sleep is called, and a random source with set draws."""

from __future__ import annotations


class FakeTime:
    """A clock that moves only when slept on (or advanced by a test)."""

    def __init__(self):
        self.now = 1000.0
        self.sleeps = []
        self.async_sleeps = []

    def clock(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds

    async def async_sleep(self, seconds):
        self.async_sleeps.append(seconds)
        self.now += seconds

    def waits(self, mode):
        """The waits of call mode ``mode``; the other kind of sleep must never have been used."""
        asynchronous = mode in ("achat", "astream")
        used, unused = (
            (self.async_sleeps, self.sleeps) if asynchronous else (self.sleeps, self.async_sleeps)
        )
        assert unused == [], f"{mode} slept with the wrong sleep"
        return used


class Draws:
    """A random source returning the given draws in turn (the last one repeats)."""

    def __init__(self, *draws):
        self.draws = list(draws)

    def random(self):
        return self.draws.pop(0) if len(self.draws) > 1 else self.draws[0]
