"""The HTTP edge's feature switches: routes that exist only while their capability is on
(AUTHAPP_REGISTRATION, AUTHAPP_API_TOKENS), decided for each app as it registers a blueprint.

A switched-off route is not registered at all, so the router answers 404 (or 405 where another
method of the path stays), quart-schema leaves it out of /openapi.json and tests that walk
url_map never meet it. The decision must be per app, not at import: the blueprints are module
objects that every app of a process (tests build many) registers with its own settings.
AUTHAPP_PAGES switches whole blueprints, so create_app decides that one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, TypeVar

from flask.sansio.app import App
from quart import Blueprint
from quart.blueprints import BlueprintSetupState

from ..config import Settings

Feature = Literal["registration", "api_tokens"]
FEATURE_ATTRIBUTE = "_authapp_feature"
F = TypeVar("F", bound=Callable[..., Any])


def enabled_features(settings: Settings) -> frozenset[Feature]:
    """The features these settings turn on (also the templates' `features`, for links)."""
    switches: dict[Feature, bool] = {
        "registration": settings.registration == "open",
        "api_tokens": settings.api_tokens,
    }
    return frozenset(name for name, on in switches.items() if on)


def feature(name: Feature) -> Callable[[F], F]:
    """Register the view only on apps where `name` is on; put it right under the route."""

    def decorator(view: F) -> F:
        setattr(view, FEATURE_ATTRIBUTE, name)
        return view

    return decorator


class SwitchedSetupState(BlueprintSetupState):
    """A blueprint's registration on one app, which skips the views of features it has off."""

    def add_url_rule(
        self,
        rule: str,
        endpoint: str | None = None,
        view_func: Callable[..., Any] | None = None,
        **options: Any,
    ) -> None:
        needs: Feature | None = getattr(view_func, FEATURE_ATTRIBUTE, None)
        if needs is not None and needs not in enabled_features(_settings(self.app)):
            return
        super().add_url_rule(rule, endpoint, view_func, **options)


class SwitchedBlueprint(Blueprint):
    """A blueprint whose views marked with @feature exist only on apps with the feature on."""

    def make_setup_state(
        self, app: App, options: dict[str, Any], first_registration: bool = False
    ) -> BlueprintSetupState:
        return SwitchedSetupState(self, app, options, first_registration)


def _settings(app: App) -> Settings:
    # init_extensions puts the app's state there before create_app registers any blueprint.
    settings: Settings = app.extensions["authapp"].settings
    return settings
