"""scripts/bench feeds: the Okta, OneLogin and Google change feeds at N users (issue 21).

For each source, against its emulator (tests/emulators) seeded with N users and N/500
groups of 500 members, in this process:

- the request count and wall time of one full read (``fetch``), the baseline;
- requests of a quiet poll (``changes`` with nothing changed; goal <= 3);
- requests, wall time and client CPU of one poll carrying one change (a user suspended;
  goal <= 10 requests and <= 0.2 s CPU). CPU is ``time.thread_time`` of the polling
  thread: the emulator answers from other threads of this process, so its work is not
  counted.

The System Log / Events / audit log of the seeding is dropped before measuring (an org
whose last bulk import is older than the feed's overlap). Each figure is the median of
--repeat polls (min-max).

Then, at the first size, the lag through ``watch`` for each source (``lag``): the emulator
seeded with N users (no groups), a Watcher with ``feed_poll_interval = "2s"`` to scimlat
(Bulk), its first full sync, then 20 suspensions landing anywhere in the interval; each
sample runs from the change at the emulator to scimlat holding ``active: false``.
``python scripts/bench_feeds.py lag --size N [--sources okta,onelogin,google]`` measures
the lag alone.
"""

from __future__ import annotations

import ssl
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench_common import ROOT, load, log, summary

sys.path.insert(0, str(ROOT))

GROUP_SIZE = 500


def _measure(poll: Callable[[], Any], count: Callable[[], int], change: Callable[[int], None],
             repeat: int) -> dict[str, Any]:
    quiet_req, quiet_wall = [], []
    change_req, change_wall, change_cpu = [], [], []
    for i in range(repeat):
        before, t0 = count(), time.perf_counter()
        batch = poll()
        quiet_wall.append(time.perf_counter() - t0)
        quiet_req.append(float(count() - before))
        assert batch.empty, batch
        change(i)
        before, t0, c0 = count(), time.perf_counter(), time.thread_time()
        batch = poll()
        change_cpu.append(time.thread_time() - c0)
        change_wall.append(time.perf_counter() - t0)
        change_req.append(float(count() - before))
        assert not batch.empty
    return {"quiet_requests": summary(quiet_req), "quiet_wall_s": summary(quiet_wall),
            "change_requests": summary(change_req), "change_wall_s": summary(change_wall),
            "change_cpu_s": summary(change_cpu)}


def _settle() -> None:
    """Let the seeding fall out of the feed's window (Date headers have whole seconds)."""
    time.sleep(1.1)


class _Poller:
    """Holds the position between polls."""

    def __init__(self, connector: Any, position: str) -> None:
        self.connector, self.position = connector, position

    def __call__(self) -> Any:
        batch = self.connector.changes(self.position, 0)
        self.position = batch.position
        return batch


def _full(connector: Any, count: Callable[[], int]) -> dict[str, float]:
    from dirconnector.state_space import ConnectorState

    before, t0, c0 = count(), time.perf_counter(), time.thread_time()
    snap = connector.fetch(ConnectorState())
    return {"requests": float(count() - before), "wall_s": time.perf_counter() - t0,
            "cpu_s": time.thread_time() - c0, "users": float(len(snap.users))}


