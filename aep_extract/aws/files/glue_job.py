"""The AWS Glue Python shell job of the pipeline: one worker of the Map."""

import sys

from aep_extract.aws.worker import main

sys.exit(main())
