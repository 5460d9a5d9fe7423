"""The rules every URL a worker or the service reads must pass (``jobs.sources.http`` applies
them on every request, the HTTP API when it accepts a ``video_url``).

Only http/https; the host is resolved here and refused when any of its addresses is private,
loopback, link-local, multicast, reserved, 6to4, site-local or a cloud metadata address, unless
``Allowlist`` (``FRAMESIFT_URL_ALLOWLIST``) exempts it, per port; a ``CheckedTarget`` then sends
its requests to the address that was checked (no second DNS lookup an attacker could answer
differently) with the original Host and TLS SNI; each redirect is resolved here
(``redirect_target``) and checked again by the caller; ``video_content_type`` says which
Content-Types may be a video. Errors are ``FetchError`` subclasses with a ``code``; their URL is
redacted (``jobs.redact.redact_url``: no credentials, no query string).
"""

from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass
from typing import Iterable
from urllib.parse import urljoin, urlsplit, urlunsplit

import httpx

from actors.errors import FramesiftError
from jobs.redact import redact_url

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
    """A URL that may not or cannot be read. ``url`` is redacted (no credentials, no query)."""

    code = "fetch_failed"

    def __init__(self, url: str, message: str) -> None:
        self.url = redact_url(url)
        super().__init__(f"{self.url}: {message}")


class UrlSchemeError(FetchError):
    code = "url_scheme_not_allowed"


class UrlBlockedError(FetchError):
    code = "url_blocked"


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
    if not value:  # no type given: a generic binary body (RFC 9110 8.3); probing decides
        return True
    mime = value.split(";", 1)[0].strip().lower()
    return mime.startswith(VIDEO_CONTENT_TYPES) or mime in GENERIC_CONTENT_TYPES
