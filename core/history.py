"""Who made a change to a governed model, and why: the actor and reason of its next history record."""

# History's reason column (simple-history's ``history_change_reason``) holds this many characters.
REASON_LENGTH = 100


def attribute_change(instance, actor, reason: str) -> None:
    """Name the actor and the reason that the next ``save()`` or ``delete()`` of ``instance`` records.

    simple-history has no public call for this: these two attributes are its documented way to set
    the user and reason of the record a save writes.
    """
    instance._history_user = actor
    instance._change_reason = reason[:REASON_LENGTH]
