"""Cognito's hosted UI for the local cloud: the OAuth endpoints a browser and the approval
function use (``/oauth2/authorize``, ``/login``, ``/oauth2/token``), backed by moto's user pools.

The same shape as the local cloud's engines: ``engine`` (the HTTP server, the authorization
codes and PKCE: no moto), ``adapter`` (the only module that reaches into moto: the pool's app
clients, the password check through AdminInitiateAuth, the tokens moto signs) and ``errors``.
"""

from stepml.local.cognito.adapter import MotoUserPools
from stepml.local.cognito.engine import AppClient, HostedUi, UserPools
from stepml.local.cognito.errors import HostedUiError, SignInFailedError, UnknownClientError

__all__ = [
    "AppClient",
    "HostedUi",
    "HostedUiError",
    "MotoUserPools",
    "SignInFailedError",
    "UnknownClientError",
    "UserPools",
]
