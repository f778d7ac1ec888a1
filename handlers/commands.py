"""The `/rollout` slash command: acknowledge at once, then route and answer ephemerally."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict
from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncRespond

from bot.services import Services
from handlers import views


class SlashCommand(BaseModel):
    """The fields of Slack's slash command payload that the bot reads."""

    model_config = ConfigDict(extra="ignore")

    text: str = ""
    user_id: str
    channel_id: str
    response_url: str


def register(app: AsyncApp, services: Services) -> None:
    @app.command("/rollout")
    async def rollout_command(ack: AsyncAck, body: dict[str, str], respond: AsyncRespond) -> None:
        await ack()
        command = SlashCommand.model_validate(body)
        services.commands.run(text=command.text, channel_id=command.channel_id)
        await respond(response_type="ephemeral", text=views.help_text(), blocks=views.help_blocks())
