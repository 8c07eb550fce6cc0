"""Workloads: which model, how many requests, how long, arriving how.

Presets mirror the rows of FastDeploy's overlap-schedule benchmark (the seed of this
project); `-scaled` variants keep each row's shape (concurrency, input:output ratio, router
kind) at a size a CPU runs in seconds, and say so wherever they appear.
"""

from __future__ import annotations

import dataclasses
import random
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from reference_engine import ConfigError, Request, SamplingParams, model_config
from reference_engine.config import ModelConfig
from stepgap.model_overrides import check_overrides

Arrival = Literal["all", "poisson"]
# Sane upper bounds: beyond these a run is a typo (or days long), not a benchmark.
LIMITS = {
    "concurrency": 4096,
    "num_requests": 100_000,
    "input_len": 131_072,
    "output_len": 131_072,
    "tensor_parallel": 64,
}
MAX_RATE_PER_S = 1e6
MAX_MODEL_LEN = 262_144


@dataclass(frozen=True)
class Workload:
    """A reproducible request stream plus the engine shape that serves it."""

    name: str
    model: str
    concurrency: int
    num_requests: int
    input_len: int
    output_len: int
    input_len_min: int | None = None  # prompts vary uniformly in [min, input_len]
    arrival: Arrival = "all"
    rate_per_s: float = 0.0  # Poisson arrivals, requests per second
    temperature: float = 0.0
    sampled_fraction: float = 0.0  # share of requests that sample instead of greedy
    top_k: int = 0
    top_p: float = 1.0
    ignore_eos: bool = True  # benchmarks run to max_tokens, as vLLM/FastDeploy's do
    tensor_parallel: int = 1
    seed: int = 0
    scaled_from: str | None = None
    description: str = ""
    model_overrides: dict[str, Any] = field(default_factory=dict)
    max_model_len_override: int | None = None  # default: longest prompt + output + 2
    # chunked prefill: each step's token budget (decode rows + prompt chunks), as vLLM's
    # max_num_batched_tokens; None: whole prompts, prefill before decode
    max_num_batched_tokens: int | None = None
    logprobs: int | None = None  # every request asks for the top-n logprobs (0..20)

    def __post_init__(self) -> None:
        self._check_types()
        where = f"workload {self.name}"
        object.__setattr__(self, "model_overrides", check_overrides(self.model_overrides, where))
        model_config(self.model, **self.model_overrides)  # validates the model and overrides
        for name in ("concurrency", "num_requests", "input_len", "output_len"):
            if getattr(self, name) < 1:
                raise ConfigError(f"workload {self.name}: {name} must be >= 1")
        self._check_bounds()
        if self.input_len_min is not None and not 1 <= self.input_len_min <= self.input_len:
            raise ConfigError(f"workload {self.name}: input_len_min must be in [1, input_len]")
        if self.arrival not in ("all", "poisson"):
            raise ConfigError(f"workload {self.name}: arrival must be 'all' or 'poisson'")
        if self.arrival == "poisson" and self.rate_per_s <= 0:
            raise ConfigError(f"workload {self.name}: poisson arrivals need rate_per_s > 0")
        if not 0.0 <= self.sampled_fraction <= 1.0:
            raise ConfigError(f"workload {self.name}: sampled_fraction must be in [0, 1]")
        if self.sampled_fraction and self.temperature <= 0:
            raise ConfigError(f"workload {self.name}: sampled requests need temperature > 0")
        if self.tensor_parallel < 1:
            raise ConfigError(f"workload {self.name}: tensor_parallel must be >= 1")
        needed = self.input_len + self.output_len + 2
        if self.max_model_len_override is not None and self.max_model_len_override < needed:
            raise ConfigError(
                f"workload {self.name}: prompts of {self.input_len} tokens + {self.output_len} "
                f"output tokens need max_model_len >= {needed}, got {self.max_model_len_override}"
            )
        SamplingParams(
            max_tokens=self.output_len, top_k=self.top_k, top_p=self.top_p, logprobs=self.logprobs
        )
        budget = self.max_num_batched_tokens
        if budget is not None and not self.concurrency < budget <= LIMITS["input_len"]:
            raise ConfigError(
                f"workload {self.name}: max_num_batched_tokens ({budget}) must exceed the "
                f"concurrency ({self.concurrency}) and be at most {LIMITS['input_len']}"
            )

    def _check_bounds(self) -> None:
        for name, limit in LIMITS.items():
            if getattr(self, name) > limit:
                raise ConfigError(
                    f"workload {self.name}: {name} = {getattr(self, name)} is above the limit "
                    f"of {limit}"
                )
        if not self.rate_per_s <= MAX_RATE_PER_S:
            raise ConfigError(
                f"workload {self.name}: rate_per_s must be at most {MAX_RATE_PER_S:g}"
            )
        if self.max_model_len > MAX_MODEL_LEN:
            raise ConfigError(
                f"workload {self.name}: a cache of {self.max_model_len} tokens per slot is above "
                f"the limit of {MAX_MODEL_LEN}"
            )

    def _check_types(self) -> None:
        """TOML files can hold anything: name the field whose value has the wrong type."""
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", "")
            wants_int = kind.startswith("int")
            wants_number = kind.startswith("float")
            is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
            if (wants_int and not isinstance(value, int)) or (wants_number and not is_number):
                if value is None and "None" in kind:
                    continue
                expected = "an integer" if wants_int else "a number"
                raise ConfigError(
                    f"workload {self.name}: {f.name} must be {expected}, got {value!r}"
                )
            if kind == "bool" and not isinstance(value, bool):
                raise ConfigError(f"workload {self.name}: {f.name} must be true or false")
            if kind == "str" and not isinstance(value, str):
                raise ConfigError(f"workload {self.name}: {f.name} must be a string")

    @property
    def label(self) -> str:
        """The name as every output shows it: scaled variants say what they scale."""
        return f"{self.name} (scaled from {self.scaled_from})" if self.scaled_from else self.name

    @property
    def max_model_len(self) -> int:
        """Cache length per slot: the longest prompt plus output, +1 for the scratch row
        idle slots write to, +1 because the last sampled token is never fed back."""
        return self.max_model_len_override or self.input_len + self.output_len + 2

    def model_config(self) -> ModelConfig:
        return model_config(self.model, **self.model_overrides)

    def with_overrides(self, **changes: Any) -> Workload:
        """A copy with fields replaced (None values are ignored). A new concurrency keeps
        the prefill chunk size: the token budget moves with it."""
        changes = {k: v for k, v in changes.items() if v is not None}
        budget = self.max_num_batched_tokens
        if "concurrency" in changes and budget and "max_num_batched_tokens" not in changes:
            changes["max_num_batched_tokens"] = budget - self.concurrency + changes["concurrency"]
        return dataclasses.replace(self, **changes)

    def requests(self) -> list[Request]:
        """The request stream: same workload and seed, same requests."""
        rng = random.Random(self.seed)
        vocab = self.model_config().vocab_size
        arrival, requests = 0.0, []
        for i in range(self.num_requests):
            if self.arrival == "poisson" and i:
                arrival += rng.expovariate(self.rate_per_s)
            length = rng.randint(self.input_len_min or self.input_len, self.input_len)
            sampled = rng.random() < self.sampled_fraction
            params = SamplingParams(
                max_tokens=self.output_len,
                temperature=self.temperature if sampled else 0.0,
                top_k=self.top_k,
                top_p=self.top_p,
                seed=rng.randrange(2**31),
                ignore_eos=self.ignore_eos,
                logprobs=self.logprobs,
            )
            prompt = [rng.randrange(3, vocab) for _ in range(length)]
            requests.append(Request(i, prompt, params, arrival_s=arrival))
        return requests

    def describe(self) -> dict[str, Any]:
        return dataclasses.asdict(self) | {"label": self.label}


