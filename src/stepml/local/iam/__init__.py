"""IAM enforced in the local cloud, as AWS enforces it.

Every call made on behalf of a role (a Lambda under its function role, a state machine Task
under the state machine role, the Glue job under its role, SageMaker under the execution role)
reaches moto through a gate that evaluates the role's policies, as provisioned from
``template.yaml`` into moto's IAM, with a real policy evaluator:

- ``model``: the shared types (the principal, one authorization request, the decision);
- ``policy``: the evaluator (Allow/Deny, Action/NotAction, Resource/NotResource, Principal,
  conditions with their operators, wildcards, explicit deny, KMS key policies, resource
  policies) and AWS's wording of a denial, on ``documents`` (the grammar and its validation),
  ``matching`` (wildcards, policy variables) and ``conditions`` (the operators);
- ``requests`` (a package): which actions, resources and condition keys one HTTP call to an AWS
  API needs (``s3:GetObject`` on ``arn:aws:s3:::bucket/key`` ...): parsing by wire protocol, then
  one resolver per service family;
- ``gate``: the WSGI gate in front of moto and ``Authorizer``, with ``principals`` (the
  credentials each principal signs with), ``moto_policies`` (the policies as moto holds them)
  and ``record`` (every authorised call, which the mutation test replays);
- ``hooks``: where the engines act under roles.
"""
