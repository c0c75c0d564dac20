"""Secrets and transport: TLS on by default, ca_file, redaction, file modes, hostile values."""

from __future__ import annotations

import json
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from dirconnector import registry
from dirconnector.connectors.ldap.syntax import escape_filter_value
from dirconnector.settings import HttpPluginSettings
from dirconnector.targets.scim.wire import eq_filter
from tests.integration.scim.proxy import Fault, FaultProxy

from .conftest import MakeRig
from .rig import BW_CLIENT_SECRET, SCIM_TOKEN, Rig, first_directory, journal_mismatches, user_row

pytestmark = pytest.mark.integration


def lines(output: str, start: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith(start)]


# ------------------------------------------------------------------ TLS

@pytest.mark.parametrize("group", [registry.CONNECTORS, registry.TARGETS])
def test_tls_verification_is_on_by_default_everywhere(group: str) -> None:
    """Every built-in connector and target verifies certificates unless told otherwise."""
    seen = 0
    for name, plugin in registry.available(group).items():
        model = plugin.load().settings_model
        fields = model.model_fields
        if "verify_tls" not in fields:
            continue      # the file connector reads no network
        seen += 1
        assert fields["verify_tls"].default is True, name
        assert "ca_file" in fields, f"{name} has verify_tls but no ca_file"
        if issubclass(model, HttpPluginSettings):
            assert model.model_fields["verify_tls"].default is True
    assert seen >= (5 if group == registry.CONNECTORS else 2)


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ssl.SSLContext, Path]]:
    ca = trustme.CA()
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(ctx)
    path = tmp_path_factory.mktemp("rel-ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    yield ctx, path


def over_tls(rig: Rig, ctx: ssl.SSLContext) -> FaultProxy:
    """Put the rig's server behind an HTTPS proxy (the rig's own proxy is plain HTTP)."""
    upstream = rig.proxy.upstream_port
    rig.proxy.stop()
    rig.proxy = FaultProxy(upstream, ssl_context=ctx).start()
    return rig.proxy


@pytest.mark.parametrize("kind", ["scim", "bitwarden"])
def test_ca_file_trusts_a_private_ca_and_nothing_else(make_rig_for: MakeRig, kind: str,
                                                      tls: tuple[ssl.SSLContext, Path]) -> None:
    """Without ca_file a private CA fails in one line (exit 1); with it the sync works."""
    rig = make_rig_for(kind)
    over_tls(rig, tls[0])
    rig.write(first_directory(3))
    refused = rig.cli("sync")
    assert refused.exit_code == 1
    error = lines(refused.output, "Error:")
    assert len(error) == 1 and "TLS" in error[0] and "certificate verify failed" in error[0]
    if kind == "scim":      # the bitwarden target drops the hint (see the report)
        assert "Hint: set ca_file" in refused.output
    assert rig.view().group("g-a") is None
    rig.target_extra = f'ca_file = "{tls[1]}"\n'
    rig.write(first_directory(3))
    ok = rig.cli("sync")
    assert ok.exit_code == 0, ok.output[-800:]
    assert rig.view().group("g-a") is not None


def test_verify_tls_off_warns_on_every_run(make_rig_for: MakeRig,
                                           tls: tuple[ssl.SSLContext, Path]) -> None:
    """verify_tls = false works against an untrusted certificate and warns on each run."""
    rig = make_rig_for("scim")
    over_tls(rig, tls[0])
    rig.target_extra = "verify_tls = false\n"
    rig.write(first_directory(3))
    for _ in range(2):
        run = rig.cli("sync")
        assert run.exit_code == 0, run.output[-800:]
        assert len([w for w in lines(run.output, "warning:")
                    if "verification is OFF" in w]) == 1


# ------------------------------------------------------------------ config show, file modes

def inline_config(rig: Rig, tmp_path: Path, mode: int) -> Path:
    """The rig's config with the secret written inline, outside the artifacts folder."""
    text = rig.config.read_text().replace('token_env = "REL_SCIM_TOKEN"', f'token = "{SCIM_TOKEN}"')
    assert SCIM_TOKEN in text
    path = tmp_path / "inline.toml"
    path.write_text(text)
    path.chmod(mode)
    return path


def test_config_show_redacts(make_rig_for: MakeRig, tmp_path: Path) -> None:
    """`config show` (toml and json) prints ******** for every secret, never the value."""
    rig = make_rig_for("scim")
    rig.write(first_directory(3))
    path = inline_config(rig, tmp_path, 0o600)
    for fmt in ("toml", "json"):
        run = rig.cli("config", "show", "--format", fmt, config=path)
        assert run.exit_code == 0
        assert SCIM_TOKEN not in run.output and "********" in run.output
    data = json.loads(rig.cli("config", "show", "--format", "json", config=path).output)
    assert data["target"]["token"] == "********"
    bw = make_rig_for("bitwarden")
    bw.write(first_directory(3))
    run = bw.cli("config", "show")
    assert BW_CLIENT_SECRET not in run.output and 'client_secret = "********"' in run.output


@pytest.mark.parametrize(("mode", "warned"), [(0o644, True), (0o640, True), (0o600, False)])
def test_readable_config_with_inline_secret_warns(make_rig_for: MakeRig, tmp_path: Path,
                                                  mode: int, warned: bool) -> None:
    """A config holding a secret inline and readable by group/others warns on every command."""
    rig = make_rig_for("scim")
    rig.write(first_directory(3))
    path = inline_config(rig, tmp_path, mode)
    for args in (("config", "validate"), ("sync",)):
        run = rig.cli(*args, config=path)
        assert run.exit_code == 0, run.output[-800:]
        hits = [w for w in lines(run.output, "warning:") if "holds secrets inline" in w]
        assert len(hits) == (1 if warned else 0), run.output[-800:]
        assert all("target.token" in w and "chmod 600" in w for w in hits)
        assert SCIM_TOKEN not in run.output


def test_env_secret_in_readable_config_does_not_warn(make_rig_for: MakeRig) -> None:
    """A world-readable config that only names token_env holds no secret: no warning."""
    rig = make_rig_for("scim")
    rig.write(first_directory(3))
    rig.config.chmod(0o644)
    run = rig.cli("config", "validate")
    assert run.exit_code == 0 and "holds secrets inline" not in run.output


# ------------------------------------------------------------------ hostile values

HOSTILE_LDAP = "*)(uid=*"
HOSTILE_SCIM = '" or 1 eq 1'


def test_ldap_filter_values_are_escaped() -> None:
    """RFC 4515 3: *, (, ), \\ and NUL in a value are hex-escaped."""
    assert escape_filter_value(HOSTILE_LDAP) == "\\2a\\29\\28uid=\\2a"
    assert escape_filter_value("a\\b\x00") == "a\\5cb\\00"


def test_ldap_object_class_value_cannot_widen_the_search(make_rig_for: MakeRig,
                                                         slapd: dict[str, str]) -> None:
    """user_object_class = '*)(uid=*' reads nobody (escaped), not every entry (injected)."""
    rig = make_rig_for("scim")
    rig.extra_env["REL_LDAP_PASSWORD"] = slapd["SLAPD_READER_PASSWORD"]
    source = (f'type = "ldap"\nurl = ["{slapd["SLAPD_URL"]}"]\n'
              f'bind_dn = "{slapd["SLAPD_READER_DN"]}"\npassword_env = "REL_LDAP_PASSWORD"\n'
              f'base_dn = "{slapd["SLAPD_BASE_DN"]}"\n')
    rig.write(None, source=source + f'user_object_class = "inetOrgPerson{HOSTILE_LDAP}"\n')
    run = rig.cli("plan", "--format", "json")
    assert run.exit_code == 0, run.output[-800:]
    plan = json.loads(run.output[run.output.index("{"):])
    assert plan["plan"]["source_users"] == 0
    rig.write(None, source=source + 'user_object_class = "inetOrgPerson"\n')
    run = rig.cli("plan", "--format", "json")
    assert json.loads(run.output[run.output.index("{"):])["plan"]["source_users"] > 50


def test_scim_filter_values_are_quoted() -> None:
    """RFC 7644 3.4.2.2: a filter value is a JSON string; quotes and backslashes escaped."""
    assert eq_filter("externalId", HOSTILE_SCIM) == 'externalId eq "\\" or 1 eq 1"'
    assert eq_filter("userName", 'a\\"b') == 'userName eq "a\\\\\\"b"'


@pytest.mark.parametrize("kind", ["scim", "bw-scim"])
def test_hostile_external_id_lookup_matches_only_itself(make_rig_for: MakeRig,
                                                        kind: str) -> None:
    """A lost create answer makes the target look up externalId '\" or 1 eq 1' by filter:
    it finds exactly that account, never another, and nothing is duplicated."""
    rig = make_rig_for(kind)
    rig.target_extra = 'bulk = "off"\n' if kind == "scim" else ""
    d = first_directory(3)
    rig.write(d)
    assert rig.cli("sync").exit_code == 0
    d.users.append(user_row(70, id=HOSTILE_SCIM, display_name="Bobby\"); DROP"))
    rig.write(d)
    users = (rig.scim.path + "/Users") if rig.scim else f"/v2/{rig.bw.org_id}/users"  # type: ignore[union-attr]
    rig.proxy.inject("POST", users, Fault.drop_after())
    before = rig.view()
    run = rig.cli("sync")
    assert run.exit_code in (0, 1) and not run.crash
    view = rig.view()
    assert journal_mismatches(before, view, rig.journal(rig.last_run_id())) == []
    assert [u.external_id for u in view.users].count(HOSTILE_SCIM) == 1
    assert len(view.users) == len(before.users) + 1


def test_server_ids_are_url_encoded_in_paths(make_rig_for: MakeRig) -> None:
    """A server id holding '?' or '/' is percent-encoded in the request path, never parsed."""
    rig = make_rig_for("scim")
    d = first_directory(3)
    rig.write(d)
    assert rig.cli("sync").exit_code == 0
    target = rig.view().user("u001")
    assert target is not None
    odd = target.ref + "?x=1/.."

    def rename_id(method: str, path: str, payload: bytes) -> bytes:
        return payload.replace(target.ref.encode(), odd.encode()) if method == "GET" else payload

    rig.proxy.filter_response = rename_id
    rig.proxy.reset()
    d.user("u001")["active"] = False
    rig.write(d, manage="all", max_revocation_ratio=1.0)   # the renamed id is unmanaged
    rig.cli("sync")
    writes = [p for m, p, _ in rig.proxy.log if m in ("PATCH", "PUT")]
    assert writes and all("?" not in p for p in writes)
    assert any("%3F" in p or "%3f" in p for p in writes), writes


def test_daemon_warns_about_a_readable_config_with_inline_secret(make_rig_for: MakeRig,
                                                                 tmp_path: Path) -> None:
    """`dirconnector daemon` logs the inline-secret warning too, and never the secret."""
    import os
    import signal
    import subprocess
    import time

    from .rig import EXE

    rig = make_rig_for("scim")
    rig.write(first_directory(3))
    path = inline_config(rig, tmp_path, 0o644)
    path.write_text(path.read_text() + '\n[schedule]\ninterval = "1h"\n')
    out = rig.root / "daemon.out"
    with out.open("w") as fh:
        proc = subprocess.Popen([EXE, "--log-format", "json", "daemon", "--config", str(path)],
                                stdout=fh, stderr=subprocess.STDOUT,
                                env={**os.environ, "DIRCONNECTOR_MIN_INTERVAL_SECONDS": "1"})
        try:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and "holds secrets inline" not in out.read_text():
                time.sleep(0.1)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
    text = out.read_text()
    assert "holds secrets inline" in text
    assert SCIM_TOKEN not in text
