"""Transport: Slack listeners, Block Kit views and the GitHub webhook receiver.

Each listener module has `register(app, services)`; `register_all` calls them in one place.
"""

from __future__ import annotations

from slack_bolt.async_app import AsyncApp

from bot.services.catalog import Services
from handlers import buttons, errors, home, npm_buttons, run_buttons, slash_command


def register_all(app: AsyncApp, services: Services) -> None:
    """Attach every Slack listener and the error handler to the Bolt app."""
    errors.register(app, services)
    slash_command.register(app, services)
    buttons.register(app, services)
    npm_buttons.register(app, services)
    run_buttons.register(app, services)
    home.register(app, services)
