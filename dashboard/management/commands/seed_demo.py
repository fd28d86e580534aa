"""Demo data: users, customers, workflows, issuing systems and ~40 keys in realistic states, and the reviews
around them: two closed campaigns (the later one's report rendered and signed in Evidence), an overdue
offboarding campaign with an escalated item, a two-stage campaign halfway through with items pending for
owner1, owner2, compliance and a customer contact, exceptions in every state and keys in their release
grace window.

Everything is created through the services (``keys.services``, ``attestations.services``, ``contacts.access``)
so history, events and the evidence chain look like the real thing. The services stamp what they do with
the current time; campaign dates weeks in the past are then set with plain UPDATEs of the campaign, item
and exception rows, which are not chained: their chained history records keep the time the demo was seeded,
and ``verify_history`` stays clean. The fake secrets are random, fingerprinted and dropped; they are never
printed.
"""

import asyncio
import contextlib
import datetime
import random
import secrets
from concurrent.futures import ThreadPoolExecutor

from celery import current_app
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError
from django.db import connections
from django.db.models import CharField, Count, ProtectedError, Q, Value
from django.db.models.functions import Cast, Concat
from django.utils import timezone

from attestations.choices import Decision, DefaultAction, ReasonCode
from attestations.models import AttestationItem, Campaign, EvidenceExport, Notification
from attestations.services import campaigns, decisions, exports, notifications, reminders
from core import roles
from core.actors import system_user
from core.auditors import services as auditors
from core.chain import chained_models, purge_records, sealed_atomic
from core.history import attribute_change
from keys.choices import (
    BlastRadius,
    CompensatingControl,
    ContractStatus,
    Environment,
    ExceptionKind,
    IssuingSystemKind,
    KeyStatus,
    MigrationTarget,
    Replaceability,
    RevocationReason,
    RiskTier,
    WorkflowStatus,
)
from keys.models import ApiKey, Customer, IssuingSystem, KeyException, LifecycleEvent, OwnerProfile, Workflow
from keys.services import key_exceptions, lifecycle

DEMO_PASSWORD = "demo"
DEMO_ID_PREFIX = "DEMO-"
SEED = 20261111

# username: (first name, last name, role, is superuser, demo password)
USERS = {
    "admin": ("Ada", "Admin", roles.ADMIN, True, True),
    "compliance": ("Carla", "Compliance", roles.COMPLIANCE, False, True),
    "owner1": ("Alice", "Morgan", roles.OWNER, False, True),
    "owner2": ("Ben", "Okafor", roles.OWNER, False, True),
    "owner3": ("Chloe", "Dupont", roles.OWNER, False, False),
    "owner4": ("Dev", "Patel", roles.OWNER, False, False),
    "manager1": ("Maria", "Lopez", roles.OWNER, False, False),
    "manager2": ("Tom", "Becker", roles.OWNER, False, False),
    # An external auditor, with read access for the demo engagement (``ensure_auditor_access``).
    "auditor": ("Aude", "Laurent", roles.AUDITOR, False, True),
}
DEMO_ENGAGEMENT = "Demo: ISO 27001 surveillance audit"
DEMO_ACCESS_DAYS = 30

# username: (manager, department)
PROFILES = {
    "owner1": ("manager1", "Integrations"),
    "owner2": ("manager1", "Integrations"),
    "owner3": ("manager2", "Data Platform"),
    "owner4": ("manager2", "Data Platform"),
    "manager1": (None, "Integrations"),
    "manager2": (None, "Data Platform"),
}
DEPARTED = "owner3"

# external id suffix: (name, contract status, days from today to contract end, account manager)
CUSTOMERS = {
    "NWL": ("Northwind Logistics", ContractStatus.ACTIVE, 540, "manager1"),
    "ACP": ("Acme Payments", ContractStatus.ACTIVE, 300, "manager1"),
    "GLX": ("Globex Insurance", ContractStatus.ENDING, 45, "manager2"),
    "INI": ("Initech Retail", ContractStatus.ENDED, -60, "manager2"),
    "UMB": ("Umbrella Health", ContractStatus.ACTIVE, None, "manager1"),
}

