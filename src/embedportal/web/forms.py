"""The admin pages' forms, one pydantic model each.

A route takes its form as one argument (`form: Annotated[UserForm, Form()]`), hands its fields to
the service in one go, and when the service refuses them shows the page again from the same
object (`{"values": form, "errors": error.errors}`), so the fields are named once, here.

The models only parse: text stays text and a checkbox becomes a bool. Every rule (what a valid
e-mail, role or token lifetime is) stays in the services, `access.users`, `access.groups`,
`access.organization` and `tokens.policy`, which the CLI and the demo call too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Annotated, Any, Literal, Self

from fastapi import UploadFile
from pydantic import BaseModel, BeforeValidator, ConfigDict

from embedportal.db.models import Capacity, Group, Organization, Role, User
from embedportal.web.input_guard import ascii_whole_number

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


class CapacityRightsForm(PostedForm):
    """The two capacity permissions a user or a group may hold (docs/capacity.md)."""

    may_start_capacity: Checkbox = False
    keeps_capacity_on: Checkbox = False


class UserForm(CapacityRightsForm):
    """The fields of "edit user", as `access.users.update_user` takes them."""

    email: str = ""
    name: str = ""
    # Nothing sent is no role; the service refuses it like any unknown one.
    role: str = ""
    rls_username: str = ""
    rls_roles: str = ""

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


class UserEditForm(UserForm):
    """ "Edit user" as posted: the user's fields, and whether to save RLS settings Power BI
    could not be asked about (access/rls_check.py)."""

    save_unchecked: Checkbox = False

    def fields(self) -> dict[str, Any]:
        """The fields `access.users.update_user` takes."""
        return self.model_dump(exclude={"save_unchecked"})


class NewUserForm(UserForm):
    """ "New user": the user's fields, a viewer unless chosen otherwise, and a first password;
    none sends an invitation to choose one."""

    role: str = Role.VIEWER.value
    password: str = ""

    @property
    def invites(self) -> bool:
        return not self.password


class ForgotPasswordForm(PostedForm):
    """ "Forgot your password?": the e-mail address to send a reset link to."""

    email: str = ""


class NewPasswordForm(PostedForm):
    """Setting a password through an invitation or a reset link."""

    new_password: str = ""
    repeat_password: str = ""


class PasswordForm(PostedForm):
    """An administrator sets a user's password."""

    password: str = ""


class PasswordStrengthForm(PostedForm):
    """A password being typed, for the strength meter: whichever field it is in, and the
    e-mail and name it must not be made of (the new-user form sends them too)."""

    password: str = ""
    new_password: str = ""
    email: str = ""
    name: str = ""

    @property
    def typed(self) -> str:
        return self.new_password or self.password


class UnlockForm(PostedForm):
    """Unlock from Admin → Users: the list's search and page, to show the same list again."""

    q: str = ""
    page: str = "1"
    locked: Checkbox = False

    @property
    def page_number(self) -> int:
        # ASCII digits only: int() would also take "²" or a thousand digits.
        text = self.page.strip()
        if text.isascii() and text.isdigit() and len(text) <= 7:
            return max(int(text), 1)
        return 1


class TwoStepCodeForm(PostedForm):
    """A code from the authenticator app (or, at sign-in, a recovery code)."""

    code: str = ""


class DisableTwoStepForm(PostedForm):
    """Turning two-step sign-in off, or new recovery codes: a current code, a recovery code or
    the password, to prove it is the user."""

    code_or_password: str = ""


