"""Which webhook URLs and addresses the guard lets through, with and without private targets."""

from __future__ import annotations

import ipaddress

import pytest

from agent_growth import errors
from agent_growth.settings import get_settings
from agent_growth.webhooks import guard


@pytest.fixture
def public_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """The production rule: the test suite allows private targets, this fixture turns it off."""
    monkeypatch.setenv("AGENT_GROWTH_WEBHOOK_ALLOW_PRIVATE", "false")
    get_settings.cache_clear()


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://127.0.0.1:8080/hook", "127.0.0.1 is a loopback address"),
        ("http://127.8.9.10/hook", "127.8.9.10 is a loopback address"),
        ("https://10.0.0.5/hook", "10.0.0.5 is a private address"),
        ("https://172.16.4.2/hook", "172.16.4.2 is a private address"),
        ("https://192.168.1.20/hook", "192.168.1.20 is a private address"),
        ("http://169.254.169.254/latest/meta-data", "169.254.169.254 is a cloud-metadata address"),
        ("http://169.254.10.1/", "169.254.10.1 is a link-local address"),
        ("http://100.100.100.200/", "100.100.100.200 is a cloud-metadata address"),
        ("http://100.64.1.1/", "100.64.1.1 is a shared (carrier-grade NAT) address"),
        ("http://0.0.0.0:8000/", "0.0.0.0 is an unspecified address"),
        ("http://224.0.0.1/", "224.0.0.1 is a multicast address"),
        ("http://240.0.0.1/", "240.0.0.1 is a reserved address"),
        ("http://[::1]:8080/hook", "::1 is a loopback address"),
        ("http://[fe80::1]/hook", "fe80::1 is a link-local address"),
        ("http://[fd12:3456::1]/hook", "fd12:3456::1 is a unique-local address"),
        ("http://[fd00:ec2::254]/", "fd00:ec2::254 is a cloud-metadata address"),
        ("http://[::]/", ":: is an unspecified address"),
        ("http://[ff02::1]/", "ff02::1 is a multicast address"),
        (
            "http://[::ffff:127.0.0.1]/",
            f"{ipaddress.ip_address('::ffff:127.0.0.1')} is a loopback address",
        ),
        ("http://[64:ff9b::a9fe:a9fe]/", "64:ff9b::a9fe:a9fe is a cloud-metadata address"),
        ("http://2130706433/", "127.0.0.1 is a loopback address"),
        ("http://0x7f.1/", "127.0.0.1 is a loopback address"),
    ],
)
def test_literal_blocked_addresses_are_refused(public_only: None, url: str, reason: str) -> None:
    with pytest.raises(errors.InvalidInput) as refused:
        guard.check_webhook_url(url)

    assert refused.value.field == "webhook_url"
    assert refused.value.message.startswith(reason)
    assert "public address" in refused.value.message


