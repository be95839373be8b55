"""Where a run's wall time went, from a py-spy profile (``py-spy record --threads --subprocesses -f raw``).

py-spy samples every thread of every process at a fixed rate; a thread that is waiting (a lock, a queue, the GPU's
synchronisation) is left out unless ``--idle`` was given. So per thread, samples / rate is the time it was running
Python or native code: the busy threads, and inside each the functions of ours (``svg3d/``) that hold the time, by
their own samples (the innermost frame of ours on the stack) and inclusive.

    py-spy record -r 50 --threads --subprocesses -f raw -o run.spy -- python3 bench/bench_stream.py ...
    python3 bench/spy_summary.py run.spy --rate 50
"""

from __future__ import annotations

import argparse
import re
from collections import Counter, defaultdict

OURS = re.compile(r"\((svg3d/[^:]+):(\d+)\)$")


def parse(path: str) -> tuple[Counter, dict[str, Counter], dict[str, Counter]]:
    """Samples per thread, and per thread the samples of our innermost function (self) and of each function of ours
    on the stack (inclusive, counted once per stack)."""
    threads: Counter = Counter()
    own: dict[str, Counter] = defaultdict(Counter)
    inclusive: dict[str, Counter] = defaultdict(Counter)
    with open(path) as f:
        for line in f:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            if not stack or not count.isdigit():
                continue
            n = int(count)
            frames = stack.split(";")
            proc = next((fr.split('"')[1][:60] for fr in reversed(frames) if fr.startswith("process ")), "?")
            thread = next((fr for fr in frames if fr.startswith("thread ")), "thread ?")
            name = re.sub(r"\(\d+\)", "", thread).strip()  # "thread (6335): MainThread" -> "thread : MainThread"
            key = f"{proc} | {name}"
            threads[key] += n
            ours = [fr for fr in frames if OURS.search(fr)]
            if ours:
                own[key][ours[-1].split(" (")[0] + " " + OURS.search(ours[-1]).group(1)] += n
            for name in {fr.split(" (")[0] + " " + OURS.search(fr).group(1) for fr in ours}:
                inclusive[key][name] += n
    return threads, own, inclusive


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("profile", help="py-spy raw output (collapsed stacks)")
    ap.add_argument("--rate", type=float, default=100.0, help="py-spy's sampling rate (-r), samples per second")
    ap.add_argument("--top", type=int, default=12)
    ap.add_argument("--min-seconds", type=float, default=1.0, help="threads busy less than this are left out")
    args = ap.parse_args()
    threads, own, inclusive = parse(args.profile)
    for key, n in threads.most_common():
        if n / args.rate < args.min_seconds:
            continue
        print(f"\n{n / args.rate:8.1f} s busy  {key}")
        print("   self (innermost function of svg3d on the stack):")
        for name, m in own[key].most_common(args.top):
            print(f"     {m / args.rate:7.1f} s  {100 * m / n:5.1f} %  {name}")
        print("   inclusive:")
        for name, m in inclusive[key].most_common(args.top):
            print(f"     {m / args.rate:7.1f} s  {100 * m / n:5.1f} %  {name}")


if __name__ == "__main__":
    main()
