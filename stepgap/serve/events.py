"""What the engine thread tells a request's HTTP handler, and what the handler tells it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from reference_engine.request import FinishReason
from stepgap.serve.errors import APIError
from stepgap.serve.logprobs import TokenLogprobs

if TYPE_CHECKING:
    from stepgap.serve.protocol import CompletionJob
    from stepgap.serve.streams import RequestStream


# -- engine thread -> HTTP handler -----------------------------------------------------
@dataclass(frozen=True)
class TokenDelta:
    """Tokens the request emitted since the last delta (one per engine step it ran in)."""

    token_ids: tuple[int, ...]
    logprobs: tuple[TokenLogprobs | None, ...]


@dataclass(frozen=True)
class Finished:
    """The request stopped; `stop_token` is the stop token id that ended it, if one did."""

    reason: FinishReason
    stop_token: int | None
    completion_tokens: int


@dataclass(frozen=True)
class Failed:
    """The engine could not serve the request."""

    error: APIError


Event = TokenDelta | Finished | Failed


# -- HTTP handler -> engine thread -----------------------------------------------------
@dataclass(frozen=True)
class Submit:
    request_id: int
    job: CompletionJob
    stream: RequestStream


@dataclass(frozen=True)
class Cancel:
    """The client went away: stop the request and free its slot."""

    request_id: int


@dataclass(frozen=True)
class Stop:
    """The server shuts down: take no more requests, finish the run, end the thread."""


Command = Submit | Cancel | Stop
