"""Where the crawler may connect (no SSRF) and for how long a request may run (a total deadline).

Feed entries and redirects come from third parties, so a URL can point the crawler at the machine
it runs on, the office network, or a cloud metadata service (``http://169.254.169.254/``). The
guard sits where the TCP connection is made (an httpcore network backend): the host is resolved
once, EVERY address it resolves to is checked, and the socket connects to the checked address
(the Host header and TLS SNI keep the original name). So redirects, robots.txt and every other
request path are covered by construction, and a second DNS answer cannot swap the address
between the check and the connection (DNS rebinding). :func:`AddressPolicy.check_url` is the
pre-flight check that gives the same refusal with the URL, before robots.txt is asked.

The deadline (``defaults.max_request_s``) bounds the whole request, redirects and body included:
every socket read, write, connect and TLS handshake made while :func:`request_deadline` is
active gets at most the time left, so a page that drips one byte every few seconds cannot hold
a worker past it. It is thread-local, like the synchronous requests it bounds.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
import typing
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpcore
import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
NAT64 = ipaddress.IPv6Network("64:ff9b::/96")   # RFC 6052 well-known prefix: the IPv4 address is the last 32 bits
METADATA = ipaddress.IPv4Address("169.254.169.254")


class RefusedAddress(Exception):
    """A connection the address policy refuses; ``reason`` is the text shown after ``refused:``."""

    def __init__(self, reason: str, url: str | None = None):
        self.reason = reason
        self.url = url
        super().__init__(f"refused: {reason}")


@dataclass(frozen=True, slots=True)
class AllowEntry:
    """One ``defaults.allow_private`` entry: a network (a single address is a /32 or /128), maybe one port."""

    network: IPNetwork
    port: int | None
    text: str

    def matches(self, ip: IPAddress, port: int) -> bool:
        """Whether this entry allows a connection to ``ip``:``port``."""
        return ip.version == self.network.version and ip in self.network and self.port in (None, port)


def parse_allow_entry(text: str) -> AllowEntry:
    """Parse ``IP:PORT``, ``[IPv6]:PORT``, ``IP`` or a CIDR network (``10.20.0.0/16``, ``fd00::/8``).

    Raises:
        ValueError: with a message saying what is wrong with ``text``.
    """
    raw = text.strip()
    if not raw:
        raise ValueError("is empty")
    host, port = raw, None
    if raw.startswith("["):
        close = raw.find("]")
        if close < 0:
            raise ValueError(f"{text!r}: unclosed '[' (write an IPv6 address with a port as [::1]:8080)")
        host, rest = raw[1:close], raw[close + 1:]
        if rest:
            if not rest.startswith(":"):
                raise ValueError(f"{text!r}: expected ':PORT' after ']'")
            port = _port(rest[1:], text)
    elif raw.count(":") == 1:          # IPv4:PORT (an IPv6 address has at least two colons)
        host, port_text = raw.split(":")
        port = _port(port_text, text)
    if "%" in host:
        raise ValueError(f"{text!r}: a zone index (%...) is not accepted")
    if port is not None and "/" in host:
        raise ValueError(f"{text!r}: a network cannot have a port (write {host} to allow every port)")
    try:
        network = ipaddress.ip_network(host, strict=True)
    except ValueError as e:
        if "host bits set" in str(e):
            fixed = ipaddress.ip_network(host, strict=False)
            raise ValueError(f"{text!r}: has host bits set (did you mean {fixed}?)") from None
        raise ValueError(f"{text!r}: not an IP address, IP:PORT, [IPv6]:PORT or CIDR network "
                         "(host names are not accepted: they can resolve anywhere)") from None
    return AllowEntry(_unwrap_network(network), port, raw)


def _port(value: str, text: str) -> int:
    if not value.isdigit() or not 1 <= int(value) <= 65535:
        raise ValueError(f"{text!r}: port {value!r} is not a number from 1 to 65535")
    return int(value)


def _unwrap_network(network: IPNetwork) -> IPNetwork:
    """An IPv4-mapped IPv6 address written as an entry is the IPv4 address it stands for."""
    if isinstance(network, ipaddress.IPv6Network) and network.prefixlen == 128:
        mapped = network.network_address.ipv4_mapped
        if mapped is not None:
            return ipaddress.IPv4Network(mapped)
    return network


def unwrap(ip: IPAddress) -> IPAddress:
    """The IPv4 address an IPv4-mapped (``::ffff:a.b.c.d``) or NAT64 (``64:ff9b::/96``) address reaches."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return ip.ipv4_mapped
        if ip in NAT64:
            return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip


