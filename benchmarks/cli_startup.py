"""CLI start-up time: median wall time of `--version` and `--help` over 10 runs.

Also checks that neither imports the heavy stack. Prints a table, writes JSON to
benchmarks/results/cli_startup.json. Targets: --version <= 0.15 s, --help <= 0.25 s.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

RUNS = 10
TARGETS = {"--version": 0.15, "--help": 0.25}
HEAVY = ("httpx", "huggingface_hub", "litellm", "mlx", "yaml", "psutil")


def _time(args: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "mlx_stack", *args], check=True, capture_output=True)
    return time.perf_counter() - start


def _heavy_imports(flag: str) -> list[str]:
    code = (
        "import sys\nfrom mlx_stack.cli.app import app\n"
        f"try:\n    app([{flag!r}])\nexcept SystemExit:\n    pass\n"
        f"sys.stderr.write('HEAVY=' + ','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    last = out.stderr.rsplit("HEAVY=", 1)[-1].strip()
    return [m for m in last.split(",") if m]


def main() -> int:
    results = []
    for flag, target in TARGETS.items():
        _time([flag])  # warm the file cache
        times = [_time([flag]) for _ in range(RUNS)]
        median = statistics.median(times)
        heavy = _heavy_imports(flag)
        results.append({
            "command": f"mlx-stack {flag}", "median_s": round(median, 4), "target_s": target,
            "pass": median <= target and not heavy, "heavy_imports": heavy,
        })
    print(f"{'command':<22}{'median s':>10}{'target s':>10}  heavy imports  result")
    for r in results:
        print(f"{r['command']:<22}{r['median_s']:>10.3f}{r['target_s']:>10.2f}  "
              f"{','.join(r['heavy_imports']) or '-':<13}  {'PASS' if r['pass'] else 'FAIL'}")
    out = Path(__file__).parent / "results" / "cli_startup.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    return 0 if all(r["pass"] for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