@pytest.mark.parametrize(
    "url",
    [
        "http://localhost:8080/hook",
        "http://LOCALHOST./",
        "https://api.localhost/",
        "http://metadata/",
    ],
)
def test_local_names_are_refused(public_only: None, url: str) -> None:
    with pytest.raises(errors.InvalidInput, match="is local"):
        guard.check_webhook_url(url)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://hooks.example.com/x", "has scheme 'ftp'"),
        ("file:///etc/passwd", "has scheme 'file'"),
        ("javascript:alert(1)", "has scheme 'javascript'"),
        ("hooks.example.com/x", "has scheme 'none'"),
        ("https:///x", "names no host"),
        ("https://hooks.example.com/" + "x" * 2048, "at most 2048 characters"),
        ("http://xn--a.com/", "is not a valid internationalised domain name"),
        ("http://xn---.com/", "is not a valid internationalised domain name"),
    ],
)
def test_only_http_urls_with_a_host_are_accepted(url: str, message: str) -> None:
    with pytest.raises(errors.InvalidInput) as refused:
        guard.check_webhook_url(url)

    assert refused.value.field == "webhook_url"
    assert message in refused.value.message


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.example.com/agent-growth",
        "http://hooks.example.com:8080/x?token=abc",
        "https://93.184.216.34/hook",
        "https://[2606:4700:4700::1111]/hook",
        "https://example.internal/hook",  # a name: judged by what it resolves to at delivery
    ],
)
def test_public_addresses_and_names_are_accepted(public_only: None, url: str) -> None:
    guard.check_webhook_url(url)


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8080/hook", "http://localhost/hook", "http://[fd00:ec2::254]/"]
)
def test_allowing_private_targets_accepts_local_urls(
    monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    monkeypatch.setenv("AGENT_GROWTH_WEBHOOK_ALLOW_PRIVATE", "true")
    get_settings.cache_clear()

    guard.check_webhook_url(url)
    with pytest.raises(errors.InvalidInput, match="has scheme 'ftp'"):
        guard.check_webhook_url("ftp://127.0.0.1/")


def test_a_name_is_refused_when_any_of_its_addresses_is_blocked() -> None:
    addresses = [ipaddress.ip_address("93.184.216.34"), ipaddress.ip_address("10.0.0.5")]

    with pytest.raises(guard.BlockedWebhookTarget) as blocked:
        guard.check_resolved("example.internal", addresses)

    assert str(blocked.value) == "blocked: example.internal resolves to 10.0.0.5, a private address"


def test_a_name_with_only_public_addresses_passes() -> None:
    guard.check_resolved(
        "hooks.example.com",
        [ipaddress.ip_address("93.184.216.34"), ipaddress.ip_address("2606:2800:220:1::1")],
    )


async def test_resolving_localhost_is_blocked_unless_private_targets_are_allowed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AGENT_GROWTH_WEBHOOK_ALLOW_PRIVATE", "false")
    get_settings.cache_clear()
    with pytest.raises(guard.BlockedWebhookTarget, match="^blocked: localhost resolves to "):
        await guard.resolve_and_check("localhost", port=80)

    monkeypatch.setenv("AGENT_GROWTH_WEBHOOK_ALLOW_PRIVATE", "true")
    get_settings.cache_clear()
    addresses = await guard.resolve_and_check("localhost", port=80)
    assert addresses and all(address.is_loopback for address in addresses)


async def test_a_literal_address_is_checked_without_dns(public_only: None) -> None:
    with pytest.raises(guard.BlockedWebhookTarget, match=r"^blocked: 10\.1\.2\.3 is a private"):
        await guard.resolve_and_check("10.1.2.3", port=443)

    assert await guard.resolve_and_check("93.184.216.34", port=443) == [
        ipaddress.ip_address("93.184.216.34")
    ]


async def test_a_name_that_does_not_resolve_is_reported_as_such() -> None:
    # RFC 6761 reserves `.invalid`: no resolver ever answers for it.
    with pytest.raises(guard.UnresolvableWebhookHost, match="cannot resolve hooks.invalid"):
        await guard.resolve_and_check("hooks.invalid", port=443)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("https://exa mple.com/", "host 'exa%20mple.com' is not a valid host name"),
        ("https://hooks_1.example.com/", "host 'hooks_1.example.com' is not a valid host name"),
        ("https://hooks..example.com/", "letters, digits or hyphens"),
        ("https://.example.com/", "letters, digits or hyphens"),
        ("https://-hooks.example.com/", "not starting or ending with a hyphen"),
        ("https://" + "a" * 64 + ".example.com/", "1 to 63 letters"),
        ("https://" + "a." * 127 + "com/", "at most 253 characters"),
        ("https://1.2.3.4.5/", "is not a valid IP address"),
        ("https://1.2.3.999/", "Invalid IPv4 address"),
        ("https://hooks.example.com:99999/", "port 99999 is out of range"),
        ("https://hooks.example.com:65536/", "port 65536 is out of range"),
        ("https://hooks.example.com:0/", "port 0 is out of range"),
        ("https://hooks.example.com:-1/", "port -1 is out of range"),
        ("https://user:secret@hooks.example.com/", "must not carry credentials"),
        ("https://token@hooks.example.com/", "must not carry credentials"),
        ("https://hooks.example.com/x#section", "must not have a fragment"),
    ],
)
def test_malformed_hosts_ports_credentials_and_fragments_are_refused(
    url: str, message: str
) -> None:
    # The suite allows private targets, so these are refused for their form alone.
    with pytest.raises(errors.InvalidInput) as refused:
        guard.check_webhook_url(url)

    assert refused.value.field == "webhook_url"
    assert message in refused.value.message


@pytest.mark.parametrize(
    "url",
    [
        "https://bücher.example/hook",  # checked in its IDNA form, xn--bcher-kva.example
        "https://xn--bcher-kva.example/hook",
        "https://hooks.example.com./hook",
        "https://hooks.example.com:1/hook",
        "https://hooks.example.com:65535/hook",
        "https://a-b.c-d.example/hook",
        "https://" + "a" * 63 + ".example/hook",
    ],
)
def test_well_formed_names_and_ports_are_accepted(public_only: None, url: str) -> None:
    guard.check_webhook_url(url)
