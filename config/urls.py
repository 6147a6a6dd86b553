from django.contrib import admin
from django.urls import include, path

from bridge.api import views

admin.site.site_header = "Handover Bridge"
admin.site.site_title = "Handover Bridge"
admin.site.index_title = "Operator console"

urlpatterns = [
    path("healthz", views.healthz, name="healthz"),
    path("", include("bridge.api.urls")),
    path("admin/", admin.site.urls),
]
