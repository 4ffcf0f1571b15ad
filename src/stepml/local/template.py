"""Read ``template.yaml`` and resolve CloudFormation intrinsics the way CloudFormation would.

The local cloud and the unit tests build every AWS resource from the template through this
module, so a template mistake fails locally instead of drifting from what is deployed.
Physical names follow CloudFormation's shape (``<stack>-<LogicalId>-<suffix>``) with a suffix
derived from the stack and logical id, so they are stable across restarts.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

DEFAULT_REGION = "us-east-1"
DEFAULT_ACCOUNT_ID = "123456789012"

# The intrinsic short forms a SAM template may use; the loader expands them to long form.
_SHORT_FORMS = {
    "Ref": "Ref",
    "GetAtt": "Fn::GetAtt",
    "Sub": "Fn::Sub",
    "If": "Fn::If",
    "Equals": "Fn::Equals",
    "Not": "Fn::Not",
    "And": "Fn::And",
    "Or": "Fn::Or",
    "FindInMap": "Fn::FindInMap",
    "Join": "Fn::Join",
    "Select": "Fn::Select",
    "Split": "Fn::Split",
    "GetAZs": "Fn::GetAZs",
    "Base64": "Fn::Base64",
    "Condition": "Condition",
    "ImportValue": "Fn::ImportValue",
}


class TemplateError(ValueError):
    """The template cannot be read or resolved; the message names the resource and property."""


class _CfnLoader(yaml.SafeLoader):
    pass


def _make_constructor(long_name: str):
    def construct(loader: yaml.SafeLoader, node: yaml.Node) -> dict[str, Any]:
        if isinstance(node, yaml.ScalarNode):
            value: Any = loader.construct_scalar(node)
            if long_name == "Fn::GetAtt" and isinstance(value, str):
                value = value.split(".", 1)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)
        return {long_name: value}

    return construct


for _short, _long in _SHORT_FORMS.items():
    _CfnLoader.add_constructor(f"!{_short}", _make_constructor(_long))


def load_template(path: Path | str) -> dict[str, Any]:
    """Load a CloudFormation/SAM YAML or JSON template with intrinsics in long form."""
    path = Path(path)
    try:
        stat = path.stat()
    except OSError as exc:
        raise TemplateError(f"{path}: cannot read the template: {exc}") from exc
    # Parsing the YAML is the slow part; callers get their own copy to resolve and mutate.
    return copy.deepcopy(_parse_template(path.resolve(), stat.st_mtime_ns, stat.st_size))


@functools.lru_cache(maxsize=8)
def _parse_template(path: Path, mtime_ns: int, size: int) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise TemplateError(f"{path}: cannot read the template: {exc}") from exc
    try:
        data = yaml.load(text, Loader=_CfnLoader)  # noqa: S506 - SafeLoader subclass with CFN tags only
    except yaml.YAMLError as exc:
        raise TemplateError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict) or "Resources" not in data:
        raise TemplateError(f"{path}: a template needs a Resources section")
    return data


# What Ref and Fn::GetAtt return for each resource type, from a physical name.
def _arn(service: str, region: str, account: str, resource: str, partition: str = "aws") -> str:
    return f"arn:{partition}:{service}:{region}:{account}:{resource}"


@dataclass
class ResolvedTemplate:
    """A template bound to a stack name, region, account and parameter values."""

    template: dict[str, Any]
    stack_name: str = "stepml-local"
    region: str = DEFAULT_REGION
    account_id: str = DEFAULT_ACCOUNT_ID
    parameter_overrides: Mapping[str, str] = field(default_factory=dict)
    source: str = "template.yaml"
    parameters: dict[str, Any] = field(init=False)
    conditions: dict[str, bool] = field(init=False)
    physical_ids: dict[str, str] = field(init=False)
    #: Values that only exist once a resource is created (a KMS key id, a queue URL) override
    #: the names computed up front.
    runtime_refs: dict[str, str] = field(default_factory=dict)
    runtime_attributes: dict[tuple[str, str], str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.parameters = self._bind_parameters()
        self.conditions = {}
        for name in self.template.get("Conditions", {}):
            self.conditions[name] = self._condition(name, set())
        self.physical_ids = {logical: self._physical_name(logical, spec) for logical, spec in self.resources.items()}

    # -- structure -----------------------------------------------------------------------

    @property
    def resources(self) -> dict[str, dict[str, Any]]:
        return self.template["Resources"]

    def resource(self, logical_id: str) -> dict[str, Any]:
        try:
            return self.resources[logical_id]
        except KeyError:
            raise TemplateError(f"{self.source}: no resource named {logical_id}") from None

    def is_enabled(self, logical_id: str) -> bool:
        """Whether the resource's Condition (if any) holds."""
        condition = self.resource(logical_id).get("Condition")
        return True if condition is None else self.conditions[condition]

    def properties(self, logical_id: str) -> dict[str, Any]:
        """The resource's properties with SAM Globals merged in (not yet resolved)."""
        spec = self.resource(logical_id)
        props = copy.deepcopy(spec.get("Properties", {}))
        if spec["Type"] == "AWS::Serverless::Function":
            globals_ = copy.deepcopy(self.template.get("Globals", {}).get("Function", {}))
            merged = globals_
            for key, value in props.items():
                if key == "Environment" and "Environment" in merged:
                    variables = dict(merged["Environment"].get("Variables", {}))
                    variables.update(value.get("Variables", {}))
                    merged["Environment"] = {"Variables": variables}
                else:
                    merged[key] = value
            props = merged
        return props

    def resolved_properties(self, logical_id: str) -> dict[str, Any]:
        """The resource's properties with every intrinsic resolved."""
        return self.resolve(self.properties(logical_id), context=logical_id)

    # -- parameters and conditions -------------------------------------------------------

    def _bind_parameters(self) -> dict[str, Any]:
        declared = self.template.get("Parameters", {})
        unknown = sorted(set(self.parameter_overrides) - set(declared))
        if unknown:
            raise TemplateError(f"{self.source}: unknown parameter(s): {', '.join(unknown)}")
        values: dict[str, Any] = {}
        for name, spec in declared.items():
            if name in self.parameter_overrides:
                value: Any = str(self.parameter_overrides[name])
            elif "Default" in spec:
                value = str(spec["Default"])
            else:
                raise TemplateError(f"{self.source}: parameter {name} has no default and no value")
            allowed = spec.get("AllowedValues")
            if allowed is not None and value not in [str(v) for v in allowed]:
                raise TemplateError(f"{self.source}: parameter {name}={value!r} is not one of {allowed}")
            if spec.get("Type") == "Number":
                try:
                    float(value)
                except ValueError:
                    raise TemplateError(f"{self.source}: parameter {name}={value!r} is not a number") from None
            values[name] = value
        return values

    def _condition(self, name: str, seen: set[str]) -> bool:
        if name in self.conditions:
            return self.conditions[name]
        if name in seen:
            raise TemplateError(f"{self.source}: condition {name} refers to itself")
        try:
            expression = self.template["Conditions"][name]
        except KeyError:
            raise TemplateError(f"{self.source}: no condition named {name}") from None
        return bool(self._evaluate_condition(expression, seen | {name}))

    def _evaluate_condition(self, expression: Any, seen: set[str]) -> Any:
        if isinstance(expression, dict) and len(expression) == 1:
            ((key, value),) = expression.items()
            if key == "Fn::Equals":
                left, right = (self._evaluate_condition(v, seen) for v in value)
                return str(left) == str(right)
            if key == "Fn::Not":
                return not self._evaluate_condition(value[0], seen)
            if key == "Fn::And":
                return all(self._evaluate_condition(v, seen) for v in value)
            if key == "Fn::Or":
                return any(self._evaluate_condition(v, seen) for v in value)
            if key == "Condition":
                return self._condition(value, seen)
        return self.resolve(expression, context="Conditions")

    # -- names ---------------------------------------------------------------------------

    def _suffix(self, logical_id: str) -> str:
        digest = hashlib.sha256(f"{self.stack_name}/{logical_id}".encode()).hexdigest()
        return digest[:12].upper()

    def _physical_name(self, logical_id: str, spec: dict[str, Any]) -> str:
        props = spec.get("Properties", {})
        explicit = {
            "AWS::Glue::Job": "Name",
            "AWS::Glue::SecurityConfiguration": "Name",
            "AWS::Serverless::StateMachine": "Name",
            "AWS::CloudWatch::Alarm": "AlarmName",
            "AWS::Logs::LogGroup": "LogGroupName",
            "AWS::Serverless::LayerVersion": "LayerName",
        }.get(spec["Type"])
        if explicit and explicit in props:
            return str(self.resolve(props[explicit], context=f"{logical_id}.{explicit}", allow_resources=False))
        base = f"{self.stack_name}-{logical_id}-{self._suffix(logical_id)}"
        if spec["Type"] == "AWS::S3::Bucket":
            return base.lower()[:63]
        if spec["Type"] == "AWS::KMS::Key":
            digest = hashlib.sha256(f"{self.stack_name}/{logical_id}/key".encode()).hexdigest()
            return f"{digest[:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}-{digest[20:32]}"
        if spec["Type"] in ("AWS::Serverless::HttpApi", "AWS::ApiGatewayV2::Api"):
            return self._suffix(logical_id).lower()[:10]
        if spec["Type"] == "AWS::Logs::LogGroup":
            return f"/stepml/{self.stack_name}/{logical_id}"
        return base[:64]

    def ref(self, logical_id: str) -> str:
        """What ``Ref`` returns for a resource (name, ARN or id, by type)."""
        if logical_id in self.runtime_refs:
            return self.runtime_refs[logical_id]
        spec = self.resource(logical_id)
        name = self.physical_ids[logical_id]
        kind = spec["Type"]
        if kind == "AWS::SNS::Topic":
            return _arn("sns", self.region, self.account_id, name)
        if kind in ("AWS::Serverless::StateMachine", "AWS::StepFunctions::StateMachine"):
            return _arn("states", self.region, self.account_id, f"stateMachine:{name}")
        if kind == "AWS::SQS::Queue":
            return f"https://sqs.{self.region}.amazonaws.com/{self.account_id}/{name}"
        if kind == "AWS::Serverless::LayerVersion":
            return _arn("lambda", self.region, self.account_id, f"layer:{name}:1")
        return name

    def get_att(self, logical_id: str, attribute: str) -> str:
        """What ``Fn::GetAtt`` returns for the attributes this app uses."""
        if (logical_id, attribute) in self.runtime_attributes:
            return self.runtime_attributes[(logical_id, attribute)]
        spec = self.resource(logical_id)
        kind = spec["Type"]
        name = self.physical_ids[logical_id]
        if attribute == "Arn":
            service_resource = {
                "AWS::S3::Bucket": ("s3", f"{name}", False),
                "AWS::DynamoDB::Table": ("dynamodb", f"table/{name}", True),
                "AWS::KMS::Key": ("kms", f"key/{self.ref(logical_id)}", True),
                "AWS::IAM::Role": ("iam", f"role/{name}", False),
                "AWS::Serverless::Function": ("lambda", f"function:{name}", True),
                "AWS::Lambda::Function": ("lambda", f"function:{name}", True),
                "AWS::SQS::Queue": ("sqs", name, True),
                "AWS::Logs::LogGroup": ("logs", f"log-group:{name}:*", True),
                "AWS::Events::Rule": ("events", f"rule/{name}", True),
                "AWS::SNS::Topic": ("sns", name, True),
                "AWS::Serverless::StateMachine": ("states", f"stateMachine:{name}", True),
            }.get(kind)
            if service_resource is None:
                raise TemplateError(f"{self.source}: Fn::GetAtt {logical_id}.Arn is not supported for {kind}")
            service, resource, regional = service_resource
            if service == "s3":
                return f"arn:aws:s3:::{resource}"
            region = self.region if regional else ""
            account = "" if service == "s3" else self.account_id
            return f"arn:aws:{service}:{region}:{account}:{resource}"
        if kind == "AWS::SQS::Queue" and attribute == "QueueName":
            return name
        if kind == "AWS::SQS::Queue" and attribute == "QueueUrl":
            return self.ref(logical_id)
        if kind == "AWS::SNS::Topic" and attribute == "TopicName":
            return name
        if kind == "AWS::KMS::Key" and attribute == "KeyId":
            return self.ref(logical_id)
        raise TemplateError(f"{self.source}: Fn::GetAtt {logical_id}.{attribute} is not supported for {kind}")

    # -- intrinsics ----------------------------------------------------------------------

    def _pseudo(self, name: str) -> str | None:
        return {
            "AWS::Region": self.region,
            "AWS::AccountId": self.account_id,
            "AWS::StackName": self.stack_name,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackId": _arn("cloudformation", self.region, self.account_id, f"stack/{self.stack_name}/local"),
            "AWS::NoValue": None,
        }.get(name, "\0missing")

    def _ref_value(self, name: str, context: str, allow_resources: bool = True) -> Any:
        pseudo = self._pseudo(name)
        if pseudo != "\0missing":
            return pseudo
        if name in self.parameters:
            return self.parameters[name]
        if allow_resources and name in self.resources:
            return self.ref(name)
        raise TemplateError(f"{self.source}: {context}: Ref to unknown name {name!r}")

    def _sub(self, value: Any, context: str, allow_resources: bool) -> str:
        if isinstance(value, list):
            text, variables = (
                value[0],
                {k: self.resolve(v, context, allow_resources) for k, v in value[1].items()},
            )
        else:
            text, variables = value, {}
        out: list[str] = []
        i = 0
        while i < len(text):
            start = text.find("${", i)
            if start < 0:
                out.append(text[i:])
                break
            out.append(text[i:start])
            end = text.find("}", start)
            if end < 0:
                raise TemplateError(f"{self.source}: {context}: unterminated ${{ in Fn::Sub")
            name = text[start + 2 : end]
            i = end + 1
            if name.startswith("!"):
                out.append("${" + name[1:] + "}")
            elif name in variables:
                out.append(str(variables[name]))
            elif "." in name and name.split(".", 1)[0] in self.resources:
                logical, attribute = name.split(".", 1)
                out.append(self.get_att(logical, attribute))
            else:
                out.append(str(self._ref_value(name, context, allow_resources)))
        return "".join(out)

    def resolve(self, value: Any, context: str = "template", allow_resources: bool = True) -> Any:
        """Resolve every intrinsic in ``value``; ``AWS::NoValue`` removes the key or item."""
        if isinstance(value, list):
            items = [self.resolve(v, context, allow_resources) for v in value]
            return [v for v in items if v is not None]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, arg),) = value.items()
            if key == "Ref":
                return self._ref_value(arg, context, allow_resources)
            if key == "Fn::GetAtt":
                logical, attribute = arg if isinstance(arg, list) else arg.split(".", 1)
                return self.get_att(logical, attribute)
            if key == "Fn::Sub":
                return self._sub(arg, context, allow_resources)
            if key == "Fn::If":
                name, when_true, when_false = arg
                chosen = when_true if self._condition(name, set()) else when_false
                return self.resolve(chosen, context, allow_resources)
            if key == "Fn::FindInMap":
                mapping, first, second = (self.resolve(v, context, allow_resources) for v in arg)
                try:
                    return self.template["Mappings"][mapping][first][second]
                except KeyError:
                    raise TemplateError(
                        f"{self.source}: {context}: Fn::FindInMap has no {mapping}/{first}/{second}"
                    ) from None
            if key == "Fn::Join":
                separator, items = arg
                return separator.join(str(v) for v in self.resolve(items, context, allow_resources))
            if key == "Fn::Select":
                index, items = arg
                return self.resolve(items, context, allow_resources)[int(index)]
            if key == "Fn::Split":
                separator, text = arg
                return str(self.resolve(text, context, allow_resources)).split(separator)
            if key == "Fn::Equals":
                return self._evaluate_condition(value, set())
            if key.startswith("Fn::") or key == "Condition":
                raise TemplateError(f"{self.source}: {context}: intrinsic {key} is not supported locally")
        resolved = {k: self.resolve(v, f"{context}.{k}", allow_resources) for k, v in value.items()}
        return {k: v for k, v in resolved.items() if v is not None}

    def function_environment(self, logical_id: str) -> dict[str, str]:
        """A function's resolved ``Environment.Variables`` (Globals merged in)."""
        spec = self.resource(logical_id)
        if spec["Type"] not in ("AWS::Serverless::Function", "AWS::Lambda::Function"):
            raise TemplateError(f"{self.source}: {logical_id} is a {spec['Type']}, not a function")
        props = self.resolved_properties(logical_id)
        return {k: str(v) for k, v in props.get("Environment", {}).get("Variables", {}).items()}

    def state_machine_definition(self, logical_id: str, root: Path) -> dict[str, Any]:
        """The state machine's ASL with ``DefinitionSubstitutions`` applied."""
        props = self.resolved_properties(logical_id)
        definition_path = root / props["DefinitionUri"]
        text = definition_path.read_text(encoding="utf-8")
        for key, value in props.get("DefinitionSubstitutions", {}).items():
            text = text.replace("${" + key + "}", str(value))
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise TemplateError(f"{definition_path}: not valid JSON after substitution: {exc}") from exc
