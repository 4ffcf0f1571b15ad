"""Creators of what runs the pipeline: Step Functions state machines, Glue jobs, EventBridge rules
and CloudWatch alarms."""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import ClientError

from stepml.local.provision.artifacts import package_artifact
from stepml.local.provision.base import ProvisionerBase, ProvisionError, api_parameters


class WorkflowCreators(ProvisionerBase):
    """AWS::Serverless::StateMachine, AWS::Glue::SecurityConfiguration and Job, AWS::Events::Rule and
    AWS::CloudWatch::Alarm."""

    def state_machine(self, logical_id: str, props: dict[str, Any]) -> None:
        """A STANDARD state machine with its definition, role, logging and tracing."""
        if props.get("Type", "STANDARD") != "STANDARD":
            raise ProvisionError(f"{logical_id}: only STANDARD state machines run locally")
        if props.get("Events"):
            raise ProvisionError(
                f"{logical_id}: Events on the state machine are not supported locally; use an AWS::Events::Rule"
            )
        definition = self.resolved.state_machine_definition(logical_id, self.root)
        options: dict[str, Any] = {}
        if "Logging" in props:
            logging = props["Logging"]
            options["loggingConfiguration"] = {
                "level": logging.get("Level", "OFF"),
                "includeExecutionData": bool(logging.get("IncludeExecutionData", False)),
                "destinations": [
                    {"cloudWatchLogsLogGroup": {"logGroupArn": d["CloudWatchLogsLogGroup"]["LogGroupArn"]}}
                    for d in logging.get("Destinations", [])
                ],
            }
        if "Tracing" in props:
            options["tracingConfiguration"] = {"enabled": bool(props["Tracing"].get("Enabled", False))}
        try:
            arn = self.client("stepfunctions").create_state_machine(
                name=self.resolved.physical_ids[logical_id],
                definition=json.dumps(definition),
                roleArn=props["Role"],
                type="STANDARD",
                **options,
            )["stateMachineArn"]
        except ClientError as exc:
            error = exc.response["Error"]
            raise ProvisionError(
                f"{logical_id}: CreateStateMachine failed: {error['Code']}: {error['Message']}"
            ) from exc
        self.resolved.runtime_refs[logical_id] = arn

    def glue_security_configuration(self, logical_id: str, props: dict[str, Any]) -> None:
        # CloudFormation says S3Encryptions where the Glue API says S3Encryption.
        """A Glue security configuration."""
        encryption = {
            ("S3Encryption" if key == "S3Encryptions" else key): value
            for key, value in props["EncryptionConfiguration"].items()
        }
        self.client("glue").create_security_configuration(Name=props["Name"], EncryptionConfiguration=encryption)

    def glue_job(self, logical_id: str, props: dict[str, Any]) -> None:
        """A Glue job whose script is uploaded as ``sam package`` would, run by the runtime's Glue engine."""
        runtime = self._require_runtime(logical_id)
        command = dict(props["Command"])
        script = self._local_path(logical_id, "Command.ScriptLocation", command["ScriptLocation"])
        # As after `sam package`: the job reads its script from SAM's bucket; the prefix is the
        # samconfig s3_prefix, which is the stack name.
        command["ScriptLocation"] = package_artifact(self.client("s3"), script, self.resolved.stack_name)
        kwargs = {
            k: props[k]
            for k in (
                "Description",
                "Role",
                "GlueVersion",
                "WorkerType",
                "NumberOfWorkers",
                "Timeout",
                "MaxRetries",
                "SecurityConfiguration",
                "ExecutionProperty",
                "DefaultArguments",
            )
            if k in props
        }
        glue = self.client("glue")
        glue.create_job(**api_parameters(glue, "CreateJob", {"Name": props["Name"], "Command": command, **kwargs}))
        runtime.register_glue_job(props["Name"], script)

    def rule(self, logical_id: str, props: dict[str, Any]) -> None:
        """An EventBridge rule with its pattern and targets."""
        events = self.client("events")
        name = self.resolved.physical_ids[logical_id]
        arn = events.put_rule(
            Name=name,
            EventPattern=json.dumps(props["EventPattern"]),
            State=props.get("State", "ENABLED"),
            Description=props.get("Description", ""),
        )["RuleArn"]
        self.resolved.runtime_attributes[(logical_id, "Arn")] = arn
        events.put_targets(Rule=name, Targets=props["Targets"])

    def alarm(self, logical_id: str, props: dict[str, Any]) -> None:
        """A CloudWatch metric alarm."""
        cloudwatch = self.client("cloudwatch")
        params = {**props, "AlarmName": self.resolved.ref(logical_id)}
        cloudwatch.put_metric_alarm(**api_parameters(cloudwatch, "PutMetricAlarm", params))
