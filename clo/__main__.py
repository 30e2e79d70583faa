import sys

from clo.cli.main import main

sys.exit(main())
