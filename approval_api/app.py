"""Approval API: the review page (GET) and the decision (POST) behind signed approval links.

API Gateway HTTP API (payload format 2.0) -> this Lambda. With the stack's ``ApprovalSignIn``
set to ``cognito`` both also need a session: without one the answer is a redirect to the user
pool's hosted UI, and ``GET /auth/callback`` completes the sign-in (``stepml.approval_signin``).
The handler only parses requests and maps ``stepml.approval_records`` errors to HTML pages; the
rules live in the library. Nothing here logs the event, the query string, the form, the record's
task token or a cookie.
"""

from __future__ import annotations

import base64
import binascii
import functools
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlencode

import boto3
from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.shared.cookies import Cookie, SameSite
from aws_lambda_powertools.utilities.typing import LambdaContext

from stepml import approval_pages, approval_signin, config
from stepml.approval_links import approver_index, check_same_origin
from stepml.approval_records import (
    AlreadyDecidedError,
    AlreadyVotedError,
    ApprovalServiceError,
    ClosedApprovalError,
    CrossSiteRequestError,
    ExpiredApprovalError,
    ForgedLinkError,
    InvalidDecisionError,
    PipelineNotWaitingError,
    UnknownApprovalError,
    WrongApproverError,
)
from stepml.approval_signin import SignInClient, SignInError, SignInSettings
from stepml.approvals import ApprovalDecisions
from stepml.registry import ModelRegistry
from stepml.review_figures import ReviewReportError, load_report

logger = Logger(service="stepml-approval-api")
tracer = Tracer(service="stepml-approval-api")
# debug=False whatever the environment says: debug mode prints whole events (with signatures).
app = APIGatewayHttpResolver(debug=False)

REQUIRED_SETTINGS = (
    config.APPROVAL_TABLE,
    config.APPROVAL_SIGNING_KEY_ID,
    config.APPROVAL_SIGNIN,
    config.APPROVAL_USER_POOL_ID,
    config.APPROVAL_SIGNIN_CLIENT_NAME,
    config.APPROVAL_SIGNIN_URL,
)
ROUTE = "/approvals/<approval_id>"
#: The largest form body read. The review form's longest legitimate post is a 2000-character
#: comment of four-byte characters, percent-encoded (12 bytes each), plus the approver number,
#: the signature and form token: under 25 KB (older forms also sent a typed name, now ignored).
#: API Gateway would pass up to 10 MB, which this function never needs to parse.
MAX_FORM_BYTES = 32 * 1024
#: More fields than the form has (5) is not the form; parse_qs stops counting here.
MAX_FORM_FIELDS = 20
FORM_TYPE = "application/x-www-form-urlencoded"
HTML = "text/html; charset=utf-8"
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'",
    # Not no-referrer: under it browsers send "Origin: null" with the form's POST. same-origin
    # sends nothing to other sites (the link's signature never leaves) and names our origin.
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}


class PayloadTooLargeError(InvalidDecisionError):
    """The request body is larger than any review form sends (HTTP 413)."""


class UnsupportedMediaTypeError(InvalidDecisionError):
    """The body is not a UTF-8 urlencoded form (HTTP 415)."""


class SignInRequiredError(Exception):
    """The page needs a session and the request has none: answered by a redirect to sign in."""

    def __init__(self, return_to: str):
        super().__init__("sign-in required")
        self.return_to = return_to


@functools.cache
def function_settings() -> config.Settings:
    """The function's environment, validated once per execution environment."""
    return config.load_settings(REQUIRED_SETTINGS)


@functools.cache
def dependencies() -> ApprovalDecisions:
    """The approval service, built once per execution environment on the first request
    (tests substitute their own)."""
    settings = function_settings()
    session = boto3.Session()
    return ApprovalDecisions(
        table=session.resource("dynamodb").Table(settings.approval_table),
        kms_client=session.client("kms"),
        sfn_client=session.client("stepfunctions"),
        settings=settings,
        registry=ModelRegistry(session.client("sagemaker")),
    )


@functools.cache
def report_reader() -> Any:
    """The S3 client that reads evaluation reports for the review page's pictures."""
    return boto3.Session().client("s3")


@functools.cache
def signin_settings() -> SignInSettings | None:
    """Where the user pool is when the stack turned the sign-in on, else None."""
    settings = function_settings()
    if settings.get(config.APPROVAL_SIGNIN) == "none":
        return None
    cognito = cognito_client()
    return SignInSettings(
        user_pool_id=settings.get(config.APPROVAL_USER_POOL_ID),
        client_name=settings.get(config.APPROVAL_SIGNIN_CLIENT_NAME),
        hosted_ui_url=settings.get(config.APPROVAL_SIGNIN_URL),
        region=cognito.meta.region_name,
        endpoint_url=cognito.meta.endpoint_url,
    )


