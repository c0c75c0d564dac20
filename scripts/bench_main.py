"""The driver behind scripts/bench: parse arguments, run the parts, print, write JSON."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from bench_common import ROOT, fmt, load, log, machine, run_child, summarise

PARTS = ("startup", "ldap", "diff", "migrate", "apply", "e2e", "takeover", "replicas",
         "feeds", "watch", "mapping")
ALONE = ("feeds", "watch", "mapping")
"""Parts ``all`` leaves out (each runs its own servers for minutes): run them by name."""
GOALS = [
    "LDAP read of 100k users + 5k groups <= 2.5x ldapsearch with python-ldap",
    "diff of 1M users <= 5 s and <= 2 GB",
    "apply at concurrency 16 >= 10x concurrency 1 at 20 ms; client CPU <= 1 ms per change",
    "e2e full sync to Bitwarden: 10k <= 1.0 s / 150 MB; 100k <= 10 s / 800 MB; growth <= 12x",
    "e2e no-op resync of 100k <= 1.5 s with zero writes",
    "dirconnector --help / --version <= 0.3 s",
    "takeover from bwdc (issue 18): sync of 100k relinks ends with 0 failed, the next plan empty",
    "replicas (issue 24): daemon overhead per run on PostgreSQL <= 20 ms; 1,000 no-op profiles "
    "on 3 replicas: each tick within 30 s; failover after kill -9 <= interval + 5 s",
    "migrate plan of 100k members <= 2 s (issue 19)",
    "feeds (issue 21): per source at 100k users, a quiet poll <= 3 requests; one change "
    "<= 10 requests and <= 0.2 s CPU",
    "watch (issue 20), 100k users / 5k groups, OpenLDAP: lag over 50 mixed changes p95 <= 2 s; "
    "a burst of 1,000 changes within 15 s in <= 20 requests to a Bulk server; idle CPU <= 1% "
    "of a core over 60 s; <= 0.2 s CPU per change",
    "mapping (issue 22): full sync of 10k users to scim2-server mapping ten attributes with "
    "manager <= 1.3x the same sync without the mapping; the second plan empty",
]


def _ints(text: str) -> list[int]:
    return [int(x.replace("_", "")) for x in text.split(",") if x.strip()]


def startup(repeat: int) -> dict[str, Any]:
    exe = str(ROOT / ".venv" / "bin" / "dirconnector")
    out: dict[str, Any] = {}
    for flag in ("--help", "--version"):
        samples = [run_child([exe, flag]) for _ in range(max(repeat, 5))]
        out[flag] = summarise(samples)
    return out


def startup_table(r: dict[str, Any]) -> list[str]:
    return [f"dirconnector {flag:<10} wall {fmt(v['wall_s'], 's', 3)}  CPU "
            f"{fmt(v['cpu_s'], 's', 3)}  RSS {fmt(v['rss_mb'], ' MB', 0)}"
            for flag, v in r.items()]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="scripts/bench", description=__doc__)
    parser.add_argument("part", nargs="?", default="all", choices=("all", *PARTS))
    # "all" leaves out mapping (six full syncs of 10k users, ~5 min): run it by name.
    parser.add_argument("--sizes", help="directory sizes for ldap and e2e (default "
                        "10000,100000); for diff/apply when they run alone")
    parser.add_argument("--diff-sizes", help="default 100000,1000000")
    parser.add_argument("--migrate-sizes", help="default 10000,100000")
    parser.add_argument("--apply-size", type=int, help="default 10000")
    parser.add_argument("--feed-sizes", help="feeds: users per emulated org (default 100000)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure (median)")
    parser.add_argument("--latency-ms", type=float, default=20.0,
                        help="apply: server latency per request")
    parser.add_argument("--e2e-latency-ms", type=float, default=0.0,
                        help="e2e: scimlat latency per request")
    parser.add_argument("--watch-idle", type=float, default=60.0,
                        help="watch: seconds the idle CPU is measured over")
    parser.add_argument("--watch-sources", default="ldap",
                        help="watch: comma-separated sources among ldap (slapd), entra "
                             "(the Graph emulator), ad (the Samba AD test DC); default ldap")
    parser.add_argument("--json", type=Path, help="write every figure here")
    parser.add_argument("--keep-servers", action="store_true",
                        help="leave the slapd servers this run started running (the next "
                             "run reuses them); by default they are stopped at the end")
    args = parser.parse_args(argv)
    import bench_ldap

    try:
        return _main(args)
    finally:
        if not args.keep_servers:
            bench_ldap.stop_started()


def _main(args: argparse.Namespace) -> int:
    sizes = _ints(args.sizes) if args.sizes else [10_000, 100_000]
    diff_sizes = (_ints(args.diff_sizes) if args.diff_sizes
                  else sizes if args.part == "diff" and args.sizes else [100_000, 1_000_000])
    migrate_sizes = (_ints(args.migrate_sizes) if args.migrate_sizes
                     else sizes if args.part == "migrate" and args.sizes
                     else [10_000, 100_000])
    apply_size = (args.apply_size or (sizes[0] if args.part == "apply" and args.sizes
                                      else 10_000))
    parts = tuple(p for p in PARTS if p not in ALONE) if args.part == "all" else (args.part,)
    if any(p in parts for p in ("ldap", "e2e", "takeover", "watch", "mapping")) and \
            not shutil.which("ldapsearch"):
        print("bench: ldapsearch not found; run scripts/test as root once to install slapd "
              "and ldap-utils", file=sys.stderr)
        return 1

    started = time.time()
    report: dict[str, Any] = {"machine": machine(), "started": time.strftime(
        "%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)), "repeat": args.repeat, "parts": {}}
    tables: list[str] = []
    for part in parts:
        t0 = time.perf_counter()
        before = load()
        log(f"== {part}")
        if part == "startup":
            res = startup(args.repeat)
            lines = startup_table(res)
        elif part == "ldap":
            import bench_ldapread

            res = bench_ldapread.run(sizes, args.repeat)
            lines = bench_ldapread.table(res)
        elif part == "diff":
            import bench_diff

            res = bench_diff.run(diff_sizes, args.repeat)
            lines = bench_diff.table(res)
        elif part == "migrate":
            import bench_migrate

            res = bench_migrate.run(migrate_sizes, args.repeat)
            lines = bench_migrate.table(res)
        elif part == "apply":
            import bench_apply

            res = bench_apply.run(apply_size, args.repeat, args.latency_ms / 1000)
            lines = bench_apply.table(res)
        elif part == "e2e":
            import bench_e2e

            res = bench_e2e.run(sizes, args.repeat, args.e2e_latency_ms / 1000)
            lines = bench_e2e.table(res)
        elif part == "feeds":
            import bench_feeds

            res = bench_feeds.run(_ints(args.feed_sizes) if args.feed_sizes else
                                  sizes if args.part == "feeds" and args.sizes else [100_000],
                                  args.repeat)
            lines = bench_feeds.table(res)
        elif part == "watch":
            import bench_watch

            sources = [x.strip() for x in args.watch_sources.split(",") if x.strip()]
            if sources == ["ldap"]:
                res = bench_watch.run(sizes, args.watch_idle)
                lines = bench_watch.table(res)
            else:
                import bench_watch_cloud

                res, lines = {}, []
                for source in sources:
                    if source == "ldap":
                        res[source] = bench_watch.run(sizes, args.watch_idle)
                        lines += ["ldap (slapd):", *bench_watch.table(res[source])]
                    else:
                        res[source] = bench_watch_cloud.run(source, sizes, args.watch_idle)
                        lines += [f"{source}:", *bench_watch_cloud.table(res[source])]
        elif part == "mapping":
            import bench_mapping

            res = bench_mapping.run(sizes[0], args.repeat)
            lines = bench_mapping.table(res)
        elif part == "replicas":
            import bench_replicas

            res = bench_replicas.run()
            lines = bench_replicas.table(res)
        else:
            import bench_takeover

            res = bench_takeover.run(sizes, args.repeat)
            lines = bench_takeover.table(res)
        seconds = time.perf_counter() - t0
        res["_meta"] = {"seconds": seconds, "load_before": before, "load_after": load()}
        report["parts"][part] = res
        tables.append(f"## {part} ({seconds:.0f} s; load average {before[0]} -> "
                      f"{load()[0]})")
        tables.extend(lines)
        tables.append("")
    report["total_s"] = time.time() - started
    report["machine"]["load_at_end"] = load()
    print()
    print("\n".join(tables))
    if args.part == "all":
        print("Goals (issue 12):")
        for g in GOALS:
            print(f"  - {g}")
    print(f"total {report['total_s']:.0f} s on {report['machine']['cpus']} CPUs; load "
          f"average at start {report['machine']['load_at_start']}, at end "
          f"{report['machine']['load_at_end']}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str))
        print(f"wrote {args.json}")
    return 0
