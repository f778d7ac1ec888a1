"""The image and the compose file: what can be checked without a container engine always is
(the files parse, every command and health path they name exists, the final stage runs as a
non-root user with a HEALTHCHECK); building the image and running it needs an engine."""

from __future__ import annotations

import asyncio
import re
import shlex
import shutil
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from importlib.metadata import version
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml
from aiohttp import web
from services import missing

from bot.bootstrap import create_app
from bot.cli.main import USAGE
from bot.config import Settings
from bot.services.readiness import READY_WITHIN_S
from sandbox.config import bot_environment
from sandbox.prometheus_exporter import promtool_binary

ROOT = Path(__file__).resolve().parent.parent
NO_ENGINE = "no container engine (docker daemon or podman) on this machine"
HTTP_PATH = re.compile(r"http://127\.0\.0\.1:[^/]*?(/[\w/.-]*)")
"""The path a health check asks of the container itself (its port may be an expression)."""


def cli_commands() -> set[str]:
    """The commands `rollout-bot --help` lists."""
    listed = USAGE.split("commands:", 1)[1]
    return {line.split()[0] for line in listed.splitlines() if line.strip()}


def get_routes() -> set[str]:
    return routes(method="GET")


def routes(*, method: str | None = None) -> set[str]:
    """The paths `serve` answers (for `method`, or any)."""
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        **{
            name.lower(): value
            for name, value in bot_environment(
                slack_api_url="http://127.0.0.1:9/api/",
                github_api_url="http://127.0.0.1:9/",
                database_url="sqlite:///unused.db",
            ).items()
        },
    )
    app = create_app(settings)
    return {
        route.resource.canonical
        for route in app.router.routes()
        if method in (None, route.method) and route.resource is not None
    }


def test_the_help_names_every_path_serve_answers() -> None:
    (serve,) = re.findall(r"^  serve .*\n(?:   +.*\n)*", USAGE, re.MULTILINE)
    listed = set(re.findall(r"/[\w/]+", serve))
    assert listed == routes(), serve


def test_what_the_readme_and_the_manifests_call_is_served() -> None:
    """Every `METHOD /path` of the README, the Slack manifest's request URLs and the GitHub
    App's webhook URL are routes `serve` answers with that method, and the README names each
    route."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    named = set(re.findall(r"`(GET|POST) (/[^`\s]*)`", readme))
    slack = yaml.safe_load((ROOT / "manifest.yml").read_text(encoding="utf-8"))
    (command,) = slack["features"]["slash_commands"]
    settings = slack["settings"]
    urls = [
        command["url"],
        settings["event_subscriptions"]["request_url"],
        settings["interactivity"]["request_url"],
    ]
    app = yaml.safe_load((ROOT / "github-app.yml").read_text(encoding="utf-8"))
    urls.append(app["hook_attributes"]["url"])
    called = named | {("POST", urlparse(url).path) for url in urls}
    served = {(method, path) for method in ("GET", "POST") for path in routes(method=method)}
    assert called <= served
    assert named == served


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "compose.yml").read_text(encoding="utf-8"))
    return loaded


def stages() -> list[list[tuple[str, str]]]:
    """(instruction, arguments) of each of the Dockerfile's stages, continuation lines joined."""
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    lines = [line for line in text.replace("\\\n", " ").splitlines() if line.strip()]
    stages: list[list[tuple[str, str]]] = []
    for line in lines:
        if line.lstrip().startswith("#"):
            continue
        instruction, _, arguments = line.strip().partition(" ")
        if instruction.upper() == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((instruction.upper(), arguments.strip()))
    assert len(stages) >= 2, "a multi-stage build"
    return stages


def final_stage() -> list[tuple[str, str]]:
    return stages()[-1]


def health_paths(command: str) -> list[str]:
    return HTTP_PATH.findall(command)


def test_the_final_stage_runs_as_a_non_root_user_with_a_healthcheck_on_healthz() -> None:
    stage = final_stage()
    users = [arguments for instruction, arguments in stage if instruction == "USER"]
    assert users, "the final stage sets USER"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    (healthcheck,) = [arguments for instruction, arguments in stage if instruction == "HEALTHCHECK"]
    paths = health_paths(healthcheck)
    assert paths == ["/healthz"]
    assert set(paths) <= get_routes()
    entry = dict(stage)
    assert entry["ENTRYPOINT"] == '["rollout-bot"]' and entry["CMD"] == '["serve"]'
    # No compiler in the image: the wheels were built in the first stage.
    assert not any(
        tool in arguments
        for instruction, arguments in stage
        if instruction == "RUN"
        for tool in ("apt-get", "gcc", "build-essential", "pip wheel")
    )


