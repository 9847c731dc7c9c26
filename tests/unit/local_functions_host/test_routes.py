"""Functions route templates as the local host matches them."""

from __future__ import annotations

import pytest

from local_functions_host.errors import HostConfigurationError
from local_functions_host.routes import RouteTemplate


def test_plain_parameter_matches_one_segment_and_is_unescaped() -> None:
    template = RouteTemplate("orders/{correlationId}")

    assert template.match("orders/abc-1") == {"correlationId": "abc-1"}
    assert template.match("orders/a%20b") == {"correlationId": "a b"}
    assert template.match("orders") is None
    assert template.match("orders/a/b") is None


def test_literals_match_case_insensitively() -> None:
    assert RouteTemplate("Orders/Stats").match("orders/stats") == {}


def test_constraints_filter_values() -> None:
    number = RouteTemplate("items/{id:int}")
    guid = RouteTemplate("items/{id:guid}")
    bounded = RouteTemplate("items/{id:int:range(1,10)}")
    sized = RouteTemplate("names/{name:minlength(2):maxlength(3)}")

    assert number.match("items/-12") == {"id": "-12"}
    assert number.match("items/x1") is None
    assert guid.match("items/6f1c1d5e-4a36-4b0e-9a55-0d7f7c2f9a10") is not None
    assert guid.match("items/6f1c") is None
    assert bounded.match("items/10") == {"id": "10"}
    assert bounded.match("items/11") is None
    assert sized.match("names/ab") is not None
    assert sized.match("names/abcd") is None


def test_regex_constraint() -> None:
    template = RouteTemplate(r"codes/{code:regex(^[A-Z]{{3}}$)}")

    assert template.match("codes/EUR") == {"code": "EUR"}
    assert template.match("codes/EURO") is None


def test_optional_and_catch_all_parameters() -> None:
    optional = RouteTemplate("files/{name?}")
    catch_all = RouteTemplate("static/{*path}")

    assert optional.match("files") == {}
    assert optional.match("files/a.txt") == {"name": "a.txt"}
    assert catch_all.match("static/css/site.css") == {"path": "css/site.css"}
    assert catch_all.match("static") == {}


def test_precedence_puts_literals_before_parameters_before_catch_all() -> None:
    templates = [RouteTemplate(t) for t in ("orders/{*rest}", "orders/{id}", "orders/{id:int}", "orders/stats")]

    ordered = sorted(templates, key=lambda t: t.precedence)

    assert [t.template for t in ordered] == ["orders/stats", "orders/{id:int}", "orders/{id}", "orders/{*rest}"]


def test_unsupported_template_is_a_clear_error() -> None:
    with pytest.raises(HostConfigurationError, match="not supported"):
        RouteTemplate("a/{x}-{y}")
    with pytest.raises(HostConfigurationError, match="catch-all"):
        RouteTemplate("{*rest}/tail")
