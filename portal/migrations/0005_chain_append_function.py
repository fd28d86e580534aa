"""PostgreSQL: append a small batch of records to the history chain in one statement (``portal.chain``)."""

from django.db import migrations

# Chains exactly as portal.chain.chained_digest: sha256(previous digest as ASCII || canonical JSON payload).
# The transaction's deferred constraint checks run first, so the head is the last lock it takes.
CREATE = """
CREATE OR REPLACE FUNCTION portal_chain_append(labels text[], ids bigint[], payloads bytea[], sealed timestamptz)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    head_seq bigint;
    head_digest text;
    prev text;
BEGIN
    SET CONSTRAINTS ALL IMMEDIATE;
    SET CONSTRAINTS ALL DEFERRED;
    SELECT seq, digest INTO head_seq, head_digest FROM portal_chainhead WHERE id = 1 FOR UPDATE;
    IF NOT FOUND THEN
        INSERT INTO portal_chainhead (id, seq, digest, updated_at) VALUES (1, 0, repeat('0', 64), sealed)
            ON CONFLICT (id) DO NOTHING;
        SELECT seq, digest INTO head_seq, head_digest FROM portal_chainhead WHERE id = 1 FOR UPDATE;
    END IF;
    FOR i IN 1 .. coalesce(array_length(ids, 1), 0) LOOP
        prev := head_digest;
        head_seq := head_seq + 1;
        head_digest := encode(sha256(convert_to(prev, 'UTF8') || payloads[i]), 'hex');
        INSERT INTO portal_chainlink (seq, model_label, history_id, digest, prev_digest, sealed_at)
            VALUES (head_seq, labels[i], ids[i], head_digest, prev, sealed);
    END LOOP;
    UPDATE portal_chainhead SET seq = head_seq, digest = head_digest, updated_at = sealed WHERE id = 1;
    RETURN head_seq;
END
$$;
"""
DROP = "DROP FUNCTION IF EXISTS portal_chain_append(text[], bigint[], bytea[], timestamptz);"


def create(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE)


def drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP)


class Migration(migrations.Migration):
    dependencies = [("portal", "0004_contact_access_actions")]

    operations = [migrations.RunPython(create, drop, elidable=False)]
