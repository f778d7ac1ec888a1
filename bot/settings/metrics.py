"""The metrics settings: where the gates read their figures (Prometheus, Sentry), asked for
only when a configured plan reads from that source."""

from __future__ import annotations

from typing import Annotated

from pydantic import AnyHttpUrl, BaseModel, Field, SecretStr, ValidationInfo, field_validator

from bot.config_checks import metrics_sources

READ_WITHIN = 10.0
"""Seconds a whole reading may take by default (GATE_METRICS_TIMEOUT): its requests, asked
again or not, and their waits. A request took up to 10 s and was asked again for 3 s more, and a
reading asks in turn (Prometheus's clock, then the queries; Sentry again by the hour): a dead
Prometheus held a late gate's verdict (two windows) 23 s."""

GateMetricsTimeout = Annotated[float, Field(gt=0, le=120)]
"""GATE_METRICS_TIMEOUT: more than 0 seconds, at most 120 (the gates', and the backtest's)."""


class MetricsSettings(BaseModel):
    """PROMETHEUS_URL, SENTRY_URL, SENTRY_ORG, SENTRY_PROJECT, SENTRY_TOKEN,
    GATE_METRICS_TIMEOUT."""

    prometheus_url: AnyHttpUrl | None = Field(default=None, validate_default=True)
    sentry_url: AnyHttpUrl = AnyHttpUrl("https://sentry.io")
    sentry_org: str | None = None
    sentry_project: str | None = Field(default=None, pattern=r"^[0-9]+$")
    """The numeric project id: Sentry's sessions API filters projects by id."""
    sentry_token: SecretStr | None = Field(default=None, validate_default=True)
    gate_metrics_timeout: GateMetricsTimeout = READ_WITHIN
    """Seconds a gate's reading of its live source may take in all (`bot.adapters.metrics.live`):
    after them the gate says INCONCLUSIVE (a closing window's verdict, a Re-evaluate's, waits)."""

    @field_validator("prometheus_url")
    @classmethod
    def _prometheus(cls, value: AnyHttpUrl | None, info: ValidationInfo) -> AnyHttpUrl | None:
        if value is None and "prometheus" in metrics_sources(info):
            raise ValueError("missing: the rollout plan reads metrics from Prometheus")
        return value

    @field_validator("sentry_token")
    @classmethod
    def _sentry(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        if "sentry" in metrics_sources(info):
            given = {
                "SENTRY_ORG": info.data.get("sentry_org"),
                "SENTRY_PROJECT": info.data.get("sentry_project"),
                "SENTRY_TOKEN": value.get_secret_value() if value else None,
            }
            missing = [name for name, setting in given.items() if not setting]
            if missing:
                raise ValueError(
                    f"the rollout plan reads crash rates from Sentry: set {', '.join(missing)}"
                )
        return value
