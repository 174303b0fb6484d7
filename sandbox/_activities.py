"""The close activities that business operations create: `opportunityclose` and `incidentresolution`.

`WinOpportunity` and `LoseOpportunity` create an `opportunityclose` row "to record the event" ("Use Web API
actions"), `CloseIncident` an `incidentresolution` row (its reference page: the resolution "associated with the
incident (case) to be closed"). The sandbox serves both as tables, so the rows an operation writes can be read
afterwards, from the entity sets the service names `opportunitycloses` and `incidentresolutions`.

As activities they are keyed by `activityid` and named by `subject` (entity reference: opportunityclose,
incidentresolution); the service derives them from `activitypointer`, which the sandbox does not serve, so here
they are tables of their own (see docs/sandbox.md). State: Open 0, Completed 1, Canceled 2.
"""

from __future__ import annotations

from ._catalog import JsonObject
from ._tables import choice, date, entity, integer, lookup, memo, money, string


def _activity_states(table: str) -> tuple[JsonObject, JsonObject]:
    states = choice(table, "statecode", "Activity Status", [(0, "Open"), (1, "Completed"), (2, "Canceled")], "State")
    statuses = choice(
        table,
        "statuscode",
        "Status Reason",
        [(1, "Open"), (2, "Completed"), (3, "Canceled")],
        "Status",
        states=[0, 1, 2],
    )
    return states, statuses


def _keyed_by_activityid(metadata: JsonObject) -> JsonObject:
    """Activities share the primary key `activityid` (their base type's key), not `<table>id`."""
    own_key = metadata["PrimaryIdAttribute"]
    metadata["PrimaryIdAttribute"] = "activityid"
    for attribute in metadata["Attributes"]:
        if attribute["LogicalName"] == own_key:
            attribute["LogicalName"] = attribute["SchemaName"] = "activityid"
    metadata["IsActivity"] = True
    return metadata


def activity_tables() -> list[JsonObject]:
    """EntityDefinitions entries of the close activities."""
    close, resolution = "opportunityclose", "incidentresolution"
    return [
        _keyed_by_activityid(
            entity(
                close,
                entity_set="opportunitycloses",
                display="Opportunity Close",
                plural="Opportunity Close",
                object_type_code=4208,
                primary_name="subject",
                states=_activity_states(close),
                columns=[
                    string(close, "subject", "Subject", 200),
                    memo(close, "description", "Description"),
                    lookup(close, "opportunityid", "Opportunity", ["opportunity"]),
                    money(close, "actualrevenue", "Actual Revenue"),
                    date(close, "actualend", "Close Date", date_only=True),
                    string(close, "competitorid", "Competitor", 100),
                ],
            )
        ),
        _keyed_by_activityid(
            entity(
                resolution,
                entity_set="incidentresolutions",
                display="Case Resolution",
                plural="Case Resolutions",
                object_type_code=4206,
                primary_name="subject",
                states=_activity_states(resolution),
                columns=[
                    string(resolution, "subject", "Resolution", 200),
                    memo(resolution, "description", "Description"),
                    lookup(resolution, "incidentid", "Case", ["incident"]),
                    integer(resolution, "timespent", "Time Spent", 0, 2147483647),
                    date(resolution, "actualend", "Actual End"),
                ],
            )
        ),
    ]
