"""One line describing the machine a benchmark ran on, for the header of every results file, and the writing
of that file."""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
from pathlib import Path


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo, or what platform knows elsewhere."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def memory_gib() -> float | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        return None


def code_version(root: Path | None = None) -> str:
    """The git commit the code ran at ("commit 1a2b3c4", with "+ uncommitted changes" if tracked files
    outside benchmarks/results, which runs write, differ from it), or "code version unknown" outside a git
    checkout; results name it so a rerun can check out the same code."""
    root = root or Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "rev-parse", "--short=7", "HEAD"], cwd=root, capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
                                ":(exclude)benchmarks/results"],  # results are what runs write, not code
                               cwd=root, capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "code version unknown"
    return f"commit {head}" + (" + uncommitted changes" if dirty else "")


def machine_description(code: str | None = None) -> str:
    """CPU, cores, memory, OS, Python and key library versions, today's date and the code's commit
    (``code``, default: ``code_version()``)."""
    import gymnasium
    import numpy

    mem = memory_gib()
    parts = [
        cpu_model(),
        f"{os.cpu_count()} cores",
        f"{mem:.0f} GiB RAM" if mem else "",
        f"{platform.system()} {platform.release()}",
        f"Python {platform.python_version()}",
        f"numpy {numpy.__version__}",
        f"gymnasium {gymnasium.__version__}",
    ]
    try:
        import torch

        parts.append(f"torch {torch.__version__}")
        if torch.cuda.is_available():
            parts.append(f"GPU {torch.cuda.get_device_name(0)}")
    except ImportError:
        pass
    return ", ".join(p for p in parts if p) + f"; {datetime.date.today().isoformat()}; code: {code or code_version()}"


def write_results(text: str, out: Path | None) -> None:
    """Write a benchmark's results file, making its folder as needed; nothing when ``out`` is None."""
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
