"""``python -m resyn_bench.cli ...`` (as under torchrun): the ``resyn-bench`` command."""
import sys

from resyn_bench.cli import main

sys.exit(main())
