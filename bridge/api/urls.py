from django.urls import path

from bridge.api import bots, card, views

urlpatterns = [
    path("webhooks/infobip/<str:token>/", views.InfobipWebhookView.as_view(), name="infobip-webhook"),
    path(
        "webhooks/infobip-bot/<str:token>/", bots.InfobipBotWebhookView.as_view(), name="infobip-bot-webhook"
    ),
    path("webhooks/ccaas/<slug:slug>/", views.CcaasWebhookView.as_view(), name="ccaas-webhook"),
    path("api/escalations/", views.EscalationView.as_view(), name="escalations"),
    path("api/handovers/<str:pk>/", views.HandoverView.as_view(), name="handover"),
    path("api/context-card/", card.ContextCardView.as_view(), name="context-card"),
]