@functools.cache
def cognito_client() -> Any:
    """The cognito-idp client that finds the hosted UI's app client (and its endpoint, the JWKS's)."""
    return boto3.Session().client("cognito-idp")


@functools.cache
def signin_client() -> SignInClient:
    """The hosted UI's app client, looked up once per execution environment (not cached on failure)."""
    settings = signin_settings()
    assert settings is not None
    return approval_signin.find_client(cognito_client(), settings)


def html_response(status: HTTPStatus, page: str, cookies: list[Cookie] | None = None) -> Response:
    """An HTML page with the security headers every answer of this API carries."""
    body = "" if app.current_event.http_method.upper() == "HEAD" else page
    return Response(
        status_code=status.value, content_type=HTML, body=body, headers=dict(SECURITY_HEADERS), cookies=cookies
    )


def redirect(location: str, cookies: list[Cookie]) -> Response:
    """A 302 to ``location`` that sets ``cookies``."""
    headers = {**SECURITY_HEADERS, "Location": location}
    return Response(status_code=HTTPStatus.FOUND.value, content_type=HTML, body="", headers=headers, cookies=cookies)


def _cookie(name: str, value: str, max_age: int) -> Cookie:
    # Host-only, the whole API, never to scripts, HTTPS only; Lax: sent on the top-level
    # navigation back from the hosted UI, never on another site's POST.
    return Cookie(name, value, path="/", secure=True, http_only=True, max_age=max_age, same_site=SameSite.LAX_MODE)


@app.route(ROUTE, method=["GET", "HEAD"])
@tracer.capture_method(capture_response=False)
def review(approval_id: str) -> Response:
    """Show the review page, or the decision if there already is one. Changes nothing."""
    event = app.current_event
    query = event.query_string_parameters
    return_to = event.raw_event.get("rawPath", "") + ("?" + event.raw_query_string if event.raw_query_string else "")
    signed_in_as = _signed_in_as(return_to)
    found = dependencies().load_for_review(approval_id, query.get("to"), query.get("sig"), signed_in_as=signed_in_as)
    if found.form_token is None:
        if found.record.is_decided:
            return html_response(HTTPStatus.OK, approval_pages.decided_page(found.record))
        return html_response(HTTPStatus.OK, approval_pages.vote_recorded_page(found.record, found.approver))
    report, problem = None, None
    try:
        report = load_report(report_reader(), found.record.report_uri)
    except ReviewReportError as exc:
        # The pictures help; their absence must not keep anybody from deciding.
        logger.warning("evaluation report not drawn", extra={"approval_id": approval_id, "problem": str(exc)})
        problem = str(exc)
    page = approval_pages.review_page(
        found.record,
        sig=query["sig"],
        form_token=found.form_token,
        approver=found.approver,
        report=report,
        report_problem=problem,
    )
    return html_response(HTTPStatus.OK, page)


def _signed_in_as(return_to: str) -> str | None:
    """The signed-in user's email: the session's when the stack's sign-in is on (none:
    ``SignInRequiredError``, to come back to ``return_to``), else a JWT authorizer's, else None.

    API Gateway puts a JWT authorizer's verified claims in ``requestContext.authorizer.jwt.claims``;
    Cognito ID tokens carry ``email``. With the authorizer on, a token without it signs in
    nobody, which ``ApprovalDecisions`` refuses like a different user.
    """
    if signin_settings() is not None:
        decisions = dependencies()
        session = approval_signin.read_cookie(app.current_event.cookies, approval_signin.SESSION_COOKIE)
        email = approval_signin.session_email(decisions.kms_client, decisions.settings.approval_signing_key_id, session)
        if email is None:
            raise SignInRequiredError(return_to)
        return email
    authorizer = (app.current_event.raw_event.get("requestContext") or {}).get("authorizer") or {}
    jwt = authorizer.get("jwt")
    if not isinstance(jwt, dict):
        return None
    claims = jwt.get("claims") or {}
    return str(claims.get("email") or "")


