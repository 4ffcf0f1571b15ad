"""moto's user pools behind the emulated hosted UI: the one module of the package importing moto.

The hosted UI asks three things of a pool: an app client's OAuth settings, whether a user name
and password sign in (moto's ``AdminInitiateAuth`` with ``ADMIN_USER_PASSWORD_AUTH``, so a wrong
password, a disabled user or one who must change the password are moto's answers), and the
tokens of that sign-in, which moto signs with its pool key (the key its JWKS endpoint publishes).
"""

from __future__ import annotations

from typing import Any

from stepml.local.cognito.engine import AppClient
from stepml.local.cognito.errors import SignInFailedError, UnknownClientError


class MotoUserPools:
    """The ``UserPools`` of one account and region of moto's cognito-idp backend."""

    def __init__(self, account_id: str, region: str):
        self.account_id = account_id
        self.region = region

    def _backend(self) -> Any:
        from moto.cognitoidp.models import cognitoidp_backends

        return cognitoidp_backends[self.account_id][self.region]

    def app_client(self, user_pool_id: str, client_id: str) -> AppClient:
        """The app client ``client_id`` of the pool, with what the OAuth endpoints check."""
        from moto.cognitoidp.exceptions import ResourceNotFoundError

        try:
            client = self._backend().describe_user_pool_client(user_pool_id, client_id)
        except ResourceNotFoundError:
            raise UnknownClientError(client_id) from None
        config = client.extended_config
        return AppClient(
            client_id=client.id,
            has_secret=bool(client.generate_secret),
            oauth_enabled=bool(config.get("AllowedOAuthFlowsUserPoolClient")),
            oauth_flows=tuple(config.get("AllowedOAuthFlows") or ()),
            scopes=tuple(config.get("AllowedOAuthScopes") or ()),
            callback_urls=tuple(config.get("CallbackURLs") or ()),
            identity_providers=tuple(config.get("SupportedIdentityProviders") or ()),
        )

    def sign_in(self, user_pool_id: str, client_id: str, username: str, password: str) -> str:
        """The ID token of a password sign-in; ``SignInFailedError`` with the page's message."""
        from moto.cognitoidp.exceptions import NotAuthorizedError, UserNotFoundError

        try:
            answer = self._backend().admin_initiate_auth(
                user_pool_id, client_id, "ADMIN_USER_PASSWORD_AUTH", {"USERNAME": username, "PASSWORD": password}
            )
        except (NotAuthorizedError, UserNotFoundError):
            # One message for both, as the hosted UI shows: it never says which names exist.
            raise SignInFailedError("Incorrect username or password.") from None
        if "AuthenticationResult" not in answer:
            raise SignInFailedError(
                f"This user must answer the {answer.get('ChallengeName')} challenge first, which the local hosted "
                "UI does not show: set a permanent password (admin-set-user-password --permanent)."
            )
        return str(answer["AuthenticationResult"]["IdToken"])

    def jwks(self, user_pool_id: str) -> dict[str, Any]:
        """The public keys of the pool's tokens, as ``/<pool>/.well-known/jwks.json`` serves them."""
        from moto.utilities.utils import load_resource

        self._backend().describe_user_pool(user_pool_id)  # refuses an unknown pool
        return dict(load_resource("cognitoidp/resources/jwks-public.json"))
