"""Stream the `traceEvents` array of a large JSON trace as batches of decoded events.

A profiler trace is one JSON document whose bulk is an array of small event objects.
Decoding it whole builds millions of Python objects at once. This module reads it in
chunks (gzip or plain) and decodes only the events a caller wants, a batch at a time:

1. The top-level object is walked key by key; every key but `traceEvents` is decoded
   into `header` (they are small).
2. The array's bytes are split at the separator the writer puts between events, learned
   from the first two events (Kineto writes `},\\n  {`; a minified writer `},{`).
3. A caller's `classify` pattern, searched in each event's raw bytes, sorts the events
   into groups (its first group, e.g. the category) and drops the rest before any
   decoding (most of a trace is host ops and flow arrows).
4. The caller gets the raw events by group and reads them as columns (see `chrome`), or
   decodes a group with one `json.loads` call (`decode_pieces`).

A split is only a guess at event boundaries. A separator holding a newline is trusted:
JSON forbids raw newlines inside strings, and a consistent pretty-printer never writes
the events' indentation inside an event. Otherwise (`},{`) every piece must be balanced
(quotes, braces, brackets) or decode alone as one object; a failed check re-reads that
stretch exactly, one event at a time, and hands over decoded events instead.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stepgap.analyze.chunks import Progress, byte_chunks
from stepgap.analyze.trace import TraceError

HEADER_LIMIT = 64 << 20  # a header larger than this is not a trace header
MAX_PENDING = 4 << 20  # an event (or header value) still undecodable with this much after it

_WHITESPACE = " \t\n\r"
_SEPARATOR = re.compile(rb"\}\s*,\s*\{")
_DECODER = json.JSONDecoder()


class _NeedMore(Exception):
    """The buffer ends before the construct being read does."""


@dataclass
class Batch:
    """Events of one stretch of the array: raw (`pieces`, by group; each the bytes inside
    one event's braces) and/or decoded (`events`, from the exact path)."""

    pieces: dict[bytes, list[bytes]] = field(default_factory=dict)
    events: list[dict] = field(default_factory=list)


def decode_pieces(pieces: list[bytes], path: Path | str, parse_float=None) -> list[dict]:
    """Decode raw events (as `Batch.pieces` holds them) in one call; `parse_float` as for
    `json.loads` (`Decimal` keeps timestamps exact)."""
    try:
        events = json.loads(b"[{" + b"},{".join(pieces) + b"}]", parse_float=parse_float)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as error:
        problem = getattr(error, "msg", type(error).__name__)
        raise TraceError(f"{path}: invalid JSON inside traceEvents ({problem})") from None
    return [e for e in events if type(e) is dict]


# -- the top-level object ------------------------------------------------------------------------
def _skip_ws(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in _WHITESPACE:
        pos += 1
    if pos >= len(text):
        raise _NeedMore
    return pos


def _decode_value(text: str, pos: int, final: bool, decoder=_DECODER) -> tuple[Any, int]:
    """One JSON value at `pos`. Before the end of the file, a value that fails near the
    buffer's end may just be cut by it (`_NeedMore`); one that fails far from it is bad."""
    try:
        return decoder.raw_decode(text, pos)
    except json.JSONDecodeError:
        if not final and len(text) - pos < MAX_PENDING:
            raise _NeedMore from None
        raise


def _read_members(
    text: str, pos: int, header: dict, final: bool, first: bool = True
) -> tuple[str, int]:
    """Read `"key": value` members until `traceEvents` or the object's end (`first`: no
    member read yet, so no comma is due).

    Returns ("events", offset after the array's `[`) or ("end", offset after `}`)."""
    while True:
        pos = _skip_ws(text, pos)
        if text[pos] == "}":
            return "end", pos + 1
        if not first:
            if text[pos] != ",":
                raise json.JSONDecodeError("Expecting ',' delimiter", text, pos)
            pos = _skip_ws(text, pos + 1)
        first = False
        if text[pos] != '"':
            raise json.JSONDecodeError("Expecting property name", text, pos)
        key, pos = _decode_value(text, pos, final)
        pos = _skip_ws(text, pos)
        if text[pos] != ":":
            raise json.JSONDecodeError("Expecting ':' delimiter", text, pos)
        pos = _skip_ws(text, pos + 1)
        if key == "traceEvents":
            if text[pos] != "[":
                raise json.JSONDecodeError("traceEvents is not an array", text, pos)
            return "events", pos + 1
        header[key], pos = _decode_value(text, pos, final)
        # a number at the very end of the buffer may continue in the next chunk
        if not final and pos >= len(text):
            raise _NeedMore


def _as_text(data: bytes, final: bool) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        if not final and error.start >= len(data) - 3:
            return data[: error.start].decode("utf-8")  # a character cut by the chunk's end
        raise


# -- the event stream ----------------------------------------------------------------------------
class EventStream:
    """Iterate `Batch`es of the traceEvents array; `header` holds the document's other keys.

    `classify` is searched in each event's raw bytes: no match drops the event, a match
    files it under the pattern's first group (b"" when that group did not take part). It
    may keep extra events (the caller filters exactly) but must not drop one it needs.
    Decoded events' floats are made by `parse_float` (`json.loads`' default: float).
    """

    def __init__(
        self,
        path: Path,
        classify: re.Pattern[bytes],
        progress: Progress | None = None,
        parse_float=None,
    ) -> None:
        self.path = Path(path)
        self.parse_float = parse_float
        self.decoder = json.JSONDecoder(parse_float=parse_float)
        self.classify = classify
        self.progress = progress
        self.header: dict[str, Any] = {}
        self.separator: bytes | None = None
        self.exact_fallbacks = 0  # stretches re-read event by event (for tests / diagnostics)

    def _error(self, problem: str) -> TraceError:
        return TraceError(f"{self.path}: {problem}")

    def __iter__(self) -> Iterator[Batch]:
        chunks = byte_chunks(self.path, self.progress)
        buffer, eof = b"", False
        while True:  # the header, up to the events array
            try:
                kind, offset = self._header(buffer, eof)
                break
            except _NeedMore:
                if eof or len(buffer) > HEADER_LIMIT:
                    raise self._error("not a JSON trace (no traceEvents array found)") from None
                chunk = next(chunks, None)
                eof = chunk is None
                buffer += chunk or b""
        if kind == "end":
            raise self._error("no traceEvents array in the JSON document")
        self._top_is_array = kind == "array"
        batch, carry = self._fast(buffer[offset:])
        yield batch
        for chunk in chunks:
            batch, carry = self._fast(carry + chunk)
            yield batch
        yield Batch(events=self._tail(carry))

    def _header(self, data: bytes, final: bool) -> tuple[str, int]:
        try:
            text = _as_text(data, final)
            pos = _skip_ws(text, 0)
            if text[pos] == "[":
                return "array", len(text[: pos + 1].encode())
            if text[pos] != "{":
                raise self._error("not a JSON trace (it does not start with '{' or '[')")
            kind, pos = _read_members(text, pos + 1, self.header, final)
        except json.JSONDecodeError as error:
            if _cut_short(error):
                raise self._error("the trace ends in its header (truncated?)") from None
            raise self._error(f"invalid JSON ({error})") from None
        except UnicodeDecodeError:
            raise self._error("not UTF-8 text (is it a trace?)") from None
        return kind, len(text[:pos].encode())

    # -- the fast path: split, classify, check --------------------------------------------------
    def _fast(self, carry: bytes) -> tuple[Batch, bytes]:
        """Take the complete events at the start of `carry`; return them and the rest."""
        learned: list[dict] = []
        if self.separator is None:
            learned, carry = self._learn_separator(carry)
            if self.separator is None:
                return Batch(events=learned), carry
        if not carry.startswith(b"{"):
            exact, carry = self._exact_prefix(carry, final=False)
            return Batch(events=learned + exact), carry
        if b"\n" in self.separator:  # trusted (module docstring): find only the kept events
            cut = carry.rfind(self.separator)
            if cut < 0:
                return Batch(events=learned), carry
            batch = Batch(events=list(learned))
            self._find(carry[: cut + 1], batch)
            return batch, carry[cut + len(self.separator) - 1 :]
        parts = carry[1:].split(self.separator)
        rest = parts.pop()  # the last event may continue in the next chunk
        batch = Batch(events=list(learned))
        if not self._group(parts, batch):  # a guess failed its check: read it exactly
            self.exact_fallbacks += 1
            exact, carry = self._exact_prefix(carry, final=False)
            return Batch(events=learned + exact), carry
        return batch, b"{" + rest

    def _find(self, region: bytes, batch: Batch) -> None:
        """File the events of `region` (whole events, `{` ... `}`) that `classify` finds,
        without touching the others: search from where the last hit's event ended, cut out
        each hit's event."""
        separator, groups = self.separator, batch.pieces
        assert separator is not None  # learned before any region is searched
        search, grouped = self.classify.search, self.classify.groups > 0
        skip = len(separator) - 1  # a piece starts after the separator's `{`
        last = len(region) - 1  # the final `}`
        done = 0
        while (match := search(region, done)) is not None:
            at = match.start()
            begin = region.rfind(separator, 0, at)
            begin = 1 if begin < 0 else begin + skip + 1
            done = region.find(separator, at)
            if done < 0:
                done = last
            key = (match.group(1) if grouped else None) or b""
            piece = region[begin:done]
            if key in groups:
                groups[key].append(piece)
            else:
                groups[key] = [piece]

    def _group(self, parts: list[bytes], batch: Batch) -> bool:
        """File kept pieces into `batch` by group; False when a piece may not be one whole
        event (then the caller re-reads the stretch exactly)."""
        search = self.classify.search
        grouped = self.classify.groups > 0
        groups = batch.pieces
        for piece in parts:
            match = search(piece)
            if match is None:
                if not _balanced(piece) and _whole(piece, self.parse_float) is None:
                    return False
                continue
            if not _balanced(piece):
                event = _whole(piece, self.parse_float)  # odd counts in strings, wrong split?
                if event is None:
                    return False
                batch.events.append(event)
                continue
            key = (match.group(1) if grouped else None) or b""
            if key in groups:
                groups[key].append(piece)
            else:
                groups[key] = [piece]
        return True

    def _learn_separator(self, carry: bytes) -> tuple[list[dict], bytes]:
        """Decode the first event exactly and note the bytes between it and the next."""
        events, rest = self._exact_prefix(carry, final=False, limit=1)
        if events and rest.startswith(b"{"):
            consumed = carry[: len(carry) - len(rest)]
            candidate = consumed[consumed.rfind(b"}") :] + b"{"
            if _SEPARATOR.fullmatch(candidate):
                self.separator = candidate
        return events, rest

    # -- the exact path: one event at a time ----------------------------------------------------
    def _exact_prefix(
        self, data: bytes, final: bool, limit: int | None = None
    ) -> tuple[list[dict], bytes]:
        """Decode whole events from `data` (which starts at an event or the array's end);
        return them and the undecoded rest, which starts at `{` or `]`."""
        try:
            text = _as_text(data, final)
        except UnicodeDecodeError:
            raise self._error("not UTF-8 text inside traceEvents") from None
        events: list[dict] = []
        pos = 0  # the start of the first event not yet taken
        try:
            while limit is None or len(events) < limit:
                pos = _skip_ws(text, pos)
                if text[pos] == "]":
                    if not final:
                        raise _NeedMore
                    self._trailer(text, pos + 1)
                    return events, b""
                event, end = _decode_value(text, pos, final, self.decoder)
                if not isinstance(event, dict):
                    raise self._error("traceEvents holds something that is not an event object")
                after = _skip_ws(text, end)
                if text[after] == ",":
                    after += 1
                elif text[after] != "]":
                    raise json.JSONDecodeError("Expecting ',' delimiter", text, after)
                events.append(event)
                pos = after
        except _NeedMore:
            if final:
                raise self._error("the trace ends inside traceEvents (truncated?)") from None
        except json.JSONDecodeError as error:
            if _cut_short(error):
                raise self._error("the trace ends inside traceEvents (truncated?)") from None
            raise self._error(f"invalid JSON inside traceEvents ({error.msg})") from None
        except RecursionError:
            raise self._error("invalid JSON inside traceEvents (nested too deeply)") from None
        rest = text[pos:].lstrip(_WHITESPACE)
        return events, rest.encode() + data[len(text.encode()) :]

    def _tail(self, carry: bytes) -> list[dict]:
        """At the end of the file: the last events, the array's end and the trailing keys."""
        events, rest = self._exact_prefix(carry, final=True)
        if rest:
            raise self._error("the trace ends inside traceEvents (truncated?)")
        return events

    def _trailer(self, text: str, pos: int) -> None:
        try:
            if not self._top_is_array:
                kind, pos = _read_members(text, pos, self.header, final=True, first=False)
                if kind != "end":
                    raise self._error("two traceEvents arrays in one document")
            if text[pos:].strip(_WHITESPACE):
                raise self._error("extra data after the JSON document")
        except _NeedMore:
            raise self._error("the trace ends before its closing brace (truncated?)") from None
        except json.JSONDecodeError as error:
            raise self._error(f"invalid JSON after traceEvents ({error.msg})") from None


def _cut_short(error: json.JSONDecodeError) -> bool:
    """Did decoding fail only because the text ended?"""
    rest = error.doc[error.pos :].strip()
    if not rest or error.msg.startswith("Unterminated string"):
        return True
    return any(literal.startswith(rest) for literal in ("true", "false", "null"))


def _balanced(piece: bytes) -> bool:
    """Could `piece` be the inside of one event object? Cheap counts, not a parse."""
    return (
        piece.count(b'"') % 2 == 0
        and piece.count(b"{") == piece.count(b"}")
        and piece.count(b"[") == piece.count(b"]")
    )


def _whole(piece: bytes, parse_float=None) -> dict | None:
    """The event `piece` holds, if it is exactly one JSON object's inside."""
    try:
        event = json.loads(b"{" + piece + b"}", parse_float=parse_float)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        return None
    return event if isinstance(event, dict) else None
