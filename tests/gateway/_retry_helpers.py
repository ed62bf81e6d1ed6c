"""What the retry tests share: time that never really passes (a clock that moves only when
a fake sleep is called, a random source with set draws), a `Retry` on them, mock providers
serving model ``m``, and a gateway around one middleware."""

from __future__ import annotations

from aigw_lab import Gateway, Price
from aigw_lab.errors import ProviderServerError
from aigw_lab.gateway.reliability import Retry
from aigw_lab.testing.fakes import MockProvider


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


def retry(time_, draw=0.5, **kwargs):
    return Retry(
        clock=time_.clock,
        sleep=time_.sleep,
        async_sleep=time_.async_sleep,
        rng=Draws(draw),
        **kwargs,
    )


def mocks(*names):
    return [MockProvider(name, models=("m",)) for name in names]


def gateway(log, providers, middleware):
    prices = {f"{p.name}/m": Price(1.0, 2.0) for p in providers}
    return Gateway(providers, log=log, middleware=[middleware], prices=prices)


def rows(log):
    log.flush()
    return log.query(
        "SELECT provider_name, attempt, status, error_type, fallback_from, stream "
        "FROM calls ORDER BY attempt"
    )


def server_error(name="a"):
    return ProviderServerError("boom", provider=name, model="m", status=500)
