"""Run every bench/bench_*.py in turn (each prints `name: value unit` lines and its ratios)."""

import subprocess
import sys
from pathlib import Path

failed = []
for script in sorted(Path(__file__).parent.glob("bench_*.py")):
    print(f"== {script.name}", flush=True)
    if subprocess.call([sys.executable, str(script)]) != 0:
        failed.append(script.name)
if failed:
    print(f"benchmarks failed: {', '.join(failed)}", file=sys.stderr)
    sys.exit(1)
