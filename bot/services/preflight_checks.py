"""The preflight checks GitHub answers for a release: its migrations additive only, and its
image published (when the plan checks it); a check GitHub failed to answer is not checked."""

from __future__ import annotations

from bot.domain import rollout as machine
from bot.domain.errors import GitHubError
from bot.domain.plan import RolloutPlan
from bot.domain.rollout import Check, CheckState
from bot.services.ports import GitHubGateway


async def github_checks(
    github: GitHubGateway, plan: RolloutPlan, tag: str, *, at: str | None
) -> tuple[Check, Check]:
    """The preflight checks GitHub answers: the migrations of the release, at `at` (the commit
    its preflight read the tag at; the tag's name when it read none), and the image (when
    the plan checks it). A check GitHub failed to answer is an ERROR that says it was not
    checked."""
    rule = plan.preflight
    ref = at or tag
    try:
        paths = await github.list_directory(path=rule.migrations.directory, ref=ref)
        files = {
            path: await github.read_file(path=path, ref=ref)
            for path in paths
            if rule.migrations.applies_to(path)
        }
        migrations = machine.migration_check(plan, files)
    except GitHubError as error:
        migrations = _not_checked(error)
    if not rule.check_image_published:
        image = Check(CheckState.SKIPPED, "not checked (turned off in the plan)")
    else:
        image = await _image_check(github, plan, tag)
    return migrations, image


async def _image_check(github: GitHubGateway, plan: RolloutPlan, tag: str) -> Check:
    package = plan.preflight.image_package
    try:
        published = await github.image_published(package=package, tag=tag)
    except GitHubError as error:
        return _not_checked(error)
    if published is None:
        return Check(
            CheckState.SKIPPED,
            f"not checked: GitHub's packages API does not take a GitHub App's token (only "
            f"a personal access token (classic)); make sure `{package}:{tag}` is published",
        )
    if published:
        return Check(CheckState.PASS, f"`{package}:{tag}` is published")
    return Check(CheckState.FAIL, f"`{package}:{tag}` is not published yet")


def _not_checked(error: GitHubError) -> Check:
    """A preflight check GitHub failed to answer: not checked, and why, in a few words."""
    return Check(CheckState.ERROR, f"could not check ({error.cause}); not checked, Re-check it")
