"""Step Functions in the local cloud: what AWS offers and refuses, and the fixes to moto's interpreter.

- ``integrations``: the optimized integrations table and Task Resource parsing (no moto).
- ``errors``: the error names Step Functions gives failures, and what each Task can raise (no moto).
- ``definitions`` and ``schema``: what CreateStateMachine and ValidateStateMachineDefinition
  refuse (no moto).
- ``serialisation``: datetimes as Step Functions writes them (epoch milliseconds, ISO-8601).
- ``sagemaker_integration``: the SageMaker optimized integration for moto's interpreter.
- ``tasks``, ``expressions``, ``executions``, ``validation``: the interpreter fixes, each a
  registered ``stepml.local.patching.Patch``.
- ``test_state``, ``test_state_mocks`` and ``test_state_http``: the TestState API (Workflow Studio's
  "Test state"), its mocks and its HTTP Task, registered patches.
- ``redrive``: RedriveExecution and the redrive members of DescribeExecution/ListExecutions,
  registered patches.

Importing this package imports none of its modules (and so no moto).
"""
