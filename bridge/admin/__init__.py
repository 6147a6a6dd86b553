"""The operator console: handovers, what is stuck and why, the actions that fix it, endpoints.

Every action is a few lines calling bridge.services / bridge.operations and is written to the admin
log with the user who ran it. Lists never count whole big tables (show_full_result_count off) and
filter only on indexed columns.

Modules: display (badges, shared columns), filters, handovers (list and bulk actions), handover_page
(the detail page and its buttons), outbox (deliveries, messages, inbound events), endpoints, bots
(Infobip external bots), forms.
Importing the package registers every ModelAdmin.
"""

from django.contrib import admin as _admin

from bridge.admin import alerts, bots, endpoints, handovers, outbox  # noqa: F401  (registers the ModelAdmins)

# The console's overview and lists use the whole width (a laptop's 1366 px) instead of a side menu.
_admin.site.enable_nav_sidebar = False
_admin.site.site_header = "Handover Bridge"
_admin.site.index_title = "Overview"