# slug: (customer, name, environment, purpose, data scope, business owner, technical steward)
WORKFLOWS = {
    "nwl-tracking": ("NWL", "Shipment tracking feed", Environment.PRODUCTION,
                     "Pushes shipment status events to the customer's tracking portal.", "shipment events", "owner1", "owner4"),
    "nwl-customs": ("NWL", "Customs declarations", Environment.PRODUCTION,
                    "Submits customs declarations on the customer's behalf.", "declarations, consignee addresses",
                    "owner2", "owner4"),
    "nwl-sandbox": ("NWL", "Tracking sandbox", Environment.STAGING,
                    "Contract tests against the customer's staging tracking API.", "synthetic shipments", "owner1", None),
    "acp-payouts": ("ACP", "Payout reconciliation", Environment.PRODUCTION,
                    "Nightly reconciliation of merchant payouts.", "payout ledger, IBANs", "owner1", "manager1"),
    "acp-chargebacks": ("ACP", "Chargeback alerts", Environment.PRODUCTION,
                        "Receives chargeback notifications and uploads evidence.", "disputes, order data", "owner4", None),
    "acp-fraud": ("ACP", "Fraud model training", Environment.DEVELOPMENT,
                  "Pulls labelled transactions for model training.", "pseudonymised transactions", "owner2", "manager2"),
    "glx-claims": ("GLX", "Claims intake", Environment.PRODUCTION,
                   "Accepts first notice of loss and claim documents.", "claims, policyholder contact data",
                   "owner2", "owner4"),
    "glx-policy": ("GLX", "Policy sync", Environment.STAGING,
                   "Synchronises policy records for integration testing.", "test policies", "owner3", None),
    "ini-pos": ("INI", "POS analytics export", Environment.PRODUCTION,
                "Exports point-of-sale aggregates to the customer's BI platform.", "store sales aggregates",
                "owner1", "manager2"),
    "ini-loyalty": ("INI", "Loyalty legacy sync", Environment.PRODUCTION,
                    "Legacy loyalty points synchronisation, replaced in the spring.", "loyalty members, points",
                    "owner3", None),
    "umb-reminders": ("UMB", "Patient appointment reminders", Environment.PRODUCTION,
                      "Sends appointment reminders by SMS and e-mail.", "appointments, phone numbers", "owner4", "manager1"),
    "umb-labs": ("UMB", "Lab results push", Environment.STAGING,
                 "Pushes lab result notifications to the staging patient app.", "synthetic lab results", "owner1", None),
}
DECOMMISSIONED_WORKFLOW = "ini-loyalty"

WEBHOOK, MANUAL = "API Gateway", "Legacy partner portal"
ISSUING_SYSTEMS = {
    WEBHOOK: (IssuingSystemKind.WEBHOOK, "http://127.0.0.1:9/revoke",
              "Demo gateway: revocation calls go to a closed loopback port, so they fail and are retried."),
    MANUAL: (IssuingSystemKind.MANUAL, "", "Keys are revoked by hand in the partner portal; an admin confirms."),
}

# label: (workflow, owner, risk tier, issuing system)
KEYS = {
    "tracking-ingest": ("nwl-tracking", "owner1", RiskTier.HIGH, WEBHOOK),
    "tracking-webhook": ("nwl-tracking", "owner1", RiskTier.MEDIUM, WEBHOOK),
    "tracking-reporting": ("nwl-tracking", "owner2", RiskTier.LOW, WEBHOOK),
    "tracking-eta-model": ("nwl-tracking", "manager2", RiskTier.MEDIUM, WEBHOOK),
    "tracking-partner-portal": ("nwl-tracking", "owner2", RiskTier.MEDIUM, MANUAL),
    "customs-submit": ("nwl-customs", "owner2", RiskTier.CRITICAL, WEBHOOK),
    "customs-status-poll": ("nwl-customs", "owner4", RiskTier.MEDIUM, WEBHOOK),
    "customs-archive-export": ("nwl-customs", "owner3", RiskTier.HIGH, MANUAL),
    "customs-tariff-lookup": ("nwl-customs", "owner1", RiskTier.LOW, WEBHOOK),
    "sandbox-ci": ("nwl-sandbox", "owner1", RiskTier.LOW, WEBHOOK),
    "sandbox-load-test": ("nwl-sandbox", "owner4", RiskTier.LOW, WEBHOOK),
    "sandbox-contract-tests": ("nwl-sandbox", "owner2", RiskTier.LOW, WEBHOOK),
    "payouts-reconcile": ("acp-payouts", "owner1", RiskTier.CRITICAL, WEBHOOK),
    "payouts-ledger-export": ("acp-payouts", "owner2", RiskTier.HIGH, WEBHOOK),
    "payouts-backfill": ("acp-payouts", "owner1", RiskTier.HIGH, MANUAL),
    "payouts-webhook-verify": ("acp-payouts", "owner4", RiskTier.HIGH, WEBHOOK),
    "chargebacks-alerts": ("acp-chargebacks", "owner4", RiskTier.HIGH, WEBHOOK),
    "chargebacks-disputes": ("acp-chargebacks", "owner2", RiskTier.MEDIUM, WEBHOOK),
    "chargebacks-evidence-upload": ("acp-chargebacks", "owner1", RiskTier.MEDIUM, WEBHOOK),
    "fraud-feature-pull": ("acp-fraud", "owner2", RiskTier.MEDIUM, WEBHOOK),
    "fraud-notebook": ("acp-fraud", "owner3", RiskTier.LOW, WEBHOOK),
    "fraud-label-sync": ("acp-fraud", "owner4", RiskTier.LOW, WEBHOOK),
    "claims-intake-api": ("glx-claims", "owner2", RiskTier.HIGH, WEBHOOK),
    "claims-documents": ("glx-claims", "owner1", RiskTier.HIGH, MANUAL),
    "claims-batch-export": ("glx-claims", "manager1", RiskTier.MEDIUM, MANUAL),
    "claims-fraud-score": ("glx-claims", "owner4", RiskTier.CRITICAL, WEBHOOK),
    "policy-sync": ("glx-policy", "owner3", RiskTier.MEDIUM, WEBHOOK),
    "policy-sync-replay": ("glx-policy", "owner4", RiskTier.LOW, WEBHOOK),
    "pos-analytics-export": ("ini-pos", "owner1", RiskTier.HIGH, MANUAL),
    "pos-analytics-dashboard": ("ini-pos", "owner2", RiskTier.MEDIUM, MANUAL),
    "pos-price-feed": ("ini-pos", "owner4", RiskTier.MEDIUM, WEBHOOK),
    "loyalty-legacy-sync": ("ini-loyalty", "owner3", RiskTier.HIGH, MANUAL),
    "loyalty-points-import": ("ini-loyalty", "owner2", RiskTier.MEDIUM, MANUAL),
    "reminders-sms": ("umb-reminders", "owner4", RiskTier.CRITICAL, WEBHOOK),
    "reminders-email": ("umb-reminders", "owner1", RiskTier.HIGH, WEBHOOK),
    "reminders-calendar": ("umb-reminders", "owner2", RiskTier.MEDIUM, WEBHOOK),
    "reminders-no-show-report": ("umb-reminders", "owner2", RiskTier.LOW, WEBHOOK),
    "labs-results-push": ("umb-labs", "owner1", RiskTier.HIGH, WEBHOOK),
    "labs-results-staging-ci": ("umb-labs", "owner4", RiskTier.LOW, WEBHOOK),
    "labs-qc-export": ("umb-labs", "owner2", RiskTier.MEDIUM, WEBHOOK),
}

