"""Created a PL/pgSQL copy of the chain's hash rule; the rule now lives only in ``portal.chain`` and
0007 drops the function where an earlier release created it."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("portal", "0004_contact_access_actions")]

    operations = []
