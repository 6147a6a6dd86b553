from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView

from bridge.api import views

admin.site.site_header = "Handover Bridge"
admin.site.site_title = "Handover Bridge"
admin.site.index_title = "Operator console"

urlpatterns = [
    path("healthz", views.healthz, name="healthz"),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("", include("django_prometheus.urls")),  # GET /metrics
    path("", include("bridge.api.urls")),
    path("admin/", admin.site.urls),
]
