"""`stepgap predict`: what the overlap schedule would buy, predicted from a sync run.

The model (`model`): the overlap schedule's host loop launches step N+1, then waits for
and post-processes step N, while the device runs N; the device starts N+1 at the later of
(end of N + the inter-step floor) and (its launch + the launch latency). `inputs` reads
each sync step's measured host phases and device busy time; `schedule` drives the
engine's own scheduler under overlap's rules (stops and freed slots seen one step late,
arrivals seen at overlap's schedule points) and `costs` charges each step the measured
cost of a sync step of its shape; `outcome` turns the replay into the summary metrics
`stepgap.metrics` computes for a measured run; `floor` is the device's inter-step floor;
`prediction` puts these together; `validate` compares a prediction with a measured
overlap run, and `pairs` does so for a group (the gate's `predict.*` facts, the report);
`trace` bounds what overlap could buy an analyzed trace. Nothing here imports torch.
"""

from stepgap.predict.errors import PredictError

__all__ = ["PredictError"]
