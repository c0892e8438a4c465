"""What the benchmark prints: version lines, Markdown tables of rows and contenders."""

from __future__ import annotations

import os
import platform

import onnxruntime as ort
import torch
import torchvision


def markdown_table(lines: list[list[str]], numeric: set[int]) -> str:
    """``lines[0]`` as the header, the ``numeric`` columns right-aligned, cells padded."""
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]

    def render(cells: list[str]) -> str:
        padded = [
            cell.rjust(width) if i in numeric else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ]
        return "| " + " | ".join(padded) + " |"

    rule = ["-" * (w - 1) + ":" if i in numeric else "-" * w for i, w in enumerate(widths)]
    return "\n".join([render(lines[0]), render(rule), *(render(line) for line in lines[1:])])


def format_table(rows: list[dict]) -> str:
    """A Markdown table of :func:`~mtvision.benchmarks.timing.make_row` rows: names and
    checks left-aligned, numbers right-aligned; a ``goal`` column when a row has a goal
    (``ratio <= goal``: met or missed)."""
    header = ["benchmark", "ours ms", "reference ms", "ratio", "ratio p25-p75", "check"]
    with_goals = any("goal" in row for row in rows)
    if with_goals:
        header.insert(5, "goal")
    lines = [header]
    for row in rows:
        cells = [
            row["name"],
            f"{row['ours_ms']:.3f}",
            f"{row['reference_ms']:.3f}",
            f"{row['ratio']:.2f}",
            f"{row['ratio_iqr'][0]:.2f}-{row['ratio_iqr'][1]:.2f}",
            row["check"],
        ]
        if with_goals:
            cells.insert(5, goal_text(row))
        lines.append(cells)
    return markdown_table(lines, numeric={1, 2, 3, 4})


def goal_text(row: dict) -> str:
    """``"<= 0.20: met"`` (or ``MISSED``) for a row with a goal, else empty."""
    if "goal" not in row:
        return ""
    return f"<= {row['goal']:.2f}: {'met' if row['ratio'] <= row['goal'] else 'MISSED'}"


def library_versions() -> str:
    """``"torch X, torchvision Y, onnxruntime Z"``: what every table was measured with."""
    return (
        f"torch {torch.__version__}, torchvision {torchvision.__version__}, "
        f"onnxruntime {ort.__version__}"
    )


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``'s ``model name``), else the architecture.

    Why: int8 ratios move with the CPU (AMX on Intel Xeons, none on AMD EPYCs), so every
    table names the model it was measured on, not only ``x86_64``.
    """
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return f"{line.split(':', 1)[1].strip()} ({platform.machine()})"
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_description(device: str) -> str:
    """The GPU's name and CUDA version, or the CPU model (:func:`cpu_model`)."""
    if device == "cuda":
        return f"{torch.cuda.get_device_name()} (CUDA {torch.version.cuda})"
    return cpu_model()


def print_task_versions() -> None:
    """The end-to-end tables' first line: libraries, the TFLite runtime, CPU model and
    count."""
    try:
        from ai_edge_litert import __version__ as litert_version
    except ImportError:
        litert_version = "not installed"
    print(
        f"{library_versions()}, ai-edge-litert {litert_version}, "
        f"{cpu_model()}, {os.cpu_count()} CPUs"
    )


def print_network_rows(rows: list[dict]) -> None:
    """The network comparisons' table, then images per second of both sides of each row
    that processes images."""
    print(format_table(rows))
    print("ratio = ours / reference per paired run, median (below 1: ours is faster)")
    print("images per second (median time), ours / reference:")
    for row in rows:
        if "images_per_s" in row:
            ours_ips, reference_ips = row["images_per_s"]
            print(f"  {row['name']}: {ours_ips:.1f} / {reference_ips:.1f}")


def print_task_table(table: dict, runs: int, warmup: int, block: int) -> None:
    """One thread count of an end-to-end task (:func:`~mtvision.benchmarks.end_to_end.task_table`):
    the contenders' times and outputs, the ratios with their goals, the fastest of
    mtvision's int8 files (runtime and format), the agreement checks."""
    print(
        f"\nthreads {table['threads']}, batch 1, {runs} runs after {warmup} warm-up "
        f"(per run and contender in rotating order: 1 untimed call, median of {block} timed)"
    )
    lines = [["contender", "median ms", "p25-p75 ms", "output"]] + [
        [
            c["name"],
            f"{c['median_ms']:.2f}",
            f"{c['iqr_ms'][0]:.2f}-{c['iqr_ms'][1]:.2f}",
            c["output"],
        ]
        for c in table["contenders"]
    ]
    print(markdown_table(lines, numeric={1, 2}))
    print()
    print(format_table(table["ratios"]))
    fastest = table.get("fastest_int8")
    if fastest is not None:
        print(
            f"fastest mtvision int8 file: {fastest['format']} ({fastest['key']}), "
            f"{fastest['median_ms']:.2f} ms"
        )
    for line in table["agreement"]:
        print(f"  {line}")