def sentence(described: dict[str, Any], tensor_parallel: int = 1) -> str:
    """One line a reader can check a run against: `Workload.describe()` (as `run.json`
    keeps it) in words, as `stepgap run` prints it first and the report opens with."""
    if described.get("arrival") == "all":
        arrival = "all at once"
    else:
        arrival = f"Poisson {described.get('rate_per_s', 0):g}/s"
    longest = described.get("input_len")
    lengths = f"{described.get('input_len_min') or longest}-{longest}"
    budget = described.get("max_num_batched_tokens")
    return (
        f"workload {described.get('label', described.get('name'))}: model "
        f"{described.get('model')}, {described.get('num_requests')} requests, concurrency "
        f"{described.get('concurrency')}, prompts {lengths} tokens, "
        f"{described.get('output_len')} output tokens, arrivals {arrival}"
        + (f", chunked prefill of {budget} tokens a step" if budget else "")
        + (f", tensor parallel {tensor_parallel}" if tensor_parallel > 1 else "")
    )


_SMOKE = Workload(
    name="smoke",
    model="ernie-4.5-tiny",
    concurrency=8,
    num_requests=32,
    input_len=48,
    input_len_min=8,
    output_len=32,
    arrival="poisson",
    rate_per_s=400.0,
    temperature=0.8,
    sampled_fraction=0.5,
    top_k=50,
    top_p=0.95,
    max_num_batched_tokens=8 + 32,  # prompts of up to 48 tokens in chunks of 32
    description="tiny ERNIE-shaped model, staggered arrivals, greedy + sampled: a quick check",
)
_CPU_DEFAULT = dataclasses.replace(
    _SMOKE,
    name="cpu-default",
    num_requests=128,
    arrival="all",
    rate_per_s=0.0,
    description="CPU default: the smoke mix with 128 requests all at once, so throughput "
    "measures the engine rather than an arrival clock, long enough to rise above noise",
)
_GLM = Workload(
    name="glm-4.5-air-tp8",
    model="glm-4.5-air",
    concurrency=4,
    num_requests=4,
    input_len=500,
    output_len=10_000,
    tensor_parallel=8,
    max_num_batched_tokens=8192,  # vLLM V1's default budget
    description="FastDeploy benchmark row: GLM-4.5-Air, TP8, concurrency 4, 500 in / 10k out",
)
_ERNIE = Workload(
    name="ernie-4.5-21b-a3b-tp4",
    model="ernie-4.5-21b-a3b",
    concurrency=64,
    num_requests=128,
    input_len=2000,
    output_len=500,
    tensor_parallel=4,
    max_num_batched_tokens=8192,  # vLLM V1's default budget: 4 prompts' chunks per step
    description="FastDeploy benchmark row: ERNIE-4.5-21B-A3B, TP4, concurrency 64, 2k in / 500 out",
)


