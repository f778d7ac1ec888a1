"""The rollout plan: which workflow to drive, the tracks and their stages, gates and metrics.

Frozen pydantic models, validated from the plan's data (the loader, `bot.plan_file`, reads the
YAML file (ROLLOUT_PLAN) or the built-in Scriptum plan (`default_plan.yml`) and words every
problem under the dotted path of its key). docs/plan.md documents every key. The package
re-exports its parts: `schema` (the plan, tracks, stages), `metrics` (where figures come from)
and `inputs` (the workflow_dispatch inputs).
"""

from bot.domain.plan.fields import STORED_PLAN
from bot.domain.plan.inputs import (
    BaselineInput,
    FeatureFlagsInput,
    InputSource,
    LiteralInput,
    Redeploy,
    RedeployInputSource,
    ReplacedTagInput,
    TagInput,
)
from bot.domain.plan.metrics import (
    PLACEHOLDERS,
    ManualMetrics,
    Metrics,
    PrometheusMetrics,
    PrometheusQuery,
    QueryTemplate,
    SentryMetrics,
    StageFigures,
    StaticMetrics,
    Thresholds,
    fill,
    settle_of,
)
from bot.domain.plan.schema import (
    FailureJob,
    Migrations,
    NotificationLevel,
    Notifications,
    NpmRelease,
    NpmScope,
    Observation,
    Preflight,
    PromoteMode,
    RolloutPlan,
    SlackChannelId,
    Stage,
    Track,
    TwoPersonAction,
    Workflow,
)

__all__ = [
    "PLACEHOLDERS",
    "STORED_PLAN",
    "BaselineInput",
    "FailureJob",
    "FeatureFlagsInput",
    "InputSource",
    "LiteralInput",
    "ManualMetrics",
    "Metrics",
    "Migrations",
    "NotificationLevel",
    "Notifications",
    "NpmRelease",
    "NpmScope",
    "Observation",
    "Preflight",
    "PrometheusMetrics",
    "PrometheusQuery",
    "PromoteMode",
    "QueryTemplate",
    "Redeploy",
    "RedeployInputSource",
    "ReplacedTagInput",
    "RolloutPlan",
    "SentryMetrics",
    "SlackChannelId",
    "Stage",
    "StageFigures",
    "StaticMetrics",
    "TagInput",
    "Thresholds",
    "Track",
    "TwoPersonAction",
    "Workflow",
    "fill",
    "settle_of",
]
