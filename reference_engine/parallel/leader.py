"""Rank 0's model runner: the engine's own, which also sends every step to the other ranks.

The engine's loops run unchanged on rank 0. Each hook adds one message: `prepare_run` a
`RunStart` (every rank plants the same faults and captures the same graphs, so their
collectives pair up), `launch` a `StepPlan` just before rank 0 launches the step itself,
`finish_run` a `RunEnd` (the followers' step tables come back). A run that raised gets its
one-line reason from the team (`failure`).
"""

from __future__ import annotations

import functools
from typing import Any

import torch

from reference_engine.device import Device
from reference_engine.faults import Fault
from reference_engine.model_runner import ModelRunner, PreparedStep
from reference_engine.parallel.channel import Milestone
from reference_engine.parallel.failure import RankFailed
from reference_engine.parallel.plan import Message, RunEnd, RunStart, StepPlan, Timeouts
from reference_engine.parallel.team import Team

DRAIN_TRIES = 8  # after a failure: device errors to swallow before the device is idle


def start_leader(config: Any, device: Device, stall: dict[int, int] | None = None) -> ModelRunner:
    """Start the other ranks of `config` (an `EngineConfig`), then build rank 0's runner.
    `stall` (testing only): rank -> the step at which that follower stops launching."""
    from reference_engine.engine_config import make_runner

    timeouts = Timeouts(hang_s=config.tp_timeout_s)
    team = Team.start(config, device, timeouts, stall or {})
    try:
        runner = make_runner(config, device, team.tp, functools.partial(LeaderRunner, team=team))
        team.await_milestone(Milestone.BUILT)
    except Exception as error:
        reason = str(error) if isinstance(error, RankFailed) else team.diagnose(error)
        team.close()
        raise RankFailed(reason) from error
    except BaseException:  # Ctrl-C: stop the others, no diagnosis
        team.close()
        raise
    return runner


class LeaderRunner(ModelRunner):
    """A ModelRunner whose every run and step are mirrored by the team's followers."""

    def __init__(self, *args: Any, team: Team, **kwargs: Any) -> None:
        self.team: Team | None = None  # each rank captures its first graphs by itself
        super().__init__(*args, **kwargs)
        self.team = team
        self._faults: tuple[Fault, ...] = ()
        self._step = 0
        self._reported = False  # a failure was raised: later hooks stay quiet

    def plant_faults(self, faults: tuple[Fault, ...]) -> None:
        super().plant_faults(faults)
        self._faults = tuple(faults)

    def prepare_run(self, timed: bool, logprobs: bool, mixed_steps: bool = False) -> None:
        if self.team is not None:
            debug = torch.cuda.get_sync_debug_mode() if self.device.kind == "cuda" else 0
            self._send(RunStart(self._faults, timed, logprobs, mixed_steps, debug))
            self._step = 0
        super().prepare_run(timed, logprobs, mixed_steps)

    def _send(self, message: Message) -> None:
        """Outside a run's loop (its start): a failed team is a RankFailed at once."""
        team = self.team
        assert team is not None
        if team.failed:
            raise RankFailed(f"{team.reason()}; the engine cannot run again")
        try:
            team.send(message)
        except OSError as error:
            raise RankFailed(team.diagnose(error)) from error

    def launch(self, prepared: PreparedStep, timed: bool) -> None:
        team = self.team
        assert team is not None
        host = self.host[prepared.parity]
        prompts = host.prompt_ids.numpy()[: prepared.prompt_tokens]
        team.send(StepPlan(prepared, timed, host.inputs.numpy().tobytes(), prompts.tobytes()))
        team.watchdog.note_launch(self._step)
        self._step += 1
        super().launch(prepared, timed)

    def finish_run(self, output: Any) -> None:
        """After rank 0's drain: the followers drain too and send their step tables. A
        rank the watchdog saw fail after rank 0's last collective still fails the run."""
        if self.team is None or self._reported:
            return
        if self.team.failed:
            self._reported = True
            output.complete = False
            raise RankFailed(self.team.reason(), output)
        try:
            self._send(RunEnd())
            output.ranks = self.team.collect()
        except RankFailed as failed:
            self._reported = True
            output.complete = False
            failed.output = output
            raise

    def failure(self, error: Exception, output: Any) -> Exception | None:
        """The run raised `error`: every follower is stopped, rank 0's device drained, and
        the run ends with the one-line reason."""
        if self.team is None:
            return None
        reason = str(error) if isinstance(error, RankFailed) else self.team.diagnose(error)
        self._drain()
        self._reported = True
        return RankFailed(reason, output)

    def _drain(self) -> None:
        for _ in range(DRAIN_TRIES):
            try:
                self.device.synchronize()
                return
            except Exception:  # collectives of the failed group, each failing at once
                continue

    def close(self) -> None:
        if self.team is not None:
            self.team.close()
