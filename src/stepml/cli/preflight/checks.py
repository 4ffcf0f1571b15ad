"""The checks of the account and the stack: identity, stack, definition, SES sender, layers.

Each takes the run's ``CheckContext`` and returns its ``Check`` line; ``command.run`` calls them
in order and turns an AWS error none of them expected into the line.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, NoRegionError

from stepml.cli.preflight.context import CheckContext, denied, error_code, error_message
from stepml.cli.preflight.inputs import STATE_MACHINE, format_diagnostic, named_at_deploy
from stepml.cli.preflight.report import FAIL, OK, WARN, Check

if TYPE_CHECKING:
    from stepml.local.template import ResolvedTemplate


def check_identity(context: CheckContext) -> Check:
    """``identity``: who the credentials are, and the region against samconfig's."""
    try:
        identity = context.client("sts").get_caller_identity()
    except (NoCredentialsError, NoRegionError) as exc:
        return Check("identity", FAIL, f"no usable credentials: {exc}", fix="aws configure (or aws sso login)")
    except ClientError as exc:
        return Check("identity", FAIL, f"the credentials are refused: {error_message(exc)}", fix="aws sso login")
    except BotoCoreError as exc:
        return Check(
            "identity",
            FAIL,
            f"cannot reach STS in {context.region}: {exc}",
            fix="check the network, and AWS_ENDPOINT_URL if it is set",
        )
    context.account = identity["Account"]
    summary = f"account {identity['Account']} as {identity['Arn']}, region {context.region}"
    data = {"account": identity["Account"], "arn": identity["Arn"], "region": context.region}
    if context.samconfig_region and context.samconfig_region != context.region:
        return Check(
            "identity",
            WARN,
            f"{summary}; but samconfig.toml [{context.config_env}] deploys to {context.samconfig_region}",
            fix=f"check that region: {context.rerun.replace(context.region, context.samconfig_region)}",
            data=data,
        )
    return Check("identity", OK, summary, data=data)


_STUCK = {"ROLLBACK_COMPLETE", "ROLLBACK_FAILED", "DELETE_FAILED", "UPDATE_ROLLBACK_FAILED", "IMPORT_ROLLBACK_FAILED"}


def check_stack(context: CheckContext) -> Check:
    """``stack``: whether the stack exists and can be deployed to (not stuck in a failed state)."""
    cloudformation = context.client("cloudformation")
    try:
        stack = cloudformation.describe_stacks(StackName=context.stack_name)["Stacks"][0]
    except ClientError as exc:
        if error_code(exc) == "ValidationError" and "does not exist" in str(exc):
            return Check("stack", OK, f"{context.stack_name} does not exist yet in {context.region}: deploy creates it")
        raise
    context.stack = stack
    paginator = cloudformation.get_paginator("list_stack_resources")
    for page in paginator.paginate(StackName=context.stack_name):
        for resource in page["StackResourceSummaries"]:
            context.stack_resources[resource["LogicalResourceId"]] = (
                resource["ResourceType"],
                resource.get("PhysicalResourceId", ""),
            )
    status = stack["StackStatus"]
    summary = f"{context.stack_name} exists ({status}, {len(context.stack_resources)} resources)"
    if status in _STUCK:
        fix = f"aws cloudformation delete-stack --stack-name {context.stack_name} --region {context.region}"
        if status.startswith("UPDATE_ROLLBACK"):
            fix = (
                f"aws cloudformation continue-update-rollback --stack-name {context.stack_name} "
                f"--region {context.region}"
            )
        return Check("stack", FAIL, f"{summary}: CloudFormation cannot update a stack in {status}", fix=fix)
    if status.endswith("_IN_PROGRESS"):
        return Check(
            "stack",
            FAIL,
            f"{summary}: another operation is running",
            fix=f"aws cloudformation wait stack-update-complete --stack-name {context.stack_name}",
        )
    return Check("stack", OK, summary)


def filled_definition(context: CheckContext) -> tuple[dict[str, Any], list[str]]:
    """The definition as the stack will fill it, and the placeholders filled with guessed names."""
    assert context.resolved is not None
    from stepml.local.provision import referenced_resources  # the template's own reference walker

    resolved = context.resolved
    definition = resolved.state_machine_definition(STATE_MACHINE, context.root)
    substitutions = resolved.properties(STATE_MACHINE).get("DefinitionSubstitutions", {})
    guessed = []
    for key, value in substitutions.items():
        unknown = [
            logical
            for logical in sorted(referenced_resources(value, resolved.resources))
            if logical not in context.stack_resources and named_at_deploy(resolved, logical)
        ]
        if unknown:
            guessed.append(key)
    return definition, guessed


