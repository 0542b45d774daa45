"""The AWS pipeline: what AWS runs, and the CloudFormation template that deploys it.

- :mod:`aep_extract.aws.handlers`: the Lambda handlers of the state machine's steps
  (plan, status, verify).
- :mod:`aep_extract.aws.worker`: the worker that a Glue Python shell job or an ECS
  task runs for one shard of a dataset.
- :mod:`aep_extract.aws.secrets`: the AEP credentials from Secrets Manager.
- :mod:`aep_extract.aws.template`: the CloudFormation template
  (``aep-extract aws template``) and its parameters.

The files AWS needs ship in ``aep_extract/aws/files``: ``pipeline.yaml`` (the
template), ``glue_job.py`` (the Glue script) and ``Dockerfile`` (the worker image).
"""
