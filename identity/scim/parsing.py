"""SCIM request bodies read into the provisioning service's terms, as Okta and Entra ID send them.

A person's body or PATCH operations become ``changes`` ({field: value} of ``provisioning.FIELDS``); a group's
become its fields and its final member ids. Everything is read before anything is changed, so a body with one
bad part changes nothing. Attribute names are case-insensitive (RFC 7643 2.1). Attributes of the SCIM schemas
that the portal does not keep (title, phone numbers, addresses, locale, password...) are accepted and ignored,
because providers send them by default; an attribute of no schema, or a value of the wrong type, is refused.

Known provider habits handled here: Entra's capitalised ``op`` ("Replace"), its ``"active": "False"`` string,
its manager given as a bare id string, member removal with a ``value`` list as well as with a
``members[value eq "id"]`` path; Okta's path-less ``{"op": "replace", "value": {"active": false}}``.
"""

from __future__ import annotations

import re

from django_scim import exceptions
from django_scim.constants import SchemaURI

ENTERPRISE = SchemaURI.ENTERPRISE_USER.lower()
CORE_USER = SchemaURI.USER.lower()
CORE_GROUP = SchemaURI.GROUP.lower()

# Core User attributes (RFC 7643 4.1) the portal does not keep; "password" too: people sign in at the provider.
IGNORED_USER = frozenset({
    "id", "schemas", "meta", "displayname", "nickname", "profileurl", "title", "usertype", "preferredlanguage",
    "locale", "timezone", "password", "phonenumbers", "ims", "photos", "addresses", "groups", "entitlements",
    "roles", "x509certificates",
})
NAME_PARTS = {"givenname": "first_name", "familyname": "last_name"}
IGNORED_NAME_PARTS = frozenset({"formatted", "middlename", "honorificprefix", "honorificsuffix"})
IGNORED_ENTERPRISE = frozenset({"employeenumber", "costcenter", "organization", "division"})
IGNORED_GROUP = frozenset({"id", "schemas", "meta"})
OPS = ("add", "replace", "remove")

PATH = re.compile(
    r"^(?:(?P<urn>urn:[A-Za-z0-9:._-]+?):)?(?P<attr>[A-Za-z$][\w$-]*)(?:\[(?P<filter>[^\]]*)\])?(?:\.(?P<sub>[A-Za-z$][\w$-]*))?$"
)
TYPE_EQ = re.compile(r'\btype\s+eq\s+"([^"]*)"', re.IGNORECASE)
VALUE_EQ = re.compile(r'\bvalue\s+eq\s+"((?:[^"\\]|\\.)*)"', re.IGNORECASE)


def invalid(detail: str, kind: str = "invalidValue"):
    return exceptions.BadRequestError(detail, scim_type=kind)


def _text(value, what: str, *, allow_none=True) -> str | None:
    if value is None and allow_none:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        raise invalid(f"{what} must be a string.")
    return value


def _bool(value, what: str) -> bool:
    """A boolean; Entra ID sends "True"/"False" strings."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise invalid(f"{what} must be true or false.")


def _object(value, what: str) -> dict:
    if not isinstance(value, dict):
        raise invalid(f"{what} must be an object.", "invalidSyntax")
    return value


def _email(value) -> str:
    """The person's one address from a SCIM ``emails`` list: the primary, else the work one, else the first."""
    if value is None:
        return ""
    if isinstance(value, dict):  # some clients send one object instead of a list
        value = [value]
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise invalid("emails must be a list of objects.", "invalidSyntax")
    addresses = [item for item in value if item.get("value")]
    if not addresses:
        return ""
    chosen = next((item for item in addresses if item.get("primary") in (True, "true", "True")), None)
    chosen = chosen or next((item for item in addresses if str(item.get("type", "")).lower() == "work"), addresses[0])
    return _text(chosen["value"], "emails.value") or ""


def _manager(value):
    """A manager reference: ``{"value": id}`` (RFC 7643 4.3), or a bare id string (Entra ID); empty: none."""
    if isinstance(value, dict):
        value = value.get("value")
    value = _text(value, "manager.value")
    return value.strip() or None if value is not None else None


def _keys(body: dict) -> dict:
    return {str(key).lower(): value for key, value in body.items()}


# People -------------------------------------------------------------------------------------------------

def _name(changes: dict, value, *, replace: bool) -> None:
    parts = _keys(_object(value, "name"))
    for key in parts:
        if key not in NAME_PARTS and key not in IGNORED_NAME_PARTS:
            raise invalid(f"name has no attribute {key!r}.", "invalidSyntax")
    for key, field in NAME_PARTS.items():
        if key in parts or replace:
            changes[field] = _text(parts.get(key), f"name.{key}") or ""


