import sys

from clo.cli import main

sys.exit(main())
