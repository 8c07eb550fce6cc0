"""OpenAI-style JSON errors: `{"error": {"message", "type", "param", "code"}}`.

The envelope and `type` names follow vLLM (vllm/entrypoints/openai/engine/protocol.py,
`ErrorResponse` / `ErrorInfo`: `code` is the HTTP status). SGLang and TensorRT-LLM answer
a flat `{"object": "error", "message", ...}` instead; `stepgap bench` reads both.
"""

from __future__ import annotations

import enum
from http import HTTPStatus
from typing import Any


class ErrorType(enum.StrEnum):
    BAD_REQUEST = "BadRequestError"
    NOT_FOUND = "NotFoundError"
    METHOD_NOT_ALLOWED = "MethodNotAllowedError"
    UNAVAILABLE = "ServiceUnavailableError"
    INTERNAL = "InternalServerError"


_STATUS = {
    ErrorType.BAD_REQUEST: HTTPStatus.BAD_REQUEST,
    ErrorType.NOT_FOUND: HTTPStatus.NOT_FOUND,
    ErrorType.METHOD_NOT_ALLOWED: HTTPStatus.METHOD_NOT_ALLOWED,
    ErrorType.UNAVAILABLE: HTTPStatus.SERVICE_UNAVAILABLE,
    ErrorType.INTERNAL: HTTPStatus.INTERNAL_SERVER_ERROR,
}


class APIError(Exception):
    """A request the server answers with an error; `message` is one line."""

    def __init__(
        self, message: str, type: ErrorType = ErrorType.BAD_REQUEST, param: str | None = None
    ) -> None:
        super().__init__(message)
        self.message, self.type, self.param = message, type, param

    @property
    def status(self) -> HTTPStatus:
        return _STATUS[self.type]

    def body(self) -> dict[str, Any]:
        info = {"message": self.message, "type": self.type.value, "param": self.param}
        return {"error": info | {"code": int(self.status)}}


def bad_request(message: str, param: str | None = None) -> APIError:
    return APIError(message, ErrorType.BAD_REQUEST, param)
