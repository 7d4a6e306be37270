"""Robustness runs against the real firmware on virtual boards (docs/robustness.md).

Three campaigns, one module each, each a library used by the short tests in
tests/robustness/ and, at length, by ``python -m bench.robustness`` (the
``make bench`` part, this module), which prints figures:

1. **Link fuzzing** (fuzz.py, :class:`LinkFuzz`; the cases in frames.py):
   random bytes, mutated frames and refused requests, interleaved with good
   ones, on the pump and the rig port. Every frame is also classified by
   :class:`ReceiverModel` (receiver.py), a model of the receiver rules of
   protocol/SPEC.md section 6 written from the spec, so each reply (or its
   absence) and every LINK_STATS counter is predicted and compared. Therapy
   must not change (time stands still while fuzzing, so STATUS, the active
   program, the log and the rig's truth must be identical before and after).
2. **Power-loss campaign** (power_loss.py, :class:`PowerLossCampaign`): the
   virtual-board process is killed at random instants (frozen mid-stroke,
   mid-request, mid-journal-write, mid-ADVANCE) and restarted on the same
   journal; after each restart the journal's story is checked against what
   the dead process's rig said.
3. **Link faults** (link_faults.py, :func:`link_fault_scenario`): a therapy
   scenario run through ``fault://`` (bench/link/transports/protocol_fault.py)
   must end with the same event log as the same scenario on a clean link.

The safety invariants under random command sequences (hypothesis stateful
testing) live in tests/robustness/test_invariants.py; the check they share
with the campaign is power_loss.py's :func:`bolus_story`; what all three
share (names, request fields) is common.py.

Usage: ``python -m bench.robustness [--frames N] [--cycles N] [--scenarios N]
[--seed S]``; nothing here asserts a time, and the exit code is 1 when an
invariant was broken.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from collections import Counter

from bench.robustness.fuzz import fuzz_campaign_rows
from bench.robustness.link_faults import clean_scenario, compare_outcomes, link_fault_scenario
from bench.robustness.power_loss import PowerLossCampaign


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.robustness", description="Robustness long runs (docs/robustness.md)."
    )
    parser.add_argument("--frames", type=int, default=50_000, help="fuzzed chunks")
    parser.add_argument("--cycles", type=int, default=600, help="power-loss kills")
    parser.add_argument("--scenarios", type=int, default=6, help="link-fault scenario runs")
    parser.add_argument("--seed", type=int, default=int(time.time()) % 100_000)
    args = parser.parse_args(argv)
    print(f"robustness long runs, seed {args.seed} (repeat with --seed {args.seed})")
    rows: list[tuple[str, str, str]] = []
    problems: list[str] = []
    started = time.perf_counter()

    fuzz_rows, fuzz_problems = fuzz_campaign_rows(args.frames, args.seed)
    rows += fuzz_rows
    problems += fuzz_problems

    with tempfile.TemporaryDirectory(prefix="pump-campaign-") as journal:
        campaign = PowerLossCampaign(random.Random(args.seed), journal)
        try:
            stats = campaign.run(args.cycles)
        finally:
            campaign.close()
    rows.append(("power loss: kills", f"{stats.cycles}", f"in {stats.seconds:.1f} s"))
    rows.append(("power loss: by instant", _counts(stats.kills), ""))
    rows.append(("power loss: by activity", _counts(stats.activities), ""))
    for outcome, count in sorted(stats.outcomes.items()):
        rows.append((f"  {outcome}", f"{count}", ""))
    rows.append(
        ("power loss: largest over-count (exact kills)", f"{stats.max_over_count_nl}", "nL")
    )
    rows.append(("power loss: widest bracket (in_advance)", f"{stats.max_bracket_nl}", "nL"))
    rows.append(("power loss: invariant violations", f"{len(stats.violations)}", ""))
    problems += stats.violations

    clean = clean_scenario(args.seed)
    rates = (0.0005, 0.001, 0.002)
    for run in range(args.scenarios):
        rate = rates[run % len(rates)]
        options = f"drop={rate}&dup={rate}&corrupt={rate}&delay_ms=2&seed={args.seed + run}"
        result = link_fault_scenario(options, args.seed)
        differences = compare_outcomes(clean, result)
        problems += [f"fault:// {options}: {d}" for d in differences]
        damaged = (
            sum(
                int(result.faults[side][k])
                for side in ("tx", "rx")
                for k in ("dropped", "duplicated", "corrupted")
            )
            if result.faults
            else 0
        )
        rows.append(
            (
                f"link faults {rate:g}/byte",
                f"{result.requests} requests, {result.retransmissions} retransmitted",
                f"{damaged} bytes damaged, {result.link.get('duplicates', 0)} duplicates "
                f"answered from cache, {result.seconds:.1f} s, "
                + ("same outcome" if not differences else f"{len(differences)} differences"),
            )
        )

    width = max(len(r[0]) for r in rows)
    for figure, value, note in rows:
        print(f"{figure:<{width}}  {value}  {note}".rstrip())
    print(f"({time.perf_counter() - started:.1f} s)")
    for problem in problems:
        print(f"VIOLATION: {problem}", file=sys.stderr)
    return 1 if problems else 0


def _counts(counter: Counter[str]) -> str:
    return ", ".join(f"{name} {count}" for name, count in sorted(counter.items()))


if __name__ == "__main__":
    sys.exit(main())
