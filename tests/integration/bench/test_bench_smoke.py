"""scripts/bench runs and writes the figures it promises (shape and sanity, never timings)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
BENCH = ROOT / "scripts" / "bench"


def run_bench(tmp_path: Path, *args: str) -> dict:
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, str(BENCH), *args, "--json", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data: dict = json.loads(out.read_text())
    assert data["machine"]["cpus"] >= 1 and len(data["machine"]["load_at_start"]) == 3
    return data


def test_diff_reports_build_diff_digest_and_memory(tmp_path: Path):
    """`bench diff --sizes 1000` writes build/diff/digest timings, peak RSS and the plan it made."""
    data = run_bench(tmp_path, "diff", "--sizes", "1000", "--repeat", "2")
    fig = data["parts"]["diff"]["1000"]
    for key in ("build_s", "diff_s", "digest_s", "wall_s", "cpu_s", "rss_mb"):
        assert set(fig[key]) >= {"median", "min", "max", "runs"}, key
        assert fig[key]["min"] <= fig[key]["median"] <= fig[key]["max"], key
    assert fig["diff_s"]["runs"] == 2
    assert 5 < fig["rss_mb"]["median"] < 2000
    # 1000 users, 2% without mail; 50 groups; the drift the generator plants (bench_diff).
    assert fig["users"] == 980 and fig["groups"] == 50
    assert fig["counts"]["create_user"] == 1 and fig["counts"]["update_user"] == 1
    assert fig["counts"]["revoke_user"] == 1
    assert fig["changes"] == sum(fig["counts"].values())


def test_apply_reports_speedup_cpu_per_change_and_requests(tmp_path: Path):
    """`bench apply --sizes 60` applies every change at each concurrency and counts requests."""
    data = run_bench(tmp_path, "apply", "--sizes", "60", "--repeat", "1", "--latency-ms", "5")
    res = data["parts"]["apply"]
    assert res["users"] == 60 and res["latency_ms"] == 5
    for case in ("c1", "c4", "c8", "c16", "bulk_c8"):
        fig = res[case]
        # 57 active users (5% disabled are not created), 3 groups, 3 AddMembers.
        assert fig["counts"] == {"create_user": 57, "create_group": 3, "add_members": 3}, case
        assert fig["changes"] == 63
        assert fig["speedup_vs_c1"] > 0 and fig["cpu_ms_per_change"]["median"] > 0
        assert fig["apply_s"]["median"] > 0
    assert res["c1"]["speedup_vs_c1"] == pytest.approx(1.0)
    # Bulk off: one POST per user and per group, one PATCH per group; Bulk on: one Bulk
    # request carries the 57 user creates.
    assert res["c16"]["requests"].get("POST") == 60 and res["c16"]["requests"].get("PATCH") == 3
    assert res["c16"]["bulk_requests"] == 0
    assert res["bulk_c8"]["bulk_requests"] == 1 and res["bulk_c8"]["requests"]["POST"] == 4


def test_migrate_reports_plan_with_baselines(tmp_path: Path):
    """`bench migrate --sizes 1000` writes build/diff baselines, the migrate plan's time and
    its verdicts on the synthetic hand-off (bench_migrate)."""
    data = run_bench(tmp_path, "migrate", "--sizes", "1000", "--repeat", "1")
    fig = data["parts"]["migrate"]["1000"]
    for key in ("build_s", "diff_s", "plan_s", "wall_s", "cpu_s", "rss_mb"):
        assert set(fig[key]) >= {"median", "min", "max", "runs"}, key
    assert fig["plan_vs_diff"] > 0
    # 1000 members + 10 leavers on the server; 50 groups, 5 outside the scope.
    assert fig["members"] == 1010 and fig["groups"] == 50
    c = fig["counts"]
    assert (c["members.adopt_user_name"], c["members.conflict"], c["members.new"],
            c["members.unmanaged"]) == (870, 20, 10, 110)
