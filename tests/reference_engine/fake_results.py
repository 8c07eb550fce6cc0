"""A step's results as the scheduler reads them, without a model: for scheduler tests."""

EOS = 2


class Results:
    """The same token in every slot; logprobs that name their slot."""

    def __init__(self, slots: int, token: int) -> None:
        self.tokens, self.margins = [token] * slots, [1.0] * slots

    def logprob(self, slot: int) -> float:
        return -0.5 - slot

    def top_logprobs(self, slot: int, n: int) -> tuple[list[int], list[float]]:
        return [self.tokens[slot]][:n], [-0.5 - slot][:n]


def complete(scheduler, step, token=7):
    """Post-process `step` as if every slot sampled `token`."""
    return scheduler.on_tokens(step, Results(len(scheduler.slots), token), 0.0, EOS)
