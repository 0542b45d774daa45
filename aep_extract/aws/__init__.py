"""The AWS pipeline: what AWS runs, and the CloudFormation template that deploys it.

- :mod:`aep_extract.aws.handlers`: the Lambda handlers of the state machine's steps,
  ``plan`` (plans every dataset's window once and writes the shard list to S3),
  ``status`` and ``verify``.
- :mod:`aep_extract.aws.worker`: one worker of the Map, ``python -m
  aep_extract.aws.worker``, run by a Glue Python shell job or an ECS task for one
  shard of a dataset.
- :mod:`aep_extract.aws.secrets`: the AEP credentials from Secrets Manager.
- :mod:`aep_extract.aws.template`: the CloudFormation template
  (``aep-extract aws template``) and its parameters.
- :mod:`aep_extract.aws.package`: builds ``lambda.zip`` and uploads it with the Glue
  script (``aep-extract aws package``).
- :mod:`aep_extract.aws.deploy`: creates or updates the stack from the template
  (``aep-extract aws deploy``).

The files AWS needs ship in ``aep_extract/aws/files``: ``pipeline.yaml`` (the
template), ``glue_job.py`` (the Glue script) and ``Dockerfile`` (the worker image).
Importing these modules imports no boto3; calling them does.
"""
