"""The agent's tools: JSON schemas (built once) and their execution.

A tool either returns a message (status OK) or raises ToolError (status Failed);
every other way a call can go wrong is turned into a Failed result here too, so
the step always has something to hand back to the agent.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from memq.constants import ToolStatus


class ToolError(Exception):
    """A tool call the agent can fix: the message is shown to it as a Failed result."""


@dataclass
class Block:
    value: str
    limit_chars: int


@dataclass
class ToolContext:
    """What a tool may read and change during one step; the step commits the changes."""

    agent_id: str
    blocks: dict[str, Block]
    memory: Any = None  # storage.memory.MemoryStore: recall and archival searches
    max_passage_chars: int = 20_000
    changed_blocks: dict[str, str] = field(default_factory=dict)
    replies: list[str] = field(default_factory=list)
    new_passages: list[str] = field(default_factory=list)

    def block(self, label: str) -> Block:
        if label not in self.blocks:
            raise ToolError(
                f"there is no core memory block '{label}'; blocks: {', '.join(self.blocks)}"
            )
        return self.blocks[label]

    def set_block(self, label: str, value: str) -> None:
        block = self.block(label)
        if len(value) > block.limit_chars:
            raise ToolError(
                f"core memory block '{label}' would hold {len(value)} characters, over its "
                f"limit of {block.limit_chars} ({len(block.value)} used). Nothing was changed: "
                "shorten the text or replace older content first."
            )
        block.value = value
        self.changed_blocks[label] = value


@dataclass(frozen=True)
class ToolSpec:
    name: str
    description: str
    params: dict[str, dict[str, Any]]
    required: tuple[str, ...]
    fn: Callable[..., str]

    def schema(self) -> dict[str, Any]:
        properties = dict(self.params)
        properties["request_heartbeat"] = {
            "type": "boolean",
            "description": "true to get another step right after this one; false to wait "
            "for the next event.",
        }
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": {
                    "type": "object",
                    "properties": properties,
                    "required": [*self.required, "request_heartbeat"],
                },
            },
        }


@dataclass(frozen=True)
class ToolOutcome:
    status: ToolStatus
    message: str
    heartbeat_requested: bool


_JSON_TYPES = {"string": str, "integer": int, "boolean": bool}


def _check_args(spec: ToolSpec, args: dict[str, Any]) -> None:
    missing = [p for p in spec.required if p not in args]
    if missing:
        raise ToolError(f"{spec.name}: missing argument(s): {', '.join(missing)}")
    extra = [a for a in args if a not in spec.params]
    if extra:
        raise ToolError(
            f"{spec.name}: unexpected argument(s): {', '.join(extra)}; "
            f"it takes {', '.join([*spec.params, 'request_heartbeat'])}"
        )
    for name, value in args.items():
        expected = _JSON_TYPES.get(spec.params[name].get("type", ""))
        if value is None and name not in spec.required:
            continue
        ok = isinstance(value, expected) if expected else True
        if expected is int and isinstance(value, bool):
            ok = False
        if not ok:
            raise ToolError(
                f"{spec.name}: argument '{name}' must be a {spec.params[name]['type']}, "
                f"got {type(value).__name__}"
            )


class Toolset:
    """A fixed set of tools with their schemas computed once."""

    def __init__(self, specs: list[ToolSpec]) -> None:
        self.specs = {s.name: s for s in specs}
        self.schemas: list[dict[str, Any]] = [s.schema() for s in specs]

    def execute(self, ctx: ToolContext, name: str, raw_args: str | None) -> ToolOutcome:
        """Run one tool call; never raises for anything the agent could have done wrong."""
        heartbeat = False
        try:
            spec = self.specs.get(name)
            if spec is None:
                raise ToolError(f"unknown tool '{name}'; available: {', '.join(self.specs)}")
            try:
                args = json.loads(raw_args) if raw_args and raw_args.strip() else {}
            except json.JSONDecodeError as exc:
                raise ToolError(f"{name}: arguments are not valid JSON ({exc})") from None
            if not isinstance(args, dict):
                raise ToolError(f"{name}: arguments must be a JSON object")
            hb = args.pop("request_heartbeat", False)
            if not isinstance(hb, bool):
                raise ToolError(f"{name}: request_heartbeat must be true or false")
            heartbeat = hb
            _check_args(spec, args)
            message = spec.fn(ctx, **args)
            return ToolOutcome(ToolStatus.OK, message, heartbeat)
        except ToolError as exc:
            return ToolOutcome(ToolStatus.FAILED, str(exc), heartbeat)
        except Exception as exc:  # a bug in a tool must not take the step down
            return ToolOutcome(
                ToolStatus.FAILED, f"{name} raised {type(exc).__name__}: {exc}", heartbeat
            )
