"""Persistence for rollout-bot: engines, models, repositories, durable timers, migrations."""