def _form_fields() -> dict[str, str]:
    """The urlencoded form body, refused unless it is a UTF-8 form of a sane size.

    API Gateway HTTP APIs deliver a form post base64-encoded (``isBase64Encoded``); the bytes
    are checked in this order: size (413), content type and charset (415), UTF-8 and the
    urlencoding itself (400). Nothing is decided for a refused body.
    """
    event = app.current_event
    raw_body = event.body or ""
    if event.is_base64_encoded:
        if len(raw_body) > (MAX_FORM_BYTES + 2) // 3 * 4:
            raise PayloadTooLargeError(f"the form body is larger than {MAX_FORM_BYTES} bytes")
        try:
            data = base64.b64decode(raw_body, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise InvalidDecisionError("the form body is not valid base64") from exc
    else:
        data = raw_body.encode("utf-8", "surrogatepass")
    if len(data) > MAX_FORM_BYTES:
        raise PayloadTooLargeError(f"the form body is larger than {MAX_FORM_BYTES} bytes")
    media_type, _, parameters = (event.headers.get("content-type") or "").partition(";")
    if media_type.strip().lower() != FORM_TYPE:
        raise UnsupportedMediaTypeError(f"the decision must be sent by the review form as {FORM_TYPE}")
    for parameter in parameters.split(";"):
        name, _, value = parameter.partition("=")
        charset = value.strip().strip('"').lower()
        if name.strip().lower() == "charset" and charset not in ("utf-8", "utf8"):
            # Only the name, never other request text: it is reflected into the page.
            shown = charset if charset.replace("-", "").replace("_", "").isalnum() and len(charset) <= 40 else "?"
            raise UnsupportedMediaTypeError(f"the form must be UTF-8, not charset={shown}")
    try:
        text = data.decode("utf-8")
        pairs = parse_qs(text, keep_blank_values=True, errors="strict", max_num_fields=MAX_FORM_FIELDS)
    except UnicodeDecodeError as exc:
        raise InvalidDecisionError("the form body is not valid UTF-8") from exc
    except ValueError as exc:  # parse_qs: more fields than max_num_fields
        raise InvalidDecisionError("the form body has too many fields") from exc
    # The first value counts if a field repeats; nothing in the form legitimately repeats.
    return {name: values[0] for name, values in pairs.items()}


@app.post(ROUTE)
@tracer.capture_method(capture_response=False)
def submit(approval_id: str) -> Response:
    """Take the decision from the review form, exactly once, and complete the waiting task."""
    event = app.current_event
    check_same_origin(
        sec_fetch_site=event.headers.get("sec-fetch-site"),
        origin=event.headers.get("origin"),
        host=event.request_context.domain_name or event.headers.get("host"),
    )
    form = _form_fields()
    # Without a session nothing is decided: the approver signs in and comes back to the page.
    signed_in_as = _signed_in_as(
        f"/approvals/{approval_id}?" + urlencode({"to": form.get("to", ""), "sig": form.get("sig", "")})
    )
    record = dependencies().decide(
        approval_id,
        decision=form.get("decision"),
        # The link's approver number; a typed name (older forms, `stepml runs decide`) is ignored.
        approver=form.get("to"),
        comment=form.get("comment"),
        sig=form.get("sig"),
        csrf=form.get("csrf"),
        signed_in_as=signed_in_as,
    )
    logger.info("approval decided", extra={"approval_id": approval_id, "status": record.status})
    if not record.is_decided:
        index = approver_index(form.get("to")) or 0
        return html_response(HTTPStatus.OK, approval_pages.vote_recorded_page(record, index))
    return html_response(HTTPStatus.OK, approval_pages.decision_recorded_page(record))


@app.get(approval_signin.CALLBACK_PATH)
@tracer.capture_method(capture_response=False)
def signin_callback() -> Response:
    """The hosted UI's redirect back: check ``state``, exchange the code, verify the ID token,
    set the session and return to the page the sign-in started from."""
    settings = signin_settings()
    if settings is None:
        raise NotFoundError
    query = app.current_event.query_string_parameters
    if query.get("error"):
        # Cognito's error names are a short fixed vocabulary; anything longer is not Cognito's.
        raise SignInError(f"the user pool refused the sign-in ({query['error'][:40]})")
    decisions = dependencies()
    key_id = decisions.settings.approval_signing_key_id
    pending = approval_signin.read_pending(
        decisions.kms_client,
        key_id,
        approval_signin.read_cookie(app.current_event.cookies, approval_signin.PENDING_COOKIE),
        query.get("state"),
    )
    client = signin_client()
    token = approval_signin.exchange_code(settings, client, code=query.get("code") or "", verifier=pending["verifier"])
    email = approval_signin.verify_id_token(settings, client, token)
    return_to = str(pending.get("return_to") or "")
    if not return_to.startswith("/approvals/"):
        raise SignInError("the sign-in has no approval page to return to; open the approval link again")
    logger.info("signed in", extra={"return_to_approval": return_to.split("?", 1)[0].rsplit("/", 1)[-1]})
    return redirect(
        return_to,
        [
            _cookie(
                approval_signin.SESSION_COOKIE,
                approval_signin.new_session(decisions.kms_client, key_id, email),
                approval_signin.SESSION_SECONDS,
            ),
            _cookie(approval_signin.PENDING_COOKIE, "", 0),
        ],
    )


@app.exception_handler(SignInRequiredError)
def _sign_in(exc: SignInRequiredError) -> Response:
    """Send the browser to the hosted UI; the pending sign-in rides in a MAC'd cookie."""
    settings = signin_settings()
    assert settings is not None
    decisions = dependencies()
    state, verifier, pending = approval_signin.new_pending(
        decisions.kms_client, decisions.settings.approval_signing_key_id, exc.return_to
    )
    location = approval_signin.authorize_url(settings, signin_client(), state=state, verifier=verifier)
    logger.info("sign-in required", extra={"status": 302})
    return redirect(location, [_cookie(approval_signin.PENDING_COOKIE, pending, approval_signin.PENDING_SECONDS)])


# --- errors to pages (most specific first is not needed: lookup follows each exception's MRO) ----


#: Refusals shown on the error page: the status, the title, and the message, in which
#: ``{exc}`` stands for the library's message (it names the field and holds no submitted value).
REFUSALS: dict[type[Exception], tuple[HTTPStatus, str, str]] = {
    WrongApproverError: (
        HTTPStatus.FORBIDDEN,
        "This link is for another approver",
        "You are signed in as someone else than the approver this link was sent to. Sign in with "
        "the address the approval email went to, or open your own link.",
    ),
    SignInError: (
        HTTPStatus.FORBIDDEN,
        "Sign-in failed",
        "{exc}.",
    ),
    ForgedLinkError: (
        HTTPStatus.FORBIDDEN,
        "This link is not valid",
        "The approval link is incomplete or has been altered. Open the link exactly as it "
        "appears in the approval email.",
    ),
    CrossSiteRequestError: (
        HTTPStatus.FORBIDDEN,
        "Request refused",
        "Decisions are accepted only from the review page. Open the link from the approval "
        "email again and use the buttons there.",
    ),
    InvalidDecisionError: (
        HTTPStatus.BAD_REQUEST,
        "The form is incomplete",
        "{exc}. Nothing was decided; go back and try again.",
    ),
    PayloadTooLargeError: (HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "The form is too large", "{exc}. Nothing was decided."),
    UnsupportedMediaTypeError: (
        HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
        "The form cannot be read",
        "{exc}. Nothing was decided; use the buttons of the review page.",
    ),
    UnknownApprovalError: (
        HTTPStatus.NOT_FOUND,
        "Approval not found",
        "There is no approval for this link (any more).",
    ),
    NotFoundError: (HTTPStatus.NOT_FOUND, "Not found", "There is nothing at this address."),
}


def _refuse_with(error_type: type[Exception], status: HTTPStatus, title: str, message: str) -> None:
    """Answer ``error_type`` with the error page (lookup follows each exception's MRO)."""

    @app.exception_handler(error_type)
    def _refused(exc: Exception) -> Response:
        logger.info("request refused", extra={"reason": type(exc).__name__, "status": status.value})
        return html_response(status, approval_pages.error_page(title, message.format(exc=exc)))


for _error_type, (_status, _title, _message) in REFUSALS.items():
    _refuse_with(_error_type, _status, _title, _message)


@app.exception_handler(ExpiredApprovalError)
def _expired(exc: ExpiredApprovalError) -> Response:
    logger.info("request refused", extra={"reason": "ExpiredApprovalError", "status": 410})
    return html_response(HTTPStatus.GONE, approval_pages.expired_page(exc.record))


@app.exception_handler(ClosedApprovalError)
def _closed(exc: ClosedApprovalError) -> Response:
    just_now = isinstance(exc, PipelineNotWaitingError)
    logger.info(
        "request refused",
        extra={"reason": type(exc).__name__, "status": 410, "closed_reason": exc.record.closed_reason},
    )
    return html_response(HTTPStatus.GONE, approval_pages.closed_page(exc.record, just_now=just_now))


@app.exception_handler(AlreadyDecidedError)
def _already_decided(exc: AlreadyDecidedError) -> Response:
    logger.info("request refused", extra={"reason": type(exc).__name__, "status": 409})
    if isinstance(exc, AlreadyVotedError):
        return html_response(HTTPStatus.CONFLICT, approval_pages.already_voted_page(exc.record))
    return html_response(HTTPStatus.CONFLICT, approval_pages.already_decided_page(exc.record))


@app.exception_handler(ApprovalServiceError)
def _service_unavailable(exc: ApprovalServiceError) -> Response:
    logger.exception("an AWS call failed")
    return html_response(
        HTTPStatus.SERVICE_UNAVAILABLE,
        approval_pages.error_page(
            "Temporarily unavailable",
            "Nothing was decided. Please try again in a minute.",
        ),
    )


@app.exception_handler(Exception)
def _unexpected(exc: Exception) -> Response:
    logger.exception("unexpected error")
    return html_response(
        HTTPStatus.INTERNAL_SERVER_ERROR,
        approval_pages.error_page("Something went wrong", "Nothing was decided. Please try again later."),
    )


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler(capture_response=False)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """API Gateway HTTP API (payload 2.0) entry point."""
    return app.resolve(event, context)
