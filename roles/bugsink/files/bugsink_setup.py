#!/usr/bin/env python3
"""Idempotent setup steps Bugsink has no management command for (installed by the bugsink
Ansible role, run with Bugsink's virtualenv in its configuration directory).

ensure-project  get or create a team and a project (by name), keep the project's event
                retention at the given count, make each --alert-user (an existing user's
                e-mail) an accepted member of both with e-mail alerts on, and print JSON:
                ids, the DSN, and "changed" (true only when something was created or
                updated).
check-token     print JSON {"valid": bool}: whether the API token in the environment
                variable HPD_BUGSINK_API_TOKEN exists in Bugsink as a full-access token.
                (The token comes through the environment so it never shows in ps.)
"""

from __future__ import annotations

import argparse
import json
import os
import sys


def setup_django() -> None:
    # Like bugsink-manage: bugsink_conf.py is found in the working directory.
    sys.path.insert(0, os.getcwd())
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bugsink_conf")
    import django

    django.setup()


def ensure_alert_member(team, project, email: str) -> list[str]:
    """The user with this e-mail is an accepted member of the team and the project, with
    the project's e-mail alerts (a new issue, a regression) on."""
    from django.contrib.auth import get_user_model
    from projects.models import ProjectMembership
    from teams.models import TeamMembership

    user = get_user_model().objects.filter(email=email).first()
    if user is None:
        user = get_user_model().objects.filter(username=email).first()
    if user is None:
        raise SystemExit(f"no Bugsink user with the e-mail {email!r} to send alerts to")
    changes = []
    scopes = ((TeamMembership, {"team": team}), (ProjectMembership, {"project": project}))
    for model, scope in scopes:
        membership, created = model.objects.get_or_create(
            user=user, **scope, defaults={"accepted": True, "send_email_alerts": True}
        )
        if created:
            changes.append(f"{email} joined {next(iter(scope))}")
        elif not membership.accepted or membership.send_email_alerts is not True:
            membership.accepted, membership.send_email_alerts = True, True
            membership.save(update_fields=["accepted", "send_email_alerts"])
            changes.append(f"{email} alerts on in {next(iter(scope))}")
    return changes


def ensure_project(
    team_name: str, project_name: str, retention: int | None, alert_users: list[str]
) -> dict:
    from django.db import transaction
    from projects.models import Project
    from teams.models import Team

    changes = []
    with transaction.atomic():
        team, created = Team.objects.get_or_create(name=team_name)
        if created:
            changes.append("team created")
        project = (
            Project.objects.filter(team=team, name=project_name, is_deleted=False)
            .order_by("id")
            .first()
        )
        if project is None:
            project = Project(team=team, name=project_name)
            if retention is not None:
                project.retention_max_event_count = retention
            project.save()
            changes.append("project created")
        elif retention is not None and project.retention_max_event_count != retention:
            project.retention_max_event_count = retention
            project.save(update_fields=["retention_max_event_count"])
            changes.append("retention updated")
        for email in alert_users:
            changes += ensure_alert_member(team, project, email)
    return {
        "changed": bool(changes),
        "changes": changes,
        "team": {"id": str(team.id), "name": team.name},
        "project": {"id": project.id, "name": project.name, "slug": project.slug},
        "dsn": project.dsn,
    }


def check_token() -> dict:
    from bsmain.models import AuthToken

    token = os.environ.get("HPD_BUGSINK_API_TOKEN", "").strip()
    valid = bool(token) and (
        AuthToken.objects.filter(token=token, is_user_bound=False, is_project_bound=False).exists()
    )
    return {"valid": valid}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    ensure = commands.add_parser("ensure-project")
    ensure.add_argument("--team", required=True)
    ensure.add_argument("--project", required=True)
    ensure.add_argument("--retention-max-event-count", type=int)
    ensure.add_argument("--alert-user", action="append", default=[])
    commands.add_parser("check-token")
    args = parser.parse_args()

    setup_django()
    if args.command == "ensure-project":
        result = ensure_project(
            args.team, args.project, args.retention_max_event_count, args.alert_user
        )
    else:
        result = check_token()
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
