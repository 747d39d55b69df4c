#!/usr/bin/env python3
"""Summarise an Autobahn|Testsuite fuzzingclient report (index.json).

Usage: autobahn_summary.py [--strict] [--agent NAME] [--expect N] REPORT_DIR_OR_INDEX_JSON

Prints the counts per behavior (OK, NON-STRICT, INFORMATIONAL, UNIMPLEMENTED,
FAILED), the counts per close behavior, and every case whose behavior or
close behavior is neither OK nor INFORMATIONAL.

Exit status:
  0  no FAILED case (with --strict: also no NON-STRICT / UNIMPLEMENTED)
  1  some case FAILED (behavior or close behavior), or --strict and some
     case is NON-STRICT / UNIMPLEMENTED
  3  the report is missing/unreadable, or has fewer cases than --expect
Only the standard library is used, so any python3 runs it.
"""
import argparse
import json
import os
import sys

BEHAVIORS = ["OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED"]
FINE = {"OK", "INFORMATIONAL"}


def case_key(case_id):
    out = []
    for part in case_id.split("."):
        try:
            out.append((0, int(part)))
        except ValueError:
            out.append((1, part))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("report", help="report directory or its index.json")
    ap.add_argument("--agent", help="agent to summarise (default: every agent in the report)")
    ap.add_argument("--strict", action="store_true", help="also fail on NON-STRICT and UNIMPLEMENTED")
    ap.add_argument("--expect", type=int, default=0, help="number of cases the run was asked to execute")
    args = ap.parse_args()

    path = args.report
    if os.path.isdir(path):
        path = os.path.join(path, "index.json")
    try:
        with open(path) as f:
            index = json.load(f)
    except (OSError, ValueError) as e:
        print("autobahn_summary: cannot read %s: %s" % (path, e), file=sys.stderr)
        return 3

    agents = sorted(index)
    if args.agent:
        if args.agent not in index:
            print("autobahn_summary: agent %r not in %s (agents: %s)" % (args.agent, path, ", ".join(agents)),
                  file=sys.stderr)
            return 3
        agents = [args.agent]
    if not agents:
        print("autobahn_summary: %s lists no agent (did any case run?)" % path, file=sys.stderr)
        return 3

    rc = 0
    for agent in agents:
        cases = index[agent]
        counts = {b: 0 for b in BEHAVIORS}
        close_counts = {}
        bad = []
        for cid in sorted(cases, key=case_key):
            c = cases[cid]
            b = c.get("behavior", "?")
            bc = c.get("behaviorClose", "?")
            counts[b] = counts.get(b, 0) + 1
            close_counts[bc] = close_counts.get(bc, 0) + 1
            if b not in FINE or bc not in FINE:
                bad.append((cid, b, bc, c.get("remoteCloseCode"), c.get("duration")))

        total = len(cases)
        print("Autobahn|Testsuite summary for agent %r (%s)" % (agent, path))
        print("  %-15s %5s" % ("behavior", "cases"))
        print("  %-15s %5s" % ("-" * 15, "-" * 5))
        for b in BEHAVIORS + sorted(set(counts) - set(BEHAVIORS)):
            print("  %-15s %5d" % (b, counts.get(b, 0)))
        print("  %-15s %5d" % ("total", total))
        print("  close behavior: " + ", ".join("%s=%d" % kv for kv in sorted(close_counts.items())))

        if bad:
            print()
            print("  cases not OK/INFORMATIONAL (%d):" % len(bad))
            print("  %-10s %-15s %-15s %-10s %s" % ("case", "behavior", "close", "closecode", "ms"))
            for cid, b, bc, code, ms in bad:
                print("  %-10s %-15s %-15s %-10s %s" % (cid, b, bc, code, ms))

        failed = [x for x in bad if x[1] == "FAILED" or x[2] == "FAILED"]
        lax = [x for x in bad if x not in failed and (x[1] in ("NON-STRICT", "UNIMPLEMENTED")
                                                      or x[2] in ("NON-STRICT", "UNIMPLEMENTED"))]
        print()
        if failed:
            print("  RESULT: %d case(s) FAILED" % len(failed))
            rc = max(rc, 1)
        elif args.strict and lax:
            print("  RESULT: STRICT: %d case(s) NON-STRICT/UNIMPLEMENTED" % len(lax))
            rc = max(rc, 1)
        else:
            print("  RESULT: no FAILED case" + ("" if not lax else " (%d NON-STRICT/UNIMPLEMENTED)" % len(lax)))
        if args.expect and total < args.expect:
            print("  RESULT: only %d of the %d planned cases are in the report" % (total, args.expect))
            rc = 3
    return rc


if __name__ == "__main__":
    sys.exit(main())
