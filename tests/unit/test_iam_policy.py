"""The local cloud's IAM policy evaluator: AWS's evaluation logic, its condition operators and its wording."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from stepml.local.iam.model import AuthorizationRequest, Decision, PolicyDocument, Principal, StatementRef
from stepml.local.iam.policy import (
    PolicyError,
    denial_message,
    evaluate,
    statements,
    without_action,
    without_resource,
    without_statement,
)
from stepml.local.template import ResolvedTemplate, load_template
from tests.helpers import REPO_ROOT

ACCOUNT = "123456789012"
OTHER = "210987654321"
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/MyRole"
SESSION_ARN = f"arn:aws:sts::{ACCOUNT}:assumed-role/MyRole/session"
ROLE = Principal(arn=SESSION_ARN, role_arn=ROLE_ARN)
OTHER_ROLE = Principal(
    arn=f"arn:aws:sts::{OTHER}:assumed-role/Theirs/s", account=OTHER, role_arn=f"arn:aws:iam::{OTHER}:role/Theirs"
)
USER = Principal(arn=f"arn:aws:iam::{ACCOUNT}:user/alice")
CLOUDWATCH = Principal(arn="cloudwatch.amazonaws.com", service="cloudwatch.amazonaws.com")
BUCKET = "arn:aws:s3:::b"
KEY_ARN = f"arn:aws:kms:us-east-1:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"


def identity(*stmts: dict[str, Any], source: str = "MyRole/inline", version: str | None = "2012-10-17"):
    document: dict[str, Any] = {"Statement": list(stmts)}
    if version:
        document["Version"] = version
    return PolicyDocument(source=source, document=document)


def resource_policy(*stmts: dict[str, Any], source: str = "bucket policy of b") -> PolicyDocument:
    return PolicyDocument(source=source, document={"Version": "2012-10-17", "Statement": list(stmts)})


def allow(action: Any = "s3:GetObject", resource: Any = f"{BUCKET}/*", **extra: Any) -> dict[str, Any]:
    return {"Effect": "Allow", "Action": action, "Resource": resource, **extra}


def deny(action: Any = "s3:GetObject", resource: Any = f"{BUCKET}/*", **extra: Any) -> dict[str, Any]:
    return {"Effect": "Deny", "Action": action, "Resource": resource, **extra}


def request(action: str = "s3:GetObject", resource: str = f"{BUCKET}/k", **context: Any) -> AuthorizationRequest:
    return AuthorizationRequest(action=action, resource=resource, context=context)


def not_allowed(req: AuthorizationRequest, kind: str = "identity-based", principal: Principal = ROLE) -> str:
    return (
        f"User: {principal.arn} is not authorized to perform: {req.action} on resource: {req.resource}"
        f" because no {kind} policy allows the {req.action} action"
    )


def explicitly_denied(req: AuthorizationRequest, kind: str = "identity-based", principal: Principal = ROLE) -> str:
    article = "an" if kind == "identity-based" else "a"
    return (
        f"User: {principal.arn} is not authorized to perform: {req.action} on resource: {req.resource}"
        f" with an explicit deny in {article} {kind} policy"
    )


def expect(
    decision: Decision, kind: str, req: AuthorizationRequest, message: str | None = None, principal: Principal = ROLE
):
    """Assert the decision's kind and, for a denial, AWS's wording of it."""
    assert decision.kind == kind, decision
    if kind == "allowed":
        assert message is None
        with pytest.raises(ValueError, match="denial"):
            denial_message(principal, req, decision)
    else:
        assert denial_message(principal, req, decision) == message


# --- actions ---------------------------------------------------------------------------------

ACTION_CASES = [
    ("s3:Get*", "s3:GetObject", True),
    ("s3:Get*", "s3:GetObjectVersion", True),
    ("s3:Get*", "s3:PutObject", False),
    ("S3:getobject", "s3:GetObject", True),
    ("s3:GetObject", "S3:GETOBJECT", True),
    ("kms:*", "kms:Decrypt", True),
    ("kms:*", "kmsx:Decrypt", False),
    ("*", "dynamodb:Query", True),
    ("s3:?etObject", "s3:GetObject", True),
    ("s3:Get?", "s3:GetObject", False),
    ("*:GetObject", "s3:GetObject", True),
    ("kms:GenerateDataKey*", "kms:GenerateDataKeyWithoutPlaintext", True),
    ("kms:GenerateDataKey*", "kms:GenerateMac", False),
    ("s3:GetObject", "s3:GetObjectAcl", False),
    ("s3:*Object", "s3:GetObjectAcl", False),
]


@pytest.mark.parametrize(("pattern", "action", "allowed"), ACTION_CASES)
def test_actions_match_case_insensitively_with_wildcards(pattern, action, allowed):
    req = request(action=action)
    decision = evaluate(ROLE, req, [identity(allow(pattern))])
    expect(decision, "allowed" if allowed else "implicit-deny", req, None if allowed else not_allowed(req))


# --- resources -------------------------------------------------------------------------------

STATES = f"arn:aws:states:us-east-1:{ACCOUNT}"
LAMBDA = f"arn:aws:lambda:us-east-1:{ACCOUNT}:function"
RESOURCE_CASES = [
    (f"{BUCKET}/*", f"{BUCKET}/k", True),
    (f"{BUCKET}/*", f"{BUCKET}/a/b/c.csv", True),
    (f"{BUCKET}/*", BUCKET, False),
    (f"{BUCKET}/*", "arn:aws:s3:::bb/k", False),
    ("arn:aws:s3:::B/*", f"{BUCKET}/k", False),
    (f"{BUCKET}/K", f"{BUCKET}/k", False),
    (f"{BUCKET}/incoming/*", f"{BUCKET}/incoming/churn/x.csv", True),
    (f"{BUCKET}/incoming/*", f"{BUCKET}/other/incoming/x.csv", False),
    (f"{BUCKET}/*/x.csv", f"{BUCKET}/a/b/x.csv", True),
    (f"{BUCKET}/?.csv", f"{BUCKET}/a.csv", True),
    (f"{BUCKET}/?.csv", f"{BUCKET}/ab.csv", False),
    ("arn:aws:s3:::aws-sam-cli-managed-default-*/*", "arn:aws:s3:::aws-sam-cli-managed-default-xyz/a/b.py", True),
    (f"{STATES}:execution:stepml-dev-pipeline:*", f"{STATES}:execution:stepml-dev-pipeline:run-1", True),
    (f"{STATES}:execution:stepml-dev-pipeline:*", f"{STATES}:execution:stepml-dev-other:run-1", False),
    (f"{STATES}:stateMachine:stepml-dev-pipeline", f"{STATES}:stateMachine:stepml-dev-pipeline", True),
    # A * that ends its segment runs across colons (a function's versions and aliases) ...
    (f"{LAMBDA}:resolve*", f"{LAMBDA}:resolve-run:live", True),
    (f"{LAMBDA}:resolve-run:*", f"{LAMBDA}:resolve-run:7", True),
    (f"{LAMBDA}:resolve-run:*", f"{LAMBDA}:resolve-run", False),
    # ... one inside a segment stays in it, and so does ?.
    (f"{LAMBDA}:res*run", f"{LAMBDA}:res:x:run", False),
    (f"{LAMBDA}:res*run", f"{LAMBDA}:resolve-run", True),
    (f"{LAMBDA}:resolve?run", f"{LAMBDA}:resolve:run", False),
    (
        f"arn:aws:logs:*:{ACCOUNT}:log-group:/aws-glue/*",
        f"arn:aws:logs:eu-west-1:{ACCOUNT}:log-group:/aws-glue/j",
        True,
    ),
    (f"arn:aws:logs:*:{ACCOUNT}:log-group:/aws-glue/*", f"arn:aws:logs:eu-west-1:{OTHER}:log-group:/aws-glue/j", False),
    (
        f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:endpoint/stepml-*",
        f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:endpoint/x",
        False,
    ),
    ("*", "*", True),
    ("*", f"{BUCKET}/k", True),
    # An action without resource-level permissions is asked on "*": only Resource "*" covers it.
    ("arn:aws:s3:::*", "*", False),
]


@pytest.mark.parametrize(("pattern", "resource", "allowed"), RESOURCE_CASES)
def test_resources_match_case_sensitively_segment_by_segment(pattern, resource, allowed):
    req = request(action="s3:GetObject", resource=resource)
    decision = evaluate(ROLE, req, [identity(allow("s3:GetObject", pattern))])
    expect(decision, "allowed" if allowed else "implicit-deny", req, None if allowed else not_allowed(req))


# --- NotAction, NotResource, explicit deny ---------------------------------------------------------


@pytest.mark.parametrize(
    ("action", "kind"),
    [("s3:GetObject", "allowed"), ("iam:CreateRole", "implicit-deny"), ("IAM:PassRole", "implicit-deny")],
)
def test_not_action_with_allow_allows_every_other_action(action, kind):
    req = request(action=action, resource="*")
    decision = evaluate(ROLE, req, [identity({"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"})])
    expect(decision, kind, req, not_allowed(req) if kind != "allowed" else None)


@pytest.mark.parametrize(("action", "kind"), [("s3:GetObject", "allowed"), ("s3:PutObject", "explicit-deny")])
def test_not_action_with_deny_denies_every_other_action(action, kind):
    req = request(action=action)
    policy = identity(allow("s3:*"), {"Effect": "Deny", "NotAction": ["s3:GetObject"], "Resource": f"{BUCKET}/*"})
    decision = evaluate(ROLE, req, [policy])
    expect(decision, kind, req, explicitly_denied(req) if kind != "allowed" else None)
    if kind == "explicit-deny":
        assert decision.statement == StatementRef("MyRole/inline", 1, None)


@pytest.mark.parametrize(
    ("resource", "kind"),
    [(f"{BUCKET}/public/k", "allowed"), (f"{BUCKET}/secret/k", "implicit-deny"), (f"{BUCKET}/secret", "allowed")],
)
def test_not_resource_with_allow_allows_every_other_resource(resource, kind):
    req = request(resource=resource)
    policy = identity({"Effect": "Allow", "Action": "s3:GetObject", "NotResource": f"{BUCKET}/secret/*"})
    expect(evaluate(ROLE, req, [policy]), kind, req, not_allowed(req) if kind != "allowed" else None)


@pytest.mark.parametrize(("resource", "kind"), [(f"{BUCKET}/mine/k", "allowed"), (f"{BUCKET}/k", "explicit-deny")])
def test_not_resource_with_deny_denies_every_other_resource(resource, kind):
    req = request(resource=resource)
    policy = identity(allow(), {"Effect": "Deny", "Action": "s3:*", "NotResource": [f"{BUCKET}/mine/*"]})
    expect(evaluate(ROLE, req, [policy]), kind, req, explicitly_denied(req) if kind != "allowed" else None)


def test_an_explicit_deny_in_one_identity_policy_beats_an_allow_in_another():
    req = request()
    policies = [identity(allow(), source="MyRole/a"), identity(deny(Sid="NoReads"), source="MyRole/b")]
    decision = evaluate(ROLE, req, policies)
    expect(decision, "explicit-deny", req, explicitly_denied(req))
    assert decision.statement == StatementRef("MyRole/b", 0, "NoReads")
    assert decision.policy_type == "identity-based"


def test_an_explicit_deny_in_the_resource_policy_beats_an_identity_allow():
    req = request()
    bucket = resource_policy(deny(Principal="*", Sid="Nobody"))
    decision = evaluate(ROLE, req, [identity(allow())], bucket)
    expect(decision, "explicit-deny", req, explicitly_denied(req, "resource-based"))
    assert decision.statement == StatementRef("bucket policy of b", 0, "Nobody")
    assert decision.policy_type == "resource-based"


def test_the_allowing_statement_is_the_first_that_matches():
    req = request()
    policy = identity(allow("s3:PutObject", Sid="Put"), allow("s3:Get*", Sid="Read"), allow("s3:*", Sid="All"))
    decision = evaluate(ROLE, req, [policy])
    assert decision == Decision("allowed", StatementRef("MyRole/inline", 1, "Read"), "identity-based")


def test_a_single_statement_object_and_string_elements_are_accepted():
    req = request()
    policy = PolicyDocument("one", {"Version": "2012-10-17", "Statement": allow()})
    assert evaluate(ROLE, req, [policy]) == Decision("allowed", StatementRef("one", 0, None), "identity-based")
    assert statements(policy.document) == [(0, allow())]
    assert [i for i, _ in statements({"Statement": [allow(), deny()]})] == [0, 1]


def test_no_policy_at_all_is_an_implicit_deny():
    req = request()
    expect(evaluate(ROLE, req, []), "implicit-deny", req, not_allowed(req))


# --- resource-based policies -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("principal_element", "kind"),
    [
        ({"AWS": ROLE_ARN}, "allowed"),
        ({"AWS": SESSION_ARN}, "allowed"),
        ({"AWS": [f"arn:aws:iam::{ACCOUNT}:role/Else", ROLE_ARN]}, "allowed"),
        ("*", "allowed"),
        ({"AWS": "*"}, "allowed"),
        # A grant to the account is the account's to pass on through identity policies.
        ({"AWS": f"arn:aws:iam::{ACCOUNT}:root"}, "implicit-deny"),
        ({"AWS": ACCOUNT}, "implicit-deny"),
        ({"AWS": f"arn:aws:iam::{ACCOUNT}:role/Else"}, "implicit-deny"),
        ({"AWS": f"arn:aws:sts::{ACCOUNT}:assumed-role/MyRole/other-session"}, "implicit-deny"),
        ({"Service": "states.amazonaws.com"}, "implicit-deny"),
        ({"Federated": "cognito-identity.amazonaws.com"}, "implicit-deny"),
    ],
)
def test_a_resource_policy_alone_allows_the_principal_it_names_in_the_same_account(principal_element, kind):
    req = request()
    bucket = resource_policy(allow(Principal=principal_element))
    decision = evaluate(ROLE, req, [], bucket)
    expect(decision, kind, req, not_allowed(req) if kind != "allowed" else None)
    if kind == "allowed":
        assert decision == Decision("allowed", StatementRef("bucket policy of b", 0, None), "resource-based")


def test_a_grant_to_the_account_with_an_identity_allow_is_allowed():
    req = request()
    bucket = resource_policy(allow(Principal={"AWS": ACCOUNT}))
    decision = evaluate(ROLE, req, [identity(allow())], bucket)
    assert decision == Decision("allowed", StatementRef("MyRole/inline", 0, None), "identity-based")


def test_a_role_path_is_part_of_the_role_arn_a_resource_policy_names():
    principal = Principal(arn=SESSION_ARN, role_arn=f"arn:aws:iam::{ACCOUNT}:role/service-role/MyRole")
    req = request()
    expect(
        evaluate(principal, req, [], resource_policy(allow(Principal={"AWS": ROLE_ARN}))),
        "implicit-deny",
        req,
        not_allowed(req),
    )
    named = resource_policy(allow(Principal={"AWS": principal.role_arn}))
    expect(evaluate(principal, req, [], named), "allowed", req)


@pytest.mark.parametrize(
    ("identity_allows", "principal_element", "kind", "denied_by"),
    [
        (True, None, "implicit-deny", "resource-based"),
        (False, {"AWS": OTHER_ROLE.role_arn}, "implicit-deny", "identity-based"),
        (True, {"AWS": OTHER_ROLE.role_arn}, "allowed", None),
        (True, {"AWS": OTHER}, "allowed", None),
        (True, {"AWS": f"arn:aws:iam::{OTHER}:root"}, "allowed", None),
        (True, "*", "allowed", None),
        (True, {"AWS": ACCOUNT}, "implicit-deny", "resource-based"),
    ],
)
def test_across_accounts_both_the_identity_and_the_resource_policy_must_allow(
    identity_allows, principal_element, kind, denied_by
):
    req = request()
    policies = [identity(allow(), source="Theirs/inline")] if identity_allows else []
    bucket = resource_policy(allow(Principal=principal_element)) if principal_element else None
    decision = evaluate(OTHER_ROLE, req, policies, bucket, resource_account=ACCOUNT)
    message = not_allowed(req, denied_by, OTHER_ROLE) if denied_by else None
    expect(decision, kind, req, message, OTHER_ROLE)


def test_the_resource_account_defaults_to_the_principals_account():
    req = request()
    bucket = resource_policy(allow(Principal={"AWS": ROLE_ARN}))
    assert evaluate(ROLE, req, [], bucket).allowed
    assert not evaluate(ROLE, req, [], bucket, resource_account=OTHER).allowed


@pytest.mark.parametrize(
    ("not_principal", "kind"),
    [
        ({"AWS": [SESSION_ARN, ROLE_ARN, f"arn:aws:iam::{ACCOUNT}:root"]}, "allowed"),
        ({"AWS": [ROLE_ARN, ACCOUNT]}, "allowed"),
        # Without the account, AWS may deny the whole account the session belongs to.
        ({"AWS": [SESSION_ARN, ROLE_ARN]}, "explicit-deny"),
        ({"AWS": [f"arn:aws:iam::{ACCOUNT}:root"]}, "explicit-deny"),
        ({"AWS": [f"arn:aws:iam::{ACCOUNT}:role/Else", ACCOUNT]}, "explicit-deny"),
        ({"Service": "cloudwatch.amazonaws.com"}, "explicit-deny"),
    ],
)
def test_not_principal_with_deny_denies_everyone_it_does_not_list(not_principal, kind):
    req = request()
    bucket = resource_policy(
        {"Effect": "Deny", "NotPrincipal": not_principal, "Action": "s3:*", "Resource": f"{BUCKET}/*"}
    )
    decision = evaluate(ROLE, req, [identity(allow())], bucket)
    expect(decision, kind, req, explicitly_denied(req, "resource-based") if kind != "allowed" else None)


def test_not_principal_exempts_a_service_it_lists():
    req = request(action="sns:Publish", resource="arn:aws:sns:us-east-1:123456789012:t")
    topic = resource_policy(
        {"Effect": "Deny", "NotPrincipal": {"Service": "cloudwatch.amazonaws.com"}, "Action": "sns:*", "Resource": "*"},
        allow("sns:Publish", "*", Principal={"Service": "cloudwatch.amazonaws.com"}),
    )
    expect(evaluate(CLOUDWATCH, req, [], topic), "allowed", req, principal=CLOUDWATCH)
    expect(
        evaluate(ROLE, req, [identity(allow("sns:Publish", "*"))], topic),
        "explicit-deny",
        req,
        explicitly_denied(req, "resource-based"),
    )


def test_a_service_principal_is_allowed_by_the_resource_policy_alone():
    req = request(action="sns:Publish", resource="arn:aws:sns:us-east-1:123456789012:alerts")
    topic = resource_policy(
        allow(
            "sns:Publish",
            "arn:aws:sns:us-east-1:123456789012:alerts",
            Principal={"Service": "cloudwatch.amazonaws.com"},
        )
    )
    expect(evaluate(CLOUDWATCH, req, [], topic), "allowed", req, principal=CLOUDWATCH)
    other = request(action="sns:Publish", resource="arn:aws:sns:us-east-1:123456789012:approvals")
    expect(
        evaluate(CLOUDWATCH, other, [], topic),
        "implicit-deny",
        other,
        not_allowed(other, "resource-based", CLOUDWATCH),
        CLOUDWATCH,
    )
    events = Principal(arn="events.amazonaws.com", service="events.amazonaws.com")
    expect(evaluate(events, req, [], topic), "implicit-deny", req, not_allowed(req, "resource-based", events), events)


# --- KMS key policies ----------------------------------------------------------------------------------

ROOT_DELEGATION = {
    "Sid": "AccountAdministers",
    "Effect": "Allow",
    "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
    "Action": "kms:*",
    "Resource": "*",
}


def key(*stmts: dict[str, Any]) -> PolicyDocument:
    return resource_policy(*stmts, source="key policy of 1234abcd")


def kms(action: str = "kms:Decrypt", **context: Any) -> AuthorizationRequest:
    return request(action=action, resource=KEY_ARN, **context)


def test_kms_root_delegation_needs_an_identity_policy_allow():
    req = kms()
    decision = evaluate(ROLE, req, [identity(allow("kms:Decrypt", KEY_ARN))], key(ROOT_DELEGATION), key_policy=True)
    assert decision == Decision("allowed", StatementRef("MyRole/inline", 0, None), "identity-based")
    decision = evaluate(ROLE, req, [], key(ROOT_DELEGATION), key_policy=True)
    expect(decision, "implicit-deny", req, not_allowed(req, "identity-based"))
    decision = evaluate(ROLE, req, [identity(allow("kms:Encrypt", KEY_ARN))], key(ROOT_DELEGATION), key_policy=True)
    expect(decision, "implicit-deny", req, not_allowed(req, "identity-based"))


def test_kms_root_delegation_by_account_id_works_the_same():
    req = kms()
    policy = key({**ROOT_DELEGATION, "Principal": {"AWS": ACCOUNT}})
    assert evaluate(ROLE, req, [identity(allow("kms:Decrypt", KEY_ARN))], policy, key_policy=True).allowed


def test_a_key_policy_that_allows_the_role_directly_needs_no_identity_policy():
    req = kms()
    policy = key(
        {"Sid": "Direct", "Effect": "Allow", "Principal": {"AWS": ROLE_ARN}, "Action": "kms:Decrypt", "Resource": "*"}
    )
    decision = evaluate(ROLE, req, [], policy, key_policy=True)
    assert decision == Decision("allowed", StatementRef("key policy of 1234abcd", 0, "Direct"), "key")


def test_without_a_key_policy_grant_an_identity_policy_allow_is_not_enough():
    req = kms()
    policy = key(
        {"Effect": "Allow", "Principal": {"Service": "cloudwatch.amazonaws.com"}, "Action": "kms:*", "Resource": "*"}
    )
    decision = evaluate(ROLE, req, [identity(allow("kms:*", "*"))], policy, key_policy=True)
    assert decision.policy_type == "key"
    expect(decision, "implicit-deny", req, not_allowed(req, "resource-based"))
    assert denial_message(ROLE, req, decision).endswith(
        "because no resource-based policy allows the kms:Decrypt action"
    )
    # The same documents as a plain resource policy would allow: the key policy is what differs.
    assert evaluate(ROLE, req, [identity(allow("kms:*", "*"))], policy).allowed


def test_a_key_policy_grant_whose_condition_fails_delegates_nothing():
    req = kms(**{"kms:ViaService": "s3.us-east-1.amazonaws.com"})
    conditional = {**ROOT_DELEGATION, "Condition": {"StringEquals": {"kms:ViaService": "sns.us-east-1.amazonaws.com"}}}
    decision = evaluate(ROLE, req, [identity(allow("kms:*", "*"))], key(conditional), key_policy=True)
    expect(decision, "implicit-deny", req, not_allowed(req, "resource-based"))


def test_an_explicit_deny_in_a_key_policy_or_an_identity_policy_denies():
    req = kms()
    policy = key(ROOT_DELEGATION, {"Effect": "Deny", "Principal": "*", "Action": "kms:Decrypt", "Resource": "*"})
    decision = evaluate(ROLE, req, [identity(allow("kms:*", "*"))], policy, key_policy=True)
    assert decision.statement == StatementRef("key policy of 1234abcd", 1, None)
    expect(decision, "explicit-deny", req, explicitly_denied(req, "resource-based"))
    decision = evaluate(
        ROLE, req, [identity(allow("kms:*", "*"), deny("kms:*", "*"))], key(ROOT_DELEGATION), key_policy=True
    )
    expect(decision, "explicit-deny", req, explicitly_denied(req, "identity-based"))


def test_a_kms_key_in_another_account_needs_its_key_policy_and_the_callers_identity_policy():
    req = kms()
    theirs = [identity(allow("kms:Decrypt", KEY_ARN), source="Theirs/inline")]
    delegation = key(ROOT_DELEGATION, {**ROOT_DELEGATION, "Principal": {"AWS": f"arn:aws:iam::{OTHER}:root"}})
    assert evaluate(OTHER_ROLE, req, theirs, delegation, resource_account=ACCOUNT, key_policy=True).allowed
    decision = evaluate(OTHER_ROLE, req, [], delegation, resource_account=ACCOUNT, key_policy=True)
    expect(decision, "implicit-deny", req, not_allowed(req, "identity-based", OTHER_ROLE), OTHER_ROLE)
    direct = key({**ROOT_DELEGATION, "Principal": {"AWS": OTHER_ROLE.role_arn}})
    decision = evaluate(OTHER_ROLE, req, [], direct, resource_account=ACCOUNT, key_policy=True)
    expect(decision, "implicit-deny", req, not_allowed(req, "identity-based", OTHER_ROLE), OTHER_ROLE)
    assert evaluate(OTHER_ROLE, req, theirs, direct, resource_account=ACCOUNT, key_policy=True).allowed
    decision = evaluate(OTHER_ROLE, req, theirs, key(ROOT_DELEGATION), resource_account=ACCOUNT, key_policy=True)
    expect(decision, "implicit-deny", req, not_allowed(req, "resource-based", OTHER_ROLE), OTHER_ROLE)


# --- condition operators -----------------------------------------------------------------------------------


def condition_decision(condition: dict[str, Any], context: dict[str, Any], principal: Principal = ROLE):
    req = request(resource="*", **context)
    return req, evaluate(principal, req, [identity(allow(resource="*", Condition=condition))])


CONDITION_CASES = [
    # String
    ("StringEquals", "a", {"k": "a"}, True),
    ("StringEquals", "a", {"k": "A"}, False),
    ("StringEquals", "a", {}, False),
    ("StringEquals", ["a", "b"], {"k": "b"}, True),
    ("StringEquals", "a", {"k": ["b", "a"]}, True),
    ("StringEquals", "true", {"k": True}, True),
    ("StringEquals", "10", {"k": 10}, True),
    ("StringNotEquals", "a", {"k": "b"}, True),
    ("StringNotEquals", "a", {"k": "a"}, False),
    ("StringNotEquals", "a", {}, True),
    ("StringNotEquals", ["a", "b"], {"k": "b"}, False),
    ("StringNotEquals", ["a", "b"], {"k": "c"}, True),
    ("StringEqualsIgnoreCase", "Glue", {"k": "GLUE"}, True),
    ("StringEqualsIgnoreCase", "Glue", {"k": "Glues"}, False),
    ("StringEqualsIgnoreCase", "Glue", {}, False),
    ("StringNotEqualsIgnoreCase", "Glue", {"k": "gLUE"}, False),
    ("StringNotEqualsIgnoreCase", "Glue", {"k": "Other"}, True),
    ("StringNotEqualsIgnoreCase", "Glue", {}, True),
    ("StringLike", "incoming/*", {"k": "incoming/churn/a.csv"}, True),
    ("StringLike", "incoming/*", {"k": "Incoming/a.csv"}, False),
    ("StringLike", "incoming/*", {"k": "other/incoming/"}, False),
    ("StringLike", "?b", {"k": "ab"}, True),
    ("StringLike", "?b", {"k": "aab"}, False),
    ("StringLike", ["", "home/"], {"k": ""}, True),
    ("StringLike", "incoming/*", {}, False),
    ("StringNotLike", "incoming/*", {"k": "other/a"}, True),
    ("StringNotLike", "incoming/*", {"k": "incoming/a"}, False),
    ("StringNotLike", "incoming/*", {}, True),
    # Numeric
    ("NumericEquals", "10", {"k": 10}, True),
    ("NumericEquals", "10", {"k": "10.0"}, True),
    ("NumericEquals", 10, {"k": "11"}, False),
    ("NumericEquals", "10", {"k": "ten"}, False),
    ("NumericEquals", "10", {}, False),
    ("NumericNotEquals", "10", {"k": 11}, True),
    ("NumericNotEquals", "10", {"k": 10}, False),
    ("NumericNotEquals", "10", {}, True),
    ("NumericLessThan", "10", {"k": 9.5}, True),
    ("NumericLessThan", "10", {"k": 10}, False),
    ("NumericLessThanEquals", "10", {"k": 10}, True),
    ("NumericLessThanEquals", "10", {"k": 11}, False),
    ("NumericGreaterThan", "10", {"k": 11}, True),
    ("NumericGreaterThan", "10", {"k": 10}, False),
    ("NumericGreaterThanEquals", "10", {"k": 10}, True),
    ("NumericGreaterThanEquals", "10", {"k": 9}, False),
    ("NumericGreaterThanEquals", "10", {}, False),
    # Date: W3C ISO 8601 or epoch seconds, on either side
    ("DateEquals", "2024-01-01T00:00:00Z", {"k": "2024-01-01T00:00:00Z"}, True),
    ("DateEquals", "2024-01-01T00:00:00Z", {"k": 1704067200}, True),
    ("DateEquals", "1704067200", {"k": "2024-01-01T01:00:00+01:00"}, True),
    ("DateEquals", "2024-01-01T00:00:00Z", {"k": "2024-01-01T00:00:01Z"}, False),
    ("DateEquals", "2024-01-01T00:00:00Z", {"k": "not a date"}, False),
    ("DateEquals", "2024-01-01T00:00:00Z", {}, False),
    ("DateNotEquals", "2024-01-01T00:00:00Z", {"k": "2024-01-02T00:00:00Z"}, True),
    ("DateNotEquals", "2024-01-01T00:00:00Z", {"k": "2024-01-01T00:00:00Z"}, False),
    ("DateNotEquals", "2024-01-01T00:00:00Z", {}, True),
    ("DateLessThan", "2024-06-01T00:00:00Z", {"k": "2024-05-31T23:59:59Z"}, True),
    ("DateLessThan", "2024-06-01T00:00:00Z", {"k": "2024-06-01T00:00:00Z"}, False),
    ("DateLessThanEquals", "2024-06-01T00:00:00Z", {"k": "2024-06-01T00:00:00Z"}, True),
    ("DateLessThanEquals", "2024-06-01T00:00:00Z", {"k": "2024-06-01T00:00:01Z"}, False),
    ("DateGreaterThan", "2024-06-01", {"k": "2024-06-01T00:00:01Z"}, True),
    ("DateGreaterThan", "2024-06-01", {"k": "2024-06-01T00:00:00Z"}, False),
    ("DateGreaterThanEquals", "2024-06", {"k": "2024-06-01T00:00:00Z"}, True),
    ("DateGreaterThanEquals", "2024", {"k": "2023-12-31T23:59:59Z"}, False),
    # Bool
    ("Bool", "true", {"k": True}, True),
    ("Bool", "true", {"k": "true"}, True),
    ("Bool", "true", {"k": "false"}, False),
    ("Bool", "false", {"k": False}, True),
    ("Bool", True, {"k": "TRUE"}, True),
    ("Bool", "true", {"k": "yes"}, False),
    ("Bool", "true", {}, False),
    ("Bool", "false", {}, False),
    # Binary
    ("BinaryEquals", "QmluYXJ5VmFsdWVJbkJhc2U2NA==", {"k": b"BinaryValueInBase64"}, True),
    ("BinaryEquals", "QmluYXJ5VmFsdWVJbkJhc2U2NA==", {"k": "QmluYXJ5VmFsdWVJbkJhc2U2NA=="}, True),
    ("BinaryEquals", "QmluYXJ5VmFsdWVJbkJhc2U2NA==", {"k": b"other"}, False),
    ("BinaryEquals", "QmluYXJ5VmFsdWVJbkJhc2U2NA==", {}, False),
    # IP addresses
    ("IpAddress", "203.0.113.0/24", {"k": "203.0.113.5"}, True),
    ("IpAddress", "203.0.113.0/24", {"k": "198.51.100.1"}, False),
    ("IpAddress", "203.0.113.0/24", {"k": "2001:db8::1"}, False),
    ("IpAddress", "203.0.113.0/24", {"k": "not an address"}, False),
    ("IpAddress", "203.0.113.7", {"k": "203.0.113.7"}, True),
    ("IpAddress", "203.0.113.7", {"k": "203.0.113.8"}, False),
    ("IpAddress", ["198.51.100.0/24", "2001:DB8:1234:5678::/64"], {"k": "2001:db8:1234:5678::9"}, True),
    ("IpAddress", "203.0.113.0/24", {}, False),
    ("NotIpAddress", "203.0.113.0/24", {"k": "198.51.100.1"}, True),
    ("NotIpAddress", "203.0.113.0/24", {"k": "203.0.113.5"}, False),
    ("NotIpAddress", "203.0.113.0/24", {}, True),
    # ARNs: each of the six components on its own
    (
        "ArnLike",
        f"arn:aws:events:us-east-1:{ACCOUNT}:rule/stepml-*",
        {"k": f"arn:aws:events:us-east-1:{ACCOUNT}:rule/stepml-dev-Up"},
        True,
    ),
    ("ArnLike", f"arn:aws:events:*:{ACCOUNT}:rule/*", {"k": f"arn:aws:events:eu-west-1:{OTHER}:rule/x"}, False),
    ("ArnEquals", f"arn:aws:events:*:{ACCOUNT}:rule/*", {"k": f"arn:aws:events:eu-west-1:{ACCOUNT}:rule/x"}, True),
    ("ArnEquals", f"arn:aws:iam::{ACCOUNT}:role/MyRole", {"k": f"arn:aws:iam::{ACCOUNT}:role/myrole"}, False),
    (
        "ArnLike",
        "arn:aws:someservice:*:111122223333:finance/*",
        {"k": "arn:aws:someservice:us-east-2:999999999999:store/abc:111122223333:finance/document.txt"},
        False,
    ),
    (
        "StringLike",
        "arn:aws:someservice:*:111122223333:finance/*",
        {"k": "arn:aws:someservice:us-east-2:999999999999:store/abc:111122223333:finance/document.txt"},
        True,
    ),
    (
        "ArnLike",
        f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:*",
        {"k": f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:f:live"},
        True,
    ),
    ("ArnLike", f"arn:aws:sqs:*:{ACCOUNT}:*", {"k": "not-an-arn"}, False),
    ("ArnLike", f"arn:aws:sqs:*:{ACCOUNT}:*", {}, False),
    ("ArnNotEquals", f"arn:aws:iam::{ACCOUNT}:role/MyRole", {"k": f"arn:aws:iam::{ACCOUNT}:role/Else"}, True),
    ("ArnNotEquals", f"arn:aws:iam::{ACCOUNT}:role/MyRole", {"k": f"arn:aws:iam::{ACCOUNT}:role/MyRole"}, False),
    ("ArnNotLike", f"arn:aws:iam::{ACCOUNT}:role/*", {"k": f"arn:aws:iam::{ACCOUNT}:role/MyRole"}, False),
    ("ArnNotLike", f"arn:aws:iam::{ACCOUNT}:role/*", {}, True),
    # Null: "true" means the key is missing, "false" that it is present
    ("Null", "true", {}, True),
    ("Null", "true", {"k": "x"}, False),
    ("Null", "false", {"k": "x"}, True),
    ("Null", "false", {}, False),
    ("Null", False, {"k": ""}, True),
    # ...IfExists: a missing key passes, a present one is checked
    ("StringEqualsIfExists", "a", {}, True),
    ("StringEqualsIfExists", "a", {"k": "b"}, False),
    ("StringEqualsIfExists", "a", {"k": "a"}, True),
    ("StringNotEqualsIfExists", "a", {}, True),
    ("StringNotEqualsIfExists", "a", {"k": "a"}, False),
    ("NumericLessThanIfExists", "10", {}, True),
    ("NumericLessThanIfExists", "10", {"k": 11}, False),
    ("ArnLikeIfExists", "arn:aws:sns:*:*:t", {}, True),
    ("BoolIfExists", "true", {"k": "false"}, False),
    ("IpAddressIfExists", "10.0.0.0/8", {}, True),
    ("DateLessThanIfExists", "2024-01-01", {"k": "2025-01-01"}, False),
    # Set operators over multivalued keys (ForAllValues: true for a missing key, ForAnyValue: false)
    ("ForAllValues:StringEquals", ["a", "b"], {"k": ["a"]}, True),
    ("ForAllValues:StringEquals", ["a", "b"], {"k": ["a", "b"]}, True),
    ("ForAllValues:StringEquals", ["a", "b"], {"k": ["a", "c"]}, False),
    ("ForAllValues:StringEquals", ["a", "b"], {"k": []}, True),
    ("ForAllValues:StringEquals", ["a", "b"], {}, True),
    ("ForAllValues:StringLike", ["team-*"], {"k": ["team-a", "team-b"]}, True),
    ("ForAllValues:StringLike", ["team-*"], {"k": ["team-a", "owner"]}, False),
    ("ForAnyValue:StringEquals", ["a", "b"], {"k": ["c", "b"]}, True),
    ("ForAnyValue:StringEquals", ["a", "b"], {"k": ["c"]}, False),
    ("ForAnyValue:StringEquals", ["a", "b"], {"k": []}, False),
    ("ForAnyValue:StringEquals", ["a", "b"], {}, False),
    ("ForAnyValue:StringEquals", "a", {"k": "a"}, True),
    ("ForAllValues:StringNotEquals", ["a"], {"k": ["b", "c"]}, True),
    ("ForAllValues:StringNotEquals", ["a"], {"k": ["a", "b"]}, False),
    ("ForAllValues:StringNotEquals", ["a"], {}, True),
    ("ForAnyValue:StringNotEquals", ["a"], {"k": ["a", "b"]}, True),
    ("ForAnyValue:StringNotEquals", ["a"], {"k": ["a"]}, False),
    ("ForAnyValue:StringNotEquals", ["a"], {}, False),
    ("ForAnyValue:StringEqualsIfExists", ["a"], {}, True),
    (
        "ForAllValues:ArnLike",
        [f"arn:aws:iam::{ACCOUNT}:role/*"],
        {"k": [ROLE_ARN, f"arn:aws:iam::{OTHER}:role/x"]},
        False,
    ),
]


@pytest.mark.parametrize(
    ("operator", "values", "context", "holds"),
    CONDITION_CASES,
    ids=[f"{c[0]}-{i}" for i, c in enumerate(CONDITION_CASES)],
)
def test_condition_operators(operator, values, context, holds):
    req, decision = condition_decision({operator: {"k": values}}, context)
    expect(decision, "allowed" if holds else "implicit-deny", req, None if holds else not_allowed(req))


def test_every_documented_operator_family_is_covered_by_the_table():
    families = {case[0].rpartition(":")[2].removesuffix("IfExists") for case in CONDITION_CASES}
    documented = {
        *(f"String{s}" for s in ("Equals", "NotEquals", "EqualsIgnoreCase", "NotEqualsIgnoreCase", "Like", "NotLike")),
        *(
            f"{f}{s}"
            for f in ("Numeric", "Date")
            for s in ("Equals", "NotEquals", "LessThan", "LessThanEquals", "GreaterThan", "GreaterThanEquals")
        ),
        *("Bool", "BinaryEquals", "IpAddress", "NotIpAddress", "Null"),
        *("ArnEquals", "ArnLike", "ArnNotEquals", "ArnNotLike"),
    }
    assert documented <= families


@pytest.mark.parametrize(
    ("condition", "context", "holds"),
    [
        ({"StringEquals": {"AWS:SourceAccount": ACCOUNT}}, {"aws:sourceaccount": ACCOUNT}, True),
        ({"StringLike": {"s3:prefix": "incoming/*"}}, {"S3:Prefix": "incoming/x"}, True),
        ({"StringEquals": {"k1": "a", "k2": "b"}}, {"k1": "a", "k2": "b"}, True),
        ({"StringEquals": {"k1": "a", "k2": "b"}}, {"k1": "a"}, False),
        ({"StringEquals": {"k1": "a"}, "NumericLessThan": {"n": "3"}}, {"k1": "a", "n": 2}, True),
        ({"StringEquals": {"k1": "a"}, "NumericLessThan": {"n": "3"}}, {"k1": "a", "n": 4}, False),
        ({}, {}, True),
    ],
)
def test_condition_keys_are_case_insensitive_and_keys_and_operators_are_and_ed(condition, context, holds):
    req, decision = condition_decision(condition, context)
    expect(decision, "allowed" if holds else "implicit-deny", req, None if holds else not_allowed(req))


@pytest.mark.parametrize("operator", ["StringNotEquals", "StringNotEqualsIfExists"])
@pytest.mark.parametrize(
    ("context", "kind"), [({}, "explicit-deny"), ({"k": "a"}, "allowed"), ({"k": "b"}, "explicit-deny")]
)
def test_a_deny_with_a_negated_operator_denies_when_the_key_is_missing(operator, context, kind):
    req = request(**context)
    policy = identity(allow(), deny(Condition={operator: {"k": "a"}}))
    expect(evaluate(ROLE, req, [policy]), kind, req, explicitly_denied(req) if kind != "allowed" else None)


def test_a_statement_whose_condition_fails_neither_allows_nor_denies():
    req = request(k="b")
    policy = identity(allow(), deny(Condition={"StringEquals": {"k": "a"}}))
    expect(evaluate(ROLE, req, [policy]), "allowed", req)
    policy = identity(allow(Condition={"StringEquals": {"k": "a"}}))
    expect(evaluate(ROLE, req, [policy]), "implicit-deny", req, not_allowed(req))


# --- global keys from the principal ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("condition", "principal", "context", "holds"),
    [
        ({"ArnEquals": {"aws:PrincipalArn": ROLE_ARN}}, ROLE, {}, True),
        ({"ArnEquals": {"aws:PrincipalArn": SESSION_ARN}}, ROLE, {}, False),
        ({"StringEquals": {"aws:PrincipalAccount": ACCOUNT}}, ROLE, {}, True),
        ({"StringEquals": {"aws:PrincipalAccount": ACCOUNT}}, OTHER_ROLE, {}, False),
        ({"StringEquals": {"aws:PrincipalType": "AssumedRole"}}, ROLE, {}, True),
        ({"StringEquals": {"aws:PrincipalType": "User"}}, USER, {}, True),
        ({"StringEquals": {"aws:username": "alice"}}, USER, {}, True),
        ({"Null": {"aws:username": "true"}}, ROLE, {}, True),
        ({"Bool": {"aws:PrincipalIsAWSService": "false"}}, ROLE, {}, True),
        # The caller's context wins over what the principal implies.
        ({"StringEquals": {"aws:PrincipalAccount": ACCOUNT}}, ROLE, {"aws:PrincipalAccount": OTHER}, False),
        # Request facts are never invented: a caller that does not say TLS did not use it.
        ({"Bool": {"aws:SecureTransport": "true"}}, ROLE, {}, False),
        ({"Bool": {"aws:SecureTransport": "true"}}, ROLE, {"aws:SecureTransport": "true"}, True),
        ({"IpAddress": {"aws:SourceIp": "0.0.0.0/0"}}, ROLE, {}, False),
        (
            {
                "DateGreaterThan": {"aws:CurrentTime": "2020-01-01T00:00:00Z"},
                "DateLessThan": {"aws:CurrentTime": "2999-01-01T00:00:00Z"},
            },
            ROLE,
            {},
            True,
        ),
        ({"DateLessThan": {"aws:CurrentTime": "2020-01-01T00:00:00Z"}}, ROLE, {}, False),
        ({"NumericGreaterThan": {"aws:EpochTime": "1577836800"}}, ROLE, {}, True),
        ({"DateGreaterThan": {"aws:EpochTime": "2020-01-01T00:00:00Z"}}, ROLE, {}, True),
        ({"DateLessThan": {"aws:CurrentTime": "2020-01-01T00:00:00Z"}}, ROLE, {"aws:CurrentTime": "2019-06-01"}, True),
    ],
)
def test_global_keys_the_principal_implies(condition, principal, context, holds):
    req, decision = condition_decision(condition, context, principal)
    expect(
        decision,
        "allowed" if holds else "implicit-deny",
        req,
        None if holds else not_allowed(req, principal=principal),
        principal,
    )


def test_a_service_principal_carries_its_service_name():
    req = request(action="sns:Publish", resource="*")
    topic = resource_policy(
        allow(
            "sns:Publish",
            "*",
            Principal="*",
            Condition={"StringEquals": {"aws:PrincipalServiceName": "cloudwatch.amazonaws.com"}},
        )
    )
    expect(evaluate(CLOUDWATCH, req, [], topic), "allowed", req, principal=CLOUDWATCH)
    expect(evaluate(ROLE, req, [], topic), "implicit-deny", req, not_allowed(req))


# --- policy variables --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("principal", "resource", "kind"),
    [
        (USER, f"{BUCKET}/home/alice/notes.txt", "allowed"),
        (USER, f"{BUCKET}/home/bob/notes.txt", "implicit-deny"),
        # A role session has no aws:username: the statement with the variable does not apply.
        (ROLE, f"{BUCKET}/home/alice/notes.txt", "implicit-deny"),
        (ROLE, f"{BUCKET}/home/${{aws:username}}/notes.txt", "implicit-deny"),
    ],
)
def test_policy_variables_in_resources_come_from_the_request_context(principal, resource, kind):
    req = request(resource=resource)
    policy = identity(allow("s3:GetObject", f"{BUCKET}/home/${{aws:username}}/*"))
    expect(
        evaluate(principal, req, [policy]),
        kind,
        req,
        not_allowed(req, principal=principal) if kind != "allowed" else None,
        principal,
    )


def test_policy_variable_defaults_and_literal_escapes():
    default = identity(allow("s3:GetObject", f"{BUCKET}/home/${{aws:username, 'shared'}}/*"))
    assert evaluate(ROLE, request(resource=f"{BUCKET}/home/shared/x"), [default]).allowed
    assert evaluate(USER, request(resource=f"{BUCKET}/home/alice/x"), [default]).allowed
    assert not evaluate(USER, request(resource=f"{BUCKET}/home/shared/x"), [default]).allowed
    literal = identity(allow("s3:GetObject", f"{BUCKET}/${{*}}"))
    assert evaluate(ROLE, request(resource=f"{BUCKET}/*"), [literal]).allowed
    assert not evaluate(ROLE, request(resource=f"{BUCKET}/anything"), [literal]).allowed


def test_policy_variables_are_literal_text_before_version_2012_10_17():
    req = request(resource=f"{BUCKET}/home/alice/x")
    old = identity(allow("s3:GetObject", f"{BUCKET}/home/${{aws:username}}/*"), version=None)
    expect(evaluate(USER, req, [old]), "implicit-deny", req, not_allowed(req, principal=USER), USER)
    literal = request(resource=f"{BUCKET}/home/${{aws:username}}/x")
    assert evaluate(USER, literal, [old]).allowed


def test_policy_variables_in_condition_values():
    policy = identity(allow("s3:ListBucket", BUCKET, Condition={"StringLike": {"s3:prefix": "home/${aws:username}/*"}}))
    assert evaluate(USER, request("s3:ListBucket", BUCKET, **{"s3:prefix": "home/alice/2024/"}), [policy]).allowed
    assert not evaluate(USER, request("s3:ListBucket", BUCKET, **{"s3:prefix": "home/bob/"}), [policy]).allowed
    assert not evaluate(ROLE, request("s3:ListBucket", BUCKET, **{"s3:prefix": "home/alice/"}), [policy]).allowed


def test_a_deny_whose_variable_cannot_be_filled_does_not_apply_as_aws_documents():
    req = request(resource=f"{BUCKET}/k")
    policy = identity(allow(), deny(Condition={"StringNotEquals": {"aws:ResourceTag/owner": "${aws:username}"}}))
    expect(evaluate(ROLE, req, [policy]), "allowed", req)
    expect(
        evaluate(USER, request(**{"aws:ResourceTag/owner": "bob"}), [policy]),
        "explicit-deny",
        request(**{"aws:ResourceTag/owner": "bob"}),
        explicitly_denied(request(), principal=USER),
        USER,
    )


# --- policies IAM refuses ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("statement", "message"),
    [
        (allow(Condition={"StringEqualz": {"k": "a"}}), "unknown condition operator 'StringEqualz'"),
        (allow(Condition={"ForSomeValues:StringEquals": {"k": "a"}}), "unknown condition set operator"),
        (allow(Condition={"NullIfExists": {"k": "true"}}), "unknown condition operator 'NullIfExists'"),
        (allow(Condition={"ForAnyValue:Null": {"k": "true"}}), "unknown condition operator 'ForAnyValue:Null'"),
        (allow(Condition={"IfExists": {"k": "a"}}), "unknown condition operator 'IfExists'"),
        (allow(Condition={"NumericEquals": {"k": "ten"}}), "'ten' is not a number"),
        (allow(Condition={"DateLessThan": {"k": "tomorrow"}}), "'tomorrow' is not an ISO 8601 date"),
        (allow(Condition={"IpAddress": {"aws:SourceIp": "10.0.0.300/8"}}), "is not an IP address"),
        (allow(Condition={"Bool": {"aws:SecureTransport": "yes"}}), "'yes' is not true or false"),
        (allow(Condition={"Null": {"k": "maybe"}}), "'maybe' is not true or false"),
        (allow(Condition={"BinaryEquals": {"k": "not base64!"}}), "is not base64"),
        (allow(Condition={"StringEquals": {"k": {"nested": 1}}}), "condition values are strings"),
        (allow(Condition={"StringEquals": "k"}), "must map condition keys to values"),
        (allow(Principal="*"), "an identity-based policy cannot name a Principal"),
        ({"Effect": "allow", "Action": "s3:*", "Resource": "*"}, "Effect must be Allow or Deny"),
        ({"Effect": "Allow", "Action": "s3:*", "NotAction": "iam:*", "Resource": "*"}, "exactly one of Action"),
        ({"Effect": "Allow", "Resource": "*"}, "exactly one of Action"),
        ({"Effect": "Allow", "Action": "s3:*"}, "exactly one of Resource"),
        ({"Effect": "Allow", "Action": "GetObject", "Resource": "*"}, "must be prefixed by its service"),
        ({"Effect": "Allow", "Action": [], "Resource": "*"}, "non-empty list of strings"),
        ({"Effect": "Allow", "Action": "s3:*", "Resource": "my-bucket"}, 'must be "*" or an ARN'),
        ({"Effect": "Allow", "Action": "s3:*", "Resources": "*"}, "unknown statement element"),
    ],
)
def test_a_policy_iam_would_refuse_raises_policy_error_naming_the_policy(statement, message):
    # Refused whatever the request: even a statement that could never match it.
    policy = identity(allow("sqs:*", "*"), statement, source="MyRole/broken")
    with pytest.raises(PolicyError, match="MyRole/broken: statement 1") as raised:
        evaluate(ROLE, request(action="sqs:SendMessage", resource="*"), [policy])
    assert message in str(raised.value)


@pytest.mark.parametrize(
    ("statement", "message"),
    [
        (allow(), "exactly one of Principal or NotPrincipal"),
        ({**allow(), "NotPrincipal": {"AWS": ROLE_ARN}}, "NotPrincipal is supported only with Effect Deny"),
        (allow(Principal={"AWS": f"arn:aws:iam::{ACCOUNT}:role/*"}), "a wildcard cannot match part of a principal"),
        (allow(Principal={"AWS": "somebody"}), "an account id or an ARN"),
        (allow(Principal={"Group": "admins"}), "unknown principal type"),
        (allow(Principal="everyone"), "Principal must be"),
    ],
)
def test_a_resource_policy_iam_would_refuse_raises_policy_error(statement, message):
    bucket = resource_policy(statement, source="bucket policy of broken")
    with pytest.raises(PolicyError, match="bucket policy of broken: statement 0") as raised:
        evaluate(ROLE, request(), [identity(allow())], bucket)
    assert message in str(raised.value)


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"Version": "2012-10-17"}, "has no Statement"),
        ({"Version": "2012-10-17", "Statement": "Allow"}, "Statement is an object or a list"),
        ({"Version": "2012-10-17", "Statement": ["Allow"]}, "statement 0 is not a JSON object"),
        ({"Version": "2020-01-01", "Statement": []}, "unsupported policy Version"),
        ({"Version": "2012-10-17", "Statement": [], "Statements": []}, "unknown policy element"),
    ],
)
def test_a_malformed_document_raises_policy_error(document, message):
    with pytest.raises(PolicyError, match=message):
        evaluate(ROLE, request(), [PolicyDocument("MyRole/broken", document)])


# --- mutation helpers ------------------------------------------------------------------------------------------


def test_without_statement_removes_one_statement_from_a_copy():
    original = identity(allow(Sid="Read"), allow("s3:PutObject", Sid="Write"))
    snapshot = copy.deepcopy(original.document)
    mutated = without_statement(original, 0)
    assert original.document == snapshot
    assert mutated.source == original.source
    assert [s["Sid"] for _, s in statements(mutated.document)] == ["Write"]
    req = request()
    assert evaluate(ROLE, req, [original]).allowed
    expect(evaluate(ROLE, req, [mutated]), "implicit-deny", req, not_allowed(req))
    with pytest.raises(PolicyError, match="no statement 2"):
        without_statement(original, 2)


def test_without_action_removes_one_action_and_an_emptied_statement():
    original = identity(allow(["s3:GetObject", "s3:PutObject"]), allow("s3:ListBucket", BUCKET))
    mutated = without_action(original, 0, "s3:GetObject")
    assert statements(mutated.document)[0][1]["Action"] == "s3:PutObject"
    assert not evaluate(ROLE, request(), [mutated]).allowed
    assert evaluate(ROLE, request("s3:PutObject"), [mutated]).allowed
    emptied = without_action(mutated, 0, "s3:PutObject")
    assert [s["Action"] for _, s in statements(emptied.document)] == ["s3:ListBucket"]
    assert without_action(original, 1, "s3:ListBucket").document["Statement"] == [
        allow(["s3:GetObject", "s3:PutObject"])
    ]
    assert original.document["Statement"][0]["Action"] == ["s3:GetObject", "s3:PutObject"]
    with pytest.raises(PolicyError, match="does not list 's3:DeleteObject'"):
        without_action(original, 0, "s3:DeleteObject")
    not_action = identity({"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"})
    with pytest.raises(PolicyError, match="has no Action element"):
        without_action(not_action, 0, "iam:*")


def test_without_resource_removes_one_resource():
    original = identity(allow("s3:GetObject", [f"{BUCKET}/a/*", f"{BUCKET}/b/*"]))
    mutated = without_resource(original, 0, f"{BUCKET}/a/*")
    assert not evaluate(ROLE, request(resource=f"{BUCKET}/a/k"), [mutated]).allowed
    assert evaluate(ROLE, request(resource=f"{BUCKET}/b/k"), [mutated]).allowed
    assert statements(without_resource(mutated, 0, f"{BUCKET}/b/*").document) == []


def test_evaluation_reads_the_documents_on_every_call():
    document = {"Version": "2012-10-17", "Statement": [allow()]}
    policy = PolicyDocument("MyRole/inline", document)
    req = request()
    assert evaluate(ROLE, req, [policy]).allowed
    document["Statement"].clear()
    expect(evaluate(ROLE, req, [policy]), "implicit-deny", req, not_allowed(req))


def test_denial_message_can_leave_the_resource_out():
    req = request(action="cloudwatch:PutMetricData", resource="*")
    decision = evaluate(ROLE, req, [])
    assert denial_message(ROLE, req, decision, with_resource=False) == (
        f"User: {SESSION_ARN} is not authorized to perform: cloudwatch:PutMetricData"
        " because no identity-based policy allows the cloudwatch:PutMetricData action"
    )
    assert denial_message(ROLE, req, decision) == not_allowed(req)


# --- the template's own statements ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def template() -> ResolvedTemplate:
    return ResolvedTemplate(
        load_template(REPO_ROOT / "template.yaml"), stack_name="stepml-dev", region="us-east-1", account_id=ACCOUNT
    )


def role_policies(template: ResolvedTemplate, logical_id: str) -> list[PolicyDocument]:
    """A role's or a function's inline policies as the evaluator receives them."""
    policies = template.resolved_properties(logical_id)["Policies"]
    return [
        PolicyDocument(f"{logical_id}/{p.get('PolicyName', i)}", p.get("PolicyDocument", p))
        for i, p in enumerate(policies)
    ]


def session(template: ResolvedTemplate, logical_id: str) -> Principal:
    name = template.physical_ids[logical_id]
    return Principal(
        arn=f"arn:aws:sts::{ACCOUNT}:assumed-role/{name}/s", role_arn=f"arn:aws:iam::{ACCOUNT}:role/{name}"
    )


def function_session(template: ResolvedTemplate, logical_id: str) -> Principal:
    # SAM names a function's generated role <Function>Role.
    name = f"{template.physical_ids[logical_id]}Role"
    return Principal(
        arn=f"arn:aws:sts::{ACCOUNT}:assumed-role/{name}/{logical_id}", role_arn=f"arn:aws:iam::{ACCOUNT}:role/{name}"
    )


@pytest.mark.parametrize(
    ("bucket", "key"), [("UploadBucket", "incoming/churn/a.csv"), ("ArtifactBucket", "processed/x")]
)
@pytest.mark.parametrize(
    ("secure", "kind"), [("false", "explicit-deny"), (False, "explicit-deny"), ("true", "allowed")]
)
def test_the_templates_tls_only_bucket_policies(template, bucket, key, secure, kind):
    principal = session(template, "PreprocessJobRole")
    policy_logical = f"{bucket}Policy"
    bucket_policy = PolicyDocument(policy_logical, template.resolved_properties(policy_logical)["PolicyDocument"])
    # The Glue job reads uploads only by version (the one the run recorded), its own outputs by key.
    action = "s3:GetObjectVersion" if bucket == "UploadBucket" else "s3:GetObject"
    req = request(action, f"arn:aws:s3:::{template.ref(bucket)}/{key}", **{"aws:SecureTransport": secure})
    decision = evaluate(principal, req, role_policies(template, "PreprocessJobRole"), bucket_policy)
    expect(
        decision,
        kind,
        req,
        explicitly_denied(req, "resource-based", principal) if kind != "allowed" else None,
        principal,
    )
    if kind == "explicit-deny":
        assert decision.statement == StatementRef(policy_logical, 0, "DenyInsecureTransport")


def test_the_templates_tls_only_topic_and_queue_policies(template):
    topic_policy = PolicyDocument("TopicPolicy", template.resolved_properties("TopicPolicy")["PolicyDocument"])
    alert_topic = template.ref("AlertTopic")
    sfn = session(template, "PipelineStateMachineRole")
    for secure, kind in (("false", "explicit-deny"), ("true", "allowed")):
        req = request("sns:Publish", alert_topic, **{"aws:SecureTransport": secure})
        decision = evaluate(sfn, req, role_policies(template, "PipelineStateMachineRole"), topic_policy)
        expect(decision, kind, req, explicitly_denied(req, "resource-based", sfn) if kind != "allowed" else None, sfn)
        # CloudWatch alarms publish to the alert topic on the topic policy alone, over TLS only.
        req = request("sns:Publish", alert_topic, **{"aws:SecureTransport": secure, "aws:SourceAccount": ACCOUNT})
        decision = evaluate(CLOUDWATCH, req, [], topic_policy)
        message = explicitly_denied(req, "resource-based", CLOUDWATCH) if kind != "allowed" else None
        expect(decision, kind, req, message, CLOUDWATCH)
    req = request(
        "sns:Publish", template.ref("ApprovalTopic"), **{"aws:SecureTransport": "true", "aws:SourceAccount": ACCOUNT}
    )
    expect(
        evaluate(CLOUDWATCH, req, [], topic_policy),
        "implicit-deny",
        req,
        not_allowed(req, "resource-based", CLOUDWATCH),
        CLOUDWATCH,
    )
    req = request("sns:Publish", alert_topic, **{"aws:SecureTransport": "true", "aws:SourceAccount": OTHER})
    expect(
        evaluate(CLOUDWATCH, req, [], topic_policy),
        "implicit-deny",
        req,
        not_allowed(req, "resource-based", CLOUDWATCH),
        CLOUDWATCH,
    )
    queue_policy = PolicyDocument(
        "DLQ", template.resolved_properties("UploadEventDeadLetterQueuePolicy")["PolicyDocument"]
    )
    events = Principal(arn="events.amazonaws.com", service="events.amazonaws.com")
    queue = template.get_att("UploadEventDeadLetterQueue", "Arn")
    rule = template.get_att("UploadRule", "Arn")
    req = request("sqs:SendMessage", queue, **{"aws:SecureTransport": "true", "aws:SourceArn": rule})
    expect(evaluate(events, req, [], queue_policy), "allowed", req, principal=events)
    req = request("sqs:SendMessage", queue, **{"aws:SecureTransport": "false", "aws:SourceArn": rule})
    expect(
        evaluate(events, req, [], queue_policy),
        "explicit-deny",
        req,
        explicitly_denied(req, "resource-based", events),
        events,
    )
    req = request("sqs:SendMessage", queue, **{"aws:SecureTransport": "true", "aws:SourceArn": rule + "-other"})
    expect(
        evaluate(events, req, [], queue_policy),
        "implicit-deny",
        req,
        not_allowed(req, "resource-based", events),
        events,
    )


@pytest.mark.parametrize(
    ("role", "context", "kind"),
    [
        ("SageMakerExecutionRole", {"iam:PassedToService": "sagemaker.amazonaws.com"}, "allowed"),
        ("SageMakerExecutionRole", {"iam:PassedToService": "glue.amazonaws.com"}, "implicit-deny"),
        ("SageMakerExecutionRole", {}, "implicit-deny"),
        ("PreprocessJobRole", {"iam:PassedToService": "sagemaker.amazonaws.com"}, "implicit-deny"),
    ],
)
def test_the_templates_pass_role_is_only_for_sagemaker(template, role, context, kind):
    sfn = session(template, "PipelineStateMachineRole")
    req = request("iam:PassRole", template.get_att(role, "Arn"), **context)
    decision = evaluate(sfn, req, role_policies(template, "PipelineStateMachineRole"))
    expect(decision, kind, req, not_allowed(req, principal=sfn) if kind != "allowed" else None, sfn)
    if kind == "allowed":
        assert decision.statement.sid == "PassSageMakerRole"


@pytest.mark.parametrize(
    ("context", "kind"),
    [
        ({"s3:prefix": "datasets/churn.json"}, "allowed"),
        ({"s3:prefix": "processed/"}, "implicit-deny"),
        ({}, "implicit-deny"),
    ],
)
def test_the_templates_config_listing_needs_the_datasets_prefix(template, context, kind):
    resolve = function_session(template, "ResolveRunFunction")
    req = request("s3:ListBucket", template.get_att("ArtifactBucket", "Arn"), **context)
    decision = evaluate(resolve, req, role_policies(template, "ResolveRunFunction"))
    expect(decision, kind, req, not_allowed(req, principal=resolve) if kind != "allowed" else None, resolve)
    if kind == "allowed":
        assert decision.statement.sid == "FindDatasetConfigs"


def test_the_templates_glue_role_reads_uploads_only_by_version(template):
    glue = session(template, "PreprocessJobRole")
    upload = f"arn:aws:s3:::{template.ref('UploadBucket')}"
    for req in (request("s3:GetObject", f"{upload}/incoming/churn/a.csv"), request("s3:ListBucket", upload)):
        expect(
            evaluate(glue, req, role_policies(template, "PreprocessJobRole")),
            "implicit-deny",
            req,
            not_allowed(req, principal=glue),
            glue,
        )
    req = request("s3:GetObjectVersion", f"{upload}/incoming/churn/a.csv")
    expect(evaluate(glue, req, role_policies(template, "PreprocessJobRole")), "allowed", req, principal=glue)


@pytest.mark.parametrize(
    ("role", "namespace", "kind"),
    [
        ("PreprocessJobRole", "Glue", "allowed"),
        ("PreprocessJobRole", "glue", "implicit-deny"),
        ("PreprocessJobRole", "AWS/Glue", "implicit-deny"),
        ("SageMakerExecutionRole", "/aws/sagemaker/TrainingJobs", "allowed"),
        ("SageMakerExecutionRole", "AWS/SageMaker", "implicit-deny"),
        ("SageMakerExecutionRole", None, "implicit-deny"),
    ],
)
def test_the_templates_metric_namespaces(template, role, namespace, kind):
    principal = session(template, role)
    context = {} if namespace is None else {"cloudwatch:namespace": namespace}
    req = request("cloudwatch:PutMetricData", "*", **context)
    decision = evaluate(principal, req, role_policies(template, role))
    expect(decision, kind, req, not_allowed(req, principal=principal) if kind != "allowed" else None, principal)
    if kind == "allowed":
        assert decision.statement.sid == "JobMetrics"


@pytest.mark.parametrize(
    ("identity_name", "from_address", "kind"),
    [
        ("stepml-approvals@example.com", "stepml-approvals@example.com", "allowed"),
        ("example.com", "stepml-approvals@example.com", "allowed"),
        ("approver@example.com", "stepml-approvals@example.com", "allowed"),
        ("stepml-approvals@example.com", "someone-else@example.com", "implicit-deny"),
        ("stepml-approvals@example.com", None, "implicit-deny"),
        # Any recipient identity of the account (dataset configs name the approvers), never another sender.
        ("other.example", "stepml-approvals@example.com", "allowed"),
        ("other.example", "someone-else@example.com", "implicit-deny"),
    ],
)
def test_the_templates_approval_email_is_sent_only_from_the_sender(template, identity_name, from_address, kind):
    principal = function_session(template, "RequestApprovalFunction")
    context = {} if from_address is None else {"ses:FromAddress": from_address}
    req = request("ses:SendEmail", f"arn:aws:ses:us-east-1:{ACCOUNT}:identity/{identity_name}", **context)
    decision = evaluate(principal, req, role_policies(template, "RequestApprovalFunction"))
    expect(decision, kind, req, not_allowed(req, principal=principal) if kind != "allowed" else None, principal)


def test_the_templates_notification_key_delegates_to_identity_policies(template):
    key_policy = PolicyDocument("NotificationKey", template.resolved_properties("NotificationKey")["KeyPolicy"])
    key_arn = template.get_att("NotificationKey", "Arn")
    sfn = session(template, "PipelineStateMachineRole")
    req = request("kms:GenerateDataKey", key_arn)
    decision = evaluate(sfn, req, role_policies(template, "PipelineStateMachineRole"), key_policy, key_policy=True)
    assert decision.allowed and decision.statement.sid == "EncryptedTopics"
    glue = session(template, "PreprocessJobRole")
    decision = evaluate(glue, req, role_policies(template, "PreprocessJobRole"), key_policy, key_policy=True)
    expect(decision, "implicit-deny", req, not_allowed(req, principal=glue), glue)
    req = request("kms:Decrypt", key_arn, **{"aws:SourceAccount": ACCOUNT})
    decision = evaluate(CLOUDWATCH, req, [], key_policy, key_policy=True)
    assert decision == Decision("allowed", StatementRef("NotificationKey", 1, "CloudWatchAlarmsPublish"), "key")
    req = request("kms:Encrypt", key_arn, **{"aws:SourceAccount": ACCOUNT})
    expect(
        evaluate(CLOUDWATCH, req, [], key_policy, key_policy=True),
        "implicit-deny",
        req,
        not_allowed(req, "resource-based", CLOUDWATCH),
        CLOUDWATCH,
    )


def test_the_templates_approval_signing_key_serves_only_the_functions_that_sign(template):
    key_policy = PolicyDocument("ApprovalSigningKey", template.resolved_properties("ApprovalSigningKey")["KeyPolicy"])
    key_arn = template.get_att("ApprovalSigningKey", "Arn")
    for function, action, kind in (
        ("RequestApprovalFunction", "kms:GenerateMac", "allowed"),
        ("RequestApprovalFunction", "kms:VerifyMac", "implicit-deny"),
        ("ApprovalApiFunction", "kms:VerifyMac", "allowed"),
        ("EvaluateFunction", "kms:GenerateMac", "implicit-deny"),
    ):
        principal = function_session(template, function)
        req = request(action, key_arn)
        decision = evaluate(principal, req, role_policies(template, function), key_policy, key_policy=True)
        expect(decision, kind, req, not_allowed(req, principal=principal) if kind != "allowed" else None, principal)


def test_every_template_policy_is_one_the_evaluator_accepts(template):
    # Each identity and resource policy in the template reads without a PolicyError.
    probe = request("sts:GetCallerIdentity", "*")
    for logical_id, spec in template.resources.items():
        props = template.resolved_properties(logical_id) if spec["Type"] != "AWS::Serverless::LayerVersion" else {}
        if "Policies" in props and spec["Type"] in ("AWS::IAM::Role", "AWS::Serverless::Function"):
            evaluate(ROLE, probe, role_policies(template, logical_id))
        for element in ("PolicyDocument", "KeyPolicy"):
            if element in props and spec["Type"] != "AWS::IAM::Role":
                evaluate(ROLE, probe, [], PolicyDocument(logical_id, props[element]))
