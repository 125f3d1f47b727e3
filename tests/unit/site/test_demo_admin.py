"""The demo's admin login: created once, printed again on every run."""
from __future__ import annotations

import pytest
from django.contrib.auth import authenticate

from hypergraph_site.demo.management.commands.demo import demo_admin

pytestmark = pytest.mark.django_db


def test_the_login_is_created_then_printed_again(tmp_path):
    password_file = tmp_path / "var" / "demo_admin_password"
    username, password = demo_admin(password_file)
    assert authenticate(username=username, password=password).is_superuser
    assert oct(password_file.stat().st_mode & 0o777) == "0o600"
    assert demo_admin(password_file) == (username, password)


def test_a_lost_password_file_gives_a_new_working_login(tmp_path, django_user_model):
    username, old = demo_admin(tmp_path / "first")
    _, new = demo_admin(tmp_path / "second")
    assert new != old and authenticate(username=username, password=new) is not None
    assert django_user_model.objects.filter(username=username).count() == 1
