"""The form reader the web tests lean on: what it says a form sends and shows."""

from __future__ import annotations

from tests.support.html import (
    accessibility_problems,
    buttons,
    elements,
    form_fields,
    links,
    missing_ids,
    table_rows,
)

FORM = """
<form method="post" action="/things">
  <input type="hidden" name="csrf_token" value="t0k3n">
  <label for="f-email">Email</label>
  <input id="f-email" name="email" type="email" value="a&amp;b@example.com"
         aria-describedby="f-email-help f-email-error" aria-invalid="true" required>
  <small id="f-email-help" class="hint">Your work address.</small>
  <small id="f-email-error" class="field-error">Give an
      e-mail address.</small>
  <label for="f-role">Role</label>
  <select id="f-role" name="role">
    <option value="viewer">Viewer
    <option value="admin" selected>Administrator
  </select>
  <select name="plain" aria-label="Plain"><option>first</option><option>second</option></select>
  <label>Notes <textarea name="notes">
kept &lt;as&gt; typed</textarea></label>
  <label><input type="checkbox" name="ticked" checked> Ticked</label>
  <label><input type="checkbox" name="unticked" value="yes"> Unticked</label>
  <fieldset aria-describedby="f-colour-error" aria-invalid="true">
    <legend>Colour</legend>
    <label><input type="radio" name="colour" value="red"> Red</label>
    <label><input type="radio" name="colour" value="blue" checked> Blue</label>
    <small id="f-colour-error" class="field-error">Pick one.</small>
  </fieldset>
  <span id="named-by">Named elsewhere</span>
  <input name="by_reference" aria-labelledby="named-by">
  <input name="nameless_label">
  <button type="submit">Save</button>
  <input type="submit" value="Also save">
</form>
<form action="/other"><input name="email" value="other@example.com"></form>
"""


def test_values_as_a_browser_would_send_them() -> None:
    fields = form_fields(FORM, action="/things")
    assert fields["csrf_token"].value == "t0k3n"
    assert fields["email"].value == "a&b@example.com"
    assert fields["role"].value == "admin"
    assert fields["plain"].value == "first"  # nothing selected: the first option
    assert fields["notes"].value == "kept <as> typed"
    assert fields["ticked"].checked and fields["ticked"].value == "on"
    assert not fields["unticked"].checked and fields["unticked"].value is None
    assert fields["colour"].values == ("blue",) and fields["colour"].checked
    assert "button" not in {field.type for field in fields.values()}


def test_attributes_are_read_not_spelled() -> None:
    email = form_fields(FORM)["email"]
    assert email.type == "email"
    assert "required" in email.attrs and email.attrs["required"] is None
    assert form_fields(FORM)["role"].options == [("viewer", "Viewer"), ("admin", "Administrator")]
    assert form_fields(FORM)["colour"].options == [("red", "Red"), ("blue", "Blue")]


def test_labels_from_for_wrapping_aria_and_legends() -> None:
    fields = form_fields(FORM)
    assert fields["email"].label == "Email"
    assert fields["role"].label == "Role"
    assert fields["plain"].label == "Plain"
    assert fields["notes"].label == "Notes kept <as> typed"  # a wrapping label reads its text
    assert fields["ticked"].label == "Ticked"
    assert fields["colour"].label == "Colour"
    assert fields["by_reference"].label == "Named elsewhere"
    assert fields["nameless_label"].label == ""


def test_the_error_read_out_with_a_field() -> None:
    fields = form_fields(FORM)
    assert fields["email"].error == "Give an e-mail address."  # the hint is not the error
    assert fields["email"].invalid
    assert fields["email"].controls[0].described_by == ("f-email-help", "f-email-error")
    assert fields["colour"].error == "Pick one." and fields["colour"].invalid
    assert fields["role"].error == "" and not fields["role"].invalid


def test_one_form_at_a_time() -> None:
    assert form_fields(FORM)["email"].values == ("a&b@example.com", "other@example.com")
    assert form_fields(FORM, action="/other")["email"].value == "other@example.com"
    assert form_fields(FORM, action="/nowhere") == {}


def test_dangling_references_are_found() -> None:
    assert missing_ids(FORM) == []
    broken = '<label for="gone">X</label><input aria-describedby="f-x-help also-gone">'
    assert missing_ids(broken) == ["f-x-help", "also-gone", "gone"]


def test_links_buttons_tables_and_elements() -> None:
    page = """<html lang="pt-BR"><body>
      <nav aria-label="Main"><a href="/a">First <b>link</b></a><a>no href</a></nav>
      <table><tr><th scope="row">Refreshes</th><td>3</td></tr><tr><td>x</td></tr></table>
      <p>unclosed <p>stray</span> end
    </body></html>"""
    assert links(page) == [("First link", "/a")]
    assert buttons(FORM) == ["Save", "Also save"]
    assert table_rows(page) == [["Refreshes", "3"], ["x"]]
    assert elements(page, "html")[0].attrs["lang"] == "pt-BR"
    assert [nav.attrs["aria-label"] for nav in elements(page, having="aria-label")] == ["Main"]
    assert elements("<section id='grants'>partial</section>")[0].attrs["id"] == "grants"


def test_the_checker_sees_what_is_missing() -> None:
    """A field without a label, or with its error detached, is named; a good form has none."""
    page = """
      <form action="/x">
        <input name="unlabelled">
        <label for="f-a">A</label><input id="f-a" name="a" aria-invalid="true">
        <label for="f-b">B</label><input id="f-b" name="b" aria-describedby="f-b-error">
        <small id="f-b-error" class="field-error">Wrong.</small>
        <small id="f-c-error" class="field-error">Read out with nothing.</small>
        <label for="f-gone">Gone</label>
      </form>"""
    assert accessibility_problems(page) == [
        "field 'unlabelled' (text) has no label",
        "field 'a' (text) is marked invalid but no error is read out with it",
        "field 'b' (text) has an error but is not marked invalid",
        "the error 'Read out with nothing.' is read out with no field",
        "'f-gone' is named but no element has that id",
    ]
    assert accessibility_problems(FORM) == [
        "field 'nameless_label' (text) has no label",
        "field 'email' (text) has no label",  # the second form's
    ]
