"""The sandbox's settings: ENABLE_SANDBOX (on by default outside production), SANDBOX_DELAY_MS."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import BaseModel, Field, model_validator

if TYPE_CHECKING:
    from gomflow_messaging.settings import Environment


class SandboxSettings(BaseModel):
    enable_sandbox: bool | None = None  # default: on outside production
    sandbox_delay_ms: int = Field(0, ge=0, le=60_000)

    if TYPE_CHECKING:
        environment: Environment

    @model_validator(mode="after")
    def _sandbox_default(self) -> SandboxSettings:
        if self.enable_sandbox is None:
            self.enable_sandbox = self.environment != "production"
        return self