def address_kind(ip: IPAddress) -> str | None:
    """Why ``ip`` must not be crawled ("a loopback address" ...), or None for a public address."""
    ip = unwrap(ip)
    if ip.is_unspecified:
        return "an unspecified address"
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_link_local:
        if ip == METADATA:
            return "a link-local address: the cloud metadata service, which hands out the machine's credentials"
        return "a link-local address"
    if ip.is_multicast:
        return "a multicast address"
    if ip.is_reserved:
        return "a reserved address"
    if ip.is_private:
        return "a private address"
    if not ip.is_global:   # e.g. 100.64.0.0/10, shared address space (carrier NAT, some clouds' metadata)
        return "a non-public address"
    return None


class AddressPolicy:
    """Refuses non-public addresses unless an ``allow_private`` entry allows them."""

    def __init__(self, allow: Iterable[AllowEntry] = ()):
        self.allow = tuple(allow)

    @classmethod
    def from_entries(cls, entries: Iterable[str]) -> "AddressPolicy":
        """The policy of ``defaults.allow_private`` strings (validated by monitor.config)."""
        return cls(parse_allow_entry(e) for e in entries)

    def refusal(self, ip: IPAddress | str, port: int, spelled: str | None = None) -> str | None:
        """The reason a connection to ``ip``:``port`` is refused, or None when it may be made.

        ``spelled`` is how the URL named the host (a DNS name, ``2130706433``), for the message.
        """
        ip = ipaddress.ip_address(ip) if isinstance(ip, str) else ip
        kind = address_kind(ip)
        if kind is None:
            return None
        target = unwrap(ip)
        if any(entry.matches(target, port) for entry in self.allow):
            return None
        if spelled and not _same_address(spelled, ip):   # "localhost resolves to 127.0.0.1, a loopback address"
            subject, joiner = f"{spelled} {'is' if ip_literal(spelled) else 'resolves to'} {ip}", ", "
        else:                                             # "127.0.0.1 is a loopback address"
            subject, joiner = spelled or str(ip), " is "
        if target != ip:
            subject += f" (IPv4 {target})"
        if target == METADATA:   # instance credentials: no hint to allow it
            return f"{subject}{joiner}{kind}"
        example = f"[{target}]:{port}" if target.version == 6 else f"{target}:{port}"
        return f"{subject}{joiner}{kind}; allow it in defaults.allow_private (e.g. \"{example}\")"

    def check_url(self, url: str, resolve: bool = True) -> None:
        """Pre-flight check of ``url``'s host (every address it resolves to).

        With ``resolve=False`` only IP literals (in any spelling: ``2130706433``, ``0x7f.0.0.1``,
        ``127.1``, ``[::ffff:127.0.0.1]``) are checked, without a DNS query. A name that does not
        resolve passes: the connection will fail on its own, as it always did.

        Raises:
            RefusedAddress: the host is, or resolves to, an address the policy refuses.
        """
        try:
            parsed = httpx.URL(url)
        except httpx.InvalidURL:
            return  # the request itself reports the invalid URL
        host, port = parsed.host, parsed.port or (443 if parsed.scheme == "https" else 80)
        if not host:
            return
        try:
            addresses = resolve_host(host, port, numeric_only=not resolve)
        except OSError:
            return
        for ip in addresses:
            reason = self.refusal(ip, port, host)
            if reason:
                raise RefusedAddress(reason, url)


def resolve_host(host: str, port: int, numeric_only: bool = False) -> list[IPAddress]:
    """Every address ``host`` resolves to (as the system resolver answers), in its order, no repeats.

    An IP literal in any spelling the resolver accepts (``2130706433``, ``0x7f.0.0.1``, ``127.1``)
    is read without a query; ``numeric_only`` returns [] for a name instead of resolving it.

    Raises:
        OSError (socket.gaierror): the name does not resolve.
    """
    literal = ip_literal(host)
    if literal is not None:
        return [literal]
    if numeric_only:
        return []
    out: list[IPAddress] = []
    for _family, _type, _proto, _name, sockaddr in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM):
        ip = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if ip not in out:
            out.append(ip)
    return out


