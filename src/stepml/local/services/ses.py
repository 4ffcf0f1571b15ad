"""SES patches: the v2 account status (GetAccount, the sandbox) and identities verified for sending."""

from __future__ import annotations

import functools
import json
from typing import Any

from stepml.local.patching import Patch, register

_TESTS = "tests/unit/test_service_patches.py::"


def _refuse_unverified_recipients(backend: Any, recipients: list[str]) -> None:
    """The SES sandbox: without production access only verified recipients may be sent to."""
    from moto.ses.exceptions import MessageRejectedError

    from stepml.local.account_defaults import ses_account

    if ses_account(backend).production_access_enabled:
        return
    unverified = [r for r in recipients if not backend.core_backend._is_verified_address(r)]
    if unverified:
        raise MessageRejectedError(
            "Email address is not verified. The following identities failed the check in region "
            f"{backend.region_name.upper()}: {', '.join(unverified)}"
        )


def _install_account_and_sandbox(patch: Patch) -> None:
    from moto.sesv2 import urls as sesv2_urls
    from moto.sesv2.models import SESV2Backend
    from moto.sesv2.responses import SESV2Response

    from stepml.local.account_defaults import ses_account

    def get_account(self):  # type: ignore[no-untyped-def]
        return json.dumps(ses_account(self.sesv2_backend).response())

    original_send_email = SESV2Backend.send_email
    original_send_raw_email = SESV2Backend.send_raw_email

    @functools.wraps(original_send_email)
    def send_email(self, source, destinations, subject, body):  # type: ignore[no-untyped-def]
        recipients = [a for key in ("ToAddresses", "CcAddresses", "BccAddresses") for a in destinations.get(key, [])]
        _refuse_unverified_recipients(self, recipients)
        return original_send_email(self, source, destinations, subject, body)

    @functools.wraps(original_send_raw_email)
    def send_raw_email(self, source, destinations, raw_data):  # type: ignore[no-untyped-def]
        _refuse_unverified_recipients(self, list(destinations))
        return original_send_raw_email(self, source, destinations, raw_data)

    patch.replace(SESV2Response, "get_account", get_account)
    # moto's catch-all "/v2/.*" is not a pattern in server mode (Flask takes it literally), so
    # GetAccount (GET /v2/email/account) needs its own route. A new table, so the undo restores moto's.
    routes = dict(sesv2_urls.url_paths)
    routes.setdefault("{0}/v2/email/account$", SESV2Response.dispatch)
    patch.replace(sesv2_urls, "url_paths", routes)
    patch.replace(SESV2Backend, "send_email", send_email)
    patch.replace(SESV2Backend, "send_raw_email", send_raw_email)


def _install_identities_verified_for_sending(patch: Patch) -> None:
    from moto.ses.models import EmailIdentity

    original = EmailIdentity.get_response_object

    def get_response_object(self):  # type: ignore[no-untyped-def]
        answer = dict(original.fget(self))
        # moto lets every identity it holds send (VerificationStatus SUCCESS): say so.
        answer["VerifiedForSendingStatus"] = answer.get("VerificationStatus") == "SUCCESS"
        return answer

    patch.replace(EmailIdentity, "get_response_object", property(get_response_object))


register(
    Patch(
        name="ses-account-and-sandbox",
        why=(
            "moto has no SES v2 GetAccount (NotImplementedError, HTTP 500), so nothing could ask whether the "
            "account is in the SES sandbox. The patch answers GetAccount from the local account's status "
            "(account_defaults.ses_account: production access on by default, since the local cloud delivers to "
            "any address), and when a test turns production access off, SendEmail refuses unverified recipients "
            "with MessageRejected as the SES sandbox does."
        ),
        test=_TESTS + "test_ses_get_account_answers_and_the_sandbox_refuses_unverified_recipients",
        install=_install_account_and_sandbox,
    )
)
register(
    Patch(
        name="ses-identity-verified-for-sending",
        why=(
            "moto lets every email identity it holds send (VerificationStatus SUCCESS) but answers "
            "GetEmailIdentity with VerifiedForSendingStatus false, so a sender the local cloud verified looked "
            "unverified to anyone who asked (stepml preflight). The patch reports VerifiedForSendingStatus true "
            "exactly when moto would let the identity send."
        ),
        test=_TESTS + "test_an_identity_moto_lets_send_is_verified_for_sending",
        install=_install_identities_verified_for_sending,
    )
)
