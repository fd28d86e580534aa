from django.apps import AppConfig


class AttestationsConfig(AppConfig):
    name = "attestations"
    verbose_name = "Attestations"

    def ready(self):
        from django.contrib.auth import get_user_model
        from django.db.models.signals import post_save

        from attestations.models import Notification
        from attestations.services import review_stages
        from core import chain
        from keys.models import OwnerProfile

        chain.chain_rows(Notification)
        # A reviewer who departs mid-campaign: their items go to the fallback reviewer at once.
        post_save.connect(review_stages.on_person_saved, sender=get_user_model(),
                          dispatch_uid="attestations.reroute_departed_user")
        post_save.connect(review_stages.on_person_saved, sender=OwnerProfile,
                          dispatch_uid="attestations.reroute_departed_profile")
