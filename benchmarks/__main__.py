import sys

from jaxrnn.bench import main

sys.exit(main())
