"""Why a track ended is stored as data: `rollout_tracks.ended_reason` holds the domain's
stop reason as JSON (kind, actor, subject, outcome, detail, cause) instead of Slack text
with `<@U…>` mentions, which the edge now renders.

Rows written before are converted where their text says who acted (cancelled, rolled back,
kill-switch by a person); any other text is kept readable as a `legacy` reason. The
downgrade writes the reasons back as the text the card showed. The column stays Text, so
replicas of the previous version keep reading (legacy text is what they wrote).
"""

from __future__ import annotations

import json
import re
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"

_TRACKS = sa.table(
    "rollout_tracks",
    sa.column("rollout_id", sa.String),
    sa.column("track", sa.String),
    sa.column("ended_reason", sa.Text),
)

_BY_A_PERSON = re.compile(
    r"^(?P<kind>cancelled|rolled back|kill-switch) by <@(?P<actor>[A-Z0-9]+)>(?:: (?P<said>.*))?$",
    re.DOTALL,
)
_KINDS = {"cancelled": "cancelled", "rolled back": "rolled_back", "kill-switch": "kill_switch"}
_WORDS = {kind: words for words, kind in _KINDS.items()}
_GATE_WORDS = {
    "error_rate": "error rate",
    "zero_baseline": "crashes on a zero baseline",
    "crash_rate": "crash rate",
    "insufficient_sample": "not enough data",
    "no_data": "no data",
}


def _as_data(text: str) -> dict[str, Any]:
    found = _BY_A_PERSON.match(text)
    if found is None:
        return {"kind": "legacy", "detail": text}
    reason = {"kind": _KINDS[found["kind"]], "actor": found["actor"]}
    if found["said"]:
        reason["detail"] = found["said"]
    return reason


def _as_text(reason: dict[str, Any]) -> str:
    """The words the card showed (the forms the previous version wrote)."""
    kind, detail = reason["kind"], reason.get("detail", "")
    if kind in _WORDS:
        said = f": {detail}" if detail else ""
        return f"{_WORDS[kind]} by <@{reason.get('actor')}>{said}"
    subject, outcome = reason.get("subject", ""), reason.get("outcome")
    cause = f" ({_as_text(reason['cause'])})" if reason.get("cause") else ""
    skipped = outcome is None
    texts = {
        "gate_failed": f"{subject} gate {outcome}: {_GATE_WORDS.get(detail, 'failed')}",
        "rejected_on_github": f"{subject} rejected on GitHub by {reason.get('actor', 'Someone')}",
        "job_failed": f"{subject} was skipped" if skipped else f"{subject} ended `{outcome}`",
        "failure_job_failed": f"{subject} ended `{outcome}`{cause}",
        "run_ended": f"the run ended `{outcome}` first",
        "completed": f"{subject} deployed",
    }
    return str(texts.get(kind, detail))


def _convert(convert: Any, stored: Any) -> None:
    bind = op.get_bind()
    rows = bind.execute(
        sa.select(_TRACKS.c.rollout_id, _TRACKS.c.track, _TRACKS.c.ended_reason).where(
            _TRACKS.c.ended_reason.is_not(None)
        )
    ).all()
    for rollout_id, track, text in rows:
        if text.startswith("{") is not stored:
            continue
        bind.execute(
            sa.update(_TRACKS)
            .where(_TRACKS.c.rollout_id == rollout_id, _TRACKS.c.track == track)
            .values(ended_reason=convert(text))
        )


def upgrade() -> None:
    _convert(lambda text: json.dumps(_as_data(text)), stored=False)


def downgrade() -> None:
    _convert(lambda text: _as_text(json.loads(text)), stored=True)
