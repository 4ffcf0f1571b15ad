"""Patches to how moto's Step Functions interpreter evaluates JSONata and JSONPath.

Each fix is a registered ``stepml.local.patching.Patch`` (process lifetime): a JSONata
evaluator where moto has none, JSONata literals for string variables, JSONPath filters
that yield arrays, Assign string literals read once, a state's Assign taking effect after its
Output, and the error names and causes of invalid Wait timestamps and Map inputs. moto is
imported inside each ``install`` only.
"""

from __future__ import annotations

import functools
import json
import re
from typing import Any

from stepml.local.patching import Patch, PatchError, register

_TESTS = "tests/unit/stepfunctions/test_interpreter.py::"
_CONFORMANCE = "tests/unit/stepfunctions/test_conformance_executions.py::"
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


def _install_assign_string_literals_unescaped(patch: Patch) -> None:
    from moto.stepfunctions.parser.asl.component.common.assign.assign_template_value_terminal import (
        AssignTemplateValueTerminalLit,
    )
    from moto.stepfunctions.parser.asl.parse.preprocessor import Preprocessor

    def literal_of(ctx: Any) -> AssignTemplateValueTerminalLit:
        # The parser's text of a string is its JSON text: read it as JSON once, escapes included.
        return AssignTemplateValueTerminalLit(value=json.loads(ctx.getText()))

    def visit_string_literal(self, ctx):  # type: ignore[no-untyped-def]
        return literal_of(ctx.string_literal())

    original_jsonata = Preprocessor.visitAssign_template_value_terminal_string_jsonata

    @functools.wraps(original_jsonata)
    def visit_string_jsonata(self, ctx):  # type: ignore[no-untyped-def]
        terminal = original_jsonata(self, ctx)
        if isinstance(terminal, AssignTemplateValueTerminalLit):  # a JSONPath state: the text is a literal
            return literal_of(ctx.string_jsonata())
        return terminal

    patch.replace(Preprocessor, "visitAssign_template_value_terminal_string_literal", visit_string_literal)
    patch.replace(Preprocessor, "visitAssign_template_value_terminal_string_jsonata", visit_string_jsonata)


_PENDING = "_stepml_pending_assignments"


def _install_assign_after_output(patch: Patch) -> None:
    from moto.stepfunctions.parser.asl.component.common.assign.assign_decl import AssignDecl
    from moto.stepfunctions.parser.asl.component.state.state import CommonStateField

    original_assign = AssignDecl._eval_body

    @functools.wraps(original_assign)
    def _eval_body(self, env):  # type: ignore[no-untyped-def]
        pending = env.__dict__.get(_PENDING)
        if pending is None:
            return original_assign(self, env)
        # Evaluated now, with the variables as they were; set once the state's output is evaluated.
        for binding in self.declaration_bindings:
            binding.eval(env=env)
            pending.update(env.stack.pop())
        return None

    original_state = CommonStateField._eval_body

    @functools.wraps(original_state)
    def state_eval_body(self, env):  # type: ignore[no-untyped-def]
        outer = env.__dict__.get(_PENDING)
        env.__dict__[_PENDING] = {}
        try:
            original_state(self, env)
        finally:
            env.__dict__[_PENDING] = outer

    original_output = CommonStateField._eval_state_output

    @functools.wraps(original_output)
    def _eval_state_output(self, env):  # type: ignore[no-untyped-def]
        original_output(self, env)
        pending = env.__dict__.get(_PENDING) or {}
        env.__dict__[_PENDING] = None
        for identifier, value in pending.items():
            env.variable_store.set(variable_identifier=identifier, variable_value=value)

    patch.replace(AssignDecl, "_eval_body", _eval_body)
    patch.replace(CommonStateField, "_eval_body", state_eval_body)
    patch.replace(CommonStateField, "_eval_state_output", _eval_state_output)


def _install_invalid_values_named_as_aws_names_them(patch: Patch) -> None:
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import StatesErrorName
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import (
        StatesErrorNameType,
    )
    from moto.stepfunctions.parser.asl.component.common.string.string_expression import StringJSONata
    from moto.stepfunctions.parser.asl.component.state.exec.state_map import state_map
    from moto.stepfunctions.parser.asl.component.state.wait.wait_function.timestamp import Timestamp
    from moto.stepfunctions.parser.asl.utils.encoding import to_json_str

    original = Timestamp._create_failure_event

    @functools.wraps(original)
    def _create_failure_event(self, env, timestamp_str):  # type: ignore[no-untyped-def]
        event = original(self, env, timestamp_str)
        if isinstance(self.string, StringJSONata):
            error = StatesErrorName(typ=StatesErrorNameType.StatesQueryEvaluationError)
            event.error_name = error
            details = event.event_details["executionFailedEventDetails"]
            details["error"] = error.error_name
        return event

    def type_as_json(value: Any) -> str:
        # state_map words its cause "... must be an array but was: {type(items)}"; AWS shows the value.
        return to_json_str(value)

    patch.replace(Timestamp, "_create_failure_event", _create_failure_event)
    patch.replace(state_map, "type", type_as_json)