def check_definition(context: CheckContext) -> Check:
    """AWS's ValidateStateMachineDefinition on the filled definition."""
    assert context.resolved is not None
    from stepml.local.template import TemplateError

    try:
        definition, guessed = filled_definition(context)
    except (TemplateError, OSError) as exc:
        return Check(
            "definition",
            FAIL,
            f"cannot fill the definition for {context.region}: {exc}",
            fix="deploy to a region the template maps (see the xgboost-image line) or fix the template",
        )
    machine_type = str(context.resolved.resolved_properties(STATE_MACHINE).get("Type", "STANDARD"))
    answer = context.client("stepfunctions").validate_state_machine_definition(
        definition=json.dumps(definition), type=machine_type, severity="WARNING"
    )
    diagnostics = answer.get("diagnostics", [])
    details = [format_diagnostic(d) for d in diagnostics]
    if answer.get("truncated"):
        details.append("(more diagnostics were left out: fix these and run again)")
    source = (
        "placeholders from the existing stack's resources"
        if context.stack_resources
        else "placeholders filled with the names this stack will create"
    )
    if guessed:
        source += f"; CloudFormation names some at deploy, so plausible ARNs fill {', '.join(guessed)}"
    data = {"result": answer.get("result"), "diagnostics": diagnostics, "guessed_placeholders": guessed}
    definition_file = context.resolved.properties(STATE_MACHINE).get("DefinitionUri", "the definition")
    if answer.get("result") == "FAIL":
        errors = sum(d.get("severity") == "ERROR" for d in diagnostics)
        return Check(
            "definition",
            FAIL,
            f"ValidateStateMachineDefinition ({machine_type}) refuses {definition_file}: {errors} error(s) ({source})",
            fix=f"edit {definition_file} at the locations below, then {context.rerun}",
            details=details,
            data=data,
        )
    status = WARN if diagnostics else OK
    summary = f"ValidateStateMachineDefinition ({machine_type}) accepts {definition_file} ({source})"
    return Check("definition", status, summary, details=details, data=data)


def _identity_status(sesv2: Any, address: str) -> tuple[str, str | None]:
    """(verified|pending|missing, the identity that decided) for an address or its domain."""
    domain = address.rsplit("@", 1)[-1]
    pending = None
    for identity in (address, domain):
        try:
            answer = sesv2.get_email_identity(EmailIdentity=identity)
        except ClientError as exc:
            if error_code(exc) == "NotFoundException":
                continue
            raise
        if answer.get("VerifiedForSendingStatus"):
            return "verified", identity
        pending = pending or identity
    return ("pending", pending) if pending else ("missing", None)


def _verify_fix(address: str, region: str) -> str:
    return (
        f"aws sesv2 create-email-identity --email-identity {address} --region {region} "
        "(then open the link SES mails), or verify the domain"
    )


def check_ses(context: CheckContext) -> Check:
    """``ses-sender``: the approval sender verified for sending; in the SES sandbox the approver too."""
    assert context.resolved is not None
    sender = str(context.resolved.parameters["ApprovalSenderEmail"])
    approver = str(context.resolved.parameters["ApproverEmail"])
    sesv2 = context.client("sesv2")
    status, identity = _identity_status(sesv2, sender)
    if status == "missing":
        return Check(
            "ses-sender",
            FAIL,
            f"ApprovalSenderEmail {sender} (and its domain) is no SES identity in {context.region}",
            fix=_verify_fix(sender, context.region),
        )
    if status == "pending":
        return Check(
            "ses-sender",
            FAIL,
            f"SES identity {identity} exists in {context.region} but is not verified for sending yet",
            fix=f"open the verification link SES mailed to {sender} (or publish the domain's DKIM records), then "
            + context.rerun,
        )
    summary = f"sender {sender} is verified for sending in {context.region} (identity {identity})"
    account = sesv2.get_account()
    if not account.get("SendingEnabled", True):
        return Check(
            "ses-sender",
            FAIL,
            f"{summary}, but SES sending is paused for the account in {context.region}",
            fix=f"aws sesv2 put-account-sending-attributes --sending-enabled --region {context.region}",
        )
    if account.get("ProductionAccessEnabled"):
        return Check("ses-sender", OK, summary + "; the account has production access")
    approver_status, _ = _identity_status(sesv2, approver)
    if approver_status != "verified":
        return Check(
            "ses-sender",
            FAIL,
            f"{summary}; the account is in the SES sandbox, which delivers only to verified addresses, "
            f"and ApproverEmail {approver} is not verified",
            fix=_verify_fix(approver, context.region)
            + f"; or request production access: aws sesv2 put-account-details --production-access-enabled "
            f"--mail-type TRANSACTIONAL --website-url URL --use-case-description TEXT --region {context.region}",
        )
    return Check(
        "ses-sender",
        WARN,
        f"{summary}; the account is in the SES sandbox: only verified addresses receive mail "
        f"(ApproverEmail {approver} is verified)",
        fix="request production access before adding approvers (aws sesv2 put-account-details "
        "--production-access-enabled ...)",
    )


