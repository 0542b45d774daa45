import sys

from aep_extract.aws.worker import main

sys.exit(main())
