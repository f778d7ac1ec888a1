"""The groups of the bot's settings, one module each (Slack, the services, GitHub, timing,
metrics); `bot.config.Settings` puts them together and is the one name callers import."""
