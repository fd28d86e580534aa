from core.token_pages import IssuedTokenTable, revoke_column
from identity.models import ScimToken


class ScimTokenTable(IssuedTokenTable):
    actions = revoke_column("scim-token-revoke")

    class Meta(IssuedTokenTable.Meta):
        model = ScimToken
        fields = ("name", "token_prefix", "acts_as", "created_at", "last_used_at", "status", "actions")
        row_attrs = {"id": lambda record: f"scim-token-{record.pk}"}
        empty_text = "No SCIM tokens yet."
