"""The benchmark's outputs: the table printed at the end, the JSON document and the
chart of ratios (roomsvc / bare and python-socketio / bare, with each goal marked)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

KINDS = ("bare", "socketio", "roomsvc")


def fmt(value: Any, unit: str) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    if unit in ("/s", "req/s"):
        return f"{value:,.0f} {unit}"
    if abs(value) >= 100:
        return f"{value:,.0f} {unit}".strip()
    return f"{value:.3g} {unit}".strip()


def ratio_text(row: dict[str, Any]) -> str:
    r = row.get("ratio")
    return "-" if r is None else f"{r:.2f}×"


def table(rows: list[dict[str, Any]]) -> str:
    head = "| scenario | metric | bare aiohttp | python-socketio | roomsvc | roomsvc / bare | goal |"
    lines = [head, "|---|---|---|---|---|---|---|"]
    for row in rows:
        v = row["values"]
        goal = row.get("goal") or ""
        if goal and row.get("met") is not None:
            goal += " ✔" if row["met"] else " ✘"
        lines.append(f"| {row['scenario']} | {row['metric']} | {fmt(v.get('bare'), row['unit'])} | "
                     f"{fmt(v.get('socketio'), row['unit'])} | {fmt(v.get('roomsvc'), row['unit'])} | "
                     f"{ratio_text(row)} | {goal} |")
    return "\n".join(lines)


def write_json(path: Path, document: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=1, ensure_ascii=False) + "\n")


def chart(rows: list[dict[str, Any]], path: Path, title: str) -> bool:
    """A horizontal bar per row with a ratio to bare; False if matplotlib is missing."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    rated = [r for r in rows if r.get("ratio") is not None]
    if not rated:
        return False
    labels = [f"{r['scenario']}: {r['metric']}" for r in rated]
    ours = [r["ratio"] for r in rated]
    sio = [r.get("sio_ratio") or 0 for r in rated]
    fig, ax = plt.subplots(figsize=(10, 0.45 * len(rated) + 1.5))
    ys = range(len(rated))
    ax.barh([y + 0.2 for y in ys], ours, height=0.4, label="roomsvc / bare", color="#2a6f97")
    ax.barh([y - 0.2 for y in ys], sio, height=0.4, label="python-socketio / bare", color="#bbbbbb")
    for y, r in zip(ys, rated):
        if r.get("goal_ratio") is not None:
            ax.plot([r["goal_ratio"]] * 2, [y - 0.45, y + 0.45], color="#c0392b", lw=2)
    ax.axvline(1.0, color="black", lw=0.8)
    ax.set_yticks(list(ys))
    ax.set_yticklabels(labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("ratio to the bare aiohttp server in the same run (red: goal)")
    ax.set_title(title, fontsize=10)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
