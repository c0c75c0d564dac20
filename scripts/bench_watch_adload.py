"""Load N bench users and N/20 groups of 20 into a stopped Samba DC (scripts/bench watch, ad).

Run with the Python of ``samba-tool`` (Debian's python3-samba), on a provisioned DC that
is not running:  python3 bench_watch_adload.py SMB_CONF N [START]

As scripts/servers/addata.py: one SamDB transaction per chunk on sam.ldb, Samba's DSDB
modules on the path (objectGUID, objectSid, uSNChanged filled as over LDAP); no
passwords (PASSWD_NOTREQD). The connection is opened in ldb's batch mode (the option
``samba-tool domain join`` uses for its replication): without it, ldb wraps every add in
a sub-transaction and copies, GUID by GUID, each index record the add touches
(objectClass=user, objectCategory, sAMAccountType, the OU's one-level index...), all
of which hold every user, so each add costs O(users) and the load is quadratic
(26 s for the first 5,000 users, 217 s for the 5,000 after 15,000). In batch mode a
failed add aborts the whole chunk instead of only itself, which a bench load can
accept; the records written are the same. 100k users + 5k groups: about 5 min.

Under OU=Bench,OU=dirconnector: users ``bw000000``... (mail ``bw000000@dirconn.test``),
groups ``bench-00000``... with users 20g..20g+19. START
continues a load (users START..N-1). Prints one JSON line: counts and seconds.
"""

from __future__ import annotations

import json
import sys
import time

import ldb  # type: ignore[import-not-found]
from samba.auth import system_session  # type: ignore[import-not-found]
from samba.param import LoadParm  # type: ignore[import-not-found]
from samba.samdb import SamDB  # type: ignore[import-not-found]

NORMAL = 0x200 | 0x20 | 0x10000   # NORMAL_ACCOUNT | PASSWD_NOTREQD | DONT_EXPIRE_PASSWORD
GLOBAL_SECURITY = -2147483646
CHUNK = 5000


def main(argv: list[str]) -> int:
    smb_conf, n = argv[1], int(argv[2])
    start = int(argv[3]) if len(argv) > 3 else 0
    lp = LoadParm()
    lp.load(smb_conf)
    sam = SamDB(url=lp.samdb_url(), session_info=system_session(), lp=lp,
                options=["batch_mode:1"])
    realm = lp.get("realm").lower()
    ou = f"OU=Bench,OU=dirconnector,{sam.domain_dn()}"
    t0 = time.perf_counter()
    if start == 0:
        sam.add({"dn": ou, "objectClass": "organizationalUnit"})
    user_s = 0.0
    for lo in range(start, n, CHUNK):
        sam.transaction_start()
        try:
            for i in range(lo, min(n, lo + CHUNK)):
                name = f"bw{i:06d}"
                sam.add({"dn": f"CN={name},{ou}", "objectClass": "user",
                         "sAMAccountName": name, "userPrincipalName": f"{name}@{realm}",
                         "givenName": "Bench", "sn": f"User {i:06d}",
                         "displayName": f"Bench User {i:06d}", "mail": f"{name}@dirconn.test",
                         "userAccountControl": str(NORMAL)})
            sam.transaction_commit()
        except BaseException:
            sam.transaction_cancel()
            raise
        user_s = time.perf_counter() - t0
        print(f"users {min(n, lo + CHUNK)}: {user_s:.1f} s", file=sys.stderr, flush=True)
    groups = max(1, n // 20)
    g0 = start // 20
    sam.transaction_start()
    try:
        for g in range(g0, groups):
            dn = f"CN=bench-{g:05d},{ou}"
            sam.add({"dn": dn, "objectClass": "group", "sAMAccountName": f"bench-{g:05d}",
                     "groupType": str(GLOBAL_SECURITY)})
            msg = ldb.Message(ldb.Dn(sam, dn))
            msg["member"] = ldb.MessageElement(
                [f"CN=bw{i:06d},{ou}" for i in range(g * 20, min(n, g * 20 + 20))],
                ldb.FLAG_MOD_ADD, "member")
            sam.modify(msg)
        sam.transaction_commit()
    except BaseException:
        sam.transaction_cancel()
        raise
    total = time.perf_counter() - t0
    print(json.dumps({"users": n - start, "groups": groups - g0, "users_s": user_s,
                      "total_s": total, "users_per_s": (n - start) / max(user_s, 1e-9)}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
