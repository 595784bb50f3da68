"""The form models: they parse what a browser posts and nothing more (the rules are the
services'), and fill themselves in from what is stored."""

from __future__ import annotations

import pytest

from embedportal.db.models import Group, Organization, Role, User
from embedportal.web.forms import GrantForm, GroupForm, NewUserForm, SettingsForm, UserForm


def test_a_checkbox_is_ticked_by_whatever_it_sends() -> None:
    assert GroupForm.model_validate({"may_start_capacity": "on"}).may_start_capacity
    assert GroupForm.model_validate({"may_start_capacity": "yes"}).may_start_capacity
    assert not GroupForm.model_validate({}).may_start_capacity  # unticked: not sent at all


def test_other_posted_fields_are_ignored() -> None:
    form = UserForm.model_validate({"email": "a@example.com", "csrf_token": "t", "is_admin": "1"})
    assert form.model_dump() == UserForm(email="a@example.com").model_dump()


def test_a_new_user_is_a_viewer_unless_chosen_and_an_edit_names_its_role() -> None:
    assert NewUserForm().role == Role.VIEWER.value
    assert UserForm().role == ""  # nothing sent: the service refuses it


def test_forms_of_stored_rows() -> None:
    user = User(
        email="ana@example.com",
        name="Ana",
        role=Role.ADMIN,
        rls_username=None,
        rls_roles=["North", "South"],
        may_start_capacity=True,
        keeps_capacity_on=False,
    )
    assert UserForm.of(user) == UserForm(
        email="ana@example.com",
        name="Ana",
        role="admin",
        rls_username="",
        rls_roles="North, South",
        may_start_capacity=True,
    )
    group = Group(name="Sales", description="", may_start_capacity=False, keeps_capacity_on=True)
    assert GroupForm.of(group) == GroupForm(name="Sales", keeps_capacity_on=True)


def test_the_settings_form_never_carries_the_secret_back() -> None:
    organization = Organization(
        name="Acme",
        time_zone="UTC",
        powerbi_tenant_id="",
        powerbi_client_id="",
        powerbi_client_secret_encrypted="stored",
        powerbi_workspace_id="",
        refresh_every_minutes=None,
        token_lifetime_minutes=60,
        refresh_margin_minutes=10,
    )
    stored = SettingsForm.of(organization)
    assert (stored.powerbi_client_secret, stored.refresh_every_minutes) == ("", "")
    typed = SettingsForm(powerbi_client_secret="typed", clear_client_secret=True)
    assert typed.without_secret().powerbi_client_secret == ""
    assert "clear_client_secret" not in typed.text_fields()
    assert typed.text_fields()["powerbi_client_secret"] == "typed"


@pytest.mark.parametrize(
    ("grantee", "user_id", "group_id"),
    [
        ("user:7", 7, None),
        ("group:3", None, 3),
        ("user:007", 7, None),
        ("", None, None),
        ("user:", None, None),
        ("user:0", None, None),
        ("user:-1", None, None),
        ("user:²", None, None),  # a digit to str.isdigit, not to int()
        ("group:١", None, None),
        ("user:2147483648", None, None),  # beyond any row id: never sent to the database
        ("admin:1", None, None),
    ],
)
def test_the_chosen_grantee(grantee: str, user_id: int | None, group_id: int | None) -> None:
    form = GrantForm(grantee=grantee)
    assert (form.grantee_id("user"), form.grantee_id("group")) == (user_id, group_id)