def _enterprise(changes: dict, value, *, replace: bool) -> None:
    parts = _keys(_object(value, SchemaURI.ENTERPRISE_USER))
    for key in parts:
        if key not in ("department", "manager") and key not in IGNORED_ENTERPRISE:
            raise invalid(f"The enterprise extension has no attribute {key!r}.", "invalidSyntax")
    if "department" in parts or replace:
        changes["department"] = _text(parts.get("department"), "department") or ""
    if "manager" in parts or replace:
        changes["manager"] = _manager(parts.get("manager"))


def user_changes(body, *, replace: bool) -> dict:
    """The changes a POST (``replace`` False: what is given) or PUT (``replace`` True) body asks for.

    A PUT replaces the names, email and, when the body has the enterprise extension, department and manager
    (absent: cleared); it leaves ``active`` and ``externalId`` as they are when absent (a departure or a broken
    sign-in link is never made by leaving something out)."""
    body = _keys(_object(body, "The body"))
    changes: dict = {}
    for key, value in body.items():
        if key == "username":
            changes["username"] = _text(value, "userName", allow_none=False)
        elif key == "name":
            if value is not None:
                _name(changes, value, replace=replace)
        elif key == "emails":
            changes["email"] = _email(value)
        elif key == "active":
            changes["active"] = _bool(value, "active")
        elif key == "externalid":
            changes["external_id"] = _text(value, "externalId")
        elif key == ENTERPRISE:
            if value is not None:
                _enterprise(changes, value, replace=replace)
        elif key not in IGNORED_USER:
            raise invalid(f"{key!r} is not an attribute of a SCIM user.", "invalidSyntax")
    if "username" not in changes:
        raise invalid("userName is required.")
    if replace:
        changes.setdefault("first_name", "")
        changes.setdefault("last_name", "")
        changes.setdefault("email", "")
    return changes


def parse_path(path) -> tuple[str, str, str | None, str | None]:
    """(schema URN or "", attribute, filter or None, sub-attribute or None), names lower-cased."""
    if not isinstance(path, str) or not path.strip():
        raise invalid("path must be a non-empty string.", "invalidPath")
    path = path.strip()
    if path.lower() == ENTERPRISE:
        return ENTERPRISE, "", None, None
    match = PATH.match(path)
    if match is None:
        raise invalid(f"Cannot read the path {path!r}.", "invalidPath")
    urn = (match["urn"] or "").lower()
    return urn, match["attr"].lower(), match["filter"], (match["sub"] or "").lower() or None


def _operations(operations) -> list[tuple[str, object, object]]:
    """(op, path or None, value) of each PATCH operation, checked."""
    if not isinstance(operations, list) or not operations:
        raise invalid("A PATCH needs a non-empty Operations list.", "invalidSyntax")
    read = []
    for operation in operations:
        operation = _keys(_object(operation, "An operation"))
        op = str(operation.get("op", "")).lower()
        if op not in OPS:
            raise invalid(f"Unknown PATCH op {operation.get('op')!r}: add, replace or remove.", "invalidSyntax")
        path = operation.get("path")
        if path in (None, ""):
            if op == "remove":
                raise invalid('A "remove" operation needs a path.', "noTarget")
            if not isinstance(operation.get("value"), dict):
                raise invalid("An operation without a path needs an object as its value.", "invalidSyntax")
            path = None
        read.append((op, path, operation.get("value")))
    return read


def user_patch(operations) -> dict:
    """The changes a person's PATCH operations ask for, applied in order."""
    changes: dict = {}
    for op, path, value in _operations(operations):
        if path is None:
            for key, item in value.items():
                _user_path(changes, op, str(key), item)
        else:
            _user_path(changes, op, path, value)
    return changes


