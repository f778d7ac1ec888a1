"""A gate's reason as the database keeps it (a verdict, a thread event): one a newer version
wrote, during a rolling upgrade, is read as unsaid, as in rows stored before reasons were, so
the rollout or the message that holds it still loads on this version's replicas."""

from __future__ import annotations

from typing import Annotated

from pydantic import BeforeValidator

from bot.domain.gate import GateReason


def known_reason(value: object) -> GateReason | None:
    """The stored reason, or None: none stored, or one this version does not know."""
    if value is None or isinstance(value, GateReason):
        return value
    try:
        return GateReason(str(value)) if value else None
    except ValueError:
        return None


StoredReason = Annotated[GateReason | None, BeforeValidator(known_reason)]
"""A gate's reason in a stored event (`known_reason`)."""
