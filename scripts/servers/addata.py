"""Load the Active Directory test data into a provisioned (not running) Samba DC.

Run with the Python that ships Samba's bindings (the interpreter of ``samba-tool``;
Debian's python3-samba), after ``samba-tool domain provision`` and before ``samba``
starts:  python3 addata.py SMB_CONF

Why offline through SamDB and not samba-tool or ldapadd: samba-tool costs about 0.25 s
per user over LDAP (Python start-up plus a password hash each), so 1,700 users would
take minutes; one SamDB transaction on sam.ldb adds them in a few seconds. The objects
are ordinary AD objects (Samba's DSDB modules run on this path too: objectGUID,
objectSid, whenCreated, uSNChanged are all filled exactly as over LDAP).

The directory (all under OU=dirconnector):
  OU=People          named users for the tests (see NAMED below) and BULK_USERS bulk
                     users; some disabled (userAccountControl bit 0x2), some without
                     mail, non-ASCII names; and one computer account (objectClass=user, with mail)
  OU=Groups          Sales > Sales EMEA > Sales UK (nesting 3 deep), Support,
                     Cycle A > Cycle B > Cycle C > Cycle A (a cycle), and "All Staff"
                     with every bulk user (more than 1,500 members: AD returns
                     member;range=0-1499 and the client must ask for the rest),
                     and the distribution group Newsletter
  OU=Service Accounts  svc-dirconnector, a plain domain user (the least-privilege read
                     account: AD lets Authenticated Users read users and groups),
                     also granted List Contents + Read Property on CN=Deleted Objects
                     so it can read tombstones (include_deleted)
"""

from __future__ import annotations

import sys

# Debian's python3-samba; this script never runs under the project's venv.
import ldb  # type: ignore[import-not-found]
from samba.auth import system_session  # type: ignore[import-not-found]
from samba.param import LoadParm  # type: ignore[import-not-found]
from samba.samdb import SamDB  # type: ignore[import-not-found]

BULK_USERS = 1700
READER = "svc-dirconnector"
READER_PASSWORD = "Rd0nly!Sync-2026"
USER_PASSWORD = "Us3r!Passw0rd-2026"

# MS-ADTS 2.2.16 userAccountControl flags.
ACCOUNTDISABLE = 0x2
PASSWD_NOTREQD = 0x20
NORMAL_ACCOUNT = 0x200
DONT_EXPIRE_PASSWORD = 0x10000
WORKSTATION_TRUST_ACCOUNT = 0x1000
# MS-ADTS 2.2.12 groupType: global scope (0x2), security (0x80000000).
GLOBAL_SECURITY = -2147483646
GLOBAL_DISTRIBUTION = 2

# sAMAccountName, given name, surname, mail (None: no mail), disabled
NAMED: list[tuple[str, str, str, str | None, bool]] = [
    ("alice", "Alice", "Anders", "Alice.Anders@dirconn.test", False),
    ("bob", "Bob", "Brown", "bob@dirconn.test", True),          # disabled at load
    ("carol", "Carol", "Chen", None, False),                    # no mail
    ("jose", "José", "Müller", "jose.muller@dirconn.test", False),
    ("zoe", "Zoë", "Ångström-Łukasz", "zoe@dirconn.test", False),
    ("dave", "Dave", "Disable", "dave@dirconn.test", False),    # disabled by a test
    ("erin", "Erin", "Mover", "erin@dirconn.test", False),      # moved by a test
    ("frank", "Frank", "Gone", "frank@dirconn.test", False),    # deleted by a test
    ("grace", "Grace", "Hopper", "grace@dirconn.test", False),
    ("heidi", "Heidi", "Nomail", None, True),                   # disabled, no mail
]

# group name -> (member sAMAccountNames, subgroup names)
GROUPS: dict[str, tuple[list[str], list[str]]] = {
    "Sales": (["alice"], ["Sales EMEA"]),
    "Sales EMEA": (["jose"], ["Sales UK"]),
    "Sales UK": (["zoe"], []),
    "Support": (["erin", "carol", "grace"], []),
    "Cycle A": (["alice"], ["Cycle B"]),
    "Cycle B": (["dave"], ["Cycle C"]),
    "Cycle C": (["grace"], ["Cycle A"]),
}
BIG_GROUP = "All Staff"
# A distribution (mail-only) group: group_filter on groupType can leave it out.
DISTRIBUTION_GROUP = ("Newsletter", ["alice", "grace"])
# A computer: objectClass=user too, with a mail value so that only objectCategory
# keeps it out of the users.
COMPUTER = "WS01"


def _password(value: str) -> bytes:
    """unicodePwd is the quoted password in UTF-16LE (MS-ADTS 3.1.1.3.1.5.1)."""
    return f'"{value}"'.encode("utf-16-le")


def _user(dn: str, sam: str, given: str, surname: str, mail: str | None,
          uac: int, realm: str, password: bytes | None) -> dict[str, object]:
    entry: dict[str, object] = {
        "dn": dn,
        "objectClass": "user",
        "sAMAccountName": sam,
        "userPrincipalName": f"{sam}@{realm}",
        "givenName": given,
        "sn": surname,
        "displayName": f"{given} {surname}",
        "userAccountControl": str(uac),
    }
    if mail:
        entry["mail"] = mail
    if password is not None:
        entry["unicodePwd"] = password
    return entry


