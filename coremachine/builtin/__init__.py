"""The job types that ship with CoreMachine, as an app on the public job API.

Loaded by default (entry point `coremachine.apps:builtin`); with
COREMACHINE_APPS set, name it to keep it: "coremachine.builtin:create_app,...".
`create_app` reads its one setting (HELLO_WORLD_MAX_N) when a service starts,
not at import.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from coremachine.app import App
from coremachine.builtin import containers, diamond, hello_world, noop


class BuiltinSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", extra="ignore", frozen=True)

    hello_world_max_n: int = Field(100_000, ge=1, validation_alias="HELLO_WORLD_MAX_N")


def create_app() -> App:
    """hello_world, diamond, noop, summarize_container, list_container_contents."""
    settings = BuiltinSettings()
    app = App("builtin")
    hello_world.register(app, settings.hello_world_max_n)
    diamond.register(app)
    noop.register(app)
    containers.register(app)
    return app
