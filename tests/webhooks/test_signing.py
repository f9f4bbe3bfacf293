"""Signing webhook bodies and verifying them the way a receiver does."""

from __future__ import annotations

from agent_growth.webhooks import signing

BODY = b'{"a":1}'


def test_signature_matches_an_hmac_computed_independently() -> None:
    # From `printf '1700000000.{"a":1}' | openssl dgst -sha256 -hmac whsec_test`, so a receiver
    # written in another language with a standard HMAC library computes the same digest.
    expected = "38877139021993b830af32feea6e18a8da83eb2f6e49ee50bd9e4cf4ca4d3789"

    assert signing.sign("whsec_test", BODY, timestamp_s=1700000000) == (
        f"t=1700000000,v1={expected}"
    )


def test_a_fresh_signature_verifies() -> None:
    header = signing.sign("whsec_test", BODY)

    assert signing.verify_signature("whsec_test", header=header, body=BODY)
    assert signing.verify_signature("whsec_test", header=header, body=BODY.decode())


def test_a_changed_body_or_another_secret_does_not_verify() -> None:
    header = signing.sign("whsec_test", BODY)

    assert not signing.verify_signature("whsec_test", header=header, body=b'{"a":2}')
    assert not signing.verify_signature("whsec_other", header=header, body=BODY)


def test_an_old_signature_is_refused_as_a_replay() -> None:
    header = signing.sign("whsec_test", BODY, timestamp_s=1700000000)

    assert signing.verify_signature("whsec_test", header=header, body=BODY, now_s=1700000000 + 299)
    assert not signing.verify_signature(
        "whsec_test", header=header, body=BODY, now_s=1700000000 + 301
    )
    assert not signing.verify_signature(
        "whsec_test", header=header, body=BODY, tolerance_s=10, now_s=1700000000 + 11
    )


def test_the_timestamp_is_part_of_what_is_signed() -> None:
    digest = signing.sign("whsec_test", BODY, timestamp_s=1700000000).split("v1=")[1]
    moved = f"t=1700000100,v1={digest}"

    assert not signing.verify_signature("whsec_test", header=moved, body=BODY, now_s=1700000100)


def test_either_of_two_signatures_verifies_during_secret_rotation() -> None:
    old = signing.sign("whsec_old", BODY, timestamp_s=1700000000)
    new = signing.sign("whsec_new", BODY, timestamp_s=1700000000)
    header = f"{new},v1={old.split('v1=')[1]}"

    assert signing.verify_signature("whsec_old", header=header, body=BODY, now_s=1700000000)
    assert signing.verify_signature("whsec_new", header=header, body=BODY, now_s=1700000000)


def test_missing_or_malformed_headers_do_not_verify() -> None:
    digest = signing.sign("whsec_test", BODY, timestamp_s=1700000000).split("v1=")[1]

    for header in (None, "", "garbage", f"v1={digest}", "t=1700000000", "t=soon,v1=abc"):
        assert not signing.verify_signature(
            "whsec_test", header=header, body=BODY, now_s=1700000000
        )
