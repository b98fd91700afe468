"""Request bodies of the archival-memory and schedule routes (Letta's shapes)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from memq.api.errors import unsupported
from memq.api.models.letta import MessageIn, _refuse, _text_of


class PassageCreate(BaseModel):
    model_config = ConfigDict(extra="allow")
    text: str
    tags: list[str] | None = None
    created_at: Any = None

    @model_validator(mode="after")
    def _supported(self) -> "PassageCreate":
        _refuse(self, {"created_at": "a passage's time is when it is stored",
                       "embedding": "passages are embedded with the server's model"})
        return self


class OneTime(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["one-time"] = "one-time"
    scheduled_at: float = Field(gt=0, description="epoch milliseconds (epoch seconds are accepted too)")


class Recurring(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["recurring"]
    cron_expression: str = Field(min_length=1, max_length=200)


class ScheduleCreate(BaseModel):
    model_config = ConfigDict(extra="allow")
    messages: list[MessageIn] = Field(min_length=1)
    schedule: Recurring | OneTime
    include_return_message_types: list[str] | None = None  # a schedule returns nothing to show: ignored

    @model_validator(mode="after")
    def _supported(self) -> "ScheduleCreate":
        _refuse(self, {"callback_url": "scheduled messages do not take callbacks",
                       "max_steps": "an agent's chain is capped by MEMQ_MAX_CHAIN"})
        return self

    def text(self) -> str:
        if len(self.messages) != 1:
            raise unsupported("messages", "a scheduled message holds one user message")
        m = self.messages[0]
        if m.role != "user":
            raise unsupported("messages.0.role", "only user messages can be scheduled")
        return _text_of("messages.0.content", m.content)
