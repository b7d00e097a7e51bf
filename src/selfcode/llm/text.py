"""Two text helpers that the client, the replay and the recorder share."""

from __future__ import annotations

from collections.abc import Sequence

from selfcode.llm.protocol import Message

__all__ = ["last_user_message", "one_line"]


def one_line(text: str, limit: int = 200) -> str:
    """`text` on one line, without a final full stop, cut to `limit` characters: for messages."""
    text = " ".join(text.split()).rstrip(".")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def last_user_message(messages: Sequence[Message]) -> str:
    """The content of the last message from the user; "" when there is none."""
    for message in reversed(messages):
        if message.get("role") == "user":
            return message.get("content", "")
    return ""