def test_every_dependency_the_image_installs_is_locked_with_its_hashes() -> None:
    """Two builds of one commit ship the same libraries: each pip command that would resolve
    dependencies takes requirements.lock in hash-checking mode (`make lock`); the bot's own
    wheel comes without its dependencies."""
    commands = [
        command
        for stage in stages()
        for instruction, arguments in stage
        if instruction == "RUN"
        for command in arguments.split("&&")
        if re.search(r"\bpip (install|wheel)\b", command)
    ]
    assert commands
    for command in commands:
        words = shlex.split(command)
        locked = "--require-hashes" in words and any(
            word.endswith("requirements.lock") for word in words
        )
        assert locked or "--no-deps" in words, command


def test_compose_runs_two_replicas_after_migrate_with_real_commands_and_paths() -> None:
    defined = compose()["services"]
    commands = cli_commands()
    routes = get_routes()
    bots = {name for name, s in defined.items() if s.get("image") == "rollout-bot:local"}
    serving = {name for name in bots if defined[name]["command"] == ["serve"]}
    assert len(serving) == 2
    assert defined["migrate"]["command"] == ["migrate"]
    for name in serving:
        assert defined[name]["depends_on"]["migrate"] == {
            "condition": "service_completed_successfully"
        }
    for name in bots:
        (command,) = defined[name]["command"]
        assert command in commands, f"{name}: rollout-bot {command} is not a command"
        assert defined[name].get("init") is True, f"{name}: the bot would run as PID 1"
    checked = 0
    for name, service in defined.items():
        test = service.get("healthcheck", {}).get("test")
        if test is None:
            continue
        paths = health_paths(" ".join(test))
        assert set(paths) <= routes, f"{name}: {paths} are not all routes of the bot"
        checked += len(paths)
    assert checked == 2  # both replicas


def test_every_docker_run_line_of_the_docs_runs_an_init() -> None:
    """Without `--init` the bot is PID 1: a signal it has no handler for does nothing (the
    kernel gives PID 1 no default action), and exited children are never reaped."""
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    lines = [
        (page.name, line)
        for page in pages
        for line in page.read_text(encoding="utf-8").splitlines()
        if re.search(r"\bdocker run\b.*\s(--rm|-d|--env-file)\b", line)
    ]
    assert lines
    assert [(page, line) for page, line in lines if "--init" not in line] == []


def test_the_proxy_asks_readyz_and_prometheus_scrapes_each_replica() -> None:
    defined = compose()["services"]
    serving = sorted(name for name, s in defined.items() if s.get("command") == ["serve"])
    haproxy = (ROOT / "ops" / "haproxy.cfg").read_text(encoding="utf-8")
    (check,) = re.findall(r"option httpchk GET (\S+)", haproxy)
    assert check == "/readyz" and check in get_routes()
    assert sorted(re.findall(r"^\s*server (\S+) ", haproxy, re.MULTILINE)) == serving

    prometheus = yaml.safe_load((ROOT / "ops" / "prometheus.yml").read_text(encoding="utf-8"))
    assert prometheus["rule_files"] == ["alerts.yml"]
    (job,) = prometheus["scrape_configs"]
    assert job["metrics_path"] == "/metrics" and "/metrics" in get_routes()
    (targets,) = [static["targets"] for static in job["static_configs"]]
    assert sorted(targets) == [f"{name}:3000" for name in serving]
    mounts = defined["prometheus"]["volumes"]
    assert "./ops/alerts.yml:/etc/prometheus/alerts.yml:ro" in mounts


