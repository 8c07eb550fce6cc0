"""What `stepgap bench` does: which server, how hard, and what to record."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from urllib.parse import urlparse

from reference_engine.config import ConfigError
from reference_engine.request import MAX_LOGPROBS
from stepgap.bench.apis import ServerApi

_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def parse_api(value: str | ServerApi) -> ServerApi:
    try:
        return ServerApi(value)
    except ValueError:
        choices = ", ".join(a.value for a in ServerApi)
        raise ConfigError(f"unknown api {value!r}; choose {choices}") from None


@dataclass(frozen=True)
class BenchConfig:
    """A streaming benchmark of one OpenAI-compatible server.

    `max_concurrency` and `request_rate` mean what they mean in `vllm bench serve`: at
    most that many requests in flight (None: no limit), sent at that rate per second
    (None: at the workload's own arrival times; inf: all at once). `logprobs`: ask for
    that many top logprobs per token (2 or more also gives the near-tie margins).
    `label` names the run and is its mode in run.json: label two runs `sync` and
    `overlap` and put them side by side in one directory, and `stepgap gate` reads them
    as a `--mode both` run.
    """

    base_url: str
    api: ServerApi = ServerApi.VLLM
    model: str | None = None  # None: the first model the server's /v1/models lists
    endpoint: str = "/v1/completions"
    max_concurrency: int | None = None
    request_rate: float | None = None
    logprobs: int | None = None
    timeout_s: float = 600.0
    label: str = "endpoint"

    def __post_init__(self) -> None:
        object.__setattr__(self, "api", parse_api(self.api))
        object.__setattr__(self, "base_url", self.base_url.rstrip("/"))
        url = urlparse(self.base_url)
        if url.scheme not in ("http", "https") or not url.netloc:
            raise ConfigError(f"base URL must be http(s)://host[:port], got {self.base_url!r}")
        if not self.endpoint.startswith("/"):
            raise ConfigError(f"endpoint must start with '/', got {self.endpoint!r}")
        if self.max_concurrency is not None and self.max_concurrency < 1:
            raise ConfigError(f"max_concurrency must be >= 1, got {self.max_concurrency}")
        rate = self.request_rate
        if rate is not None and (math.isnan(rate) or rate <= 0):
            raise ConfigError(f"request rate must be > 0 (inf: all at once), got {rate}")
        if self.logprobs is not None and not 0 <= self.logprobs <= MAX_LOGPROBS:
            raise ConfigError(f"logprobs must be in [0, {MAX_LOGPROBS}], got {self.logprobs}")
        if not self.timeout_s > 0:
            raise ConfigError(f"timeout must be > 0 s, got {self.timeout_s}")
        if not _LABEL.match(self.label):
            raise ConfigError(f"label must be letters, digits, '.', '_' or '-', got {self.label!r}")

    @property
    def url(self) -> str:
        return self.base_url + self.endpoint
