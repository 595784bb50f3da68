"""Every word of the UI has a Brazilian Portuguese translation, and the right one is shown."""

from __future__ import annotations

from pathlib import Path

import pytest
from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po
from fastapi.testclient import TestClient

import embedportal
from embedportal.i18n import DOMAIN, LOCALE_DIR
from tests.support.portal import LoginAs, MakeUser

REPO = Path(__file__).resolve().parents[2]
PACKAGE = Path(embedportal.__file__).resolve().parent


def _extracted() -> dict[str | tuple[str, ...], str]:
    """msgid → where it is used, found the way `pybabel extract -F babel.cfg` finds them."""
    with (REPO / "babel.cfg").open() as config:
        method_map, options_map = parse_mapping_cfg(config)  # type: ignore[no-untyped-call]
    found: dict[str | tuple[str, ...], str] = {}
    for filename, lineno, message, _comments, _context in extract_from_dir(
        str(PACKAGE), method_map, options_map
    ):
        key = message if isinstance(message, str) else tuple(m for m in message if m)
        found.setdefault(key, f"{filename}:{lineno}")
    return found


def _catalog() -> Catalog:
    with (LOCALE_DIR / "pt_BR" / "LC_MESSAGES" / f"{DOMAIN}.po").open("rb") as po:
        return read_po(po, locale="pt_BR")


def test_every_message_has_a_pt_br_translation() -> None:
    extracted = _extracted()
    assert len(extracted) > 100, "the extractor found almost nothing: check babel.cfg"
    catalog = _catalog()
    missing = []
    for message_id, where in extracted.items():
        lookup = message_id if isinstance(message_id, str) else message_id[0]
        entry = catalog.get(lookup)
        translated = None if entry is None else entry.string
        strings = [translated] if isinstance(translated, str) else list(translated or ())
        if entry is None or entry.fuzzy or not strings or not all(strings):
            missing.append(f"{where}: {message_id!r}")
    assert not missing, (
        "Messages without a pt_BR translation (pybabel extract -F babel.cfg -o "
        "/tmp/messages.pot src/embedportal; pybabel update -i /tmp/messages.pot -d "
        "src/embedportal/locale -l pt_BR; then translate):\n" + "\n".join(missing)
    )


def test_translations_keep_their_placeholders() -> None:
    problems = [f"{message.id!r}: {errors}" for message, errors in _catalog().check() if errors]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    ("accept_language", "words"),
    [
        (None, ("Sign in", 'lang="en"')),
        ("de-DE,de;q=0.9", ("Sign in", 'lang="en"')),
        ("pt-BR,pt;q=0.9,en;q=0.8", ("Entrar", 'lang="pt-BR"', "Senha", "E-mail")),
        ("pt", ("Entrar",)),
        ("en-GB,pt-BR;q=0.5", ("Sign in",)),
    ],
)
def test_the_sign_in_page_follows_the_browser(
    client: TestClient, accept_language: str | None, words: tuple[str, ...]
) -> None:
    headers = {"Accept-Language": accept_language} if accept_language else {}
    page = client.get("/login", headers=headers).text
    for word in words:
        assert word in page


def test_the_users_choice_beats_the_browser(
    client: TestClient, make_user: MakeUser, login_as: LoginAs
) -> None:
    login_as(make_user("ana@example.com", language="pt_BR"))
    page = client.get("/account", headers={"Accept-Language": "en-US"}).text
    assert "Sua conta" in page and '<html lang="pt-BR"' in page
    login_as(make_user("bob@example.com", language="en"))
    page = client.get("/account", headers={"Accept-Language": "pt-BR"}).text
    assert "Your account" in page


def test_refusals_are_translated_too(
    client: TestClient, make_user: MakeUser, login_as: LoginAs
) -> None:
    login_as(make_user("ana@example.com", language="pt_BR"))
    page = client.get("/admin/users")
    assert page.status_code == 403
    assert "Você não tem permissão para fazer isso." in page.text
