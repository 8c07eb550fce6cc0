"""Tensor parallelism: N ranks, one process and one device each, one schedule for all.

Layout (Megatron / gpt-fast style, sharded after construction with the weights of TP 1):

- attention: q/k/v column-parallel by heads (a rank owns num_heads/N query heads and
  num_kv_heads/N kv heads; its KV cache holds only those), o row-parallel;
- dense MLP and shared experts: gate/up column-parallel, down row-parallel;
- routed experts: sharded along the expert intermediate dimension, not expert-parallel.
  Every rank holds every expert at I/N, so the fused-MoE kernel and the torch reference run
  unchanged on a smaller I; routing is computed, replicated, on every rank (bit-identical:
  same router weights, same input); the routed and shared experts' partial sums leave the
  layer in one all-reduce. Expert parallelism would need an all-to-all (or an all-gather of
  the tokens) per layer, its per-rank work would depend on which experts the batch picked
  (at decode concurrency 4 x 8 experts of 128 one rank can get all of a step's work while
  others idle), and a token's partial sums would arrive in a batch-dependent order. Sharding
  I keeps every rank's work identical and the numerics batch-invariant;
- embedding vocab-parallel (masked lookup + all-reduce); LM head vocab-parallel: each rank
  computes its V/N logits, an all-gather gives every rank the full logits, and every rank
  samples with the TP-1 sampler: the same token, margins and logprobs on every rank, from
  the same seeded noise as TP 1.

Each decoder layer does two all-reduces (attention, FFN), the model one more (embedding)
and one all-gather (logits); on CUDA they are captured inside the decode graphs.

Rank 0 runs the engine's loops unchanged (`leader.LeaderRunner`); every other rank runs
`follower.Follower`, which receives each step's plan (its `PreparedStep` and packed input
tables) over a host pipe and launches the same device work. Files: `group` (the rank's
process group and collectives), `shapes` (what a TP size must divide), `sharding`
(parameter slices), `embedding` (the vocab-parallel embedding), `plan` (messages and
timeouts), `channel` (the pipes), `processes` (spawn, kill), `watchdog` (dead or hung
ranks), `team` (rank 0's view of the others), `failure` (the one-line error),
`rank_tables` (each follower's measurements), `leader`, `follower`.

Bounds (`plan.Timeouts`): a follower that exits is seen within the watchdog's poll
(0.2 s); one still behind rank 0's latest launch `hang_s` (60 s, `EngineConfig.
tp_timeout_s`) after it is hung; collectives time out `hang_s + 30` s; start-up (spawn,
join, build) `startup_s` (600 s). A failure kills every follower and ends the run with
`RankFailed` within the poll plus 2 s of diagnosis.

`shapes` and `failure` are torch-free (the CLI checks a TP size without importing torch).
"""
