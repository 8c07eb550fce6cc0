"""Text for a model without a tokenizer: the reference engine's weights are random, so its
token ids mean nothing. Text prompts become their UTF-8 bytes (id = byte + 3, clear of the
special ids 0-2); each generated id reads back as " <id>". Benchmarks send token-id prompts
and read token ids, which this never touches; text exists so that text-only clients
(`openai` SDK defaults, AIPerf) can talk to the server at all.
"""

from __future__ import annotations

from dataclasses import dataclass

from reference_engine.config import ConfigError

FIRST_BYTE_ID = 3


@dataclass(frozen=True)
class ByteTokenizer:
    vocab_size: int

    def __post_init__(self) -> None:
        if self.vocab_size <= FIRST_BYTE_ID:
            raise ConfigError(f"vocab_size must exceed {FIRST_BYTE_ID}, got {self.vocab_size}")

    def encode(self, text: str) -> list[int]:
        span = self.vocab_size - FIRST_BYTE_ID
        return [FIRST_BYTE_ID + byte % span for byte in text.encode()]

    @staticmethod
    def piece(token_id: int) -> str:
        return f" {token_id}"

    def decode(self, token_ids: list[int] | tuple[int, ...]) -> str:
        return "".join(self.piece(t) for t in token_ids)
