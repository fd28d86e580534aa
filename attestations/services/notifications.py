"""Emails to reviewers, managers and new owners, through Django's mail backend."""

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import send_mail
from django.urls import reverse

from attestations.signals import reviewer_notice

User = get_user_model()


def absolute(path: str) -> str:
    return f"{settings.SITE_URL}{path}"


def _send(user, subject: str, body: str) -> None:
    if not user.email:
        return
    send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, [user.email])


def _reached_otherwise(campaign, user, count: int, *, reminder: bool) -> bool:
    answers = reviewer_notice.send(sender=type(campaign), campaign=campaign, user=user, count=count, reminder=reminder)
    return any(answer for _, answer in answers)


def campaign_launched(campaign, user, count: int) -> None:
    if _reached_otherwise(campaign, user, count, reminder=False):  # a customer contact gets a sign-in link
        return
    _send(
        user,
        f"[Keys portal] {count} API key(s) to attest in {campaign.name}",
        f"Hello {user.get_username()},\n\n{campaign.name} asks you to confirm or release {count} API key(s) you own "
        f"by {campaign.due_on:%d %b %Y}.\n\nYour inbox: {absolute(reverse('attestations:inbox'))}\n\n"
        f"Keys nobody vouches for by then will be handled as follows: {campaign.get_default_action_display()}.\n",
    )


def reminder(campaign, user, count: int) -> None:
    if _reached_otherwise(campaign, user, count, reminder=True):
        return
    _send(
        user,
        f"[Keys portal] Reminder: {count} API key(s) still to attest in {campaign.name}",
        f"Hello {user.get_username()},\n\n{count} key(s) in {campaign.name} still wait for your decision; "
        f"the campaign closes on {campaign.due_on:%d %b %Y}.\n\n"
        f"Your inbox: {absolute(reverse('attestations:inbox'))}\n",
    )


def escalation(campaign, manager, items) -> None:
    lines = "\n".join(
        f"- {item.key.label} ({item.key.prefix}…), owner {item.reviewer.get_username()}: "
        f"{absolute(reverse('attestations:item', args=[item.pk]))}"
        for item in items
    )
    _send(
        manager,
        f"[Keys portal] Escalation: {len(items)} API key(s) unattested in {campaign.name}",
        f"Hello {manager.get_username()},\n\nThese keys have not been attested by their owners in {campaign.name}, "
        f"which closes on {campaign.due_on:%d %b %Y}:\n\n{lines}\n\n"
        f"Please follow up with the owners or have the keys reassigned.\n",
    )


def transfer_requested(transfer) -> None:
    _send(
        transfer.to_user,
        f"[Keys portal] {transfer.from_user.get_username()} asks you to own API key {transfer.key.label}",
        f"Hello {transfer.to_user.get_username()},\n\n{transfer.requested_by.get_username()} named you as the owner "
        f"of the API key {transfer.key.label} ({transfer.key.prefix}…): {transfer.reason}\n\n"
        f"Accept or decline it here: {absolute(reverse('attestations:inbox'))}\n",
    )
