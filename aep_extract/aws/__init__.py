"""The AWS pipeline: the entry points AWS calls, the template, and its packaging.

:mod:`aep_extract.aws.package` builds and uploads what the template deploys
(``aep-extract aws package``).
"""
