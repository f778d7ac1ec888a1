"""Transport: Slack listeners, Block Kit views and the GitHub webhook receiver.

Each listener module has `register(app, directory)` (the buttons' and forms' modules register
on `handlers.routing.Routes`); `register_all` calls them in one place. A listener finds the
service a request is for in the directory (`bot.services.directory`).
"""

from __future__ import annotations

from slack_bolt.async_app import AsyncApp

from bot.services.directory import ServiceDirectory
from handlers import buttons, errors, home, npm_buttons, run_buttons, slash_command, workspace
from handlers.refusals import RefusalLog
from handlers.routing import Routes


def register_all(app: AsyncApp, directory: ServiceDirectory, refusals: RefusalLog) -> None:
    """Attach every Slack listener and the error handler to the Bolt app; the refusals of
    requests from another workspace are logged through `refusals`."""
    # First: another workspace's request reaches nothing else.
    workspace.register(app, directory.telemetry, refusals)
    errors.register(app)
    slash_command.register(app, directory)
    routes = Routes()  # the buttons and forms: one Bolt listener each (`handlers.routing`)
    buttons.register(routes, directory)
    npm_buttons.register(routes, directory)
    run_buttons.register(routes, directory)
    routes.register(app)
    home.register(app, directory)
