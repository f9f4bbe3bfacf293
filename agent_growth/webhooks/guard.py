"""Keeping webhooks away from addresses inside our own network.

A webhook URL is chosen by whoever submits a task, and our workers then make a request to it from
inside the cluster. Left unchecked, that is a way to reach the cloud metadata service, the
database or anything else listening on a private address. So only http(s) URLs whose host is a
public address are accepted, in two places:

- `check_webhook_url`, when a task is submitted: the form of the URL (`parse_webhook_url`: the
  scheme; a host that is a DNS name or an IP address; a port from 1 to 65535; no credentials and
  no fragment), and hosts that are literal addresses or names that are local by definition
  (`localhost`). It does no DNS, so an API request never waits on a resolver.
- `resolve_and_check`, before each delivery attempt: the host name is resolved and refused if
  any of its addresses is blocked; the delivery then connects to the address that was checked,
  so a name cannot resolve to a public address for the check and a private one for the request.

`AGENT_GROWTH_WEBHOOK_ALLOW_PRIVATE=true` turns the address checks off for local demos and tests;
the settings refuse it in production.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket

import httpx
import idna

from agent_growth import errors
from agent_growth.settings import get_settings
from agent_growth.webhooks import signing

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

MAX_URL_CHARS = 2048
"""Longer URLs are refused; some receivers and proxies stop at this length."""

CLOUD_METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(address)
    for address in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, Oracle instance metadata
        "169.254.170.2",  # AWS ECS task metadata and credentials
        "fd00:ec2::254",  # AWS instance metadata over IPv6
        "100.100.100.200",  # Alibaba Cloud instance metadata
        "192.0.0.192",  # Oracle Cloud legacy metadata
        "168.63.129.16",  # Azure WireServer: a public-looking address that only the host serves
    )
)

LOCAL_HOST_NAMES = frozenset(
    {"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback", "metadata"}
    | {"metadata.google.internal"}
)
"""Names that resolve to this machine or to the metadata service wherever they are looked up."""

# RFC 6052: NAT64 writes an IPv4 address into the last 32 bits of this prefix.
NAT64_PREFIX = ipaddress.ip_network("64:ff9b::/96")
UNIQUE_LOCAL = ipaddress.ip_network("fc00::/7")
SHARED_ADDRESS_SPACE = ipaddress.ip_network("100.64.0.0/10")

ALLOWED = "only http:// or https:// URLs whose host is a public address or name are accepted"

MAX_PORT = 65535
"""TCP ports are 16 bits, and port 0 cannot be connected to."""

# RFC 1035 and RFC 1123: a name is at most 253 characters without its final dot, in labels of 1
# to 63 letters, digits and hyphens that neither start nor end with a hyphen. A name that is not
# ASCII is checked in its IDNA (xn--) form, which is what gets resolved.
MAX_HOST_NAME_CHARS = 253
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?", re.IGNORECASE)


class BlockedWebhookTarget(errors.AgentGrowthError):
    """The webhook host is, or resolves to, an address that webhooks may not reach."""


class UnresolvableWebhookHost(errors.AgentGrowthError):
    """The webhook host name has no address right now; DNS may recover, so this is retried."""


def blocked_reason(address: IPAddress) -> str | None:
    """The kind of range that makes `address` unreachable for webhooks, or None when public."""
    embedded = _embedded_ipv4(address)
    if embedded is not None:
        return blocked_reason(embedded)

    if address in CLOUD_METADATA_ADDRESSES:
        return "cloud-metadata"
    if address.is_loopback:
        return "loopback"
    if address.is_unspecified:
        return "unspecified"
    if address.is_link_local:
        return "link-local"
    if address.is_multicast:
        return "multicast"
    if isinstance(address, ipaddress.IPv6Address) and address in UNIQUE_LOCAL:
        return "unique-local"
    if isinstance(address, ipaddress.IPv6Address) and address.is_site_local:
        return "site-local"
    if isinstance(address, ipaddress.IPv4Address) and address in SHARED_ADDRESS_SPACE:
        return "shared (carrier-grade NAT)"
    if address.is_reserved:
        return "reserved"
    if address.is_private:
        return "private"
    if not address.is_global:
        return "non-public"
    return None


def _embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address that an IPv6 address stands for (mapped, NAT64 or 6to4), if any."""
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in NAT64_PREFIX:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address.sixtofour