_FIELD_PATH = "_stepml_field_path"


def _field_tracking(original: Any, name_of: Any) -> Any:
    """``original`` (an ``_eval_body``), keeping the path of template fields being evaluated on ``env``."""

    @functools.wraps(original)
    def _eval_body(self, env):  # type: ignore[no-untyped-def]
        path = env.__dict__.setdefault(_FIELD_PATH, [])
        path.append(name_of(self))
        try:
            return original(self, env)
        finally:
            path.pop()

    return _eval_body


def _install_jsonata_errors_name_the_field(patch: Patch) -> None:
    from moto.stepfunctions.parser.asl.component.common import outputdecl, parargs
    from moto.stepfunctions.parser.asl.component.common.assign import assign_decl, assign_template_binding
    from moto.stepfunctions.parser.asl.component.common.jsonata.jsonata_template_binding import (
        JSONataTemplateBinding,
    )
    from moto.stepfunctions.parser.asl.jsonata import validations

    def parargs_name(component: Any) -> str:
        return "Arguments" if isinstance(component, parargs.Arguments) else "Parameters"

    fields = (
        (outputdecl.Output, lambda component: "Output"),
        (parargs.Parargs, parargs_name),
        (assign_decl.AssignDecl, lambda component: "Assign"),
        (JSONataTemplateBinding, lambda component: component.identifier),
        (assign_template_binding.AssignTemplateBinding, lambda component: component.identifier),
    )
    for cls, name_of in fields:
        patch.replace(cls, "_eval_body", _field_tracking(cls.__dict__["_eval_body"], name_of))

    original = validations._validate_null_output

    @functools.wraps(original)
    def _validate_null_output(env, expression, rich_jsonata_expression):  # type: ignore[no-untyped-def]
        try:
            original(env, expression, rich_jsonata_expression)
        except validations.FailureEventException as exc:
            path = "/".join(env.__dict__.get(_FIELD_PATH) or [])
            details = exc.failure_event.event_details.get("evaluationFailedEventDetails")
            if path and details is not None:
                details["cause"] = (
                    f"The JSONata expression '{expression}' specified for the field '{path}' "
                    "returned nothing (undefined)."
                )
            raise

    patch.replace(validations, "_validate_null_output", _validate_null_output)


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
register(
    Patch(
        name="assign-string-literals-unescaped",
        why=(
            "moto kept an Assign string literal as the definition's JSON text ('say \\\"hi\\\"'), so a variable "
            "holding quotes, backslashes or \\n held them escaped (twice, once read back). AWS's variable holds "
            "the literal's value; the patch reads the literal as JSON once."
        ),
        test=_CONFORMANCE + "test_assign_string_literals_hold_their_value",
        install=_install_assign_string_literals_unescaped,
    )
)
register(
    Patch(
        name="assign-after-output",
        why=(
            "moto set a state's Assign variables before evaluating its Output/OutputPath, so Output read the new "
            "values. AWS evaluates Assign and Output with the same, prior variable values ('Passing data between "
            "states with variables'); the patch evaluates Assign where moto does and sets the variables after the "
            "state's output."
        ),
        test=_CONFORMANCE + "test_output_reads_variables_as_they_were_before_the_states_assign",
        install=_install_assign_after_output,
    )
)
register(
    Patch(
        name="invalid-values-named-as-aws-names-them",
        why=(
            "A JSONata Wait whose Timestamp expression returned no valid timestamp failed with States.Runtime; "
            "AWS fails an invalid JSONata result with States.QueryEvaluationError. A Map whose ItemsPath selected "
            "no array said 'must be an array but was: <class 'int'>' (Python's type); AWS shows the value. "
            "The patch names the first and words the second as AWS does (the Wait's cause keeps moto's words)."
        ),
        test=_CONFORMANCE + "test_invalid_wait_timestamps_and_map_inputs_fail_as_aws_words_them",
        install=_install_invalid_values_named_as_aws_names_them,
    )
)
register(
    Patch(
        name="jsonata-errors-name-the-field",
        why=(
            "A JSONata expression that returned nothing failed with the cause \"The JSONata expression '...' "
            'returned nothing (undefined)."; AWS names the field it was written for ("... specified for the '
            "field 'Output/result' returned nothing (undefined).\"). The patch tracks the Output, Arguments, "
            "Parameters and Assign fields being evaluated and names the path in the cause."
        ),
        test=_CONFORMANCE + "test_a_jsonata_expression_that_returns_nothing_names_its_field",
        install=_install_jsonata_errors_name_the_field,
    )
)
