"""Prometheus metrics, one registry per app (so tests and several apps in a process stay apart)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# Telemetry a viewer may report, and the reasons a refresh may have; anything else is refused.
VIEWER_EVENT_TYPES = ("refreshed", "refreshFailed", "expired", "recovered")
REFRESH_REASONS = (
    "margin",
    "interaction",
    "timed",
    "wake",
    "expired-error",
    "manual",
    "recovery",
    "access-check",
    "policy",
    "capacity",
)

# Seconds; the token API's target is tens of milliseconds, a Power BI call hundreds.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
TOKEN_OUTCOMES = ("hit", "miss", "stale", "error")


@dataclass
class PortalMetrics:
    registry: CollectorRegistry = field(
        default_factory=lambda: CollectorRegistry(auto_describe=True)
    )

    def __post_init__(self) -> None:
        self.token_requests = self._counter(
            "embedportal_token_requests", "Token API requests by outcome.", "outcome"
        )
        self.generate_token_calls = self._counter(
            "embedportal_generate_token_calls",
            "GenerateToken calls made to Power BI (cache misses).",
        )
        self.token_cache_hits = self._counter(
            "embedportal_token_cache_hits",
            "Token API requests answered from the shared token cache.",
        )
        self.viewer_refreshes = self._counter(
            "embedportal_viewer_refreshes", "Embed tokens set in open viewers, by reason.", "reason"
        )
        self.viewer_refresh_failures = self._counter(
            "embedportal_viewer_refresh_failures",
            "Failed token refreshes reported by open viewers.",
        )
        self.viewer_expiry_screens = self._counter(
            "embedportal_viewer_expiry_screens",
            "Times an open viewer's token expired and it showed the expiry screen.",
        )
        self.viewer_recoveries = self._counter(
            "embedportal_viewer_recoveries", "Viewers that recovered by themselves after an expiry."
        )
        self.open_viewers = Gauge(
            "embedportal_open_viewers",
            "Viewers connected to this instance's push channel.",
            registry=self.registry,
        )

        # --- Fleet and hot path (docs/operations.md lists them) ---------------------------
        self.request_latency = Histogram(
            "embedportal_request_seconds",
            "Time to the response's start, by route template, method and status class.",
            ("route", "method", "status"),
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._request_latency_children: dict[tuple[str, str, int], Histogram] = {}
        self.token_latency = Histogram(
            "embedportal_token_request_seconds",
            "Token API requests' time to answer, by outcome (hit, miss, stale, error).",
            ("outcome",),
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.generate_token_latency = Histogram(
            "embedportal_generate_token_seconds",
            "GenerateToken calls to Power BI, by result (ok, error).",
            ("result",),
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.push_local_fallbacks = Gauge(
            "embedportal_push_local_fallbacks",
            "Push events delivered on this instance only because Redis could not carry them "
            "(a running count since the process started).",
            registry=self.registry,
        )
        self.database_unavailable = self._counter(
            "embedportal_database_unavailable",
            "Requests answered 503 because the database failed (restart, cut connection, "
            "pool timeout).",
        )
        self.db_pool_checked_out = Gauge(
            "embedportal_db_pool_checked_out",
            "Database connections in use from this process's pool.",
            registry=self.registry,
        )
        self.db_pool_size = Gauge(
            "embedportal_db_pool_size",
            "Connections this process's pool keeps (its overflow comes on top).",
            registry=self.registry,
        )
        self.redis_live = Gauge(
            "embedportal_push_redis_live",
            "1 while push events travel through Redis, 0 while delivered locally only.",
            registry=self.registry,
        )

    def observe_request(self, *, route: str, method: str, status: int, seconds: float) -> None:
        # The labelled child, remembered: `labels()` checks, orders and locks on every call,
        # and every request comes here. Few keys: route templates × methods × status classes.
        key = (route, method, status // 100)
        child = self._request_latency_children.get(key)
        if child is None:
            child = self.request_latency.labels(route, method, f"{status // 100}xx")
            self._request_latency_children[key] = child
        child.observe(seconds)

    def observe_token_request(self, *, outcome: str, seconds: float) -> None:
        """One token API answer; `outcome` one of TOKEN_OUTCOMES (anything else: error)."""
        label = outcome if outcome in TOKEN_OUTCOMES else "error"
        self.token_latency.labels(outcome=label).observe(seconds)

    def observe_generate_token(self, *, ok: bool, seconds: float) -> None:
        """One GenerateToken call to Power BI and how long it took."""
        self.generate_token_latency.labels(result="ok" if ok else "error").observe(seconds)

    def track_pool(self, *, checked_out: Callable[[], float], size: Callable[[], float]) -> None:
        """Read the pool's figures when scraped (the pool owns them; no copy to keep fresh)."""
        self.db_pool_checked_out.set_function(checked_out)
        self.db_pool_size.set_function(size)

    def track_push(
        self, *, redis_live: Callable[[], float], fallbacks: Callable[[], float]
    ) -> None:
        self.redis_live.set_function(redis_live)
        self.push_local_fallbacks.set_function(fallbacks)

    def _counter(self, name: str, documentation: str, *labels: str) -> Counter:
        """A counter in this app's registry (never the process-wide default one)."""
        return Counter(name, documentation, labels, registry=self.registry)

    def record_viewer_event(self, event_type: str, reason: str | None) -> None:
        if event_type == "refreshed":
            self.viewer_refreshes.labels(reason=reason or "manual").inc()
        elif event_type == "refreshFailed":
            self.viewer_refresh_failures.inc()
        elif event_type == "expired":
            self.viewer_expiry_screens.inc()
        elif event_type == "recovered":
            self.viewer_recoveries.inc()


