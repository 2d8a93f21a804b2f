"""How long `pspnet --version`, `--help` and `models` take to answer, for two source trees side by side (median of 5
fresh processes each): `python benchmarks/cli_startup.py OLD_SRC NEW_SRC`, e.g. a `git worktree` of an older commit's
src/ against this one's."""

import os
import statistics
import subprocess
import sys
import time


def seconds(src: str, argv: list[str], runs: int = 5) -> float:
    env = {**os.environ, "PYTHONPATH": src}
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "pspnet.cli.main", *argv], env=env, capture_output=True, check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


if __name__ == "__main__":
    old, new = sys.argv[1:3]
    for argv in (["--version"], ["--help"], ["models"]):
        before, after = seconds(old, argv), seconds(new, argv)
        print(f"pspnet {' '.join(argv):10s} {before:.2f} s -> {after:.2f} s  ({before / after:.0f}x)")
