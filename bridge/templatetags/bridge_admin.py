"""Template tags of the operator console."""

from django import template

from bridge import dashboard

register = template.Library()


@register.simple_tag
def bridge_overview():
    return dashboard.overview()
