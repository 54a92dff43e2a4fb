"""Helpers shared by the tests that train: a Ctrl-C at a chosen step."""
from __future__ import annotations


def interrupt_at(monkeypatch, stop: int) -> None:
    """Ctrl-C as the trainer sees it, before step ``stop``: it saves checkpoints/last
    (``stop`` steps in) and the CLI ends with status 130."""
    from minillm.train.training import Trainer
    real = Trainer._train_step

    def step(self, k):
        if k == stop:
            raise KeyboardInterrupt
        return real(self, k)
    monkeypatch.setattr(Trainer, "_train_step", step)
