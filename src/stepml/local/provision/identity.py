"""Creators of the approval page's sign-in (``ApprovalSignIn=cognito``): the Cognito user pool,
its hosted UI domain and its app client, in moto's cognito-idp."""

from __future__ import annotations

from typing import Any

from stepml.local.provision.base import ProvisionerBase, ProvisionError, api_parameters

#: The template properties each creator passes on; CloudFormation's names equal the API's except
#: UserPoolName (PoolName). Anything else is named as unsupported rather than dropped.
_POOL_PROPERTIES = {
    "UserPoolName",
    "UsernameAttributes",
    "AutoVerifiedAttributes",
    "AdminCreateUserConfig",
    "Policies",
    "AccountRecoverySetting",
    "MfaConfiguration",
    "UserPoolTags",
}
_CLIENT_PROPERTIES = {
    "UserPoolId",
    "ClientName",
    "GenerateSecret",
    "AllowedOAuthFlowsUserPoolClient",
    "AllowedOAuthFlows",
    "AllowedOAuthScopes",
    "SupportedIdentityProviders",
    "CallbackURLs",
    "LogoutURLs",
    "ReadAttributes",
    "WriteAttributes",
    "ExplicitAuthFlows",
    "PreventUserExistenceErrors",
    "EnableTokenRevocation",
    "IdTokenValidity",
    "AccessTokenValidity",
    "RefreshTokenValidity",
    "TokenValidityUnits",
}


def _check(logical_id: str, props: dict[str, Any], supported: set[str]) -> None:
    unsupported = sorted(set(props) - supported)
    if unsupported:
        raise ProvisionError(f"{logical_id}: property {', '.join(unsupported)} is not supported locally")


class IdentityCreators(ProvisionerBase):
    """Cognito user pools, domains and app clients; each ``Ref`` is the id Cognito returns."""

    def user_pool(self, logical_id: str, props: dict[str, Any]) -> None:
        """A user pool; ``Ref`` gives its id, ``Arn`` its ARN."""
        _check(logical_id, props, _POOL_PROPERTIES)
        cognito = self.client("cognito-idp")
        params = {k: v for k, v in props.items() if k not in ("UserPoolName", "UserPoolTags")}
        params["PoolName"] = props.get("UserPoolName", self.resolved.physical_ids[logical_id])
        if props.get("UserPoolTags"):
            params["UserPoolTags"] = {str(k): str(v) for k, v in props["UserPoolTags"].items()}
        pool = cognito.create_user_pool(**api_parameters(cognito, "CreateUserPool", params))["UserPool"]
        self.resolved.runtime_refs[logical_id] = pool["Id"]
        self.resolved.runtime_attributes[(logical_id, "Arn")] = pool["Arn"]

    def user_pool_domain(self, logical_id: str, props: dict[str, Any]) -> None:
        """The hosted UI's domain prefix; ``Ref`` gives the prefix."""
        _check(logical_id, props, {"UserPoolId", "Domain"})
        self.client("cognito-idp").create_user_pool_domain(Domain=props["Domain"], UserPoolId=props["UserPoolId"])
        self.resolved.runtime_refs[logical_id] = props["Domain"]

    def user_pool_client(self, logical_id: str, props: dict[str, Any]) -> None:
        """An app client; ``Ref`` gives its client id."""
        _check(logical_id, props, _CLIENT_PROPERTIES)
        cognito = self.client("cognito-idp")
        client = cognito.create_user_pool_client(**api_parameters(cognito, "CreateUserPoolClient", props))
        self.resolved.runtime_refs[logical_id] = client["UserPoolClient"]["ClientId"]
