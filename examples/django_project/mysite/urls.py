"""URL routes: the project's single view."""
from django.urls import path

from . import views

urlpatterns = [
    path("", views.hello, name="hello"),
]
