"""Request bodies of the Letta-compatible routes.

Letta's API has many fields memq has no use for. A field is accepted and ignored
only when ignoring it is harmless (descriptions, metadata, deprecated knobs); a
field whose effect memq cannot give (its own tools, templates, another model per
request, ...) is refused with a 422 that names it. Unknown fields outside both
lists are ignored, as Letta's server does.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from memq.api.errors import unsupported


def _refuse(model: BaseModel, refused: dict[str, str]) -> None:
    """422 for the first refused field that was given a value that matters."""
    given = {**(model.model_extra or {}), **{k: getattr(model, k) for k in model.model_fields_set}}
    for field, why in refused.items():
        value = given.get(field)
        if value not in (None, [], {}, False, ""):
            raise unsupported(field, why)


class BlockIn(BaseModel):
    model_config = ConfigDict(extra="allow")
    label: str = Field(min_length=1, max_length=100)
    value: str
    limit: int | None = Field(default=None, ge=1)


_AGENT_REFUSED = {
    "tools": "memq agents have memq's base tools only",
    "tool_ids": "memq agents have memq's base tools only",
    "tool_rules": "tool rules are not supported",
    "block_ids": "shared blocks are not supported; give memory_blocks",
    "initial_message_sequence": "an initial message sequence is not supported",
    "folder_ids": "folders are not supported; use archival memory",
    "source_ids": "sources are not supported; use archival memory",
    "identity_ids": "identities are not supported",
    "from_template": "templates are not supported",
    "template_id": "templates are not supported",
    "enable_sleeptime": "sleep-time agents are not supported",
    "message_buffer_autoclear": "memq agents always keep their message history",
    "secrets": "tool secrets are not supported",
    "tool_exec_environment_variables": "tool secrets are not supported",
}


class AgentCreate(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str | None = Field(default=None, max_length=200)
    memory_blocks: list[BlockIn] | None = None
    model: str | None = Field(default=None, max_length=200)
    embedding: str | None = None  # one embedding model per deployment: accepted, the server's is used
    system: str | None = None
    tags: list[str] | None = None

    @model_validator(mode="after")
    def _supported(self) -> "AgentCreate":
        _refuse(self, _AGENT_REFUSED)
        if (self.model_extra or {}).get("include_base_tools") is False:
            raise unsupported("include_base_tools", "memq agents always have the base tools")
        return self


class AgentUpdate(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str | None = Field(default=None, max_length=200)
    model: str | None = Field(default=None, max_length=200)
    system: str | None = None
    tags: list[str] | None = None

    @model_validator(mode="after")
    def _supported(self) -> "AgentUpdate":
        _refuse(self, {**_AGENT_REFUSED, "memory_blocks": "change blocks through core-memory/blocks/{label}",
                       "message_ids": "the message history cannot be rewritten"})
        return self

    def fields(self) -> dict[str, Any]:
        given = {k: getattr(self, k) for k in ("name", "model", "system", "tags") if k in self.model_fields_set}
        if "system" in given:
            given["system_prompt"] = given.pop("system")
        return given


class MessageIn(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["user", "system", "assistant"] = "user"
    content: str | list[dict[str, Any]]
    type: str | None = None


_SEND_REFUSED = {
    "client_tools": "client-side tools are not supported",
    "client_skills": "client skills are not supported",
    "override_model": "an agent's model is changed with agents.update, not per message",
    "override_system": "an agent's system prompt is changed with agents.update, not per message",
    "return_logprobs": "log probabilities are not returned",
    "return_token_ids": "token ids are not returned",
}


class MessageCreate(BaseModel):
    """One user message per request: in `messages` ([{role: user, content}]) or `input`."""

    model_config = ConfigDict(extra="allow")
    messages: list[MessageIn] | None = None
    input: str | list[dict[str, Any]] | None = None
    streaming: bool = False
    # POSTed the finished run, signed (memq/api/callbacks.py); needs MEMQ_CALLBACK_SECRET on the server.
    callback_url: str | None = Field(default=None, max_length=2000)
    # memq's own: a repeated key answers the first send's run (also the Idempotency-Key header).
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=190)

    @model_validator(mode="after")
    def _supported(self) -> "MessageCreate":
        _refuse(self, _SEND_REFUSED)
        return self

    def text(self) -> str:
        if self.messages and self.input is not None:
            raise unsupported("input", "give either messages or input, not both")
        if self.input is not None:
            return _text_of("input", self.input)
        if not self.messages:
            raise unsupported("messages", "one user message is required")
        if len(self.messages) != 1:
            raise unsupported("messages", "memq takes one message per request (send them one after another; "
                                          "they are processed in order)")
        m = self.messages[0]
        if m.type not in (None, "message"):
            raise unsupported("messages.0.type", f"'{m.type}' messages are not supported")
        if m.role != "user":
            raise unsupported("messages.0.role", "only user messages can be sent")
        return _text_of("messages.0.content", m.content)


def _text_of(field: str, content: str | list[dict[str, Any]]) -> str:
    if isinstance(content, str):
        return content
    parts = []
    for i, part in enumerate(content):
        if part.get("type", "text") != "text" or not isinstance(part.get("text"), str):
            raise unsupported(f"{field}.{i}", "only text content is supported")
        parts.append(part["text"])
    return "\n".join(parts)


class CancelRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    run_ids: list[str] | None = None


class BlockUpdate(BaseModel):
    model_config = ConfigDict(extra="allow")
    value: str | None = None
    limit: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _supported(self) -> "BlockUpdate":
        _refuse(self, {"label": "a block's label cannot be changed", "read_only": "read-only blocks are not supported"})
        return self
