import sys

from drivestack.cli import main

sys.exit(main())
