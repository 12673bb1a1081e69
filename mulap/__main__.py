import sys

from mulap.cli import main

sys.exit(main())