class GroupForm(CapacityRightsForm):
    """The fields of a group, for "new group" and the group's page."""

    name: str = ""
    description: str = ""

    @classmethod
    def of(cls, group: Group) -> Self:
        return cls.model_validate(group, from_attributes=True)


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
    # Sign-in: the methods ("password", "microsoft", "both") and the app registration.
    sign_in_methods: str = ""
    microsoft_tenant_id: str = ""
    microsoft_client_id: str = ""
    microsoft_client_secret: str = ""
    clear_microsoft_client_secret: Checkbox = False
    microsoft_signup_tenants: str = ""
    require_two_step_for_admins: Checkbox = False
    # How reports without a choice of their own are embedded (access/embedding.py).
    default_embedding: str = ""

    @classmethod
    def of(cls, organization: Organization, *, two_step_required: bool = False) -> Self:
        """The form filled in with the stored settings; the secret is write-only, never shown.
        ``two_step_required`` is the rule in effect (access.two_step.required_for_admins),
        which a stored None leaves to the environment."""
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
            # An organization not yet flushed has its column defaults unset (None).
            sign_in_methods=organization.sign_in_methods or "password",
            microsoft_tenant_id=organization.microsoft_tenant_id or "",
            microsoft_client_id=organization.microsoft_client_id or "",
            microsoft_signup_tenants=organization.microsoft_signup_tenants or "",
            require_two_step_for_admins=two_step_required,
            default_embedding=organization.default_embedding or "app-owned",
        )

    def text_fields(self) -> dict[str, str]:
        """The typed fields by name, as `access.organization` and `tokens.policy` read them."""
        return {name: value for name, value in self.model_dump().items() if isinstance(value, str)}

    def without_secret(self) -> Self:
        """The form to show again: a typed secret never goes back to the browser."""
        return self.model_copy(update={"powerbi_client_secret": "", "microsoft_client_secret": ""})


class BrandingForm(PostedForm):
    """Admin → Branding: the primary colour, and for each image a new file or "remove"."""

    brand_color: str = ""
    logo: UploadFile | None = None
    favicon: UploadFile | None = None
    sign_in_background: UploadFile | None = None
    remove_logo: Checkbox = False
    remove_favicon: Checkbox = False
    remove_sign_in_background: Checkbox = False

    @classmethod
    def of(cls, organization: Organization) -> Self:
        return cls(brand_color=organization.brand_color)

    def upload(self, kind: str) -> UploadFile | None:
        """The file chosen for ``kind``; a file input left empty sends no file."""
        upload: UploadFile | None = getattr(self, kind)
        return upload if upload is not None and upload.filename else None

    def removed(self) -> frozenset[str]:
        kinds = ("logo", "favicon", "sign_in_background")
        return frozenset(kind for kind in kinds if getattr(self, f"remove_{kind}"))


class ReportEmbeddingForm(PostedForm):
    """How one report is embedded: "" (as the organization), "app-owned" or "user-owned"."""

    embedding: str = ""


class GrantRolesForm(PostedForm):
    """The RLS roles of one grant, separated by commas; ``save_unchecked``: save them even when
    Power BI could not be asked whether they exist (access/rls_check.py)."""

    rls_roles: str = ""
    save_unchecked: Checkbox = False


class GrantForm(GrantRolesForm):
    """Grant a report to a user or a group, with RLS roles."""

    # The chosen <option>'s value: "user:<id>" or "group:<id>".
    grantee: str = ""

    def grantee_id(self, kind: Literal["user", "group"]) -> int | None:
        """The id of the chosen user or group, if one of that kind is chosen."""
        chosen_kind, _sep, raw_id = self.grantee.partition(":")
        grantee_id = ascii_whole_number(raw_id, max_digits=10)
        if chosen_kind != kind or grantee_id is None:
            return None
        return grantee_id if 1 <= grantee_id <= MAX_ID else None


class CapacityAzureForm(PostedForm):
    """Where a capacity lives in Azure, as `capacity.inventory.configure_capacity` takes it."""

    subscription_id: str = ""
    resource_group: str = ""
    resource_name: str = ""
    provider: str = ""

    @classmethod
    def of(cls, capacity: Capacity) -> Self:
        return cls(
            subscription_id=capacity.subscription_id or "",
            resource_group=capacity.resource_group or "",
            resource_name=capacity.resource_name or "",
            provider=capacity.provider or "",
        )


