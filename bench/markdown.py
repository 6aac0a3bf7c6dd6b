"""Markdown helpers of the benchmark report."""

from __future__ import annotations


def kb(size: float) -> str:
    return f"{size / 1024:,.1f} KB"


def ms(seconds: float) -> str:
    return f"{seconds * 1000:,.1f}"


def mark(ok: bool) -> str:
    return "met" if ok else "**not met**"


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]
