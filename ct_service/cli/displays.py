"""How the Follower shows progress: plain lines when its output is a pipe, a file or
a test (each epoch once, with its timing), or, on a terminal, the same lines above a
live progress bar per attempt in training (tqdm: optuna, a dependency of ours,
brings it; without it, plain lines)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, Protocol, TextIO

from ct_service.cli.epoch_progress import EpochProgress


class Display(Protocol):
    def line(self, text: str) -> None:
        """A line of news: an attempt, a decision, a retry."""

    def epoch(self, run_id: str, progress: EpochProgress, values: str) -> None:
        """An epoch the attempt run `run_id` has just logged, with its metrics."""

    def tick(self, run_id: str, label: str, progress: EpochProgress) -> None:
        """Where the attempt run `run_id` (in training) stands now, at every poll."""

    def end(self, run_id: str) -> None:
        """The attempt run `run_id` stopped training."""

    def close(self) -> None:
        """Following ends: nothing of this display may stay on the screen's last line."""


class Lines:
    """Plain lines, one per piece of news and per epoch."""

    def __init__(self, emit: Callable[[str], None] = print):
        self.emit = emit

    def line(self, text: str) -> None:
        self.emit(text)

    def epoch(self, run_id: str, progress: EpochProgress, values: str) -> None:
        self.emit(f"  {progress.position}: {values}  ({progress.timing})")

    def tick(self, run_id: str, label: str, progress: EpochProgress) -> None:
        pass

    def end(self, run_id: str) -> None:
        pass

    def close(self) -> None:
        pass


class Bars:
    """A terminal: the lines printed above one tqdm bar per attempt in training, which
    shows its epochs done of its total, its elapsed time and its estimated time left."""

    FORMAT = "{desc} |{bar}| {n_fmt}/{total_fmt} epochs{postfix}"

    def __init__(self, stream: TextIO):
        from tqdm import tqdm

        self.tqdm = tqdm
        self.stream = stream
        self.bars: dict[str, Any] = {}

    def line(self, text: str) -> None:
        self.tqdm.write(text, file=self.stream)  # above the bars, which are drawn again

    def epoch(self, run_id: str, progress: EpochProgress, values: str) -> None:
        self.line(f"  {progress.position}: {values}")

    def tick(self, run_id: str, label: str, progress: EpochProgress) -> None:
        bar = self.bars.get(run_id)
        if bar is None:
            bar = self.bars[run_id] = self.tqdm(
                total=progress.total,
                initial=progress.epoch,
                desc=f"  {label}",
                file=self.stream,
                bar_format=self.FORMAT,
                leave=False,
                position=len(self.bars),
            )
        bar.n = progress.epoch
        bar.set_postfix_str(f"{progress.timing}", refresh=False)
        bar.refresh()

    def end(self, run_id: str) -> None:
        bar = self.bars.pop(run_id, None)
        if bar is not None:
            bar.close()

    def close(self) -> None:
        for run_id in list(self.bars):
            self.end(run_id)


def display_for(stream: TextIO | None = None) -> Display:
    """Bars when `stream` (standard output) is a terminal and tqdm is there; else lines."""
    stream = stream or sys.stdout
    if stream.isatty():
        try:
            return Bars(stream)
        except ImportError:
            pass
    return Lines(lambda text: print(text, file=stream, flush=True))
