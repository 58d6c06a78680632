"""What every benchmark section shares: the machine's description, timed commands, peak memory, tables."""
from __future__ import annotations

import os
import platform
import shlex
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


def machine() -> dict[str, Any]:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = None
    try:
        mem_gib = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": mem_gib, "gpu": gpu, "python": platform.python_version(),
            "torch": torch.__version__, "torch_threads": torch.get_num_threads(), "os": platform.platform()}


def commit() -> str:
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                             check=True).stdout.strip()
        # the suite's own output files do not make the code dirty (it rewrites them after every run)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
                                ":(exclude)benchmarks/results*", ":(exclude)README.md"], cwd=REPO, capture_output=True,
                               text=True).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _pss(pid: int) -> int | None:
    """Proportional set size in bytes from /proc/PID/smaps_rollup (the kernel's own sum: cheap)."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _tree_rss(pid: int) -> int:
    """PSS summed over the process tree: forked data workers share the parent's pages, which plain RSS
    would count once per process (3-4x too much with 2 workers). RSS where PSS is not available."""
    import psutil

    try:
        proc = psutil.Process(pid)
        procs = [proc, *proc.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for p in procs:
        pss = _pss(p.pid)
        if pss is None:
            try:
                pss = p.memory_info().rss
            except psutil.NoSuchProcess:
                pss = 0
        total += pss
    return total


@dataclass
class Ran:
    command: str
    seconds: float
    peak_rss_mib: float  # PSS where the OS reports it (Linux), else RSS
    stdout: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def run(cmd: list[str], log: Path | None = None, capture: bool = False) -> Ran:
    """Run ``cmd``; measure its wall time and the peak RSS of its whole process tree (data workers too)."""
    print("$", shlex.join(cmd), flush=True)
    out = open(log, "w") if log else None
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE if capture else out, stderr=out if out else None, text=True)
    peak = [0]

    def watch() -> None:
        while proc.poll() is None:
            peak[0] = max(peak[0], _tree_rss(proc.pid))
            time.sleep(2.0)  # sampling must not steal CPU from the process it measures

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    stdout, _ = proc.communicate()
    watcher.join()
    if out:
        out.close()
    if proc.returncode != 0:
        where = f" (log: {log})" if log else ""
        raise RuntimeError(f"command failed with exit code {proc.returncode}{where}: {shlex.join(cmd)}")
    return Ran(shlex.join(cmd), time.perf_counter() - started, peak[0] / 2**20, stdout or "")


def fashionlab(*args: str) -> list[str]:
    return [sys.executable, "-m", "fashionlab", *args]


def table(headers: list[str], rows: list[list[Any]]) -> str:
    def cell(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.4f}" if abs(v) < 1 else f"{v:.1f}"
        return str(v)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)