def quantile_from_buckets(buckets: list[tuple[float, float]], q: float) -> float | None:
    """The ``q`` quantile estimated from a histogram's cumulative buckets [(upper bound, count)],
    as Prometheus' histogram_quantile does (linear within a bucket). None without observations;
    the highest finite bound when the quantile falls in the +Inf bucket."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    total = buckets[-1][1]
    rank = q * total
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if bound == float("inf"):
                return lower_bound
            if count == lower_count:
                return bound
            share = (rank - lower_count) / (count - lower_count)
            return lower_bound + (bound - lower_bound) * share
        lower_bound, lower_count = bound, count
    return lower_bound


def snapshot(metrics: PortalMetrics) -> dict[str, float | None]:
    """This process's figures at a glance, for Admin → Health (totals since the process
    started; the page turns successive snapshots into rates)."""
    totals: dict[str, float] = {}
    histograms: dict[str, dict[float, float]] = {}
    for family in metrics.registry.collect():
        for sample in family.samples:
            if sample.name.endswith("_bucket"):
                base = sample.name.removesuffix("_bucket")
                bound = float(sample.labels["le"])
                per_bound = histograms.setdefault(base, {})
                per_bound[bound] = per_bound.get(bound, 0.0) + sample.value
            elif sample.name.endswith("_created"):
                continue
            else:
                totals[sample.name] = totals.get(sample.name, 0.0) + sample.value

    def quantile(name: str, q: float) -> float | None:
        return quantile_from_buckets(sorted(histograms.get(name, {}).items()), q)

    return {
        "requests": totals.get("embedportal_request_seconds_count", 0.0),
        "request_p50": quantile("embedportal_request_seconds", 0.5),
        "request_p99": quantile("embedportal_request_seconds", 0.99),
        "token_requests": totals.get("embedportal_token_requests_total", 0.0),
        "token_p99": quantile("embedportal_token_request_seconds", 0.99),
        "cache_hits": totals.get("embedportal_token_cache_hits_total", 0.0),
        "generate_token_calls": totals.get("embedportal_generate_token_calls_total", 0.0),
        "open_viewers": totals.get("embedportal_open_viewers", 0.0),
        "refresh_failures": totals.get("embedportal_viewer_refresh_failures_total", 0.0),
        "expiry_screens": totals.get("embedportal_viewer_expiry_screens_total", 0.0),
        "pool_checked_out": totals.get("embedportal_db_pool_checked_out", 0.0),
        "pool_size": totals.get("embedportal_db_pool_size", 0.0),
        "push_redis_live": totals.get("embedportal_push_redis_live", 0.0),
        "push_local_fallbacks": totals.get("embedportal_push_local_fallbacks", 0.0),
        "database_unavailable": totals.get("embedportal_database_unavailable_total", 0.0),
    }
