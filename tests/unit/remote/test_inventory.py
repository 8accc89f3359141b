"""PCI DSS 6.4.3 / 11.6.1: the payment page's scripts and security headers are inventoried.

Fails when a script or stylesheet changes (or appears) without its inventory entry, and
when the gateway's headers for `/pay` change without the inventory."""

from __future__ import annotations

import base64
import hashlib
import re

from transact.gateway.domain import security_headers
from transact.remote import page

TEMPLATES = page.HERE / "templates"


def sri(data: bytes) -> str:
    return "sha384-" + base64.b64encode(hashlib.sha384(data).digest()).decode()


def test_every_file_the_page_may_load_is_listed_with_its_hash() -> None:
    listed = page.inventory()
    entries = listed["scripts"] + listed["styles"]
    on_disk = {p.name for p in page.STATIC.iterdir() if p.suffix in (".js", ".css")}
    assert {entry["file"] for entry in entries} == on_disk
    for entry in entries:
        data = (page.STATIC / entry["file"]).read_bytes()
        assert entry["integrity"] == sri(data), f"{entry['file']} changed: update the inventory"
        assert entry["src"] == f"/pay/static/{entry['file']}"
        assert entry["third_party"] is False
        assert entry["purpose"]


def test_templates_load_no_script_but_the_inventorys() -> None:
    for template in TEMPLATES.glob("*.html"):
        text = template.read_text()
        scripts = re.findall(r"<script\b[^>]*>", text)
        for tag in scripts:
            assert 'src="{{ assets.js.src }}"' in tag, (template.name, tag)
            assert 'integrity="{{ assets.js.integrity }}"' in tag, (template.name, tag)
        assert not re.search(r"<script\b[^>]*>[^<]+</script>", text), "no inline script"
        assert not re.search(r"\son[a-z]+=", text), "no inline event handlers"
        assert "style=" not in text, "the CSP forbids inline styles"
        assert "http://" not in text, "no third-party origin"
        assert "https://" not in text, "no third-party origin"


def test_the_security_headers_of_pay_are_the_inventorys() -> None:
    expected = page.inventory()["headers"]
    gateway = dict(security_headers("/pay/abc"))
    assert {k: v for k, v in expected.items() if k != "Cache-Control"} == gateway
    assert expected["Cache-Control"] == "no-store"
