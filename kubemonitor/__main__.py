"""`python -m kubemonitor` is the `kubemonitor` command."""
import sys

from kubemonitor.cli import main

sys.exit(main())
