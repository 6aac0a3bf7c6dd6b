"""Who the caller is: the two deployment postures, and defensive parsing of the principal header."""

from __future__ import annotations

import base64
import json

import pytest
from fastapi import Request

from cosmos_history import load_settings
from cosmos_history.domain.errors import BadRequestError, UnauthorizedError
from cosmos_history.http.calls import caller_identity

from .http_calls import request as http_request

FUNCTION_KEY_POSTURE = load_settings({})
EASY_AUTH_POSTURE = load_settings({"HTTP_AUTH_LEVEL": "anonymous"})
LOCAL_DEV_POSTURE = load_settings({"HTTP_AUTH_LEVEL": "anonymous", "LOCAL_DEV_ALLOW_ANONYMOUS": "true"})


def request(**headers: str) -> Request:
    """The FastAPI request the worker hands every function under HTTP streams."""
    return http_request("GET", "/api/sessions", user=None, content_type="", headers=headers)


def principal(claims: list[dict[str, str]]) -> str:
    return base64.b64encode(json.dumps({"auth_typ": "aad", "claims": claims}).encode()).decode()


def test_the_easy_auth_object_id_names_the_caller():
    header = principal([{"typ": "http://schemas.microsoft.com/identity/claims/objectidentifier", "val": "oid-1"}])
    assert caller_identity(request(**{"x-ms-client-principal": header}), EASY_AUTH_POSTURE) == "oid-1"


def test_the_principal_wins_over_x_user_id():
    header = principal([{"typ": "oid", "val": "oid-2"}])
    req = request(**{"x-ms-client-principal": header, "x-user-id": "someone-else"})
    assert caller_identity(req, FUNCTION_KEY_POSTURE) == "oid-2"


def test_behind_a_function_key_x_user_id_names_the_caller():
    assert caller_identity(request(**{"x-user-id": "alice@example.com"}), FUNCTION_KEY_POSTURE) == "alice@example.com"


def test_behind_a_function_key_a_caller_without_identity_is_anonymous():
    assert caller_identity(request(), FUNCTION_KEY_POSTURE) == "anonymous"


def test_an_anonymous_level_app_rejects_callers_without_the_principal():
    with pytest.raises(UnauthorizedError):
        caller_identity(request(), EASY_AUTH_POSTURE)


def test_an_anonymous_level_app_does_not_believe_x_user_id():
    with pytest.raises(UnauthorizedError):
        caller_identity(request(**{"x-user-id": "alice"}), EASY_AUTH_POSTURE)


def test_local_development_may_explicitly_allow_anonymous_callers():
    assert caller_identity(request(), LOCAL_DEV_POSTURE) == "anonymous"


@pytest.mark.parametrize(
    "header",
    [
        "%%%",  # not base64
        base64.b64encode(b"\xff\xfe not utf-8").decode(),
        base64.b64encode(b"not json").decode(),
        base64.b64encode(b"[1, 2]").decode(),  # JSON, not an object
        base64.b64encode(b'{"claims": "nope"}').decode(),
        base64.b64encode(b'{"claims": [1, 2]}').decode(),
        principal([{"typ": "name", "val": "Alice"}]),  # no object id
        principal([{"typ": "oid", "val": ""}]),
    ],
)
def test_a_malformed_principal_is_401_never_500(header):
    with pytest.raises(UnauthorizedError):
        caller_identity(request(**{"x-ms-client-principal": header}), FUNCTION_KEY_POSTURE)


def test_a_malformed_x_user_id_is_400():
    with pytest.raises(BadRequestError):
        caller_identity(request(**{"x-user-id": "bad user id with spaces"}), FUNCTION_KEY_POSTURE)
