"""App-only tokens for Microsoft Graph from msal (OAuth 2.0 client credentials).

msal's ``ConfidentialClientApplication.acquire_token_for_client`` serves a cached token
until shortly before it expires and then fetches a new one, so asking it before every
Graph request is cheap. The app object is built on first use because msal fetches the
tenant's OpenID configuration in its constructor; errors from that step and from the
token endpoint are turned into one line naming tenant and client id, never the secret.
"""

from __future__ import annotations

import logging
import re
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import requests

from ...errors import ConfigError, SourceError

if TYPE_CHECKING:
    from .connector import AzureSettings

log = logging.getLogger(__name__)

# Hosts msal already knows (msal/authority.py WELL_KNOWN_AUTHORITY_HOSTS); for any other
# host (an emulator, a proxy) instance discovery would ask login.microsoftonline.com
# whether the host is a valid authority, so it is turned off (msal >= 1.19).
MICROSOFT_AUTHORITY_HOSTS = frozenset({
    "login.microsoftonline.com", "login.windows.net", "login.microsoft.com",
    "sts.windows.net", "login.partner.microsoftonline.cn", "login.chinacloudapi.cn",
    "login.microsoftonline.de", "login-us.microsoftonline.com", "login.microsoftonline.us",
    "login.usgovcloudapi.net", "login.sovcloud-identity.fr", "login.sovcloud-identity.de",
    "login.sovcloud-identity.sg",
})
_PEM_CERT = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)


class _MsalSession(requests.Session):
    """The HTTP client handed to msal: pins our TLS trust and timeout on every call.

    msal's own default session sets ``session.verify``, which requests lets
    REQUESTS_CA_BUNDLE override (psf/requests#3829); passing it per call keeps ca_file.
    """

    def __init__(self, verify: bool | str, timeout: float) -> None:
        super().__init__()
        self.verify = verify
        self._timeout = timeout

    def request(self, method: str | bytes, url: str | bytes,
                *args: Any, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("verify", self.verify)
        kwargs.setdefault("timeout", self._timeout)
        return super().request(method, url, *args, **kwargs)


class TokenSource:
    """Hands out a valid Graph access token; raises SourceError with one clear line."""

    def __init__(self, settings: AzureSettings) -> None:
        self.settings = settings
        self.scope = settings.graph_root + "/.default"
        self._app: Any = None
        self._lock = threading.Lock()
        self._credential = _credential(settings)

    @property
    def who(self) -> str:
        s = self.settings
        return f"client {s.client_id} in tenant {s.tenant_id}"

    def headers(self) -> dict[str, str]:
        """The Authorization header for one Graph request (the HttpClient auth callable)."""
        return {"Authorization": f"Bearer {self.token()}"}

    def token(self) -> str:
        with self._lock:
            app = self._app or self._build()
            try:
                result = app.acquire_token_for_client(scopes=[self.scope])
            except requests.RequestException as exc:
                raise SourceError(f"azure: cannot reach the token endpoint at "
                                  f"{self.settings.authority_host} for {self.who}: "
                                  f"{type(exc).__name__}") from exc
            except ValueError as exc:   # msal raises for 5xx answers and malformed bodies
                raise SourceError(f"azure: token request for {self.who} failed: "
                                  f"{_first_line(str(exc))}") from exc
        if isinstance(result, dict) and result.get("access_token"):
            return str(result["access_token"])
        raise self._token_error(result if isinstance(result, dict) else {})

    def _build(self) -> Any:
        import msal

        s = self.settings
        host = urlsplit(s.authority_host).hostname or ""
        kwargs: dict[str, Any] = {}
        if host not in MICROSOFT_AUTHORITY_HOSTS:
            kwargs["instance_discovery"] = False
        try:
            self._app = msal.ConfidentialClientApplication(
                s.client_id, client_credential=self._credential,
                authority=f"{s.authority_host}/{s.tenant_id}", azure_region=False,
                http_client=_MsalSession(s.verify, s.timeout), **kwargs)
        except requests.exceptions.SSLError as exc:
            raise SourceError(f"azure: TLS handshake with {s.authority_host} failed",
                              hint="set ca_file to the CA that signed its certificate") from exc
        except requests.RequestException as exc:
            raise SourceError(f"azure: cannot reach {s.authority_host} to discover tenant "
                              f"{s.tenant_id}: {type(exc).__name__}") from exc
        except ValueError as exc:
            # msal: "Unable to get authority configuration for ..." (unknown tenant, 4xx).
            raise SourceError(f"azure: {s.authority_host} does not know tenant {s.tenant_id} "
                              f"({_first_line(str(exc))})",
                              hint="check tenant_id and that authority_host is your cloud's "
                              "login host") from exc
        return self._app

    def _token_error(self, result: dict[str, Any]) -> SourceError:
        code = str(result.get("error") or "no access_token in the answer")
        desc = _first_line(str(result.get("error_description") or ""))
        if code == "invalid_client":
            what = ("the client secret" if self.settings.client_secret is not None
                    else "the certificate")
            return SourceError(
                f"azure: Entra ID rejected {what} of {self.who}: {desc}",
                hint="create a new secret (or upload the certificate) under App registrations "
                     "> Certificates & secrets and update the configuration")
        if code == "unauthorized_client":
            return SourceError(f"azure: application {self.settings.client_id} is not registered "
                               f"in tenant {self.settings.tenant_id}: {desc}",
                               hint="client_id is the Application (client) ID of the app "
                                    "registration")
        return SourceError(f"azure: token request for {self.who} failed: {code}: {desc}")


def _credential(s: AzureSettings) -> Any:
    """msal's client_credential: the secret, or a certificate dict (PEM or PKCS#12)."""
    if s.client_secret is not None:
        return s.client_secret.get_secret_value()
    path = s.certificate_file
    assert path is not None  # the settings model requires one of the two
    password = (s.certificate_password.get_secret_value()
                if s.certificate_password is not None else None)
    if path.suffix.lower() in (".pfx", ".p12"):
        _check_pfx(path, password)
        cred: dict[str, Any] = {"private_key_pfx_path": str(path)}
    else:
        data = _read(path)
        certs = _PEM_CERT.findall(data)
        if b"PRIVATE KEY-----" not in data or not certs:
            raise ConfigError(f"source.certificate_file: {path} must hold the private key and "
                              "the certificate in PEM (or be a .pfx/.p12 file)")
        _check_pem_key(path, data, password)
        cred = {"private_key": data.decode(), "public_certificate": certs[0].decode()}
    if password:
        cred["passphrase"] = password
    return cred


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"source.certificate_file: cannot read {path}: {exc.strerror}") from exc


def _check_pem_key(path: Path, data: bytes, password: str | None) -> None:
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    try:
        load_pem_private_key(data, password.encode() if password else None)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"source.certificate_file: cannot load the private key in {path} "
                          "(wrong or missing certificate_password?)") from exc


def _check_pfx(path: Path, password: str | None) -> None:
    from cryptography.hazmat.primitives.serialization.pkcs12 import load_key_and_certificates

    try:
        key, cert, _ = load_key_and_certificates(_read(path),
                                                 password.encode() if password else None)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"source.certificate_file: cannot open {path} "
                          "(wrong or missing certificate_password?)") from exc
    if key is None or cert is None:
        raise ConfigError(f"source.certificate_file: {path} lacks the private key or certificate")


def _first_line(text: str) -> str:
    """The first line of an Entra error (the rest is trace and correlation ids)."""
    line = text.strip().splitlines()[0] if text.strip() else ""
    head, dot, _ = line.partition(". ")
    return (head + dot.strip()) if dot else line
