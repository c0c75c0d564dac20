"""Complete-read gate through the CLI with real slapd: cut reads and shrunken filters."""

from __future__ import annotations

import pytest

from .conftest import MakeRig
from .rig import NO_LIMITS, Rig
from .tcpcut import TcpCut

pytestmark = pytest.mark.integration


def ldap_rig(make_rig_for: MakeRig, slapd: dict[str, str], port: int, **sync: object) -> Rig:
    rig = make_rig_for("scim")
    rig.extra_env["REL_LDAP_PASSWORD"] = slapd["SLAPD_READER_PASSWORD"]
    source = (f'type = "ldap"\nurl = ["ldap://127.0.0.1:{port}"]\n'
              f'bind_dn = "{slapd["SLAPD_READER_DN"]}"\npassword_env = "REL_LDAP_PASSWORD"\n'
              f'base_dn = "{slapd["SLAPD_BASE_DN"]}"\npage_size = 10\ntimeout = 5\n'
              f'disabled_filter = "(pwdAccountLockedTime=*)"\n')
    rig.write(None, source=source, **sync)
    return rig


def error_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("Error:")]


def test_connection_cut_mid_read_revokes_nobody(make_rig_for: MakeRig,
                                                slapd: dict[str, str]) -> None:
    """Every LDAP connection cut mid-way through the paged read: exit 1, server untouched."""
    cut = TcpCut(int(slapd["SLAPD_URL"].rsplit(":", 1)[1]))
    try:
        rig = ldap_rig(make_rig_for, slapd, cut.port, **NO_LIMITS)
        first = rig.cli("sync")
        assert first.exit_code == 0, first.output[-800:]
        before = rig.view()
        assert sum(u.active for u in before.users) > 50
        cut.cut_after = 6000          # a few pages in, on every (re)connection
        broken = rig.cli("sync", "--full")
        assert cut.cuts >= 1
        assert broken.exit_code == 1, broken.output[-800:]
        assert len(error_lines(broken.output)) == 1, broken.output[-800:]
        assert rig.view() == before
        run_id, status, _ = rig.run_rows()[-1]
        assert status == "failed" and rig.journal(run_id) == []
    finally:
        cut.close()


HALF = "(|(uid=u00000*)(uid=u00001*)(uid=u00002*)(uid=u00003*)(uid=u00004*))"


def test_filter_selecting_half_is_refused_by_min_source_ratio(make_rig_for: MakeRig,
                                                               slapd: dict[str, str]) -> None:
    """A user_filter that suddenly selects half the people: refused (exit 3), nothing changed."""
    port = int(slapd["SLAPD_URL"].rsplit(":", 1)[1])
    limits = {"remove_missing": True, "max_revocations": 10_000, "max_revocation_ratio": 1.0}
    rig = ldap_rig(make_rig_for, slapd, port, **limits)
    assert rig.cli("sync").exit_code == 0
    before = rig.view()
    source = rig.config.read_text().replace('page_size = 10\n',
                                            f'page_size = 10\nuser_filter = "{HALF}"\n')
    rig.config.write_text(source)
    refused = rig.cli("sync")
    assert refused.exit_code == 3, refused.output[-800:]
    lines = error_lines(refused.output)
    assert len(lines) == 1 and "min_source_ratio" in lines[0]
    assert rig.view() == before
    assert rig.run_rows()[-1][1] == "refused"
    forced = rig.cli("sync", "--force")
    assert forced.exit_code == 0
    revoked = [u for u in rig.view().users if not u.active]
    assert 40 <= len(revoked) <= 60     # the other half, and nobody else
