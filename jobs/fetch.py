"""Download a video given as a URL, safely (manifests now; the HTTP API reuses it).

``fetch_to_file`` only speaks http/https, resolves the host itself and refuses private,
loopback, link-local, multicast, reserved and cloud-metadata addresses unless allow-listed,
connects to the address it checked (no second DNS lookup an attacker could answer
differently), follows redirects itself (bounded) re-checking every hop, streams the body with a
byte cap and a deadline, refuses non-video content types, and never logs a URL's credentials or
query string (``jobs.redact.redact_url``).
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import os
import re
import socket
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence
from urllib.parse import urljoin, urlsplit, urlunsplit

import httpx

from actors.errors import FramesiftError
from jobs.redact import redact_url

log = logging.getLogger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

ALLOWED_SCHEMES = ("http", "https")
# Instance metadata endpoints (AWS, GCP, Azure, OpenStack: 169.254.169.254; AWS IPv6). They are
# link-local anyway; they are refused even when a wider allow-listed network contains them, and
# pass only when allow-listed as exactly this address.
METADATA_ADDRESSES = frozenset({ipaddress.ip_address("169.254.169.254"),
                                ipaddress.ip_address("fd00:ec2::254")})
# Video types, plus the generic binary types object stores give files uploaded without one
# (S3 ``binary/octet-stream``, ``application/octet-stream``). Probing proves it is a video.
VIDEO_CONTENT_TYPES = ("video/",)
GENERIC_CONTENT_TYPES = frozenset({"application/octet-stream", "binary/octet-stream",
                                   "application/mp4", "application/x-matroska"})
_REDIRECTS = frozenset({301, 302, 303, 307, 308})


class FetchError(FramesiftError):
    """A URL could not be downloaded. ``url`` is redacted (no credentials, no query)."""

    code = "fetch_failed"

    def __init__(self, url: str, message: str) -> None:
        self.url = redact_url(url)
        super().__init__(f"{self.url}: {message}")


class UrlSchemeError(FetchError):
    code = "url_scheme_not_allowed"


class UrlBlockedError(FetchError):
    code = "url_blocked"


class TooManyRedirectsError(FetchError):
    code = "too_many_redirects"


class DownloadTooLargeError(FetchError):
    code = "download_too_large"


class NotVideoContentError(FetchError):
    code = "not_video_content"


class DownloadFailedError(FetchError):
    code = "download_failed"


STANDARD_PORTS = frozenset({80, 443})


@dataclass(frozen=True)
class AllowEntry:
    """One allow-list entry: a host name (``.example.com`` covers subdomains) or a network,
    and the ports it opens (None = any port)."""

    host: str | None = None
    network: IPNetwork | None = None
    ports: frozenset[int] | None = STANDARD_PORTS

    def port_ok(self, port: int) -> bool:
        return self.ports is None or port in self.ports


def _parse_port(raw: str, entry: str) -> frozenset[int] | None:
    if raw == "*":
        return None
    if raw.isdigit() and 1 <= int(raw) <= 65535:
        return frozenset({int(raw)})
    raise ValueError(f"allow-list entry {entry!r}: port {raw!r} is neither a number 1-65535 "
                     "nor '*'")


def _parse_entry(raw: str) -> AllowEntry | None:
    item = raw.strip().lower()
    if not item:
        return None
    ports: frozenset[int] | None = STANDARD_PORTS
    if item.startswith("["):  # [v6], [v6]:port, [v6/len]:port
        inside, sep, rest = item[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(f"allow-list entry {raw!r}: expected [address] or [address]:port")
        target = inside
        if rest:
            ports = _parse_port(rest[1:], raw)
    elif item.count(":") >= 2:  # a bare IPv6 address or network: no port
        target = item
    elif ":" in item:
        target, _, port = item.rpartition(":")
        ports = _parse_port(port, raw)
    else:
        target = item
    try:
        return AllowEntry(network=ipaddress.ip_network(target, strict=False), ports=ports)
    except ValueError:
        if not re.fullmatch(r"\.?[a-z0-9]([a-z0-9.-]*[a-z0-9])?", target):
            raise ValueError(f"allow-list entry {raw!r} is neither a host name, an address nor "
                             "a CIDR network (each optionally with :port or :*)") from None
        return AllowEntry(host=target, ports=ports)


@dataclass(frozen=True)
class Allowlist:
    """Hosts and networks exempt from the private-address refusal, each for some ports.

    Entries: a host name (``media.internal``; ``.example.com`` also covers its subdomains), an
    address (``10.1.2.3``, ``[fd00::1]``) or a network in CIDR form (``10.0.0.0/8``,
    ``fd00::/8``), optionally with a port (``media.internal:8080``, ``[fd00::1]:9000``) or
    ``:*`` for any port. Without a port an entry opens the standard ports 80 and 443 only, so
    allow-listing a host never opens its other services (an admin port, this API's own port).
    """

    entries: tuple[AllowEntry, ...] = ()

    @classmethod
    def parse(cls, spec: "str | Iterable[str] | Allowlist | None") -> "Allowlist":
        if spec is None:
            return cls()
        if isinstance(spec, Allowlist):
            return spec
        items = spec.split(",") if isinstance(spec, str) else list(spec)
        return cls(tuple(e for e in (_parse_entry(raw) for raw in items) if e is not None))

    def allows_host(self, host: str, port: int) -> bool:
        host = host.lower().rstrip(".")
        for e in self.entries:
            if e.host is None or not e.port_ok(port):
                continue
            if host == e.host or (e.host.startswith(".") and (host.endswith(e.host)
                                                              or host == e.host[1:])):
                return True
        return False

    def allows_address(self, addr: IPAddress, port: int) -> bool:
        nets = [e.network for e in self.entries if e.network is not None and e.port_ok(port)]
        if addr in METADATA_ADDRESSES:  # only as exactly this address
            return any(n.num_addresses == 1 and n.network_address == addr for n in nets)
        return any(addr in n for n in nets)


def _unmapped(addr: IPAddress) -> IPAddress:
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def address_refusal(addr: IPAddress) -> str | None:
    """Why ``addr`` may not be fetched from without an allow-list entry, or None if it may."""
    addr = _unmapped(addr)
    if addr in METADATA_ADDRESSES:
        return "a cloud metadata address"
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.sixtofour is not None:  # 2002::/16 reaches the IPv4 address it embeds
            return f"a 6to4 address (embedding {addr.sixtofour})"
        if addr.is_site_local:  # fec0::/10: deprecated, but routed inside some networks
            return "a site-local address"
    for attr, why in (("is_loopback", "a loopback address"), ("is_link_local", "a link-local address"),
                      ("is_multicast", "a multicast address"), ("is_unspecified", "an unspecified address"),
                      ("is_reserved", "a reserved address"), ("is_private", "a private address")):
        if getattr(addr, attr):
            return why
    if not addr.is_global:
        return "not a public address"
    return None


def _resolve(host: str, port: int) -> list[IPAddress]:
    try:
        return [ipaddress.ip_address(host.strip("[]"))]
    except ValueError:
        pass
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    seen: list[IPAddress] = []
    for _family, _type, _proto, _canon, sockaddr in infos:
        addr = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if addr not in seen:
            seen.append(addr)
    return seen


def check_url(url: str, allowlist: Allowlist) -> tuple[str, int, IPAddress]:
    """Validate scheme and host of ``url``; return ``(host, port, address to connect to)``.

    Every address the host resolves to must pass (a name with one public and one private
    record is refused), unless the host itself is allow-listed.
    """
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError as exc:
        raise UrlSchemeError(url, f"not a valid URL ({exc})") from None
    scheme = parts.scheme.lower()
    if scheme not in ALLOWED_SCHEMES:
        raise UrlSchemeError(url, f"scheme {scheme or '(none)'!r} is not allowed; give an "
                                  "http:// or https:// URL, or a local file path")
    if not host:
        raise UrlSchemeError(url, "the URL has no host")
    port = port or (443 if scheme == "https" else 80)
    try:
        addresses = _resolve(host, port)
    except (socket.gaierror, UnicodeError) as exc:
        raise DownloadFailedError(url, f"cannot resolve host {host!r} ({exc})") from None
    if not addresses:
        raise DownloadFailedError(url, f"host {host!r} resolves to no address")
    if not allowlist.allows_host(host, port):
        for addr in addresses:
            why = address_refusal(addr)
            if why and not allowlist.allows_address(_unmapped(addr), port):
                raise UrlBlockedError(
                    url, f"host {host!r} resolves to {addr}, {why}; refused to prevent requests "
                         "to internal services. If this source is trusted, add the host or a "
                         "network containing it to FRAMESIFT_URL_ALLOWLIST, with the port "
                         f"unless it is 80 or 443 (e.g. {host}:{port})")
    elif any(_unmapped(a) in METADATA_ADDRESSES
             and not allowlist.allows_address(_unmapped(a), port) for a in addresses):
        raise UrlBlockedError(url, f"host {host!r} resolves to a cloud metadata address; "
                                   "allow-list that exact address to fetch from it")
    return host, port, addresses[0]


def _content_type_ok(value: str | None) -> bool:
    if not value:  # no type given: a generic binary body (RFC 9110 8.3); probing decides
        return True
    mime = value.split(";", 1)[0].strip().lower()
    return mime.startswith(VIDEO_CONTENT_TYPES) or mime in GENERIC_CONTENT_TYPES


def _file_name(url: str) -> str:
    """Deterministic, safe local name: a hash of the full URL plus the path's base name."""
    digest = hashlib.sha256(url.encode()).hexdigest()[:16]
    base = os.path.basename(urlsplit(url).path) or "video"
    base = re.sub(r"[^A-Za-z0-9._-]+", "-", base).strip("-.")[:80] or "video"
    return f"{digest}-{base}"


def _pinned_request(client: httpx.Client, url: str, host: str, port: int,
                    addr: IPAddress) -> httpx.Request:
    """A GET to ``addr`` (the checked address) carrying the original Host and TLS SNI."""
    parts = urlsplit(url)
    ip = f"[{addr}]" if isinstance(addr, ipaddress.IPv6Address) else str(addr)
    default_port = 443 if parts.scheme.lower() == "https" else 80
    host_header = host if port == default_port else f"{host}:{port}"
    if ":" in host and not host.startswith("["):
        host_header = f"[{host}]" if port == default_port else f"[{host}]:{port}"
    target = urlunsplit((parts.scheme.lower(), f"{ip}:{port}", parts.path or "/", parts.query, ""))
    return client.build_request("GET", target, headers={"Host": host_header,
                                                        "Accept": "video/*, */*;q=0.1"},
                                extensions={"sni_hostname": host})


def fetch_to_file(url: str, dest_dir: str | os.PathLike[str], *, max_bytes: int,
                  timeout_s: float, allowlist: "str | Sequence[str] | Allowlist | None" = None,
                  max_redirects: int = 5) -> Path:
    """Download ``url`` into ``dest_dir`` and return the file's path.

    Raises a ``FetchError`` subclass (each with a ``code``): ``UrlSchemeError``,
    ``UrlBlockedError``, ``TooManyRedirectsError``, ``DownloadTooLargeError``,
    ``NotVideoContentError`` or ``DownloadFailedError`` (HTTP status, network error, timeout).
    The file appears complete or not at all; the same URL always maps to the same name.
    """
    if max_bytes < 1 or timeout_s <= 0 or max_redirects < 0:
        raise ValueError("max_bytes and timeout_s must be positive, max_redirects >= 0")
    allow = Allowlist.parse(allowlist)
    dest = Path(dest_dir)
    dest.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout_s
    current = url
    log.info("downloading %s", redact_url(url))
    with httpx.Client(timeout=httpx.Timeout(timeout_s), follow_redirects=False,
                      trust_env=False) as client:  # no proxy from the env: it would skip our checks
        for hop in range(max_redirects + 1):
            host, port, addr = check_url(current, allow)
            request = _pinned_request(client, current, host, port, addr)
            try:
                response = client.send(request, stream=True)
            except httpx.TimeoutException:
                raise DownloadFailedError(url, f"timed out after {timeout_s:g} s") from None
            except httpx.HTTPError as exc:
                raise DownloadFailedError(url, f"request failed ({type(exc).__name__})") from None
            try:
                if response.status_code in _REDIRECTS:
                    location = response.headers.get("location")
                    if not location:
                        raise DownloadFailedError(url, f"HTTP {response.status_code} without a "
                                                       "Location header")
                    current = urljoin(current, location)
                    log.info("redirected to %s", redact_url(current))
                    continue
                if response.status_code != 200:
                    raise DownloadFailedError(url, f"HTTP {response.status_code}; expected 200")
                ctype = response.headers.get("content-type")
                if not _content_type_ok(ctype):
                    raise NotVideoContentError(url, f"content type {ctype!r} is not a video; "
                                                    "expected video/* (e.g. video/mp4)")
                length = response.headers.get("content-length")
                if length and length.isdigit() and int(length) > max_bytes:
                    raise DownloadTooLargeError(url, f"{int(length)} bytes announced, more than "
                                                     f"the limit of {max_bytes} bytes")
                return _stream(response, url, dest / _file_name(url), max_bytes, deadline,
                               timeout_s)
            finally:
                response.close()
    raise TooManyRedirectsError(url, f"more than {max_redirects} redirects")


def _stream(response: httpx.Response, url: str, final: Path, max_bytes: int, deadline: float,
            timeout_s: float) -> Path:
    tmp = final.with_name(f".{final.name}.{uuid.uuid4().hex[:12]}.part")
    written = 0
    try:
        with open(tmp, "wb") as fh:
            for chunk in response.iter_bytes():  # as received: the deadline is checked often
                written += len(chunk)
                if written > max_bytes:
                    raise DownloadTooLargeError(url, f"more than the limit of {max_bytes} bytes")
                if time.monotonic() > deadline:
                    raise DownloadFailedError(url, f"timed out after {timeout_s:g} s")
                fh.write(chunk)
        if written == 0:
            raise DownloadFailedError(url, "empty response body")
        os.replace(tmp, final)
    except httpx.TimeoutException:
        raise DownloadFailedError(url, f"timed out after {timeout_s:g} s") from None
    except httpx.HTTPError as exc:
        raise DownloadFailedError(url, f"download interrupted ({type(exc).__name__})") from None
    finally:
        tmp.unlink(missing_ok=True)
    log.info("downloaded %s (%d bytes)", redact_url(url), written)
    return final


# -- checked targets for readers that make many requests (jobs.sources.http) ------------------

@dataclass(frozen=True)
class CheckedTarget:
    """A URL that passed ``check_url``, with the address it was checked at. Requests built
    from it go to that address (no second DNS lookup) with the original Host and TLS SNI."""

    url: str
    host: str
    port: int
    address: IPAddress

    def request(self, client: httpx.Client, headers: dict[str, str] | None = None) -> httpx.Request:
        request = _pinned_request(client, self.url, self.host, self.port, self.address)
        request.headers.update(headers or {})
        return request


def check_target(url: str, allowlist: Allowlist) -> CheckedTarget:
    """``check_url`` as a ``CheckedTarget``; raises the same ``FetchError`` subclasses."""
    host, port, address = check_url(url, allowlist)
    return CheckedTarget(url, host, port, address)


def redirect_target(current: str, response: httpx.Response, original: str) -> str | None:
    """Where a redirect answer points (resolved against ``current``), or None when
    ``response`` is not a redirect. Raises ``DownloadFailedError`` for one without Location."""
    if response.status_code not in _REDIRECTS:
        return None
    location = response.headers.get("location")
    if not location:
        raise DownloadFailedError(original, f"HTTP {response.status_code} without a Location header")
    return urljoin(current, location)


def video_content_type(value: str | None) -> bool:
    """Whether a Content-Type may be a video (video/*, generic binary, or none given)."""
    return _content_type_ok(value)
