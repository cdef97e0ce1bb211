"""Downloading an ``image_url`` that is an http(s) URL (``regiongpt serve --allow-remote-urls``).

A server that fetches what a client names can be made to reach what the client cannot (cloud
metadata at 169.254.169.254, services on localhost, the private network). So a URL is fetched
only if its host is on the operator's list (``--remote-url-host``), or, with no list, if every
address the host resolves to is public; the connection then goes to the address that was
checked (the URL's host stays in the ``Host`` header and TLS's server name), so a DNS answer that
changes after the check (rebinding) is never used. The check is repeated for every redirect (at
most :data:`MAX_REDIRECTS`), and proxy settings in the environment are ignored (a proxy would make
its own connection). Hosts on the operator's list are connected to by name; an entry with a
port (``host:8443``) allows only that port, one without allows any."""

from __future__ import annotations

import asyncio
import ipaddress
import socket

import httpx

from regiongpt.serve.errors import APIError
from regiongpt.serve.schemas import ServerSettings

MAX_REDIRECTS = 5
NAT64 = ipaddress.ip_network("64:ff9b::/96")


def _refuse(message: str) -> APIError:
    return APIError(400, message, param="image_url")


def is_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """A globally routable unicast address, IPv4 inside IPv6 (mapped, 6to4, Teredo, NAT64) included."""
    if not address.is_global or address.is_multicast or address.is_reserved:
        return False
    if isinstance(address, ipaddress.IPv4Address):
        return True
    if address.is_site_local:
        return False
    embedded = [address.ipv4_mapped, address.sixtofour, *(address.teredo or ())]
    if address in NAT64:
        embedded.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return all(is_public(inner) for inner in embedded if inner is not None)


def host_name(url: httpx.URL) -> str:
    """The host as it is connected to: ASCII (IDNA-encoded), lower case, no IPv6 brackets."""
    return url.raw_host.decode("ascii").lower()


def host_and_port(host: str, port: int) -> str:
    """``host:port`` (IPv6 in brackets), as allow-list entries with a port are written."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def allowed(url: httpx.URL, hosts: tuple[str, ...]) -> bool:
    """Whether ``url`` is on the allow-list: its host (any port) or its ``host:port``."""
    host = host_name(url)
    port = url.port or (443 if url.scheme == "https" else 80)
    return host in hosts or host_and_port(host, port) in hosts


async def check_remote_url(url: httpx.URL, settings: ServerSettings) -> list[str] | None:
    """Raise a 400 :class:`APIError` unless the server may connect to ``url``; return the checked
    addresses to connect to, in resolver order (``None``: a host on the operator's list, connected
    to by name)."""
    if url.scheme not in ("http", "https"):
        raise _refuse(f"unsupported image URL scheme {url.scheme!r}: only http(s) is fetched")
    host = host_name(url)
    port = url.port or (443 if url.scheme == "https" else 80)
    if settings.remote_url_hosts:
        if not allowed(url, settings.remote_url_hosts):
            raise _refuse(
                f"image URL host {host!r} (port {port}) is not one this server fetches from "
                f"({', '.join(settings.remote_url_hosts)})"
            )
        return None
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as error:
        raise _refuse(f"cannot resolve the image URL host {host!r}: {error}") from None
    addresses = [ipaddress.ip_address(str(sockaddr[0]).split("%")[0]) for *_, sockaddr in infos]
    for address in addresses:
        if not is_public(address):
            raise _refuse(
                f"image URL host {host!r} resolves to the non-public address {address}; the server "
                "operator can allow it with --remote-url-host"
            )
    if not addresses:
        raise _refuse(f"cannot resolve the image URL host {host!r}: no address")
    return list(dict.fromkeys(str(address) for address in addresses))


def pinned_request(url: httpx.URL, address: str | None) -> tuple[httpx.URL, dict, dict]:
    """``(url, headers, extensions)`` that connect to ``address`` but name ``url``'s host in the
    ``Host`` header and as TLS server name (SNI and certificate check); ``url`` as is for ``None``."""
    if address is None:
        return url, {}, {}
    host = host_name(url)
    return url.copy_with(host=address), {"Host": url.netloc.decode("ascii")}, {"sni_hostname": host}


async def _send(client: httpx.AsyncClient, target: httpx.URL, addresses: list[str] | None) -> httpx.Response:
    """A streamed GET of ``target`` through the first checked address that accepts a connection."""
    failure: httpx.TransportError | None = None
    for address in addresses or [None]:
        connect_url, headers, extensions = pinned_request(target, address)
        request = client.build_request("GET", connect_url, headers=headers, extensions=extensions)
        try:
            return await client.send(request, stream=True)
        except (httpx.ConnectError, httpx.ConnectTimeout) as error:  # unreachable: try the next
            failure = error
    assert failure is not None
    raise failure


async def fetch_remote_image(url: str, settings: ServerSettings) -> bytes:
    """The body of ``url`` (status 200, at most ``settings.max_body_bytes``), redirects checked.

    No connection or cookie is carried from one hop to the next (connections go to addresses,
    so one kept alive for one host name must not serve another)."""
    try:
        target = httpx.URL(url)
    except httpx.InvalidURL as error:
        raise _refuse(f"invalid image URL: {error}") from None
    limit = settings.max_body_bytes
    try:
        async with httpx.AsyncClient(
            timeout=settings.remote_timeout_s,
            follow_redirects=False,
            trust_env=False,
            limits=httpx.Limits(max_keepalive_connections=0),
        ) as client:
            for _ in range(MAX_REDIRECTS + 1):
                addresses = await check_remote_url(target, settings)
                client.cookies.clear()
                response = await _send(client, target, addresses)
                try:
                    if response.has_redirect_location:  # a 3xx with a Location header
                        target = target.join(response.headers["location"])  # (httpx checked it)
                        continue
                    if response.status_code != 200:
                        raise _refuse(f"fetching the image URL failed: HTTP {response.status_code}")
                    data = bytearray()
                    async for piece in response.aiter_bytes():
                        data += piece
                        if len(data) > limit:
                            raise _refuse(f"the image at the URL exceeds {limit} bytes")
                    return bytes(data)
                finally:
                    await response.aclose()
    except httpx.HTTPError as error:
        raise _refuse(f"fetching the image URL failed: {error}") from None
    raise _refuse(f"the image URL redirected more than {MAX_REDIRECTS} times")
