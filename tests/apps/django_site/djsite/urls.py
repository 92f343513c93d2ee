from django.urls import path

from djsite import views

urlpatterns = [
    path("items/<int:item_id>", views.item),
    path("health", views.health),
]
