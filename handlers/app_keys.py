"""Typed keys of the aiohttp application, shared by the factory and the HTTP handlers."""

from __future__ import annotations

from aiohttp import web
from slack_bolt.async_app import AsyncApp

from bot.adapters.telemetry import PrometheusTelemetry
from bot.config import Settings
from bot.services.catalog import Services
from bot.services.directory import ServiceDirectory
from bot.services.readiness import Readiness
from handlers.ack_first import AckFirst
from handlers.refusals import RefusalLog

SETTINGS = web.AppKey("settings", Settings)
SERVICES = web.AppKey("services", Services)
"""The first service's (the only one, without ROLLOUT_SERVICES); the app-wide parts (database,
telemetry, backlog) are every service's."""
DIRECTORY = web.AppKey("directory", ServiceDirectory)
"""Every service, and how a request finds its own."""
BOLT = web.AppKey("bolt", AsyncApp)
TELEMETRY = web.AppKey("telemetry", PrometheusTelemetry)
READINESS = web.AppKey("readiness", Readiness)
ACKS = web.AppKey("acks", AckFirst)
REFUSALS = web.AppKey("refusals", RefusalLog)
"""The log lines of refused requests, one per kind per minute (`handlers.refusals`)."""
