"""Readable metric tables (values shown x100, as people expect percent)."""

from __future__ import annotations

from typing import Any

METRICS = ("mAP", "mAP100", "mINP", "R1", "R5", "R10")


def metrics_table(result: dict[str, Any], title: str = "") -> Any:
    from rich.table import Table

    head = f"{result['split']} ({result['protocol']}, gallery {result['gallery_size']})"
    table = Table(title=title or head)
    table.add_column("set")
    table.add_column("queries", justify="right")
    for name in METRICS:
        table.add_column(name if name != "mAP100" else "mAP@100", justify="right")
    for key, m in result["sets"].items():
        table.add_row(
            key, str(m.get("num_queries", "")), *(f"{100 * m[name]:.2f}" for name in METRICS)
        )
    for name, value in result["summary"].items():
        if name != "score":
            table.add_row(name.upper(), "", "", f"{100 * value:.2f}", "", "", "", "")
    table.add_row("score", "", "", f"{100 * result['score']:.2f}", "", "", "", "", style="bold")
    return table


def print_metrics(result: dict[str, Any], title: str = "") -> None:
    from rich.console import Console

    Console().print(metrics_table(result, title))
