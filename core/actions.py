"""What a page offers to do, each as a form in a panel: a key's lifecycle step, a release, a campaign or
exception step, a decision on an attestation item. An action is declared once (its button, its form, when
it is offered and the service call it makes); views build its panels and translate the service's refusals.
"""

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from django import forms
from django.http import Http404


def always(*subject) -> bool:
    return True


@dataclass(frozen=True)
class Action:
    slug: str
    label: str
    form_class: type[forms.Form]
    perform: Callable[..., object] | None = None
    button_class: str = ""
    # Whether the action is offered, asked with the page's subject (a key; a user and an exception...).
    offered: Callable[..., bool] = always
    explanation: str = ""
    # What the page says once the action is done, formatted by the view.
    done: str = ""

    def panel_id(self, id_prefix: str) -> str:
        return f"{id_prefix}-{self.slug}"

    def form(self, data=None, *, id_prefix: str = "action") -> forms.Form:
        """The action's form; its field ids start with its panel's id, so that no two panels on a page
        (nor two rows of panels) share an id."""
        return self.form_class(data, auto_id=f"{self.panel_id(id_prefix)}-%s")

    def submit(self, data, subject, actor) -> tuple[forms.Form, object]:
        """Check ``data`` with the action's form and, if it holds, ``perform(subject, actor, cleaned data)``.

        Returns the form, valid if the action was done (else with its errors, the service's refusal among
        them), and what ``perform`` returned.
        """
        form = self.form(data)
        return form, form.call_service(lambda cleaned: self.perform(subject, actor, cleaned))


@dataclass
class Panel:
    """An offered action with its form: blank, or the refused submission, open with its errors."""

    action: Action
    form: forms.Form
    id: str
    open: bool = False


def action_or_404(actions: dict[str, Action], slug: str) -> Action:
    action = actions.get(slug)
    if action is None:
        raise Http404("No such action.")
    return action


def refusal(actions: dict[str, Action], failed: tuple[str, forms.Form] | None, panels: list[Panel]) -> dict:
    """What a page says at its top about a refused action (portal/_refused_action.html): its form may be far
    below, or not offered any more."""
    if failed is None:
        return {"refused_action": None, "refused_messages": [], "refused_form_shown": False}
    return {
        "refused_action": actions[failed[0]],
        "refused_messages": [message for messages in failed[1].errors.values() for message in messages],
        "refused_form_shown": any(panel.open for panel in panels),
    }


def offered_panels(actions: Iterable[Action], *subject, failed: tuple[str, forms.Form] | None = None,
                   id_prefix: str = "action", blank_form: Callable[[Action], forms.Form] | None = None) -> list[Panel]:
    """A panel for each of ``actions`` offered for ``subject``; ``failed`` is a refused submission (the
    action's slug and its form), shown in its panel. ``blank_form(action)`` gives the others' forms (by default
    a new one each)."""
    panels = []
    for action in actions:
        if not action.offered(*subject):
            continue
        if failed is not None and failed[0] == action.slug:
            panels.append(Panel(action, failed[1], action.panel_id(id_prefix), open=True))
        else:
            form = action.form(id_prefix=id_prefix) if blank_form is None else blank_form(action)
            panels.append(Panel(action, form, action.panel_id(id_prefix)))
    return panels
