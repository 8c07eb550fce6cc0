"""Server-Sent Events from a byte stream that arrives in arbitrary pieces.

An event is lines up to a blank line; its `data:` lines joined are the payload. Lines
starting with `:` are comments (pings). `\\r\\n` line ends are accepted.
"""

from __future__ import annotations

import codecs

DONE = "[DONE]"


class SSEParser:
    """Feed bytes as they arrive; get each complete event's data payload."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._buffer = ""

    def feed(self, data: bytes) -> list[str]:
        text = self._buffer + self._decoder.decode(data)
        if "\r" in text:
            text = text.replace("\r\n", "\n")
        *events, self._buffer = text.split("\n\n")
        payloads = []
        for event in events:
            if event.startswith("data: ") and "\n" not in event:  # the usual one-line event
                payloads.append(event[6:])
            elif (payload := _payload(event)) is not None:
                payloads.append(payload)
        return payloads

    def close(self) -> list[str]:
        """The last event, if the stream ended without its blank line."""
        rest, self._buffer = self._buffer + self._decoder.decode(b"", final=True), ""
        payload = _payload(rest) if rest.strip() else None
        return [payload] if payload is not None else []


def _payload(event: str) -> str | None:
    data = [line[5:].removeprefix(" ") for line in event.split("\n") if line.startswith("data:")]
    return "\n".join(data) if data else None
