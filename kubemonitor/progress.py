"""One progress report for the long commands (`simulate --backfill`, `rollup`): a bar
rewritten in place on a terminal, a line per tenth elsewhere (a log or a cron mail)."""
from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    WIDTH = 30

    def __init__(self, what: str, total: int, unit: str, stream: TextIO | None = None):
        self.what, self.total, self.unit = what, total, unit
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.started = time.monotonic()

    def update(self, done: int, detail: str = "") -> None:
        """`done` of the total are done; `detail` (e.g. "1,200 points") follows the count."""
        frac = done / self.total if self.total else 1.0
        count = f"{done}/{self.total} {self.unit}" + (f", {detail}" if detail else "")
        if self.tty:
            bar = "#" * int(frac * self.WIDTH)
            self.stream.write(f"\r{self.what} [{bar:<{self.WIDTH}}] {frac:4.0%} {count}, "
                              f"{time.monotonic() - self.started:4.1f} s")
            if done == self.total:
                self.stream.write("\n")
            self.stream.flush()
        elif done == self.total or done % max(1, self.total // 10) == 0:
            print(f"{self.what} {frac:4.0%} ({count})", file=self.stream, flush=True)
