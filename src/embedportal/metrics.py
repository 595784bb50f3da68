"""Prometheus metrics, one registry per app (so tests and several apps in a process stay apart)."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge

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
