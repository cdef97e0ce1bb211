"""Which image URLs the server may fetch (regiongpt/serve/remote.py); no network needed."""

from __future__ import annotations

import asyncio
import http.server
import ipaddress
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest

from regiongpt.serve.errors import APIError
from regiongpt.serve.remote import check_remote_url, fetch_remote_image, is_public
from regiongpt.serve.schemas import ServerSettings

PUBLIC_MODE = ServerSettings(allow_remote_urls=True)


@pytest.mark.parametrize(
    "address",
    ["127.0.0.1", "10.1.2.3", "169.254.169.254", "0.0.0.0", "224.0.0.1", "::1", "fe80::1", "fec0::1",
     "ff02::1", "::ffff:127.0.0.1", "64:ff9b::a9fe:a9fe", "2002:a9fe:a9fe::1", "::a9fe:a9fe"],
)  # fmt: skip
def test_non_public_addresses_and_ipv4_hidden_in_ipv6_are_refused(address):
    assert not is_public(ipaddress.ip_address(address))
    host = f"[{address}]" if ":" in address else address
    with pytest.raises(APIError, match="non-public address"):
        asyncio.run(check_remote_url(httpx.URL(f"http://{host}/x.png"), PUBLIC_MODE))


@pytest.mark.parametrize("url", ["http://2130706433/", "http://0x7f.1/", "http://user@127.0.0.1/"])
def test_spellings_of_loopback_are_refused(url):
    with pytest.raises(APIError, match="non-public address"):
        asyncio.run(check_remote_url(httpx.URL(url), PUBLIC_MODE))


def test_public_addresses_pass():
    for address in ("8.8.8.8", "2606:4700::1111"):
        assert is_public(ipaddress.ip_address(address))
        host = f"[{address}]" if ":" in address else address
        asyncio.run(check_remote_url(httpx.URL(f"http://{host}/x.png"), PUBLIC_MODE))


def test_allow_list_entries_are_normalised_like_the_connected_host():
    settings = ServerSettings(
        allow_remote_urls=True, remote_url_hosts=("[::1]", " Bücher.Example ", "LOCALHOST")
    )
    assert settings.remote_url_hosts == ("::1", "xn--bcher-kva.example", "localhost")
    asyncio.run(check_remote_url(httpx.URL("http://[::1]:9/x.png"), settings))
    asyncio.run(check_remote_url(httpx.URL("http://xn--bcher-kva.example/x.png"), settings))
    with pytest.raises(APIError, match=r"'evil.example' \(port 80\) is not one"):
        asyncio.run(check_remote_url(httpx.URL("http://localhost@evil.example/x.png"), settings))
    with pytest.raises(ValueError, match="is not a host name"):
        ServerSettings(allow_remote_urls=True, remote_url_hosts=("[::1",))


def test_allow_list_entries_with_a_port_allow_only_that_port():
    settings = ServerSettings(
        allow_remote_urls=True, remote_url_hosts=("Images.Example:8443", "[::1]:80", "plain.example:80")
    )
    assert settings.remote_url_hosts == ("images.example:8443", "[::1]:80", "plain.example:80")
    for url in ("https://images.example:8443/a.png", "http://[::1]/a.png", "http://plain.example/a.png"):
        asyncio.run(check_remote_url(httpx.URL(url), settings))
    for url in ("https://images.example/a.png", "http://[::1]:8080/a.png", "https://plain.example/a.png"):
        with pytest.raises(APIError, match="is not one this server fetches from"):
            asyncio.run(check_remote_url(httpx.URL(url), settings))
    for entry in ("images.example:", "[::1]:", "host:0", "host:65536", "user@host:80", "host:80/x", "host?q"):
        with pytest.raises(ValueError, match="is not a host name or address"):
            ServerSettings(allow_remote_urls=True, remote_url_hosts=(entry,))


