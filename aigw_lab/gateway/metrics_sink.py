"""Prometheus metrics of a gateway's calls: `MetricsSink`, an extra call sink beside the log,
and its text exposition (``aigw-lab serve`` answers it at ``GET /metrics``).

Metrics (labels ``provider``, ``model``, ``tenant``, ``cache_status``; see
docs/deployment.md):

- ``aigw_requests_total`` (+ ``status``: ok, error, cancelled): calls, counted at their end;
- ``aigw_errors_total`` (+ ``error_type``): calls that failed or were cancelled;
- ``aigw_attempts_total`` (+ ``status``): attempts sent to a provider (retries, fallbacks);
- ``aigw_tokens_total`` (+ ``direction``: input, output): tokens of every attempt sent;
- ``aigw_cost_usd_total``: the cost of every attempt (a cache hit costs 0);
- ``aigw_request_duration_seconds``: a histogram of call latency as the caller saw it.

Label values come from clients (a model name, a tenant, an address that names no
provider), so each label is bounded: a value is checked (at most 64 characters of
``A-Za-z0-9._:/@+-``, else ``_invalid``) and the first ``max_values`` distinct valid values
of a label are kept; later ones are folded into ``_other``. Values given in ``known`` (the
configured providers, the served models, the key file's tenants) are always kept. A
per-sink ``CollectorRegistry``: no global state, so two gateways in one process never mix
their counts.

Needs the ``metrics`` extra (``pip install "aigw-lab[metrics]"``).
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from aigw_lab.errors import ConfigError, MissingExtraError
from aigw_lab.extras import missing_modules

if TYPE_CHECKING:
    from aigw_lab.gateway.call_end import CallEnd
    from aigw_lab.store.records import CallRecord

__all__ = ["METRICS_INSTALL", "LABELS", "MetricsSink", "require_metrics"]

#: The install command of the ``metrics`` extra.
METRICS_INSTALL = 'pip install "aigw-lab[metrics]"'
#: The labels every metric has.
LABELS = ("provider", "model", "tenant", "cache_status")
#: What a label value folded away becomes.
OTHER = "_other"
INVALID = "_invalid"
NONE = "_none"
_VALID = re.compile(r"[A-Za-z0-9._:/@+\-]{1,64}")
#: Latency buckets (seconds): from a cache hit to a long generation.
_MULTIPROC = "PROMETHEUS_MULTIPROC_DIR"
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


def require_metrics(feature: str = "Prometheus metrics") -> None:
    """Raise `MissingExtraError` naming the install command when the ``metrics`` extra
    (prometheus-client) is not installed (checked without importing it)."""
    if missing_modules(("prometheus_client",)):
        raise MissingExtraError(
            f"{feature} needs the optional 'metrics' extra, and prometheus_client is not installed",
            hint=METRICS_INSTALL,
        )


def check_multiprocess(folder: str | None) -> str | None:
    """``folder`` if prometheus-client counts into it: it must be an existing directory and
    the one ``PROMETHEUS_MULTIPROC_DIR`` named when prometheus-client was first imported
    (the library picks its multiprocess mode then); else a `ConfigError`.

    Counters and the histogram are summed over processes, dead ones included (a worker's
    counts stay in the server's totals). The sink has no gauges, so no gauge mode applies."""
    if folder is None:
        return None
    # lazy: the metrics extra is optional (the caller checked it is installed)
    from prometheus_client import values

    hint = "let serve --workers set PROMETHEUS_MULTIPROC_DIR, or unset it"
    if not os.path.isdir(folder):
        raise ConfigError(f"PROMETHEUS_MULTIPROC_DIR={folder!r} is not a directory", hint=hint)
    if values.ValueClass is values.MutexValue or os.environ.get(_MULTIPROC) != folder:
        raise ConfigError(
            "PROMETHEUS_MULTIPROC_DIR was not set when prometheus_client was imported",
            hint="set it in the environment before the process starts; " + hint,
        )
    return folder


class LabelFolder:
    """One label's bounded set of values: valid values are kept up to ``max_values``
    distinct ones (``known`` always), the rest fold into ``_other``; invalid ones are
    ``_invalid``, None ``_none``. Thread-safe."""

    def __init__(self, max_values: int, known: Iterable[str] = ()) -> None:
        if max_values < 1:
            raise ValueError("max_values must be at least 1")
        self.max_values = max_values
        self._known = {v for v in known if _VALID.fullmatch(v)}
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, value: str | None) -> str:
        if value is None or value == "":
            return NONE
        if value in self._known or value in self._seen:
            return value
        if not _VALID.fullmatch(value):
            return INVALID
        with self._lock:
            if len(self._seen) < self.max_values:
                self._seen.add(value)
                return value
        return OTHER