# A customer contact (external, no password): customer, name, email, keys assigned to them.
DEMO_CONTACT = ("UMB", "Sam Rivera", "sam.rivera@umbrella-health.test", ("reminders-no-show-report", "labs-qc-export"))
PENDING = "chargebacks-evidence-upload"
SUSPENDED = "chargebacks-disputes"
REVOKED = "pos-analytics-dashboard"
EXPIRED = "labs-results-staging-ci"
REASSIGNED = ("customs-archive-export", "owner4")
NEAR_EXPIRY = {"tracking-webhook": 5, "payouts-ledger-export": 9, "reminders-sms": 12, "claims-intake-api": 3}
UNUSED_DAYS = {"payouts-backfill": 200, "fraud-feature-pull": 150, "pos-analytics-export": 130,
               "loyalty-points-import": 300, "policy-sync": 180, "claims-batch-export": 140, "labs-results-push": 120,
               "reminders-calendar": 110}
NEVER_USED = {"customs-tariff-lookup", "sandbox-contract-tests", "fraud-label-sync", PENDING}
REVIEW_DUE = {"tracking-ingest", "customs-submit", "payouts-reconcile", "chargebacks-alerts", "claims-documents",
              "reminders-calendar"}
SCOPES = {
    "tracking": ["read:shipments", "write:events"], "customs": ["write:declarations", "read:status"],
    "sandbox": ["read:shipments"], "payouts": ["read:ledger", "read:payouts"], "chargebacks": ["read:disputes",
    "write:evidence"], "fraud": ["read:transactions"], "claims": ["write:claims", "read:documents"],
    "policy": ["read:policies"], "pos": ["read:sales"], "loyalty": ["read:members", "write:points"],
    "reminders": ["write:messages", "read:appointments"], "labs": ["write:notifications"],
}

# Earlier quarterly reviews of Globex Insurance's and Umbrella Health's production keys, both closed (no response:
# keep the key and flag it). Per cycle: days ago it was launched, days ago it was closed, and the keys whose
# reviewer confirmed them, with the day of the campaign they did. The later cycle's report is rendered.
REVIEW_CUSTOMERS = ("GLX", "UMB")
CLOSED_CYCLES = (
    (84, 70, {"claims-intake-api": 6, "claims-documents": 4, "reminders-sms": 9, "reminders-email": 3}),
    (40, 26, {"claims-intake-api": 1, "claims-documents": 1, "claims-fraud-score": 2, "reminders-sms": 1,
              "reminders-email": 1}),
)

# label: (requested by, kind, what is asked, what compliance decides) — one exception in each state.
EXCEPTIONS = {
    "sandbox-ci": ("owner1", ExceptionKind.TRANSITIONAL, "requested"),
    "reminders-sms": ("owner4", ExceptionKind.PERMANENT, "requested"),
    "claims-fraud-score": ("owner4", ExceptionKind.TRANSITIONAL, "approved"),
    "sandbox-load-test": ("owner4", ExceptionKind.TRANSITIONAL, "rejected"),
    "fraud-label-sync": ("owner4", ExceptionKind.TRANSITIONAL, "expired"),
}
JUSTIFICATIONS = {
    "sandbox-ci": "The CI pipeline calls the sandbox with a static key until the runners get workload identity.",
    "reminders-sms": "The SMS gateway only authenticates with API keys; there is no OAuth or token option.",
    "claims-fraud-score": "The fraud scoring vendor moves to OAuth client credentials in their next release.",
    "sandbox-load-test": "Load tests run from a laptop outside the CI; a long-lived key is simplest.",
    "fraud-label-sync": "Label sync moves to the token broker with the new training pipeline.",
}
REJECTION = "Load tests can take short-lived tokens from the CI broker: no exception is needed."
EXPIRED_EXCEPTION_DAYS = (200, 12)  # requested and approved that many days ago; its end date passed that many days ago

