"""The bad-input catalogue: every entry gives one line naming the field or record.

Configuration mistakes stop the run before anything is read (exit 1). Bad directory
records are skipped and named one per warning line while the rest syncs; values the
target refuses fail with a line naming the record. In every case the server holds
exactly what it held before, apart from the good records.
"""

from __future__ import annotations

import json
import time

import pytest

from tests.integration.scim.proxy import FaultProxy

from .conftest import MakeRig
from .rig import Directory, Rig, first_directory, user_row

pytestmark = pytest.mark.integration


def errors(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("Error:")]


def warnings(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("warning:")]


@pytest.fixture
def rig(make_rig_for: MakeRig) -> Rig:
    """A scim rig whose server already holds D0 (a clean first sync)."""
    r = make_rig_for("scim")
    r.write(first_directory(4))
    assert r.cli("sync").exit_code == 0
    return r


def config_error(rig: Rig, edit: tuple[str, str] | None = None, append: str = "",
                 ) -> str:
    """Break the config, run `sync`: exit 1, exactly one error line, server untouched."""
    before = rig.view()
    text = rig.config.read_text()
    if edit is not None:
        assert edit[0] in text
        text = text.replace(*edit)
    rig.config.write_text(text + append)
    run = rig.cli("sync")
    assert run.exit_code == 1 and not run.crash, run.output
    lines = errors(run.output)
    assert len(lines) == 1, run.output
    assert rig.view() == before
    return lines[0]


# ------------------------------------------------------------------ configuration

def test_malformed_toml(rig: Rig) -> None:
    """Malformed TOML: one line saying so, with the line and column."""
    line = config_error(rig, ("[sync]", "[sync"))
    assert "not valid TOML" in line and "line" in line


def test_unknown_key_with_typo_hint(rig: Rig) -> None:
    """An unknown key names its TOML path and the key it probably meant."""
    line = config_error(rig, ("[sync]\n", "[sync]\nremove_mising = true\n"))
    assert "sync.remove_mising: unknown key; did you mean 'remove_missing'?" in line


def test_unknown_target_key_with_typo_hint(rig: Rig) -> None:
    """A typo in a plugin table ([target]) is caught too, with the hint."""
    line = config_error(rig, ("concurrency = 1", "concurency = 1"))
    assert "target.concurency: unknown key; did you mean 'concurrency'?" in line


@pytest.mark.parametrize(("edit", "field"), [
    (("[sync]\n", '[sync]\nmax_revocations = "lots"\n'), "sync.max_revocations"),
    (("concurrency = 1", 'concurrency = "eight"'), "target.concurrency"),
    (("timeout = 1.0", "timeout = -3"), "target.timeout"),
])
def test_wrong_type(rig: Rig, edit: tuple[str, str], field: str) -> None:
    """A value of the wrong type or range names the field and the value given."""
    line = config_error(rig, edit)
    assert field in line


def test_missing_required_secret(rig: Rig) -> None:
    """token_env naming an unset variable: the line names the key and the variable."""
    line = config_error(rig, ('token_env = "REL_SCIM_TOKEN"', 'token_env = "REL_UNSET_VAR"'))
    assert "token_env" in line and "REL_UNSET_VAR" in line and "not set" in line


@pytest.mark.parametrize("path", ["/nonexistent/dir/token", "/"])
def test_unreadable_secret_file(rig: Rig, path: str) -> None:
    """token_file that cannot be read (missing, a directory): the line names token_file."""
    line = config_error(rig, ('token_env = "REL_SCIM_TOKEN"', f'token_file = "{path}"'))
    assert "target.token_file" in line and "cannot read" in line


@pytest.mark.parametrize("url", ["scim.example.org/v2", "ftp://scim.example.org/v2", ""])
def test_invalid_url(rig: Rig, url: str) -> None:
    """A URL that is not http(s): the line names target.url."""
    text = rig.config.read_text()
    start = text.index('url = "')
    end = text.index('"', start + 7)
    line = config_error(rig, (text[start:end + 1], f'url = "{url}"'))
    assert "target.url" in line


