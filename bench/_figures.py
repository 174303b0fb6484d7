"""Medians and plain-text tables: what every benchmark prints."""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence


def milliseconds_since(start: float) -> float:
    return (time.perf_counter() - start) * 1000


def median(samples: Sequence[float]) -> float:
    return statistics.median(samples)


def ratio(value: float, baseline: float) -> str:
    return f"{value / baseline:.2f}x" if baseline else "-"


def print_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Columns padded to their widest cell, the first left-aligned, the others right-aligned."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        first, *others = (str(cell) for cell in cells)
        return "  ".join(
            [first.ljust(widths[0]), *(cell.rjust(width) for cell, width in zip(others, widths[1:], strict=True))]
        )

    print(line(headers))
    print("  ".join("-" * width for width in widths))
    for row in rows:
        print(line(row))
