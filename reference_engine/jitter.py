"""Schedule jitter: seeded random delays that shake out ordering bugs in the overlap loop.

TEST PERTURBATION, OFF FOR MEASUREMENTS. With `EngineConfig(jitter=Jitter(seed=...))` the
host pauses at random host-phase boundaries and the device stalls at random before a step's
work, so the host and the device interleave in ways a calm run never shows: a buffer reused
too early, a read before its copy landed. On CUDA a device stall is a spin kernel
(`torch.cuda._sleep`) on the compute stream; on CPU it is the worker thread (the "stream")
sleeping before the step. These sleeps are the perturbation itself, not stand-ins for engine
work: they only move *when* the host and the device do their real work.

The draws come from `random.Random(seed)`, reset at the start of every run, so a run's
perturbations are a function of the seed and of the run's own sequence of phases.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import random
import time
from dataclasses import dataclass

import torch

from reference_engine.config import ConfigError
from reference_engine.device import Device

_MAX_DELAY_US = 1_000_000.0


@dataclass(frozen=True)
class Jitter:
    """How much to perturb: at each host phase boundary the host pauses with probability
    `host_prob` for a uniform random time up to `host_max_us`; before each step's device
    work the device stalls with probability `device_prob` for a uniform random time from a
    quarter of `device_max_us` to all of it. For `quiet_phases` phase starts after a
    stall the host does not pause, so that it runs ahead of the stalled device: the races
    that need the device behind (a pinned input rewritten before its copy read it, outputs
    read before they landed) show only then, and host pauses would close them again."""

    seed: int = 0
    host_prob: float = 0.25
    host_max_us: float = 5000.0
    device_prob: float = 0.2
    device_max_us: float = 3000.0
    quiet_phases: int = 8  # one iteration has 6 (schedule ... output): the next read too

    def __post_init__(self) -> None:
        if not 0 <= self.seed < 2**63:
            raise ConfigError(f"jitter seed must be in [0, 2**63), got {self.seed}")
        for name in ("host_prob", "device_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"jitter {name} must be in [0, 1], got {getattr(self, name)}")
        if not 0 <= self.quiet_phases <= 64:
            raise ConfigError(f"jitter quiet_phases must be in [0, 64], got {self.quiet_phases}")
        for name in ("host_max_us", "device_max_us"):
            if not 0.0 <= getattr(self, name) <= _MAX_DELAY_US:
                raise ConfigError(
                    f"jitter {name} must be in [0, {_MAX_DELAY_US:.0f}] µs, "
                    f"got {getattr(self, name)}"
                )

    def with_seed(self, seed: int) -> Jitter:
        return dataclasses.replace(self, seed=seed)

    def stretched_to(self, step_us: float) -> Jitter:
        """The same jitter for a device whose steps take `step_us`: pauses and stalls
        stretched by `step_us / PRESET_STEP_US` where that exceeds 1 (never shrunk), so
        that they outlast a step as often as the presets do on the step they were tuned
        for. Without it a slow device's step outlasts almost every pause, and the races
        that need the host behind the device never show."""
        scale = max(1.0, step_us / PRESET_STEP_US) if math.isfinite(step_us) else 1.0
        return dataclasses.replace(
            self,
            host_max_us=min(self.host_max_us * scale, _MAX_DELAY_US),
            device_max_us=min(self.device_max_us * scale, _MAX_DELAY_US),
        )


# The device step the levels are tuned for. A race shows when a pause outlasts a device
# step; on a device whose steps are longer (the tiny models take 5-7 ms a step on 2 CPU
# cores) `Jitter.stretched_to` stretches the pauses with the step.
PRESET_STEP_US = 1500.0

# Named levels for command lines, for a step of `PRESET_STEP_US` or shorter (the tiny models
# on a GPU take far less): `light` makes a pause outlast a step a few times per run,
# `heavy` several times. On one H200 (bf16, CUDA graphs), `light` caught
# undersized-ring in 20/20 runs and missing-event-wait in 18/20, `heavy` stale-pinned-buffer
# in 38/40 (light: 17/20), with no false alarm in 70 clean runs at either level.
JITTER_LEVELS: dict[str, Jitter] = {
    "light": Jitter(host_prob=0.25, host_max_us=5000.0, device_prob=0.2, device_max_us=3000.0),
    "heavy": Jitter(host_prob=0.4, host_max_us=8000.0, device_prob=0.3, device_max_us=5000.0),
}


def jitter_level(name: str) -> Jitter | None:
    """`off` -> None, else a preset of `JITTER_LEVELS`."""
    if name == "off":
        return None
    if name not in JITTER_LEVELS:
        raise ConfigError(f"unknown jitter level {name!r}; choose off, {', '.join(JITTER_LEVELS)}")
    return JITTER_LEVELS[name]


class ScheduleJitter:
    """Draws and applies one engine's perturbations. The engine calls `reset` at the start
    of each run and hooks `at_phase` into its probe, which calls it as each host phase
    starts; the device stall goes in at the start of `launch`, before the step's work."""

    def __init__(self, jitter: Jitter, device: Device) -> None:
        self.jitter, self.device = jitter, device
        # Calibrate the spin kernel now: it syncs, which must not happen inside a run.
        self._cycles_per_us = _cuda_cycles_per_us() if device.kind == "cuda" else 0.0
        self.reset()

    def reset(self) -> None:
        self._rng = random.Random(self.jitter.seed)
        self._quiet = 0  # phase starts left in which the host does not pause

    def at_phase(self, phase: str) -> None:
        rng, jitter = self._rng, self.jitter
        if phase == "launch" and rng.random() < jitter.device_prob:
            self._stall_device(rng.uniform(0.25, 1.0) * jitter.device_max_us)
            self._quiet = jitter.quiet_phases
        elif self._quiet:
            self._quiet -= 1
        elif rng.random() < jitter.host_prob:
            time.sleep(rng.uniform(0.0, jitter.host_max_us) / 1e6)

    def _stall_device(self, us: float) -> None:
        if self.device.kind == "cuda":
            stall = functools.partial(torch.cuda._sleep, max(1, int(us * self._cycles_per_us)))
        else:
            stall = functools.partial(time.sleep, us / 1e6)
        self.device.submit(stall)


@functools.cache
def _cuda_cycles_per_us() -> float:
    """GPU clock cycles per µs of `torch.cuda._sleep`, measured once with CUDA events."""
    cycles = 2_000_000
    torch.cuda._sleep(cycles)  # warm the kernel up
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    torch.cuda._sleep(cycles)
    end.record()
    end.synchronize()
    return cycles / max(start.elapsed_time(end) * 1000.0, 1e-3)
