"""scripts/bench mapping: a full sync with an attribute mapping vs the same sync without one.

slapd (scripts/servers/ldapdata.py: every person has title, employeeNumber, phones, city,
language, department and a manager) to scim2-server (the independent SCIM server of the
test dependencies, with the enterprise extension, Bulk on). Per round, in alternating
order, each a fresh server, a fresh state file and one ``dirconnector sync`` child:
- ``plain``: the profile without ``[target.mapping]``;
- ``mapped``: the same profile mapping ten attributes, the manager included;
then, after a mapped run, ``dirconnector plan --detailed-exitcode`` (must exit 0: the
second plan is empty). Where the time goes: our process (wall, CPU of the sync child)
and the server (CPU seconds scim2-server spent in that sync, from /proc). Goal (issue
22): mapped full sync <= 1.3x plain.

The server's share, measured apart (``replay``): one sync of each profile is recorded
through a pass-through proxy (every request and answer), then its requests are sent again,
in the same order, to a fresh scim2-server by a bare HTTP client that does nothing else
(the server's ids of the recording swapped for the new server's as they are answered).
That is the same sync with a client that costs nothing: the ratio of those two replays
is what the server alone makes of the mapping, whatever the client does.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import ROOT, Sample, fmt, log, run_child, summarise

DIRCONNECTOR = str(ROOT / ".venv" / "bin" / "dirconnector")
SLAPD = ROOT / "scripts" / "servers" / "slapd"
TOKEN = "bench-token"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
MAPPING = f"""
[target.mapping]
title = "title"
userType = "employeeType"
preferredLanguage = "preferredLanguage"
nickName = {{ template = "{{givenName}}.{{sn}}", case = "lower" }}
'phoneNumbers[type eq "work"].value' = "telephoneNumber"
'phoneNumbers[type eq "mobile"].value' = "mobile"
'addresses[type eq "work"].locality' = "l"
"{ENTERPRISE}:employeeNumber" = "employeeNumber"
"{ENTERPRISE}:department" = {{ from = "departmentNumber", default = "General" }}
"{ENTERPRISE}:manager" = "manager"
"""


def slapd(users: int) -> dict[str, str]:
    """A slapd of ``users`` people with their profile attributes (loaded fresh once)."""
    run_dir = Path(os.environ.get("DIRCONNECTOR_RUN_DIR", "/tmp")) / f"bench-mapping-{users}"
    env_file = run_dir / "env.json"
    fresh = [] if env_file.is_file() and _has_profiles(run_dir) else ["--fresh"]
    if fresh:
        log(f"mapping: loading {users} users with profile attributes into slapd ...")
    subprocess.run([sys.executable, str(SLAPD), "start", *fresh, "--run-dir", str(run_dir),
                    "--users", str(users), "--groups", str(max(1, users // 20))],
                   check=True, capture_output=True)
    return dict(json.loads(env_file.read_text()))


def _has_profiles(run_dir: Path) -> bool:
    """The stopped or running server was loaded by a generator that writes ``title``."""
    marker = run_dir / "profiles"
    return marker.is_file()


def stop_slapd(users: int) -> None:
    run_dir = Path(os.environ.get("DIRCONNECTOR_RUN_DIR", "/tmp")) / f"bench-mapping-{users}"
    subprocess.run([sys.executable, str(SLAPD), "stop", "--keep", "--run-dir", str(run_dir)],
                   check=False, capture_output=True)


class Server:
    """scim2-server in its own process; its CPU seconds read from /proc."""

    def __init__(self) -> None:
        exe = Path(sys.executable).with_name("scim2-server")
        for _ in range(5):
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            self.out = tempfile.TemporaryFile()  # noqa: SIM115  # closed in close()
            self.proc = subprocess.Popen([str(exe), "--hostname", "127.0.0.1", "--port",
                                          str(port), "--bearer-token", TOKEN],
                                         stdout=self.out, stderr=subprocess.DEVNULL)
            deadline = time.monotonic() + 20
            while self.proc.poll() is None and time.monotonic() < deadline:
                self.out.seek(0)
                if self.out.read().startswith(b"Serving SCIM on"):
                    self.host = f"127.0.0.1:{port}"
                    self.url = f"http://{self.host}/v2"
                    return
                time.sleep(0.02)
            self.proc.kill()
            self.proc.wait()
        raise SystemExit("bench: scim2-server did not start")

    def cpu(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / ticks      # utime + stime

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        self.out.close()


def _config(tmp: Path, env: dict[str, str], url: str, mapped: bool) -> Path:
    path = tmp / ("mapped.toml" if mapped else "plain.toml")
    path.write_text(f"""
