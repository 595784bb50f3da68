"""Read rendered pages the way a browser and a screen reader would, so tests assert what a form
shows and sends (values, ticks, labels, the error read out with a field), not how the template
happens to spell its attributes.

Only the standard library's `html.parser`: the templates are ours and well formed, so a small
tree is enough; it is not a general HTML5 parser.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser

Attrs = dict[str, str | None]

# Elements that never have an end tag, so they never hold children.
_VOID = frozenset("area base br col embed hr img input link meta param source track wbr".split())
# Inputs that are buttons, not fields: they send nothing unless they are the one clicked.
_BUTTON_TYPES = frozenset({"submit", "button", "reset", "image"})
_CHECKABLE = frozenset({"checkbox", "radio"})
_SPACES = re.compile(r"\s+")


@dataclass(eq=False)
class Element:
    """One element of the page, with its attributes as written (a bare attribute is None)."""

    tag: str
    attrs: Attrs
    parent: Element | None = None
    children: list[Element | str] = field(default_factory=list)

    def iter(self) -> Iterator[Element]:
        """This element and every element inside it, in document order."""
        yield self
        for child in self.children:
            if isinstance(child, Element):
                yield from child.iter()

    def ancestors(self) -> Iterator[Element]:
        node = self.parent
        while node is not None:
            yield node
            node = node.parent

    def enclosing(self, tag: str) -> Element | None:
        return next((node for node in self.ancestors() if node.tag == tag), None)

    @property
    def raw_text(self) -> str:
        return "".join(
            child if isinstance(child, str) else child.raw_text for child in self.children
        )

    @property
    def text(self) -> str:
        """The text inside, with runs of white space made one space, as it reads."""
        return _SPACES.sub(" ", self.raw_text).strip()

    @property
    def classes(self) -> list[str]:
        return (self.attrs.get("class") or "").split()


class _TreeBuilder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Element("#document", {})
        self._open: list[Element] = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        # An <option> ends at the next one even without its end tag, as in a browser.
        if tag in {"option", "optgroup"} and self._open[-1].tag == "option":
            self._open.pop()
        element = Element(tag, dict(attrs), parent=self._open[-1])
        self._open[-1].children.append(element)
        if tag not in _VOID:
            self._open.append(element)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, dict(attrs), parent=self._open[-1])
        self._open[-1].children.append(element)

    def handle_endtag(self, tag: str) -> None:
        # A stray end tag is ignored; one that closes an outer element closes the inner ones too.
        if any(element.tag == tag for element in self._open[1:]):
            while self._open[-1].tag != tag:
                self._open.pop()
            self._open.pop()

    def handle_data(self, data: str) -> None:
        self._open[-1].children.append(data)


def parse(html: str) -> Element:
    """The page as a tree under a #document element."""
    builder = _TreeBuilder()
    builder.feed(html)
    builder.close()
    return builder.root


def elements(html: str | Element, tag: str | None = None, *, having: str = "") -> list[Element]:
    """Elements in document order: of this tag (any when None) and with this attribute, if given."""
    root = parse(html) if isinstance(html, str) else html
    return [
        element
        for element in root.iter()
        if element is not root
        and (tag is None or element.tag == tag)
        and (not having or having in element.attrs)
    ]


def links(html: str) -> list[tuple[str, str]]:
    """(text, href) of every link."""
    return [(a.text, a.attrs.get("href") or "") for a in elements(html, "a", having="href")]


def buttons(html: str) -> list[str]:
    """The text of every button (and the value of every submit input)."""
    return [
        element.text if element.tag == "button" else element.attrs.get("value") or ""
        for element in elements(html)
        if element.tag == "button"
        or (element.tag == "input" and element.attrs.get("type") in _BUTTON_TYPES)
    ]


def table_rows(html: str) -> list[list[str]]:
    """The text of each cell (th or td), row by row, of every table."""
    return [
        [cell.text for cell in row.iter() if cell.tag in {"th", "td"}]
        for row in elements(html, "tr")
    ]


