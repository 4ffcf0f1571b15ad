"""What a DynamoDB (and DynamoDB Streams) call asks IAM for."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from stepml.local.iam.model import AuthorizationRequest
from stepml.local.iam.requests.common import CallEnv, need, with_tag_on_create

# Sources: Service Authorization Reference for Amazon DynamoDB; DynamoDB Developer Guide
# "Using IAM with DynamoDB transactions" (TransactWriteItems authorizes PutItem, UpdateItem,
# DeleteItem and ConditionCheckItem per table, TransactGetItems authorizes GetItem, each with
# dynamodb:EnclosingOperation).


def _dynamodb_table(env: CallEnv, name: str) -> str:
    return name if name.startswith("arn:") else env.arn("dynamodb", f"table/{name}")


def _dynamodb_context(params: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "dynamodb:ReturnValues": params.get("ReturnValues"),
        "dynamodb:ReturnConsumedCapacity": params.get("ReturnConsumedCapacity"),
        "dynamodb:Select": params.get("Select"),
    }


_DYNAMODB_TRANSACT_WRITE = {
    "Put": "dynamodb:PutItem",
    "Update": "dynamodb:UpdateItem",
    "Delete": "dynamodb:DeleteItem",
    "ConditionCheck": "dynamodb:ConditionCheckItem",
}

_PARTIQL_TABLE = re.compile(
    r'\b(?:FROM|INTO|UPDATE)\s+"?([A-Za-z0-9_.\-]+)"?(?:\."?([A-Za-z0-9_.\-]+)"?)?', re.IGNORECASE
)


def dynamodb_requests(env: CallEnv) -> list[AuthorizationRequest] | None:
    """What a DynamoDB call asks IAM for (None: no rule here, the default applies)."""
    operation = env.call.operation
    params = env.params
    if operation == "DescribeEndpoints":
        return []  # needs no permission
    if operation in ("BatchGetItem", "BatchWriteItem"):
        return [
            need(f"dynamodb:{operation}", _dynamodb_table(env, table), _dynamodb_context(params))
            for table in (params.get("RequestItems") or {})
        ]
    if operation == "TransactWriteItems":
        requests = []
        for item in params.get("TransactItems") or []:
            for kind, action in _DYNAMODB_TRANSACT_WRITE.items():
                if kind in item:
                    table = _dynamodb_table(env, item[kind].get("TableName", ""))
                    context = {"dynamodb:EnclosingOperation": "TransactWriteItems", **_dynamodb_context(params)}
                    requests.append(need(action, table, context))
        return requests
    if operation == "TransactGetItems":
        return [
            need(
                "dynamodb:GetItem",
                _dynamodb_table(env, (item.get("Get") or {}).get("TableName", "")),
                {"dynamodb:EnclosingOperation": "TransactGetItems", **_dynamodb_context(params)},
            )
            for item in params.get("TransactItems") or []
        ]
    if operation in ("ExecuteStatement", "BatchExecuteStatement", "ExecuteTransaction"):
        statements = [params.get("Statement", "")]
        statements += [item.get("Statement", "") for item in params.get("Statements") or []]
        statements += [item.get("Statement", "") for item in params.get("TransactStatements") or []]
        requests = []
        for statement in filter(None, statements):
            verb = statement.strip().split(None, 1)[0].upper() if statement.strip() else ""
            action = {
                "SELECT": "PartiQLSelect",
                "INSERT": "PartiQLInsert",
                "UPDATE": "PartiQLUpdate",
                "DELETE": "PartiQLDelete",
            }.get(verb)
            match = _PARTIQL_TABLE.search(statement)
            if action and match:
                resource = _dynamodb_table(env, match.group(1))
                if match.group(2) and verb == "SELECT":
                    resource += f"/index/{match.group(2)}"
                requests.append(need(f"dynamodb:{action}", resource))
        return requests or None
    action = f"dynamodb:{operation}"
    if "TableName" in params:
        resource = _dynamodb_table(env, params["TableName"])
        if operation in ("Query", "Scan") and params.get("IndexName"):
            resource += f"/index/{params['IndexName']}"
        requests = [need(action, resource, _dynamodb_context(params))]
        return with_tag_on_create(env, requests) if operation == "CreateTable" else requests
    for member in ("ResourceArn", "StreamArn", "BackupArn", "TableArn", "ExportArn", "ImportArn"):
        if member in params:
            return [need(action, params[member])]
    return None


def dynamodbstreams_requests(env: CallEnv) -> list[AuthorizationRequest] | None:
    """What a DynamoDB Streams call asks IAM for (None: no rule here, the default applies)."""
    if "StreamArn" in env.params:
        return [need(f"dynamodb:{env.call.operation}", env.params["StreamArn"])]
    return None
