"""Signals other apps answer, so that attestations need not import them."""

from django.dispatch import Signal

# A reviewer is about to be told of ``count`` items to attest in ``campaign`` (``reminder``: not the
# first time). A receiver that reaches ``user`` its own way (a customer contact gets a sign-in link)
# answers True, and no inbox email is sent.
reviewer_notice = Signal()