def okta(size: int, repeat: int) -> dict[str, Any]:
    from dirconnector.connectors.okta.connector import OktaConnector, OktaSettings
    from tests.emulators.okta import OktaEmulator, OktaState

    state = OktaState()
    state.rate.limit = 10**9
    uids = [state.add_user(f"user{n:06d}@example.com", "User", f"{n:06d}")
            for n in range(size)]
    for g in range(max(1, size // GROUP_SIZE)):
        state.add_group(f"Group {g:04d}", members=uids[g * GROUP_SIZE:(g + 1) * GROUP_SIZE])
    state.events.clear()
    # The emulator's stamps step 1 ms per change and so run ahead of the clock after a
    # bulk seeding; date the seed an hour back, as an org last imported an hour ago.
    import tests.emulators.okta.state as okta_state

    past_dt = datetime.now(UTC) - timedelta(hours=1)
    okta_state._last_stamp[0] = past_dt
    past = past_dt.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    for record in [*state.users.values(), *state.groups.values()]:
        for key in ("created", "lastUpdated", "statusChanged", "activated",
                    "lastMembershipUpdated"):
            if record.get(key):
                record[key] = past
    _settle()
    with OktaEmulator(state) as emu:
        settings = OktaSettings.model_validate({
            "type": "okta", "org_url": emu.url, "token": "test-ssws-token",
            "ca_file": str(emu.ca_file), "feed_overlap": "0s", "feed_poll_interval": "0s"})
        connector = OktaConnector(settings)

        def count() -> int:
            return len(state.api_requests())

        position = connector.stream_position()
        full = _full(connector, count)
        poller = _Poller(connector, position)
        poller()                                 # whatever the seeding left in the overlap
        return {"full": full, **_measure(
            poller, count, lambda i: state.set_status(uids[i], "SUSPENDED"), repeat)}


def onelogin(size: int, repeat: int) -> dict[str, Any]:
    import trustme

    from dirconnector.connectors.onelogin.connector import OneLoginConnector, OneLoginSettings
    from tests.emulators.onelogin import Account, OneLoginEmulator

    account = Account()
    account.rate_limit = 10**9
    account.add_client("bench", "bench-secret")
    uids = [account.add_user(f"user{n:06d}@example.com", username=f"user{n:06d}",
                             firstname="User", lastname=f"{n:06d}") for n in range(size)]
    for g in range(max(1, size // GROUP_SIZE)):
        account.add_role(f"Role {g:04d}", uids[g * GROUP_SIZE:(g + 1) * GROUP_SIZE])
    account.events.clear()
    # As for Okta: the seed dated an hour back (the emulator's stamps step 1 ms each).
    account._last_stamp = time.time() - 3600
    past = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(time.time() - 3600))
    for user in account.users.values():
        user["updated_at"] = user["created_at"] = past
    _settle()
    ca = trustme.CA()
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(ctx)
    with tempfile.TemporaryDirectory() as tmp, OneLoginEmulator(account, ctx) as emu:
        ca_file = Path(tmp) / "ca.pem"
        ca.cert_pem.write_to_path(str(ca_file))
        settings = OneLoginSettings.model_validate({
            "type": "onelogin", "base_url": emu.url, "client_id": "bench",
            "client_secret": "bench-secret", "ca_file": str(ca_file), "feed_overlap": "0s",
            "feed_poll_interval": "0s"})
        connector = OneLoginConnector(settings)

        def count() -> int:
            return len(account.query_log)

        position = connector.stream_position()
        full = _full(connector, count)
        poller = _Poller(connector, position)
        poller()
        return {"full": full, **_measure(
            poller, count, lambda i: account.update_user(uids[i], status=2), repeat)}


def google(size: int, repeat: int) -> dict[str, Any]:
    import json

    import trustme
    from cryptography.hazmat.primitives.asymmetric import rsa

    from dirconnector.connectors.google.api import REPORTS_SCOPE, SCOPES
    from dirconnector.connectors.google.connector import GoogleConnector, GoogleSettings
    from tests.emulators.google import Directory, GoogleEmulator

    d = Directory()
    d.add_user("admin", "Ada", "Admin", admin=True)
    uids = [d.add_user(f"user{n:06d}", "User", f"{n:06d}") for n in range(size)]
    for g in range(max(1, size // GROUP_SIZE)):
        gid = d.add_group(f"group{g:04d}", f"Group {g:04d}")
        for uid in uids[g * GROUP_SIZE:(g + 1) * GROUP_SIZE]:
            d.add_member(gid, uid)
    d.activities.clear()
    _settle()
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    account = d.oauth.create_service_account(private_key=key)
    d.oauth.delegate(account.client_id, [*SCOPES, REPORTS_SCOPE])
    with tempfile.TemporaryDirectory() as tmp, \
            GoogleEmulator(d, workdir=Path(tmp), ca=trustme.CA()) as emu:
        key_file = Path(tmp) / "key.json"
        key_file.write_text(json.dumps(account.key_file(emu.token_uri)))
        settings = GoogleSettings.model_validate({
            "type": "google", "credentials_file": str(key_file),
            "admin_email": "admin@example.com", "api_endpoint": emu.base_url,
            "ca_file": str(emu.ca_file), "feed_overlap": "0s", "feed_poll_interval": "0s"})
        connector = GoogleConnector(settings)

        def count() -> int:
            return len(d.calls)

        position = connector.stream_position()
        full = _full(connector, count)
        poller = _Poller(connector, position)
        poller()
        return {"full": full, **_measure(
            poller, count, lambda i: d.set_suspended(uids[i], True), repeat)}


def run(sizes: list[int], repeat: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for size in sizes:
        for name, fn in (("okta", okta), ("onelogin", onelogin), ("google", google)):
            log(f"feeds: {name} at {size:,} users")
            t0 = time.perf_counter()
            res = fn(size, repeat)
            res["seconds"] = time.perf_counter() - t0
            out[f"{name}/{size}"] = res
    try:
        import dirconnector.watch  # noqa: F401  # watch mode present (issue 20)
    except ImportError:
        log("feeds: no dirconnector.watch; lag not measured")
    else:
        out["_lag"] = run_lag(sizes[0])
    return out


def run_lag(size: int, changes: int = 20, interval: float = 2.0,
            sources: list[str] | None = None) -> list[dict[str, Any]]:
    """Lag through watch for each source at ``size`` users."""
    res = []
    for name in sources or list(LAG_SOURCES):
        log(f"feeds: lag through watch ({name}, {size:,} users, poll interval {interval:g} s)")
        before = load()
        r = lag(name, size, changes, interval)
        r["load_before"], r["load_after"] = before, load()
        log(f"feeds: {name} lag p50 {r['p50_s']:.2f} s, p95 {r['p95_s']:.2f} s, "
            f"max {r['max_s']:.2f} s (first sync {r['first_sync_s']:.0f} s)")
        res.append(r)
    return res


def table(res: dict[str, Any]) -> list[str]:
    lines = ["source/users        full read: req   wall      | quiet poll: req | one change: "
             "req   wall           CPU"]
    for key, r in res.items():
        if key.startswith("_"):
            continue
        f = r["full"]
        lines.append(
            f"{key:<19} {f['requests']:>8.0f} {f['wall_s']:>7.1f}s   | "
            f"{r['quiet_requests']['median']:>14.0f}  | {r['change_requests']['median']:>9.0f} "
            f"{r['change_wall_s']['median']:>6.3f}s [{r['change_wall_s']['max']:.3f}] "
            f"{r['change_cpu_s']['median']:>6.3f}s [{r['change_cpu_s']['max']:.3f}]")
    for g in res.get("_lag", []):
        lines.append(f"lag through watch ({g['source']}, {g['users']:,} users, {g['changes']} "
                     f"suspensions, feed_poll_interval {g['poll_interval_s']:g} s): p50 "
                     f"{g['p50_s']:.2f} s, p95 {g['p95_s']:.2f} s, max {g['max_s']:.2f} s "
                     f"(first full sync {g['first_sync_s']:.0f} s; load {g['load_before'][0]:g}"
                     f"-{g['load_after'][0]:g})")
    lines.append("goals (issue 21): quiet poll <= 3 requests; one change <= 10 requests and "
                 "<= 0.2 s CPU; lag p95 <= poll interval + 1 s")
    return lines


@contextmanager
def _lag_okta(size: int) -> Iterator[tuple[dict[str, Any], list[str], Callable[[str], None]]]:
    from tests.emulators.okta import OktaEmulator, OktaState

    state = OktaState()
    state.rate.limit = 10**9
    uids = [state.add_user(f"user{n:06d}@example.com", "User", f"{n:06d}")
            for n in range(size)]
    state.events.clear()
    import tests.emulators.okta.state as okta_state

    past_dt = datetime.now(UTC) - timedelta(hours=1)      # as in okta(): seed an hour back
    okta_state._last_stamp[0] = past_dt
    past = past_dt.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    for record in state.users.values():
        for key in ("created", "lastUpdated", "statusChanged", "activated"):
            if record.get(key):
                record[key] = past
    _settle()
    with OktaEmulator(state) as emu:
        yield ({"type": "okta", "org_url": emu.url, "token": "test-ssws-token",
                "ca_file": str(emu.ca_file)}, uids,
               lambda uid: state.set_status(uid, "SUSPENDED"))


@contextmanager
def _lag_onelogin(size: int
                  ) -> Iterator[tuple[dict[str, Any], list[str], Callable[[str], None]]]:
    import trustme

    from tests.emulators.onelogin import Account, OneLoginEmulator

    account = Account()
    account.rate_limit = 10**9
    account.add_client("bench", "bench-secret")
    uids = [account.add_user(f"user{n:06d}@example.com", username=f"user{n:06d}",
                             firstname="User", lastname=f"{n:06d}") for n in range(size)]
    account.events.clear()
    account._last_stamp = time.time() - 3600               # as in onelogin()
    past = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(time.time() - 3600))
    for user in account.users.values():
        user["updated_at"] = user["created_at"] = past
    _settle()
    ca = trustme.CA()
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(ctx)
    with tempfile.TemporaryDirectory() as tmp, OneLoginEmulator(account, ctx) as emu:
        ca_file = Path(tmp) / "ca.pem"
        ca.cert_pem.write_to_path(str(ca_file))
        yield ({"type": "onelogin", "base_url": emu.url, "client_id": "bench",
                "client_secret": "bench-secret", "ca_file": str(ca_file)},
               [str(u) for u in uids],
               lambda uid: account.update_user(int(uid), status=2))


@contextmanager
def _lag_google(size: int
                ) -> Iterator[tuple[dict[str, Any], list[str], Callable[[str], None]]]:
    import json

    import trustme
    from cryptography.hazmat.primitives.asymmetric import rsa

    from dirconnector.connectors.google.api import REPORTS_SCOPE, SCOPES
    from tests.emulators.google import Directory, GoogleEmulator

    d = Directory()
    d.add_user("admin", "Ada", "Admin", admin=True)
    uids = [d.add_user(f"user{n:06d}", "User", f"{n:06d}") for n in range(size)]
    d.activities.clear()
    _settle()
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    account = d.oauth.create_service_account(private_key=key)
    d.oauth.delegate(account.client_id, [*SCOPES, REPORTS_SCOPE])
    with tempfile.TemporaryDirectory() as tmp, \
            GoogleEmulator(d, workdir=Path(tmp), ca=trustme.CA()) as emu:
        key_file = Path(tmp) / "key.json"
        key_file.write_text(json.dumps(account.key_file(emu.token_uri)))
        # suspended as an admin does: the audit log records SUSPEND_USER
        yield ({"type": "google", "credentials_file": str(key_file),
                "admin_email": "admin@example.com", "api_endpoint": emu.base_url,
                "ca_file": str(emu.ca_file)}, uids,
               lambda uid: d.set_suspended(uid, True))


LAG_SOURCES = {"okta": _lag_okta, "onelogin": _lag_onelogin, "google": _lag_google}


def lag(source: str, size: int, changes: int, interval: float) -> dict[str, Any]:
    """Seconds from a suspension at the source's emulator to the account inactive on a SCIM
    server (scimlat), through ``watch`` (dirconnector.watch) with ``feed_poll_interval`` =
    ``interval``, after its first full sync of ``size`` users: p50/p95/max."""
    import threading

    from dirconnector import settings as config
    from dirconnector.state import open_store
    from dirconnector.watch import Watcher
    from tests.emulators.scimlat.server import serve

    httpd, base = serve(0.0, True, "bench-token")
    store_of = httpd.RequestHandlerClass.store  # type: ignore[attr-defined]
    samples: list[float] = []
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp, LAG_SOURCES[source](size) as (src, uids, change):
        seeded = time.perf_counter() - t_start
        profile = config.load(data={
            "profile": f"{source}-lag",
            "source": {**src, "feed_poll_interval": f"{interval}s"},
            "target": {"type": "scim", "url": base, "token": "bench-token"},
            "sync": {"remove_missing": True, "max_revocations": 10**6,
                     "max_revocation_ratio": 1.0, "batch_window": "0.2s"},
            "state": {"path": str(Path(tmp) / "state.db")},
        })
        store = open_store(profile.settings.state)
        stop = threading.Event()
        watcher = Watcher(profile, store, stop=stop)
        thread = threading.Thread(target=watcher.run, daemon=True)
        t0 = time.perf_counter()
        thread.start()
        deadline = time.monotonic() + 3600
        while not (watcher.full_syncs and watcher.position) and time.monotonic() < deadline:
            time.sleep(0.1)
        first_sync = time.perf_counter() - t0
        with store_of.lock:
            rid_of = {str(u.get("externalId")): rid for rid, u in store_of.users.items()}
        assert len(rid_of) >= size, (source, len(rid_of), size)

        def inactive(uid: str) -> bool:
            with store_of.lock:
                return store_of.users[rid_of[uid]].get("active") is False

        for i in range(changes):
            time.sleep(interval * (i % 7) / 7)      # changes land anywhere in the interval
            t0 = time.monotonic()
            change(uids[i])
            while not inactive(uids[i]) and time.monotonic() - t0 < 60:
                time.sleep(0.02)
            samples.append(time.monotonic() - t0)
        stop.set()
        thread.join(timeout=60)
        store.close()
    httpd.shutdown()
    ordered = sorted(samples)
    return {"source": source, "users": size, "changes": changes, "poll_interval_s": interval,
            "seed_s": seeded, "first_sync_s": first_sync,
            "p50_s": ordered[len(ordered) // 2],
            "p95_s": ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))],
            "max_s": ordered[-1], "full_syncs": watcher.full_syncs}


def main() -> None:
    """``python scripts/bench_feeds.py lag [--size N] [--sources okta,google]``: the lag
    alone (the full ``scripts/bench feeds`` also re-measures requests and CPU)."""
    import argparse
    import json

    ap = argparse.ArgumentParser(prog="bench_feeds.py")
    ap.add_argument("part", choices=["lag"])
    ap.add_argument("--size", type=int, default=100_000)
    ap.add_argument("--sources", default=",".join(LAG_SOURCES))
    ap.add_argument("--changes", type=int, default=20)
    ap.add_argument("--interval", type=float, default=2.0)
    ap.add_argument("--json")
    args = ap.parse_args()
    res = run_lag(args.size, args.changes, args.interval, args.sources.split(","))
    print("\n".join(table({"_lag": res})[1:-1]))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
