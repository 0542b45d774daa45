"""The AWS pipeline's entry points: what Step Functions, Glue and ECS call.

- :mod:`aep_extract.aws.handlers`: the Lambda handlers of the state machine's steps,
  ``plan`` (plans every dataset's window once and writes the shard list to S3),
  ``status`` and ``verify``.
- :mod:`aep_extract.aws.worker`: one worker of the Map, ``python -m
  aep_extract.aws.worker`` (the container's entry point; the Glue job's script
  ``files/glue_job.py`` calls its ``main``).
- :mod:`aep_extract.aws.secrets`: the AEP credentials from Secrets Manager.
- :mod:`aep_extract.aws.package`: builds ``lambda.zip`` and uploads it with the Glue
  script (``aep-extract aws package``).

The CloudFormation template (``aep_extract.aws.template``), the Glue script and the
worker image ship in ``aep_extract/aws/files/``. Importing these modules imports no
boto3; calling them does.
"""
