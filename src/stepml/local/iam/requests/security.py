"""What a KMS, IAM, STS or Cognito user pools call asks IAM for."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from stepml.local.iam.model import AuthorizationRequest
from stepml.local.iam.requests.common import (
    CallEnv,
    kms_key_resource,
    need,
    request_tag_context,
    role_arn_of,
    tag_map,
    with_tag_on_create,
)

# --- KMS ---

# Source: Service Authorization Reference for AWS KMS and the KMS Developer Guide ("AWS KMS
# condition keys": kms:EncryptionContext:*, kms:EncryptionContextKeys, kms:MacAlgorithm,
# kms:EncryptionAlgorithm, kms:SigningAlgorithm, kms:RequestAlias, kms:KeySpec, kms:KeyUsage,
# kms:KeyOrigin, kms:MultiRegion, kms:GrantOperations; CreateAlias needs kms:CreateAlias on
# the alias and on the key; CreateKey with tags also needs kms:TagResource).


def _kms_context(params: Mapping[str, Any], key_id: str | None) -> dict[str, Any]:
    context: dict[str, Any] = {}
    encryption_context = params.get("EncryptionContext")
    if isinstance(encryption_context, Mapping) and encryption_context:
        context.update({f"kms:EncryptionContext:{key}": value for key, value in encryption_context.items()})
        context["kms:EncryptionContextKeys"] = list(encryption_context)
    for member, key in (
        ("MacAlgorithm", "kms:MacAlgorithm"),
        ("EncryptionAlgorithm", "kms:EncryptionAlgorithm"),
        ("SigningAlgorithm", "kms:SigningAlgorithm"),
        ("KeyPairSpec", "kms:DataKeyPairSpec"),
    ):
        if params.get(member):
            context[key] = params[member]
    if key_id and (key_id.startswith("alias/") or ":alias/" in key_id):
        context["kms:RequestAlias"] = key_id.split(":", 5)[-1] if key_id.startswith("arn:") else key_id
    return context


def kms_requests(env: CallEnv) -> list[AuthorizationRequest] | None:
    """What a KMS call asks IAM for (None: no rule here, the default applies)."""
    operation = env.call.operation
    params = env.params
    action = f"kms:{operation}"
    base = {"kms:CallerAccount": env.account}
    if operation == "CreateKey":
        context = {
            **base,
            "kms:KeySpec": params.get("KeySpec") or params.get("CustomerMasterKeySpec") or "SYMMETRIC_DEFAULT",
            "kms:KeyUsage": params.get("KeyUsage") or "ENCRYPT_DECRYPT",
            "kms:KeyOrigin": params.get("Origin") or "AWS_KMS",
            "kms:MultiRegion": bool(params.get("MultiRegion", False)),
            "kms:BypassPolicyLockoutSafetyCheck": bool(params.get("BypassPolicyLockoutSafetyCheck", False)),
        }
        return with_tag_on_create(env, [need(action, "*", context)])
    if operation in ("CreateAlias", "UpdateAlias", "DeleteAlias"):
        alias = str(params.get("AliasName", ""))
        requests = [need(action, env.arn("kms", alias), base)]
        target = params.get("TargetKeyId") or (alias if operation == "DeleteAlias" else None)
        if target:
            requests.append(need(action, kms_key_resource(env, str(target)), base))
        return requests
    if operation in ("ReEncrypt",):
        source = params.get("SourceKeyId") or env.optional("kms_key_of_ciphertext", params.get("CiphertextBlob"))
        source_context = {**base, **_kms_context({"EncryptionContext": params.get("SourceEncryptionContext")}, source)}
        destination = str(params.get("DestinationKeyId", ""))
        destination_context = {
            **base,
            **_kms_context({"EncryptionContext": params.get("DestinationEncryptionContext")}, destination),
        }
        return [
            need("kms:ReEncryptFrom", kms_key_resource(env, str(source)) if source else "*", source_context),
            need("kms:ReEncryptTo", kms_key_resource(env, destination), destination_context),
        ]
    key_id = params.get("KeyId")
    if key_id is None and operation == "Decrypt":
        key_id = env.optional("kms_key_of_ciphertext", params.get("CiphertextBlob"))
        if key_id is None:
            return [need(action, "*", {**base, **_kms_context(params, None)})]
    if key_id is None:
        return None  # ListKeys, ListAliases, GenerateRandom, CreateCustomKeyStore ...: "*"
    context = {**base, **_kms_context(params, str(key_id))}
    if operation == "CreateGrant":
        context.update(
            {
                "kms:GrantOperations": params.get("Operations"),
                "kms:GranteePrincipal": params.get("GranteePrincipal"),
                "kms:RetiringPrincipal": params.get("RetiringPrincipal"),
            }
        )
    return [need(action, kms_key_resource(env, str(key_id)), context)]


# --- IAM, STS ---


def _iam_path(params: Mapping[str, Any]) -> str:
    path = str(params.get("Path") or "/")
    return path if path.endswith("/") else path + "/"


def iam_requests(env: CallEnv) -> list[AuthorizationRequest] | None:
    """What an IAM call asks IAM for (None: no rule here, the default applies)."""
    operation = env.call.operation
    params = env.params
    action = f"iam:{operation}"
    iam_arn = functools.partial(env.arn, "iam", region="")
    context: dict[str, Any] = {
        "iam:PolicyARN": params.get("PolicyArn")
        if "RoleName" in params or "UserName" in params or "GroupName" in params
        else None,
        "iam:PermissionsBoundary": params.get("PermissionsBoundary"),
    }
    resource: str | None = None
    if operation in ("CreateRole", "CreateUser", "CreateGroup", "CreatePolicy", "CreateInstanceProfile"):
        kind = {"CreateRole": "role", "CreateUser": "user", "CreateGroup": "group", "CreatePolicy": "policy",
                "CreateInstanceProfile": "instance-profile"}[operation]  # fmt: skip
        name = (
            params.get("RoleName")
            or params.get("UserName")
            or params.get("GroupName")
            or params.get("PolicyName")
            or params.get("InstanceProfileName")
        )
        resource = iam_arn(f"{kind}{_iam_path(params)}{name}")
    elif operation == "CreateServiceLinkedRole":
        service = str(params.get("AWSServiceName", ""))
        resource = iam_arn(f"role/aws-service-role/{service}/*")
        context["iam:AWSServiceName"] = service
    elif params.get("RoleName"):
        resource = role_arn_of(env, str(params["RoleName"]))
    elif params.get("UserName"):
        resource = iam_arn(f"user/{params['UserName']}")
    elif params.get("GroupName"):
        resource = iam_arn(f"group/{params['GroupName']}")
    elif params.get("InstanceProfileName"):
        resource = iam_arn(f"instance-profile/{params['InstanceProfileName']}")
    elif params.get("PolicyArn"):
        resource = params["PolicyArn"]
    elif params.get("PolicySourceArn"):
        resource = params["PolicySourceArn"]
    elif params.get("OpenIDConnectProviderArn") or params.get("SAMLProviderArn"):
        resource = params.get("OpenIDConnectProviderArn") or params.get("SAMLProviderArn")
    if resource is None:
        return None
    context.update(request_tag_context(tag_map(params.get("Tags"))))
    return with_tag_on_create(env, [need(action, resource, context)])


def sts_requests(env: CallEnv) -> list[AuthorizationRequest] | None:
    """What an STS call asks IAM for (None: no rule here, the default applies)."""
    operation = env.call.operation
    params = env.params
    if operation in ("GetCallerIdentity", "GetSessionToken"):
        return []  # no permission needed (STS API Reference)
    if operation in ("AssumeRole", "AssumeRoleWithWebIdentity", "AssumeRoleWithSAML"):
        role = str(params.get("RoleArn", ""))
        context = {
            "sts:RoleSessionName": params.get("RoleSessionName"),
            "sts:ExternalId": params.get("ExternalId"),
            "sts:SourceIdentity": params.get("SourceIdentity"),
            **request_tag_context(tag_map(params.get("Tags"))),
        }
        if params.get("TransitiveTagKeys"):
            context["sts:TransitiveTagKeys"] = params["TransitiveTagKeys"]
        requests = [need(f"sts:{operation}", role, context)]
        if params.get("Tags") or params.get("TransitiveTagKeys"):
            requests.append(need("sts:TagSession", role, context))
        if params.get("SourceIdentity"):
            requests.append(need("sts:SetSourceIdentity", role, context))
        return requests
    return None


# --- Cognito user pools ---

# Source: Service Authorization Reference for Amazon Cognito User Pools: the operations on a pool
# and its clients, users and groups (ListUserPoolClients, DescribeUserPoolClient, AdminGetUser ...)
# have the resource type userpool, arn:${Partition}:cognito-idp:${Region}:${Account}:userpool/${UserPoolId}.


def cognito_idp_requests(env: CallEnv) -> list[AuthorizationRequest] | None:
    """What a cognito-idp call on one user pool asks IAM for (None: the default applies)."""
    pool = env.params.get("UserPoolId")
    if not isinstance(pool, str) or not pool:
        return None
    return [need(f"cognito-idp:{env.call.operation}", env.arn("cognito-idp", f"userpool/{pool}"))]
