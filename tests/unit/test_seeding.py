"""The global torch RNG is used by one caller at a time: a stage seeding it in another thread (the flow
runs stages in threads) cannot change the toy model's initial weights."""

import threading
import time

import torch

from cortexlens.config.schema import TrainToy
from cortexlens.seeding import seeded
from cortexlens.toy.train import init_model

SMALL = TrainToy(d_model=32, n_heads=2, d_mlp=32, n_ctx=24, min_repeat=3, max_repeat=10)


def _weights(model) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_toy_init_is_unaffected_by_another_thread_reseeding():
    alone = _weights(init_model(SMALL))
    stop = threading.Event()

    def reseed_constantly() -> None:  # what loading models in a parallel stage does
        while not stop.is_set():
            with seeded(12345):
                torch.rand(1000)
                time.sleep(0.001)

    other = threading.Thread(target=reseed_constantly)
    other.start()
    try:
        together = [_weights(init_model(SMALL)) for _ in range(5)]
    finally:
        stop.set()
        other.join()
    for weights in together:
        assert weights.keys() == alone.keys()
        assert all(torch.equal(weights[k], alone[k]) for k in alone)


def test_seeded_restores_the_callers_generator():
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    with seeded(99):
        torch.rand(10)
    assert torch.equal(torch.rand(3), expected)
