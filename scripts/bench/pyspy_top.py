"""Summarize a py-spy profile (``--format raw``, collapsed stacks) for docs/benchmarks.md.

    uv run py-spy record --rate 200 --format raw -o /tmp/gd.txt -- \\
        .venv/bin/shanju bench giving-day --db sqlite --donations 100000 --json
    uv run python scripts/bench/pyspy_top.py /tmp/gd.txt [STACK FILTER] [TOP]

Only stacks containing STACK FILTER count (default: the engine's writer thread,
``_run (shanju/campaigns/engine.py``). Prints the share of those samples spent *inside* each
function (inclusive: the function or what it called) and *in* it (self), highest first, then
the lines of ``apply_batch`` (which step of the batch) inclusive.
"""

from __future__ import annotations

import re
import sys
from collections import Counter

LINE = re.compile(r":\d+\)$")


def main() -> None:
    path = sys.argv[1]
    needle = sys.argv[2] if len(sys.argv) > 2 else "_run (shanju/campaigns/engine.py"
    top = int(sys.argv[3]) if len(sys.argv) > 3 else 25
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    steps: Counter[str] = Counter()
    total = 0
    with open(path, encoding="utf-8") as lines:
        for line in lines:
            stack, _, count_text = line.rstrip("\n").rpartition(" ")
            if needle not in stack:
                continue
            count = int(count_text)
            total += count
            raw = stack.split(";")
            frames = [LINE.sub(")", f) for f in raw]
            for frame in set(frames):
                inclusive[frame] += count
            own[raw[-1]] += count
            for frame in set(raw):
                if frame.startswith("apply_batch (shanju/campaigns/engine.py"):
                    steps[frame] += count
    if not total:
        print("no samples matched", needle)
        return
    print(f"{total} samples matching {needle!r}\n")
    print("inclusive  function")
    for frame, count in inclusive.most_common(top):
        print(f"{100 * count / total:8.1f}%  {frame}")
    print("\nself       function (line)")
    for frame, count in own.most_common(top):
        print(f"{100 * count / total:8.1f}%  {frame}")
    print("\ninclusive  apply_batch line")
    for frame, count in sorted(steps.items(), key=lambda kv: -kv[1])[:top]:
        print(f"{100 * count / total:8.1f}%  {frame}")


if __name__ == "__main__":
    main()
