"""Deleting a tenant deletes what its traces stored outside PostgreSQL, however the tenant is deleted (the admin,
a shell, a cascade): its rows then go by cascade."""
from __future__ import annotations

from django.db.models.signals import pre_delete
from django.dispatch import receiver

from . import services
from .models import Tenant


@receiver(pre_delete, sender=Tenant)
def _tenant_stored_data_delete(sender, instance: Tenant, **kwargs) -> None:
    services.tenant_stored_data_delete(tenant=instance)
