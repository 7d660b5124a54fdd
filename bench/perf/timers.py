"""Timing the calls a run makes: into the store, and writing its files."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from bench import tracking


class CallTimer:
    """Times every call of the functions ``targets`` names, ``(owner, attribute)`` pairs, made
    inside the ``with`` block (each replaced by a timed wrapper for its duration); a call made
    inside another timed call is counted once, in the outer one. ``name(attribute, args)``
    labels a call for ``costliest``."""

    def __init__(
        self,
        targets: list[tuple[Any, str]],
        name: Callable[[str, tuple], str] = lambda attribute, args: attribute,
    ):
        self.targets = targets
        self.name = name
        self.seconds = 0.0
        self.calls = 0
        self.by_name: dict[str, list[float]] = {}  # label -> [count, seconds]
        self._depth = 0
        self._saved: list[tuple[Any, str, Callable]] = []

    def _timed(self, attribute: str, original: Callable) -> Callable:
        def timed(*args, **kwargs):
            self._depth += 1
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self._depth -= 1
                if not self._depth:
                    seconds = time.perf_counter() - start
                    self.seconds += seconds
                    self.calls += 1
                    label = self.name(attribute, args)
                    count, total = self.by_name.get(label, (0, 0.0))
                    self.by_name[label] = [count + 1, total + seconds]

        return timed

    def __enter__(self) -> CallTimer:
        for owner, attribute in self.targets:
            original = getattr(owner, attribute)
            self._saved.append((owner, attribute, original))
            setattr(owner, attribute, self._timed(attribute, original))
        return self

    def __exit__(self, *exc) -> None:
        for owner, attribute, original in reversed(self._saved):
            setattr(owner, attribute, original)
        self._saved.clear()

    def costliest(self, n: int = 3) -> str:
        """The ``n`` labels whose calls took longest in all: ``label count x seconds``."""
        top = sorted(self.by_name.items(), key=lambda item: -item[1][1])[:n]
        return ", ".join(f"{name} {count}x {seconds:.2f} s" for name, (count, seconds) in top)


def store_timer() -> CallTimer:
    """The run's store calls: all of them go through ``tracking.store.retry_call`` (the
    ``RunRecorder``'s writes, their retries and pauses on a locked store included), labelled
    by the MLflow call made."""
    return CallTimer(
        [(tracking.store, "retry_call"), (tracking.writing, "retry_call")],
        name=lambda _, args: getattr(args[0], "__name__", "?"),
    )


def file_timer() -> CallTimer:
    """The run's checkpoint and weights files: ``AtomicCheckpointIO.save_checkpoint``
    (serialising, writing, fsync, rename) and ``torch.save`` (the final weights)."""
    import torch

    from bench.lightning import AtomicCheckpointIO

    return CallTimer([(AtomicCheckpointIO, "save_checkpoint"), (torch, "save")])
