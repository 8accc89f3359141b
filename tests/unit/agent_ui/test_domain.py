"""The Agent UI's rules: tenant UI settings, frame origins and the page's policy."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from transact.agent_ui import domain
from transact.agent_ui.domain import InvalidSettings, UiSettings
from transact.gateway.domain import AGENT_UI_CSP


def test_defaults_offer_the_keypad_first_and_frame_for_nobody() -> None:
    settings = UiSettings()
    assert settings.default_method == "keypad"
    assert settings.frame_origins == ()
    assert UiSettings.from_dict(settings.to_dict()) == settings
    assert settings.public()["exponents"] == {"GBP": 2}


def test_settings_round_trip_and_show_each_currencys_digits() -> None:
    settings = UiSettings.from_dict(
        {
            "methods": ["link_chat", "keypad"],
            "default_method": "link_chat",
            "currencies": ["JPY", "EUR", "BHD"],
            "default_currency": "EUR",
            "frame_origins": ["https://CRM.example.com:443/", "http://desk.example:8080"],
        }
    )
    assert settings.frame_origins == ("https://crm.example.com", "http://desk.example:8080")
    assert settings.public()["exponents"] == {"JPY": 0, "EUR": 2, "BHD": 3}
    assert UiSettings.from_dict(settings.to_dict()) == settings


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"methods": ["fax"]}, "unknown methods"),
        ({"methods": []}, "at least one"),
        ({"methods": ["keypad", "keypad"]}, "each once"),
        ({"methods": ["link_sms"]}, "default_method"),
        ({"currencies": ["XXX"], "default_currency": "XXX"}, "ISO 4217"),
        ({"currencies": ["GBP"], "default_currency": "EUR"}, "default_currency"),
        ({"currencies": []}, "currencies"),
        ({"frame_origins": ["crm.example.com"]}, "https://"),
        ({"frame_origins": ["https://crm.example.com/app"]}, "scheme://host"),
        ({"frame_origins": ["https://user@crm.example.com"]}, "scheme://host"),
        ({"frame_origins": ["https://*.example.com"]}, "host name"),
        ({"frame_origins": ["javascript:alert(1)"]}, "https://"),
        ({"frame_origins": ["https://crm.example.com; script-src *"]}, "host name"),
        ({"frame_origins": [f"https://c{i}.example" for i in range(11)]}, "at most 10"),
        ({"methods": "keypad"}, "list of strings"),
    ],
)
def test_settings_that_cannot_work_are_refused_with_a_reason(
    change: dict[str, object], says: str
) -> None:
    with pytest.raises(InvalidSettings, match=says):
        UiSettings.from_dict({**UiSettings().to_dict(), **change})


def test_the_page_policy_is_the_gateways_with_the_tenants_frame_ancestors() -> None:
    nobody = domain.page_csp(())
    assert nobody.split("; ") == AGENT_UI_CSP.split("; ")  # same directives, same order
    framed = domain.page_csp(("https://crm.example.com", "http://desk.example:8080"))
    assert framed.endswith("frame-ancestors https://crm.example.com http://desk.example:8080")
    directives = dict(d.split(" ", 1) for d in framed.split("; "))
    assert directives["script-src"] == "'self'"
    assert directives["connect-src"] == "'self'"
    assert "unsafe" not in framed


@given(st.text(max_size=80))
def test_whatever_an_admin_types_a_policy_keeps_its_shape(text: str) -> None:
    """An accepted origin can never smuggle a directive, a quote or a wildcard into the
    page's policy."""
    try:
        origin = domain.check_origin(text)
    except InvalidSettings:
        return
    assert not any(c in origin for c in " ;,'\"*\n\t")
    assert origin.startswith(("https://", "http://"))


def test_the_tenant_hint_is_bounded() -> None:
    assert domain.tenant_hint({"tenant": " shop "}) == "shop"
    assert domain.tenant_hint({"tenant": "x" * 65}) is None
    assert domain.tenant_hint({}) is None
