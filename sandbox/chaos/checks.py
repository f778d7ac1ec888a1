"""The invariants a chaos run is checked against, on plain records of what it left behind
(a test can hand them a bad record), and the figures it prints."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from bot.domain.rollout import Phase
from sandbox.chaos.script import PLAN, Scenario
from sandbox.config import SECRETS

# -- what the run leaves behind ----------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """One rollout as it stood after the run: read from the database and from Slack."""

    tag: str
    scenario: Scenario
    phase: str | None
    """None when the rollout was never created."""
    tracks: Mapping[str, str] = field(default_factory=dict)
    gates: tuple[tuple[str, str, str], ...] = ()
    """Each window evaluation in the audit trail: (track, stage, verdict)."""
    thread: tuple[str, ...] = ()
    run_id: int | None = None


@dataclass(frozen=True)
class Evidence:
    outcomes: tuple[Outcome, ...]
    reviews: tuple[tuple[int, str, str], ...]
    """Every review GitHub recorded, by reviewers or (App mode) by the App's protection rule:
    (run id, environment, approved|rejected)."""
    dispatches: Mapping[str, int]
    """Deployment Strategy dispatches per tag."""
    logs: Mapping[str, str]
    """Each replica's log (stderr across its restarts)."""
    sent_to_slack: tuple[str, ...]
    """Everything the bot sent to Slack: Web API arguments and response_url bodies."""
    answers: Mapping[int, int] = field(default_factory=dict)
    """HTTP status of every answer the replicas gave to the run's requests (0: no answer)."""
    figures: Mapping[str, int] = field(default_factory=dict)
    """Faults and traffic, for the report."""
    seconds: float = 0.0
    secrets: tuple[str, ...] = SECRETS
    """What must appear nowhere: the sandbox's secrets, and in App mode the App's private key
    and every installation token it minted."""
    installations: Mapping[str, int] = field(default_factory=dict)
    """App mode: the id of the App's installation on each account (casefolded); empty in
    token mode."""
    calls: Mapping[tuple[str, int | None], int] = field(default_factory=dict)
    """App mode: GitHub calls to each repository (`owner/name`) by the installation whose
    token they carried, faulted or refused (None: no installation token)."""
    deliveries: Mapping[tuple[str, int | None], int] = field(default_factory=dict)
    """App mode: webhook deliveries and protection rule requests from each repository by the
    installation they named."""


@dataclass(frozen=True)
class Finding:
    invariant: str
    checked: int
    problems: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.problems


def windows_evaluated_once(evidence: Evidence) -> Finding:
    """Every window the script demands was evaluated exactly once, and no other."""
    problems = []
    checked = 0
    for outcome in evidence.outcomes:
        seen = Counter((track, stage) for track, stage, _ in outcome.gates)
        for window in sorted(set(seen) | set(outcome.scenario.gates)):
            checked += 1
            if seen[window] != 1:
                problems.append(f"{outcome.tag} {'/'.join(window)} evaluated {seen[window]} times")
    return Finding("every window evaluated exactly once", checked, tuple(problems))


def reviews_at_most_once(evidence: Evidence) -> Finding:
    """GitHub never saw an environment of a run approved or rejected twice."""
    seen = Counter((run_id, environment) for run_id, environment, _ in evidence.reviews)
    problems = tuple(
        f"run {run_id} {environment} reviewed {n} times"
        for (run_id, environment), n in sorted(seen.items())
        if n > 1
    )
    return Finding("every environment approved or rejected at most once", len(seen), problems)


def dispatched_once(evidence: Evidence) -> Finding:
    """Each rollout started exactly one run."""
    problems = tuple(
        f"{o.tag} dispatched {evidence.dispatches.get(o.tag, 0)} times"
        for o in evidence.outcomes
        if evidence.dispatches.get(o.tag, 0) != 1
    )
    return Finding("every rollout dispatched exactly once", len(evidence.outcomes), problems)


def ends_as_scripted(evidence: Evidence) -> Finding:
    """Each rollout ended, each track where its metrics (or its person) sent it, and every
    verdict was the scripted one."""
    problems = []
    for o in evidence.outcomes:
        ends = {track: str(state) for track, state in o.scenario.ends.items()}
        if o.phase != Phase.ENDED or dict(o.tracks) != ends:
            problems.append(f"{o.tag} ({o.scenario.name}): {o.phase} {dict(o.tracks)}")
        verdicts = {(track, stage): verdict for track, stage, verdict in o.gates}
        for window, wanted in sorted(o.scenario.gates.items()):
            if verdicts.get(window, wanted) != wanted:
                problems.append(f"{o.tag} {'/'.join(window)}: {verdicts[window]}, not {wanted}")
    return Finding(
        "every rollout's final state is what its metrics demand",
        len(evidence.outcomes),
        tuple(problems),
    )


def verdict_lines(label: str, verdict: str) -> tuple[re.Pattern[str], re.Pattern[str]]:
    """How a verdict shows in the thread: the machine's line and the gate card's headline."""
    name = re.escape(label)
    return (
        re.compile(rf"(?<![\w%]){name} gate \*?{verdict}\b"),
        re.compile(rf"(?<![\w%]){name} gate: {verdict}\b"),
    )


