#!/usr/bin/env python3
"""Groups a heaptrack peak profile by what holds the memory (docs/benchmarks.md).

Usage: heaptrack_print -f heap.zst --flamegraph-cost-type peak -F peak.stacks
       hack/heap-groups.py peak.stacks

Each stack is counted under the first group whose pattern one of its frames
matches, in the order below; the rest is the runtime, statics and passes in
flight.
"""

import collections
import re
import sys

GROUPS = [
    ("the policy cache (kube's store: objects, their strings, its table)",
     r"apply_watcher_event|\(reflect\.rs\)"),
    ("kube's scheduler and trigger path", r"\(scheduler\.rs\)"),
    ("the drift checks' own timers", r"drift_checks"),
    ("per-policy metric snapshots", r"record_metrics"),
    ("account claims held", r"\(claims\.rs\)"),
    ("the records of the versions our writes replaced", r"wrote \(cached\.rs\)"),
    ("event publisher", r"publisher\.rs"),
    ("status writes in flight", r"status_writer"),
    ("HTTP clients (connections, TLS, bodies in flight)",
     r"\((client|conn|io|dispatch|body|h1|decode|role|connect)\.rs\)"),
]


def without_generics(frame):
    for _ in range(8):
        frame = re.sub(r"<[^<>]*>", "", frame)
    return frame


def main(path):
    totals = collections.Counter()
    with open(path, encoding="utf-8") as stacks:
        for line in stacks:
            stack, _, cost = line.rstrip().rpartition(" ")
            frames = [without_generics(f) for f in stack.split(";")]
            group = next(
                (name for name, pattern in GROUPS
                 if any(re.search(pattern, f) for f in frames)),
                "the rest (runtime, statics, passes in flight)",
            )
            totals[group] += int(cost)
    print(f"peak heap {sum(totals.values()) / 1e6:.1f} MB")
    for group, cost in totals.most_common():
        print(f"| {cost / 1e6:.1f} | {group} |")


if __name__ == "__main__":
    main(sys.argv[1])
