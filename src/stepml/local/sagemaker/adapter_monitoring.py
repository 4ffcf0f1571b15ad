"""moto's SageMaker monitoring schedules, routed to a ``LocalSageMaker`` engine's ``monitoring``.

An adapter module like ``adapter.py`` (the only modules of the package that import moto), kept apart
so that each stays under a page: moto 5.2.5 has data-quality job definitions but no monitoring
schedules, so this module adds the schedule calls (Start and Stop included) and
ListMonitoringExecutions over the engine.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from moto.core.responses import ActionResult, EmptyResult
from moto.sagemaker.exceptions import ResourceInUseException
from moto.sagemaker.models import SageMakerModelBackend
from moto.sagemaker.responses import SageMakerResponse

from stepml.local import botocore_models
from stepml.local.patching import Patch, register
from stepml.local.sagemaker.adapter import _as_moto_errors, _request_from_kwargs, _wrap
from stepml.local.sagemaker.engine import LocalSageMaker
from stepml.local.sagemaker.validation import arn, validate_request

# --------------------------------------------------------------------------- monitoring schedules


def _create_data_quality_job_definition(original: Any, backend: Any, **kwargs: Any) -> Any:
    request = _request_from_kwargs("CreateDataQualityJobDefinition", kwargs)
    name = request.get("JobDefinitionName")
    if name in backend.data_quality_job_definitions:
        definition_arn = arn("data-quality-job-definition", str(name), backend.account_id, backend.region_name)
        raise ResourceInUseException(message=f"Job definition {definition_arn} already exists")
    with _as_moto_errors():
        validate_request("CreateDataQualityJobDefinition", request)
    return original(backend, **kwargs)


def _job_definition(backend: Any, config: Mapping[str, Any] | None) -> dict[str, Any] | None:
    found = backend.data_quality_job_definitions.get((config or {}).get("MonitoringJobDefinitionName"))
    return copy.deepcopy(found.response_object) if found is not None else None


def _params(response: Any, operation: str) -> dict[str, Any]:
    members = botocore_models.operation_model("sagemaker", operation).input_shape.members
    return {m: response._get_param(m) for m in members if response._get_param(m) is not None}


def _install_monitoring(patch: Patch, engine: LocalSageMaker) -> None:
    schedules = engine.monitoring

    def where(response: Any) -> dict[str, str]:
        return {"account_id": response.current_account, "region": response.region}

    def create_or_update(response: Any, operation: str) -> Any:
        request = _params(response, operation)
        definition = _job_definition(response.sagemaker_backend, request.get("MonitoringScheduleConfig"))
        with _as_moto_errors():
            act = schedules.create if operation == "CreateMonitoringSchedule" else schedules.update
            return ActionResult({"MonitoringScheduleArn": act(request, definition, **where(response)).arn})

    def describe(response: Any) -> Any:
        name = response._get_param("MonitoringScheduleName")
        with _as_moto_errors():
            return ActionResult(schedules.get(name, **where(response)).describe())

    def delete(response: Any) -> Any:
        with _as_moto_errors():
            schedules.delete(response._get_param("MonitoringScheduleName"), **where(response))
        return EmptyResult()

    def set_running(response: Any, running: bool) -> Any:
        with _as_moto_errors():
            schedules.set_running(response._get_param("MonitoringScheduleName"), running, **where(response))
        return EmptyResult()

    def list_schedules(response: Any) -> Any:
        request = _params(response, "ListMonitoringSchedules")
        found = [s.summary() for s in schedules.all(**where(response))]
        return ActionResult({"MonitoringScheduleSummaries": _listed(found, request, "CreationTime")})

    def list_executions(response: Any) -> Any:
        request = _params(response, "ListMonitoringExecutions")
        found = schedules.executions(**where(response))
        return ActionResult({"MonitoringExecutionSummaries": _listed(found, request, "ScheduledTime")})

    for name, action in {
        "create_monitoring_schedule": lambda self: create_or_update(self, "CreateMonitoringSchedule"),
        "update_monitoring_schedule": lambda self: create_or_update(self, "UpdateMonitoringSchedule"),
        "describe_monitoring_schedule": describe,
        "delete_monitoring_schedule": delete,
        "start_monitoring_schedule": lambda self: set_running(self, True),
        "stop_monitoring_schedule": lambda self: set_running(self, False),
        "list_monitoring_schedules": list_schedules,
        "list_monitoring_executions": list_executions,
    }.items():
        patch.replace(SageMakerResponse, name, action)
    _wrap(patch, SageMakerModelBackend, "create_data_quality_job_definition", _create_data_quality_job_definition)


#: ListMonitoringSchedules' and ListMonitoringExecutions' filters: request member -> the summary's.
_LIST_FILTERS = {
    "EndpointName": "EndpointName",
    "MonitoringScheduleName": "MonitoringScheduleName",
    "MonitoringJobDefinitionName": "MonitoringJobDefinitionName",
    "MonitoringTypeEquals": "MonitoringType",
    "StatusEquals": None,
}


def _listed(items: list[dict[str, Any]], request: Mapping[str, Any], default_sort: str) -> list[dict[str, Any]]:
    """Filter, sort (newest first unless SortOrder Ascending) and cut a List* answer (one page)."""
    for member, key in _LIST_FILTERS.items():
        if member in request:
            key = key or ("MonitoringScheduleStatus" if default_sort == "CreationTime" else "MonitoringExecutionStatus")
            items = [i for i in items if i.get(key) == request[member]]
    if "NameContains" in request:
        items = [i for i in items if request["NameContains"] in i["MonitoringScheduleName"]]
    sort = {"Name": "MonitoringScheduleName", "Status": "MonitoringScheduleStatus"}.get(
        request.get("SortBy", default_sort), request.get("SortBy", default_sort)
    )
    items.sort(key=lambda i: i.get(sort) or "", reverse=request.get("SortOrder", "Descending") == "Descending")
    return items[: int(request.get("MaxResults") or 10)]


MONITORING = register(
    Patch(
        name="sagemaker-monitoring-schedules",
        why=(
            "moto 5.2.5 stores data-quality job definitions without checks (a duplicate name replaces the first) "
            "and has no monitoring schedules. The patch checks CreateDataQualityJobDefinition against botocore's "
            "model and refuses a duplicate, and adds Create/Update/Describe/Delete/Start/Stop/List"
            "MonitoringSchedule(s) and ListMonitoringExecutions backed by the engine, which runs each "
            "schedule's data-quality analysis."
        ),
        test="tests/unit/test_local_monitoring.py::test_a_schedule_writes_reports_and_metrics_through_the_api",
        install=_install_monitoring,
        scope="cloud",
    )
)
