import pytest

from service_platform.notify_tokens import InvalidNotifyToken, NotifyTokenSigner, NotifyTokenVerifier

SECRET = b"s3cret"
SIGNER = NotifyTokenSigner("k1", SECRET)
VERIFIER = NotifyTokenVerifier({"k1": SECRET})


def test_a_fresh_token_verifies_for_its_own_order():
    token = SIGNER.issue("order-a", ttl_seconds=60, now=1000)
    assert token.startswith("k1.")
    VERIFIER.verify(token, "order-a", now=1059)


@pytest.mark.parametrize(
    ("token_for", "verify_with_secret", "verify_for", "now", "reason"),
    [
        ("order-a", SECRET, "order-b", 1000, "does not match"),
        ("order-a", b"other", "order-a", 1000, "does not match"),
        ("order-a", SECRET, "order-a", 1060, "expired"),
    ],
)
def test_cross_order_forged_and_expired_tokens_are_refused(token_for, verify_with_secret, verify_for, now, reason):
    token = SIGNER.issue(token_for, ttl_seconds=60, now=1000)
    with pytest.raises(InvalidNotifyToken, match=reason) as refused:
        NotifyTokenVerifier({"k1": verify_with_secret}).verify(token, verify_for, now=now)
    assert not refused.value.malformed


@pytest.mark.parametrize("token", [
    None, "", "abc", "12.", ".sig", "x1.sig", "k1.12.", 12345, b"k1.1.x",
    "%C2%B2.abc", "k1.\u00b2.abc", "k1.99." + "\u00e9" * 43, "k1.99." + "A" * 42, "k1.99." + "A" * 44,
    "k1." + "9" * 13 + "." + "A" * 43, "k\u0131.99." + "A" * 43, "k1.99." + "A" * 43 + "\n", "x" * 10_000,
])
def test_anything_that_does_not_parse_is_a_malformed_token_and_nothing_else(token):
    """Crafted tokens (non-ASCII digits or signature, wrong lengths, other types) never raise anything but
    ``InvalidNotifyToken``: the handshake answers 401 and a subscribe frame an error frame."""
    with pytest.raises(InvalidNotifyToken) as refused:
        VERIFIER.verify(token, "order-a", now=0)
    assert refused.value.malformed


def test_a_token_with_a_pushed_back_expiry_is_refused():
    key_id, expires, signature = SIGNER.issue("order-a", ttl_seconds=60, now=1000).split(".")
    with pytest.raises(InvalidNotifyToken, match="does not match"):
        VERIFIER.verify(f"{key_id}.{int(expires) + 3600}.{signature}", "order-a", now=2000)


def test_during_a_rotation_tokens_of_the_current_and_the_previous_key_verify():
    old, new = NotifyTokenSigner("k1", b"old-secret"), NotifyTokenSigner("k2", b"new-secret")
    rotating = NotifyTokenVerifier({"k2": b"new-secret", "k1": b"old-secret"})
    rotating.verify(old.issue("order-a", 60, now=0), "order-a", now=1)
    rotating.verify(new.issue("order-a", 60, now=0), "order-a", now=1)
    with pytest.raises(InvalidNotifyToken, match="no longer accepted"):
        NotifyTokenVerifier({"k2": b"new-secret"}).verify(old.issue("order-a", 60, now=0), "order-a", now=1)
    forged = "k2." + old.issue("order-a", 60, now=0).split(".", 1)[1]  # the old key's signature under the new id
    with pytest.raises(InvalidNotifyToken, match="does not match"):
        rotating.verify(forged, "order-a", now=1)