def _literal_address(host: str) -> IPAddress | None:
    """`host` as an address when it is one, including the legacy IPv4 forms resolvers accept."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass

    # inet_aton reads `2130706433`, `0x7f.1` and `127.1` as 127.0.0.1, and so does every
    # resolver that would later look these up, so they are addresses, not names.
    if host and all(char in "0123456789abcdefx." for char in host.lower()):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def is_address(host: str) -> bool:
    """True when `host` is an IP address rather than a name."""
    return _literal_address(host) is not None


def _with_article(reason: str) -> str:
    return f"an {reason}" if reason == "unspecified" else f"a {reason}"


def _host_name_problem(name: str) -> str | None:
    """What makes `name` (ASCII, IDNA-encoded) no DNS host name, or None when it is one."""
    labels = name.removesuffix(".").split(".")
    if len(name.removesuffix(".")) > MAX_HOST_NAME_CHARS:
        return f"a host name has at most {MAX_HOST_NAME_CHARS} characters"
    if not all(_LABEL.fullmatch(label) for label in labels):
        return (
            "each dot-separated part of a host name must be 1 to 63 letters, digits or hyphens, "
            "not starting or ending with a hyphen"
        )
    if labels[-1].isdigit():
        # RFC 3696: a top-level domain is never all digits, so this is a malformed address.
        return "it is not a valid IP address, and a host name cannot end in a number"
    return None


def parse_webhook_url(url: str) -> httpx.URL:
    """`url` parsed, when its form lets it be used at all; raises InvalidInput if not.

    The scheme must be http or https; the host a DNS name or an IP address; the port, when
    given, 1 to 65535. Credentials (`user:password@`) are refused because the URL is shown in
    every task response; a fragment because HTTP never sends it to the receiver.
    """
    if len(url) > MAX_URL_CHARS:
        raise errors.InvalidInput("webhook_url", f"must be at most {MAX_URL_CHARS} characters")
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise errors.InvalidInput("webhook_url", f"is not a valid URL ({exc}); {ALLOWED}") from exc

    if parsed.scheme not in ("http", "https"):
        scheme = parsed.scheme or "none"
        raise errors.InvalidInput("webhook_url", f"has scheme {scheme!r}; {ALLOWED}")
    try:
        # Reading the host decodes punycode labels, which IDNA rules may refuse (`xn--a.com`).
        _ = parsed.host
    except (idna.IDNAError, UnicodeError) as exc:
        raise errors.InvalidInput(
            "webhook_url",
            f"host {parsed.raw_host.decode('ascii', 'replace')!r} is not a valid"
            f" internationalised domain name ({exc}); {ALLOWED}",
        ) from exc
    if not parsed.host:
        raise errors.InvalidInput(
            "webhook_url", f"names no host; {ALLOWED}, e.g. https://hooks.example.com/agent-growth"
        )

    host = parsed.raw_host.decode("ascii")
    if _literal_address(host) is None:
        problem = _host_name_problem(host)
        if problem is not None:
            raise errors.InvalidInput(
                "webhook_url", f"host {parsed.host!r} is not a valid host name: {problem}"
            )
    if parsed.port is not None and not 1 <= parsed.port <= MAX_PORT:
        raise errors.InvalidInput(
            "webhook_url", f"port {parsed.port} is out of range; a port must be 1 to {MAX_PORT}"
        )
    if parsed.userinfo:
        raise errors.InvalidInput(
            "webhook_url",
            "must not carry credentials (user:password@), since task responses show the URL; "
            f"verify the {signing.SIGNATURE_HEADER} header in the receiver instead",
        )
    if parsed.fragment:
        raise errors.InvalidInput(
            "webhook_url", "must not have a fragment (#...), which is never sent to the receiver"
        )
    return parsed


def check_webhook_url(url: str) -> None:
    """Refuse, with InvalidInput, a webhook URL that can be seen to be unusable without DNS."""
    parsed = parse_webhook_url(url)
    if get_settings().webhook_allow_private:
        return

    host = parsed.host.rstrip(".").lower()
    if host in LOCAL_HOST_NAMES or host.endswith(".localhost"):
        raise errors.InvalidInput("webhook_url", f"host {parsed.host} is local; {ALLOWED}")

    address = _literal_address(host)
    reason = blocked_reason(address) if address is not None else None
    if reason is not None:
        raise errors.InvalidInput(
            "webhook_url", f"{address} is {_with_article(reason)} address; {ALLOWED}"
        )


def check_resolved(host: str, addresses: list[IPAddress]) -> None:
    """Raise BlockedWebhookTarget when any address `host` resolved to is blocked."""
    for address in addresses:
        reason = blocked_reason(address)
        if reason is None:
            continue
        if _literal_address(host) is not None:
            raise BlockedWebhookTarget(f"blocked: {address} is {_with_article(reason)} address")
        raise BlockedWebhookTarget(
            f"blocked: {host} resolves to {address}, {_with_article(reason)} address"
        )


async def resolve_and_check(host: str, *, port: int) -> list[IPAddress]:
    """The addresses to connect to for `host`, in the resolver's order of preference.

    Raises BlockedWebhookTarget when any of them is blocked (unless private targets are
    allowed), and UnresolvableWebhookHost when the name has no address.
    """
    literal = _literal_address(host)
    if literal is not None:
        addresses = [literal]
    else:
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise UnresolvableWebhookHost(f"cannot resolve {host}: {exc.strerror}") from exc
        addresses = list(dict.fromkeys(ipaddress.ip_address(info[4][0]) for info in infos))
        if not addresses:
            raise UnresolvableWebhookHost(f"cannot resolve {host}: no addresses")

    if not get_settings().webhook_allow_private:
        check_resolved(host, addresses)
    return addresses