# Initech Retail's contract ended: an offboarding campaign, overdue (launched, duration, escalation day).
# Released keys are revoked at once (no grace window). Decided items: label -> (decision, reason code,
# justification, day of the campaign); owner1's key is left undecided and escalated to their manager.
OFFBOARDING = ("INI", 24, 14, 7)
OFFBOARDING_DECISIONS = {
    "loyalty-points-import": (Decision.RELEASE, ReasonCode.CONTRACT_ENDED,
                              "Initech's contract ended and the loyalty platform was replaced.", 3),
    "loyalty-legacy-sync": (Decision.RELEASE, ReasonCode.CONTRACT_ENDED,
                            "Owner left; the workflow is decommissioned and the contract ended.", 2),
    "pos-price-feed": (Decision.CONFIRM, "",
                       "Initech's last stores read prices until they close at the end of the quarter.", 5),
}

# The current review: Globex Insurance and Umbrella Health, launched a week ago, due in a week. Stage 1 the
# owners (10 days); stage 2 compliance signs off high and critical confirmations (4 days). Decided so far:
# label -> (decision, reason code, justification).
ACTIVE_LAUNCHED_DAYS_AGO = 7
ACTIVE_STAGES = [
    {"reviewer": "owner", "duration_days": 10},
    {"reviewer": "compliance", "duration_days": 4, "risk_tiers": [RiskTier.HIGH, RiskTier.CRITICAL],
     "moves_on": [Decision.CONFIRM]},
]
ACTIVE_DECISIONS = {
    "reminders-email": (Decision.CONFIRM, "", "Sends every appointment reminder e-mail; scopes checked with Umbrella."),
    "policy-sync-replay": (Decision.CONFIRM, "", "Replays policy changes into staging for the integration tests."),
    "claims-batch-export": (Decision.RELEASE, ReasonCode.UNUSED,
                            "Replaced by the claims intake API; nothing has called the batch export since spring."),
}
ACTIVE_GRACE_DAYS = 14


def acting_users(user_ids) -> set[int]:
    """The users among ``user_ids`` that a chained record (history, event, notice, access) names."""
    User = get_user_model()
    named = set()
    for model, _ in chained_models().values():
        for field in model._meta.concrete_fields:
            if field.is_relation and field.related_model is User:
                named.update(model._base_manager.filter(**{f"{field.attname}__in": user_ids})
                             .values_list(field.attname, flat=True))
    return named