@contextmanager
def _image_server(hosts_seen: list[str], redirects: dict[str, str] | None = None) -> Iterator[int]:
    """A local HTTP server (its port) answering GET with b"image bytes", or with a 302 to
    ``redirects[path]``; records the Host header of each request in ``hosts_seen``."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            hosts_seen.append(self.headers["Host"])
            if redirects and self.path in redirects:
                self.send_response(302)
                self.send_header("Location", redirects[self.path])
                self.end_headers()
                return
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"image bytes")

        def log_message(self, *args):
            pass

    files = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=files.serve_forever, daemon=True).start()
    try:
        yield files.server_port
    finally:
        files.shutdown()


def test_redirects_relative_invalid_and_to_other_schemes(monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", "http://10.0.0.1:3128")  # ignored: the proxy would connect
    redirects = {"/relative": "/image.png", "/invalid": "http://[::1", "/ftp": "ftp://127.0.0.1/x"}
    settings = ServerSettings(allow_remote_urls=True, remote_url_hosts=("127.0.0.1",))
    with _image_server([], redirects) as port:
        base = f"http://127.0.0.1:{port}"
        assert asyncio.run(fetch_remote_image(f"{base}/relative", settings)) == b"image bytes"
        with pytest.raises(APIError, match="Invalid URL in location header"):
            asyncio.run(fetch_remote_image(f"{base}/invalid", settings))
        with pytest.raises(APIError, match="unsupported image URL scheme 'ftp'"):
            asyncio.run(fetch_remote_image(f"{base}/ftp", settings))


def test_the_connection_goes_to_the_checked_address_not_a_second_lookup(monkeypatch):
    """DNS rebinding: the name is resolved once, checked, and that address is connected to."""
    from regiongpt.serve import remote

    seen, lookups = [], []

    async def resolve_once(self, host, port, **kwargs):  # a second lookup would get a private address
        lookups.append(host)
        address = "127.0.0.1" if len(lookups) == 1 else "10.0.0.1"
        return [(2, 1, 6, "", (address, port))]

    monkeypatch.setattr(asyncio.BaseEventLoop, "getaddrinfo", resolve_once)
    monkeypatch.setattr(remote, "is_public", lambda address: str(address) == "127.0.0.1")
    with _image_server(seen) as port:
        url = f"http://images.example:{port}/x.png"
        assert asyncio.run(fetch_remote_image(url, PUBLIC_MODE)) == b"image bytes"
    assert lookups == ["images.example"]  # the one lookup of the check; the connection used its answer
    assert seen == [f"images.example:{port}"]  # the server still sees the URL's host


def test_every_checked_address_is_tried_in_order(monkeypatch):
    from regiongpt.serve import remote

    async def two_addresses(self, host, port, **kwargs):  # nothing listens on 127.0.0.2
        return [(2, 1, 6, "", ("127.0.0.2", port)), (2, 1, 6, "", ("127.0.0.1", port))]

    monkeypatch.setattr(asyncio.BaseEventLoop, "getaddrinfo", two_addresses)
    monkeypatch.setattr(remote, "is_public", lambda address: True)
    seen = []
    with _image_server(seen) as port:
        url = f"http://images.example:{port}/x.png"
        assert asyncio.run(fetch_remote_image(url, PUBLIC_MODE)) == b"image bytes"
    assert len(seen) == 1


def test_pinned_request_keeps_the_host_for_the_header_and_tls():
    from regiongpt.serve.remote import pinned_request

    url, headers, extensions = pinned_request(
        httpx.URL("https://Images.Example:8443/a.png?x=1"), "2606:4700::1"
    )
    assert str(url) == "https://[2606:4700::1]:8443/a.png?x=1"
    assert headers == {"Host": "images.example:8443"} and extensions == {"sni_hostname": "images.example"}
    plain = httpx.URL("https://images.example/a.png")
    assert pinned_request(plain, None) == (plain, {}, {})