def verdicts_posted_once(evidence: Evidence) -> Finding:
    """Each verdict shows once in its rollout's thread: one line, one gate card."""
    problems = []
    checked = 0
    for o in evidence.outcomes:
        for (track, stage), verdict in sorted(o.scenario.gates.items()):
            label = PLAN.track(track).stage(stage).label
            for kind, pattern in zip(("line", "card"), verdict_lines(label, verdict), strict=True):
                checked += 1
                n = sum(1 for reply in o.thread if pattern.search(reply))
                if n != 1:
                    problems.append(f"{o.tag} {label} {verdict} {kind} posted {n} times")
    return Finding("each verdict posted once in its thread", checked, tuple(problems))


TRACEBACK = "Traceback (most recent call last)"


def no_tracebacks(evidence: Evidence) -> Finding:
    problems = []
    for name, log in sorted(evidence.logs.items()):
        lines = log.splitlines()
        for index, line in enumerate(lines):
            if TRACEBACK in line:
                last = next(
                    (ln for ln in lines[index + 1 :] if ln and not ln.startswith((" ", "\t"))),
                    "?",
                )
                problems.append(f"{name}: {last[:160]}")
    return Finding(
        "no unhandled traceback in any replica's log", len(evidence.logs), tuple(problems)
    )


def no_secrets(evidence: Evidence) -> Finding:
    places = [(f"log {name}", log) for name, log in sorted(evidence.logs.items())]
    places += [("a Slack message", sent) for sent in evidence.sent_to_slack]
    problems = tuple(
        f"{where} carries a secret ({secret[:6]}...)"
        for where, content in places
        for secret in evidence.secrets
        if secret in content
    )
    return Finding("no secret in any log line or Slack message", len(places), problems)


def no_server_errors(evidence: Evidence) -> Finding:
    """A replica that is up answers every signed request without a 5xx."""
    errors = sum(n for status, n in evidence.answers.items() if status >= 500)
    problems = (f"{errors} answers with a 5xx status",) if errors else ()
    return Finding("no 5xx answer to a signed request", sum(evidence.answers.values()), problems)


def each_owner_its_installation(evidence: Evidence) -> Finding:
    """App mode: every call to a repository carried a token of its owner's installation, and
    every delivery from it named that installation."""
    problems = []
    for what, carried in (("call", evidence.calls), ("delivery", evidence.deliveries)):
        for (repository, number), n in sorted(carried.items(), key=str):
            owners = evidence.installations.get(repository.split("/")[0].casefold())
            if number != owners:
                problems.append(
                    f"{n} x {what} of {repository} with installation {number}, "
                    f"not its owner's ({owners})"
                )
    checked = sum(evidence.calls.values()) + sum(evidence.deliveries.values())
    return Finding(
        "every GitHub call and delivery of a repository with its owner's installation",
        checked,
        tuple(problems),
    )


CHECKS: tuple[Callable[[Evidence], Finding], ...] = (
    windows_evaluated_once,
    reviews_at_most_once,
    dispatched_once,
    ends_as_scripted,
    verdicts_posted_once,
    no_tracebacks,
    no_secrets,
    no_server_errors,
)


def check(evidence: Evidence) -> list[Finding]:
    """Every invariant; in App mode (the evidence names installations) the installations' too."""
    app = (each_owner_its_installation,) if evidence.installations else ()
    return [invariant(evidence) for invariant in (*CHECKS, *app)]


def _levels(logs: Mapping[str, str]) -> Counter[str]:
    """Log lines by level (a transient fault should be one WARNING, not an ERROR)."""
    return Counter(
        level
        for log in logs.values()
        for line in log.splitlines()
        for level in ("WARNING", "ERROR", "CRITICAL")
        if f" {level} " in line
    )


def report(evidence: Evidence, findings: Iterable[Finding], *, seed: int) -> str:
    """The run in figures, then each invariant with what broke it."""
    kinds = Counter(o.scenario.name for o in evidence.outcomes)
    ended = sum(1 for o in evidence.outcomes if o.phase == Phase.ENDED)
    lines = [
        f"chaos run, seed {seed}: {len(evidence.outcomes)} rollouts ({ended} ended) "
        f"in {evidence.seconds:.0f} s",
        *(f"  {n:3d} x {name}" for name, n in sorted(kinds.items())),
        "faults and traffic:",
        *(f"  {name}: {n}" for name, n in evidence.figures.items()),
        "  replicas' log lines: "
        + ", ".join(f"{level} x {n}" for level, n in sorted(_levels(evidence.logs).items())),
        "  answers to signed requests: "
        + ", ".join(
            f"{status or 'no answer'} x {n}" for status, n in sorted(evidence.answers.items())
        ),
        "invariants:",
    ]
    for finding in findings:
        mark = "ok  " if finding.ok else "FAIL"
        lines.append(
            f"  {mark} {finding.invariant}: {finding.checked} checked, "
            f"{len(finding.problems)} broken"
        )
        shown = Counter(finding.problems)
        lines += [
            f"         - {p}" + (f" (x{n})" if n > 1 else "") for p, n in list(shown.items())[:12]
        ]
        if len(shown) > 12:
            lines.append(f"         … {len(shown) - 12} more")
    return "\n".join(lines)
