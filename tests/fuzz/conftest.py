"""Bad input by the thousand: every parser of untrusted input, fed what
hypothesis makes of it. The suite runs a short pass (LABKIT_FUZZ_EXAMPLES,
default 60 inputs a parser); `make fuzz` a long one."""

import os

from hypothesis import HealthCheck, settings

EXAMPLES = int(os.environ.get("LABKIT_FUZZ_EXAMPLES", "60"))

# No example database: nothing is written into the checkout (.hypothesis/).
settings.register_profile("labkit", max_examples=EXAMPLES, deadline=None, database=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                                 HealthCheck.function_scoped_fixture])
settings.load_profile("labkit")
