from django.contrib import admin
from django.urls import include, path
from django_prometheus.exports import ExportToDjangoView

from bridge.api import views
from bridge.api.schema import SchemaView
from bridge.security import BridgeAdminSite, protected

# The console asks for a TOTP code when BRIDGE_ADMIN_2FA is on (django-otp's documented way to switch
# the default site).
admin.site.__class__ = BridgeAdminSite
admin.site.site_header = "Handover Bridge"
admin.site.site_title = "Handover Bridge"
admin.site.index_title = "Operator console"

urlpatterns = [
    path("healthz", views.healthz, name="healthz"),
    path(
        "api/schema/",
        protected("BRIDGE_SCHEMA_PUBLIC", "BRIDGE_API_TOKEN")(SchemaView.as_view()),
        name="api-schema",
    ),
    path(
        "metrics",
        protected("BRIDGE_METRICS_PUBLIC", "BRIDGE_METRICS_TOKEN")(ExportToDjangoView),
        name="prometheus-django-metrics",
    ),
    path("", include("bridge.api.urls")),
    path("admin/", admin.site.urls),
]