def load(smb_conf: str) -> dict[str, int]:
    lp = LoadParm()
    lp.load(smb_conf)
    sam = SamDB(url=lp.samdb_url(), session_info=system_session(), lp=lp)
    base = str(sam.domain_dn())
    realm = lp.get("realm").lower()
    root = f"OU=dirconnector,{base}"
    people = f"OU=People,{root}"
    groups_ou = f"OU=Groups,{root}"
    service = f"OU=Service Accounts,{root}"
    user_dn: dict[str, str] = {}
    group_dn = {name: f"CN={name},{groups_ou}"
                for name in [*GROUPS, BIG_GROUP, DISTRIBUTION_GROUP[0]]}

    sam.transaction_start()
    try:
        for ou in (root, people, groups_ou, service):
            sam.add({"dn": ou, "objectClass": "organizationalUnit"})
        sam.add(_user(f"CN={READER},{service}", READER, "Directory", "Reader", None,
                      NORMAL_ACCOUNT | DONT_EXPIRE_PASSWORD, realm, _password(READER_PASSWORD)))
        for sam_name, given, surname, mail, disabled in NAMED:
            dn = f"CN={given} {surname},{people}"
            uac = NORMAL_ACCOUNT | DONT_EXPIRE_PASSWORD | (ACCOUNTDISABLE if disabled else 0)
            sam.add(_user(dn, sam_name, given, surname, mail, uac, realm,
                          _password(USER_PASSWORD)))
            user_dn[sam_name] = dn
        # Bulk users carry no password (PASSWD_NOTREQD): hashing 1,700 passwords
        # would triple the load time and the connector never reads them.
        bulk = []
        for i in range(BULK_USERS):
            sam_name = f"bulk{i:04d}"
            dn = f"CN=Bulk User {i:04d},{people}"
            disabled = i % 50 == 49
            mail = None if i % 100 == 7 else f"{sam_name}@dirconn.test"
            uac = NORMAL_ACCOUNT | PASSWD_NOTREQD | (ACCOUNTDISABLE if disabled else 0)
            sam.add(_user(dn, sam_name, "Bulk", f"User {i:04d}", mail, uac, realm, None))
            bulk.append(dn)
        sam.add({"dn": f"CN={COMPUTER},{people}", "objectClass": "computer",
                 "sAMAccountName": f"{COMPUTER}$", "mail": f"{COMPUTER.lower()}@dirconn.test",
                 "userAccountControl": str(WORKSTATION_TRUST_ACCOUNT)})
        # Groups first without members, then members: the cycle needs every DN to exist.
        for name, dn in group_dn.items():
            kind = GLOBAL_DISTRIBUTION if name == DISTRIBUTION_GROUP[0] else GLOBAL_SECURITY
            sam.add({"dn": dn, "objectClass": "group", "sAMAccountName": name,
                     "groupType": str(kind)})
        for name, (members, subgroups) in GROUPS.items():
            values = [user_dn[m] for m in members] + [group_dn[g] for g in subgroups]
            _set_members(sam, group_dn[name], values)
        _set_members(sam, group_dn[BIG_GROUP], bulk)
        name, members = DISTRIBUTION_GROUP
        _set_members(sam, group_dn[name], [user_dn[m] for m in members])
        _grant_deleted_objects_read(sam, f"CN={READER},{service}")
        sam.transaction_commit()
    except BaseException:
        sam.transaction_cancel()
        raise
    return {"users": len(NAMED) + BULK_USERS + 1, "groups": len(group_dn), "computers": 1}


def _grant_deleted_objects_read(sam: SamDB, reader_dn: str) -> None:
    """Let the reader list and read tombstones (for include_deleted = true).

    Only administrators may read CN=Deleted Objects by default; Microsoft's documented
    delegation (KB 892806: dsacls "CN=Deleted Objects,..." /takeownership, then
    /G DOMAIN\\reader:LCRP) grants List Contents + Read Property on the container.
    """
    from samba.dcerpc import security  # type: ignore[import-not-found]
    from samba.ndr import ndr_unpack  # type: ignore[import-not-found]
    from samba.sd_utils import SDUtils  # type: ignore[import-not-found]

    res = sam.search(base=reader_dn, scope=ldb.SCOPE_BASE, attrs=["objectSid"])
    sid = str(ndr_unpack(security.dom_sid, res[0]["objectSid"][0]))
    container = f"CN=Deleted Objects,{sam.domain_dn()}"
    controls = ["show_deleted:1", f"sd_flags:1:{security.SECINFO_DACL}"]
    SDUtils(sam).dacl_append_aces(container, f"(A;;LCRP;;;{sid})", controls=controls)


def _set_members(sam: SamDB, dn: str, values: list[str]) -> None:
    msg = ldb.Message(ldb.Dn(sam, dn))
    msg["member"] = ldb.MessageElement(values, ldb.FLAG_MOD_ADD, "member")
    sam.modify(msg)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: addata.py SMB_CONF", file=sys.stderr)
        return 2
    counts = load(argv[1])
    print(f"loaded {counts['users']} users, {counts['computers']} computer, "
          f"{counts['groups']} groups")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
