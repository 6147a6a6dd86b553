"""manage.py bridge_demo: a whole handover against simulated Infobip and contact-center servers.

Plays bridge.demo.scenario in a sandbox (bridge.demo.sandbox): its own temporary database and
queue, so a running bridge never takes its work and nothing is left in this bridge's database.
"""

from django.core.management.base import BaseCommand, CommandError

from bridge.demo import sandbox


class Command(BaseCommand):
    help = "Run a complete handover against built-in simulated Infobip and contact-center servers."
    requires_system_checks = []  # the demo uses none of this bridge's settings, database or queue

    def handle(self, *args, **options) -> None:
        if sandbox.run(self.stdout.write) != 0:
            raise CommandError("the demo did not complete (see the last line above)")