@dataclass(frozen=True)
class Control:
    """One input, select or textarea, as it is rendered."""

    element: Element
    submitted: tuple[str, ...]
    """What it would send now: nothing for an unticked box, one value otherwise (a select with
    `multiple` sends each chosen option)."""
    label: str
    """Its accessible name ("" when it has none): aria-labelledby, aria-label, a <label for>
    it, or a <label> around it."""
    legend: str
    """The legend of the fieldset it is in ("" outside one)."""
    error: str
    """The text of the `field-error` element its aria-describedby (or its fieldset's) names."""
    invalid: bool
    """aria-invalid="true" on it or on its fieldset."""
    described_by: tuple[str, ...]
    """The ids its aria-describedby names."""

    @property
    def name(self) -> str:
        return self.element.attrs.get("name") or ""

    @property
    def attrs(self) -> Attrs:
        return self.element.attrs

    @property
    def type(self) -> str:
        """The input's type ("text" when not given), or the tag: "select", "textarea"."""
        if self.element.tag == "input":
            return (self.element.attrs.get("type") or "text").lower()
        return self.element.tag


@dataclass(frozen=True)
class Field:
    """The controls that share a name in a form: one, or a group of radios or checkboxes."""

    name: str
    controls: tuple[Control, ...]

    @property
    def values(self) -> tuple[str, ...]:
        """Everything these controls would send, in order."""
        return tuple(value for control in self.controls for value in control.submitted)

    @property
    def value(self) -> str | None:
        """The first value sent; None when nothing is (an unticked box)."""
        return self.values[0] if self.values else None

    @property
    def checked(self) -> bool:
        """A ticked box or a chosen radio among these controls."""
        return any(control.type in _CHECKABLE and control.submitted for control in self.controls)

    @property
    def attrs(self) -> Attrs:
        """The attributes of the first control."""
        return self.controls[0].attrs

    @property
    def type(self) -> str:
        return self.controls[0].type

    @property
    def label(self) -> str:
        """The first control's label; for a group of radios or checkboxes, the legend."""
        first = self.controls[0]
        if len(self.controls) > 1 and first.legend:
            return first.legend
        return first.label or first.legend

    @property
    def error(self) -> str:
        return next((control.error for control in self.controls if control.error), "")

    @property
    def invalid(self) -> bool:
        return any(control.invalid for control in self.controls)

    @property
    def options(self) -> list[tuple[str, str]]:
        """(value, text) of a select's options; of a radio or checkbox group, its choices."""
        first = self.controls[0].element
        if first.tag == "select":
            return [(_option_value(option), option.text) for option in elements(first, "option")]
        return [
            (_checkable_value(control.element), control.label)
            for control in self.controls
            if control.type in _CHECKABLE
        ]


def _option_value(option: Element) -> str:
    value = option.attrs.get("value")
    return option.text if value is None else value


def _checkable_value(element: Element) -> str:
    value = element.attrs.get("value")
    return "on" if value is None else value


def _submitted(element: Element) -> tuple[str, ...]:
    """What a browser sends for this control as it is rendered."""
    if element.tag == "textarea":
        # A browser drops the one newline that may follow <textarea>.
        text = element.raw_text
        return (text[1:] if text.startswith("\n") else text,)
    if element.tag == "select":
        options = elements(element, "option")
        chosen = [option for option in options if "selected" in option.attrs]
        if not chosen and options and "multiple" not in element.attrs:
            chosen = options[:1]  # nothing marked: a browser shows and sends the first
        return tuple(_option_value(option) for option in chosen)
    kind = (element.attrs.get("type") or "text").lower()
    if kind in _CHECKABLE:
        return (_checkable_value(element),) if "checked" in element.attrs else ()
    return (element.attrs.get("value") or "",)


def _ids(value: str | None) -> tuple[str, ...]:
    return tuple((value or "").split())


