import sys

from ct_service.cli import main

sys.exit(main())
