import pytest

from service_platform.notify_tokens import InvalidNotifyToken, issue_notify_token, verify_notify_token

SECRET = b"s3cret"


def test_a_fresh_token_verifies_for_its_own_order():
    token = issue_notify_token(SECRET, "order-a", ttl_seconds=60, now=1000)
    verify_notify_token(SECRET, token, "order-a", now=1059)


@pytest.mark.parametrize(
    ("token_for", "verify_with_secret", "verify_for", "now", "reason"),
    [
        ("order-a", SECRET, "order-b", 1000, "does not match"),
        ("order-a", b"other", "order-a", 1000, "does not match"),
        ("order-a", SECRET, "order-a", 1060, "expired"),
    ],
)
def test_cross_order_forged_and_expired_tokens_are_refused(token_for, verify_with_secret, verify_for, now, reason):
    token = issue_notify_token(SECRET, token_for, ttl_seconds=60, now=1000)
    with pytest.raises(InvalidNotifyToken, match=reason):
        verify_notify_token(verify_with_secret, token, verify_for, now=now)


@pytest.mark.parametrize("token", [None, "", "abc", "12.", ".sig", "x1.sig"])
def test_malformed_tokens_are_refused(token):
    with pytest.raises(InvalidNotifyToken):
        verify_notify_token(SECRET, token, "order-a", now=0)


def test_a_token_with_a_pushed_back_expiry_is_refused():
    expires, _, signature = issue_notify_token(SECRET, "order-a", ttl_seconds=60, now=1000).partition(".")
    with pytest.raises(InvalidNotifyToken, match="does not match"):
        verify_notify_token(SECRET, f"{int(expires) + 3600}.{signature}", "order-a", now=2000)