@pytest.mark.parametrize("bad", ["(uid=*", "uid=*)(", "(&(uid=a)(|(cn=b))", "(uid=a\\zz)"])
def test_invalid_ldap_filter(rig: Rig, bad: str) -> None:
    """An LDAP user_filter with bad syntax is refused at load, naming source.user_filter."""
    rig.extra_env["REL_LDAP_PASSWORD"] = "reader-secret"
    source = (f'type = "ldap"\nurl = ["ldap://127.0.0.1:1"]\npassword_env = "REL_LDAP_PASSWORD"\n'
              f'bind_dn = "cn=reader,dc=example,dc=com"\nbase_dn = "dc=example,dc=com"\n'
              f'user_filter = {json.dumps(bad)}\n')
    rig.write(None, source=source)
    run = rig.cli("config", "validate")
    assert run.exit_code == 1, run.output
    lines = errors(run.output)
    assert len(lines) == 1 and "source.user_filter" in lines[0], run.output


# ------------------------------------------------------------------ directory records

def sync_with(rig: Rig, *extra: dict[str, object]) -> tuple[Directory, str]:
    d = first_directory(4)
    d.users += list(extra)
    rig.write(d)
    run = rig.cli("sync")
    assert run.exit_code == 0 and not run.crash, run.output[-1500:]
    return d, run.output


def test_duplicate_emails_are_reported_and_skipped(rig: Rig) -> None:
    """Two active people with one email: both records named, neither changes the server."""
    before = rig.view().user("u000")
    _, out = sync_with(rig, user_row(50, email="USER000@example.org"))
    named = [w for w in warnings(out) if "duplicate email" in w]
    assert len(named) == 2 and any("u050" in w for w in named), out
    assert "2 duplicate email" in rig.cli("plan").output
    assert rig.view().user("u050") is None
    assert rig.view().user("u000") == before          # the existing account is left alone


def test_users_without_email_are_skipped_and_counted(rig: Rig) -> None:
    """People without an email are skipped with a warning naming each and counted."""
    _, out = sync_with(rig, user_row(51, email=""), user_row(52, email="   "))
    assert sum("no email" in w for w in warnings(out)) == 2
    assert "Skipped 2 directory entries: 2 no email." in rig.cli("plan").output
    assert rig.view().user("u051") is None and rig.view().user("u052") is None


@pytest.mark.parametrize("email", [
    "bob@", "a b@example.org", "bob@@example.org", "@example.org",
    "bob\n@example.org", "bob\x1b@example.org",
])
def test_invalid_email_syntax_is_skipped(rig: Rig, email: str) -> None:
    """An email that is not an address is skipped and named; nothing is sent for it."""
    _, out = sync_with(rig, user_row(53, email=email))
    assert any("invalid email" in w and "u053" in w for w in warnings(out)), out[-800:]
    assert "1 invalid email" in rig.cli("plan").output
    assert rig.view().user("u053") is None


@pytest.mark.parametrize("name", ["מרים כהן", "محمد عبد الله", "Zoë 🚀 Ünïcødé", "李小龍",
                                  "\u202eevil\u202c RTL override"])
def test_unicode_rtl_and_emoji_round_trip(rig: Rig, name: str) -> None:
    """Unicode, right-to-left and emoji names reach the server exactly; the next plan is empty."""
    sync_with(rig, user_row(54, display_name=name))
    acct = rig.view().user("u054")
    assert acct is not None and acct.name == name
    assert rig.cli("plan", "--detailed-exitcode").exit_code == 0


def test_control_characters_converge(rig: Rig) -> None:
    """A name with NUL/ESC/TAB: after one sync the server agrees and the next plan is empty."""
    sync_with(rig, user_row(55, display_name="Bad\x00Na\x1bme\ttab"))
    assert rig.cli("plan", "--detailed-exitcode").exit_code == 0


