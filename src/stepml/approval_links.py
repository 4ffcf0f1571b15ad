"""Signed approval links and form tokens (KMS HMAC), and the same-origin check of a decision.

Each approver receives a link of their own, ``{base_url}/approvals/{approval_id}?to={n}&sig={mac}``:
the id is random, ``n`` is the approver's place in the record's ``approvers`` list, and the MAC
(from a KMS HMAC key that never leaves KMS) covers both, so a link can be neither guessed nor
altered, nor turned into another approver's link. The review form carries a second MAC with a
different purpose (the form token), bound to the same approver, which a page on another site
cannot read. Who decided is therefore the address the link was issued to, never a typed name.
"""

from __future__ import annotations

import base64
import re
import secrets
from typing import Any
from urllib.parse import urlsplit

from botocore.exceptions import BotoCoreError, ClientError

from stepml.approval_records import ApprovalServiceError, CrossSiteRequestError, ForgedLinkError

MAC_ALGORITHM = "HMAC_SHA_256"
# Each MAC binds a purpose to the id, so a link MAC can never serve as a form token (or the
# reverse); ':' cannot occur in an id, which keeps the messages unambiguous.
_LINK_PURPOSE = b"link:"
_FORM_PURPOSE = b"form:"
_APPROVAL_ID = re.compile(r"^[A-Za-z0-9_-]{32}$")  # secrets.token_urlsafe(24)
_MAC_TEXT = re.compile(r"^[A-Za-z0-9_-]{43}$")  # 32 bytes, base64url without padding
_APPROVER_INDEX = re.compile(r"^(0|[1-9][0-9]?)$")  # at most MAX_APPROVERS (20) approvers


def error_code(exc: ClientError) -> str:
    """The AWS error code of a botocore ``ClientError`` (empty when it has none)."""
    return exc.response.get("Error", {}).get("Code", "")


def new_approval_id() -> str:
    """A fresh unguessable approval id (192 random bits)."""
    return secrets.token_urlsafe(24)


def _generate_mac(kms_client: Any, key_id: str, message: bytes) -> str:
    try:
        response = kms_client.generate_mac(KeyId=key_id, Message=message, MacAlgorithm=MAC_ALGORITHM)
    except (ClientError, BotoCoreError) as exc:
        raise ApprovalServiceError(f"KMS GenerateMac with key {key_id} failed: {exc}") from exc
    return base64.urlsafe_b64encode(response["Mac"]).rstrip(b"=").decode("ascii")


def _mac_is_valid(kms_client: Any, key_id: str, message: bytes, mac_text: str | None) -> bool:
    # A MAC of the wrong shape cannot be ours; rejecting it here also keeps garbage away
    # from KMS, which answers malformed input with ValidationException rather than "invalid".
    if not mac_text or not _MAC_TEXT.match(mac_text):
        return False
    mac = base64.urlsafe_b64decode(mac_text + "=")
    try:
        response = kms_client.verify_mac(KeyId=key_id, Message=message, MacAlgorithm=MAC_ALGORITHM, Mac=mac)
    except ClientError as exc:
        if error_code(exc) == "KMSInvalidMacException":
            return False
        raise ApprovalServiceError(f"KMS VerifyMac with key {key_id} failed: {error_code(exc)}") from exc
    except BotoCoreError as exc:
        raise ApprovalServiceError(f"KMS VerifyMac with key {key_id} failed: {exc}") from exc
    return bool(response.get("MacValid"))


def message_mac(kms_client: Any, key_id: str, message: bytes) -> str:
    """The base64url KMS MAC of ``message`` (the caller puts its own purpose prefix first)."""
    return _generate_mac(kms_client, key_id, message)


def message_mac_is_valid(kms_client: Any, key_id: str, message: bytes, mac_text: str | None) -> bool:
    """Whether ``mac_text`` is ``message_mac`` of ``message``."""
    return _mac_is_valid(kms_client, key_id, message, mac_text)


def _message(purpose: bytes, approval_id: str, approver: int) -> bytes:
    # ':' occurs neither in an id nor in a number, so no two (id, approver) pairs share a message.
    return purpose + f"{approval_id}:{approver}".encode("ascii")


def approver_index(value: str | None) -> int | None:
    """The approver number a link or form carries (``to``), or None when it is not one."""
    return int(value) if value and _APPROVER_INDEX.match(value) else None


def link_signature(kms_client: Any, key_id: str, approval_id: str, approver: int) -> str:
    """The MAC that approver number ``approver``'s emailed link carries as ``sig``."""
    return _generate_mac(kms_client, key_id, _message(_LINK_PURPOSE, approval_id, approver))


def form_token(kms_client: Any, key_id: str, approval_id: str, approver: int) -> str:
    """The review form's hidden ``csrf`` value; only this approver, having loaded the page, has it."""
    return _generate_mac(kms_client, key_id, _message(_FORM_PURPOSE, approval_id, approver))


def verify_link(kms_client: Any, key_id: str, approval_id: str, approver: str | None, sig: str | None) -> int:
    """This link's approver number; ``ForgedLinkError`` unless ``sig`` is the link MAC of this
    id and approver (``approver`` is the ``to`` value as received)."""
    index = approver_index(approver)
    if (
        index is None
        or not _APPROVAL_ID.match(approval_id or "")
        or not _mac_is_valid(kms_client, key_id, _message(_LINK_PURPOSE, approval_id, index), sig)
    ):
        raise ForgedLinkError("the approval link is not valid: its signature does not match (query 'to' and 'sig')")
    return index


def verify_form_token(kms_client: Any, key_id: str, approval_id: str, approver: int, token: str | None) -> None:
    """Raise ``CrossSiteRequestError`` unless ``token`` is this id's and approver's form token."""
    if not _mac_is_valid(kms_client, key_id, _message(_FORM_PURPOSE, approval_id, approver), token):
        raise CrossSiteRequestError("the decision form's token (field 'csrf') is missing or not valid")


def check_same_origin(*, sec_fetch_site: str | None, origin: str | None, host: str | None) -> None:
    """Refuse a submission that a browser reports as coming from another site.

    ``Sec-Fetch-Site: cross-site`` is refused; so is an ``Origin`` whose host differs from the
    request's own host (an absent ``Origin`` is allowed: older browsers omit it on forms).
    ``Origin: null`` (an opaque origin: a sandboxed frame, a ``data:`` page, or a page whose
    referrer policy is no-referrer) passes only when ``Sec-Fetch-Site`` says same-origin.
    """
    fetch_site = (sec_fetch_site or "").strip().lower()
    if fetch_site == "cross-site":
        raise CrossSiteRequestError("refused a cross-site submission (header 'Sec-Fetch-Site: cross-site')")
    if origin is None:
        return
    if origin.strip() == "null":
        if fetch_site == "same-origin":
            return
        raise CrossSiteRequestError("refused a submission from an opaque origin (header 'Origin: null')")
    origin_host = urlsplit(origin.strip()).netloc.lower() if "://" in origin else ""
    if not host or origin_host != host.strip().lower():
        raise CrossSiteRequestError("refused a submission from another origin (header 'Origin')")


def approval_link(base_url: str, approval_id: str, approver: int, sig: str) -> str:
    """The review link that goes into approver number ``approver``'s email."""
    return f"{base_url.rstrip('/')}/approvals/{approval_id}?to={approver}&sig={sig}"