class MetricsSink:
    """Prometheus counters and a latency histogram of every call (see the module docstring).

    ``max_values``: distinct values kept per label (per label: ``provider``, ``model``,
    ``tenant``, ``cache_status``, ``error_type``); ``max_label_sets``: combinations of the
    four labels kept (later ones count under ``_other`` for all four); ``known``: label ->
    values always kept; ``require_key``: whether ``/metrics`` on ``serve`` needs a gateway
    key (the server reads it; the default keeps tenant names for operators)."""

    name = "metrics"

    def __init__(
        self,
        *,
        max_values: int = 100,
        max_label_sets: int = 2000,
        known: Mapping[str, Iterable[str]] | None = None,
        buckets: Iterable[float] = BUCKETS,
        require_key: bool = True,
        multiprocess_dir: str | None = None,
    ) -> None:
        require_metrics()
        # lazy: the metrics extra is optional
        from prometheus_client import CollectorRegistry, Counter, Histogram

        #: The folder that every process of one server writes its counts to (None: this
        #: process's counts alone); see `check_multiprocess`.
        self.multiprocess_dir = check_multiprocess(multiprocess_dir)

        known = known or {}
        if max_label_sets < 1:
            raise ValueError("max_label_sets must be at least 1")
        #: Label sets (provider, model, tenant, cache status) kept; past it, ``_other``.
        self.max_label_sets = max_label_sets
        self._by_labels: dict[tuple[str, ...], _Series] = {}
        self._by_raw: dict[tuple[Any, ...], _Series] = {}
        self._series_lock = threading.Lock()
        for label in known:
            if label not in (*LABELS, "error_type"):
                raise ValueError(f"known: {label!r} is not a label; use one of {LABELS}")
        self.require_key = require_key
        self._fold = {
            label: LabelFolder(max_values, known.get(label, ()))
            for label in (*LABELS, "error_type")
        }
        #: The sink's own registry (no global one): what `exposition` renders.
        self.registry = CollectorRegistry(auto_describe=True)
        reg = self.registry
        self.requests = Counter(
            "aigw_requests", "Calls, counted at their end", (*LABELS, "status"), registry=reg
        )
        self.errors = Counter(
            "aigw_errors", "Calls that failed or were cancelled", (*LABELS, "error_type"),
            registry=reg,
        )  # fmt: skip
        self.attempts = Counter(
            "aigw_attempts", "Attempts sent to a provider", (*LABELS, "status"), registry=reg
        )
        self.tokens = Counter(
            "aigw_tokens", "Tokens of attempts sent", (*LABELS, "direction"), registry=reg
        )
        self.cost = Counter("aigw_cost_usd", "Cost of attempts in USD", LABELS, registry=reg)
        self.latency = Histogram(
            "aigw_request_duration_seconds",
            "Call latency as the caller saw it",
            LABELS,
            buckets=tuple(buckets),
            registry=reg,
        )

    def _series(self, provider: str, model: str, tenant: str | None, cache: str) -> _Series:
        """The metric children of one label set (folded), made once and kept: a counter's
        ``labels(...)`` costs several microseconds, its ``inc`` one."""
        key = (provider, model, tenant, cache)
        series = self._by_raw.get(key)
        if series is not None:
            return series
        fold = self._fold
        labels = (
            fold["provider"](provider),
            fold["model"](model),
            fold["tenant"](tenant),
            fold["cache_status"](cache),
        )
        with self._series_lock:
            series = self._by_labels.get(labels)
            if series is None:
                if len(self._by_labels) >= self.max_label_sets:
                    labels = (OTHER, OTHER, OTHER, OTHER)  # past the bound on label sets
                    series = self._by_labels.get(labels)
                if series is None:
                    series = _Series(self, labels)
                    self._by_labels[labels] = series
            if len(self._by_raw) < 4 * self.max_label_sets:
                self._by_raw[key] = series
        return series

    # --- the sink protocol -----------------------------------------------------------------

    def append(self, record: CallRecord) -> None:
        """Count an attempt sent to a provider: its tokens, its cost, its status."""
        if record.attempt < 1:
            return  # answered or refused without a provider: counted at the call's end
        series = self._series(
            record.provider_name, record.request_model, record.tenant_id, record.cache_status
        )
        series.status(series.attempts, self.attempts, record.status).inc()
        if record.input_tokens:
            series.input_tokens.inc(record.input_tokens)
        if record.output_tokens:
            series.output_tokens.inc(record.output_tokens)
        if record.cost_usd:
            series.cost.inc(record.cost_usd)

    def call_ended(self, end: CallEnd) -> None:
        """Count the call, its latency, and its error if it failed (not a shadow call: it
        is no client's request; its attempts, tokens and cost are counted from its rows)."""
        if end.shadow_of is not None:
            return
        series = self._series(end.provider, end.model, end.tenant, end.cache_status)
        series.status(series.requests, self.requests, end.status).inc()
        series.latency.observe(max(0.0, end.duration_s))
        if end.status != "ok":
            kind = self._fold["error_type"](end.error_type)
            series.status(series.errors, self.errors, kind).inc()

    def flush(self) -> None:
        """Nothing to deliver: counts are read when scraped."""

    def close(self) -> None:
        """Nothing to release."""

    # --- exposition ------------------------------------------------------------------------

    def exposition(self) -> tuple[bytes, str]:
        """The registry in Prometheus' text format, and its content type."""
        # lazy: the metrics extra is optional (imported already by __init__)
        from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

        if self.multiprocess_dir is None:
            return generate_latest(self.registry), CONTENT_TYPE_LATEST
        # lazy: the metrics extra is optional (imported already by __init__)
        from prometheus_client.multiprocess import MultiProcessCollector

        # Every worker's counts, summed per label set (histograms bucket by bucket): one
        # scrape shows the server. A fresh registry per scrape, as prometheus-client says.
        everyone = CollectorRegistry()
        MultiProcessCollector(everyone, path=self.multiprocess_dir)
        return generate_latest(everyone), CONTENT_TYPE_LATEST


class _Series:
    """The children of every metric for one label set; those with one more label (status,
    error type) made on first use."""

    __slots__ = (
        "labels", "attempts", "requests", "errors", "input_tokens", "output_tokens", "cost",
        "latency", "_lock",
    )  # fmt: skip

    def __init__(self, sink: MetricsSink, labels: tuple[str, ...]) -> None:
        self.labels = labels
        self.attempts: dict[str, Any] = {}
        self.requests: dict[str, Any] = {}
        self.errors: dict[str, Any] = {}
        self.input_tokens = sink.tokens.labels(*labels, "input")
        self.output_tokens = sink.tokens.labels(*labels, "output")
        self.cost = sink.cost.labels(*labels)
        self.latency = sink.latency.labels(*labels)
        self._lock = threading.Lock()

    def status(self, children: dict[str, Any], metric: Any, value: str) -> Any:
        child = children.get(value)
        if child is None:
            with self._lock:
                child = children.setdefault(value, metric.labels(*self.labels, value))
        return child


def find_metrics(sinks: Iterable[Any]) -> MetricsSink | None:
    """The first `MetricsSink` among ``sinks`` (a gateway's extra sinks), or None."""
    for sink in sinks:
        if isinstance(sink, MetricsSink):
            return sink
    return None
