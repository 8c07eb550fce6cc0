"""Where a run came from: device, driver, versions, git revision and command line."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any


def _git_revision() -> str | None:
    root = Path(__file__).resolve().parent.parent
    try:
        rev = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
        )
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if rev.returncode:
        return None
    return rev.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def _driver_version() -> str | None:
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout else None


def _version(package: str) -> str | None:
    from importlib import metadata  # ~20 ms: only when a version is asked for

    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo where there is one)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def host_summary() -> str:
    """One line for benchmark tables: CPU, cores, memory, Python."""
    memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{cpu_model()}, {os.cpu_count()} cores, {memory_gib:.0f} GiB RAM, "
        f"Python {platform.python_version()}"
    )


def host_environment(device: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """Where this process runs, torch-free: the device it measured (`extra` adds keys)."""
    return {
        "device": device,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "host": platform.node(),
        **extra,
        "cpu_count": os.cpu_count(),
        "stepgap": _version("stepgap"),
        "git_revision": _git_revision(),
        "command": " ".join(["stepgap", *sys.argv[1:]]) if sys.argv else None,
    }


def collect(device: dict[str, Any]) -> dict[str, Any]:
    """Environment of this process; `device` is `Device.describe()` of the engine's device."""
    import torch  # only runs of the engine collect this; the other commands never load torch

    env = host_environment(device, torch=torch.__version__, cuda=torch.version.cuda)
    if device.get("kind") == "cuda":
        env["driver"] = _driver_version()
    return env