def ip_literal(host: str) -> IPAddress | None:
    """The address ``host`` spells, if it is an IP literal: dotted quad, IPv6, or the old IPv4 forms
    (decimal ``2130706433``, hex/octal parts ``0x7f.0.0.1``, short ``127.1``) that inet_aton and so
    the system resolver accept. None for a name."""
    text = host.strip("[]")
    try:
        return ipaddress.ip_address(text.split("%", 1)[0] if ":" in text else text)
    except ValueError:
        pass
    if not text or not all(c in "0123456789abcdefxABCDEFX." for c in text) or not text[0].isdigit():
        return None   # only digits, hex and dots: inet_aton would take "1.2.3.4 junk", a URL host cannot be that
    try:
        return ipaddress.IPv4Address(socket.inet_aton(text))
    except OSError:
        return None


def _same_address(spelled: str, ip: IPAddress) -> bool:
    try:
        return ipaddress.ip_address(spelled.strip("[]")) == ip
    except ValueError:
        return False


# --------------------------------------------------------------------------------------- deadline

_local = threading.local()


@contextmanager
def request_deadline(seconds: float | None) -> Iterator[float | None]:
    """Bound every socket operation of this thread to end within ``seconds`` (None: no bound).

    Yields the deadline on the ``time.monotonic()`` clock. Nested use keeps the earlier deadline.
    """
    previous = getattr(_local, "deadline", None)
    at = None if seconds is None else time.monotonic() + seconds
    if previous is not None and (at is None or previous < at):
        at = previous
    _local.deadline = at
    try:
        yield at
    finally:
        _local.deadline = previous


def deadline_passed() -> bool:
    """Whether this thread has a request deadline and it has passed."""
    at = getattr(_local, "deadline", None)
    return at is not None and time.monotonic() >= at


def _bounded(timeout: float | None, error: type[Exception]) -> float | None:
    """``timeout`` capped at the time left before this thread's deadline; ``error`` once it has passed."""
    at = getattr(_local, "deadline", None)
    if at is None:
        return timeout
    left = at - time.monotonic()
    if left <= 0:
        raise error("the request's total deadline (max_request_s) has passed")
    return left if timeout is None else min(timeout, left)


class DeadlineStream(httpcore.NetworkStream):
    """A network stream whose every read, write and TLS handshake ends by the thread's deadline."""

    def __init__(self, inner: httpcore.NetworkStream):
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _bounded(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _bounded(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(self, ssl_context: typing.Any, server_hostname: str | None = None,
                  timeout: float | None = None) -> httpcore.NetworkStream:
        inner = self._inner.start_tls(ssl_context, server_hostname, _bounded(timeout, httpcore.ConnectTimeout))
        return DeadlineStream(inner)

    def get_extra_info(self, info: str) -> typing.Any:
        return self._inner.get_extra_info(info)


# --------------------------------------------------------------------------------------- transport

class GuardedBackend(httpcore.SyncBackend):
    """Resolves the host once, refuses it if ANY address is refused, connects to the checked address."""

    def __init__(self, policy: AddressPolicy):
        self.policy = policy

    def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                    socket_options: typing.Iterable[typing.Any] | None = None) -> httpcore.NetworkStream:
        timeout = _bounded(timeout, httpcore.ConnectTimeout)
        try:
            addresses = resolve_host(host, port)
        except OSError as e:
            raise httpcore.ConnectError(f"cannot resolve {host}: {e}") from None
        for ip in addresses:
            reason = self.policy.refusal(ip, port, host)
            if reason:
                raise RefusedAddress(reason)
        last: Exception | None = None
        for ip in addresses:   # the checked addresses themselves: no second DNS answer can swap them
            try:
                stream = super().connect_tcp(str(ip), port, _bounded(timeout, httpcore.ConnectTimeout),
                                             local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as e:
                last = e
                continue
            return DeadlineStream(stream)
        assert last is not None
        raise last


class GuardedTransport(httpx.HTTPTransport):
    """httpx's own HTTP transport (its request and error mapping) over a pool built on :class:`GuardedBackend`."""

    def __init__(self, policy: AddressPolicy, limits: httpx.Limits = httpx.Limits(max_connections=100,
                                                                                  max_keepalive_connections=20),
                 ssl_context: typing.Any = None):
        ssl_context = ssl_context or httpx.create_ssl_context(trust_env=False)   # certifi's CAs, httpx's default
        super().__init__(verify=ssl_context, trust_env=False, limits=limits)
        self.backend = GuardedBackend(policy)
        # httpx's HTTPTransport takes no network backend: its pool is replaced by the same pool on ours
        self._pool = httpcore.ConnectionPool(
            ssl_context=ssl_context, max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections, keepalive_expiry=limits.keepalive_expiry,
            http1=True, http2=False, network_backend=self.backend,
        )
