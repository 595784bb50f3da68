"""The admin pages' forms, one pydantic model each.

A route takes its form as one argument (`form: Annotated[UserForm, Form()]`), hands its fields to
the service in one go, and when the service refuses them shows the page again from the same
object (`{"values": form, "errors": error.errors}`), so the fields are named once, here.

The models only parse: text stays text and a checkbox becomes a bool. Every rule (what a valid
e-mail, role or token lifetime is) stays in the services, `access.users`, `access.groups`,
`access.organization` and `tokens.policy`, which the CLI and the demo call too.
"""

from __future__ import annotations

from typing import Annotated, Literal, Self

from pydantic import BaseModel, BeforeValidator, ConfigDict

from embedportal.db.models import Group, Organization, Role, User

# Beyond a 32-bit integer an id is no row of ours; the database is never asked (it would overflow).
MAX_ID = 2**31 - 1


def _ticked(value: object) -> bool:
    """A ticked box sends its value ("on"), an unticked one sends nothing (the default, False),
    so anything that arrives is a tick, whatever its spelling."""
    return bool(value)


Checkbox = Annotated[bool, BeforeValidator(_ticked)]


class PostedForm(BaseModel):
    """What every form model shares.

    The CSRF token is posted with every form and checked by its own dependency, so fields a
    model does not name are ignored, never refused. Frozen: the object parsed from the post is
    the one shown again, unchanged.
    """

    model_config = ConfigDict(extra="ignore", frozen=True)


class UserForm(PostedForm):
    """The fields of "edit user", as `access.users.update_user` takes them."""

    email: str = ""
    name: str = ""
    # Nothing sent is no role; the service refuses it like any unknown one.
    role: str = ""
    rls_username: str = ""
    rls_roles: str = ""
    may_start_capacity: Checkbox = False
    keeps_capacity_on: Checkbox = False

    @classmethod
    def of(cls, user: User) -> Self:
        """The form filled in with the user as stored."""
        return cls(
            email=user.email,
            name=user.name,
            role=user.role.value,
            rls_username=user.rls_username or "",
            rls_roles=", ".join(user.rls_roles),
            may_start_capacity=user.may_start_capacity,
            keeps_capacity_on=user.keeps_capacity_on,
        )


class NewUserForm(UserForm):
    """ "New user": the user's fields, a viewer unless chosen otherwise, and a first password."""

    role: str = Role.VIEWER.value
    password: str = ""


class PasswordForm(PostedForm):
    """An administrator sets a user's password."""

    password: str = ""


class GroupForm(PostedForm):
    """The fields of a group, for "new group" and the group's page."""

    name: str = ""
    description: str = ""
    may_start_capacity: Checkbox = False
    keeps_capacity_on: Checkbox = False

    @classmethod
    def of(cls, group: Group) -> Self:
        return cls(
            name=group.name,
            description=group.description,
            may_start_capacity=group.may_start_capacity,
            keeps_capacity_on=group.keeps_capacity_on,
        )


class MemberForm(PostedForm):
    """Add a member to a group by e-mail address."""

    email: str = ""


class SettingsForm(PostedForm):
    """Admin → Settings: the organization, its Power BI connection, the token policy.

    The numbers stay text: `tokens.policy` tells "not a whole number" from "out of range" and
    says which, next to the field.
    """

    name: str = ""
    time_zone: str = ""
    powerbi_tenant_id: str = ""
    powerbi_client_id: str = ""
    powerbi_client_secret: str = ""
    clear_client_secret: Checkbox = False
    powerbi_workspace_id: str = ""
    refresh_every_minutes: str = ""
    token_lifetime_minutes: str = ""
    refresh_margin_minutes: str = ""
    nobody_may_start_capacity: Checkbox = False

    @classmethod
    def of(cls, organization: Organization) -> Self:
        """The form filled in with the stored settings; the secret is write-only, never shown."""
        return cls(
            name=organization.name,
            time_zone=organization.time_zone,
            powerbi_tenant_id=organization.powerbi_tenant_id,
            powerbi_client_id=organization.powerbi_client_id,
            powerbi_workspace_id=organization.powerbi_workspace_id,
            refresh_every_minutes=str(organization.refresh_every_minutes or ""),
            token_lifetime_minutes=str(organization.token_lifetime_minutes),
            refresh_margin_minutes=str(organization.refresh_margin_minutes),
            nobody_may_start_capacity=organization.nobody_may_start_capacity,
        )

    def text_fields(self) -> dict[str, str]:
        """The typed fields by name, as `access.organization` and `tokens.policy` read them."""
        return {name: value for name, value in self.model_dump().items() if isinstance(value, str)}

    def without_secret(self) -> Self:
        """The form to show again: a typed secret never goes back to the browser."""
        return self.model_copy(update={"powerbi_client_secret": ""})


class GrantRolesForm(PostedForm):
    """The RLS roles of one grant, separated by commas."""

    rls_roles: str = ""


class GrantForm(GrantRolesForm):
    """Grant a report to a user or a group, with RLS roles."""

    # The chosen <option>'s value: "user:<id>" or "group:<id>".
    grantee: str = ""

    def grantee_id(self, kind: Literal["user", "group"]) -> int | None:
        """The id of the chosen user or group, if one of that kind is chosen."""
        chosen_kind, _sep, raw_id = self.grantee.partition(":")
        if chosen_kind != kind or not raw_id.isascii() or not raw_id.isdigit():
            return None
        grantee_id = int(raw_id)
        return grantee_id if 1 <= grantee_id <= MAX_ID else None
