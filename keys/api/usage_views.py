"""``POST /api/v1/usage/``: a batch of usage events, counted once each (keys.services.usage.ingest_usage).

The events are validated in plain Python by the service, not by a serializer per event: a batch
holds up to 10,000 of them. The serializers here document the shapes in the OpenAPI schema.
"""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema
from rest_framework import serializers, status, viewsets
from rest_framework.response import Response

from keys.api.permissions import IsAdminOrIntegration, scope_keys_for_request
from keys.services import usage


class UsageEventSerializer(serializers.Serializer):
    id = serializers.CharField(
        max_length=usage.MAX_ID_LENGTH, required=False,
        help_text="The event's id: an event already counted for the key is a duplicate. Required unless the "
                  "batch carries an Idempotency-Key header.",
    )
    key = serializers.JSONField(help_text="The key's id (a number), prefix, or fingerprint (64 hex characters).")
    at = serializers.DateTimeField(help_text="When the call was made: ISO-8601 with a time zone; at most 5 minutes "
                                             f"ahead, at most {usage.MAX_AGE.days} days old.")
    source = serializers.CharField(max_length=usage.MAX_SOURCE_LENGTH, required=False, allow_blank=True,
                                   help_text="Where the call came from (an address, a host, a service name).")


class UsageBatchSerializer(serializers.Serializer):
    events = UsageEventSerializer(many=True, help_text=f"Up to {usage.MAX_EVENTS} events.")


class RejectedEventSerializer(serializers.Serializer):
    index = serializers.IntegerField(help_text="The event's position in the batch, from 0.")
    reason = serializers.CharField()


class UsageResultSerializer(serializers.Serializer):
    accepted = serializers.IntegerField(help_text="Events counted now.")
    duplicates = serializers.IntegerField(help_text="Events already counted before (or twice in this batch).")
    rejected = RejectedEventSerializer(many=True)


class UsageErrorSerializer(serializers.Serializer):
    events = serializers.ListField(child=serializers.CharField())


class UsageViewSet(viewsets.ViewSet):
    """Usage reports from integrations (within their token's scope) and admins."""

    permission_classes = [IsAdminOrIntegration]
    integration_token_actions = {"create"}
    serializer_class = UsageBatchSerializer

    @extend_schema(
        request=UsageBatchSerializer,
        responses={200: UsageResultSerializer, 400: UsageErrorSerializer},
        parameters=[OpenApiParameter(
            "Idempotency-Key", OpenApiTypes.STR, OpenApiParameter.HEADER, required=False,
            description="Stands in for missing event ids (the key and the event's index): re-sending the batch "
                        "with the same key counts nothing twice.",
        )],
        examples=[OpenApiExample("A batch", request_only=True, value={"events": [
            {"id": "evt-1", "key": "sk_live_4f2a", "at": "2026-11-02T09:15:00Z", "source": "10.0.0.7"},
            {"id": "evt-2", "key": 42, "at": "2026-11-02T09:16:30+01:00", "source": "batch-runner"},
        ]})],
        description=f"Report up to {usage.MAX_EVENTS} calls made with keys. Each is counted once per key and day; "
                    "the answer gives the number counted, the duplicates, and every rejected event by index and "
                    "reason. An unknown key and a key outside the token's scope are rejected alike.",
    )
    def create(self, request):
        data = request.data
        events = data.get("events") if isinstance(data, dict) else None
        if events is None or not isinstance(events, list):
            return Response({"events": ["Send {\"events\": [...]}: a list of usage events."]},
                            status=status.HTTP_400_BAD_REQUEST)
        result = usage.ingest_usage(
            events, scope=scope_keys_for_request(request), actor=request.user,
            idempotency_key=request.headers.get("Idempotency-Key"),
        )
        return Response(result.as_dict())