profile = "bench"
[source]
type = "ldap"
url = "{env['SLAPD_URL']}"
bind_dn = "{env['SLAPD_ADMIN_DN']}"
password_env = "BENCH_LDAP_PASSWORD"
page_size = 1000
timeout = 300
disabled_filter = "(pwdAccountLockedTime=*)"
[target]
type = "scim"
url = "{url}"
token_env = "BENCH_SCIM_TOKEN"
timeout = 300
{MAPPING if mapped else ""}
[sync]
max_revocations = 1000000
max_revocation_ratio = 1.0
[state]
path = "{tmp / 'state.db'}"
""")
    path.chmod(0o600)
    return path


def one_sync(env: dict[str, str], mapped: bool) -> tuple[Sample, float, int | None]:
    """A full sync into a fresh server: the child's sample, the server's CPU seconds, and
    (mapped) the exit code of the plan that follows (0: nothing left to do)."""
    server = Server()
    try:
        with tempfile.TemporaryDirectory(prefix="dirconnector-bench-") as tmpdir:
            config = _config(Path(tmpdir), env, server.url, mapped)
            child_env = dict(os.environ, BENCH_LDAP_PASSWORD=env["SLAPD_ADMIN_PASSWORD"],
                             BENCH_SCIM_TOKEN=TOKEN)
            before = server.cpu()
            sample = run_child([DIRCONNECTOR, "--config", str(config), "sync"], env=child_env)
            server_cpu = server.cpu() - before
            plan_rc = None
            if mapped:
                plan_rc = subprocess.run(
                    [DIRCONNECTOR, "--config", str(config), "plan", "--full",
                     "--detailed-exitcode"], env=child_env, capture_output=True).returncode
            return sample, server_cpu, plan_rc
    finally:
        server.close()


Exchange = tuple[str, str, bytes, int, bytes]
"""One recorded request: method, path (with /v2/ and any query), body; the answer's status
and body."""

# scim2-server's ids are uuid4().hex (scim2_server.memory.InMemoryStorage.generate_id).
_ID = re.compile(rb"[0-9a-f]{32}")


class _Recorder(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream   # host:port
        self.exchanges: list[Exchange] = []
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Relay)


class _Relay(BaseHTTPRequestHandler):
    """Passes one request to scim2-server and records it with its answer (in the order the
    answers came: a request sent after an answer may carry the ids it gave)."""

    server: _Recorder

    def _relay(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        conn = http.client.HTTPConnection(self.server.upstream, timeout=300)
        headers = {k: v for k, v in self.headers.items()
                   if k.lower() in ("authorization", "content-type", "accept")}
        conn.request(self.command, self.path, body=body or None, headers=headers)
        resp = conn.getresponse()
        answer = resp.read()
        with self.server.lock:
            self.server.exchanges.append((self.command, self.path, body, resp.status, answer))
        self.send_response(resp.status)
        for k, v in resp.getheaders():
            if k.lower() in ("content-type", "etag", "location"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)
        conn.close()

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _relay

    def log_message(self, format: str, *args: Any) -> None:
        pass


def record(env: dict[str, str], mapped: bool) -> list[Exchange]:
    """One sync of the profile into a fresh server through the recording proxy."""
    server = Server()
    proxy = _Recorder(server.host)
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    try:
        with tempfile.TemporaryDirectory(prefix="dirconnector-bench-") as tmpdir:
            url = f"http://127.0.0.1:{proxy.server_address[1]}/v2"
            config = _config(Path(tmpdir), env, url, mapped)
            child_env = dict(os.environ, BENCH_LDAP_PASSWORD=env["SLAPD_ADMIN_PASSWORD"],
                             BENCH_SCIM_TOKEN=TOKEN)
            run_child([DIRCONNECTOR, "--config", str(config), "sync"], env=child_env)
        return list(proxy.exchanges)
    finally:
        proxy.shutdown()
        proxy.server_close()
        server.close()


def replay(exchanges: list[Exchange]) -> tuple[float, float]:
    """The recorded requests sent again, one at a time, to a fresh scim2-server by a client
    doing nothing else; (wall seconds, server CPU seconds). Each answer maps the recorded
    ids to the new server's; an answer that differs in status stops the bench."""
    server = Server()
    ids: dict[bytes, bytes] = {}

    def swap(data: bytes) -> bytes:
        return _ID.sub(lambda m: ids.get(m.group(0), m.group(0)), data)

    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/scim+json"}
    try:
        before, t0 = server.cpu(), time.perf_counter()
        for method, path, body, status, answer in exchanges:
            conn = http.client.HTTPConnection(server.host, timeout=300)
            conn.request(method, swap(path.encode()).decode(), body=swap(body) or None,
                         headers=headers)
            resp = conn.getresponse()
            got = resp.read()
            conn.close()
            if resp.status != status:
                raise SystemExit(f"bench: replay of {method} {path} answered {resp.status}, "
                                 f"recorded {status}: {got[:300]!r}")
            if method == "POST":
                old, new = _ID.findall(answer), _ID.findall(got)
                if len(old) != len(new):
                    raise SystemExit(f"bench: replay of {method} {path}: ids do not match")
                ids.update(zip(old, new, strict=True))
        return time.perf_counter() - t0, server.cpu() - before
    finally:
        server.close()


