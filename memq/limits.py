"""The door's window check for the client operations; it lives in workers/limits.py
(it uses the step's window arithmetic), re-exported here for the client side."""

from __future__ import annotations

from workers.limits import (
    CHARS_PER_TOKEN,
    EVENT_PACKING_TOKENS,
    MessageRoom,
    agent_window,
    check_message_fits,
    estimate_tokens,
    known_window,
    message_room,
)

__all__ = ["CHARS_PER_TOKEN", "EVENT_PACKING_TOKENS", "MessageRoom", "agent_window", "check_message_fits",
           "estimate_tokens", "known_window", "message_room"]
