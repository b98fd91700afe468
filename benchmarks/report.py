"""Rows of figures, each beside its baseline: a rich table on stdout and a JSON file."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


@dataclass
class Row:
    section: str
    metric: str
    value: float
    unit: str
    baseline: str
    baseline_value: float
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if not _finite(self.value) or not _finite(self.baseline_value) or self.baseline_value == 0:
            return None
        return self.value / self.baseline_value

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["ratio"] = self.ratio
        return d


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def fmt(value: float, unit: str) -> str:
    if not _finite(value):
        return "—"
    if unit in ("count", "steps", "msgs"):
        return f"{value:,.0f}"
    a = abs(value)
    digits = 0 if a >= 100 else 1 if a >= 10 else 2 if a >= 1 else 3
    return f"{value:,.{digits}f} {unit}"


def print_table(rows: list[Row], machine: dict[str, Any], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=160)
    console.print(
        f"[bold]{title}[/bold]  —  {machine['nproc']} CPU × {machine['cpu_model']}, "
        f"{machine.get('mem_gb')} GB, Python {machine['python']}; load average "
        f"{machine['loadavg_at_start'][0]:.1f} at start, {machine.get('loadavg_at_end', [float('nan')])[0]:.1f} at end"
    )
    table = Table(show_lines=False, header_style="bold")
    table.add_column("section")
    table.add_column("metric")
    table.add_column("memq", justify="right")
    table.add_column("baseline (same run)")
    table.add_column("baseline", justify="right")
    table.add_column("ratio", justify="right")
    table.add_column("note", overflow="fold", max_width=44)
    last = None
    for r in rows:
        first = r.section != last
        if last is not None and first:
            table.add_section()
        last = r.section
        ratio = r.ratio
        table.add_row(
            r.section if first else "",
            r.metric,
            fmt(r.value, r.unit),
            r.baseline,
            fmt(r.baseline_value, r.unit),
            f"{ratio:.2f}×" if ratio is not None else "—",
            r.note,
        )
    console.print(table)


def write_json(path: Path, doc: dict[str, Any]) -> None:
    def clean(x: Any) -> Any:
        if isinstance(x, float) and not math.isfinite(x):
            return None
        if isinstance(x, dict):
            return {str(k): clean(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [clean(v) for v in x]
        return x

    path.write_text(json.dumps(clean(doc), indent=2) + "\n")
