import sys

from pyvisor.cli import main

sys.exit(main())