def _label(element: Element, by_id: dict[str, Element], labels: list[Element]) -> str:
    """The accessible name, in the order the browser looks for it."""
    labelled_by = [
        by_id[ref].text for ref in _ids(element.attrs.get("aria-labelledby")) if ref in by_id
    ]
    if any(labelled_by):
        return " ".join(labelled_by)
    if element.attrs.get("aria-label"):
        return str(element.attrs["aria-label"])
    own_id = element.attrs.get("id")
    if own_id:
        for label in labels:
            if label.attrs.get("for") == own_id:
                return label.text
    around = element.enclosing("label")
    return around.text if around is not None else ""


def controls(html: str, *, action: str | None = None) -> list[Control]:
    """Every field of the page (buttons aside), or only those of the form posting to `action`."""
    root = parse(html)
    everything = elements(root)
    by_id = {str(e.attrs["id"]): e for e in everything if e.attrs.get("id")}
    labels = [e for e in everything if e.tag == "label"]
    found: list[Control] = []
    for element in everything:
        if element.tag not in {"input", "select", "textarea"}:
            continue
        if element.tag == "input" and element.attrs.get("type") in _BUTTON_TYPES:
            continue
        form = element.enclosing("form")
        if action is not None and (form is None or form.attrs.get("action") != action):
            continue
        fieldset = element.enclosing("fieldset")
        legend = next(
            (
                child
                for child in (fieldset.children if fieldset else [])
                if isinstance(child, Element) and child.tag == "legend"
            ),
            None,
        )
        described_by = _ids(element.attrs.get("aria-describedby"))
        if fieldset is not None:
            described_by += _ids(fieldset.attrs.get("aria-describedby"))
        errors = [
            by_id[ref].text
            for ref in described_by
            if ref in by_id and "field-error" in by_id[ref].classes
        ]
        invalid = any(
            node is not None and node.attrs.get("aria-invalid") == "true"
            for node in (element, fieldset)
        )
        found.append(
            Control(
                element=element,
                submitted=_submitted(element),
                label=_label(element, by_id, labels),
                legend=legend.text if legend is not None else "",
                error=" ".join(errors),
                invalid=invalid,
                described_by=described_by,
            )
        )
    return found


def form_fields(html: str, *, action: str | None = None) -> dict[str, Field]:
    """name → Field, for the page's named fields (or those of the form posting to `action`)."""
    grouped: dict[str, list[Control]] = {}
    for control in controls(html, action=action):
        if control.name:
            grouped.setdefault(control.name, []).append(control)
    return {name: Field(name, tuple(group)) for name, group in grouped.items()}


def missing_ids(html: str) -> list[str]:
    """Ids that aria-describedby, aria-labelledby or <label for> name but no element has."""
    everything = elements(html)
    known = {e.attrs.get("id") for e in everything}
    named = [
        ref
        for e in everything
        for attribute in ("aria-describedby", "aria-labelledby")
        for ref in _ids(e.attrs.get(attribute))
    ]
    named += [str(e.attrs["for"]) for e in everything if e.tag == "label" and e.attrs.get("for")]
    return [ref for ref in named if ref not in known]


def accessibility_problems(html: str) -> list[str]:
    """What a screen reader user would miss in this page's forms: a field without a label, a
    field marked invalid without its error read out (or the other way round), an error next to
    no field, an id named by aria-describedby or <label for> that is not there."""
    problems: list[str] = []
    found = controls(html)
    for control in found:
        if control.type == "hidden":
            continue
        what = f"field {control.name!r} ({control.type})"
        if not control.label:
            problems.append(f"{what} has no label")
        if control.invalid and not control.error:
            problems.append(f"{what} is marked invalid but no error is read out with it")
        if control.error and not control.invalid:
            problems.append(f"{what} has an error but is not marked invalid")
    read_out = {ref for control in found for ref in control.described_by}
    for element in elements(html):
        if "field-error" in element.classes and element.attrs.get("id") not in read_out:
            problems.append(f"the error {element.text!r} is read out with no field")
    problems += [f"{ref!r} is named but no element has that id" for ref in missing_ids(html)]
    return problems
