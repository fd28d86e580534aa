"""django-scim2's adapters for the portal: a SCIM User is a Django account with its owner profile, a SCIM Group
an ``identity.ScimGroup``.

The adapters translate; the provisioning service (``identity.services.provisioning``) decides and writes. A
body or a PATCH is read whole (``identity.scim.parsing``) before the service is called once, so a refused part
leaves everything as it was. The request's user is the SCIM client's service account (``identity.scim.auth``).
"""

from __future__ import annotations

from django.conf import settings
from django_scim import exceptions
from django_scim.adapters import SCIMGroup, SCIMUser
from django_scim.constants import SchemaURI
from django_scim.models import SCIMServiceProviderConfig

from identity.scim import parsing
from identity.services import provisioning
from identity.services.provisioning import ProvisioningError

MAX_RESULTS = 200


def base_location(request=None, *args, **kwargs) -> str:
    """Where the SCIM resources' locations start: the portal's own address."""
    return settings.SITE_URL


def scim_error(error: ProvisioningError) -> exceptions.SCIMException:
    return exceptions.SCIMException("; ".join(error.messages), status=error.status, scim_type=error.kind)


def _iso(moment) -> str | None:
    return moment.isoformat() if moment else None


class _Provisioned:
    """What both adapters need of the request: who acts, and the source named in every reason."""

    @property
    def actor(self):
        return self.request.user

    @property
    def source(self) -> str:
        token = getattr(self.request, "scim_token", None)
        return f"SCIM {token.name}" if token is not None else "SCIM"

    def call(self, service, *args, **kwargs):
        try:
            return service(*args, actor=self.actor, source=self.source, **kwargs)
        except ProvisioningError as error:
            raise scim_error(error)


class ScimUser(_Provisioned, SCIMUser):
    """A person: their account (user name, names, email, active) and owner profile (externalId, and the
    enterprise extension's department and manager). The SCIM id is the account's primary key."""

    id_field = "pk"
    changes: dict | None = None

    @classmethod
    def find(cls, reference):
        return provisioning.find_person(reference)

    @property
    def profile(self):
        return getattr(self.obj, "owner_profile", None)

    @property
    def emails(self):
        return [{"value": self.obj.email, "type": "work", "primary": True}] if self.obj.email else []

    @property
    def groups(self):
        adapter = ScimGroupAdapter
        return [{"value": str(group.pk), "display": group.display_name,
                 "$ref": adapter(group, request=self.request).location} for group in self.obj.scim_groups.all()]

    @property
    def meta(self):
        last = getattr(self.obj, "last_changed", None)  # provisioning.with_details
        return {"resourceType": self.resource_type, "created": _iso(self.obj.date_joined),
                "lastModified": _iso(max(filter(None, (last, self.obj.date_joined)))), "location": self.location}

    def to_dict(self):
        profile = self.profile
        enterprise = {"department": profile.department if profile else ""}
        if profile is not None and profile.manager_id:
            manager = ScimUser(profile.manager, request=self.request)
            enterprise["manager"] = {"value": manager.id, "$ref": manager.location,
                                     "displayName": manager.display_name}
        document = {
            "schemas": [SchemaURI.USER, SchemaURI.ENTERPRISE_USER],
            "id": self.id,
            "userName": self.obj.username,
            "name": {"givenName": self.obj.first_name, "familyName": self.obj.last_name,
                     "formatted": self.name_formatted},
            "displayName": self.display_name,
            "emails": self.emails,
            "active": provisioning.is_active(self.obj),
            "groups": self.groups,
            SchemaURI.ENTERPRISE_USER: enterprise,
            "meta": self.meta,
        }
        if profile is not None and profile.external_id:
            document["externalId"] = profile.external_id
        return document

    def validate_dict(self, d):
        self.changes = parsing.user_changes(d, replace=self.obj.pk is not None)

    def from_dict(self, d):
        """Nothing to copy: ``validate_dict`` read the body, ``save`` hands it to the service."""

    def save(self):
        if self.obj.pk is None:
            self.obj = self.call(provisioning.create_person, self.changes)
        else:
            self.obj = self.call(provisioning.update_person, self.obj, self.changes)

    def delete(self):
        """A DELETE deactivates: the person departs and stays, so history and evidence keep pointing at them."""
        self.obj = self.call(provisioning.deactivate_person, self.obj)

    def handle_operations(self, operations):
        self.obj = self.call(provisioning.update_person, self.obj, parsing.user_patch(operations))

    @classmethod
    def resource_type_dict(cls, request=None):
        document = super().resource_type_dict(request)
        document["schemaExtensions"] = [{"schema": SchemaURI.ENTERPRISE_USER, "required": False}]
        return document


class ScimGroupAdapter(_Provisioned, SCIMGroup):
    """A provider's group; its members get the portal roles its display name maps to (IDENTITY_GROUP_ROLES)."""

    id_field = "pk"
    fields: dict | None = None
    member_ids: list | None = None

    @classmethod
    def find(cls, reference):
        return provisioning.find_group(reference)

    @property
    def display_name(self):
        return self.obj.display_name

    @property
    def members(self):
        return [{"value": str(user.pk), "display": user.get_username(),
                 "$ref": ScimUser(user, request=self.request).location} for user in self.obj.members.all()]

    @property
    def meta(self):
        last = self.obj.history.values_list("history_date", flat=True).first() if self.obj.pk else None
        return {"resourceType": self.resource_type, "created": _iso(self.obj.created_at),
                "lastModified": _iso(last or self.obj.created_at), "location": self.location}

    def to_dict(self):
        document = {
            "schemas": [SchemaURI.GROUP],
            "id": self.id,
            "displayName": self.display_name,
            "members": self.members,
            "meta": self.meta,
        }
        if self.obj.external_id:
            document["externalId"] = self.obj.external_id
        return document

    def validate_dict(self, d):
        self.fields, self.member_ids = parsing.group_fields(d)

    def from_dict(self, d):
        """Nothing to copy: ``validate_dict`` read the body, ``save`` hands it to the service."""

    def save(self):
        if self.obj.pk is None:
            self.obj = self.call(provisioning.create_group, member_ids=self.member_ids, **self.fields)
        else:
            self.obj = self.call(provisioning.update_group, self.obj, member_ids=self.member_ids,
                                 display_name=self.fields["display_name"],
                                 external_id=self.fields.get("external_id", ""))

    def delete(self):
        self.call(provisioning.delete_group, self.obj)

    def handle_operations(self, operations):
        current = {str(pk) for pk in self.obj.members.values_list("pk", flat=True)}
        fields, member_ids = parsing.group_patch(operations, current)
        self.obj = self.call(provisioning.update_group, self.obj, member_ids=member_ids, **fields)


class ServiceProviderConfig(SCIMServiceProviderConfig):
    """What this service provider supports: PATCH and filters (eq on userName, externalId, displayName...), no
    bulk, no password change (people sign in at the provider), no sorting or ETags."""

    def to_dict(self):
        document = super().to_dict()
        document.update({
            "filter": {"supported": True, "maxResults": MAX_RESULTS},
            "changePassword": {"supported": False},
            "bulk": {"supported": False, "maxOperations": 0, "maxPayloadSize": 0},
        })
        return document
