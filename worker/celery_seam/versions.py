"""The Celery and kombu this process runs, and what differs between the versions the
seam was read in (Celery and kombu 5.5, 5.6 and 5.7: pyproject.toml's ranges, whose
lowest versions scripts/test-lowest runs the seam's tests on): the one place the seam
looks at a version. Compare with celery_batches, which gates `create_request_cls`'s
arguments on CELERY_VERSION the same way."""

from __future__ import annotations

import celery
import kombu

# Named tuples: (major, minor, micro, releaselevel, serial), compared as tuples.
CELERY_VERSION = celery.VERSION
KOMBU_VERSION = kombu.VERSION

# Celery 5.7 keeps failures for result_failure_expires; before it, a failure expires
# as every result does (result_expires). (backend.py)
HAS_FAILURE_EXPIRES = CELERY_VERSION >= (5, 7)
# kombu 5.7 flushes a pending re-authentication of the BRPOP connection once a reply
# is read (Channel._flush_brpop_reauth); 5.5 and 5.6 have no such step. (transport.py)
FLUSHES_BRPOP_REAUTH = KOMBU_VERSION >= (5, 7)