def test_promtool_accepts_the_prometheus_configuration(tmp_path: Path) -> None:
    promtool = promtool_binary()
    if promtool is None:
        missing("promtool is missing (apt-get install prometheus)")
    config = tmp_path / "prometheus.yml"
    shutil.copyfile(ROOT / "ops" / "prometheus.yml", config)
    shutil.copyfile(ROOT / "ops" / "alerts.yml", tmp_path / "alerts.yml")
    checked = subprocess.run(  # noqa: S603 - a fixed command line
        [promtool, "check", "config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_haproxy_accepts_the_proxy_configuration() -> None:
    haproxy = shutil.which("haproxy")
    if haproxy is None:
        missing("haproxy is missing (apt-get install haproxy)")
    # Outside compose the replicas' names do not resolve: a warning, not an error.
    checked = subprocess.run(  # noqa: S603 - a fixed command line
        [haproxy, "-c", "-f", str(ROOT / "ops" / "haproxy.cfg")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def container_engine() -> str | None:
    """`docker` or `podman`, whichever answers `info`; None when neither does."""
    for engine in ("docker", "podman"):
        if shutil.which(engine) is None:
            continue
        answered = subprocess.run(  # noqa: S603 - a fixed command line
            [engine, "info"], capture_output=True, timeout=30, check=False
        )
        if answered.returncode == 0:
            return engine
    return None


@pytest.fixture(scope="module")
def image() -> Iterator[tuple[str, str]]:
    engine = container_engine()
    if engine is None:
        pytest.skip(NO_ENGINE)
    tag = "rollout-bot:test"
    subprocess.run(  # noqa: S603
        [engine, "build", "--build-arg", "ROLLOUT_BOT_COMMIT=c0ffee1", "--tag", tag, str(ROOT)],
        check=True,
        timeout=1200,
    )
    yield engine, tag
    subprocess.run([engine, "rmi", "--force", tag], check=False, timeout=120)  # noqa: S603


def run_in(
    image: tuple[str, str], *args: str, env: dict[str, str] | None = None, entrypoint: str = ""
) -> str:
    engine, tag = image
    options = [f"--env={name}={value}" for name, value in (env or {}).items()]
    if entrypoint:
        options.append(f"--entrypoint={entrypoint}")
    done = subprocess.run(  # noqa: S603 - the engine and fixed arguments
        [engine, "run", "--rm", *options, tag, *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, f"{shlex.join(args)}: {done.stderr}"
    return done.stdout


def test_the_image_knows_its_version(image: tuple[str, str]) -> None:
    expected = f"rollout-bot {version('rollout-bot')} (commit c0ffee1)"
    assert run_in(image, "--version").strip() == expected


def test_the_image_checks_a_configuration_as_a_non_root_user(image: tuple[str, str]) -> None:
    env = bot_environment(
        slack_api_url="http://127.0.0.1:9/api/",
        github_api_url="http://127.0.0.1:9/",
        database_url="sqlite:////app/rollout-bot.db",
    )
    out = run_in(image, "check-config", env=env)
    assert "RELEASE_CHANNELS" in out and "xoxb-" not in out
    assert run_in(image, "-u", entrypoint="id").strip() == "10001"


def local_proxy(config: str, *, listen: int, replica: int) -> str:
    """ops/haproxy.cfg with its published port on loopback and one replica at `replica` on
    loopback, instead of compose's names (which resolve only inside compose)."""
    config = config.replace("bind :3000", f"bind 127.0.0.1:{listen}")
    config = re.sub(r"^\s*server bot-2 .*\n", "", config, flags=re.MULTILINE)
    config = re.sub(
        r"^(\s*server bot-1) .*$", rf"\1 127.0.0.1:{replica} check", config, flags=re.MULTILINE
    )
    return config.split("\nresolvers ", 1)[0] + "\n"


@asynccontextmanager
async def proxied(
    tmp_path: Path, haproxy: str, behind: web.Application, ports: Callable[[], int]
) -> AsyncIterator[int]:
    """`behind` served as the one replica of a real haproxy run with ops/haproxy.cfg; the port
    the proxy listens on (it may not listen yet)."""
    runner = web.AppRunner(behind)
    await runner.setup()
    listen, port = ports(), ports()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    config = tmp_path / "haproxy.cfg"
    config.write_text(
        local_proxy(
            (ROOT / "ops" / "haproxy.cfg").read_text(encoding="utf-8"), listen=listen, replica=port
        ),
        encoding="utf-8",
    )
    proxy = await asyncio.create_subprocess_exec(
        haproxy, "-db", "-f", str(config), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        yield listen
    finally:
        proxy.terminate()
        await proxy.wait()
        await runner.cleanup()


async def ask(port: int, method: str, path: str) -> int:
    """The status of one request for `path` exactly as written (percent-escapes included)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = f"{method} {path} HTTP/1.1\r\nHost: rollout.example.com\r\nConnection: close\r\n"
    writer.write(f"{head}Content-Length: 0\r\n\r\n".encode())
    status = int((await reader.readline()).split()[1])
    writer.close()
    await writer.wait_closed()
    return status


async def test_the_proxy_publishes_slacks_and_githubs_doors_only_however_a_path_is_spelled(
    tmp_path: Path, unused_tcp_port_factory: Callable[[], int]
) -> None:
    haproxy = shutil.which("haproxy")
    if haproxy is None:
        missing("haproxy is missing (apt-get install haproxy)")
    reached: list[str] = []

    async def replica(request: web.Request) -> web.Response:
        reached.append(request.path)  # the path as the bot's router matches it (decoded)
        return web.Response(text="the replica")

    behind = web.Application()
    for route in ("/healthz", "/readyz", "/metrics"):
        behind.router.add_get(route, replica)
    for route in ("/slack/events", "/github/webhook"):
        behind.router.add_post(route, replica)
    async with proxied(tmp_path, haproxy, behind, unused_tcp_port_factory) as listen:
        for _ in range(200):  # until it listens
            try:
                await ask(listen, "GET", "/healthz")
                break
            except (OSError, IndexError):
                await asyncio.sleep(0.05)
        assert await ask(listen, "POST", "/slack/events") == 200
        assert await ask(listen, "POST", "/github/webhook") == 200
        reached.clear()
        # The bot decodes percent-escapes before it routes: /%6Detrics is its /metrics.
        for path in ("/metrics", "/%6Detrics", "/%6detrics?x=1", "/readyz", "/%72eadyz"):
            assert await ask(listen, "GET", path) == 404, path
        assert reached == []


def test_the_proxy_waits_for_readyz_longer_than_its_budget() -> None:
    """`/readyz` takes up to READY_WITHIN_S on a slow database; the proxy's check must wait
    longer (without `timeout check` it waits `inter`), and one failure must not drop a replica."""
    haproxy = (ROOT / "ops" / "haproxy.cfg").read_text(encoding="utf-8")
    (timeout,) = re.findall(r"^\s*timeout check (\d+)s$", haproxy, re.MULTILINE)
    assert int(timeout) > READY_WITHIN_S
    (fall,) = re.findall(r"^\s*default-server .*\bfall (\d+)\b", haproxy, re.MULTILINE)
    assert int(fall) >= 2


async def test_the_proxy_keeps_a_replica_whose_readiness_is_slow_or_fails_once(
    tmp_path: Path, unused_tcp_port_factory: Callable[[], int]
) -> None:
    """ops/haproxy.cfg against a replica on a slow but working database: a check answered 200
    after READY_WITHIN_S and a half, one at once, then one 503 (a blip). Requests reach it
    throughout. (HAProxy starts a server at its lowest healthy level: before any success one
    failure takes it out whatever `fall` says.)"""
    haproxy = shutil.which("haproxy")
    if haproxy is None:
        missing("haproxy is missing (apt-get install haproxy)")
    answers = [(200, READY_WITHIN_S + 0.5), (200, 0.0), (503, 0.0)]
    answered: asyncio.Queue[int] = asyncio.Queue()

    async def readyz(request: web.Request) -> web.Response:
        status, slowness = answers.pop(0) if answers else (200, 0.0)
        await asyncio.sleep(slowness)  # the replica's slowness, not a wait for something
        answered.put_nowait(status)
        return web.Response(status=status)

    async def slack(request: web.Request) -> web.Response:
        return web.Response(text="the replica")

    behind = web.Application()
    behind.router.add_get("/readyz", readyz)
    behind.router.add_post("/slack/events", slack)
    async with proxied(tmp_path, haproxy, behind, unused_tcp_port_factory) as listen:
        async with asyncio.timeout(30):
            for expected in (200, 200, 503):
                assert await answered.get() == expected
                assert await ask(listen, "POST", "/slack/events") == 200, f"after {expected}"
