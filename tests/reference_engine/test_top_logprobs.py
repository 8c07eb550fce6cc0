import gc
import json

import pytest

from reference_engine.top_logprobs import TopLogprobs

TOKENS = [[(5, -0.25), (7, -1.5)], [(1, -0.125)], []]


def test_reads_back_as_the_lists_it_was_given():
    store = TopLogprobs(TOKENS)
    assert len(store) == 3
    assert store[0] == [(5, -0.25), (7, -1.5)] and store[-2] == [(1, -0.125)] and store[2] == []
    assert list(store) == TOKENS and store[1:] == TOKENS[1:]
    assert store == TOKENS and store == TopLogprobs(TOKENS) and store != TOKENS[:2]
    assert json.loads(json.dumps(list(store))) == [[list(p) for p in top] for top in TOKENS]
    with pytest.raises(IndexError):
        store[3]


def test_keeps_python_floats_exactly():
    store = TopLogprobs([[(3, -0.1)]])
    assert store[0][0][1] == -0.1


def test_tokens_add_no_objects_for_the_cyclic_gc_to_walk():
    store = TopLogprobs()
    gc.collect()
    before = len(gc.get_objects())
    for token in range(2000):
        store.append([token, token + 1], [-1.0, -2.0])
    assert len(gc.get_objects()) - before < 10  # as lists: ~4 tracked objects per token
