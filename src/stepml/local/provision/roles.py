"""Creators of IAM roles: the template's own and the execution role SAM makes for a function."""

from __future__ import annotations

import json
from typing import Any

from stepml.local.provision.base import ProvisionerBase, ProvisionError, tags


class RoleCreators(ProvisionerBase):
    """AWS::IAM::Role and the ``<Function>Role`` of a function without ``Role``."""

    def role(self, logical_id: str, props: dict[str, Any]) -> None:
        """An IAM role with its trust policy, tags and inline policies."""
        iam = self.client("iam")
        name = self.resolved.ref(logical_id)
        iam.create_role(
            RoleName=name,
            AssumeRolePolicyDocument=json.dumps(props["AssumeRolePolicyDocument"]),
            Tags=tags(props),
        )
        for policy in props.get("Policies", []):
            iam.put_role_policy(
                RoleName=name,
                PolicyName=policy["PolicyName"],
                PolicyDocument=json.dumps(policy["PolicyDocument"]),
            )

    def function_role(self, logical_id: str, props: dict[str, Any]) -> str:
        """The function's execution role, as SAM makes it: ``Role`` if given, else a role
        ``<LogicalId>Role`` with AWSLambdaBasicExecutionRole (and AWSXrayWriteOnlyAccess under
        active tracing), each ``Policies`` document inline as ``<LogicalId>RolePolicy<N>`` and each
        policy named by ARN or AWS managed name attached."""
        if props.get("Role"):
            return str(props["Role"])
        iam = self.client("iam")
        name = self.resolved.physical_ids[logical_id]
        role_name = f"{name}-role"[:64]
        arn = iam.create_role(
            RoleName=role_name,
            AssumeRolePolicyDocument=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Action": "sts:AssumeRole",
                            "Principal": {"Service": "lambda.amazonaws.com"},
                        }
                    ],
                }
            ),
        )["Role"]["Arn"]
        managed = ["arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"]
        if props.get("Tracing") == "Active":
            managed.append("arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess")
        policies = props.get("Policies", [])
        if isinstance(policies, (str, dict)):
            policies = [policies]
        for index, policy in enumerate(policies):
            if isinstance(policy, str):
                managed.append(policy if policy.startswith("arn:") else f"arn:aws:iam::aws:policy/{policy}")
            elif isinstance(policy, dict) and "Statement" in policy:
                iam.put_role_policy(
                    RoleName=role_name, PolicyName=f"{logical_id}RolePolicy{index}", PolicyDocument=json.dumps(policy)
                )
            else:
                raise ProvisionError(
                    f"{logical_id}.Policies[{index}]: SAM policy templates ({', '.join(map(str, policy))}) are not "
                    "supported by the local cloud; write the statements out as a policy document"
                )
        for policy_arn in managed:
            try:
                iam.attach_role_policy(RoleName=role_name, PolicyArn=policy_arn)
            except iam.exceptions.NoSuchEntityException as exc:
                raise ProvisionError(f"{logical_id}: managed policy {policy_arn} does not exist") from exc
        return arn