def replays(env: dict[str, str], repeat: int) -> dict[str, Any]:
    """Each profile recorded once, replayed ``repeat`` times (alternating)."""
    recorded = {name: record(env, name == "mapped") for name in ("plain", "mapped")}
    walls: dict[str, list[float]] = {"plain": [], "mapped": []}
    cpus: dict[str, list[float]] = {"plain": [], "mapped": []}
    for r in range(repeat):
        for name in (("plain", "mapped") if r % 2 == 0 else ("mapped", "plain")):
            log(f"mapping: replay of the {name} sync {r + 1}/{repeat} "
                f"({len(recorded[name])} requests)")
            wall, cpu = replay(recorded[name])
            walls[name].append(wall)
            cpus[name].append(cpu)
    out: dict[str, Any] = {}
    for name in ("plain", "mapped"):
        w, c = sorted(walls[name]), sorted(cpus[name])
        out[name] = {"requests": len(recorded[name]),
                     "wall_s": {"median": w[len(w) // 2], "min": w[0], "max": w[-1]},
                     "server_cpu_s": {"median": c[len(c) // 2], "min": c[0], "max": c[-1]}}
    out["ratio_wall"] = out["mapped"]["wall_s"]["median"] / out["plain"]["wall_s"]["median"]
    return out


def run(n: int, repeat: int) -> dict[str, Any]:
    env = slapd(n)
    (Path(env["SLAPD_RUN_DIR"]) / "profiles").write_text("ldapdata.profile\n")
    samples: dict[str, list[Sample]] = {"plain": [], "mapped": []}
    server: dict[str, list[float]] = {"plain": [], "mapped": []}
    plans: list[int | None] = []
    try:
        for r in range(repeat):
            order = (False, True) if r % 2 == 0 else (True, False)
            for mapped in order:
                name = "mapped" if mapped else "plain"
                log(f"mapping {n}: {name} full sync {r + 1}/{repeat}")
                s, cpu, rc = one_sync(env, mapped)
                samples[name].append(s)
                server[name].append(cpu)
                if mapped:
                    plans.append(rc)
        rep = replays(env, repeat)
    finally:
        stop_slapd(n)
    out: dict[str, Any] = {"replay": rep}
    for name in ("plain", "mapped"):
        out[name] = summarise(samples[name])
        vals = sorted(server[name])
        out[name]["server_cpu_s"] = {"median": vals[len(vals) // 2], "min": vals[0],
                                     "max": vals[-1]}
    out["ratio_wall"] = out["mapped"]["wall_s"]["median"] / out["plain"]["wall_s"]["median"]
    out["ratio_cpu"] = out["mapped"]["cpu_s"]["median"] / out["plain"]["cpu_s"]["median"]
    out["ratio_server_cpu"] = (out["mapped"]["server_cpu_s"]["median"]
                               / max(out["plain"]["server_cpu_s"]["median"], 1e-9))
    out["second_plan_exit_codes"] = plans
    out["users"] = n
    return out


def table(res: dict[str, Any]) -> list[str]:
    lines = [f"{'profile':<8} {'wall':>22} {'our CPU':>22} {'server CPU':>22} "
             f"{'peak RSS':>18}"]
    for name in ("plain", "mapped"):
        f = res[name]
        lines.append(f"{name:<8} {fmt(f['wall_s']):>22} {fmt(f['cpu_s']):>22} "
                     f"{fmt(f['server_cpu_s']):>22} {fmt(f['rss_mb'], ' MB', 0):>18}")
    lines.append(f"mapped / plain ({res['users']} users, ten attributes with manager): wall "
                 f"{res['ratio_wall']:.2f}x, our CPU {res['ratio_cpu']:.2f}x, server CPU "
                 f"{res['ratio_server_cpu']:.2f}x (goal: wall <= 1.3x); second plan exit "
                 f"codes {res['second_plan_exit_codes']} (0 = empty)")
    rep = res["replay"]
    lines.append("")
    lines.append("the same syncs replayed by a bare HTTP client (the server's share):")
    lines.append(f"{'profile':<8} {'requests':>9} {'wall':>22} {'server CPU':>22}")
    for name in ("plain", "mapped"):
        f = rep[name]
        lines.append(f"{name:<8} {f['requests']:>9} {fmt(f['wall_s']):>22} "
                     f"{fmt(f['server_cpu_s']):>22}")
    lines.append(f"mapped / plain with a client that costs nothing: wall "
                 f"{rep['ratio_wall']:.2f}x (dirconnector's own: {res['ratio_wall']:.2f}x)")
    return lines


if __name__ == "__main__":
    size = int(sys.argv[1]) if len(sys.argv) > 1 else 10000
    reps = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    print("\n".join(table(run(size, reps))))
