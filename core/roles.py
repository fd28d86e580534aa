"""The portal's roles, as Django groups, and the single answer to "what may this user do"."""

from django.contrib.auth.models import Group, Permission

OWNER = "owner"
COMPLIANCE = "compliance"
ADMIN = "admin"
# External people at a customer: no password, no model permission; they reach only the contact pages.
CUSTOMER_CONTACT = "customer_contact"
# External auditors: read evidence, history and exports while compliance's grant to them lasts; change nothing.
AUDITOR = "auditor"
ROLES = (OWNER, COMPLIANCE, ADMIN, CUSTOMER_CONTACT, AUDITOR)
# The roles an identity provider may give (single sign-on groups, SCIM groups); the others are the portal's to give.
PROVIDED_ROLES = (OWNER, COMPLIANCE, ADMIN)

GOVERNED_APPS = ("keys", "attestations", "contacts")


def _group_names(user) -> set[str]:
    if not user.is_authenticated:
        return set()
    cached = getattr(user, "_role_names", None)
    if cached is None:
        cached = set(user.groups.values_list("name", flat=True))
        user._role_names = cached
    return cached


def is_admin(user) -> bool:
    return user.is_authenticated and (user.is_superuser or ADMIN in _group_names(user))


def is_compliance(user) -> bool:
    return user.is_authenticated and COMPLIANCE in _group_names(user)


def is_owner(user) -> bool:
    return user.is_authenticated and OWNER in _group_names(user)


def is_customer_contact(user) -> bool:
    """An external person at a customer: reaches only the contact pages, runs no integration, reports nothing."""
    return user.is_authenticated and CUSTOMER_CONTACT in _group_names(user)


def is_auditor(user) -> bool:
    """An external auditor (whether their grant still lasts is ``AuditorGrant``'s answer, enforced per request)."""
    return user.is_authenticated and AUDITOR in _group_names(user)


def sees_everything(user) -> bool:
    """Compliance reads everything; admins manage everything."""
    return is_admin(user) or is_compliance(user)


# Set on the request's user by ``core.auditors.middleware`` once it has found the auditor's current grant.
AUDITOR_GRANT_ATTRIBUTE = "current_auditor_grant"


def reads_as_auditor(user) -> bool:
    """An auditor whose current grant this request has found: they read what compliance reads, for this request.
    Without it (no grant found, a request that did not pass the middleware) an auditor reads no more than anyone."""
    return getattr(user, AUDITOR_GRANT_ATTRIBUTE, None) is not None and is_auditor(user)


def reads_everything(user) -> bool:
    """Who reads every key, item, campaign and export: compliance, admins, and an auditor while their grant lasts.
    Only ``sees_everything`` may act on what it reads."""
    return sees_everything(user) or reads_as_auditor(user)


def sync_role_permissions(apps=None) -> None:
    """Create the role groups and give them their model permissions.

    Compliance may view every governed model; admin may do everything on them; owner has no model
    permission at all: owners see keys through ownership and object permissions only.
    """
    group_model = apps.get_model("auth", "Group") if apps else Group
    permission_model = apps.get_model("auth", "Permission") if apps else Permission
    groups = {name: group_model.objects.get_or_create(name=name)[0] for name in ROLES}
    governed = permission_model.objects.filter(content_type__app_label__in=GOVERNED_APPS)
    groups[ADMIN].permissions.add(*governed)
    # Admins pick users (owners, stewards) in the Django admin's autocomplete fields.
    groups[ADMIN].permissions.add(*permission_model.objects.filter(content_type__app_label="auth", codename="view_user"))
    groups[COMPLIANCE].permissions.add(*governed.filter(codename__startswith="view_"))


def sync_role_permissions_after_migrate(app_config=None, using="default", **kwargs) -> None:
    # Sent once per app with models (also after a test flush): resync when a governed app is done.
    if app_config is not None and app_config.label in GOVERNED_APPS:
        sync_role_permissions()