def _user_path(changes: dict, op: str, path: str, value) -> None:
    urn, attr, value_filter, sub = parse_path(path)
    remove = op == "remove"
    if urn == ENTERPRISE:
        if not attr:
            if remove:
                changes.update(department="", manager=None)
            else:  # sub-attributes not given stay as they are (RFC 7644 3.5.2.3)
                _enterprise(changes, value, replace=False)
        elif attr == "department" and not sub:
            changes["department"] = "" if remove else _text(value, "department") or ""
        elif attr == "manager" and sub in (None, "value"):
            changes["manager"] = None if remove else _manager(value)
        elif attr not in IGNORED_ENTERPRISE and not (attr == "manager" and sub == "displayname"):
            raise invalid(f"The enterprise extension has no attribute {path!r}.", "invalidPath")
        return
    if urn and urn != CORE_USER:
        raise invalid(f"Unknown schema in the path {path!r}.", "invalidPath")
    if attr == "username" and not sub:
        if remove:
            raise invalid("userName is required: it cannot be removed.", "mutability")
        changes["username"] = _text(value, "userName", allow_none=False)
    elif attr == "active" and not sub:
        if remove:
            raise invalid("active cannot be removed: set it to false.", "mutability")
        changes["active"] = _bool(value, "active")
    elif attr == "externalid" and not sub:
        changes["external_id"] = None if remove else _text(value, "externalId")
    elif attr == "name":
        if sub is None:
            if remove:
                changes.update(first_name="", last_name="")
            else:
                _name(changes, value, replace=False)
        elif sub in NAME_PARTS:
            changes[NAME_PARTS[sub]] = "" if remove else _text(value, path) or ""
        elif sub not in IGNORED_NAME_PARTS:
            raise invalid(f"name has no attribute {sub!r}.", "invalidPath")
    elif attr == "emails":
        wanted = TYPE_EQ.search(value_filter or "")
        if wanted and wanted.group(1).lower() != "work":
            return  # the portal keeps one address, the work one (Entra also sends proxy addresses as "other")
        if remove:
            changes["email"] = ""
        elif sub == "value":
            changes["email"] = _text(value, path) or ""
        elif sub is None:
            changes["email"] = _email(value)
        elif sub not in ("type", "primary", "display"):
            raise invalid(f"emails has no attribute {sub!r}.", "invalidPath")
    elif attr not in IGNORED_USER:
        raise invalid(f"{path!r} is not an attribute of a SCIM user.", "invalidPath")


# Groups -------------------------------------------------------------------------------------------------

def _member_ids(value, what: str = "members") -> list[str]:
    if value is None:
        return []
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list):
        raise invalid(f"{what} must be a list of {{\"value\": id}} objects.", "invalidSyntax")
    ids = []
    for member in value:
        member_id = _text(_object(member, "A member").get("value"), "members.value")
        if not member_id:
            raise invalid("A member needs a value (the person's id).")
        ids.append(member_id.strip())
    return ids


def group_fields(body) -> tuple[dict, list[str]]:
    """({"display_name", "external_id"}, member ids) of a group's POST or PUT body (members absent: none)."""
    body = _keys(_object(body, "The body"))
    fields: dict = {}
    members: list[str] = []
    for key, value in body.items():
        if key == "displayname":
            fields["display_name"] = _text(value, "displayName", allow_none=False)
        elif key == "externalid":
            fields["external_id"] = _text(value, "externalId") or ""
        elif key == "members":
            members = _member_ids(value)
        elif key not in IGNORED_GROUP:
            raise invalid(f"{key!r} is not an attribute of a SCIM group.", "invalidSyntax")
    if not fields.get("display_name"):
        raise invalid("displayName is required.")
    return fields, members


def group_patch(operations, current: set[str]) -> tuple[dict, set[str] | None]:
    """(fields changed, the members after the operations or None if untouched), starting from ``current`` ids."""
    fields: dict = {}
    members = set(current)
    touched = False
    for op, path, value in _operations(operations):
        items = value.items() if path is None else [(path, value)]
        for key, item in items:
            urn, attr, member_filter, sub = parse_path(str(key))
            if urn and urn != CORE_GROUP:
                raise invalid(f"Unknown schema in the path {key!r}.", "invalidPath")
            if attr == "displayname" and not sub:
                if op == "remove":
                    raise invalid("displayName is required: it cannot be removed.", "mutability")
                fields["display_name"] = _text(item, "displayName", allow_none=False)
            elif attr == "externalid" and not sub:
                fields["external_id"] = "" if op == "remove" else _text(item, "externalId") or ""
            elif attr == "members" and not sub:
                touched = True
                named = set(VALUE_EQ.findall(member_filter)) if member_filter else set()
                if member_filter is not None and not named:
                    raise invalid(f"Cannot read the member filter {member_filter!r}: use value eq \"id\".", "invalidFilter")
                if op == "remove":
                    gone = named | set(_member_ids(item)) if (named or item is not None) else set(members)
                    members -= gone
                elif named:
                    raise invalid("Add members with the path \"members\" and a value list.", "invalidPath")
                elif op == "add":
                    members |= set(_member_ids(item))
                else:
                    members = set(_member_ids(item))
            elif attr not in IGNORED_GROUP:
                raise invalid(f"{key!r} is not an attribute of a SCIM group.", "invalidPath")
    return fields, (members if touched else None)