def outside_event_loop(task, *args):
    """Run ``task`` here, or in a thread of its own, as a worker would, when this thread runs an asyncio event loop
    (a notebook, a browser driver): signing the report starts an event loop of its own."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return task(*args)

    def run():
        try:
            return task(*args)
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(run).result()


@contextlib.contextmanager
def tasks_in_process():
    """Run Celery tasks in this process, whatever the broker setting (as the test suite's eager mode does)."""
    saved = current_app.conf.task_always_eager
    current_app.conf.task_always_eager = True
    try:
        yield
    finally:
        current_app.conf.task_always_eager = saved


class Command(BaseCommand):
    help = "Create demo users (password 'demo'), customers, workflows and keys. Refused unless DEBUG is on."

    def add_arguments(self, parser):
        parser.add_argument("--allow-production", action="store_true",
                            help="Seed even though DEBUG is off (creates users with a known password).")
        parser.add_argument("--reset", action="store_true",
                            help="Delete the demo customers, workflows and keys first and create them again.")

    def handle(self, *args, allow_production=False, reset=False, **options):
        if not settings.DEBUG and not allow_production:
            raise CommandError(
                "seed_demo creates users with the password 'demo' and is refused when DEBUG is off. "
                "Pass --allow-production if you really want demo data in this database."
            )
        self.rng = random.Random(SEED)
        self.today = timezone.localdate()
        self.now = timezone.now()
        report_of = None
        with sealed_atomic():
            users = self.ensure_users()
            self.ensure_auditor_access(users)
            if reset:
                self.delete_demo_data()
            if Customer.objects.filter(external_id__startswith=DEMO_ID_PREFIX).exists():
                self.stdout.write("Demo data already present; nothing to add (use --reset to recreate it).")
            else:
                report_of = self.create_demo_data(users)
        if report_of is not None:
            # After the commit, so the report's check of the evidence chain covers every record sealed above.
            self.render_campaign_report(report_of, users["compliance"])
        self.print_summary()

    def ensure_users(self) -> dict:
        User = get_user_model()
        users = {}
        for username, (first, last, role, superuser, demo_password) in USERS.items():
            user, created = User.objects.get_or_create(
                username=username,
                defaults={"first_name": first, "last_name": last, "email": f"{username}@example.test"},
            )
            changed = created
            if superuser and not (user.is_superuser and user.is_staff):
                user.is_superuser = user.is_staff = True
                changed = True
            if demo_password and not user.check_password(DEMO_PASSWORD):
                user.set_password(DEMO_PASSWORD)
                changed = True
            elif created and not demo_password:
                user.set_unusable_password()
            if changed:
                user.save()
            user.groups.add(Group.objects.get_or_create(name=role)[0])
            users[username] = user
        for username, (manager, department) in PROFILES.items():
            OwnerProfile.objects.get_or_create(
                user=users[username], defaults={"manager": users.get(manager), "department": department}
            )
        return users

    def ensure_auditor_access(self, users) -> None:
        """The demo auditor reads under a current grant from compliance: given when none is open, through the
        service (history, email), so a later run leaves a scheduled or current grant as it is."""
        auditor = users["auditor"]
        if auditor.auditor_grants.filter(ended_at__isnull=True, ends_at__gt=self.now).exists():
            return
        auditors.grant_auditor_access(users["compliance"], auditor=auditor, engagement=DEMO_ENGAGEMENT,
                                      ends_on=self.today + datetime.timedelta(days=DEMO_ACCESS_DAYS))

    def delete_demo_data(self):
        demo_keys = ApiKey.objects.filter(workflow__customer__external_id__startswith=DEMO_ID_PREFIX)
        try:
            self.delete_demo_reviews(demo_keys)
            # Their lifecycle events are chained evidence: deleting them is recorded, as a purge, in the chain.
            purge_records(LifecycleEvent, LifecycleEvent.objects.filter(key__in=demo_keys).values_list("pk", flat=True),
                          reason="demo data reset (seed_demo --reset)")
            demo_keys.delete()
            self.delete_demo_contacts()
            Workflow.objects.filter(customer__external_id__startswith=DEMO_ID_PREFIX).delete()
            Customer.objects.filter(external_id__startswith=DEMO_ID_PREFIX).delete()
            IssuingSystem.objects.filter(name__in=ISSUING_SYSTEMS).annotate(n=Count("keys")).filter(n=0).delete()
        except ProtectedError as exc:
            kinds = sorted({obj._meta.verbose_name_plural for obj in exc.protected_objects})
            raise CommandError(
                f"Cannot reset: the demo data is still referenced by {', '.join(kinds)}; delete those first."
            )
        self.stdout.write("Deleted the demo customers, workflows and keys.")

    def delete_demo_reviews(self, demo_keys):
        """The campaigns over demo keys only (with their items and notices) and the exports of demo data.

        A campaign that also holds other keys stays, and the reset is refused as for any other reference.
        """
        other_items = AttestationItem.objects.exclude(key__in=demo_keys)
        demo_campaigns = Campaign.objects.filter(items__key__in=demo_keys).exclude(
            items__in=other_items).distinct()
        demo_exports = EvidenceExport.objects.filter(
            Q(campaign__in=demo_campaigns) | Q(key__in=demo_keys)
            | Q(customer__external_id__startswith=DEMO_ID_PREFIX))
        for export in demo_exports.exclude(file=""):
            export.file.delete(save=False)
        demo_exports.delete()
        purge_records(Notification, Notification.objects.filter(campaign__in=demo_campaigns).values_list("pk", flat=True),
                      reason="demo data reset (seed_demo --reset)")
        Campaign.objects.filter(pk__in=list(demo_campaigns.values_list("pk", flat=True))).delete()

    def delete_demo_contacts(self):
        from contacts.models import CustomerContact

        contacts = CustomerContact.objects.filter(customer__external_id__startswith=DEMO_ID_PREFIX)
        user_ids = list(contacts.values_list("user_id", flat=True))
        contacts.delete()
        # A contact who acted is named in chained records (history, access): deleting the account would rewrite
        # them (SET NULL), so it is kept, deactivated, under a name that frees the address for the new invitation.
        acted = acting_users(user_ids)
        get_user_model().objects.filter(pk__in=acted).update(
            is_active=False, email="", username=Concat(Value("retired-contact-"), Cast("pk", CharField())))
        get_user_model().objects.filter(pk__in=set(user_ids) - acted).delete()

    def create_demo_data(self, users):
        admin = users["admin"]
        customers = {}
        for code, (name, status, end_in_days, manager) in CUSTOMERS.items():
            customers[code] = Customer.objects.create(
                name=name,
                external_id=f"{DEMO_ID_PREFIX}{code}",
                contract_status=status,
                contract_end=None if end_in_days is None else self.today + datetime.timedelta(days=end_in_days),
                account_manager=users[manager],
            )
        workflows = {}
        for slug, (code, name, environment, purpose, scope, business, steward) in WORKFLOWS.items():
            workflows[slug] = Workflow.objects.create(
                customer=customers[code], name=name, environment=environment, purpose=purpose, data_scope=scope,
                business_owner=users[business], technical_steward=users.get(steward),
            )
        systems = {
            name: IssuingSystem.objects.get_or_create(name=name, defaults={"kind": kind, "revoke_url": url, "notes": notes})[0]
            for name, (kind, url, notes) in ISSUING_SYSTEMS.items()
        }
        departed = users[DEPARTED]
        if not departed.is_active:
            # After --reset: the departed owner still has to own keys registered before they left.
            departed.is_active = True
            departed.save(update_fields=["is_active"])
        keys = {label: self.register(label, spec, users, workflows, systems) for label, spec in KEYS.items()}
        for label, key in keys.items():
            if label != PENDING:
                keys[label] = lifecycle.approve_key(
                    key, actor=admin, reference=f"CHG-{self.rng.randint(10000, 99999)}", reason="Approved at onboarding"
                )
        self.record_usage(keys)
        lifecycle.suspend_key(keys[SUSPENDED], actor=admin,
                              reason="Calls from an unknown IP range; suspended while the customer investigates.")
        lifecycle.revoke_key(keys[REVOKED], actor=admin, reason_code=RevocationReason.CONTRACT_ENDED,
                             reason="Initech Retail's contract ended.")
        lifecycle.expire_key(keys[EXPIRED], actor=system_user())
        label, new_owner = REASSIGNED
        lifecycle.change_owner(keys[label], actor=admin, new_owner=users[new_owner],
                               reason="Chloe Dupont is leaving Data Platform; Dev Patel takes the export over.")
        self.decommission(workflows[DECOMMISSIONED_WORKFLOW], admin)
        self.depart(users[DEPARTED], admin)
        contact = self.invite_contact(users, customers, keys)
        return self.create_reviews(users, customers, contact)

    def invite_contact(self, users, customers, keys):
        """A customer contact at Umbrella Health owning two of its keys; the invitation email (console
        backend locally) carries their sign-in link."""
        from contacts import access

        contact, _ = access.invite_contact(actor=users["compliance"], customer=customers[DEMO_CONTACT[0]],
                                           name=DEMO_CONTACT[1], email=DEMO_CONTACT[2])
        for label in DEMO_CONTACT[3]:
            key = access.assign_key(contact, keys[label], actor=users["admin"],
                                    reason=f"{DEMO_CONTACT[1]} owns this integration at the customer.")
            # Rotated at the handover, as an ownership change asks; the fake secret is dropped.
            prefix = f"{key.prefix[:8]}{self.rng.getrandbits(24):06x}"
            lifecycle.rotate_key(key, actor=users["admin"], secret=prefix + secrets.token_urlsafe(32), prefix=prefix,
                                 reason="Rotated at the handover to the customer's contact.")
        return contact

    def create_reviews(self, users, customers, contact) -> Campaign:
        """The campaigns, exceptions and releases around the keys; returns the closed campaign whose report is
        rendered once the data is committed."""
        compliance = users["compliance"]
        review_customers = [customers[code] for code in REVIEW_CUSTOMERS]
        closed = [self.closed_cycle(compliance, review_customers, contact, *cycle) for cycle in CLOSED_CYCLES]
        self.exceptions(users)
        self.offboarding(compliance, customers[OFFBOARDING[0]])
        self.active_review(compliance, review_customers, users)
        return closed[-1]

    def decide(self, item: AttestationItem, contact, decision: str, justification: str, reason: str = ""):
        """The item's reviewer decides it: a customer contact through the contacts app, anyone else in the inbox's
        service."""
        if contact is not None and item.reviewer_id == contact.user_id:
            from contacts import access

            return access.decide(contact, item, decision=decision, justification=justification, affirm=True,
                                 reason=reason)
        return decisions.record_decision(item, actor=item.reviewer, decision=decision, justification=justification,
                                         affirm=True, reason=reason, reaffirm_exception=bool(item.exception_id))

    def closed_cycle(self, compliance, review_customers, contact, launched_ago: int, closed_ago: int,
                     confirmed: dict) -> Campaign:
        launched_on = self.today - datetime.timedelta(days=launched_ago)
        campaign = campaigns.create_campaign(
            actor=compliance, name=f"Globex and Umbrella production keys, {launched_on:%d %B %Y}",
            customers=review_customers, environments=[Environment.PRODUCTION], duration_days=launched_ago - closed_ago,
            default_action=DefaultAction.KEEP_AND_FLAG, reminder_days=[3, 7],
        )
        campaigns.launch_campaign(campaign, actor=compliance)
        for item in campaign.items.select_related("key__workflow", "reviewer").order_by("pk"):
            if item.key.label in confirmed:
                self.decide(item, contact, Decision.CONFIRM, f"Still needed for {item.key.workflow.name.lower()}.")
        campaigns.close_campaign(campaign, actor=compliance)
        self.backdate(campaign, launched_ago, closed_ago=closed_ago, decided_on_day=confirmed)
        return campaign

    def exceptions(self, users):
        compliance = users["compliance"]
        for label, (requester, kind, outcome) in EXCEPTIONS.items():
            key = ApiKey.objects.get(label=label, workflow__customer__external_id__startswith=DEMO_ID_PREFIX)
            if kind == ExceptionKind.TRANSITIONAL:
                target = MigrationTarget.WORKLOAD_IDENTITY if label == "sandbox-ci" else MigrationTarget.OAUTH
                terms = {"migration_target": target, "end_date": self.today + datetime.timedelta(days=120),
                         "migration_plan": "Migration planned with the customer's integration team."}
            else:
                terms = {"risk_acceptance": "Residual risk accepted by the head of Integrations.",
                         "review_date": self.today + datetime.timedelta(days=180)}
            exception = key_exceptions.request_exception(
                key, actor=users[requester], kind=kind, business_justification=JUSTIFICATIONS[label],
                blast_radius=BlastRadius.MEDIUM, replaceability=Replaceability.WITH_EFFORT
                if kind == ExceptionKind.TRANSITIONAL else Replaceability.NOT_REPLACEABLE,
                compensating_controls=[CompensatingControl.SECRET_MANAGER, CompensatingControl.NETWORK_RESTRICTION],
                **terms,
            )
            if outcome == "rejected":
                key_exceptions.reject_exception(exception, actor=compliance, reason=REJECTION)
            elif outcome in ("approved", "expired"):
                key_exceptions.approve_exception(exception, actor=compliance, reason="Migration plan is credible.")
            if outcome == "expired":
                # Approved long ago; its end date has passed and the daily sweep marks it expired.
                asked_ago, ended_ago = EXPIRED_EXCEPTION_DAYS
                asked_at = self.now - datetime.timedelta(days=asked_ago)
                KeyException.objects.filter(pk=exception.pk).update(
                    requested_at=asked_at, decided_at=asked_at + datetime.timedelta(days=1),
                    end_date=self.today - datetime.timedelta(days=ended_ago))
                key_exceptions.expire_exception(exception, actor=system_user())

    def offboarding(self, compliance, customer):
        _, launched_ago, duration, escalation_day = OFFBOARDING
        campaign = campaigns.create_campaign(
            actor=compliance, name=f"{customer.name} offboarding", customers=[customer], duration_days=duration,
            escalation_days=escalation_day, release_grace_days=0, default_action=DefaultAction.REVOKE,
            reminder_days=[3, 7],
        )
        campaigns.launch_campaign(campaign, actor=compliance)
        for item in campaign.items.select_related("key", "reviewer").order_by("pk"):
            if item.key.label in OFFBOARDING_DECISIONS:
                decision, reason, justification, _ = OFFBOARDING_DECISIONS[item.key.label]
                self.decide(item, None, decision, justification, reason)
        self.backdate(campaign, launched_ago,
                      decided_on_day={label: spec[3] for label, spec in OFFBOARDING_DECISIONS.items()})
        campaign.refresh_from_db()
        # The escalation sweep, as the daily task runs it: the undecided item goes to the owner's manager.
        actor = system_user()
        for user_id, items in reminders.escalation_targets(campaign, self.today, actor=actor).items():
            notifications.escalation(campaign, get_user_model().objects.get(pk=user_id), items)
        campaign.items.filter(escalated_at__isnull=False).update(
            escalated_at=campaign.launched_at + datetime.timedelta(days=escalation_day))

    def active_review(self, compliance, review_customers, users):
        launched_on = self.today - datetime.timedelta(days=ACTIVE_LAUNCHED_DAYS_AGO)
        campaign = campaigns.create_campaign(
            actor=compliance, name=f"Globex and Umbrella keys, {launched_on:%d %B %Y}",
            customers=review_customers, stages=ACTIVE_STAGES, release_grace_days=ACTIVE_GRACE_DAYS,
            reminder_days=[3, 7], escalation_days=12, default_action=DefaultAction.SUSPEND,
        )
        campaigns.launch_campaign(campaign, actor=compliance)
        for item in campaign.items.select_related("key", "reviewer").order_by("pk"):
            if item.key.label in ACTIVE_DECISIONS:
                decision, reason, justification = ACTIVE_DECISIONS[item.key.label]
                self.decide(item, None, decision, justification, reason)
        self.backdate(campaign, ACTIVE_LAUNCHED_DAYS_AGO)

    def backdate(self, campaign: Campaign, launched_ago: int, *, closed_ago: int | None = None,
                 decided_on_day: dict | None = None):
        """Move a campaign launched (and closed) today back in time: its launch, due date and close, and each
        decision to the given day of the campaign (decisions of other items: to the day before today)."""
        campaign.refresh_from_db()
        shift = datetime.timedelta(days=launched_ago)
        launched_at = campaign.launched_at - shift
        fields = {"created_at": launched_at - datetime.timedelta(hours=3), "launched_at": launched_at,
                  "due_on": campaign.due_on - shift}
        if closed_ago is not None:
            fields["closed_at"] = campaign.closed_at - datetime.timedelta(days=closed_ago)
        Campaign.objects.filter(pk=campaign.pk).update(**fields)
        for item in campaign.items.exclude(decisions=[]).select_related("key"):
            day = (decided_on_day or {}).get(item.key.label, launched_ago - 1)
            at = launched_at + datetime.timedelta(days=day, hours=self.rng.randint(1, 8))
            entries = [dict(entry, at=at.isoformat()) for entry in item.decisions]
            AttestationItem.objects.filter(pk=item.pk).update(
                decisions=entries, decided_at=at if item.decided_at else None)

    def render_campaign_report(self, campaign: Campaign, compliance):
        """Request the closed campaign's report as compliance would, and render it here, in-process."""
        from attestations import tasks

        def request_and_render():
            export = exports.request_export(actor=compliance, kind="campaign", campaign=campaign, print_all_items=True)
            tasks.render_export(export.pk)  # already rendered on commit where the request committed
            return export

        with tasks_in_process():
            export = outside_event_loop(request_and_render)
        export.refresh_from_db()
        if export.status != EvidenceExport.Status.DONE:
            self.stderr.write(f"The demo campaign report did not render: {export.error or export.status}")

    def register(self, label, spec, users, workflows, systems) -> ApiKey:
        slug, owner, risk_tier, system = spec
        workflow = workflows[slug]
        kind = "live" if workflow.environment == Environment.PRODUCTION else "test"
        prefix = f"sk_{kind}_{self.rng.getrandbits(24):06x}"
        issued_on = self.today - datetime.timedelta(days=self.rng.randint(90, 600))
        expires_on = issued_on + datetime.timedelta(days=730)
        next_review_on = self.today + datetime.timedelta(days=self.rng.randint(15, 150))
        if label in NEAR_EXPIRY:
            expires_on = self.today + datetime.timedelta(days=NEAR_EXPIRY[label])
        if label == EXPIRED:
            issued_on = self.today - datetime.timedelta(days=400)
            expires_on = self.today - datetime.timedelta(days=20)
            next_review_on = None
        if label in REVIEW_DUE:
            next_review_on = self.today - datetime.timedelta(days=self.rng.randint(1, 60))
        technical_steward = WORKFLOWS[slug][6]
        return lifecycle.register_key(
            actor=users["admin"],
            workflow=workflow,
            issuing_system=systems[system],
            label=label,
            owner=users[owner],
            steward=users[technical_steward] if technical_steward and technical_steward != owner else None,
            # A random fake secret, fingerprinted inside register_key and then dropped.
            secret=prefix + secrets.token_urlsafe(32),
            prefix=prefix,
            scopes=SCOPES[label.split("-")[0]],
            risk_tier=risk_tier,
            issued_on=issued_on,
            expires_on=expires_on,
            next_review_on=next_review_on,
            reason=f"Onboarding of {workflow}",
        )

    def record_usage(self, keys):
        """Usage normally arrives from the gateways; the demo writes plausible last-used times."""
        stale_after = settings.KEY_STALE_AFTER_DAYS
        actor = system_user()
        for label, key in keys.items():
            if label in NEVER_USED:
                continue
            days = UNUSED_DAYS.get(label)
            hours_ago = days * 24 if days else self.rng.randint(1, 24 * 10)
            key.last_used_at = self.now - datetime.timedelta(hours=hours_ago)
            key.stale = days is not None and days > stale_after
            attribute_change(key, actor, "Demo usage data")
            key.save(update_fields=["last_used_at", "stale", "updated_at"])

    def decommission(self, workflow, actor):
        workflow.status = WorkflowStatus.DECOMMISSIONED
        workflow.decommissioned_on = self.today - datetime.timedelta(days=30)
        attribute_change(workflow, actor, "Replaced by the customer's new loyalty platform")
        workflow.save()

    def depart(self, user, actor):
        """The owner left: the profile is closed and the keys they still own are orphaned."""
        profile = user.owner_profile
        profile.is_active = False
        profile.departed_on = self.today - datetime.timedelta(days=10)
        attribute_change(profile, actor, "Left the company")
        profile.save()
        user.is_active = False
        user.save(update_fields=["is_active"])
        for key in ApiKey.objects.live().filter(owner=user):
            key.orphaned = True
            attribute_change(key, actor, "Owner departed")
            key.save(update_fields=["orphaned", "updated_at"])

    def print_summary(self):
        demo = ApiKey.objects.filter(workflow__customer__external_id__startswith=DEMO_ID_PREFIX)
        by_status = dict(demo.order_by().values_list("status").annotate(n=Count("pk")))
        statuses = ", ".join(f"{by_status.get(s, 0)} {s}" for s in KeyStatus.values)
        today = self.today
        soon = today + datetime.timedelta(days=14)
        self.stdout.write(self.style.SUCCESS(
            f"Demo data: {Customer.objects.filter(external_id__startswith=DEMO_ID_PREFIX).count()} customers, "
            f"{Workflow.objects.filter(customer__external_id__startswith=DEMO_ID_PREFIX).count()} workflows, "
            f"{demo.count()} keys ({statuses})."
        ))
        self.stdout.write(
            f"Due for review: {demo.live().filter(next_review_on__lte=today).count()}; "
            f"expiring within 14 days: {demo.live().filter(expires_on__range=(today, soon)).count()}; "
            f"stale: {demo.filter(stale=True).count()}; orphaned: {demo.filter(orphaned=True).count()}; "
            f"rotation required: {demo.filter(rotation_required=True).count()}."
        )
        logins = ", ".join(name for name, spec in USERS.items() if spec[4])
        self.stdout.write(f"Log in as {logins} with the password '{DEMO_PASSWORD}'.")
