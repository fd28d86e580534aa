"""The Django admin for the key registry, one module per kind of record.

An API key's state is never changed by a plain admin save: lifecycle fields are read-only, adding
a key goes through ``keys.services.lifecycle.register_key`` and state changes are admin actions that call
the lifecycle service. The secret is never a field of any admin form except the write-only
registration field, which is fingerprinted and dropped.
"""

from keys.admin import exceptions, integrations, inventory, keys  # noqa: F401  (importing registers them)