class CapacitySettingsForm(PostedForm):
    """A capacity's idle pause, starting-screen text and hourly price, as text: the capacity
    policy tells "not a number" from "out of range" and says which."""

    idle_pause_minutes: str = ""
    starting_message: str = ""
    hourly_price: str = ""

    @classmethod
    def of(cls, capacity: Capacity) -> Self:
        price = capacity.hourly_price
        return cls(
            idle_pause_minutes=str(capacity.idle_pause_minutes or ""),
            starting_message=capacity.starting_message,
            hourly_price="" if price is None else format(Decimal(str(price)).normalize(), "f"),
        )


class ScheduleForm(PostedForm):
    """The weekly schedule editor: one weekday, time, action and SKU per row, posted as four
    lists in row order (every row sends each of its four fields, so the lists line up).

    `add_row` and `remove_row` are the editor's buttons (the row number to remove); `copy_from`
    and `copy_to` are "copy this day to …".
    """

    weekday: list[str] = []
    time: list[str] = []
    action: list[str] = []
    sku: list[str] = []
    copy_from: str = ""
    copy_to: list[str] = []
    add_row: str = ""
    remove_row: str = ""

    @classmethod
    def of_rows(cls, rows: Sequence[Mapping[str, str]], *, spare: int = 0) -> Self:
        """The form showing these rows (as `format_schedule_rows` gives them), and `spare`
        blank ones for a browser without JavaScript to add rows in."""
        filled = [*rows, *({} for _ in range(spare))]
        return cls(
            weekday=[row.get("weekday", "") for row in filled],
            time=[row.get("time", "") for row in filled],
            action=[row.get("action", "") for row in filled],
            sku=[row.get("sku", "") for row in filled],
        )

    def rows(self) -> list[dict[str, str]]:
        """The rows as `capacity.schedule.parse_schedule_rows` reads them."""
        count = max(len(self.weekday), len(self.time), len(self.action), len(self.sku))

        def at(values: list[str], index: int) -> str:
            return values[index] if index < len(values) else ""

        return [
            {
                "weekday": at(self.weekday, index),
                "time": at(self.time, index),
                "action": at(self.action, index),
                "sku": at(self.sku, index),
            }
            for index in range(count)
        ]

    def edited(self) -> Self:
        """The form after its "Add a row" or "Remove" button: one blank row more, or one less."""
        rows = self.rows()
        index = ascii_whole_number(self.remove_row)
        if index is not None and index < len(rows):
            del rows[index]
        if self.add_row:
            rows.append({})
        return (
            type(self)
            .of_rows(rows)
            .model_copy(update={"copy_from": self.copy_from, "copy_to": self.copy_to})
        )


class SkuForm(PostedForm):
    """Change a capacity's SKU by hand."""

    sku: str = ""


class UserListQuery(PostedForm):
    """Admin → Users' search, page and "locked only" (query parameters)."""

    q: str = ""
    page: int = 1
    locked: bool = False


class CapacityAuditQuery(PostedForm):
    """The capacity audit's filters (query parameters), as typed; `capacity.audit_log` checks
    them."""

    capacity: str = ""
    user: str = ""
    action: str = ""
    reason: str = ""
    since: str = ""
    until: str = ""
    page: int = 1

    def filter_fields(self) -> dict[str, str]:
        return self.model_dump(exclude={"page"})


class SsoOriginsForm(PostedForm):
    """Admin → API keys' "applications that may frame the portal": origins, one per line."""

    origins: str = ""


class ApiKeyForm(PostedForm):
    """Admin → API keys' "new key": a name, the scopes ticked, an optional expiry day
    (`YYYY-MM-DD`, the end of that day in the organization's time zone)."""

    name: str = ""
    scopes: list[str] = []
    expires_on: str = ""