_LAYER_MISSING = ("ResourceNotFoundException", "ValidationException", "InvalidParameterValueException")
_SSM_REFERENCE = re.compile(r"^\{\{resolve:ssm:(?P<name>[^:}]+)(?::(?P<version>\d+))?\}\}$")


def external_layers(resolved: ResolvedTemplate) -> list[tuple[str, str]]:
    """(function logical id, resolved layer) for every layer a function takes from outside the stack."""
    local_layers = {
        resolved.ref(logical)
        for logical, spec in resolved.resources.items()
        if spec["Type"] in ("AWS::Serverless::LayerVersion", "AWS::Lambda::LayerVersion")
    }
    found = []
    for logical, spec in resolved.resources.items():
        if spec["Type"] not in ("AWS::Serverless::Function", "AWS::Lambda::Function"):
            continue
        for layer in resolved.resolved_properties(logical).get("Layers", []):
            if str(layer) not in local_layers and (logical, str(layer)) not in found:
                found.append((logical, str(layer)))
    return found


def check_layers(context: CheckContext) -> Check:
    """``layers``: every layer the template takes from outside the stack exists in the region."""
    assert context.resolved is not None
    layers = external_layers(context.resolved)
    if not layers:
        return Check("layers", OK, "no function takes a layer from outside the stack")
    found, problems, details = [], [], []
    for function, layer in layers:
        reference = _SSM_REFERENCE.match(layer)
        if reference:
            name = reference["name"]
            try:
                value = context.client("ssm").get_parameter(Name=name)["Parameter"]["Value"]
            except ClientError as exc:
                if error_code(exc) != "ParameterNotFound":
                    raise
                problems.append(
                    (
                        f"{function}: public SSM parameter {name} does not exist in {context.region}",
                        "set AwsSdkPandasLayerArn to the layer's ARN for this region (aws-sdk-pandas.readthedocs.io, "
                        "AWS Lambda Managed Layers) in samconfig.toml parameter_overrides",
                    )
                )
                continue
            details.append(f"{function}: {name} = {value}")
            layer_arn = value
        else:
            layer_arn = layer
        try:
            version = context.client("lambda").get_layer_version_by_arn(Arn=layer_arn)
        except ClientError as exc:
            if denied(exc):
                details.append(f"{function}: {layer_arn}: cannot read the layer ({error_code(exc)})")
                found.append(layer_arn)
                continue
            if error_code(exc) in _LAYER_MISSING:
                problems.append(
                    (
                        f"{function}: layer {layer_arn} does not exist in {context.region} ({error_message(exc)})",
                        "set AwsSdkPandasLayerArn to a layer version that exists in this region, or leave it empty "
                        "to resolve the public SSM parameter",
                    )
                )
                continue
            raise
        runtimes = version.get("CompatibleRuntimes") or []
        if runtimes and "python3.11" not in runtimes:
            problems.append(
                (
                    f"{function}: layer {layer_arn} is for {', '.join(runtimes)}, not python3.11",
                    "pick the layer version built for python3.11 (x86_64)",
                )
            )
            continue
        found.append(layer_arn)
    if problems:
        summary = "; ".join(p for p, _ in problems)
        return Check("layers", FAIL, summary, fix=problems[0][1], details=details)
    return Check("layers", OK, f"{len(found)} external layer(s) exist in {context.region}", details=details)