def test_control_characters_never_reach_the_terminal_raw(rig: Rig) -> None:
    """ESC in a directory name is never printed raw (no terminal escape injection)."""
    _, out = sync_with(rig, user_row(56, display_name="Evil\x1b[2J\x1b]0;pwned\x07Name"))
    assert "\x1b" not in out and "\x07" not in out


def test_empty_directory_is_refused_after_a_good_sync(rig: Rig) -> None:
    """The directory suddenly empty: refused (exit 3), one line, no account revoked."""
    before = rig.view()
    rig.write(Directory([], []), remove_missing=True)
    run = rig.cli("sync")
    assert run.exit_code == 3, run.output
    lines = errors(run.output)
    assert len(lines) == 1 and "no users at all" in lines[0]
    assert rig.view() == before


def test_empty_directory_on_an_empty_server_is_no_change(make_rig_for: MakeRig) -> None:
    """An empty directory against an empty server: nothing to do, exit 0."""
    r = make_rig_for("scim")
    r.write(Directory([], []))
    run = r.cli("sync")
    assert run.exit_code == 0 and "No changes" in run.output


def test_over_long_external_id_for_bitwarden(make_rig_for: MakeRig) -> None:
    """An external id over Bitwarden's 300 characters: one line naming the person, nothing sent."""
    r = make_rig_for("bitwarden")
    d = first_directory(4)
    r.write(d)
    assert r.cli("sync").exit_code == 0
    before = r.view()
    d.users.append(user_row(60, id="x" * 400))
    r.write(d)
    run = r.cli("sync")
    assert run.exit_code == 1
    lines = errors(run.output)
    assert len(lines) == 1 and "user060@example.org" in lines[0] and "300" in lines[0]
    assert r.view() == before


@pytest.mark.slow
def test_group_with_50000_members(make_rig_for: MakeRig) -> None:
    """A 50,000-member group plans in seconds and applies to Bitwarden in batched imports."""
    r = make_rig_for("bitwarden")
    users = [user_row(i) for i in range(50_000)]
    d = Directory(users, [{"id": "g-big", "name": "Everyone", "members": [u["id"] for u in users],
                           "groups": []}])
    r.write(d, max_revocations=100)
    t0 = time.perf_counter()
    plan = r.cli("plan", "--detailed-exitcode")
    planned = time.perf_counter() - t0
    assert plan.exit_code == 2 and "Plan: 50001 to add, 1 to change" in plan.output, plan.output[-500:]
    t0 = time.perf_counter()
    run = r.cli("sync")
    applied = time.perf_counter() - t0
    assert run.exit_code == 0, run.output[-800:]
    grp = r.view().group("g-big")
    assert grp is not None and len(grp.members) == 50_000
    assert planned < 30 and applied < 120, (planned, applied)
    print(f"50,000 members: plan {planned:.1f}s, sync {applied:.1f}s")


@pytest.mark.parametrize("body", [
    {"Resources": {"id": "not-a-list"}, "totalResults": 1},
    {"Resources": [{"userName": "no-id@example.org"}], "totalResults": 1},
    {"schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
     "totalResults": "many", "Resources": "nope"},
    ["a", "list", "not", "an", "object"],
])
def test_server_answering_an_unexpected_schema(rig: Rig, body: object) -> None:
    """/Users answering a shape that is no ListResponse: exit 1, one line, no write."""
    before = rig.view()
    proxy: FaultProxy = rig.proxy

    def reshape(method: str, path: str, payload: bytes) -> bytes:
        return json.dumps(body).encode() if method == "GET" and path.endswith("/Users") \
            else payload

    proxy.reset()
    proxy.filter_response = reshape
    d = first_directory(4)
    d.user("u001")["active"] = False
    rig.write(d, remove_missing=True)
    run = rig.cli("sync")
    proxy.filter_response = None
    assert run.exit_code == 1 and not run.crash, run.output[-1500:]
    assert len(errors(run.output)) == 1, run.output[-1500:]
    assert rig.view() == before
    writes = [m for m, _, _ in proxy.log if m != "GET"]
    assert writes == []
