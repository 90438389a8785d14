"""Presentation of benchmark results: the machine they ran on and markdown tables of rows."""

import datetime
import math
import os
import platform


def machine_info():
    """A JSON-ready description of this machine and of the library versions that matter."""
    info = {
        "when": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
    }
    # Imported here so that listing the benchmarks does not pay for torch.
    import tensorboard
    import torch

    info.update(
        torch=torch.__version__,
        torch_threads=torch.get_num_threads(),
        tensorboard=tensorboard.__version__,
    )
    return info


def describe_machine(info):
    """One line naming the machine, for the top of a benchmark printout."""
    return (
        f"{info['cpu']} ({info['cpu_count']} CPUs, torch {info['torch']} with "
        f"{info['torch_threads']} threads, tensorboard {info['tensorboard']}, "
        f"Python {info['python']})"
    )


def _cpu_name():
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def format_value(value):
    """Formats one cell: floats to three significant figures, None as an empty cell."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        if value == 0 or 0.01 <= abs(value) < 1e5:
            return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
        return f"{value:.2e}"
    return str(value)


def markdown_table(rows):
    """A markdown table of ``rows`` (dicts); columns in order of first appearance."""
    if not rows:
        return "(no rows)"
    columns = []
    for row in rows:
        columns += [key for key in row if key not in columns]
    lines = [
        "| " + " | ".join(columns) + " |",
        "|" + "|".join("---" for _ in columns) + "|",
    ]
    for row in rows:
        lines.append("| " + " | ".join(format_value(row.get(c)) for c in columns) + " |")
    return "\n".join(lines)
