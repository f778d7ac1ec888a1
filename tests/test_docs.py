"""What README.md and docs/ tell an operator to type or write is what the code takes.

Issue 16 asks that the README examples pass unchanged: these tests read the pages themselves
(the configuration table, every `rollout-bot` and `make` line, every YAML example), so a
renamed setting, flag or plan key fails here instead of in an operator's shell.
"""

from __future__ import annotations

import importlib
import io
import re
import shlex
import textwrap
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any, get_args

import pytest
import yaml
from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from bot.cli import demo, gate
from bot.cli.main import NO_ARGUMENTS, TAKES_ARGUMENTS, main
from bot.cli.migrate import MigrateSettings
from bot.config import Settings
from bot.domain.plan import RolloutPlan
from bot.domain.rollout_command import (
    Subcommand,
    allowed_in_direct_messages,
    allowed_outside_release_channels,
    named_service,
    parse_command,
)
from bot.domain.rollout_help import HELP
from bot.plan_file import parse_plan
from bot.service_file import load_services
from storage.db import DEFAULT_SQLITE_FILE

ROOT = Path(__file__).resolve().parent.parent
PAGES = (ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")))
DEFAULT_PLAN = resources.files("bot.domain").joinpath("default_plan.yml").read_text("utf-8")

PLAN_PAGES = ("plan", "freezes", "metrics")
"""The pages that document the plan's keys and show parts of a plan."""

NOT_SETTINGS = {"ROLLOUT_BOT_COMMIT": "bot/version.py"}
"""Variables the README's table lists that the build reads, not the settings model."""


def page_text(page: Path) -> str:
    return page.read_text(encoding="utf-8")


def configuration_rows() -> dict[str, str]:
    """Each variable of the README's Configuration table, with its row."""
    table = page_text(ROOT / "README.md").split("### Configuration\n", 1)[1].split("\n#", 1)[0]
    rows: dict[str, str] = {}
    for line in table.splitlines():
        if line.startswith("| `"):
            names = line.split("|")[1]
            rows |= dict.fromkeys(re.findall(r"`([A-Z][A-Z0-9_]+)`", names), line)
    return rows


def test_the_configuration_table_lists_every_setting_and_no_other() -> None:
    documented = set(configuration_rows())
    # `migrate` reads its own settings (DATABASE_URL, its lock wait) besides the bot's.
    fields = {*Settings.model_fields, *MigrateSettings.model_fields}
    assert documented - set(NOT_SETTINGS) == {name.upper() for name in fields}
    for name, module in NOT_SETTINGS.items():
        assert f'"{name}"' in (ROOT / module).read_text(encoding="utf-8")


SPEC_NAMES = (
    *("SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "SLACK_APP_TOKEN", "SLACK_API_URL"),
    *("GITHUB_TOKEN", "GITHUB_APP_ID", "GITHUB_APP_PRIVATE_KEY", "GITHUB_APP_INSTALLATION_ID"),
    *("GITHUB_API_URL", "GITHUB_REPOSITORY", "GITHUB_WEBHOOK_SECRET", "DATABASE_URL"),
    *("ROLLOUT_PLAN", "RELEASE_CHANNELS", "ROLLOUT_APPROVERS", "PROMETHEUS_URL", "HOST", "PORT"),
    *("GITHUB_APP_PRIVATE_KEY_FILE", "ROLLOUT_SERVICES", "METRICS_TOKEN"),
)
"""SPEC section 2's configuration names: operators and tests depend on them."""


def test_the_spec_names_are_settings() -> None:
    assert set(SPEC_NAMES) <= {name.upper() for name in Settings.model_fields}


def shown(default: object) -> str:
    """A default as the README writes it: `15` for 15.0, a URL without its last `/`."""
    if isinstance(default, float) and default.is_integer():
        return str(int(default))
    return str(default).removesuffix("/")


def test_every_default_is_documented_as_the_code_has_it() -> None:
    rows = configuration_rows()
    for name, field in Settings.model_fields.items():
        if field.default_factory is not None:  # DATABASE_URL: a file in the working directory
            default: object = DEFAULT_SQLITE_FILE
        elif field.default in (None, (), PydanticUndefined):
            continue
        else:
            default = field.default
        row = rows[name.upper()]
        assert "default" in row, f"{name.upper()}: the README gives no default"
        assert shown(default) in row, f"{name.upper()}: the code's default is {default!r}"


# Every YAML example: a plan, a part of one, a services file.


def yaml_examples(page: Path) -> list[str]:
    return [
        textwrap.dedent(body)
        for body in re.findall(r"^```yaml\n(.*?)^```", page_text(page), re.S | re.M)
    ]


def merged(into: dict[str, Any], part: dict[str, Any]) -> None:
    """`part` written over `into`; a track's `metrics` replaces the one there (each source has
    keys of its own), every other mapping is merged."""
    for key, value in part.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict) and key != "metrics":
            merged(into[key], value)
        else:
            into[key] = value


def where(part: dict[str, Any]) -> tuple[str, ...]:
    """Where a part of a plan goes, from its keys (docs/plan.md's and docs/metrics.md's words)."""
    if "baseline" in part:  # "add under `crash_rate`" (a Prometheus crash rate)
        return ("tracks", "relay", "metrics", "crash_rate")
    if "metrics" in part:  # one track's (with its thresholds)
        return ("tracks", "desktop" if part["metrics"]["source"] == "sentry" else "relay")
    return ()


def plan_examples() -> Iterator[tuple[str, str]]:
    """(where, plan text) of each example of a plan page, on the built-in plan with the page's
    earlier parts (a part may extend the one before, as docs/metrics.md's do)."""
    for name in PLAN_PAGES:
        page = f"{name}.md"
        plan = yaml.safe_load(DEFAULT_PLAN)
        for number, example in enumerate(yaml_examples(ROOT / "docs" / page), start=1):
            part = yaml.safe_load(example)
            if "version" in part:  # a whole plan
                yield f"{page} #{number}", example
                continue
            at = plan
            for key in where(part):
                at = at[key]
            merged(at, part)
            yield f"{page} #{number}", yaml.safe_dump(plan)


@pytest.mark.parametrize(("example", "text"), list(plan_examples()))
def test_every_plan_example_of_the_docs_loads(example: str, text: str) -> None:
    parse_plan(text, example)


def plan_keys(model: type[BaseModel], at: str = "") -> Iterator[tuple[str, str]]:
    """(dotted path, key) of every key a plan may have."""
    for name, field in model.model_fields.items():
        key = field.alias or name
        yield f"{at}{key}", key
        for kind in (field.annotation, *get_args(field.annotation)):
            for inner in (kind, *get_args(kind)):
                if isinstance(inner, type) and issubclass(inner, BaseModel):
                    yield from plan_keys(inner, f"{at}{key}.")


def test_the_plan_docs_name_every_key() -> None:
    """A plan's unknown key is answered "docs/plan.md lists every key": each is named there or
    on the page plan.md sends it to (metrics, freezes)."""
    pages = "".join(page_text(ROOT / "docs" / f"{page}.md") for page in PLAN_PAGES)
    named = {
        word for span in re.findall(r"`([^`\n]+)`", pages) for word in re.findall(r"\w+", span)
    }
    assert [path for path, key in plan_keys(RolloutPlan) if key not in named] == []


def test_every_services_file_example_loads(tmp_path: Path) -> None:
    """The README's and docs/services.md's services files, with the plan file they name."""
    (tmp_path / "plans").mkdir()
    (tmp_path / "plans" / "billing.yml").write_text(DEFAULT_PLAN, encoding="utf-8")
    examples = [
        example
        for page in PAGES
        for example in yaml_examples(page)
        if example.startswith("services:")
    ]
    assert len(examples) == 2
    for number, example in enumerate(examples):
        path = tmp_path / f"services-{number}.yml"
        path.write_text(example, encoding="utf-8")
        services = load_services(path)
        assert [service.name for service in services] == ["relay", "billing-api"]


def test_no_yaml_example_goes_unread() -> None:
    """A new kind of example needs a place above (or here, when it is not the bot's)."""
    read = {f"{name}.md" for name in PLAN_PAGES}
    for page in PAGES:
        for example in yaml_examples(page):
            if page.name in read or example.startswith("services:"):
                continue
            assert page.name == "observability.md" and example.startswith("scrape_configs:")


# Every command line: `rollout-bot ...` and `make ...`.

PLACEHOLDERS = {"<tag>": "v1.4.2", "TAG": "v1.4.2", "<stage>": "canary", "STAGE": "canary"}
PLACEHOLDERS |= {"NAME": "billing-api"}


def command_lines(program: str) -> Iterator[tuple[str, str]]:
    """(page, line) of each `program COMMAND ...` in a code span or at the start of a code
    block's line (after `$ `), continuations joined, comments kept. A span of the program and
    a command alone names that command; its arguments are in a line of their own."""
    command = re.compile(rf"{program} (?:--)?[a-z][a-z-]*(?=\s|$)")
    for page in PAGES:
        text = page_text(page)
        for block in re.findall(r"^```\w*\n(.*?)^```", text, re.S | re.M):
            for line in block.replace("\\\n", " ").splitlines():
                line = line.strip().removeprefix("$ ")
                if command.match(line):
                    yield page.name, line
        prose = re.sub(r"^```\w*\n.*?^```", "", text, flags=re.S | re.M).replace("\n", " ")
        for span in re.findall(rf"`({program} [^`]*)`", prose):
            if command.match(span):
                yield page.name, span


def typed(line: str) -> tuple[list[str], str]:
    """The words an operator types for a documented line, and its comment."""
    words, _, comment = line.partition("#")
    for placeholder, value in PLACEHOLDERS.items():
        words = words.replace(placeholder, value)
    return shlex.split(words.replace("[", "").replace("]", "")), comment


ROLLOUT_BOT_LINES = [(page, line) for page, line in command_lines("rollout-bot") if "…" not in line]


@pytest.mark.parametrize(("page", "line"), ROLLOUT_BOT_LINES)
def test_every_rollout_bot_line_of_the_docs_is_a_command_it_takes(page: str, line: str) -> None:
    (_, command, *args), comment = typed(line)
    assert command in {"--version", *NO_ARGUMENTS, *TAKES_ARGUMENTS}, f"{page}: {line}"
    if command == "--version" or command in NO_ARGUMENTS:
        assert args == [], f"{page}: {command} takes no arguments"
    elif not args:
        return
    elif command == "gate":
        assert gate.parse_arguments(args) is not None
        if exit := re.search(r"exit (\d+)", comment):
            assert gate.main(args) == int(exit[1]), f"{page}: {line}"
    else:
        module = importlib.import_module(f"bot.cli.{TAKES_ARGUMENTS[command]}")
        module.argument_parser().parse_args(args)  # a usage error fails the test


def test_the_docs_show_every_command() -> None:
    shown = {typed(line)[0][1] for _, line in ROLLOUT_BOT_LINES}
    assert shown == {"--version", *NO_ARGUMENTS, *TAKES_ARGUMENTS}


@pytest.mark.parametrize("command", sorted({*NO_ARGUMENTS, "demo"}))
def test_help_of_a_command_says_what_it_does(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`rollout-bot serve --help` is what an operator tries first: it is no unexpected argument
    (exit 2), and it starts nothing."""
    try:
        status = main([command, "--help"])
    except SystemExit as done:  # argparse's help
        status = int(str(done.code))
    out = capsys.readouterr().out
    assert status == 0
    assert out.startswith(f"usage: rollout-bot {command}")


def test_every_make_line_of_the_docs_names_a_target_and_its_variables() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    targets = set(re.findall(r"^([a-z]+):", makefile, re.M))
    lines = [line for _, line in command_lines("make") if "..." not in line]
    assert lines
    for line in lines:
        _, target, *assignments = typed(line)[0]
        assert target in targets, line
        for assignment in assignments:
            variable = assignment.split("=", 1)[0]
            assert f"$({variable})" in makefile, line


# The `/rollout` command table.


def command_table() -> list[tuple[str, str]]:
    """(usage, who) of each row of README's `/rollout` table."""
    table = page_text(ROOT / "README.md").split("## Using it\n", 1)[1].split("\n\n|", 1)[1]
    return [
        (usage, row.split("|")[2].strip())
        for row in table.split("\n\n", 1)[0].splitlines()[2:]
        for usage in re.findall(r"`(/rollout [^`]*)`", row.split("|")[1])
    ]


def test_the_readme_says_where_each_subcommand_works() -> None:
    for usage, who in command_table():
        subcommand = Subcommand(usage.split()[1])
        assert allowed_outside_release_channels(subcommand) == ("anywhere" in who), usage
        assert allowed_in_direct_messages(subcommand) == ("DM" in who or "anywhere" in who)


def test_the_readme_shows_every_subcommand_as_the_parser_and_the_help_take_it() -> None:
    """Each row of README's command table parses once its placeholders are filled (the
    service too, right after the subcommand), and the rows name every subcommand."""
    usages = [usage for usage, _ in command_table()]
    filled = {"<tag>": "v1.4.2", "[tag]": "v1.4.2", "[reason]": "a reason", "[period]": "7d"}
    filled |= {"<run id or URL>": "9876543210", "<duration or until>": "2h", "<reason>": "why"}
    for usage in usages:
        text = usage.removeprefix("/rollout ")
        for placeholder, value in filled.items():
            text = text.replace(placeholder, value)
        text = text.replace("[--flags-ready]", "--flags-ready")
        subcommand, *words = text.split(" ")
        assert parse_command(text).name == subcommand, usage
        if subcommand == "help":  # the one that takes no service
            continue
        name, rest, _ = named_service(" ".join([subcommand, "relay", *words]), {"relay"})
        assert name == "relay", usage
        assert parse_command(rest).name == subcommand, usage
    named = {usage.split()[1] for usage in usages}
    assert named == set(Subcommand) == {entry.usage.split()[1] for entry in HELP}


def test_the_docs_count_the_scopes_of_the_slack_manifest() -> None:
    readme = page_text(ROOT / "README.md")
    asked = readme.split("The manifest\n   asks for ", 1)[1].split("For Socket Mode", 1)[0]
    manifest = yaml.safe_load((ROOT / "manifest.yml").read_text(encoding="utf-8"))
    scopes = manifest["oauth_config"]["scopes"]["bot"]
    assert set(re.findall(r"`([a-z.]+(?::[a-z.]+)?)`", asked)) == set(scopes)
    doctor = re.findall(
        r"scopes cover the manifest's (\d+)", page_text(ROOT / "docs" / "operating.md")
    )
    assert doctor == [str(len(scopes))]  # its example of `rollout-bot doctor`


LAYOUT = (
    *("bot/domain", "bot/services", "bot/adapters", "bot/cli", "bot/bootstrap.py", "handlers"),
    *("storage", "sandbox", "bench", "docs", "ops", "Dockerfile", "compose.yml", "tests"),
    *("github-app.yml", "manifest.yml", "pyproject.toml"),
)
"""SPEC section 2's repository layout (wave 2 on)."""


def test_every_file_the_docs_name_exists() -> None:
    """SPEC's layout, and each path of the repository a page names in a code span (a module,
    or one of its names: `bot/services/leases.holding`)."""
    assert [path for path in LAYOUT if not (ROOT / path).exists()] == []
    rooms = "bot|handlers|storage|sandbox|tests|bench|ops|docs|\\.ci"
    for page in PAGES:
        for path in re.findall(rf"`((?:{rooms})/[\w/.-]*)`", page_text(page)):
            module = path.rsplit(".", 1)[0]
            found = [ROOT / path, ROOT / f"{path}.py", ROOT / f"{module}.py"]
            assert any(candidate.exists() for candidate in found), f"{page.name}: {path}"


async def test_the_readme_excerpt_of_the_demo_is_what_make_demo_prints() -> None:
    """`make demo` (token mode) prints each line of the README's excerpt; only the times differ
    from run to run (and the order of the bot's replies and GitHub's job lines, which race).
    The windows end at once on the sandbox's clock instead of a second of real time each."""
    excerpt = page_text(ROOT / "README.md").split("An excerpt:\n\n```\n", 1)[1].split("```")[0]
    out = io.StringIO()
    assert await demo.run(out, skip_windows=True) == 0
    times = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC")
    printed = {times.sub("<time>", line) for line in out.getvalue().splitlines()}
    assert [line for line in excerpt.splitlines() if times.sub("<time>", line) not in printed] == []


def test_the_readme_shows_the_npm_walkthrough_as_its_page_does() -> None:
    """README's NPM_TOKEN example is docs/npm-token.md's, shortened by whole lines."""
    page = {
        line
        for block in re.findall(
            r"^```\n(.*?)^```", page_text(ROOT / "docs" / "npm-token.md"), re.S | re.M
        )
        for line in block.splitlines()
    }
    readme = page_text(ROOT / "README.md").split("### NPM_TOKEN\n", 1)[1].split("\n### ", 1)[0]
    shown = [
        line
        for block in re.findall(r"^```\n(.*?)^```", readme, re.S | re.M)
        for line in block.splitlines()
    ]
    assert len(shown) > 10
    assert [line for line in shown if line not in page] == []
