"""Patches to how moto's Step Functions interpreter evaluates JSONata and JSONPath.

Each fix is a registered ``stepml.local.patching.Patch`` (process lifetime): a JSONata
evaluator where moto has none, JSONata literals for string variables, and JSONPath filters
that yield arrays. moto is imported inside each ``install`` only.
"""

from __future__ import annotations

import functools
import json
import re
from typing import Any

from stepml.local.patching import Patch, PatchError, register

_TESTS = "tests/unit/stepfunctions/test_interpreter.py::"
_FILTER = re.compile(r"\[\s*\?")


def _install_jsonata_evaluator(patch: Patch) -> None:
    import jsonata
    from moto.stepfunctions.parser.asl.component.common.string.string_expression import StringJSONata
    from moto.stepfunctions.parser.asl.jsonata import jsonata as moto_jsonata

    def evaluate(expression: str) -> Any:
        try:
            result = jsonata.Jsonata(expression).evaluate(None)
            # Plain JSON values, as moto's (absent) JVM bridge would return: no JSONata
            # sequences or functions leak into the interpreter.
            return json.loads(json.dumps(result))
        except Exception as exc:  # jsonata-python raises JException, and TypeError for non-JSON results
            raise moto_jsonata.JSONataException("States.QueryEvaluationError", str(exc)) from exc

    patch.replace(moto_jsonata, "_eval_jsonata", evaluate)
    original_eval_body = StringJSONata._eval_body

    @functools.wraps(original_eval_body)
    def _eval_body(self, env):  # type: ignore[no-untyped-def]
        try:
            original_eval_body(self, env)
        except moto_jsonata.JSONataException as exc:
            raise _query_evaluation_error(env, self.expression, exc) from exc

    patch.replace(StringJSONata, "_eval_body", _eval_body)


def _query_evaluation_error(env: Any, expression: str, exc: Any) -> Exception:
    """As Step Functions reports a failed expression: a catchable States.QueryEvaluationError naming it."""
    from moto.stepfunctions.parser.api import EvaluationFailedEventDetails, HistoryEventType
    from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import (
        FailureEvent,
        FailureEventException,
    )
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import StatesErrorName
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import (
        StatesErrorNameType,
    )
    from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails

    error = StatesErrorName(typ=StatesErrorNameType.StatesQueryEvaluationError)
    cause = f"An error occurred while evaluating the expression '{expression}': {exc.details}"
    details = EvaluationFailedEventDetails(error=error.error_name, cause=cause)
    return FailureEventException(
        FailureEvent(
            env=env,
            error_name=error,
            event_type=HistoryEventType.EvaluationFailed,
            event_details=EventDetails(evaluationFailedEventDetails=details),
        )
    )


def _install_jsonata_string_variables_escaped(patch: Patch) -> None:
    from moto.stepfunctions.parser.asl.eval import states, variable_store
    from moto.stepfunctions.parser.asl.jsonata import jsonata as moto_jsonata
    from moto.stepfunctions.parser.asl.utils.encoding import to_json_str

    def encode_jsonata_variable_declarations(bindings: dict[str, Any]) -> str:
        # JSON text is a valid JSONata literal, strings included (quotes and backslashes escaped).
        return "".join(f"{name}:={to_json_str(value, separators=(',', ':'))};" for name, value in bindings.items())

    for module in (moto_jsonata, states, variable_store):
        patch.replace(module, "encode_jsonata_variable_declarations", encode_jsonata_variable_declarations)


def _install_jsonpath_filters_yield_arrays(patch: Patch) -> None:
    from jsonpath_ng.ext import parse
    from moto.stepfunctions.parser.asl.utils import json_path

    try:
        parse("$.a[?(@.b == 1 && @.c == 2 || @.d == 3)]")
    except Exception as exc:
        raise PatchError(
            "the installed jsonpath-ng cannot parse && / || in JSONPath filters; Step Functions can. "
            "Install jsonpath-ng>=1.16"
        ) from exc

    original = json_path._contains_slice_or_wildcard_array

    @functools.wraps(original)
    def _contains_slice_or_wildcard_array(path: str) -> bool:
        return original(path) or bool(_FILTER.search(path))

    patch.replace(json_path, "_contains_slice_or_wildcard_array", _contains_slice_or_wildcard_array)


register(
    Patch(
        name="jsonata-evaluator",
        why=(
            "moto's JSONata hook `_eval_jsonata` (parser/asl/jsonata/jsonata.py) is None (moto issue 10105), "
            "so every JSONata state machine, and every JSONPath `$variable` reference (evaluated by the same "
            "hook), failed with States.Runtime. The patch evaluates expressions with jsonata-python and reports "
            "an expression that fails as States.QueryEvaluationError naming the expression, as AWS does."
        ),
        test=_TESTS + "test_a_jsonata_state_machine_runs",
        install=_install_jsonata_evaluator,
    )
)
register(
    Patch(
        name="jsonata-string-variables-escaped",
        why=(
            'moto splices string variables into JSONata as `"value"` without escaping, so a variable or '
            "$states value holding a quote or backslash (an error Cause, a JSON document) broke the expression "
            "(States.Runtime). The patch encodes every value as JSON text, which is a valid JSONata literal."
        ),
        test=_TESTS + "test_string_variables_with_quotes_and_backslashes_survive_jsonata",
        install=_install_jsonata_string_variables_escaped,
    )
)
register(
    Patch(
        name="jsonpath-filter-results-are-arrays",
        why=(
            "A JSONPath filter that matches nothing (`$.items[?(@.n > 5)]`) gives [] in Step Functions; moto "
            "raised 'could not be found' (States.Runtime) because it only returns [] for wildcards and slices "
            "(moto issue 10078). The patch treats filters the same way. The issue's other half, && and || in "
            "filters, is handled by jsonpath-ng>=1.16; the patch fails to apply if the installed jsonpath-ng "
            "cannot parse them."
        ),
        test=_TESTS + "test_a_jsonpath_filter_that_matches_nothing_gives_an_empty_array",
        install=_install_jsonpath_filters_yield_arrays,
    )
)
