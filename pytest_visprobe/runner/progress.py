"""Progress of long steps (feature extraction) where a person sees it.

pytest captures stdout and stderr at the file-descriptor level, so a bar written from inside a
test never reaches the terminal. Like live logging, this suspends capture around the step: on a
terminal, a tqdm bar; in a non-interactive log (CI), one line per finished step that took at least
``MIN_SECONDS_FOR_A_LINE``, with its size and throughput; under an xdist worker, nothing (the
controller owns the terminal).
"""

from __future__ import annotations

import contextlib
import sys
import time
from typing import Callable, Iterator

import pytest

MIN_BATCHES_FOR_A_BAR = 4  # shorter extractions finish before a bar is worth drawing
#: a log line only for extractions a person waited for (it splits pytest's -v "test ... PASSED" line)
MIN_SECONDS_FOR_A_LINE = 2.0


class Progress:
    def __init__(self, config: pytest.Config) -> None:
        self._config = config  # the terminal writer exists only once every plugin is configured

    @property
    def _writer(self):
        return self._config.get_terminal_writer()

    @property
    def silent(self) -> bool:
        config = self._config
        return (hasattr(config, "workerinput") or config.get_verbosity() < -1
                or config.pluginmanager.getplugin("terminalreporter") is None)

    @staticmethod
    def terminal_is_tty() -> bool:
        """Asked while capture is suspended, so it sees the real stderr, not the capture file."""
        return sys.__stderr__ is not None and sys.__stderr__.isatty()

    @contextlib.contextmanager
    def track(self, desc: str, total: int, items: int) -> Iterator[Callable[[], None]]:
        """Yield ``tick()``, called once per batch of ``total``; ``items`` (images) for the rate."""
        if self.silent:
            yield lambda: None
            return
        start = time.perf_counter()
        with self._suspended():
            interactive = self.terminal_is_tty()
            if interactive and total >= MIN_BATCHES_FOR_A_BAR:
                from tqdm.auto import tqdm

                with tqdm(total=total, desc=f"visprobe {desc}", unit="batch", leave=False, file=sys.__stderr__,
                          mininterval=0.5) as bar:
                    yield bar.update
            else:
                yield lambda: None
            seconds = time.perf_counter() - start
            if not interactive and seconds >= MIN_SECONDS_FOR_A_LINE:
                self._writer.line(f"visprobe: features {desc}: {items} images in {seconds:.1f} s "
                                  f"({items / max(seconds, 1e-9):.0f} images/s)")

    @contextlib.contextmanager
    def _suspended(self) -> Iterator[None]:
        capture = self._config.pluginmanager.getplugin("capturemanager")
        if capture is None:
            yield
            return
        with capture.global_and_fixture_disabled():
            yield
