import pytest

from dispatch.errors import SignatureError
from dispatch.notify import webhooks

NOW = 1_795_000_000


def test_standard_webhooks_reference_vector() -> None:
    # The reference example of the Standard Webhooks specification.
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = b'{"test": 2432232314}'
    assert webhooks.sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body) == (
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    )


def test_verify_accepts_own_signature_and_rejects_tampering() -> None:
    secret = webhooks.new_secret()
    hdrs = webhooks.headers([secret], "msg_1", NOW, b'{"a":1}')
    assert webhooks.verify([secret], hdrs, b'{"a":1}', now=NOW + 10) == "msg_1"
    with pytest.raises(SignatureError, match="no signature"):
        webhooks.verify([secret], hdrs, b'{"a":2}', now=NOW)
    with pytest.raises(SignatureError, match="tolerance"):
        webhooks.verify([secret], hdrs, b'{"a":1}', now=NOW + 301)
    with pytest.raises(SignatureError, match="missing"):
        webhooks.verify([secret], {}, b"", now=NOW)


def test_rotation_signs_with_every_secret_so_old_and_new_receivers_verify() -> None:
    old, new = webhooks.new_secret(), webhooks.new_secret()
    hdrs = webhooks.headers([new, old], "msg_2", NOW, b"{}")
    assert len(hdrs["webhook-signature"].split()) == 2
    assert webhooks.verify([old], hdrs, b"{}", now=NOW) == "msg_2"
    assert webhooks.verify([new], hdrs, b"{}", now=NOW) == "msg_2"
    with pytest.raises(SignatureError):
        webhooks.verify([webhooks.new_secret()], hdrs, b"{}", now=NOW)
