import sys

from jaxrnn._cli import main

sys.exit(main())
