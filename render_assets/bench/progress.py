"""What the benchmark shows on stderr while it runs: timestamped log lines and, per scenario, a
live bar (jobs finished of all, failures, time elapsed). stdout carries only the JSON report."""

from __future__ import annotations

import sys
import time
from types import TracebackType

from tqdm import tqdm

BAR_FORMAT = "{desc}: {n_fmt}/{total_fmt} {unit} |{bar}| {elapsed} elapsed{postfix}"


def log(line: str) -> None:
    # Through tqdm, so a line printed while a bar is drawn does not tear it.
    tqdm.write(f"[bench {time.strftime('%H:%M:%S')}] {line}", file=sys.stderr)


class Progress:
    """One bar. Redrawn at least every `interval_s` (the elapsed time moves while no job ends, as
    in the sustained scenario); into a file or pipe, rarely, so a log stays readable."""

    def __init__(self, label: str, total: int, unit: str = "jobs") -> None:
        self.interval_s = 0.5 if sys.stderr.isatty() else 15.0
        self.failed = 0
        self._bar = tqdm(
            total=total,
            desc=label,
            unit=unit,
            file=sys.stderr,
            bar_format=BAR_FORMAT,
            dynamic_ncols=True,
            mininterval=self.interval_s,
            leave=True,
        )
        if unit == "jobs":
            self._bar.set_postfix_str("failed 0", refresh=False)
        self._drawn = time.monotonic()

    def job_finished(self, completed: bool) -> None:
        if not completed:
            self.failed += 1
            self._bar.set_postfix_str(f"failed {self.failed}", refresh=False)
        self.advance()

    def advance(self, count: int = 1) -> None:
        self._bar.update(count)

    def tick(self) -> None:
        if time.monotonic() - self._drawn >= self.interval_s:
            self._bar.refresh()
            self._drawn = time.monotonic()

    def close(self) -> None:
        self._bar.close()

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()
