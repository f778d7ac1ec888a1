"""Transport: Slack listeners, Block Kit views and the GitHub webhook receiver.

Each listener module has `register(app, directory)`; `register_all` calls them in one place. A
listener finds the service a request is for in the directory (`bot.services.directory`).
"""

from __future__ import annotations

from slack_bolt.async_app import AsyncApp

from bot.services.directory import ServiceDirectory
from handlers import buttons, errors, home, npm_buttons, run_buttons, slash_command


def register_all(app: AsyncApp, directory: ServiceDirectory) -> None:
    """Attach every Slack listener and the error handler to the Bolt app."""
    errors.register(app)
    slash_command.register(app, directory)
    buttons.register(app, directory)
    npm_buttons.register(app, directory)
    run_buttons.register(app, directory)
    home.register(app, directory)