def _scaled(base: Workload, model: str, **changes: Any) -> Workload:
    """`base` at CPU size, at TP 1 (the tiny models' 4 or 6 heads do not split 4 or 8
    ways; `--tp 2` runs them tensor-parallel)."""
    return dataclasses.replace(
        base,
        name=base.name + "-scaled",
        model=model,
        scaled_from=base.name,
        tensor_parallel=1,
        description=f"{base.name} at CPU size: same concurrency and shape, tiny model, TP 1",
        **changes,
    )


PRESETS: dict[str, Workload] = {
    w.name: w
    for w in (
        _CPU_DEFAULT,
        _SMOKE,
        _GLM,
        _scaled(
            _GLM, "glm-4.5-air-tiny", input_len=50, output_len=1000, max_num_batched_tokens=4 + 32
        ),
        _ERNIE,
        _scaled(
            _ERNIE,
            "ernie-4.5-tiny",
            num_requests=128,
            input_len=200,
            output_len=50,
            max_num_batched_tokens=64 + 128,
        ),
    )
}
DEFAULT_WORKLOAD = "cpu-default"


def load_workload(name_or_path: str) -> Workload:
    """A preset by name, or a workload from a TOML file (fields of `Workload`; an optional
    `base = "<preset>"` key starts from a preset)."""
    if name_or_path in PRESETS:
        return PRESETS[name_or_path]
    path = Path(name_or_path)
    if path.suffix != ".toml":
        raise ConfigError(
            f"unknown workload {name_or_path!r}; presets: {', '.join(PRESETS)} (or a .toml file)"
        )
    if not path.is_file():
        raise ConfigError(f"workload file {path} does not exist")
    try:
        data = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise ConfigError(f"workload file {path} is not valid TOML: {error}") from None
    data = data.get("workload", data)
    base = data.pop("base", None)
    known = {f.name for f in dataclasses.fields(Workload)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"workload file {path}: unknown key(s) {', '.join(unknown)}")
    data.setdefault("name", path.stem)
    try:
        if base is not None:
            if base not in PRESETS:
                raise ConfigError(f"workload file {path}: unknown base preset {base!r}")
            return dataclasses.replace(PRESETS[base], **data)
        return Workload(**data)
    except TypeError as error:
        raise ConfigError(f"workload file {path}: {error}") from None
