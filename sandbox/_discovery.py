"""The Global Discovery service: `GET /api/discovery/v2.0/Instances` lists the environments a user may use.

Like the real service it needs a token whose audience is the discovery service itself, and answers only
with the environments in which the signed-in user has a security role.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response

from ._directory import TENANT_ID, find_user
from ._errors import WebApiError
from ._tokens import SigningKey
from ._webapi import DATAVERSE_VERSION, bearer_claims, error_response, json_response

if TYPE_CHECKING:
    from ._app import Sandbox

INSTANCES_PATH = "/api/discovery/v2.0/Instances"


class Discovery:
    def __init__(self, sandbox: Sandbox, signing_key: SigningKey) -> None:
        self.sandbox = sandbox
        self.signing_key = signing_key

    async def __call__(self, request: Request) -> Response:
        try:
            return self.instances(request)
        except WebApiError as error:
            headers = {}
            if error.status == 401:
                headers["www-authenticate"] = (
                    f"Bearer authorization_uri={self.sandbox.authority}/oauth2/authorize, "
                    f"resource_id={self.sandbox.discovery_url}/"
                )
            return error_response(error, headers)

    def instances(self, request: Request) -> Response:
        path = request.url.path
        if not path.startswith(INSTANCES_PATH) or request.method != "GET":
            raise WebApiError(404, "0x80060888", f"Resource not found for the segment '{path}'.")
        url = self.sandbox.discovery_url
        claims = bearer_claims(request, self.signing_key, url)
        user = find_user(str(claims["oid"]))
        instances = []
        for name, environment in self.sandbox.environments.items():
            role = user.role_in(name) if user else None
            if role is None:
                continue
            spec = environment.spec
            instances.append(
                {
                    "Id": str(spec.organization_id),
                    "UniqueName": f"org{spec.organization_id.hex[:8]}",
                    "UrlName": spec.name,
                    "FriendlyName": spec.friendly_name,
                    "State": 0,
                    "Version": DATAVERSE_VERSION,
                    "Url": environment.url,
                    "ApiUrl": environment.url,
                    "LastUpdated": "2026-11-01T00:00:00Z",
                    "SchemaType": "Full",
                    "EnvironmentId": str(spec.environment_id),
                    "DatacenterId": "00000000-0000-0000-0000-000000000000",
                    "DatacenterName": None,
                    "Region": "NA",
                    "Purpose": spec.purpose,
                    "TenantId": str(TENANT_ID),
                    "OrganizationType": 0,
                    "TrialExpirationDate": None,
                    "IsUserSysAdmin": role == "System Administrator",
                }
            )
        suffix = path[len(INSTANCES_PATH) :]
        if suffix:
            instances = [instance for instance in instances if _matches_key(instance, suffix)]
            if not instances:
                raise WebApiError(404, "0x80040217", "The requested instance was not found.")
            return json_response(
                200,
                {"@odata.context": f"{url}/api/discovery/v2.0/$metadata#Instances/$entity", **instances[0]},
            )
        return json_response(
            200, {"@odata.context": f"{url}/api/discovery/v2.0/$metadata#Instances", "value": instances}
        )


def _matches_key(instance: dict[str, Any], suffix: str) -> bool:
    """`Instances(UniqueName='x')` or `Instances(<id>)`."""
    key = suffix.strip("()")
    if key.startswith("UniqueName="):
        return bool(instance["UniqueName"] == key.split("=", 1)[1].strip("'"))
    return bool(instance["Id"] == key.strip("'"))
